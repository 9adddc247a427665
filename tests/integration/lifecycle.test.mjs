// SPDX-License-Identifier: Apache-2.0
//
// Sandbox lifecycle over the native API v1: create (201, id format, state, template, timestamps, the
// whole Sandbox object), get, list (state and metadata filters, limit+cursor paging, offset), name
// uniqueness (409 name_taken), stop (exec refused with 409 invalid_state), start (files written before
// the stop survive), delete (204, then 404 sandbox_not_found), env from create visible in exec,
// metadata/resources/timeout round trips, health without auth, /metrics, and one sandbox from the
// `base` template (built on first use; the create is retried while it answers 503 template_not_ready).
// One daemon for the file; every test deletes its own sandboxes and checks that nothing leaked.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
        ID_RE, assertSandboxShape, assertTimestamp, describe, expectError, expectStatus, fmt, metricSum, parseMetrics,
        rand, unknownId, useDaemon,
} from '../lib/harness.mjs';

const fx = useDaemon();

test('sbxd prints its URL and the key it was given', () => {
        assert.match(fx.url, /^http:\/\/127\.0\.0\.1:\d+$/);
        assert.equal(fx.daemon.printedKey, fx.key, 'SBX_KEY= line should carry the --api-key value');
});

test('health answers without auth', async () => {
        const res = await fx.api.health();
        assert.equal(res.status, 200, describe(res));
        assert.equal(res.json.status, 'ok', describe(res));
        assert.match(res.json.version, /^\d+\.\d+\.\d+/, describe(res));
        assert.match(res.headers['content-type'] ?? '', /^application\/json/);
});

test('create returns a running, well-formed sandbox; get returns the same', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const before = Date.now();
        const res = await api.create({ template: 'host' });
        assert.equal(res.status, 201, describe(res));
        assert.match(res.headers['content-type'] ?? '', /^application\/json/);
        const sb = res.json;
        assertSandboxShape(sb);
        assert.match(sb.id, ID_RE);
        assert.equal(sb.state, 'running');
        assert.equal(sb.template, 'host');
        assert.equal(sb.name, null);
        assert.deepEqual(sb.env, {});
        assert.deepEqual(sb.metadata, {});
        assert.deepEqual(sb.timeout, { lifetime: null, idle: null, paused: null, execution: null });
        assert.equal(sb.expiresAt, null);
        assertTimestamp(sb.startedAt, 'startedAt of a running sandbox');
        const created = Date.parse(sb.createdAt);
        assert.ok(created >= before - 2000 && created <= Date.now() + 2000, `createdAt ${sb.createdAt} is not now`);
        assert.ok(Date.parse(sb.updatedAt) >= created, 'updatedAt >= createdAt');
        assert.ok(Date.parse(sb.startedAt) >= created, 'startedAt >= createdAt');

        // "returns when the sandbox is ready to exec": the very next request can exec
        const r = await api.run(sb.id, 'echo ready');
        assert.equal(r.exitCode, 0, fmt(r));
        assert.equal(r.stdout, 'ready\n');

        const g = await api.get(sb.id);
        assert.equal(g.status, 200, describe(g));
        assertSandboxShape(g.json);
        for (const k of ['id', 'name', 'state', 'template', 'createdAt', 'startedAt', 'env', 'metadata', 'resources', 'timeout', 'expiresAt']) {
                assert.deepEqual(g.json[k], sb[k], `GET differs from the create response in "${k}"`);
        }

        // two creates never share an id
        const other = await api.createOk();
        assert.notEqual(other.id, sb.id);
});

test('env from create is visible in exec; metadata, resources and timeout round-trip', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const env = { GREETING: 'hello world', EMPTY: '', QUOTES: `it's "quoted" $HOME`, UNI: 'é✓' };
        const metadata = { owner: 'tests', 'k.with-dots_and-dash': 'v', unicode: 'ünï✓', empty: '' };
        const resources = { cpu: 0.5, memory: 128, pids: 100 };
        const sb = await api.createOk({ env, metadata, resources, timeout: { lifetime: 3600, idle: 600 } });
        assert.deepEqual(sb.env, env);
        assert.deepEqual(sb.metadata, metadata);
        assert.deepEqual(sb.resources, resources);
        assert.deepEqual(sb.timeout, { lifetime: 3600, idle: 600, paused: null, execution: null });
        assertTimestamp(sb.expiresAt, 'expiresAt with a lifetime');
        const exp = Date.parse(sb.expiresAt) - Date.parse(sb.createdAt);
        assert.ok(Math.abs(exp - 3600_000) < 5000, `expiresAt should be createdAt + lifetime, is +${exp} ms`);

        const g = expectStatus(await api.get(sb.id), 200);
        assert.deepEqual(g.env, env);
        assert.deepEqual(g.metadata, metadata);
        assert.deepEqual(g.resources, resources);

        const r = await api.run(sb.id, 'printf "%s|%s|%s|%s|%s" "$GREETING" "${EMPTY-unset}" "$QUOTES" "$UNI" "${NOPE-unset}"');
        assert.equal(r.exitCode, 0, fmt(r));
        assert.equal(r.stdout, `hello world||it's "quoted" $HOME|é✓|unset`);
});

test('list: contains created sandboxes; state and metadata filters', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const grp = rand();
        const a = await api.createOk({ metadata: { grp, role: 'a' } });
        const b = await api.createOk({ metadata: { grp, role: 'b' } });
        const c = await api.createOk({ metadata: { grp: 'other-' + grp } });

        const all = expectStatus(await api.list(), 200);
        assert.deepEqual(Object.keys(all).sort(), ['nextCursor', 'sandboxes'], fmt(all));
        assert.ok(Array.isArray(all.sandboxes));
        for (const s of all.sandboxes) assertSandboxShape(s);
        for (const x of [a, b, c]) assert.ok(all.sandboxes.some((s) => s.id === x.id), `${x.id} not listed`);

        const byGrp = expectStatus(await api.list({ [`metadata.grp`]: grp }), 200);
        assert.deepEqual(byGrp.sandboxes.map((s) => s.id).sort(), [a.id, b.id].sort(), 'metadata.grp filter');
        assert.equal(byGrp.nextCursor, null);

        const two = expectStatus(await api.list({ 'metadata.grp': grp, 'metadata.role': 'b' }), 200);
        assert.deepEqual(two.sandboxes.map((s) => s.id), [b.id], 'two metadata filters AND together');

        const none = expectStatus(await api.list({ 'metadata.grp': 'no-such-' + grp }), 200);
        assert.deepEqual(none.sandboxes, []);
        assert.equal(none.nextCursor, null);

        const st = await api.stop(a.id);
        assert.equal(st.status, 200, describe(st));
        const stopped = expectStatus(await api.list({ state: 'stopped', 'metadata.grp': grp }), 200);
        assert.deepEqual(stopped.sandboxes.map((s) => s.id), [a.id], 'state=stopped filter');
        assert.equal(stopped.sandboxes[0].state, 'stopped');
        const running = expectStatus(await api.list({ state: 'running', 'metadata.grp': grp }), 200);
        assert.deepEqual(running.sandboxes.map((s) => s.id), [b.id], 'state=running filter');
        for (const s of expectStatus(await api.list({ state: 'running' }), 200).sandboxes) assert.equal(s.state, 'running');
});

test('list: limit + cursor paging and offset over 5 sandboxes', { timeout: 90_000 }, async (t) => {
        const api = fx.scope(t);
        const page = rand();
        const ids = [];
        for (let i = 0; i < 5; i++) ids.push((await api.createOk({ metadata: { page, i: String(i) } })).id);

        const full = expectStatus(await api.list({ 'metadata.page': page }), 200);
        assert.equal(full.sandboxes.length, 5);
        assert.equal(full.nextCursor, null);
        const order = full.sandboxes.map((s) => s.id);
        assert.deepEqual([...order].sort(), [...ids].sort());

        const p1 = expectStatus(await api.list({ 'metadata.page': page, limit: 2 }), 200);
        assert.equal(p1.sandboxes.length, 2, fmt(p1));
        assert.equal(typeof p1.nextCursor, 'string', 'a full page has a nextCursor');
        assert.ok(p1.nextCursor.length > 0);
        const p2 = expectStatus(await api.list({ 'metadata.page': page, limit: 2, cursor: p1.nextCursor }), 200);
        assert.equal(p2.sandboxes.length, 2, fmt(p2));
        assert.equal(typeof p2.nextCursor, 'string');
        const p3 = expectStatus(await api.list({ 'metadata.page': page, limit: 2, cursor: p2.nextCursor }), 200);
        assert.equal(p3.sandboxes.length, 1, fmt(p3));
        assert.equal(p3.nextCursor, null, 'the last page has nextCursor null');
        const paged = [...p1.sandboxes, ...p2.sandboxes, ...p3.sandboxes].map((s) => s.id);
        assert.deepEqual(paged, order, 'cursor pages concatenate to the unpaged order, no duplicates, no gaps');

        const o2 = expectStatus(await api.list({ 'metadata.page': page, limit: 2, offset: 2 }), 200);
        assert.deepEqual(o2.sandboxes.map((s) => s.id), order.slice(2, 4), 'offset=2 limit=2');
        const o4 = expectStatus(await api.list({ 'metadata.page': page, offset: 4 }), 200);
        assert.deepEqual(o4.sandboxes.map((s) => s.id), order.slice(4), 'offset=4');
        const o5 = expectStatus(await api.list({ 'metadata.page': page, offset: 5 }), 200);
        assert.deepEqual(o5.sandboxes, [], 'offset past the end');
        assert.equal(o5.nextCursor, null);

        const l1 = expectStatus(await api.list({ limit: 1 }), 200);
        assert.equal(l1.sandboxes.length, 1, 'limit=1 over a non-empty daemon');
});

test('names are unique: a second create with the same name is 409 name_taken', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const name = `n-${rand(4)}.x_y`;
        const a = await api.createOk({ name });
        assert.equal(a.name, name);
        assert.equal(expectStatus(await api.get(a.id), 200).name, name);
        const dup = await api.create({ template: 'host', name });
        expectError(dup, 409, 'name_taken');
        // the failed create did not leave a half-made sandbox behind
        const listed = expectStatus(await api.list(), 200).sandboxes.filter((s) => s.name === name);
        assert.deepEqual(listed.map((s) => s.id), [a.id]);
});

test('stop, exec refused, start; files survive; delete then 404', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const sb = await api.createOk();
        const token = rand();
        await api.sh(sb.id, `echo ${token} > /root/keep.txt`);

        const st = await api.stop(sb.id);
        assert.equal(st.status, 200, describe(st));
        assertSandboxShape(st.json);
        assert.equal(st.json.state, 'stopped');
        assert.equal(expectStatus(await api.get(sb.id), 200).state, 'stopped');

        const ex = await api.exec(sb.id, { cmd: 'true' });
        expectError(ex, 409, 'invalid_state');

        const sr = await api.start(sb.id);
        assert.equal(sr.status, 200, describe(sr));
        assertSandboxShape(sr.json);
        assert.equal(sr.json.state, 'running');
        assert.equal(expectStatus(await api.get(sb.id), 200).state, 'running');
        assert.equal(await api.sh(sb.id, 'cat /root/keep.txt'), `${token}\n`, 'file written before stop');
        // a fresh PID 1 after start
        assert.equal(await api.sh(sb.id, 'cat /proc/1/comm'), 'sbx-init\n');

        const del = await api.del(sb.id);
        assert.equal(del.status, 204, describe(del));
        assert.equal(del.text, '', '204 has no body');
        expectError(await api.get(sb.id), 404, 'sandbox_not_found');
        expectError(await api.del(sb.id), 404, 'sandbox_not_found');
        expectError(await api.exec(sb.id, { cmd: 'true' }), 404, 'sandbox_not_found');
        expectError(await api.start(sb.id), 404, 'sandbox_not_found');
        const listed = expectStatus(await api.list(), 200).sandboxes.find((s) => s.id === sb.id);
        if (listed) assert.equal(listed.state, 'deleted', 'a deleted sandbox may only be listed as deleted');
});

test('delete a stopped sandbox', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const sb = await api.createOk();
        assert.equal((await api.stop(sb.id)).status, 200);
        const del = await api.del(sb.id);
        assert.equal(del.status, 204, describe(del));
        expectError(await api.get(sb.id), 404, 'sandbox_not_found');
});

test('unknown id is 404 sandbox_not_found', async () => {
        expectError(await fx.api.get(unknownId()), 404, 'sandbox_not_found');
});

test('/metrics needs auth and reports creates, sandboxes by state and histograms', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        expectError(await api.metrics({ auth: false }), 401, 'unauthorized');

        const m0 = await api.metrics();
        assert.equal(m0.status, 200, describe(m0));
        assert.match(m0.headers['content-type'] ?? '', /^text\/plain/);
        assert.match(m0.headers['content-type'] ?? '', /version=0\.0\.4/);
        const before = metricSum(parseMetrics(m0.text), 'sbx_sandbox_creates_total') ?? 0;

        const sb = await api.createOk();
        await api.sh(sb.id, 'true');
        const m = await api.metrics();
        assert.equal(m.status, 200);
        const text = m.text;
        const mm = parseMetrics(text);
        assert.match(text, /^# TYPE sbx_sandbox_creates_total counter$/m);
        assert.equal(metricSum(mm, 'sbx_sandbox_creates_total'), before + 1, 'creates counter went up by one');
        const runningNow = expectStatus(await api.list({ state: 'running' }), 200).sandboxes.length;
        assert.ok(mm.has('sbx_sandboxes{state="running"}'), `no sbx_sandboxes{state="running"} in:\n${text}`);
        assert.equal(mm.get('sbx_sandboxes{state="running"}'), runningNow, 'running gauge matches the list');
        assert.match(text, /^# TYPE sbx_sandboxes gauge$/m);
        assert.match(text, /^sbx_\w*exec\w* /m, 'an exec metric');
        assert.match(text, /^# TYPE \w+ histogram$/m, 'a histogram');
        const inf = text.match(/^(\w+)_bucket\{(?:.*,)?le="\+Inf"\} (\d+(?:\.\d+)?)$/m);
        assert.ok(inf, 'a histogram with an le="+Inf" bucket');
        const h = inf[1];
        assert.match(text, new RegExp(`^${h}_bucket\\{(?:.*,)?le="[0-9.e+-]+"\\} \\d+`, 'm'), 'finite buckets');
        assert.match(text, new RegExp(`^${h}_sum(\\{.*\\})? [0-9.e+-]+$`, 'm'));
        assert.match(text, new RegExp(`^${h}_count(\\{.*\\})? \\d+$`, 'm'));
        for (const line of text.split('\n')) {
                if (line === '' || line.startsWith('#')) continue;
                assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+]?([0-9.eE+-]+|Inf|NaN)( \d+)?$/, `bad exposition line ${fmt(line)}`);
        }
});

test('base template: Debian bookworm with bash (built on first use)', { timeout: 200_000 }, async (t) => {
        const api = fx.scope(t);
        const res = await api.createWhenReady({ template: 'base' });
        assert.equal(res.status, 201, describe(res));
        assertSandboxShape(res.json);
        assert.equal(res.json.template, 'base');
        assert.equal(res.json.state, 'running');
        const id = res.json.id;
        assert.match(await api.sh(id, 'cat /etc/debian_version'), /^12\.\d+\n$/);
        const bash = await api.run(id, ['/bin/bash', '--version']);
        assert.equal(bash.exitCode, 0, fmt(bash));
        assert.match(bash.stdout, /GNU bash, version 5\./);
        assert.equal(await api.sh(id, 'test -s /etc/ssl/certs/ca-certificates.crt && echo certs'), 'certs\n', 'ca-certificates');
        // it is not the host template: minbase has no python3 (the host does)
        const py = await api.run(id, 'test -e /usr/bin/python3');
        assert.equal(py.exitCode, 1, 'base must not contain the host /usr');
        assert.equal(await api.sh(id, 'id -u'), '0\n');
        assert.equal(await api.sh(id, 'echo x > /root/f && cat /root/f'), 'x\n', 'root fs writable');
});
