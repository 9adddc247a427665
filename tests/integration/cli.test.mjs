// SPDX-License-Identifier: Apache-2.0
//
// The `sbx` CLI against a real sbxd, configured only through SBX_URL and SBX_KEY: create prints the
// id, ls lists it, inspect, exec prints the output and exits with the command's exit code, exec
// streams (first output before the command ends), stderr passes through, stop/start, rm, --json
// output parses everywhere; errors: an unknown id, a wrong key and an unreachable URL each give exit
// status 1 and one line on stderr naming the problem (the API error code, "unauthorized",
// "cannot connect").
// Invocation convention assumed here: `sbx <verb> [options] [args] [-- argv...]`, e.g.
// `sbx create --template host`, `sbx exec --json ID -- cmd`.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
        ID_RE, SBX_CLI, ensureExecutable, expectError, fmt, run, unknownId, useDaemon,
} from '../lib/harness.mjs';

// check for the CLI first: no point starting the daemon without it
const fx = useDaemon({}, () => ensureExecutable(SBX_CLI, 'sbx'));

function sbx(args, { key, url, input, timeoutMs = 60_000, onStdout } = {}) {
        const env = { ...process.env, SBX_URL: url ?? fx.url, SBX_KEY: key ?? fx.key };
        return run(SBX_CLI, args, { env, input, timeoutMs, onStdout });
}

function parseJson(r, what) {
        try {
                return JSON.parse(r.stdout);
        } catch (e) {
                assert.fail(`${what}: stdout is not JSON (${e.message}): ${fmt(r)}`);
        }
}

// exit status 1 and exactly one non-empty line on stderr containing `needle`
function assertOneLineError(r, needle, what) {
        assert.equal(r.code, 1, `${what}: exit status ${r.code}, stdout ${fmt(r.stdout)}, stderr ${fmt(r.stderr)}`);
        const err = r.stderr.replace(/\n$/, '');
        assert.ok(err.length > 0, `${what}: nothing on stderr`);
        assert.ok(!err.includes('\n'), `${what}: error is not one line: ${fmt(r.stderr)}`);
        assert.ok(err.toLowerCase().includes(needle), `${what}: stderr should mention "${needle}": ${fmt(r.stderr)}`);
}

async function createViaCli(extra = []) {
        const r = await sbx(['create', '--template', 'host', ...extra]);
        assert.equal(r.code, 0, `sbx create: ${fmt(r)}`);
        const id = r.stdout.trim();
        assert.match(id, ID_RE, `sbx create should print just the id: ${fmt(r.stdout)}`);
        fx.track(id);
        return id;
}

test('create prints the id; ls and inspect show it', { timeout: 60_000 }, async () => {
        const id = await createViaCli();
        const g = await fx.api.get(id);
        assert.equal(g.status, 200);
        assert.equal(g.json.template, 'host');
        assert.equal(g.json.state, 'running');

        const ls = await sbx(['ls']);
        assert.equal(ls.code, 0, fmt(ls));
        assert.ok(ls.stdout.includes(id), `ls does not show ${id}: ${fmt(ls.stdout)}`);
        assert.equal(ls.stderr, '');

        const ins = await sbx(['inspect', id]);
        assert.equal(ins.code, 0, fmt(ins));
        assert.ok(ins.stdout.includes(id));
        assert.ok(ins.stdout.includes('running'));
});

test('--json output parses', { timeout: 60_000 }, async () => {
        const c = await sbx(['create', '--json', '--template', 'host']);
        assert.equal(c.code, 0, fmt(c));
        const created = parseJson(c, 'create --json');
        assert.match(created.id, ID_RE);
        fx.track(created.id);
        assert.equal(created.state, 'running');
        assert.equal(created.template, 'host');

        const ls = await sbx(['ls', '--json']);
        assert.equal(ls.code, 0, fmt(ls));
        const listed = parseJson(ls, 'ls --json');
        const arr = Array.isArray(listed) ? listed : listed.sandboxes;
        assert.ok(Array.isArray(arr), `ls --json: ${fmt(listed)}`);
        assert.ok(arr.some((s) => s.id === created.id));

        const ins = await sbx(['inspect', '--json', created.id]);
        assert.equal(ins.code, 0, fmt(ins));
        const info = parseJson(ins, 'inspect --json');
        assert.equal(info.id, created.id);
        assert.equal(info.state, 'running');

        const ex = await sbx(['exec', '--json', created.id, '--', 'sh', '-c', 'echo hi; echo oops >&2; exit 3']);
        const res = parseJson(ex, 'exec --json');
        assert.equal(res.exitCode, 3);
        assert.equal(res.stdout, 'hi\n');
        assert.equal(res.stderr, 'oops\n');

        const st = await sbx(['stop', '--json', created.id]);
        assert.equal(st.code, 0, fmt(st));
        assert.equal(parseJson(st, 'stop --json').state, 'stopped');
        const sa = await sbx(['start', '--json', created.id]);
        assert.equal(sa.code, 0, fmt(sa));
        assert.equal(parseJson(sa, 'start --json').state, 'running');
});

test('exec prints output and exits with the command\'s exit code', { timeout: 60_000 }, async () => {
        const id = await createViaCli();
        const r = await sbx(['exec', id, '--', 'sh', '-c', 'echo hi; exit 7']);
        assert.equal(r.code, 7, fmt(r));
        assert.equal(r.stdout, 'hi\n');
        const e = await sbx(['exec', id, '--', 'sh', '-c', 'echo to-err >&2']);
        assert.equal(e.code, 0, fmt(e));
        assert.equal(e.stdout, '');
        assert.equal(e.stderr, 'to-err\n', 'the command\'s stderr goes to sbx\'s stderr');
        const z = await sbx(['exec', id, '--', '/bin/echo', 'a  b', '$HOME']);
        assert.equal(z.code, 0);
        assert.equal(z.stdout, 'a  b $HOME\n', 'argv passed through without a shell');
        const m = await sbx(['exec', id, '--', '/nonexistent/bin']);
        assert.equal(m.code, 127, fmt(m));
});

test('exec streams: the first output arrives before the command ends', { timeout: 60_000 }, async () => {
        const id = await createViaCli();
        let firstAt = null;
        const r = await sbx(['exec', id, '--', 'sh', '-c', 'echo first; sleep 2; echo second'], {
                onStdout: (chunk, at) => {
                        if (firstAt === null && chunk.includes('first')) firstAt = at;
                },
        });
        assert.equal(r.code, 0, fmt(r));
        assert.equal(r.stdout, 'first\nsecond\n');
        assert.ok(firstAt !== null);
        assert.ok(r.ms >= 2000, `sbx exec returned after ${Math.round(r.ms)} ms`);
        assert.ok(firstAt < 1500, `first output after ${Math.round(firstAt)} ms: not streamed`);
});

test('stop, start and rm', { timeout: 60_000 }, async () => {
        const id = await createViaCli();
        let r = await sbx(['stop', id]);
        assert.equal(r.code, 0, fmt(r));
        assert.equal((await fx.api.get(id)).json.state, 'stopped');
        r = await sbx(['start', id]);
        assert.equal(r.code, 0, fmt(r));
        assert.equal((await fx.api.get(id)).json.state, 'running');
        r = await sbx(['rm', id]);
        assert.equal(r.code, 0, fmt(r));
        expectError(await fx.api.get(id), 404, 'sandbox_not_found');
        const again = await sbx(['rm', id]);
        assertOneLineError(again, 'sandbox_not_found', 'rm of a removed sandbox');
});

test('errors: unknown id, wrong key, unreachable URL', { timeout: 60_000 }, async () => {
        const bogus = unknownId();
        for (const args of [['inspect', bogus], ['rm', bogus], ['exec', bogus, '--', 'true'], ['stop', bogus], ['start', bogus]]) {
                assertOneLineError(await sbx(args), 'sandbox_not_found', `sbx ${args[0]} <unknown id>`);
        }
        assertOneLineError(await sbx(['ls'], { key: 'wrong-key' }), 'unauthorized', 'wrong key');
        assertOneLineError(await sbx(['create', '--template', 'host'], { key: 'wrong-key' }), 'unauthorized', 'wrong key on create');
        // port 1 on loopback: nothing listens there
        assertOneLineError(await sbx(['ls'], { url: 'http://127.0.0.1:1' }), 'cannot connect', 'unreachable URL');
        const bad = await sbx(['no-such-verb']);
        assert.notEqual(bad.code, 0, 'an unknown verb fails');
        assert.ok(bad.stderr.length > 0);
        // nothing was created by the failed create
        const listed = (await fx.api.listAll()).filter((s) => s.state !== 'deleted');
        for (const s of listed) assert.ok(fx.ids.has(s.id), `unexpected sandbox ${s.id}`);
});
