// SPDX-License-Identifier: Apache-2.0
//
// Watchers (issue 4): events of each type for changes made by commands inside the sandbox, over
// SSE and over WebSocket; content in events; ignore globs; Last-Event-ID replay; the end of a
// watcher when it is deleted, when its directory goes, when the sandbox stops or is deleted; bad
// input.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { describe, expectError, fmt, sleep, useDaemon, waitFor } from '../lib/harness.mjs';

let sb;
const fx = useDaemon({}, async (f) => {
        sb = await f.api.createOk({});
});

const sh = async (id, cmd) => {
        const r = await fx.api.run(id, cmd);
        assert.equal(r.exitCode, 0, `${cmd}: ${fmt(r)}`);
        return r.stdout;
};
const watch = (id, body) => fx.api.request('POST', `/v1/sandboxes/${id}/watchers`, body);

/* Follow a watcher's SSE stream: {events, ids, close()}; events are the parsed data objects. */
function sse(id, wid, headers = {}) {
        const ac = new AbortController();
        const out = { events: [], ids: [], status: null, ended: false, close: () => ac.abort() };
        out.ready = (async () => {
                const res = await fetch(`${fx.url}/v1/sandboxes/${id}/watchers/${wid}/events`, {
                        headers: { authorization: `Bearer ${fx.key}`, ...headers },
                        signal: ac.signal,
                });
                out.status = res.status;
                if (res.status !== 200) return;
                (async () => {
                        let buf = '';
                        try {
                                for await (const chunk of res.body) {
                                        buf += Buffer.from(chunk).toString('utf8');
                                        let i;
                                        while ((i = buf.indexOf('\n\n')) >= 0) {
                                                const block = buf.slice(0, i);
                                                buf = buf.slice(i + 2);
                                                const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
                                                const idl = block.split('\n').find((l) => l.startsWith('id: '));
                                                if (!data) continue;
                                                out.events.push(JSON.parse(data));
                                                out.ids.push(idl ? Number(idl.slice(4)) : null);
                                        }
                                }
                        } catch {
                                /* aborted */
                        }
                        out.ended = true;
                })();
        })();
        return out;
}

const has = (evs, type, path) => evs.some((e) => e.type === type && e.path === path);

test('events for every change a command makes, with content, over SSE', async () => {
        await sh(sb.id, 'mkdir -p /root/w');
        const w = await watch(sb.id, { path: '/root/w', content: 'text' });
        assert.equal(w.status, 201, describe(w));
        assert.match(w.json.id, /^wch_[a-z2-7]{20}$/);
        assert.equal(w.json.path, '/root/w');
        assert.equal(w.json.recursive, true);
        const s = sse(sb.id, w.json.id);
        await s.ready;
        assert.equal(s.status, 200);
        await sh(sb.id, 'cd /root/w && printf hello > a.txt && sleep 0.05 && printf " more" >> a.txt && mkdir d && printf in > d/f && ' +
                'mv a.txt b.txt && rm b.txt && rm d/f && rmdir d');
        await waitFor(() => has(s.events, 'unlinkDir', '/root/w/d'), 5000, { what: `unlinkDir in ${fmt(s.events)}` });
        const ev = s.events;
        const add = ev.find((e) => e.type === 'add' && e.path === '/root/w/a.txt');
        assert.ok(add, fmt(ev));
        const change = ev.filter((e) => e.type === 'change' && e.path === '/root/w/a.txt');
        assert.ok(change.length >= 1, fmt(ev));
        assert.equal(change.at(-1).content, 'hello more');
        for (const [t, p] of [['addDir', '/root/w/d'], ['add', '/root/w/d/f'], ['unlink', '/root/w/a.txt'], ['add', '/root/w/b.txt'],
                ['unlink', '/root/w/b.txt'], ['unlink', '/root/w/d/f'], ['unlinkDir', '/root/w/d']])
                assert.ok(has(ev, t, p), `${t} ${p} missing in ${fmt(ev)}`);
        assert.ok(ev.every((e) => typeof e.time === 'string'));
        // ids count from 1 without gaps
        assert.deepEqual(s.ids, s.ids.map((_, i) => i + 1));

        // Last-Event-ID replays what came after it
        const again = sse(sb.id, w.json.id, { 'last-event-id': '2' });
        await again.ready;
        await waitFor(() => again.events.length >= ev.length - 2, 3000, { what: 'replay' });
        assert.deepEqual(again.ids.slice(0, ev.length - 2), s.ids.slice(2));
        again.close();

        const g = await fx.api.request('GET', `/v1/sandboxes/${sb.id}/watchers/${w.json.id}`);
        assert.equal(g.json.events, ev.length);
        const l = await fx.api.request('GET', `/v1/sandboxes/${sb.id}/watchers`);
        assert.ok(l.json.watchers.some((x) => x.id === w.json.id));

        const d = await fx.api.request('DELETE', `/v1/sandboxes/${sb.id}/watchers/${w.json.id}`);
        assert.equal(d.status, 204);
        await waitFor(() => s.ended, 3000, { what: 'the stream ends after delete' });
        assert.equal(s.events.at(-1).type, 'end');
        expectError(await fx.api.request('GET', `/v1/sandboxes/${sb.id}/watchers/${w.json.id}`), 404, 'watcher_not_found');
});

test('ignore globs, non-recursive watches, base64 content', async () => {
        await sh(sb.id, 'mkdir -p /root/g/node_modules /root/g/sub');
        const w = await watch(sb.id, { path: '/root/g', ignore: ['*.log', 'node_modules'], content: 'base64', recursive: false });
        assert.equal(w.status, 201, describe(w));
        const s = sse(sb.id, w.json.id);
        await s.ready;
        await sh(sb.id, 'cd /root/g && echo x > a.log && echo y > node_modules/m && echo z > sub/deep && printf "\\377\\000" > bin && echo done > last');
        await waitFor(() => has(s.events, 'add', '/root/g/last'), 5000, { what: fmt(s.events) });
        const paths = s.events.map((e) => e.path);
        assert.ok(!paths.includes('/root/g/a.log'), fmt(paths));
        assert.ok(!paths.some((p) => p.includes('node_modules')), fmt(paths));
        assert.ok(!paths.includes('/root/g/sub/deep'), 'non-recursive: no events from subdirectories');
        const bin = s.events.filter((e) => e.path === '/root/g/bin' && e.contentBase64 !== undefined).at(-1);
        assert.ok(bin, fmt(s.events));
        assert.deepEqual([...Buffer.from(bin.contentBase64, 'base64')], [0xff, 0]);
        s.close();
        await fx.api.request('DELETE', `/v1/sandboxes/${sb.id}/watchers/${w.json.id}`);
});

test('WebSocket delivers the same events and closes when the watcher is deleted', async () => {
        await sh(sb.id, 'mkdir -p /root/ws');
        const w = await watch(sb.id, { path: '/root/ws' });
        const url = `${fx.url.replace(/^http/, 'ws')}/v1/sandboxes/${sb.id}/watchers/${w.json.id}/events`;
        const sock = new WebSocket(url, { headers: { authorization: `Bearer ${fx.key}` } });
        const events = [];
        const closed = new Promise((resolve) => sock.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
        sock.on('message', (m) => events.push(JSON.parse(m.toString())));
        await new Promise((resolve, reject) => {
                sock.on('open', resolve);
                sock.on('error', reject);
        });
        await sh(sb.id, 'echo hi > /root/ws/x');
        await waitFor(() => has(events, 'add', '/root/ws/x'), 5000, { what: fmt(events) });
        await fx.api.request('DELETE', `/v1/sandboxes/${sb.id}/watchers/${w.json.id}`);
        const c = await closed;
        assert.equal(c.code, 1000);
        assert.equal(events.at(-1).type, 'end');

        const bad = await fetch(`${fx.url}/v1/sandboxes/${sb.id}/watchers/wch_aaaaaaaaaaaaaaaaaaaa/events`, {
                headers: { authorization: `Bearer ${fx.key}`, upgrade: 'websocket', connection: 'upgrade' },
        }).catch((e) => e);
        assert.ok(bad.status === 404 || bad instanceof Error, fmt(bad));
});

test('a watcher ends when its directory goes and when the sandbox stops; stopped sandboxes take none', async () => {
        const s2 = await fx.api.createOk({});
        await sh(s2.id, 'mkdir -p /root/gone /root/stay');
        const w1 = await watch(s2.id, { path: '/root/gone' });
        const w2 = await watch(s2.id, { path: '/root/stay' });
        const e1 = sse(s2.id, w1.json.id);
        const e2 = sse(s2.id, w2.json.id);
        await e1.ready;
        await e2.ready;
        await sh(s2.id, 'rmdir /root/gone');
        await waitFor(() => e1.ended, 5000, { what: `end after rmdir: ${fmt(e1.events)}` });
        assert.equal(e1.events.at(-1).type, 'end');
        assert.match(e1.events.at(-1).reason, /removed/);
        const st = await fx.api.stop(s2.id);
        assert.equal(st.status, 200, describe(st));
        await waitFor(() => e2.ended, 5000, { what: 'end after stop' });
        assert.equal(e2.events.at(-1).type, 'end');
        const l = await fx.api.request('GET', `/v1/sandboxes/${s2.id}/watchers`);
        assert.deepEqual(l.json.watchers, []);
        expectError(await watch(s2.id, { path: '/root' }), 409, 'sandbox_not_running');
        await fx.api.del(s2.id);
});

test('bad input', async () => {
        expectError(await watch(sb.id, {}), 400, 'missing_field', 'path');
        expectError(await watch(sb.id, { path: '/root', content: 'yes' }), 400, 'invalid_value', 'content');
        expectError(await watch(sb.id, { path: '/root', ignore: 'x' }), 400, 'invalid_type', 'ignore');
        expectError(await watch(sb.id, { path: '/root', bogus: 1 }), 400, 'unknown_field', 'bogus');
        expectError(await watch(sb.id, { path: '/root/nope' }), 404, 'file_not_found');
        await sh(sb.id, 'touch /root/plainfile');
        const r = await watch(sb.id, { path: '/root/plainfile' });
        assert.equal(r.status, 400, describe(r));
        expectError(await watch(sb.id, { path: '/proc' }), 403, 'path_forbidden');
        expectError(await fx.api.request('GET', `/v1/sandboxes/${sb.id}/watchers/wch_aaaaaaaaaaaaaaaaaaaa/events`), 404, 'watcher_not_found');
        expectError(await watch('sbx_aaaaaaaaaaaaaaaaaaaa', { path: '/' }), 404, 'sandbox_not_found');
        await sleep(10);
});
