// SPDX-License-Identifier: Apache-2.0
//
// Pause/resume, hibernate/wake, the autoResume gate, timers and events (docs/lifecycle.md):
// every allowed and refused transition; a paused sandbox's processes really stop (and keep their
// pid) while reads still work; requests that need a running sandbox get 409 sandbox_paused unless
// they ask for autoResume; an attached WebSocket and an SSE stream stay open through pauses and
// carry on with contiguous offsets; timeout.paused / lifetime-stands-still / PATCH / execution
// fire and are events; the event log pages and the SSE feed resumes by id; a paused sandbox, a
// hibernated one and a pending timer all survive kill -9 of sbxd.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import { SOURCE_DIR, describe, expectError, fmt, sleep, unknownId, useDaemon, waitFor } from '../lib/harness.mjs';

const WebSocket = createRequire(path.join(SOURCE_DIR, 'tests', 'package.json'))('ws');
const fx = useDaemon();

const COUNTER = 'i=0; while :; do i=$((i+1)); echo $i > /root/count; sleep 0.05; done';
const readCount = async (api, id) => (await api.request('GET', `/v1/sandboxes/${id}/files/root/count`)).text.trim();
const types = (evs) => evs.map((e) => e.type);

async function events(api, id, query = {}) {
        const res = await api.events(id, query);
        assert.equal(res.status, 200, describe(res));
        return res.json;
}

test('state machine: every verb from every settled state', { timeout: 90_000 }, async (t) => {
        const api = fx.scope(t);
        const sb = await api.createOk();
        const verb = async (v, status, state) => {
                const res = await api.request('POST', `/v1/sandboxes/${sb.id}/${v}`);
                assert.equal(res.status, status, `${v}: ${describe(res)}`);
                if (state) assert.equal(res.json.state, state, `${v}: ${describe(res)}`);
                return res.json;
        };
        const p = await verb('pause', 200, 'paused');
        assert.ok(Date.parse(p.pausedAt) > 0);
        assert.equal(p.terminatesAt, null);
        await verb('pause', 200, 'paused');                    // no-op
        await verb('wake', 409);
        const r = await verb('resume', 200, 'running');
        assert.equal(r.pausedAt, null);
        await verb('resume', 200, 'running');                  // no-op
        await verb('pause', 200, 'paused');
        await verb('stop', 200, 'stopped');                    // stop of paused
        for (const v of ['pause', 'resume', 'hibernate']) await verb(v, 409);
        await verb('start', 200, 'running');
        await api.sh(sb.id, 'echo kept > /root/f');
        const h = await verb('hibernate', 200, 'hibernated');
        assert.deepEqual(h.hibernation, { memory: false });
        await verb('hibernate', 200, 'hibernated');            // no-op
        expectError(await api.exec(sb.id, { cmd: 'true' }), 409, 'invalid_state');
        for (const v of ['pause', 'resume']) await verb(v, 409);
        await verb('wake', 200, 'running');
        assert.equal(await api.sh(sb.id, 'cat /root/f'), 'kept\n');
        await verb('pause', 200, 'paused');
        await verb('hibernate', 200, 'hibernated');            // hibernate of paused
        await verb('start', 200, 'running');                   // start of hibernated = wake
        await verb('hibernate', 200, 'hibernated');
        await verb('stop', 200, 'stopped');                    // stop of hibernated
        await verb('start', 200, 'running');
        await verb('pause', 200, 'paused');
        assert.equal((await api.del(sb.id)).status, 204);      // delete of paused
        for (const v of ['pause', 'resume', 'hibernate', 'wake']) {
                expectError(await api.request('POST', `/v1/sandboxes/${unknownId()}/${v}`), 404, 'sandbox_not_found');
        }
        const other = await api.createOk();
        expectError(await api.request('POST', `/v1/sandboxes/${other.id}/pause`, { x: 1 }), 400, 'unknown_field');
        assert.equal((await api.hibernate(other.id)).status, 200);
        assert.equal((await api.del(other.id)).status, 204);   // delete of hibernated
        // the log tells the story in order
        const ev = await events(api, sb.id);
        assert.deepEqual(types(ev.events).slice(0, 6),
                ['sandbox.created', 'sandbox.running', 'sandbox.paused', 'sandbox.running', 'sandbox.paused', 'sandbox.stopping']);
        assert.equal(types(ev.events).at(-1), 'sandbox.deleted');
        assert.deepEqual(ev.events[2].data, { from: 'running', to: 'paused', reason: null });
});

test('a paused sandbox really stops; reads work; the gate and autoResume', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const sb = await api.createOk();
        const proc = (await api.request('POST', `/v1/sandboxes/${sb.id}/processes`, { cmd: COUNTER })).json;
        await waitFor(async () => Number(await readCount(api, sb.id)) > 2, 5000, { what: 'the counter' });
        assert.equal((await api.pause(sb.id)).status, 200);
        const c1 = await readCount(api, sb.id);                                 // reads work while paused
        await sleep(500);
        assert.equal(await readCount(api, sb.id), c1, 'the counter moved while paused');
        // needs a running sandbox: refused, and nothing happened
        const ex = await api.exec(sb.id, { cmd: 'true' });
        expectError(ex, 409, 'sandbox_paused');
        assert.match(ex.json.error.message, /autoResume/);
        expectError(await api.request('POST', `/v1/sandboxes/${sb.id}/processes`, { cmd: 'true' }), 409, 'sandbox_paused');
        const put = await api.request('PUT', `/v1/sandboxes/${sb.id}/files/root/new`, 'x', { raw: true });
        expectError(put, 409, 'sandbox_paused');
        expectError(await api.request('GET', `/v1/sandboxes/${sb.id}/files/root/new`), 404);
        // autoResume in the body
        const ok = await api.exec(sb.id, { cmd: 'cat /root/count', autoResume: true });
        assert.equal(ok.status, 200, describe(ok));
        assert.equal(ok.json.autoResumed, true);
        assert.equal((await api.get(sb.id)).json.state, 'running');
        await waitFor(async () => (await readCount(api, sb.id)) !== c1, 3000, { what: 'the counter after the resume' });
        const p = (await api.request('GET', `/v1/sandboxes/${sb.id}/processes/${proc.processId}`)).json;
        assert.equal(p.status, 'running');
        assert.equal(p.pid, proc.pid);
        // and in the query, on an upload route
        assert.equal((await api.pause(sb.id)).status, 200);
        const put2 = await api.request('PUT', `/v1/sandboxes/${sb.id}/files/root/new?autoResume=true`, 'hello', { raw: true });
        assert.ok(put2.status < 300, describe(put2));
        assert.equal(put2.headers['x-sbx-auto-resumed'], 'true');
        assert.equal(await api.sh(sb.id, 'cat /root/new'), 'hello');
        // on a running sandbox autoResume changes nothing and says nothing
        const plain = await api.exec(sb.id, { cmd: 'true', autoResume: true });
        assert.equal(plain.status, 200);
        assert.equal('autoResumed' in plain.json, false);
        assert.equal(types((await events(api, sb.id)).events).filter((x) => x === 'sandbox.autoresumed').length, 2);
});

test('streams survive pauses: WebSocket and SSE keep their connection and offsets', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const sb = await api.createOk();
        const proc = (await api.request('POST', `/v1/sandboxes/${sb.id}/processes`, { cmd: 'i=0; while :; do i=$((i+1)); echo line$i; sleep 0.02; done' })).json;
        const url = `${fx.url.replace('http', 'ws')}/v1/sandboxes/${sb.id}/processes/${proc.processId}/attach`;
        const ws = new WebSocket(url, { headers: { authorization: `Bearer ${fx.key}` } });
        let wsBytes = Buffer.alloc(0), next = null, gaps = 0, closed = false;
        ws.on('message', (d, bin) => {
                if (!bin) return;
                const off = Number(d.readBigUInt64BE(1));
                if (next !== null && off !== next) gaps++;
                next = off + d.length - 9;
                wsBytes = Buffer.concat([wsBytes, d.subarray(9)]);
        });
        ws.on('close', () => { closed = true; });
        await new Promise((r) => ws.on('open', r));
        const ac = new AbortController();
        const sse = await fetch(`${fx.url}/v1/sandboxes/${sb.id}/processes/${proc.processId}/attach`, {
                headers: { authorization: `Bearer ${fx.key}`, accept: 'text/event-stream' }, signal: ac.signal,
        });
        let sseText = '';
        const reading = (async () => {
                try {
                        for await (const c of sse.body) sseText += Buffer.from(c).toString();
                } catch { /* aborted */ }
        })();
        for (let round = 0; round < 3; round++) {
                await sleep(200);
                assert.equal((await api.pause(sb.id)).status, 200);
                await sleep(100); // what was in flight arrives
                const frozenAt = wsBytes.length;
                await sleep(400);
                assert.equal(wsBytes.length, frozenAt, 'output arrived while paused');
                assert.equal((await api.resume(sb.id)).status, 200);
                await waitFor(() => wsBytes.length > frozenAt, 3000, { what: `output after resume ${round}` });
        }
        assert.equal(closed, false, 'the WebSocket closed');
        assert.equal(gaps, 0, 'offsets were not contiguous');
        const lines = wsBytes.toString().trim().split('\n');
        lines.forEach((l, i) => assert.equal(l, `line${i + 1}`, 'lines lost or repeated'));
        assert.ok(sseText.split('event: stdout').length > lines.length / 2, 'the SSE stream stopped');
        ac.abort();
        await reading;
        ws.close();
});

test('timers: paused timeout deletes, lifetime stands still while paused, PATCH, execution', { timeout: 90_000 }, async (t) => {
        const api = fx.scope(t);
        // timeout.paused
        const a = await api.createOk({ timeout: { paused: 2 } });
        const p = (await api.pause(a.id)).json;
        assert.ok(Math.abs(Date.parse(p.terminatesAt) - Date.parse(p.pausedAt) - 2000) < 50, fmt(p));
        await waitFor(async () => (await api.get(a.id)).status === 404, 6000, { what: 'the paused timeout' });
        const ea = (await events(api, a.id)).events;
        assert.deepEqual(ea.at(-2).data, { kind: 'paused', action: 'delete' });
        assert.equal(ea.at(-2).type, 'sandbox.timeout');
        assert.equal(ea.at(-1).type, 'sandbox.deleted');
        assert.equal(ea.at(-1).data.reason, 'paused timeout');
        // lifetime stands still while paused
        const b = await api.createOk({ timeout: { lifetime: 3 } });
        assert.equal((await api.pause(b.id)).status, 200);
        await sleep(3500);
        const rb = (await api.resume(b.id)).json;
        assert.equal(rb.state, 'running');
        assert.ok(Date.parse(rb.expiresAt) - Date.parse(b.expiresAt) > 3000, `expiresAt did not move: ${b.expiresAt} -> ${rb.expiresAt}`);
        await waitFor(async () => (await api.get(b.id)).status === 404, 6000, { what: 'the lifetime after the resume' });
        // PATCH: extend, remove, bad bodies
        const c = await api.createOk({ timeout: { lifetime: 2, idle: 100 } });
        const pc = await api.patch(c.id, { timeout: 60 });
        assert.equal(pc.status, 200, describe(pc));
        assert.ok(Math.abs(Date.parse(pc.json.expiresAt) - Date.now() - 60_000) < 3000, fmt(pc.json));
        assert.equal(pc.json.terminatesAt, pc.json.expiresAt);
        const pc2 = await api.patch(c.id, { timeout: { idle: null, execution: 1 }, metadata: { k: 'v' } });
        assert.equal(pc2.json.timeout.idle, null);
        assert.equal(pc2.json.timeout.execution, 1);
        assert.deepEqual(pc2.json.metadata, { k: 'v' });
        await sleep(2500);
        assert.equal((await api.get(c.id)).json.state, 'running', 'the old lifetime fired anyway');
        // timeout.execution is the default of execs and processes
        const slow = await api.exec(c.id, { cmd: 'sleep 5' });
        assert.equal(slow.json.timedOut, true, describe(slow));
        assert.ok(slow.json.durationMs < 3000, fmt(slow.json));
        const own = await api.exec(c.id, { cmd: 'sleep 1.5', timeout: 5 });
        assert.equal(own.json.timedOut, false);
        for (const [body, code] of [[{ timeout: -1 }, 'out_of_range'], [{ timeout: 'x' }, 'invalid_type'],
                [{ timeout: { nope: 1 } }, 'unknown_field'], [{ timeout: { idle: 0 } }, 'out_of_range'],
                [{ bogus: 1 }, 'unknown_field'], [{ timeout: 9999999999 }, 'out_of_range']]) {
                expectError(await api.patch(c.id, body), 400, code);
        }
        expectError(await api.patch(unknownId(), { timeout: 5 }), 404, 'sandbox_not_found');
        const short = await api.patch(c.id, { timeout: 1 });
        assert.equal(short.status, 200);
        await waitFor(async () => (await api.get(c.id)).status === 404, 5000, { what: 'the PATCHed lifetime' });
});

test('events: pages, direction, cursor, the SSE feed resumes by id', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const sb = await api.createOk();
        for (let i = 0; i < 3; i++) {
                await api.pause(sb.id);
                await api.resume(sb.id);
        }
        const all = (await events(api, sb.id, { limit: 1000 })).events;
        assert.ok(all.length >= 8, fmt(all));
        const ids = all.map((e) => Number(e.id.slice(4)));
        assert.deepEqual([...ids].sort((x, y) => x - y), ids, 'ids are not increasing');
        for (const e of all) {
                assert.match(e.id, /^evt_\d+$/);
                assert.equal(e.sandboxId, sb.id);
                assert.ok(Date.parse(e.at) > 0);
        }
        // paging returns each exactly once
        const seen = [];
        let cursor = null;
        for (let i = 0; i < 100; i++) {
                const page = await events(api, sb.id, cursor ? { limit: 3, cursor } : { limit: 3 });
                seen.push(...page.events.map((e) => e.id));
                cursor = page.nextCursor;
                if (!cursor) break;
        }
        assert.deepEqual(seen, all.map((e) => e.id));
        const desc = (await events(api, sb.id, { direction: 'desc', limit: 2 })).events;
        assert.deepEqual(desc.map((e) => e.id), all.slice(-2).reverse().map((e) => e.id));
        for (const [q, code] of [[{ limit: 0 }, 'out_of_range'], [{ limit: 'x' }, 'invalid_type'],
                [{ direction: 'sideways' }, 'invalid_value'], [{ cursor: 'bogus' }, 'invalid_cursor']]) {
                expectError(await api.events(sb.id, q), 400, code);
        }
        expectError(await api.events(unknownId()), 404, 'sandbox_not_found');

        // SSE: replay after an id, then live; a reconnect with Last-Event-ID misses nothing
        const feed = (headers, query) => {
                const ac = new AbortController();
                const got = [];
                const p = fetch(`${fx.url}/v1/events?sandbox=${sb.id}${query ? '&' + query : ''}`, {
                        headers: { authorization: `Bearer ${fx.key}`, ...headers }, signal: ac.signal,
                }).then(async (res) => {
                        assert.equal(res.status, 200);
                        let buf = '';
                        try {
                                for await (const c of res.body) {
                                        buf += Buffer.from(c).toString();
                                        let i;
                                        while ((i = buf.indexOf('\n\n')) >= 0) {
                                                const block = buf.slice(0, i);
                                                buf = buf.slice(i + 2);
                                                const data = block.split('\n').find((l) => l.startsWith('data: '));
                                                if (data) got.push(JSON.parse(data.slice(6)));
                                        }
                                }
                        } catch { /* aborted */ }
                });
                return { got, stop: async () => { ac.abort(); await p; } };
        };
        const mid = all[3].id;
        const f1 = feed({}, `after=${mid}`);
        await waitFor(() => f1.got.length >= all.length - 4, 3000, { what: 'the replay' });
        assert.deepEqual(f1.got.map((e) => e.id), all.slice(4).map((e) => e.id));
        await api.pause(sb.id);
        await waitFor(() => f1.got.some((e) => e.type === 'sandbox.paused' && !all.find((x) => x.id === e.id)), 3000, { what: 'a live event' });
        const last = f1.got.at(-1).id;
        await f1.stop();
        await api.resume(sb.id);
        const f2 = feed({ 'last-event-id': last });
        await waitFor(() => f2.got.length >= 1, 3000, { what: 'the event missed while away' });
        assert.equal(f2.got[0].type, 'sandbox.running');
        assert.ok(Number(f2.got[0].id.slice(4)) > Number(last.slice(4)));
        await f2.stop();
        const fresh = feed({});
        await sleep(200);
        assert.equal(fresh.got.length, 0, 'a feed without a cursor replayed old events');
        await fresh.stop();
        expectError(await api.request('GET', `/v1/events?sandbox=${unknownId()}`), 404, 'sandbox_not_found');
        expectError(await api.request('GET', '/v1/events?after=zzz'), 400, 'invalid_cursor');
        expectError(await api.request('GET', '/v1/events', undefined, { auth: false }), 401);
});

test('restart: a paused sandbox stays paused and frozen, a pending paused timer fires, hibernated wakes', { timeout: 90_000 }, async (t) => {
        const api = fx.scope(t);
        const a = await api.createOk();
        const proc = (await api.request('POST', `/v1/sandboxes/${a.id}/processes`, { cmd: COUNTER })).json;
        await waitFor(async () => Number(await readCount(api, a.id)) > 2, 5000, { what: 'the counter' });
        assert.equal((await api.pause(a.id)).status, 200);
        const b = await api.createOk({ timeout: { paused: 4 } });
        const pb = (await api.pause(b.id)).json;
        const h = await api.createOk();
        await api.sh(h.id, 'echo sleeping > /root/h');
        assert.equal((await api.hibernate(h.id)).status, 200);
        const c0 = await readCount(api, a.id);
        await fx.daemon.kill9();
        await fx.restart();
        assert.equal((await api.get(a.id)).json.state, 'paused');
        await sleep(300);
        assert.equal(await readCount(api, a.id), c0, 'the counter moved across the restart while paused');
        assert.equal((await api.resume(a.id)).status, 200);
        await waitFor(async () => Number(await readCount(api, a.id)) > Number(c0), 3000, { what: 'the counter after resume' });
        const p = (await api.request('GET', `/v1/sandboxes/${a.id}/processes/${proc.processId}`)).json;
        assert.equal(p.pid, proc.pid);
        assert.ok(types((await events(api, a.id)).events).includes('sandbox.recovered'));
        // the paused timer counts from the pause, not from the restart
        await waitFor(async () => (await api.get(b.id)).status === 404, 8000, { what: 'the paused timeout after the restart' });
        const eb = (await events(api, b.id)).events;
        const del = eb.find((e) => e.type === 'sandbox.deleted');
        assert.ok(Date.parse(del.at) - Date.parse(pb.pausedAt) < 6000, `deleted ${del.at}, paused ${pb.pausedAt}`);
        assert.equal((await api.get(h.id)).json.state, 'hibernated');
        assert.equal((await api.wake(h.id)).status, 200);
        assert.equal(await api.sh(h.id, 'cat /root/h'), 'sleeping\n');
});
