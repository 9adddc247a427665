// SPDX-License-Identifier: Apache-2.0
//
// Processes across a kill -9 of sbxd (issue 5, DESIGN §1/§6): a process writing slowly is never
// interrupted; its stream continues at the right offset, and a client that re-attaches from the
// last offset it saw receives every byte exactly once. A process whose stdin was open keeps it;
// one that exited while sbxd was down reports its exit code and all its output; a terminal's
// output survives too.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { describe, fmt, sleep, waitFor, withDaemon } from '../lib/harness.mjs';

const P = (id, rest = '') => `/v1/sandboxes/${id}/processes${rest}`;

async function start(fx, id, body) {
        const r = await fx.api.request('POST', P(id), body);
        assert.equal(r.status, 201, describe(r));
        return r.json;
}

/* Attach over WebSocket; out is the stdout (or pty) bytes in order, checked contiguous from `from`. */
function attach(fx, id, pid, from = 0) {
        const ws = new WebSocket(`${fx.url.replace('http', 'ws')}${P(id, `/${pid}/attach?from=${from}`)}`, {
                headers: { authorization: `Bearer ${fx.key}` },
        });
        const f = { ws, out: Buffer.alloc(0), next: from, errors: [], msgs: [] };
        f.opened = new Promise((resolve, reject) => {
                ws.on('open', resolve);
                ws.on('error', reject);
        });
        f.done = new Promise((resolve) => ws.on('close', resolve));
        ws.on('error', () => {});
        ws.on('message', (data, isBinary) => {
                if (!isBinary) {
                        f.msgs.push(JSON.parse(data.toString()));
                        return;
                }
                if (data[0] === 2) return;
                const off = Number(data.readBigUInt64BE(1));
                if (off !== f.next) f.errors.push(`frame at ${off}, expected ${f.next}`);
                f.next = off + data.length - 9;
                f.out = Buffer.concat([f.out, data.subarray(9)]);
        });
        return f;
}

const lines = (n) => Array.from({ length: n }, (_, i) => `line${i}\n`).join('');

test('kill -9 sbxd while processes write: no byte lost or repeated, stdin kept, exits seen', { timeout: 120_000 }, (t) => withDaemon(t, async (fx) => {
        const sb = await fx.api.createOk({});
        const N = 120;
        const slow = await start(fx, sb.id, { cmd: `i=0; while [ $i -lt ${N} ]; do echo line$i; i=$((i+1)); sleep 0.025; done` });
        const cat = await start(fx, sb.id, { cmd: 'cat', stdin: true });
        const term = await start(fx, sb.id, { argv: ['/bin/sh'], pty: { cols: 80, rows: 24 } });
        const a = attach(fx, sb.id, slow.processId);
        await a.opened;
        await waitFor(() => a.out.length > 100, 5000, { what: 'some output before the crash' });
        // what this client saw when the connection broke
        await fx.daemon.kill9();
        await a.done;
        const seen = a.out.length;
        assert.deepEqual(a.errors, []);
        // a process that ends while sbxd is away
        await sleep(300);
        await fx.restart();

        const b = attach(fx, sb.id, slow.processId, seen);
        await b.opened;
        await b.done;
        assert.deepEqual(b.errors, []);
        assert.equal(Buffer.concat([a.out, b.out]).toString(), lines(N), 'every byte exactly once');
        const exit = b.msgs.find((m) => m.type === 'exit');
        assert.equal(exit.status, 'exited', fmt(exit));
        assert.equal(exit.exitCode, 0);
        assert.equal(exit.pid, slow.pid, 'the same process, never restarted');
        assert.equal(exit.streams.stdout.end, lines(N).length);

        // stdin opened before the crash still reaches the process
        let r = await fx.api.request('POST', P(sb.id, `/${cat.processId}/stdin?eof=true`), 'after restart\n', { raw: true });
        assert.equal(r.status, 204, describe(r));
        r = await fx.api.request('GET', P(sb.id, `/${cat.processId}/wait?timeout=10`));
        assert.equal(r.json.status, 'exited');
        r = await fx.api.request('GET', P(sb.id, `/${cat.processId}/stdout`));
        assert.equal(r.text, 'after restart\n');

        // the terminal too: input after the restart, output from before and after
        const c = attach(fx, sb.id, term.processId);
        await c.opened;
        c.ws.send(Buffer.from('echo term-$((6*7)); exit 4\n'));
        await c.done;
        assert.match(c.out.toString(), /term-42/);
        assert.equal(c.msgs.at(-1).exitCode, 4);
}));

test('a process that exits while sbxd is down: exit code and all output after the restart', { timeout: 120_000 }, (t) => withDaemon(t, async (fx) => {
        const sb = await fx.api.createOk({});
        const p = await start(fx, sb.id, { cmd: 'echo before; sleep 0.5; head -c 300000 /dev/zero | tr "\\0" y; echo; echo after >&2; exit 5' });
        await fx.daemon.kill9();
        await sleep(1500);
        await fx.restart();
        const r = await fx.api.request('GET', P(sb.id, `/${p.processId}/wait?timeout=10`));
        assert.equal(r.status, 200, describe(r));
        assert.equal(r.json.status, 'exited', fmt(r.json));
        assert.equal(r.json.exitCode, 5);
        const out = await fx.api.request('GET', P(sb.id, `/${p.processId}/stdout`));
        assert.equal(out.text, 'before\n' + 'y'.repeat(300000) + '\n');
        const err = await fx.api.request('GET', P(sb.id, `/${p.processId}/stderr`));
        assert.equal(err.text, 'after\n');
        // listed once, with the same id, and new processes get their own
        const list = await fx.api.request('GET', P(sb.id));
        assert.equal(list.json.processes.filter((x) => x.processId === p.processId).length, 1);
        const q = await start(fx, sb.id, { cmd: 'echo new' });
        assert.notEqual(q.processId, p.processId);
        const w = await fx.api.request('GET', P(sb.id, `/${q.processId}/wait?timeout=10`));
        assert.equal(w.json.exitCode, 0);
}));

test('a code context survives kill -9 of sbxd with its state', { timeout: 120_000 }, (t) => withDaemon(t, async (fx) => {
        const sb = await fx.api.createOk({});
        const c = await fx.api.request('POST', `/v1/sandboxes/${sb.id}/contexts`, { language: 'python' });
        assert.equal(c.status, 201, describe(c));
        const ctx = c.json.contextId;
        let r = await fx.api.request('POST', `/v1/sandboxes/${sb.id}/code`, { code: 'x = 41', contextId: ctx });
        assert.equal(r.status, 200, describe(r));
        await fx.daemon.kill9();
        await fx.restart();
        r = await fx.api.request('POST', `/v1/sandboxes/${sb.id}/code`, { code: 'print("still here")\nx + 1', contextId: ctx });
        assert.equal(r.status, 200, describe(r));
        assert.equal(r.json.output, '42');
        assert.equal(r.json.stdout, 'still here\n');
}));
