// SPDX-License-Identifier: Apache-2.0
//
// Templates from specs, OCI import/export and the layer store, through the API:
// - a spec (Debian package + files + env + workdir + setup commands) builds end to end, a command
//   from its package runs in a sandbox, the setup's changes and deletions are there;
// - rebuilding the unchanged spec is a cache hit; two identical concurrent builds build once;
// - a failing setup command fails the build with its exit code and log, leaving no layer;
// - bad specs (bad JSON, unknown field, path traversal, unknown package) give clear errors;
// - a template still being built for the first time answers 409 on create;
// - an OCI layout and a docker-save tarball made here (from base's export plus two layers with a
//   whiteout and an opaque dir) import with overlay semantics: deleted files are absent;
// - export -> import keeps the layer digests; GC removes only layers nothing uses.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { TEMPLATES_DIR, describe, expectError, rand, useDaemon, waitFor } from '../lib/harness.mjs';

const fx = useDaemon();
const BUILD_TIMEOUT = 280_000;

/* Read an SSE stream to its end: [{event, id, data}]. */
async function sseEvents(api, p, { timeoutMs = BUILD_TIMEOUT, headers = {} } = {}) {
        const res = await api.request('GET', p, undefined, { stream: true, timeoutMs, headers });
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type'), /^text\/event-stream/);
        const text = await res.text();
        const out = [];
        for (const block of text.split('\n\n')) {
                if (!block.trim()) continue;
                const ev = { event: 'message', id: null, data: '' };
                const data = [];
                for (const line of block.split('\n')) {
                        if (line.startsWith('event: ')) ev.event = line.slice(7);
                        else if (line.startsWith('id: ')) ev.id = line.slice(4);
                        else if (line.startsWith('data: ')) data.push(line.slice(6));
                }
                ev.data = JSON.parse(data.join('\n'));
                out.push(ev);
        }
        return out;
}

async function build(api, spec) {
        const res = await api.request('POST', '/v1/templates', spec);
        assert.equal(res.status, 202, describe(res));
        assert.equal(res.json.name, spec.name);
        const events = await sseEvents(api, `/v1/templates/${encodeURIComponent(spec.name)}/build/events`);
        return { res, events, last: events[events.length - 1] };
}

async function removeTemplate(name) {
        await fx.api.request('DELETE', `/v1/templates/${encodeURIComponent(name)}`);
}

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

function tar(args, cwd) {
        const r = spawnSync('tar', args, { cwd, encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
}

/* A tar of the files in spec {relpath: content|null(dir)} as a Buffer. */
function layerTar(dir, files) {
        fs.rmSync(dir, { recursive: true, force: true });
        fs.mkdirSync(dir, { recursive: true });
        for (const [p, content] of Object.entries(files)) {
                const full = path.join(dir, p);
                if (content === null) fs.mkdirSync(full, { recursive: true });
                else {
                        fs.mkdirSync(path.dirname(full), { recursive: true });
                        fs.writeFileSync(full, content);
                }
        }
        const out = dir + '.tar';
        tar(['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-cf', out, '-C', dir, '.'], dir);
        return fs.readFileSync(out);
}

test('a spec builds: package, files, env, workdir, setup; a rebuild is a cache hit', { timeout: BUILD_TIMEOUT }, async (t) => {
        const api = fx.scope(t);
        const name = `t-jq-${rand(3)}`;
        t.after(() => removeTemplate(name));
        const spec = {
                name,
                description: 'jq and a script',
                packages: ['jq'],
                files: [
                        { path: '/app/data.json', content: '{"answer": 42}\n' },
                        { path: '/app/run.sh', contentBase64: Buffer.from('#!/bin/sh\njq .answer data.json\n').toString('base64'), mode: 0o755 },
                ],
                env: { GREETING: 'hello' },
                workdir: '/app',
                setup: ['echo setting up', 'mkdir -p /opt/made && echo by-setup > /opt/made/marker', 'rm /etc/issue'],
        };
        const { events, last } = await build(api, spec);
        assert.equal(last.event, 'done', JSON.stringify(events.slice(-5)));
        assert.equal(last.data.name, name);
        assert.equal(last.data.layers.length, 3); // base+jq, files, setup
        assert.ok(events.some((e) => e.event === 'log' && e.data.line === 'setting up'), 'setup output is streamed');
        const ids = events.map((e) => Number(e.id));
        assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'event ids ascend');

        const tpl = await api.request('GET', `/v1/templates/${name}`);
        assert.equal(tpl.status, 200, describe(tpl));
        assert.equal(tpl.json.state, 'available');
        assert.equal(tpl.json.source, 'spec');
        assert.deepEqual(tpl.json.layers, last.data.layers);
        assert.deepEqual(tpl.json.config.env, ['GREETING=hello']);
        assert.equal(tpl.json.config.workdir, '/app');
        const list = await api.request('GET', '/v1/templates');
        assert.ok(list.json.templates.some((x) => x.name === name && x.state === 'available' && x.layers === 3));

        const sb = await api.createOk({ template: name });
        assert.equal(await api.sh(sb.id, './run.sh'), '42\n'); // cwd = workdir, jq from the package
        assert.equal(await api.sh(sb.id, 'echo $GREETING'), 'hello\n');
        assert.equal(await api.sh(sb.id, 'cat /opt/made/marker'), 'by-setup\n');
        assert.equal(await api.sh(sb.id, 'test -e /etc/issue && echo present || echo absent'), 'absent\n');
        assert.equal(await api.sh(sb.id, 'stat -c %U:%G /opt/made/marker'), 'root:root\n');

        // unchanged spec: every step is a cache hit
        const again = await build(api, spec);
        assert.equal(again.last.event, 'done');
        assert.equal(again.last.data.cached, true, JSON.stringify(again.last));
        assert.deepEqual(again.last.data.layers, last.data.layers);
        assert.ok(again.last.data.durationMs < 1000, `cached rebuild took ${again.last.data.durationMs} ms`);
});

test('npm packages install globally into /usr/local (host npm, no install scripts)', { timeout: BUILD_TIMEOUT }, async (t) => {
        const api = fx.scope(t);
        const name = `t-npm-${rand(3)}`;
        t.after(() => removeTemplate(name));
        const { last } = await build(api, { name, from: 'base', npm: ['semver@7.6.0'] });
        assert.equal(last.event, 'done', JSON.stringify(last));
        assert.equal(last.data.layers.length, 2);
        const sb = await api.createOk({ template: name });
        assert.equal(await api.sh(sb.id, 'readlink /usr/local/bin/semver'), '../lib/node_modules/semver/bin/semver.js\n');
        assert.match(await api.sh(sb.id, 'cat /usr/local/lib/node_modules/semver/package.json'), /"version": "7\.6\.0"/);
        assert.equal(await api.sh(sb.id, 'stat -c %u /usr/local/lib/node_modules/semver/package.json'), '0\n');
});

test('two identical concurrent builds build once; a different spec meanwhile is 409', { timeout: BUILD_TIMEOUT }, async (t) => {
        const api = fx.scope(t);
        const name = `t-conc-${rand(3)}`;
        t.after(() => removeTemplate(name));
        const spec = { name, from: 'base', setup: [`sleep 1; echo ${rand(6)} > /built`] };
        const [a, b] = await Promise.all([api.request('POST', '/v1/templates', spec), api.request('POST', '/v1/templates', spec)]);
        assert.equal(a.status, 202, describe(a));
        assert.equal(b.status, 202, describe(b));
        assert.equal(a.json.specDigest, b.json.specDigest);
        const other = await api.request('POST', '/v1/templates', { ...spec, setup: ['true'] });
        expectError(other, 409, 'template_building');
        // creating a sandbox from a template whose first build runs is 409
        const c = await api.create({ template: name });
        expectError(c, 409, 'template_building');
        const events = await sseEvents(api, `/v1/templates/${name}/build/events`);
        assert.equal(events.at(-1).event, 'done');
        assert.equal(events.filter((e) => e.event === 'done').length, 1);
        assert.equal(events.filter((e) => e.event === 'log' && e.data.line.startsWith('$ sleep 1')).length, 1, 'one setup run');
        // resuming with Last-Event-ID replays only what came after
        const tail = await sseEvents(api, `/v1/templates/${name}/build/events`, { headers: { 'last-event-id': String(Number(events.at(-2).id)) } });
        assert.deepEqual(tail.map((e) => e.event), ['done']);
});

test('a failing setup command fails the build with its exit code and log; no layer is left', { timeout: BUILD_TIMEOUT }, async (t) => {
        const api = fx.scope(t);
        const name = `t-fail-${rand(3)}`;
        t.after(() => removeTemplate(name));
        const before = (await api.request('GET', '/v1/layers')).json;
        const { last } = await build(api, { name, from: 'base', setup: ['echo first ok', 'echo about to fail; echo oops >&2; exit 3', 'echo never'] });
        assert.equal(last.event, 'failed', JSON.stringify(last));
        assert.equal(last.data.step, 'setup');
        assert.equal(last.data.exitCode, 3);
        assert.match(last.data.message, /setup\[1\] exited with status 3/);
        assert.ok(last.data.log.includes('oops'), JSON.stringify(last.data.log));
        assert.ok(!last.data.log.includes('never'));
        const st = await api.request('GET', `/v1/templates/${name}/build`);
        assert.equal(st.json.state, 'failed');
        assert.equal(st.json.exitCode, 3);
        const tpl = await api.request('GET', `/v1/templates/${name}`);
        assert.equal(tpl.json.state, 'failed', describe(tpl));
        expectError(await api.create({ template: name }), 404, 'template_not_found');
        const after = (await api.request('GET', '/v1/layers')).json;
        assert.equal(after.count, before.count, 'no layer was committed');
        const tmp = fs.readdirSync(path.join(TEMPLATES_DIR, 'layers')).filter((n) => n.startsWith('tmp-'));
        assert.deepEqual(tmp, []);
        // the build sandbox is gone
        await waitFor(async () => !(await api.list()).json.sandboxes.some((s) => s.metadata?.['sbx.build'] === name), 10_000,
                { what: 'build sandbox deleted' });
});

test('bad specs get clear errors', async (t) => {
        const api = fx.scope(t);
        let r = await api.request('POST', '/v1/templates', '{"name": ', { raw: true });
        expectError(r, 400, 'invalid_json');
        r = await api.request('POST', '/v1/templates', { name: 'x1', colour: 'red' });
        expectError(r, 400, 'unknown_field');
        assert.match(r.json.error.message, /colour/);
        r = await api.request('POST', '/v1/templates', { name: 'x1', files: [{ path: '/../../etc/passwd', content: 'x' }] });
        expectError(r, 400, 'invalid_value');
        assert.match(r.json.error.message, /files\[0\]\.path/);
        r = await api.request('POST', '/v1/templates', { name: 'x1', files: [{ path: 'relative', content: 'x' }] });
        expectError(r, 400, 'invalid_value');
        r = await api.request('POST', '/v1/templates', { name: 'Bad Name' });
        expectError(r, 400, 'invalid_value');
        assert.match(r.json.error.message, /'name'/);
        r = await api.request('POST', '/v1/templates', { name: 'python' });
        expectError(r, 400, 'invalid_value');
        r = await api.request('POST', '/v1/templates', { name: 'x1', packages: ['jq;rm -rf /'] });
        expectError(r, 400, 'invalid_value');
        r = await api.request('POST', '/v1/templates', { name: 'x1', from: 'base', packages: ['jq'] });
        expectError(r, 400, 'invalid_value');
        r = await api.request('POST', '/v1/templates', { name: 'x1', setup: 'not-an-array' });
        expectError(r, 400, 'invalid_type');
        r = await api.request('POST', '/v1/templates', { name: 'x1', setupTimeout: 0 });
        expectError(r, 400, 'out_of_range');
        expectError(await api.request('GET', '/v1/templates/nope/build'), 404, 'not_found');
});

test('an unknown Debian package fails the build naming it', { timeout: BUILD_TIMEOUT }, async (t) => {
        const api = fx.scope(t);
        const name = `t-nopkg-${rand(3)}`;
        t.after(() => removeTemplate(name));
        const { last } = await build(api, { name, packages: ['sbx-no-such-package'] });
        assert.equal(last.event, 'failed', JSON.stringify(last));
        assert.equal(last.data.step, 'base');
        assert.match(JSON.stringify(last.data), /sbx-no-such-package/);
});

/* An OCI layout: base's exported layers + A (files) + B (whiteouts, opaque dir). */
async function makeImage(api, work) {
        const res = await api.request('GET', '/v1/templates/base/export', undefined, { stream: true, timeoutMs: 120_000 });
        assert.equal(res.status, 200);
        const baseTar = path.join(work, 'base.tar');
        fs.writeFileSync(baseTar, Buffer.from(await res.arrayBuffer()));
        const layout = path.join(work, 'layout');
        fs.mkdirSync(layout);
        tar(['-xf', baseTar, '-C', layout], work);
        const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json')));
        const blob = (d) => path.join(layout, 'blobs', 'sha256', d.replace('sha256:', ''));
        const manifest = JSON.parse(fs.readFileSync(blob(index.manifests[0].digest)));
        const config = JSON.parse(fs.readFileSync(blob(manifest.config.digest)));
        const A = layerTar(path.join(work, 'A'), {
                'wt/keep': 'keep\n', 'wt/gone': 'gone\n', 'wt/dir/old': 'old\n', 'opq/old1': 'old1\n', 'opq/sub/old2': 'old2\n',
        });
        const B = layerTar(path.join(work, 'B'), {
                'wt/.wh.gone': '', 'opq/.wh..wh..opq': '', 'opq/new': 'new\n', 'etc/.wh.issue': '', 'wt/dir/added': 'added\n',
        });
        for (const buf of [A, B]) {
                const d = sha256(buf);
                fs.writeFileSync(path.join(layout, 'blobs', 'sha256', d), buf);
                manifest.layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${d}`, size: buf.length });
                config.rootfs.diff_ids.push(`sha256:${d}`);
        }
        config.config = { Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'FROM_IMAGE=yes'], WorkingDir: '/wt', Cmd: ['/bin/sh'] };
        const cbuf = Buffer.from(JSON.stringify(config));
        const cd = sha256(cbuf);
        fs.writeFileSync(path.join(layout, 'blobs', 'sha256', cd), cbuf);
        manifest.config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${cd}`, size: cbuf.length };
        const mbuf = Buffer.from(JSON.stringify(manifest));
        const md = sha256(mbuf);
        fs.writeFileSync(path.join(layout, 'blobs', 'sha256', md), mbuf);
        index.manifests = [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${md}`, size: mbuf.length,
                annotations: { 'org.opencontainers.image.ref.name': 'wt' } }];
        fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify(index));
        fs.rmSync(path.join(layout, 'manifest.json'), { force: true });
        const oci = path.join(work, 'oci.tar');
        tar(['-cf', oci, '-C', layout, '.'], work);
        // the same image as `docker save` writes it
        const docker = path.join(work, 'docker');
        fs.mkdirSync(docker);
        const layers = manifest.layers.map((l, i) => {
                fs.mkdirSync(path.join(docker, `l${i}`));
                fs.copyFileSync(blob(l.digest), path.join(docker, `l${i}`, 'layer.tar'));
                return `l${i}/layer.tar`;
        });
        fs.copyFileSync(path.join(layout, 'blobs', 'sha256', cd), path.join(docker, `${cd}.json`));
        fs.writeFileSync(path.join(docker, 'manifest.json'), JSON.stringify([{ Config: `${cd}.json`, RepoTags: ['wt-docker:v1'], Layers: layers }]));
        const save = path.join(work, 'docker.tar');
        tar(['-cf', save, '-C', docker, '.'], work);
        return { oci, save, nLayers: manifest.layers.length };
}

async function checkWhiteouts(api, name) {
        const sb = await api.createOk({ template: name });
        assert.equal(await api.sh(sb.id, 'ls -A /wt | sort | tr "\\n" " "'), 'dir keep ');
        assert.equal(await api.sh(sb.id, 'ls -A /wt/dir | sort | tr "\\n" " "'), 'added old ');
        assert.equal(await api.sh(sb.id, 'ls -A /opq | tr "\\n" " "'), 'new ', 'opaque dir hides the lower entries');
        assert.equal(await api.sh(sb.id, 'test -e /etc/issue && echo present || echo absent'), 'absent\n');
        assert.equal(await api.sh(sb.id, 'echo $FROM_IMAGE; pwd'), 'yes\n/wt\n', 'the image config applies');
        await api.del(sb.id);
}

test('OCI layout and docker save imports apply whiteouts and opaque dirs; export round-trips', { timeout: BUILD_TIMEOUT }, async (t) => {
        const api = fx.scope(t);
        const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-img-'));
        const names = [`wt-oci-${rand(3)}`, 'wt-docker:v1', `wt-rt-${rand(3)}`];
        t.after(async () => {
                for (const n of names) await removeTemplate(n);
                fs.rmSync(work, { recursive: true, force: true });
        });
        const img = await makeImage(api, work);

        let r = await api.request('POST', `/v1/templates/import?name=${names[0]}`, fs.readFileSync(img.oci),
                { raw: true, headers: { 'content-type': 'application/x-tar' }, timeoutMs: 120_000 });
        assert.equal(r.status, 201, describe(r));
        assert.equal(r.json.name, names[0]);
        assert.equal(r.json.source, 'import');
        assert.equal(r.json.layers.length, img.nLayers);
        const ociLayers = r.json.layers;
        await checkWhiteouts(api, names[0]);

        r = await api.request('POST', '/v1/templates/import', fs.readFileSync(img.save),
                { raw: true, headers: { 'content-type': 'application/x-tar' }, timeoutMs: 120_000 });
        assert.equal(r.status, 201, describe(r));
        assert.equal(r.json.name, 'wt-docker:v1', 'named from RepoTags');
        assert.deepEqual(r.json.layers, ociLayers, 'same layers, same digests');
        await checkWhiteouts(api, 'wt-docker:v1');

        // export -> import: the layer ids survive (the canonical tar is the blob)
        const ex = await api.request('GET', `/v1/templates/${names[0]}/export`, undefined, { stream: true, timeoutMs: 120_000 });
        assert.equal(ex.status, 200);
        assert.equal(ex.headers.get('content-type'), 'application/x-tar');
        const exported = Buffer.from(await ex.arrayBuffer());
        r = await api.request('POST', `/v1/templates/import?name=${names[2]}`, exported,
                { raw: true, headers: { 'content-type': 'application/x-tar' }, timeoutMs: 120_000 });
        assert.equal(r.status, 201, describe(r));
        assert.deepEqual(r.json.layers, ociLayers);
        assert.deepEqual(r.json.config.env, ['PATH=/usr/local/bin:/usr/bin:/bin', 'FROM_IMAGE=yes']);
        const base = await api.request('GET', '/v1/templates/base');
        assert.equal(ociLayers[0], base.json.layers[0], "base's layer round-trips to its own digest");
});

test('bad image tarballs are refused clearly', async (t) => {
        const api = fx.scope(t);
        let r = await api.request('POST', '/v1/templates/import?name=junk', Buffer.from('not a tarball at all'), { raw: true });
        expectError(r, 400, 'invalid_image');
        r = await api.request('POST', '/v1/templates/import?name=Bad%20Name', Buffer.from('x'), { raw: true });
        expectError(r, 400, 'invalid_value');
        r = await api.request('POST', '/v1/templates/import', Buffer.alloc(0), { raw: true });
        expectError(r, 400, 'invalid_value');
        expectError(await api.request('GET', '/v1/templates/nope/export'), 404, 'template_not_found');
});

/* An OCI layout whose one layer is made by python's tarfile from entries [name, type, arg]. */
function hostileImage(work, entries) {
        const layout = path.join(work, `hostile-${rand(3)}`);
        fs.mkdirSync(path.join(layout, 'blobs', 'sha256'), { recursive: true });
        const py = `
import io, json, sys, tarfile
entries = json.loads(sys.argv[1])
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as t:
    for name, kind, arg in entries:
        ti = tarfile.TarInfo(name)
        if kind == 'file':
            data = arg.encode(); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
        elif kind == 'symlink':
            ti.type = tarfile.SYMTYPE; ti.linkname = arg; t.addfile(ti)
        elif kind == 'hardlink':
            ti.type = tarfile.LNKTYPE; ti.linkname = arg; t.addfile(ti)
        elif kind == 'dir':
            ti.type = tarfile.DIRTYPE; ti.mode = 0o755; t.addfile(ti)
sys.stdout.buffer.write(buf.getvalue())
`;
        const r = spawnSync('python3', ['-c', py, JSON.stringify(entries)]);
        assert.equal(r.status, 0, String(r.stderr));
        const layer = r.stdout;
        const ld = sha256(layer);
        fs.writeFileSync(path.join(layout, 'blobs', 'sha256', ld), layer);
        const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${ld}`] } }));
        const cd = sha256(cfg);
        fs.writeFileSync(path.join(layout, 'blobs', 'sha256', cd), cfg);
        const mf = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
                config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${cd}`, size: cfg.length },
                layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${ld}`, size: layer.length }] }));
        const md = sha256(mf);
        fs.writeFileSync(path.join(layout, 'blobs', 'sha256', md), mf);
        fs.writeFileSync(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
        fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2,
                manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${md}`, size: mf.length }] }));
        const out = layout + '.tar';
        tar(['-cf', out, '-C', layout, '.'], work);
        return fs.readFileSync(out);
}

test('hostile images cannot write outside their layer', async (t) => {
        const api = fx.scope(t);
        const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-hostile-'));
        const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-outside-'));
        t.after(() => {
                fs.rmSync(work, { recursive: true, force: true });
                fs.rmSync(outside, { recursive: true, force: true });
        });
        const victim = path.join(outside, 'victim');
        fs.writeFileSync(victim, 'original\n');
        const cases = [
                ['dot-dot', [[`../../../../../../../..${outside}/escaped`, 'file', 'x']]],
                ['symlink then write through it', [['l', 'symlink', outside], ['l/escaped', 'file', 'x']]],
                ['symlink then overwrite a file through it', [['l', 'symlink', outside], ['l/victim', 'file', 'pwned']]],
                ['hard link to a host file', [['h', 'hardlink', victim]]],
                ['hard link through a symlink', [['l', 'symlink', outside], ['h', 'hardlink', 'l/victim']]],
        ];
        const before = (await api.request('GET', '/v1/layers')).json.count;
        for (const [what, entries] of cases) {
                const r = await api.request('POST', `/v1/templates/import?name=hostile-${rand(3)}`, hostileImage(work, entries),
                        { raw: true, headers: { 'content-type': 'application/x-tar' } });
                expectError(r, 400, 'invalid_image', undefined, what);
                assert.deepEqual(fs.readdirSync(outside), ['victim'], `${what}: nothing appears outside`);
                assert.equal(fs.readFileSync(victim, 'utf8'), 'original\n', `${what}: the host file is untouched`);
                assert.equal(fs.statSync(victim).nlink, 1, `${what}: no hard link to the host file`);
        }
        await api.request('POST', '/v1/layers/gc');
        assert.equal((await api.request('GET', '/v1/layers')).json.count, before);
});

test('GC removes only unreferenced layers; sandboxes keep theirs', { timeout: BUILD_TIMEOUT }, async (t) => {
        const api = fx.scope(t);
        const name = `t-gc-${rand(3)}`;
        t.after(() => removeTemplate(name));
        const { last } = await build(api, { name, from: 'base', files: [{ path: `/gc/${rand(8)}`, content: rand(16) }] });
        assert.equal(last.event, 'done');
        const own = last.data.layers.at(-1);
        const sb = await api.createOk({ template: name });
        let r = await api.request('DELETE', `/v1/templates/${name}`);
        assert.equal(r.status, 200, describe(r));
        expectError(await api.create({ template: name }), 404, 'template_not_found');
        let layers = (await api.request('GET', '/v1/layers')).json.layers;
        assert.ok(layers.find((l) => l.digest === own)?.holds >= 1, 'the sandbox holds its layer');
        r = await api.request('POST', '/v1/layers/gc');
        assert.equal(r.status, 200);
        layers = (await api.request('GET', '/v1/layers')).json.layers;
        assert.ok(layers.some((l) => l.digest === own), 'a layer in use survives gc');
        // the sandbox still works, and restarts from its pinned layers
        await api.stop(sb.id);
        assert.equal((await api.start(sb.id)).status, 200);
        assert.equal(await api.sh(sb.id, 'ls /gc | wc -l'), '1\n');
        await api.del(sb.id);
        await waitFor(async () => {
                await api.request('POST', '/v1/layers/gc');
                return !(await api.request('GET', '/v1/layers')).json.layers.some((l) => l.digest === own);
        }, 10_000, { what: 'unused layer collected' });
        const base = (await api.request('GET', '/v1/templates/base')).json.layers[0];
        assert.ok((await api.request('GET', '/v1/layers')).json.layers.some((l) => l.digest === base), 'base is kept');
});
