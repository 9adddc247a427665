// SPDX-License-Identifier: Apache-2.0
//
// Bad input on every endpoint of the native API v1, and the exact error shape
// {"error":{"code":"snake_case","message":"..."}} on every error: malformed JSON (invalid_json), wrong
// types (invalid_type, message names the field), unknown fields (unknown_field), unknown and
// syntactically invalid ids (404), oversized bodies (413 payload_too_large, with Content-Length and
// chunked), a 20 KB header (431/413, the daemon answers afterwards), path traversal in cwd, NUL in
// strings, negative/huge numbers (out_of_range), missing or wrong auth (401 unauthorized), unknown
// routes (404), wrong methods (405), bad list query parameters; positive edges: an empty create body
// gives the documented defaults, chunked request bodies work, a body just under the limit is accepted.
// Ends by checking the daemon is alive and answers /v1/health.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
        assertSandboxShape, chunked, describe, expectError, fmt, rawHttp, unknownId, useDaemon,
} from '../lib/harness.mjs';

let sb; // a running host sandbox the exec/stop/start cases target
const fx = useDaemon({}, async (f) => {
        sb = await f.api.createOk();
});

const host = () => new URL(fx.url).host;
const post = (p, body, opts) => fx.api.request('POST', p, body, opts);
const createRaw = (text) => post('/v1/sandboxes', text, { raw: true });
const execPath = () => `/v1/sandboxes/${sb.id}/exec`;

// Endpoints that take a JSON body and how to reach them.
const BODY_ENDPOINTS = [
        ['create', () => '/v1/sandboxes'],
        ['exec', () => execPath()],
];

async function assertStillRunning() {
        const g = await fx.api.get(sb.id);
        assert.equal(g.status, 200, describe(g));
        assert.equal(g.json.state, 'running', 'a rejected request must not change the sandbox');
}

test('malformed JSON is 400 invalid_json on every body endpoint', async () => {
        const bad = ['{', '{"template":', '{"template":"host",}', 'not json', '{} x', "{'a':1}", '{"a":1}}', '\u00ff'];
        for (const [name, p] of BODY_ENDPOINTS) {
                for (const text of bad) {
                        expectError(await post(p(), text, { raw: true }), 400, 'invalid_json');
                }
                // invalid UTF-8 inside a string
                const bytes = Buffer.concat([Buffer.from('{"cmd":"echo '), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
                expectError(await post(p(), bytes, { raw: true }), 400, 'invalid_json', undefined, `${name}: invalid UTF-8`);
        }
        for (const p of [`/v1/sandboxes/${sb.id}/stop`, `/v1/sandboxes/${sb.id}/start`]) {
                expectError(await post(p, '{', { raw: true }), 400, 'invalid_json');
        }
        await assertStillRunning();
});

test('a JSON body that is not an object is rejected', async () => {
        for (const [, p] of BODY_ENDPOINTS) {
                for (const text of ['[]', '"str"', '42', 'null', 'true', '[{"cmd":"true"}]']) {
                        expectError(await post(p(), text, { raw: true }), 400, ['invalid_type', 'invalid_json']);
                }
        }
});

test('wrong types are 400 invalid_type naming the field', async () => {
        const createCases = [
                [{ template: 5 }, 'template'],
                [{ name: 7 }, 'name'],
                [{ name: ['a'] }, 'name'],
                [{ env: 'A=B' }, 'env'],
                [{ env: ['A=B'] }, 'env'],
                [{ env: { A: 1 } }, 'A'],
                [{ env: { A: null } }, 'A'],
                [{ metadata: [] }, 'metadata'],
                [{ metadata: { k: 1 } }, 'k'],
                [{ metadata: { k: { x: 'y' } } }, 'k'],
                [{ resources: 5 }, 'resources'],
                [{ resources: { cpu: '1' } }, 'cpu'],
                [{ resources: { memory: '64' } }, 'memory'],
                [{ resources: { memory: true } }, 'memory'],
                [{ resources: { pids: [] } }, 'pids'],
                [{ timeout: 10 }, 'timeout'],
                [{ timeout: { lifetime: '10' } }, 'lifetime'],
                [{ timeout: { idle: {} } }, 'idle'],
        ];
        for (const [body, field] of createCases) {
                expectError(await fx.api.create({ template: 'host', ...body }), 400, 'invalid_type', field);
        }
        // an integer field given a fraction
        for (const [body, field] of [[{ resources: { memory: 64.5 } }, 'memory'], [{ resources: { pids: 100.5 } }, 'pids'], [{ timeout: { lifetime: 1.5 } }, 'lifetime']]) {
                expectError(await fx.api.create({ template: 'host', ...body }), 400, ['invalid_type', 'invalid_value'], field);
        }
        const execCases = [
                [{ cmd: 5 }, 'cmd'],
                [{ cmd: ['echo'] }, 'cmd'],
                [{ argv: 'echo hi' }, 'argv'],
                [{ argv: [1, 2] }, 'argv'],
                [{ argv: ['/bin/echo', null] }, 'argv'],
                [{ cmd: 'true', cwd: 5 }, 'cwd'],
                [{ cmd: 'true', env: ['A=B'] }, 'env'],
                [{ cmd: 'true', env: { A: 1 } }, 'A'],
                [{ cmd: 'true', timeout: '5' }, 'timeout'],
                [{ cmd: 'true', timeout: 1.5 }, 'timeout'],
                [{ cmd: 'true', stdin: 5 }, 'stdin'],
                [{ cmd: 'true', stdin: ['x'] }, 'stdin'],
        ];
        for (const [body, field] of execCases) {
                const codes = field === 'timeout' && body.timeout === 1.5 ? ['invalid_type', 'invalid_value'] : 'invalid_type';
                expectError(await fx.api.exec(sb.id, body), 400, codes, field);
        }
});

test('unknown fields are 400 unknown_field naming the field', async () => {
        const cases = [
                ['/v1/sandboxes', { template: 'host', bogus: 1 }, 'bogus'],
                ['/v1/sandboxes', { template: 'host', Template: 'host' }, 'Template'],
                ['/v1/sandboxes', { template: 'host', resources: { memory: 64, bogusRes: 1 } }, 'bogusRes'],
                ['/v1/sandboxes', { template: 'host', timeout: { lifetime: 10, bogusT: 1 } }, 'bogusT'],
                [execPath(), { cmd: 'true', bogus: 1 }, 'bogus'],
                [execPath(), { cmd: 'true', Cmd: 'false' }, 'Cmd'],
                [`/v1/sandboxes/${sb.id}/stop`, { bogus: 1 }, 'bogus'],
                [`/v1/sandboxes/${sb.id}/start`, { bogus: 1 }, 'bogus'],
        ];
        for (const [p, body, field] of cases) expectError(await post(p, body), 400, 'unknown_field', field);
        await assertStillRunning();
});

test('exec needs exactly one of cmd and argv', async () => {
        expectError(await fx.api.exec(sb.id, {}), 400, 'missing_field');
        expectError(await fx.api.exec(sb.id, { cwd: '/tmp' }), 400, 'missing_field');
        expectError(await fx.api.exec(sb.id, { cmd: 'true', argv: ['/bin/true'] }), 400, ['invalid_value', 'bad_request']);
        expectError(await fx.api.exec(sb.id, { argv: [] }), 400, ['invalid_value', 'out_of_range']);
        expectError(await post(execPath(), undefined), 400, ['missing_field', 'invalid_json']);
});

test('invalid values: names, templates, env keys', async () => {
        const cases = [
                [{ name: 'has space' }, 'name'],
                [{ name: 'slash/x' }, 'name'],
                [{ name: '../etc' }, 'name'],
                [{ name: '-leading' }, 'name'],
                [{ name: 'x'.repeat(129) }, 'name'],
                [{ template: '' }, 'template'],
                [{ template: '../host' }, 'template'],
                [{ template: 'a/b' }, 'template'],
                [{ env: { '1BAD': 'x' } }, '1BAD'],
                [{ env: { 'A=B': 'x' } }, 'A=B'],
                [{ env: { '': 'x' } }, 'env'],
        ];
        for (const [body, field] of cases) {
                expectError(await fx.api.create({ template: 'host', ...body }), 400, ['invalid_value', 'out_of_range'], field);
        }
        const nt = await fx.api.create({ template: 'no-such-template' });
        assert.ok([400, 404].includes(nt.status), `unknown template: ${describe(nt)}`);
        expectError(nt, nt.status, ['invalid_value', 'not_found', 'template_not_found'], 'no-such-template');
        expectError(await fx.api.exec(sb.id, { cmd: 'true', env: { 'A B': 'x' } }), 400, 'invalid_value', 'A B');
        const ok = await fx.api.create({ template: 'host', name: 'x'.repeat(128) });
        assert.equal(ok.status, 201, `a 128-byte name is allowed: ${describe(ok)}`);
});

test('negative and huge numbers are 400 out_of_range', async () => {
        const create = [
                [{ resources: { memory: -1 } }, 'memory'],
                [{ resources: { memory: 0 } }, 'memory'],
                [{ resources: { memory: 7 } }, 'memory'],
                [{ resources: { memory: 65537 } }, 'memory'],
                [{ resources: { memory: 2 ** 53 } }, 'memory'],
                [{ resources: { cpu: 0 } }, 'cpu'],
                [{ resources: { cpu: -1 } }, 'cpu'],
                [{ resources: { cpu: 0.001 } }, 'cpu'],
                [{ resources: { cpu: 256.5 } }, 'cpu'],
                [{ resources: { cpu: 1e300 } }, 'cpu'],
                [{ resources: { pids: 15 } }, 'pids'],
                [{ resources: { pids: -1 } }, 'pids'],
                [{ resources: { pids: 65537 } }, 'pids'],
                [{ timeout: { lifetime: 0 } }, 'lifetime'],
                [{ timeout: { lifetime: -5 } }, 'lifetime'],
                [{ timeout: { lifetime: 2592001 } }, 'lifetime'],
                [{ timeout: { idle: 0 } }, 'idle'],
                [{ timeout: { idle: 2592001 } }, 'idle'],
        ];
        for (const [body, field] of create) expectError(await fx.api.create({ template: 'host', ...body }), 400, 'out_of_range', field);
        for (const t of [0, -1, 86401, 2 ** 40]) {
                expectError(await fx.api.exec(sb.id, { cmd: 'true', timeout: t }), 400, 'out_of_range', 'timeout');
        }
        // beyond int64: either the parser or the validator refuses it
        expectError(await createRaw('{"template":"host","resources":{"memory":123456789012345678901234567890}}'), 400,
                ['out_of_range', 'invalid_json', 'invalid_type']);
        // the edges themselves are accepted
        const edge = await fx.api.create({ template: 'host', resources: { memory: 8, pids: 16, cpu: 0.01 }, timeout: { lifetime: 2592000, idle: 1 } });
        assert.equal(edge.status, 201, `documented minimums are allowed: ${describe(edge)}`);
        assert.deepEqual(edge.json.resources, { cpu: 0.01, memory: 8, pids: 16 });
});

test('path traversal and relative paths in cwd are 400', async () => {
        for (const cwd of ['../../etc', '/root/../..', '/root/../../etc', '/tmp/../etc', 'tmp', '', './root', '/tmp/..']) {
                expectError(await fx.api.exec(sb.id, { cmd: 'pwd', cwd }), 400, 'invalid_value', 'cwd');
        }
        expectError(await fx.api.exec(sb.id, { cmd: 'pwd', cwd: '/' + 'a'.repeat(5000) }), 400, ['invalid_value', 'out_of_range'], 'cwd');
});

test('NUL bytes in strings are rejected', async () => {
        const nul = ['invalid_value', 'invalid_json'];
        for (const body of [{ name: 'a\u0000b' }, { template: 'host\u0000x' }, { env: { A: 'x\u0000y' } }, { env: { 'A\u0000B': 'x' } }]) {
                const res = await fx.api.create({ template: 'host', ...body });
                expectError(res, 400, nul);
        }
        for (const body of [{ cmd: 'echo a\u0000b' }, { argv: ['/bin/echo', 'a\u0000b'] }, { argv: ['/bin/echo\u0000x'] },
                { cmd: 'pwd', cwd: '/tmp\u0000/x' }, { cmd: 'true', env: { A: 'x\u0000y' } }]) {
                expectError(await fx.api.exec(sb.id, body), 400, nul);
        }
});

test('unknown ids and invalid id syntax are 404 on every id route', async () => {
        const ids = [unknownId(), 'nope', 'sbx_', 'sbx_short', 'SBX_AAAAAAAAAAAAAAAAAAAA', 'sbx_' + 'A'.repeat(20),
                'sbx_' + '0'.repeat(20), 'sbx_' + 'a'.repeat(21), sb.id + 'x', sb.id.toUpperCase(), 'sbx_%2F..%2Fetc', 'x'.repeat(300)];
        const codes = ['sandbox_not_found', 'not_found'];
        for (const id of ids) {
                expectError(await fx.api.get(id), 404, codes);
                expectError(await fx.api.del(id), 404, codes);
                expectError(await fx.api.stop(id), 404, codes);
                expectError(await fx.api.start(id), 404, codes);
                expectError(await fx.api.exec(id, { cmd: 'true' }), 404, codes);
        }
        expectError(await fx.api.get(unknownId()), 404, 'sandbox_not_found');
        // a NUL byte in the path may be refused as a bad request instead
        for (const p of ['/v1/sandboxes/%00', `/v1/sandboxes/${sb.id}%00`, `/v1/sandboxes/${sb.id}%00/exec`]) {
                const res = await fx.api.request('GET', p);
                assert.ok([400, 404].includes(res.status), describe(res));
                expectError(res, res.status, ['sandbox_not_found', 'not_found', 'route_not_found', 'bad_request']);
        }
        await assertStillRunning();
});

test('no auth or a wrong token is 401 unauthorized on every endpoint but health', async () => {
        const id = sb.id;
        const routes = [
                ['GET', '/v1/sandboxes'], ['POST', '/v1/sandboxes', { template: 'host' }], ['GET', `/v1/sandboxes/${id}`],
                ['DELETE', `/v1/sandboxes/${id}`], ['POST', `/v1/sandboxes/${id}/stop`], ['POST', `/v1/sandboxes/${id}/start`],
                ['POST', `/v1/sandboxes/${id}/exec`, { cmd: 'true' }], ['GET', '/metrics'],
                ['GET', `/v1/sandboxes/${unknownId()}`],
        ];
        const wrong = [
                null,
                `Bearer ${fx.key}x`,
                `Bearer ${fx.key.slice(0, -1)}`,
                'Bearer ',
                'Bearer',
                `Basic ${Buffer.from('x:' + fx.key).toString('base64')}`,
                fx.key,
                `Bearer  ${fx.key}x`,
                `Bearer ${'a'.repeat(fx.key.length)}`,
        ];
        for (const [m, p, body] of routes) {
                for (const auth of wrong) {
                        const res = await fx.api.request(m, p, body, { headers: { authorization: auth } });
                        expectError(res, 401, 'unauthorized');
                }
        }
        await assertStillRunning(); // the unauthenticated DELETE/stop did nothing
        assert.equal((await fx.api.health()).status, 200, 'health needs no auth');
});

test('unknown routes are 404; wrong methods are 405', async () => {
        for (const p of ['/', '/v1', '/v1/nope', '/v2/sandboxes', `/v1/sandboxes/${sb.id}/nope`, `/v1/sandboxes/${sb.id}/exec/x`,
                '/v1/sandboxes/a/b/c/d/e', '/metricsx', '/v1/healthz']) {
                expectError(await fx.api.request('GET', p), 404, ['route_not_found', 'not_found']);
        }
        const wrong = [
                ['PUT', '/v1/sandboxes'], ['DELETE', '/v1/sandboxes'], ['PATCH', '/v1/sandboxes'],
                ['PUT', `/v1/sandboxes/${sb.id}`], ['POST', `/v1/sandboxes/${sb.id}`],
                ['GET', `/v1/sandboxes/${sb.id}/exec`], ['GET', `/v1/sandboxes/${sb.id}/stop`], ['DELETE', `/v1/sandboxes/${sb.id}/start`],
                ['POST', '/v1/health'], ['DELETE', '/v1/health'], ['POST', '/metrics'],
        ];
        for (const [m, p] of wrong) expectError(await fx.api.request(m, p), 405, 'method_not_allowed');
        await assertStillRunning();
});

test('bad list query parameters', async () => {
        // query values are strings: a malformed number may be reported as any of these three
        const num = ['out_of_range', 'invalid_value', 'invalid_type'];
        const cases = [
                ['limit=0', 'out_of_range', 'limit'],
                ['limit=1001', 'out_of_range', 'limit'],
                ['limit=-1', num, 'limit'],
                ['limit=abc', num, 'limit'],
                ['limit=1.5', num, 'limit'],
                ['limit=', num, 'limit'],
                ['limit=99999999999999999999999', num, 'limit'],
                ['offset=-1', num, 'offset'],
                ['offset=x', num, 'offset'],
                ['state=bogus', 'invalid_value', 'state'],
                ['cursor=garbage', 'invalid_cursor', 'cursor'],
                ['bogus=1', 'unknown_field', 'bogus'],
        ];
        for (const [q, codes, field] of cases) expectError(await fx.api.list(q), 400, codes, field);
        assert.equal((await fx.api.list('limit=1000')).status, 200, 'limit=1000 is allowed');
        assert.equal((await fx.api.list('limit=1')).status, 200);
});

test('empty create body gives the documented defaults (template base)', { timeout: 200_000 }, async (t) => {
        const api = fx.scope(t);
        const res = await api.createWhenReady(undefined); // no body at all
        assert.equal(res.status, 201, describe(res));
        assertSandboxShape(res.json);
        const s = res.json;
        assert.equal(s.template, 'base');
        assert.equal(s.state, 'running');
        assert.equal(s.name, null);
        assert.deepEqual(s.env, {});
        assert.deepEqual(s.metadata, {});
        assert.deepEqual(s.resources, { cpu: 1, memory: 512, pids: 512 });
        assert.deepEqual(s.timeout, { lifetime: null, idle: null, paused: null, execution: null });
        assert.equal(s.expiresAt, null);
        const e = await api.createWhenReady({});
        assert.equal(e.status, 201, `{} body: ${describe(e)}`);
        assert.equal(e.json.template, 'base');
        const z = await api.create('', { raw: true }); // Content-Type json, zero length
        assert.equal(z.status, 201, `empty string body: ${describe(z)}`);
});

test('chunked request bodies are accepted', { timeout: 60_000 }, async () => {
        const body = JSON.stringify({ template: 'host', metadata: { chunked: 'yes' } });
        const res = await rawHttp(fx.url, [`POST /v1/sandboxes HTTP/1.1`, `Host: ${host()}`, `Authorization: Bearer ${fx.key}`,
                'Content-Type: application/json', 'Transfer-Encoding: chunked', 'Connection: close'].join('\r\n'), chunked(body));
        assert.equal(res.status, 201, fmt(res));
        fx.track(res.json.id);
        assert.deepEqual(res.json.metadata, { chunked: 'yes' });
        const ex = await rawHttp(fx.url, [`POST ${execPath()} HTTP/1.1`, `Host: ${host()}`, `Authorization: Bearer ${fx.key}`,
                'Content-Type: application/json', 'Transfer-Encoding: chunked', 'Connection: close'].join('\r\n'),
        chunked(JSON.stringify({ cmd: 'wc -c', stdin: 'z'.repeat(100_000) }), 4096));
        assert.equal(ex.status, 200, fmt(ex));
        assert.equal(ex.json.stdout, '100000\n');
        assert.equal((await fx.api.del(res.json.id)).status, 204);
});

test('a body just under the 1 MiB limit is accepted', { timeout: 60_000 }, async () => {
        const r = await fx.api.run(sb.id, 'wc -c', { stdin: 'q'.repeat(1_000_000) });
        assert.equal(r.stdout, '1000000\n');
});

test('oversized bodies are 413 payload_too_large', { timeout: 60_000 }, async () => {
        const big = (obj) => JSON.stringify(obj);
        const twoMiB = 'x'.repeat(2 * 1024 * 1024);
        const targets = [
                ['/v1/sandboxes', big({ template: 'host', metadata: { k: twoMiB } })],
                [execPath(), big({ cmd: 'wc -c', stdin: twoMiB })],
        ];
        for (const [p, body] of targets) {
                const head = [`POST ${p} HTTP/1.1`, `Host: ${host()}`, `Authorization: Bearer ${fx.key}`, 'Content-Type: application/json',
                        `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close'].join('\r\n');
                const res = await rawHttp(fx.url, head, body);
                expectError(res, 413, 'payload_too_large');
                const headC = [`POST ${p} HTTP/1.1`, `Host: ${host()}`, `Authorization: Bearer ${fx.key}`, 'Content-Type: application/json',
                        'Transfer-Encoding: chunked', 'Connection: close'].join('\r\n');
                const resC = await rawHttp(fx.url, headC, chunked(body, 64 * 1024));
                expectError(resC, 413, 'payload_too_large');
        }
        assert.equal((await fx.api.health()).status, 200);
        await assertStillRunning();
});

test('a 20 KB header is refused and the daemon keeps answering', { timeout: 30_000 }, async () => {
        const head = ['GET /v1/sandboxes HTTP/1.1', `Host: ${host()}`, `Authorization: Bearer ${fx.key}`, `X-Big: ${'h'.repeat(20 * 1024)}`, 'Connection: close'].join('\r\n');
        const res = await rawHttp(fx.url, head);
        assert.ok([431, 413].includes(res.status), `expected 431 or 413, got ${res.status} ${fmt(res.text)}`);
        const many = ['GET /v1/sandboxes HTTP/1.1', `Host: ${host()}`, `Authorization: Bearer ${fx.key}`,
                ...Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'v'.repeat(50)}`), 'Connection: close'].join('\r\n');
        const res2 = await rawHttp(fx.url, many);
        assert.ok([431, 413].includes(res2.status), `many headers: expected 431 or 413, got ${res2.status}`);
        const longUrl = await rawHttp(fx.url, [`GET /v1/sandboxes?metadata.x=${'u'.repeat(20 * 1024)} HTTP/1.1`, `Host: ${host()}`,
                `Authorization: Bearer ${fx.key}`, 'Connection: close'].join('\r\n'));
        assert.ok([414, 431, 413, 400].includes(longUrl.status), `20 KB URL: got ${longUrl.status}`);
        const h = await fx.api.health();
        assert.equal(h.status, 200);
        assert.equal((await fx.api.list()).status, 200);
});

test('garbage on the socket does not hurt the daemon', { timeout: 30_000 }, async () => {
        for (const head of ['GARBAGE', 'GET / HTTP/9.9', 'POST /v1/sandboxes HTTP/1.1\r\nContent-Length: -5']) {
                try {
                        const r = await rawHttp(fx.url, head, undefined, { timeoutMs: 5000 });
                        assert.ok(r.status >= 400 && r.status < 600, `${fmt(head)} -> ${r.status}`);
                } catch (e) {
                        // closing the connection is a fine answer to garbage; hanging until our timeout is not
                        assert.doesNotMatch(e.message, /timed out/, `${fmt(head)}: ${e.message}`);
                }
        }
        assert.equal((await fx.api.health()).status, 200);
});

test('after all of this the daemon is alive and healthy', async () => {
        assert.ok(fx.daemon.alive, fx.context());
        const h = await fx.api.health();
        assert.equal(h.status, 200);
        assert.equal(h.json.status, 'ok');
        await assertStillRunning();
        assert.equal(await fx.api.sh(sb.id, 'echo fine'), 'fine\n');
});
