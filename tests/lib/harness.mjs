// SPDX-License-Identifier: Apache-2.0
//
// Integration test harness: starts a real sbxd on 127.0.0.1:0 with a fresh data dir and a random API
// key, talks to it over HTTP (global fetch, or a raw socket for requests fetch cannot express), tracks
// every sandbox a test creates and deletes them all afterwards (also when the test failed), then checks
// that nothing leaked on the host: no cgroup directory named after a sandbox id, no process in such a
// cgroup, no mount mentioning an id or the data dir. No npm dependencies: Node 20 built-ins only.
//
// Environment: SBX_BUILD_DIR (holds sbxd, sbx, sbx-init; default <repo>/build), SBX_SOURCE_DIR.
// Every test in tests/integration uses this file; keep it free of test-specific policy.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach } from 'node:test';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export const SOURCE_DIR = process.env.SBX_SOURCE_DIR || path.resolve(HERE, '..', '..');
export const BUILD_DIR = process.env.SBX_BUILD_DIR || path.join(SOURCE_DIR, 'build');
export const SBXD = path.join(BUILD_DIR, 'sbxd');
export const SBX_CLI = path.join(BUILD_DIR, 'sbx');
export const SBX_INIT = path.join(BUILD_DIR, 'sbx-init');
// Shared by every test (and every run) so the base template is built once.
export const TEMPLATES_DIR = path.join(BUILD_DIR, 'test-templates');

export const ID_RE = /^sbx_[a-z2-7]{20}$/;
export const TS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(Z|[+-]\d{2}:\d{2})$/;
export const CODE_RE = /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/;
export const STATES = ['creating', 'running', 'stopping', 'stopped', 'starting', 'failed', 'deleted', 'paused',
        'hibernating', 'hibernated', 'waking'];
export const SANDBOX_KEYS = ['id', 'name', 'state', 'stateReason', 'template', 'createdAt', 'startedAt',
        'updatedAt', 'env', 'workdir', 'metadata', 'resources', 'timeout', 'expiresAt', 'terminatesAt', 'pausedAt'];

export const READY_TIMEOUT_MS = 20_000;
export const STOP_TIMEOUT_MS = 15_000;
export const LEAK_GRACE_MS = 2_000;          // async cgroup/mount cleanup allowed after DELETE returned
export const BASE_READY_TIMEOUT_MS = 120_000; // first create of `base` builds it (mmdebstrap)
// Full sbxd stdout+stderr of the last run of each test file, for post-mortems (the ring buffer only
// keeps the tail): BUILD_DIR/test-logs/<file>.sbxd.log, rewritten by each run of that file.
export const LOG_DIR = path.join(BUILD_DIR, 'test-logs');
const TEST_FILE = path.basename(process.argv.find((a) => a.endsWith('.test.mjs')) ?? 'adhoc', '.test.mjs');
let logStream = null;
function daemonLog() {
        if (logStream === null) {
                try {
                        fs.mkdirSync(LOG_DIR, { recursive: true });
                        logStream = fs.createWriteStream(path.join(LOG_DIR, `${TEST_FILE}.sbxd.log`), { flags: 'w' });
                        logStream.on('error', () => {});
                } catch {
                        logStream = false;
                }
        }
        return logStream || null;
}
const STDERR_KEEP = 200;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/* Settle with p, or with `fallback` after ms, whichever comes first; the timer never outlives the race
 * (a pending timer would keep the test process alive). */
export function withTimeout(p, ms, fallback = undefined) {
        let timer;
        const t = new Promise((r) => {
                timer = setTimeout(() => r(fallback), ms);
        });
        return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
export const randomKey = () => 'test-' + crypto.randomBytes(24).toString('hex');
export const rand = (n = 8) => crypto.randomBytes(n).toString('hex');
// A syntactically valid id that no daemon has handed out (ids are random 100-bit base32).
export const unknownId = () => 'sbx_' + Array.from(crypto.randomBytes(20), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b & 31]).join('');

/* Poll fn until it returns a truthy value (returned) or timeoutMs passes (throws with the last value or
 * error). fn may be async; exceptions count as "not yet". */
export async function waitFor(fn, timeoutMs = 5000, { interval = 50, what = 'condition' } = {}) {
        const deadline = Date.now() + timeoutMs;
        let last, lastErr;
        for (;;) {
                try {
                        last = await fn();
                        lastErr = undefined;
                        if (last) return last;
                } catch (e) {
                        lastErr = e;
                }
                if (Date.now() >= deadline) break;
                await sleep(interval);
        }
        const detail = lastErr ? `last error: ${lastErr.stack || lastErr}` : `last value: ${fmt(last)}`;
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${detail}`);
}

export function fmt(v, max = 2000) {
        let s;
        try {
                s = typeof v === 'string' ? v : JSON.stringify(v);
        } catch {
                s = String(v);
        }
        if (s === undefined) s = String(v);
        return s.length > max ? s.slice(0, max) + `... (${s.length} chars)` : s;
}

/* One-line description of a response for assertion messages. */
export function describe(res) {
        if (!res) return String(res);
        return `${res.method ?? ''} ${res.path ?? ''} -> ${res.status} ${fmt(res.text ?? '', 1500)}`;
}

class LineRing {
        constructor(keep) {
                this.keep = keep;
                this.lines = [];
                this.partial = '';
                this.listeners = new Set();
        }
        push(chunk) {
                const parts = (this.partial + chunk).split('\n');
                this.partial = parts.pop();
                for (const l of parts) {
                        this.lines.push(l);
                        if (this.lines.length > this.keep) this.lines.shift();
                        for (const f of this.listeners) f(l);
                }
        }
        text() {
                return (this.partial ? [...this.lines, this.partial] : this.lines).join('\n');
        }
}

function ensureExecutable(p, what) {
        try {
                fs.accessSync(p, fs.constants.X_OK);
        } catch (e) {
                throw new Error(`${what} not found or not executable at ${p} (${e.code}); build it first ` +
                        `(cmake --build ${BUILD_DIR}) or point SBX_BUILD_DIR at the build directory`);
        }
}

/* ------------------------------------------------------------------------------------------------ */
/* HTTP                                                                                              */

const utf8Fatal = new TextDecoder('utf-8', { fatal: true });
const utf8Lossy = new TextDecoder('utf-8');

function decodeBody(buf) {
        try {
                return { text: utf8Fatal.decode(buf), invalidUtf8: false };
        } catch {
                return { text: utf8Lossy.decode(buf), invalidUtf8: true };
        }
}

function parseJson(text) {
        if (text === '') return null;
        try {
                return JSON.parse(text);
        } catch {
                return null;
        }
}

/* HTTP request against base url. body: object -> JSON; with raw:true a string/Buffer sent verbatim;
 * undefined -> no body. opts.auth=false omits the Authorization header; opts.headers override.
 * Never throws on an HTTP status; throws on transport errors. Returns
 * {status, headers, json, text, invalidUtf8, ms, method, path}. */
export async function httpRequest(url, key, method, p, body, opts = {}) {
        const headers = {};
        if (opts.auth !== false && key) headers.authorization = `Bearer ${key}`;
        let payload;
        if (body !== undefined) {
                if (opts.raw) payload = body;
                else payload = JSON.stringify(body);
                headers['content-type'] = 'application/json';
        }
        for (const [k, v] of Object.entries(opts.headers ?? {})) {
                if (v === null || v === undefined) delete headers[k.toLowerCase()];
                else headers[k.toLowerCase()] = v;
        }
        const t0 = performance.now();
        const res = await fetch(url + p, {
                method,
                headers,
                body: payload,
                redirect: 'manual',
                signal: AbortSignal.timeout(opts.timeoutMs ?? 120_000),
        });
        if (opts.stream) return res;
        const buf = new Uint8Array(await res.arrayBuffer());
        const ms = performance.now() - t0;
        const { text, invalidUtf8 } = decodeBody(buf);
        return {
                status: res.status,
                headers: Object.fromEntries(res.headers),
                text,
                json: parseJson(text),
                invalidUtf8,
                bytes: buf.length,
                ms,
                method,
                path: p,
        };
}

/* A request written byte for byte on a fresh TCP connection, for what fetch cannot express (huge
 * headers, bodies the server rejects before reading them, odd paths, hand-made chunked bodies).
 * head: request line + headers without the final blank line. body: Buffer | string | Buffer[] (chunks,
 * written in order, stopping early once the server answered). Resolves with the first response
 * {status, headers, text, json} or rejects if the connection closed without one. */
export function rawHttp(url, head, body, { timeoutMs = 30_000 } = {}) {
        const u = new URL(url);
        const reqLine = head.split('\r\n')[0].split(' ');
        return new Promise((resolve, reject) => {
                const sock = net.connect({ host: u.hostname, port: Number(u.port) });
                let recv = Buffer.alloc(0);
                let done = false;
                let writeError = null;
                const timer = setTimeout(() => finish(new Error(`raw request timed out after ${timeoutMs} ms; got ${fmt(recv.toString('latin1'))}`)), timeoutMs);
                const finish = (err, val) => {
                        if (done) return;
                        done = true;
                        clearTimeout(timer);
                        sock.destroy();
                        if (err) reject(err);
                        else resolve(val);
                };
                const tryParse = (final) => {
                        const sep = recv.indexOf('\r\n\r\n');
                        if (sep < 0) return final ? finish(new Error(`connection closed without a response (write error: ${writeError?.code ?? 'none'}); got ${fmt(recv.toString('latin1'))}`)) : undefined;
                        const headText = recv.subarray(0, sep).toString('latin1');
                        const lines = headText.split('\r\n');
                        const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
                        if (!m) return finish(new Error(`bad status line ${fmt(lines[0])}`));
                        const headers = {};
                        for (const l of lines.slice(1)) {
                                const i = l.indexOf(':');
                                if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
                        }
                        let rest = recv.subarray(sep + 4);
                        let bodyBuf = null;
                        if (headers['content-length'] !== undefined) {
                                const n = Number(headers['content-length']);
                                if (rest.length >= n) bodyBuf = rest.subarray(0, n);
                        } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
                                const parts = [];
                                let off = 0;
                                for (;;) {
                                        const e = rest.indexOf('\r\n', off);
                                        if (e < 0) break;
                                        const n = parseInt(rest.subarray(off, e).toString('latin1'), 16);
                                        if (Number.isNaN(n)) break;
                                        if (n === 0) {
                                                bodyBuf = Buffer.concat(parts);
                                                break;
                                        }
                                        if (rest.length < e + 2 + n + 2) break;
                                        parts.push(rest.subarray(e + 2, e + 2 + n));
                                        off = e + 2 + n + 2;
                                }
                        } else if (final) {
                                bodyBuf = rest;
                        }
                        if (!bodyBuf && final) bodyBuf = rest;
                        if (!bodyBuf) return undefined;
                        const { text, invalidUtf8 } = decodeBody(bodyBuf);
                        finish(null, { status: Number(m[1]), headers, text, json: parseJson(text), invalidUtf8, writeError, method: reqLine[0], path: reqLine[1] });
                };
                sock.on('data', (d) => {
                        recv = Buffer.concat([recv, d]);
                        tryParse(false);
                });
                sock.on('end', () => tryParse(true));
                sock.on('close', () => tryParse(true));
                sock.on('error', (e) => {
                        // EPIPE/ECONNRESET while we are still writing a body the server refused: expected;
                        // whatever response arrived first is what counts.
                        writeError = e;
                });
                sock.on('connect', async () => {
                        sock.setNoDelay(true);
                        const chunks = body === undefined || body === null ? [] : Array.isArray(body) ? body : [body];
                        try {
                                sock.write(head + '\r\n\r\n');
                                // A server may refuse on the headers alone (e.g. Content-Length over the limit)
                                // and close at once; writing into that socket makes Node drop the unread
                                // response on EPIPE. Give it a moment to answer first, and yield between
                                // chunks so an answer is read before the next write.
                                if (chunks.length) await sleep(50);
                                for (const c of chunks) {
                                        if (done || recv.length > 0 || sock.destroyed) break;
                                        const buf = Buffer.isBuffer(c) ? c : Buffer.from(c);
                                        for (let off = 0; off < buf.length; off += 65536) {
                                                if (done || recv.length > 0 || sock.destroyed) break;
                                                await new Promise((r) => setImmediate(r));
                                                if (done || recv.length > 0 || sock.destroyed) break;
                                                if (!sock.write(buf.subarray(off, off + 65536))) {
                                                        await new Promise((r) => {
                                                                const t = setTimeout(r, 2000);
                                                                sock.once('drain', () => { clearTimeout(t); r(); });
                                                                sock.once('close', () => { clearTimeout(t); r(); });
                                                        });
                                                }
                                        }
                                }
                        } catch (e) {
                                writeError = e;
                        }
                });
        });
}

/* Encode body as HTTP/1.1 chunked transfer coding, split into pieces of `piece` bytes. */
export function chunked(body, piece = 7) {
        const buf = Buffer.from(body);
        const out = [];
        for (let off = 0; off < buf.length; off += piece) {
                const c = buf.subarray(off, off + piece);
                out.push(Buffer.concat([Buffer.from(c.length.toString(16) + '\r\n'), c, Buffer.from('\r\n')]));
        }
        out.push(Buffer.from('0\r\n\r\n'));
        return out;
}

/* ------------------------------------------------------------------------------------------------ */
/* Assertions shared by the test files                                                               */

/* Every error body is exactly {"error":{"code":"snake_case","message":"..."}} (JSON). */
export function assertErrorShape(res) {
        assert.ok(res.json && typeof res.json === 'object' && !Array.isArray(res.json),
                `error body is not a JSON object: ${describe(res)}`);
        assert.deepEqual(Object.keys(res.json), ['error'], `error body must have only "error": ${describe(res)}`);
        const e = res.json.error;
        assert.ok(e && typeof e === 'object' && !Array.isArray(e), `"error" is not an object: ${describe(res)}`);
        assert.deepEqual(Object.keys(e).sort(), ['code', 'message'], `error must have exactly code+message: ${describe(res)}`);
        assert.equal(typeof e.code, 'string', `error.code not a string: ${describe(res)}`);
        assert.match(e.code, CODE_RE, `error.code is not snake_case: ${describe(res)}`);
        assert.equal(typeof e.message, 'string', `error.message not a string: ${describe(res)}`);
        assert.ok(e.message.length > 0, `error.message is empty: ${describe(res)}`);
        assert.match(res.headers['content-type'] ?? '', /^application\/json/, `error content-type: ${describe(res)}`);
}

/* status + error shape + code (string or list of accepted codes) + optionally a field name the
 * message must contain; what: extra context for the assertion messages. */
export function expectError(res, status, codes, field, what) {
        const ctx = what ? `${what}: ${describe(res)}` : describe(res);
        assert.equal(res.status, status, `expected HTTP ${status}: ${ctx}`);
        assertErrorShape(res);
        if (codes) {
                const list = [].concat(codes);
                assert.ok(list.includes(res.json.error.code),
                        `expected error code ${list.join(' or ')}, got ${res.json.error.code}: ${ctx}`);
        }
        if (field) {
                assert.ok(res.json.error.message.includes(field),
                        `error message should name the field "${field}": ${ctx}`);
        }
        return res.json.error;
}

export function expectStatus(res, status) {
        assert.equal(res.status, status, `expected HTTP ${status}: ${describe(res)}`);
        return res.json;
}

export function assertTimestamp(v, what) {
        assert.equal(typeof v, 'string', `${what} should be an RFC 3339 string, got ${fmt(v)}`);
        assert.match(v, TS_RE, `${what} should be RFC 3339 with milliseconds`);
        assert.ok(!Number.isNaN(Date.parse(v)), `${what} does not parse: ${v}`);
}

/* The documented Sandbox object. */
export function assertSandboxShape(sb) {
        assert.ok(sb && typeof sb === 'object', `sandbox is not an object: ${fmt(sb)}`);
        for (const k of SANDBOX_KEYS) assert.ok(k in sb, `sandbox lacks "${k}": ${fmt(sb)}`);
        assert.match(sb.id, ID_RE);
        assert.ok(sb.name === null || typeof sb.name === 'string', `name: ${fmt(sb.name)}`);
        assert.ok(STATES.includes(sb.state), `state ${fmt(sb.state)} not one of ${STATES}`);
        assert.ok(sb.stateReason === null || typeof sb.stateReason === 'string', `stateReason: ${fmt(sb.stateReason)}`);
        assert.equal(typeof sb.template, 'string');
        assertTimestamp(sb.createdAt, 'createdAt');
        assertTimestamp(sb.updatedAt, 'updatedAt');
        if (sb.startedAt !== null) assertTimestamp(sb.startedAt, 'startedAt');
        if (sb.expiresAt !== null) assertTimestamp(sb.expiresAt, 'expiresAt');
        for (const k of ['env', 'metadata']) {
                assert.ok(sb[k] && typeof sb[k] === 'object' && !Array.isArray(sb[k]), `${k}: ${fmt(sb[k])}`);
                for (const v of Object.values(sb[k])) assert.equal(typeof v, 'string', `${k} values are strings`);
        }
        assert.equal(typeof sb.resources.cpu, 'number', `resources.cpu: ${fmt(sb.resources)}`);
        assert.ok(Number.isInteger(sb.resources.memory), `resources.memory: ${fmt(sb.resources)}`);
        assert.ok(Number.isInteger(sb.resources.pids), `resources.pids: ${fmt(sb.resources)}`);
        for (const k of ['lifetime', 'idle', 'paused', 'execution']) {
                assert.ok(k in sb.timeout, `timeout.${k} missing: ${fmt(sb.timeout)}`);
                assert.ok(sb.timeout[k] === null || Number.isInteger(sb.timeout[k]), `timeout.${k}: ${fmt(sb.timeout)}`);
        }
}

/* Prometheus text -> Map("name{labels}" -> number). */
export function parseMetrics(text) {
        const m = new Map();
        for (const line of text.split('\n')) {
                if (line === '' || line.startsWith('#')) continue;
                const i = line.lastIndexOf(' ');
                let key = line.slice(0, i).trim();
                let val = line.slice(i + 1).trim();
                // optional timestamp: "name value ts"
                const j = key.lastIndexOf(' ');
                if (j > 0 && !key.endsWith('}') && /^-?[0-9.eE+-]+$|^[+-]?Inf$|^NaN$/.test(key.slice(j + 1))) {
                        val = key.slice(j + 1);
                        key = key.slice(0, j).trim();
                }
                m.set(key, Number(val.replace(/^\+?Inf$/, 'Infinity')));
        }
        return m;
}

/* Sum of every series of a metric family member (name alone or name{...}). */
export function metricSum(map, name) {
        let sum = 0;
        let found = false;
        for (const [k, v] of map) {
                if (k === name || k.startsWith(name + '{')) {
                        sum += v;
                        found = true;
                }
        }
        return found ? sum : undefined;
}

/* ------------------------------------------------------------------------------------------------ */
/* API client                                                                                        */

/* Thin client over the native API. Every method returns the raw response ({status, json, ...}) and never
 * asserts, except the *Ok helpers. Every 201 from create is reported to the trackers so the fixture can
 * delete it. getDaemon() is re-read on every call, so the same Api follows a restarted daemon. */
export class Api {
        constructor(getDaemon, trackers = []) {
                this.getDaemon = getDaemon;
                this.trackers = trackers;
        }
        get d() {
                const d = this.getDaemon();
                if (!d) throw new Error('no daemon is running');
                return d;
        }
        request(method, p, body, opts) {
                return this.d.request(method, p, body, opts);
        }
        track(id) {
                for (const t of this.trackers) t(id);
        }
        async create(body, opts = {}) {
                const res = await this.request('POST', '/v1/sandboxes', body, opts);
                if (res.status === 201 && typeof res.json?.id === 'string') this.track(res.json.id);
                return res;
        }
        /* Create and assert 201 + a running, well-formed sandbox. Defaults to the host template. */
        async createOk(body = {}) {
                const b = { template: 'host', ...body };
                const res = await this.create(b);
                assert.equal(res.status, 201, `create ${fmt(b)}: ${describe(res)}`);
                assertSandboxShape(res.json);
                assert.equal(res.json.state, 'running', `created sandbox not running: ${describe(res)}`);
                return res.json;
        }
        /* Create, retrying while the template is still being built (503 template_not_ready). */
        async createWhenReady(body, timeoutMs = BASE_READY_TIMEOUT_MS) {
                const deadline = Date.now() + timeoutMs;
                for (;;) {
                        const res = await this.create(body, { timeoutMs });
                        if (res.status !== 503) return res;
                        expectError(res, 503, 'template_not_ready');
                        if (Date.now() > deadline) {
                                throw new Error(`template still not ready after ${timeoutMs} ms: ${describe(res)}`);
                        }
                        await sleep(1000);
                }
        }
        get(id) {
                return this.request('GET', `/v1/sandboxes/${id}`);
        }
        list(query = {}) {
                const q = typeof query === 'string' ? query : new URLSearchParams(query).toString();
                return this.request('GET', '/v1/sandboxes' + (q ? '?' + q : ''));
        }
        /* Every sandbox the daemon lists (follows nextCursor). */
        async listAll(query = {}) {
                const out = [];
                let cursor = null;
                for (let i = 0; i < 1000; i++) {
                        const q = { ...query, limit: '1000' };
                        if (cursor) q.cursor = cursor;
                        const res = await this.list(q);
                        assert.equal(res.status, 200, `list: ${describe(res)}`);
                        out.push(...res.json.sandboxes);
                        cursor = res.json.nextCursor;
                        if (!cursor) return out;
                }
                throw new Error('list never ended');
        }
        del(id) {
                return this.request('DELETE', `/v1/sandboxes/${id}`);
        }
        stop(id) {
                return this.request('POST', `/v1/sandboxes/${id}/stop`);
        }
        start(id) {
                return this.request('POST', `/v1/sandboxes/${id}/start`);
        }
        pause(id) {
                return this.request('POST', `/v1/sandboxes/${id}/pause`);
        }
        resume(id) {
                return this.request('POST', `/v1/sandboxes/${id}/resume`);
        }
        hibernate(id) {
                return this.request('POST', `/v1/sandboxes/${id}/hibernate`);
        }
        wake(id) {
                return this.request('POST', `/v1/sandboxes/${id}/wake`);
        }
        patch(id, body) {
                return this.request('PATCH', `/v1/sandboxes/${id}`, body);
        }
        events(id, query = {}) {
                const q = new URLSearchParams(query).toString();
                return this.request('GET', `/v1/sandboxes/${id}/events` + (q ? '?' + q : ''));
        }
        exec(id, body, opts = {}) {
                return this.request('POST', `/v1/sandboxes/${id}/exec`, body, { timeoutMs: 180_000, ...opts });
        }
        /* Exec (string -> cmd form, array -> argv form, object -> full body) and assert 200. */
        async run(id, what, extra = {}) {
                const body = typeof what === 'string' ? { cmd: what } : Array.isArray(what) ? { argv: what } : what;
                const res = await this.exec(id, { ...body, ...extra });
                assert.equal(res.status, 200, `exec ${fmt(body)}: ${describe(res)}`);
                const r = res.json;
                for (const k of ['exitCode', 'stdout', 'stderr', 'durationMs', 'timedOut', 'truncated', 'oomKilled']) {
                        assert.ok(k in r, `exec result lacks "${k}": ${describe(res)}`);
                }
                return r;
        }
        /* run() and assert exit code 0; returns stdout. */
        async sh(id, cmd, extra = {}) {
                const r = await this.run(id, cmd, extra);
                assert.equal(r.exitCode, 0, `exec ${fmt(cmd)} failed: ${fmt(r)}`);
                return r.stdout;
        }
        /* NDJSON streaming exec. Returns {status, headers, lines:[{at, obj, raw}], text, invalidUtf8}. `at` is
         * ms since the request was sent. */
        async execStream(id, body, { timeoutMs = 60_000 } = {}) {
                const t0 = performance.now();
                const res = await this.request('POST', `/v1/sandboxes/${id}/exec`, body,
                        { stream: true, headers: { accept: 'application/x-ndjson' }, timeoutMs });
                const out = { status: res.status, headers: Object.fromEntries(res.headers), lines: [], text: '', invalidUtf8: false };
                if (!res.body) return out;
                const dec = new TextDecoder('utf-8', { fatal: true });
                let partial = '';
                for await (const chunk of res.body) {
                        const at = performance.now() - t0;
                        let s;
                        try {
                                s = dec.decode(chunk, { stream: true });
                        } catch {
                                out.invalidUtf8 = true;
                                s = utf8Lossy.decode(chunk, { stream: true });
                        }
                        out.text += s;
                        const parts = (partial + s).split('\n');
                        partial = parts.pop();
                        for (const raw of parts) {
                                if (raw === '') continue;
                                let obj = null;
                                try {
                                        obj = JSON.parse(raw);
                                } catch {
                                        /* kept as obj null; tests assert every line parses */
                                }
                                out.lines.push({ at, obj, raw });
                        }
                }
                if (partial !== '') out.lines.push({ at: performance.now() - t0, obj: parseJson(partial), raw: partial, unterminated: true });
                return out;
        }
        health(opts) {
                return this.request('GET', '/v1/health', undefined, { auth: false, ...opts });
        }
        metrics(opts) {
                return this.request('GET', '/metrics', undefined, opts);
        }
}

/* ------------------------------------------------------------------------------------------------ */
/* Daemon process                                                                                    */

export class Daemon {
        constructor(proc, dataDir, key, args) {
                this.proc = proc;
                this.pid = proc.pid;
                this.dataDir = dataDir;
                this.key = key;
                this.args = args;
                this.url = null;
                this.printedKey = null;
                this.stdout = new LineRing(STDERR_KEEP);
                this.stderr = new LineRing(STDERR_KEEP);
                this.exitInfo = null;       // {code, signal} once exited
                this.expectedExit = false;  // set by stop()/kill9()
                this.exited = new Promise((resolve) => {
                        proc.on('exit', (code, signal) => {
                                this.exitInfo ??= { code, signal };
                                resolve(this.exitInfo);
                        });
                        // a failed spawn (EACCES, ENOEXEC) may never emit 'exit'
                        proc.on('error', (e) => {
                                this.exitInfo ??= { code: null, signal: null, error: e.message };
                                resolve(this.exitInfo);
                        });
                });
                proc.stdout.setEncoding('utf8');
                proc.stderr.setEncoding('utf8');
                // Keep draining both pipes for the daemon's whole life: a full pipe would block its logging.
                this.log = daemonLog();
                this.log?.write(`\n===== sbxd pid ${proc.pid} started ${new Date().toISOString()}: ${args.join(' ')}\n`);
                proc.stdout.on('data', (c) => {
                        this.stdout.push(c);
                        this.log?.write(c);
                });
                proc.stderr.on('data', (c) => {
                        this.stderr.push(c);
                        this.log?.write(c);
                });
                this.api = new Api(() => this);
        }
        get alive() {
                return this.exitInfo === null;
        }
        stderrTail() {
                return this.stderr.text();
        }
        /* Failure context: how the daemon ended (if it did) and its last stderr lines. */
        context() {
                const st = this.exitInfo ? `sbxd pid ${this.pid} exited (code ${this.exitInfo.code}, signal ${this.exitInfo.signal})` : `sbxd pid ${this.pid} running`;
                const log = this.log ? ` (full log: ${this.log.path})` : '';
                return `${st}; last ${STDERR_KEEP} stderr lines${log}:\n${this.stderrTail() || '(none)'}`;
        }
        async request(method, p, body, opts = {}) {
                if (!this.url) throw new Error('daemon not ready');
                try {
                        return await httpRequest(this.url, this.key, method, p, body, opts);
                } catch (e) {
                        // a transport error often means the daemon just died: say so (once, with its stderr)
                        if (this.alive) await withTimeout(this.exited, 300);
                        if (!this.alive && !this.expectedExit) {
                                e.message = `${method} ${p} failed: ${e.message}; ` +
                                        (this.contextShown ? `sbxd pid ${this.pid} is not running` : this.context());
                                this.contextShown = true;
                        }
                        throw e;
                }
        }
        /* SIGTERM and wait; SIGKILL and throw if it does not exit within timeoutMs. Returns {code, signal}. */
        async stop(timeoutMs = STOP_TIMEOUT_MS) {
                this.expectedExit = true;
                if (!this.alive) return this.exitInfo;
                this.proc.kill('SIGTERM');
                const r = await withTimeout(this.exited, timeoutMs, null);
                if (r) return r;
                this.proc.kill('SIGKILL');
                await this.exited;
                throw new Error(`sbxd did not exit within ${timeoutMs} ms of SIGTERM\n${this.context()}`);
        }
        async kill9() {
                this.expectedExit = true;
                if (!this.alive) return this.exitInfo;
                this.proc.kill('SIGKILL');
                return this.exited;
        }
}

/* Spawn sbxd and wait until it prints SBX_URL=... on stdout. Options: dataDir (default: a fresh mkdtemp),
 * apiKey (default: random), extraArgs (the pool is off unless they set --pool-size), readyTimeoutMs. Fails fast, with the daemon's stderr, when it
 * exits or does not become ready. */
export async function startDaemon({ dataDir, apiKey, extraArgs = [], readyTimeoutMs = READY_TIMEOUT_MS } = {}) {
        ensureExecutable(SBXD, 'sbxd');
        const ownDir = !dataDir;
        dataDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-it-'));
        const key = apiKey ?? randomKey();
        fs.mkdirSync(TEMPLATES_DIR, { recursive: true });
        // No pool unless a test asks for one: pooled sandboxes live in the data dir like user
        // sandboxes, so the leak checks of every other test would see them (pool.test.mjs covers it).
        const pool = extraArgs.includes('--pool-size') ? [] : ['--pool-size', '0'];
        const args = ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--api-key', key,
                '--templates-dir', TEMPLATES_DIR, '--log-level', 'debug', ...pool, ...extraArgs];
        const proc = spawn(SBXD, args, { stdio: ['ignore', 'pipe', 'pipe'] });
        const d = new Daemon(proc, dataDir, key, args);
        d.ownDataDir = ownDir;
        try {
                await new Promise((resolve, reject) => {
                        let urlSeen = false;
                        let keyTimer = null;
                        const timer = setTimeout(() => {
                                reject(new Error(`sbxd did not print SBX_URL= within ${readyTimeoutMs} ms\n` +
                                        `command: ${SBXD} ${args.join(' ')}\nstdout:\n${d.stdout.text()}\n${d.context()}`));
                        }, readyTimeoutMs);
                        const done = () => {
                                clearTimeout(timer);
                                clearTimeout(keyTimer);
                                resolve();
                        };
                        d.stdout.listeners.add((line) => {
                                let m;
                                if ((m = /^SBX_URL=(http:\/\/127\.0\.0\.1:(\d+))\/?\s*$/.exec(line))) {
                                        d.url = m[1];
                                        urlSeen = true;
                                        if (d.printedKey !== null) done();
                                        else keyTimer = setTimeout(done, 1000); // SBX_KEY may follow
                                } else if ((m = /^SBX_KEY=(.*?)\s*$/.exec(line))) {
                                        d.printedKey = m[1];
                                        if (urlSeen) done();
                                }
                        });
                        d.exited.then((info) => {
                                clearTimeout(timer);
                                if (info.error) reject(new Error(`cannot spawn ${SBXD}: ${info.error}`));
                                reject(new Error(`sbxd exited before it was ready (code ${info.code}, signal ${info.signal})\n` +
                                        `command: ${SBXD} ${args.join(' ')}\nstdout:\n${d.stdout.text()}\nstderr:\n${d.stderrTail()}`));
                        });
                });
        } catch (e) {
                if (d.alive) await d.kill9();
                if (ownDir) removeDataDir(dataDir);
                throw e;
        }
        return d;
}

/* ------------------------------------------------------------------------------------------------ */
/* Host-side inspection (leaks, cgroups, processes, mounts)                                           */

const idTokens = (ids) => [...ids].map((id) => id.replace(/^sbx_/, ''));

/* Every directory under /sys/fs/cgroup (all hierarchies, v1 and v2) whose name contains one of the ids. */
export function findCgroupDirs(ids) {
        const toks = idTokens(ids);
        if (toks.length === 0) return [];
        const r = spawnSync('find', ['/sys/fs/cgroup', '-type', 'd'], { encoding: 'utf8', maxBuffer: 256 << 20 });
        return (r.stdout ?? '').split('\n').filter((p) => p && toks.some((t) => path.basename(p).includes(t)));
}

function readFileOr(p, dflt = '') {
        try {
                return fs.readFileSync(p, 'utf8');
        } catch {
                return dflt;
        }
}

/* State letter and parent pid of a host process (null if gone). */
export function procStat(pid) {
        const st = readFileOr(`/proc/${pid}/stat`);
        const m = /\) (\S) (\d+)/.exec(st);
        return m ? { state: m[1], ppid: Number(m[2]) } : null;
}

/* Host pids whose cgroup path (any hierarchy) contains one of the ids: [{pid, comm, cgroup, state,
 * ppid}]. Zombies are included (state "Z"); callers decide whether an unreaped child matters. */
export function findProcsInSandboxCgroups(ids) {
        const toks = idTokens(ids);
        if (toks.length === 0) return [];
        const out = [];
        for (const e of fs.readdirSync('/proc')) {
                if (!/^\d+$/.test(e)) continue;
                const cg = readFileOr(`/proc/${e}/cgroup`);
                if (toks.some((t) => cg.includes(t))) {
                        out.push({ pid: Number(e), comm: readFileOr(`/proc/${e}/comm`).trim(), cgroup: cg.trim().replace(/\n/g, ' | '), ...procStat(e) });
                }
        }
        // cgroup.procs of the matching dirs too (covers cgroup namespaces that hide the path)
        for (const dir of findCgroupDirs(ids)) {
                for (const l of readFileOr(path.join(dir, 'cgroup.procs')).split('\n')) {
                        const pid = Number(l);
                        if (l && !out.some((p) => p.pid === pid) && fs.existsSync(`/proc/${pid}`)) {
                                out.push({ pid, comm: readFileOr(`/proc/${pid}/comm`).trim(), cgroup: dir, ...procStat(pid) });
                        }
                }
        }
        return out;
}

export function mountLines(pid = 'self') {
        return readFileOr(`/proc/${pid}/mountinfo`).split('\n').filter(Boolean);
}

/* Ids (sbx_...) appearing anywhere under the data dir: file names and file contents (the store, its WAL,
 * per-sandbox directories). Used to find sandboxes a test never saw a 201 for (e.g. an interrupted
 * create), so their leftovers can be checked too. */
export function scanDataDirIds(dataDir) {
        const ids = new Set();
        const re = /sbx_[a-z2-7]{20}/g;
        // -xdev: never descend into a mount (a sandbox root mounted under the data dir would expose the host's /usr)
        const r = spawnSync('find', [dataDir, '-xdev', '-maxdepth', '6'], { encoding: 'utf8', maxBuffer: 256 << 20 });
        for (const p of (r.stdout ?? '').split('\n')) {
                if (!p) continue;
                for (const m of path.basename(p).matchAll(re)) ids.add(m[0]);
                let st;
                try {
                        st = fs.lstatSync(p);
                } catch {
                        continue;
                }
                // the store and its WAL/journal sit near the top; do not read sandbox upper layers
                if (st.isFile() && st.size > 0 && st.size < 64 << 20 && path.relative(dataDir, p).split(path.sep).length <= 2) {
                        let txt;
                        try {
                                txt = fs.readFileSync(p).toString('latin1');
                        } catch {
                                continue;
                        }
                        for (const m of txt.matchAll(re)) ids.add(m[0]);
                }
        }
        return ids;
}

/* Directories under dataDir (not crossing mounts) named after one of the ids. */
export function findDataDirs(ids, dataDir) {
        const toks = idTokens(ids);
        if (!dataDir || toks.length === 0) return [];
        const r = spawnSync('find', [dataDir, '-xdev', '-maxdepth', '4', '-type', 'd'], { encoding: 'utf8', maxBuffer: 64 << 20 });
        return (r.stdout ?? '').split('\n').filter((p) => p && toks.some((t) => path.basename(p).includes(t)));
}

/* Leftovers of the given (deleted) sandbox ids, as a list of human-readable problems: cgroups named
 * after them (any hierarchy), processes in such cgroups (a zombie only if sbxd is its unreaping parent:
 * orphans re-parented to the host's init are reaped there), mounts mentioning them (host and, with
 * daemonPid, sbxd's mount namespace), and with dataDir, their directories on disk. */
export function leakProblems(ids, { daemonPid = null, dataDir = null } = {}) {
        const problems = [];
        const toks = idTokens(ids);
        if (toks.length === 0) return problems;
        for (const d of findCgroupDirs(ids)) problems.push(`cgroup left behind: ${d}`);
        for (const p of findProcsInSandboxCgroups(ids)) {
                if (p.state === 'Z' && p.ppid !== daemonPid) continue;
                problems.push(`process left behind: pid ${p.pid} (${p.comm}, state ${p.state}, parent ${p.ppid}) in ${p.cgroup}`);
        }
        for (const d of findDataDirs(ids, dataDir)) problems.push(`sandbox directory left on disk: ${d}`);
        const nsList = [['host', 'self']];
        if (daemonPid && fs.existsSync(`/proc/${daemonPid}`)) nsList.push([`sbxd pid ${daemonPid}`, daemonPid]);
        for (const [what, pid] of nsList) {
                for (const l of mountLines(pid)) {
                        if (toks.some((t) => l.includes(t))) problems.push(`mount left behind (${what} mount ns): ${l}`);
                }
        }
        return problems;
}

/* Wait up to graceMs for every leftover of ids to disappear; throws listing what remains. */
export async function assertNoLeaks(ids, { daemonPid = null, dataDir = null, graceMs = LEAK_GRACE_MS } = {}) {
        let problems = [];
        const deadline = Date.now() + graceMs;
        for (;;) {
                problems = leakProblems(ids, { daemonPid, dataDir });
                if (problems.length === 0 || Date.now() >= deadline) break;
                await sleep(100);
        }
        if (problems.length) {
                throw new Error(`leaks after deleting ${[...ids].join(', ')} (waited ${graceMs} ms):\n  ${problems.join('\n  ')}`);
        }
}

/* Host processes (other than exceptPids) whose command line carries `--data-dir dataDir`: children an
 * sbxd forked without exec'ing, still alive after that sbxd was killed (they may hold its sockets). */
export function findDaemonSurvivors(dataDir, exceptPids = []) {
        const out = [];
        const needle = `--data-dir\0${dataDir}\0`;
        for (const e of fs.readdirSync('/proc')) {
                if (!/^\d+$/.test(e) || exceptPids.includes(Number(e)) || Number(e) === process.pid) continue;
                if (readFileOr(`/proc/${e}/cmdline`).includes(needle)) {
                        out.push({ pid: Number(e), comm: readFileOr(`/proc/${e}/comm`).trim(), ...procStat(e) });
                }
        }
        return out.filter((p) => p.state !== 'Z');
}

/* Mounts in the host's mount namespace that mention dir (after the daemon exited there must be none). */
export function mountsMentioning(dir, pid = 'self') {
        return mountLines(pid).filter((l) => l.includes(dir));
}

/* Last resort after a failed test, so one failure does not poison the machine for the next run: kill
 * every process in the ids' cgroups and remove those cgroups, deepest first. */
export async function forceHostCleanup(ids) {
        for (let i = 0; i < 20; i++) {
                const procs = findProcsInSandboxCgroups(ids);
                if (procs.length === 0) break;
                for (const p of procs) {
                        try {
                                process.kill(p.pid, 'SIGKILL');
                        } catch {
                                /* gone */
                        }
                }
                await sleep(100);
        }
        const dirs = findCgroupDirs(ids).sort((a, b) => b.length - a.length);
        for (const d of dirs) {
                const r = spawnSync('find', [d, '-depth', '-type', 'd'], { encoding: 'utf8' });
                for (const sub of (r.stdout ?? '').split('\n').filter(Boolean)) {
                        try {
                                fs.rmdirSync(sub);
                        } catch {
                                /* busy or gone */
                        }
                }
        }
}

/* Remove a data dir, never crossing into a mount: anything still mounted under it is detached first and,
 * if that fails, the directory is left in place (and reported by the caller's leak check). */
export function removeDataDir(dir) {
        if (!dir || !dir.startsWith(os.tmpdir() + path.sep) || dir.length < 12) return false;
        const under = mountLines('self').map((l) => l.split(' ')[4]).filter((mp) => mp === dir || mp.startsWith(dir + '/'));
        for (const mp of under.sort((a, b) => b.length - a.length)) spawnSync('umount', ['-l', mp]);
        if (mountLines('self').some((l) => { const mp = l.split(' ')[4]; return mp === dir || mp.startsWith(dir + '/'); })) return false;
        spawnSync('rm', ['-rf', '--one-file-system', dir]);
        return true;
}

/* Sends a sequence of host processes through SIGKILL (pids that vanished are fine). */
export function killPids(pids) {
        for (const pid of pids) {
                try {
                        process.kill(pid, 'SIGKILL');
                } catch {
                        /* already gone */
                }
        }
}

/* ------------------------------------------------------------------------------------------------ */
/* Fixture                                                                                           */

/* One daemon (replaceable by restart()) on one data dir, plus the set of every sandbox id created
 * through it. cleanup() deletes them all (and any other sandbox the daemon knows), checks for leaks,
 * stops the daemon (expecting exit code 0), checks the host mount table, and removes the data dir. */
export class Fixture {
        constructor(opts = {}) {
                this.opts = opts;
                this.ids = new Set();
                this.daemon = null;
                this.daemons = [];
                this.dataDir = opts.dataDir ?? null;
                this.key = opts.apiKey ?? null;
                this.api = new Api(() => this.daemon, [(id) => this.ids.add(id)]);
        }
        async start() {
                const d = await startDaemon({ ...this.opts, dataDir: this.dataDir ?? undefined, apiKey: this.key ?? undefined });
                this.ownDataDir ??= d.ownDataDir;
                this.dataDir = d.dataDir;
                this.key = d.key;
                this.daemon = d;
                this.daemons.push(d);
                return d;
        }
        get url() {
                return this.daemon?.url;
        }
        track(id) {
                this.ids.add(id);
        }
        /* Start a new daemon on the same data dir and key (the previous one must be dead). */
        async restart() {
                if (this.daemon?.alive) throw new Error('restart(): the previous daemon is still running');
                const survivors = findDaemonSurvivors(this.dataDir);
                try {
                        return await this.start();
                } catch (e) {
                        if (survivors.length) {
                                e.message += `\n(processes of the killed sbxd were still running when the new one started: ${fmt(survivors)})`;
                        }
                        throw e;
                }
        }
        context() {
                return this.daemon ? this.daemon.context() : '(no daemon)';
        }
        /* Per-test view: an Api whose creates are deleted (and leak-checked) when test t ends. */
        scope(t) {
                const mine = new Set();
                const api = new Api(() => this.daemon, [(id) => this.ids.add(id), (id) => mine.add(id)]);
                api.ids = mine;
                t.after(async () => {
                        if (mine.size === 0) return;
                        if (!this.daemon?.alive) return; // the fixture's cleanup reports and handles it
                        const problems = await deleteAll(api, mine);
                        try {
                                await assertNoLeaks(mine, { daemonPid: this.daemon.pid, dataDir: this.dataDir });
                        } catch (e) {
                                problems.push(e.message);
                        }
                        if (problems.length) throw new Error(`cleanup of test "${t.name}":\n${problems.join('\n')}\n${this.context()}`);
                });
                return api;
        }
        async cleanup() {
                const problems = [];
                const d = this.daemon;
                if (!d) return;
                if (!d.alive && !d.expectedExit) problems.push(`sbxd exited unexpectedly\n${d.context()}`);
                if (!d.alive) {
                        // sandboxes outlive sbxd: bring one up on the same data dir to delete them properly
                        try {
                                await this.start();
                        } catch (e) {
                                problems.push(`cannot restart sbxd for cleanup: ${e.message}`);
                        }
                }
                const all = new Set(this.ids);
                if (this.dataDir) for (const id of scanDataDirIds(this.dataDir)) all.add(id);
                if (this.daemon?.alive) {
                        try {
                                for (const sb of await this.api.listAll()) all.add(sb.id);
                        } catch (e) {
                                problems.push(`list during cleanup failed: ${e.message}`);
                        }
                        problems.push(...await deleteAll(this.api, all));
                        try {
                                await assertNoLeaks(all, { daemonPid: this.daemon.pid, dataDir: this.dataDir });
                        } catch (e) {
                                problems.push(e.message);
                        }
                        // every sandbox is gone: no overlay in sbxd's mount namespace may still use the data dir
                        const ov = mountsMentioning(this.dataDir, this.daemon.pid).filter((l) => / - overlay /.test(l));
                        if (ov.length) problems.push(`overlay mounts left in sbxd's mount namespace:\n  ${ov.join('\n  ')}`);
                        try {
                                const info = await this.daemon.stop();
                                if (info.code !== 0) problems.push(`sbxd exited with code ${info.code} signal ${info.signal} on SIGTERM (expected 0)\n${this.daemon.context()}`);
                        } catch (e) {
                                problems.push(e.message);
                        }
                }
                // --storage btrfs mounts an image on DATA/btrfs in the host's namespace, for every sbxd
                // to come: with all sandboxes gone it is the fixture's to unmount
                if (this.dataDir && mountsMentioning(path.join(this.dataDir, 'btrfs')).length) {
                        const u = spawnSync('umount', [path.join(this.dataDir, 'btrfs')], { encoding: 'utf8' });
                        if (u.status !== 0) problems.push(`cannot unmount ${this.dataDir}/btrfs: ${u.stderr}`);
                }
                const hostMounts = this.dataDir ? mountsMentioning(this.dataDir) : [];
                if (hostMounts.length) problems.push(`mounts mentioning the data dir remain after sbxd exited:\n  ${hostMounts.join('\n  ')}`);
                const procs = findProcsInSandboxCgroups(all).filter((p) => p.state !== 'Z');
                if (procs.length) problems.push(`sandbox processes remain after sbxd exited: ${fmt(procs)}`);
                const survivors = this.dataDir ? findDaemonSurvivors(this.dataDir) : [];
                if (survivors.length) problems.push(`sbxd processes remain after sbxd exited: ${fmt(survivors)}`);
                killPids(survivors.map((p) => p.pid));
                if (problems.length) await forceHostCleanup(all);
                if (this.ownDataDir && this.dataDir) {
                        if (!removeDataDir(this.dataDir)) problems.push(`data dir ${this.dataDir} left in place: mounts remain under it`);
                }
                if (problems.length) throw new Error(`fixture cleanup found problems:\n${problems.join('\n')}`);
        }
}

/* DELETE every id (404 = already gone); retries transient states for up to 10 s. Returns problems. */
export async function deleteAll(api, ids) {
        const problems = [];
        await Promise.all([...ids].map(async (id) => {
                const deadline = Date.now() + 10_000;
                for (;;) {
                        let res;
                        try {
                                res = await api.del(id);
                        } catch (e) {
                                problems.push(`DELETE ${id}: ${e.message}`);
                                return;
                        }
                        if (res.status === 204 || res.status === 404) return;
                        if (Date.now() > deadline) {
                                problems.push(`DELETE ${id}: ${describe(res)}`);
                                return;
                        }
                        await sleep(200);
                }
        }));
        return problems;
}

/* Run fn(fixture) with a fresh daemon; always delete everything, leak-check, stop the daemon and remove
 * its data dir afterwards. On failure, the daemon's stderr tail is appended to the error. */
export async function withDaemon(t, fn, opts = {}) {
        const fx = new Fixture(opts);
        await fx.start();
        let err = null;
        try {
                await fn(fx);
        } catch (e) {
                err = e;
                // the reporter prints the original stack; put the daemon's side next to it
                console.error(`--- test "${t.name}" failed; ${fx.context()}`);
        }
        let cerr = null;
        try {
                await fx.cleanup();
        } catch (e) {
                cerr = e;
        }
        if (err && cerr) err.message += `\n--- and cleanup failed too: ${cerr.message}`;
        if (err) throw err;
        if (cerr) throw cerr;
}

/* One daemon for the whole test file: started in before(), cleaned up (with leak checks) in after().
 * setup(fx), if given, runs in the same before() hook once the daemon is up (Node 20 runs separate
 * top-level before() hooks concurrently, so file-level setup must go here). Tests use fx.scope(t) for
 * sandboxes that must be gone when the test ends. */
export function useDaemon(opts = {}, setup = null) {
        const fx = new Fixture(opts);
        before(async () => {
                await fx.start();
                if (setup) await setup(fx);
        });
        after(async () => {
                await fx.cleanup();
        });
        beforeEach((t) => {
                // markers in the full log so failures can be matched to the daemon's lines
                fx.daemon?.log?.write(`===== test "${t?.name}" begins ${new Date().toISOString()}\n`);
        });
        afterEach((t) => {
                fx.daemon?.log?.write(`===== test "${t?.name}" ends ${new Date().toISOString()}\n`);
        });
        return fx;
}

/* Run a host command asynchronously: {code, signal, stdout, stderr, ms}. With binary, stdout is a
 * Buffer and out its text. */
export function run(cmd, args, { env, input, cwd, binary = false, timeoutMs = 60_000, onStdout } = {}) {
        return new Promise((resolve, reject) => {
                const t0 = performance.now();
                const p = spawn(cmd, args, { env: env ?? process.env, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
                const out = [];
                const dec = new TextDecoder();
                let stderr = '';
                p.stderr.setEncoding('utf8');
                p.stdout.on('data', (c) => {
                        out.push(c);
                        onStdout?.(dec.decode(c, { stream: true }), performance.now() - t0);
                });
                p.stderr.on('data', (c) => (stderr += c));
                const text = () => Buffer.concat(out).toString('utf8');
                const timer = setTimeout(() => {
                        p.kill('SIGKILL');
                        reject(new Error(`${cmd} ${args.join(' ')} timed out after ${timeoutMs} ms; stdout ${fmt(text())} stderr ${fmt(stderr)}`));
                }, timeoutMs);
                p.on('error', (e) => {
                        clearTimeout(timer);
                        reject(e);
                });
                p.on('close', (code, signal) => {
                        clearTimeout(timer);
                        const bytes = Buffer.concat(out);
                        const r = { code, signal, stdout: binary ? bytes : bytes.toString('utf8'), stderr, ms: performance.now() - t0 };
                        if (binary) r.out = bytes.toString('utf8');
                        resolve(r);
                });
                p.stdin.on('error', () => {});
                p.stdin.end(input ?? '');
        });
}

export { ensureExecutable };
