// SPDX-License-Identifier: Apache-2.0
//
// The `sbx` CLI's template, image and layer commands against a real sbxd: `template build` of a
// spec whose file comes from a local "src" path and whose setup command checks it (exit 0, the
// template listed and usable, the file inlined as contentBase64, progress on stderr, --verbose
// log lines, --name and --json); a failing setup step (exit 1 with the step, the exit code and
// the log tail); bad specs (unknown field, missing src file, invalid JSON, no argument);
// export -> import round trip (the file appears only when complete, both templates listed with
// the same layers); `template ls` fits names with tags; `layer ls` / `layer gc`; `template rm`
// of several names with one unknown. Specs build on `base` (built once, shared through
// SBX_BUILD_DIR/test-templates). Every test removes the templates it made and its temp dir.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SBX_CLI, describe, ensureExecutable, fmt, rand, run, useDaemon } from '../lib/harness.mjs';

const fx = useDaemon({}, () => ensureExecutable(SBX_CLI, 'sbx'));
const BUILD_TIMEOUT_MS = 280_000; // a first build of `base` (mmdebstrap) may be part of it

function sbx(args, { input, timeoutMs = BUILD_TIMEOUT_MS } = {}) {
        const env = { ...process.env, SBX_URL: fx.url, SBX_KEY: fx.key };
        return run(SBX_CLI, args, { env, input, timeoutMs });
}

/* A temp dir for test t and the templates it makes; both are gone when t ends (404 = never published). */
function workspace(t) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-cli-tpl-'));
        const names = new Set();
        t.after(async () => {
                const problems = [];
                for (const n of names) {
                        const res = await fx.api.request('DELETE', `/v1/templates/${encodeURIComponent(n)}`);
                        if (res.status !== 200 && res.status !== 404) problems.push(`DELETE template ${n}: ${describe(res)}`);
                }
                fs.rmSync(dir, { recursive: true, force: true });
                if (problems.length) throw new Error(problems.join('\n'));
        });
        return {
                dir,
                name(prefix) {
                        const n = `${prefix}-${rand(4)}`;
                        names.add(n);
                        return n;
                },
                track(n) {
                        names.add(n);
                },
                write(rel, content) {
                        const p = path.join(dir, rel);
                        fs.mkdirSync(path.dirname(p), { recursive: true });
                        const data = typeof content === 'string' || Buffer.isBuffer(content) ? content : JSON.stringify(content, null, 2);
                        fs.writeFileSync(p, data);
                        return p;
                },
        };
}

function parseJson(r, what) {
        try {
                return JSON.parse(r.stdout);
        } catch (e) {
                assert.fail(`${what}: stdout is not JSON (${e.message}): ${fmt(r)}`);
        }
}

// exit status `code` and a last stderr line "sbx: ..." containing every needle
function assertError(r, code, needles, what) {
        assert.equal(r.code, code, `${what}: exit status ${r.code}: ${fmt(r)}`);
        const last = r.stderr.trimEnd().split('\n').pop();
        assert.match(last, /^sbx: /, `${what}: the error should be the last stderr line: ${fmt(r.stderr)}`);
        for (const n of [].concat(needles)) assert.ok(last.includes(n), `${what}: "${n}" not in ${fmt(last)}`);
}

async function inspect(name) {
        const r = await sbx(['template', 'inspect', name, '--json']);
        assert.equal(r.code, 0, `inspect ${name}: ${fmt(r)}`);
        return parseJson(r, `inspect ${name}`);
}

async function templateLs() {
        const r = await sbx(['template', 'ls']);
        assert.equal(r.code, 0, fmt(r));
        assert.equal(r.stderr, '');
        const lines = r.stdout.trimEnd().split('\n');
        assert.match(lines[0], /^NAME\s+STATE\s+SIZE\s+LAYERS\s+SOURCE\s+DESCRIPTION$/, fmt(r.stdout));
        return lines;
}

/* A small template built on base: one file, no setup. */
async function buildSmall(ws, name) {
        const spec = ws.write(`${name}.json`, {
                name, from: 'base', files: [{ path: `/etc/${name}`, content: `${name}\n` }],
        });
        const r = await sbx(['template', 'build', spec]);
        assert.equal(r.code, 0, `build ${name}: ${fmt(r)}`);
        return r;
}

test('template build: a spec with a src file and a setup command', { timeout: 300_000 }, async (t) => {
        const ws = workspace(t);
        const api = fx.scope(t);
        const name = ws.name('cli-src');
        const greeting = `hello from src ${rand(4)}\n`;
        ws.write('files/greet.txt', greeting);
        const spec = ws.write('spec/tool.json', {
                name: 'replaced-by-name-option',
                from: 'base',
                files: [{ path: '/opt/greet.txt', src: '../files/greet.txt', mode: 0o644 }],
                setup: ['cat /opt/greet.txt > /opt/copy.txt', `grep -qx "${greeting.trim()}" /opt/copy.txt && echo verified-$((6*7))`],
        });

        const r = await sbx(['template', 'build', spec, '--name', name, '--verbose']);
        assert.equal(r.code, 0, fmt(r));
        assert.match(r.stdout, new RegExp(`^template ${name} built in \\d+\\.\\ds \\(\\d+ layers?(, cached)?\\)\\n$`), fmt(r));
        // not a terminal: one line per stage on stderr, and with --verbose the log lines
        assert.match(r.stderr, /^\s*\d+% \S/m, `progress lines expected on stderr: ${fmt(r.stderr)}`);
        assert.ok(!r.stderr.includes('\r'), `no progress bar when stderr is not a terminal: ${fmt(r.stderr)}`);
        assert.match(r.stderr, /^ {2}\| verified-42$/m, `--verbose should show the setup output: ${fmt(r.stderr)}`);

        const lines = await templateLs();
        const row = lines.find((l) => l.startsWith(name + ' '));
        assert.ok(row, `template ls does not list ${name}: ${fmt(lines)}`);
        assert.match(row, new RegExp(`^${name}\\s+available\\s+\\d\\S*\\s+\\d+\\s+spec\\b`));

        // the CLI inlined the local file and dropped "src"
        const tpl = await inspect(name);
        assert.equal(tpl.state, 'available');
        assert.equal(tpl.spec.name, name);
        assert.deepEqual(tpl.spec.files, [{ path: '/opt/greet.txt', contentBase64: Buffer.from(greeting).toString('base64'), mode: 0o644 }]);
        assert.ok(Array.isArray(tpl.layers) && tpl.layers.length >= 2, fmt(tpl));

        // a sandbox from it has the file and what setup made of it
        const sb = await api.createWhenReady({ template: name });
        assert.equal(sb.status, 201, describe(sb));
        assert.equal(await api.sh(sb.json.id, 'cat /opt/copy.txt'), greeting);
        assert.equal((await api.del(sb.json.id)).status, 204);

        // the same spec under another name, from standard input: cached steps; --json prints the done event
        const other = ws.name('cli-src-json');
        const spec2 = JSON.parse(fs.readFileSync(spec, 'utf8'));
        spec2.files[0].src = path.join(ws.dir, 'files/greet.txt'); // relative to the cwd on stdin: give it absolute
        const j = await sbx(['template', 'build', '-', '--name', other, '--json'], { input: JSON.stringify(spec2) });
        assert.equal(j.code, 0, fmt(j));
        const done = parseJson(j, 'build --json');
        assert.equal(done.name, other);
        assert.equal(done.cached, true, fmt(done));
        assert.deepEqual(done.layers, tpl.layers);
        assert.equal(j.stderr, '', '--json prints no progress');

        // --no-wait: the 202 reply, not followed
        const nw = await sbx(['template', 'build', spec, '--name', other, '--no-wait', '--json']);
        assert.equal(nw.code, 0, fmt(nw));
        const accepted = parseJson(nw, 'build --no-wait');
        assert.equal(accepted.name, other);
        assert.match(accepted.specDigest, /^sha256:[0-9a-f]{64}$/);
        // let that build end before the cleanup removes the template
        for (let i = 0; i < 100; i++) {
                const st = await fx.api.request('GET', `/v1/templates/${other}/build`);
                if (st.json?.state !== 'building') break;
                await new Promise((res) => setTimeout(res, 100));
        }
});

test('template build: a failing setup step exits 1 with the step, exit code and log tail', { timeout: 300_000 }, async (t) => {
        const ws = workspace(t);
        const name = ws.name('cli-fail');
        const spec = ws.write('fail.json', {
                name, from: 'base', setup: ['echo preparing; echo marker-$((6*7))', 'echo about to fail >&2; exit 3'],
        });
        const r = await sbx(['template', 'build', spec]);
        assertError(r, 1, [`'${name}'`, "step 'setup'", 'exit code 3'], 'failed build');
        assert.equal(r.stdout, '', 'nothing on stdout for a failed build');
        // the log tail of the failed event, before the error line
        assert.match(r.stderr, /^ {2}\| marker-42$/m, fmt(r.stderr));
        assert.match(r.stderr, /^ {2}\| about to fail$/m, fmt(r.stderr));
        assert.ok(r.stderr.indexOf('about to fail') < r.stderr.lastIndexOf('sbx: '), fmt(r.stderr));

        const j = await sbx(['template', 'build', spec, '--json']);
        assert.equal(j.code, 1, fmt(j));
        const failed = parseJson(j, 'failed build --json');
        assert.equal(failed.step, 'setup');
        assert.equal(failed.exitCode, 3);
        assert.ok(failed.log.includes('about to fail'), fmt(failed));

        const lines = await templateLs();
        const row = lines.find((l) => l.startsWith(name + ' '));
        assert.ok(!row || /\sfailed\s/.test(row), `a failed build is listed as failed if at all: ${fmt(row)}`);
});

test('template build: bad specs get a clear error', { timeout: 60_000 }, async (t) => {
        const ws = workspace(t);
        const name = ws.name('cli-bad');

        let r = await sbx(['template', 'build', ws.write('unknown.json', { name, from: 'base', bogus: 1 })]);
        assertError(r, 1, ["unknown field 'bogus'", 'unknown_field', 'unknown.json'], 'unknown field');

        r = await sbx(['template', 'build', '-'], { input: JSON.stringify({ name, from: 'base', bogus: 1 }) });
        assertError(r, 1, ["unknown field 'bogus'", 'standard input'], 'unknown field on stdin');

        r = await sbx(['template', 'build', ws.write('nosrc.json', { name, from: 'base', files: [{ path: '/x', src: 'missing.txt' }] })]);
        assertError(r, 1, ["'missing.txt'", 'No such file'], 'missing src file');

        r = await sbx(['template', 'build', ws.write('both.json', { name, files: [{ path: '/x', src: 'a', content: 'b' }] })]);
        assertError(r, 1, ["'src' and 'content'"], 'src and content');

        r = await sbx(['template', 'build', ws.write('broken.json', '{"name": ')]);
        assertError(r, 1, ['not valid JSON', 'line'], 'invalid JSON');

        r = await sbx(['template', 'build', path.join(ws.dir, 'absent.json')]);
        assertError(r, 1, ['cannot open spec'], 'no spec file');

        r = await sbx(['template', 'build']);
        assertError(r, 2, ['SPEC.json'], 'no argument');

        r = await sbx(['template', 'build', ws.write('o.json', { name }), '-o', 'x']);
        assertError(r, 2, ["'--output'"], 'an option of another subcommand');

        const big = ws.write('big.bin', Buffer.alloc(900 * 1024, 7)); // 1.2 MB once in base64
        r = await sbx(['template', 'build', ws.write('big.json', { name, from: 'base', files: [{ path: '/big', src: big }] })]);
        assertError(r, 1, ['1024 KiB'], 'request over 1 MiB');

        const res = await fx.api.request('GET', `/v1/templates/${name}`);
        assert.equal(res.status, 404, `no template may come of bad specs: ${describe(res)}`);
});

test('template export -> image import round trip', { timeout: 300_000 }, async (t) => {
        const ws = workspace(t);
        const name = ws.name('cli-rt');
        const copy = ws.name('cli-rt-copy');
        await buildSmall(ws, name);

        const tar = path.join(ws.dir, 'out', 'img.tar');
        fs.mkdirSync(path.dirname(tar));
        let r = await sbx(['template', 'export', name, '-o', tar]);
        assert.equal(r.code, 0, fmt(r));
        assert.match(r.stdout, new RegExp(`^exported ${name} to ${tar} \\(\\d+\\.\\d [kMG]B\\)\\n$`));
        assert.deepEqual(fs.readdirSync(path.dirname(tar)), ['img.tar'], 'no FILE.tmp left behind');
        const list = await run('tar', ['-tf', tar]);
        assert.equal(list.code, 0, fmt(list));
        for (const entry of ['oci-layout', 'index.json', 'manifest.json']) assert.ok(list.stdout.split('\n').includes(entry), fmt(list.stdout));

        // an unknown template: the API error, and no file
        r = await sbx(['template', 'export', `${name}-nope`, '-o', path.join(ws.dir, 'out', 'nope.tar')]);
        assertError(r, 1, ['template_not_found'], 'export of an unknown template');
        assert.deepEqual(fs.readdirSync(path.dirname(tar)), ['img.tar']);

        r = await sbx(['image', 'import', tar, '--name', copy]);
        assert.equal(r.code, 0, fmt(r));
        assert.match(r.stdout, new RegExp(`^imported ${copy} \\(\\d+ layers?, \\d+\\.\\d [kMG]B\\)\\n$`));

        const lines = await templateLs();
        assert.ok(lines.some((l) => new RegExp(`^${name}\\s+available\\s.*\\sspec\\b`).test(l)), fmt(lines));
        assert.ok(lines.some((l) => new RegExp(`^${copy}\\s+available\\s.*\\simport\\b`).test(l)), fmt(lines));

        const a = await inspect(name);
        const b = await inspect(copy);
        assert.equal(b.source, 'import');
        assert.deepEqual(b.layers, a.layers, 'the imported template has the same layers');

        // standard input works too (sent chunked)
        const piped = ws.name('cli-rt-pipe');
        r = await run('/bin/sh', ['-c', '"$0" image import - --name "$1" < "$2"', SBX_CLI, piped, tar],
                { env: { ...process.env, SBX_URL: fx.url, SBX_KEY: fx.key }, timeoutMs: 120_000 });
        assert.equal(r.code, 0, fmt(r));
        assert.match(r.stdout, new RegExp(`^imported ${piped} `));

        // not a tarball: the server's error
        r = await sbx(['image', 'import', ws.write('junk.tar', 'not a tar file\n'), '--name', ws.name('cli-junk')]);
        assertError(r, 1, ['invalid_image'], 'import of junk');
});

test('template ls fits names with tags', { timeout: 300_000 }, async (t) => {
        const ws = workspace(t);
        const name = `${ws.name('cli-tagged-template-name')}:v1.2.3-rc1`;
        ws.track(name);
        await buildSmall(ws, name);
        const lines = await templateLs();
        const row = lines.find((l) => l.startsWith(name + ' '));
        assert.ok(row, `${name} not listed: ${fmt(lines)}`);
        // every row's STATE starts in the header's STATE column
        const col = lines[0].indexOf('STATE');
        for (const l of lines.slice(1)) assert.match(l.slice(col), /^(available|building|failed|not_built) /, fmt(lines));
});

test('layer ls and layer gc', { timeout: 300_000 }, async (t) => {
        const ws = workspace(t);
        const name = ws.name('cli-layer');
        await buildSmall(ws, name);
        const tpl = await inspect(name);
        const own = tpl.layers[tpl.layers.length - 1]; // its files layer, used by no other template
        const short = own.replace(/^sha256:/, '').slice(0, 12);

        let r = await sbx(['layer', 'ls']);
        assert.equal(r.code, 0, fmt(r));
        const lines = r.stdout.trimEnd().split('\n');
        assert.match(lines[0], /^DIGEST\s+SIZE\s+TEMPLATES\s+REFS$/);
        assert.match(lines[lines.length - 1], /^TOTAL\s+\S+\s+\d+ layers?$/);
        const row = lines.find((l) => l.startsWith(short + ' '));
        assert.ok(row, `layer ${short} not listed: ${fmt(r.stdout)}`);
        assert.match(row, new RegExp(`^${short}\\s+\\S+\\s+${name}\\s+1$`));

        r = await sbx(['layer', 'ls', '--json']);
        assert.equal(r.code, 0, fmt(r));
        const before = parseJson(r, 'layer ls --json');
        assert.equal(before.count, before.layers.length);
        assert.ok(before.layers.some((l) => l.digest === own));

        r = await sbx(['layer', 'gc']);
        assert.equal(r.code, 0, fmt(r));
        assert.match(r.stdout, /^removed \d+ layers?, \d+\.\d [kMG]B freed\n$/);

        r = await sbx(['template', 'rm', name]);
        assert.equal(r.code, 0, fmt(r));
        assert.match(r.stdout, new RegExp(`^removed ${name} \\(\\d+ layers?, \\d+\\.\\d [kMG]B freed\\)\\n$`));
        r = await sbx(['layer', 'gc', '--json']);
        assert.equal(r.code, 0, fmt(r));
        const gc = parseJson(r, 'layer gc --json');
        assert.equal(typeof gc.layersRemoved, 'number');
        assert.equal(typeof gc.bytesFreed, 'number');
        r = await sbx(['layer', 'ls', '--json']);
        assert.ok(!parseJson(r, 'layer ls --json').layers.some((l) => l.digest === own), 'the removed template\'s own layer is gone');

        r = await sbx(['layer', 'frob']);
        assertError(r, 2, ["'frob'"], 'unknown layer command');
});

test('template rm: several names, one unknown', { timeout: 300_000 }, async (t) => {
        const ws = workspace(t);
        const a = ws.name('cli-rm-a');
        const b = ws.name('cli-rm-b');
        await buildSmall(ws, a);
        await buildSmall(ws, b);
        const r = await sbx(['template', 'rm', a, `${a}-nope`, b]);
        assert.equal(r.code, 1, fmt(r));
        assert.match(r.stdout, new RegExp(`^removed ${a} \\(.*freed\\)\\nremoved ${b} \\(.*freed\\)\\n$`));
        assert.match(r.stderr, new RegExp(`^sbx: .*'${a}-nope'.*template_not_found`));
        for (const n of [a, b]) assert.equal((await fx.api.request('GET', `/v1/templates/${n}`)).status, 404);

        const none = await sbx(['template', 'rm']);
        assertError(none, 2, ['NAME'], 'rm without a name');
});
