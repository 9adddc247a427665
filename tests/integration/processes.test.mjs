// SPDX-License-Identifier: Apache-2.0
//
// Processes and their output streams (issue 5): background processes with status, exit codes and
// signals; stdout/stderr kept as offset-addressed streams replayed from any offset over WebSocket,
// SSE and plain chunked HTTP; several listeners and a slow one; stdin; timeouts that kill the
// whole tree; terminals (tty, resize); keepAfterDisconnect and maxRunAfterDisconnect; users; the
// log's cap reported as truncation; bad input.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import WebSocket from 'ws';
import { describe, expectError, fmt, sleep, useDaemon, waitFor } from '../lib/harness.mjs';

let sb;
const fx = useDaemon({ extraArgs: ['--stream-log', '1M'] }, async (f) => {
        sb = await f.api.createOk({});
});

const P = (id, rest = '') => `/v1/sandboxes/${id}/processes${rest}`;
const req = (method, p, body, opts) => fx.api.request(method, p, body, opts);

async function start(body, id = sb.id) {
        const r = await req('POST', P(id), body);
        assert.equal(r.status, 201, `start ${fmt(body)}: ${describe(r)}`);
        return r.json;
}

async function wait(pid, { id = sb.id, timeout = 30 } = {}) {
        const r = await req('GET', P(id, `/${pid}/wait?timeout=${timeout}`), undefined, { timeoutMs: (timeout + 10) * 1000 });
        assert.equal(r.status, 200, describe(r));
        return r.json;
}

/* GET .../stdout|stderr as bytes: {status, headers, body: Buffer} */
async function raw(pid, stream = 'stdout', query = '', id = sb.id) {
        const res = await fetch(`${fx.url}${P(id, `/${pid}/${stream}`)}${query ? '?' + query : ''}`, {
                headers: { authorization: `Bearer ${fx.key}` },
        });
        const body = Buffer.from(await res.arrayBuffer());
        return { status: res.status, headers: res.headers, body, json: res.status >= 400 ? JSON.parse(body.toString()) : null };
}

/* A WebSocket follower: out[1|2|3] are Buffers per stream (checked for contiguous offsets), msgs the
 * JSON text frames in order, done resolves at close. */
function attach(pid, query = '', id = sb.id) {
        const ws = new WebSocket(`${fx.url.replace('http', 'ws')}${P(id, `/${pid}/attach`)}${query ? '?' + query : ''}`, {
                headers: { authorization: `Bearer ${fx.key}` },
        });
        const f = { ws, out: { 1: Buffer.alloc(0), 2: Buffer.alloc(0), 3: Buffer.alloc(0) }, next: {}, msgs: [], order: [], errors: [] };
        f.opened = new Promise((resolve, reject) => {
                ws.on('open', resolve);
                ws.on('unexpected-response', (rq, res) => reject(new Error(`attach: HTTP ${res.statusCode}`)));
                ws.on('error', reject);
        });
        f.done = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
        ws.on('message', (data, isBinary) => {
                if (!isBinary) {
                        const m = JSON.parse(data.toString());
                        f.msgs.push(m);
                        f.order.push(m.type);
                        return;
                }
                const tag = data[0];
                const off = Number(data.readBigUInt64BE(1));
                const bytes = data.subarray(9);
                if (f.next[tag] === undefined) f.next[tag] = off;
                if (off !== f.next[tag]) f.errors.push(`stream ${tag}: frame at ${off}, expected ${f.next[tag]}`);
                f.next[tag] = off + bytes.length;
                f.out[tag] = Buffer.concat([f.out[tag], bytes]);
                if (f.order.at(-1) !== 'data') f.order.push('data');
        });
        return f;
}

/* SSE follower: events [{event, id, data}] until the stream ends. */
async function sse(pid, { query = '', headers = {}, id = sb.id, until = null } = {}) {
        const ac = new AbortController();
        const res = await fetch(`${fx.url}${P(id, `/${pid}/attach`)}${query ? '?' + query : ''}`, {
                headers: { authorization: `Bearer ${fx.key}`, accept: 'text/event-stream', ...headers },
                signal: ac.signal,
        });
        const out = { status: res.status, events: [] };
        if (res.status !== 200) {
                out.json = await res.json();
                return out;
        }
        let buf = '';
        try {
                for await (const chunk of res.body) {
                        buf += Buffer.from(chunk).toString('utf8');
                        let i;
                        while ((i = buf.indexOf('\n\n')) >= 0) {
                                const block = buf.slice(0, i);
                                buf = buf.slice(i + 2);
                                const ev = { event: 'message', id: null, data: '' };
                                for (const l of block.split('\n')) {
                                        if (l.startsWith('event: ')) ev.event = l.slice(7);
                                        else if (l.startsWith('id: ')) ev.id = l.slice(4);
                                        else if (l.startsWith('data: ')) ev.data += l.slice(6);
                                }
                                if (!ev.data) continue;
                                ev.data = JSON.parse(ev.data);
                                out.events.push(ev);
                                if (until && until(ev)) {
                                        ac.abort();
                                        return out;
                                }
                        }
                }
        } catch (e) {
                if (e.name !== 'AbortError') throw e;
        }
        return out;
}

const expectedLines = (prefix, n) => Array.from({ length: n }, (_, i) => `${prefix}${i}\n`).join('');

test('a background process: 201 at once, status, exit code, output kept', async () => {
        const t0 = Date.now();
        const p = await start({ cmd: 'echo hello; echo oops >&2; sleep 0.3; exit 3', tag: 'first' });
        assert.ok(Date.now() - t0 < 300, 'start returns before the process ends');
        assert.match(p.processId, /^prc_[a-z2-7]{20}$/);
        assert.equal(typeof p.pid, 'number');
        assert.equal(p.status, 'running');
        assert.equal(p.tag, 'first');
        assert.deepEqual(p.argv, ['/bin/sh', '-c', 'echo hello; echo oops >&2; sleep 0.3; exit 3']);
        assert.equal(p.kind, 'process');
        const got = await req('GET', P(sb.id, `/${p.processId}`));
        assert.equal(got.status, 200);
        assert.equal(got.json.processId, p.processId);
        const byPid = await req('GET', P(sb.id, `/${p.pid}`));
        assert.equal(byPid.json.processId, p.processId, 'a pid names the process too');
        const w = await wait(p.processId);
        assert.equal(w.status, 'exited');
        assert.equal(w.exitCode, 3);
        assert.equal(w.signal, null);
        assert.ok(w.durationMs >= 250, fmt(w));
        assert.deepEqual(w.streams, { stdout: { start: 0, end: 6 }, stderr: { start: 0, end: 5 } });
        assert.equal((await raw(p.processId)).body.toString(), 'hello\n');
        assert.equal((await raw(p.processId, 'stderr')).body.toString(), 'oops\n');
        const list = await req('GET', P(sb.id));
        assert.ok(list.json.processes.some((x) => x.processId === p.processId && x.status === 'exited'), fmt(list.json));
});

test('interleaved stdout and stderr keep their order within each stream', async () => {
        const n = 300;
        const p = await start({ cmd: `i=0; while [ $i -lt ${n} ]; do echo out$i; echo err$i >&2; i=$((i+1)); done` });
        await wait(p.processId);
        assert.equal((await raw(p.processId)).body.toString(), expectedLines('out', n));
        assert.equal((await raw(p.processId, 'stderr')).body.toString(), expectedLines('err', n));
});

test('replay from any offset: chunked HTTP, WebSocket, SSE with Last-Event-ID', async () => {
        const p = await start({ cmd: 'i=0; while [ $i -lt 200 ]; do echo line$i; i=$((i+1)); done; printf "caf\\303\\251 end"' });
        await wait(p.processId);
        const full = (await raw(p.processId)).body;
        assert.ok(full.toString().endsWith('café end'));
        for (const off of [0, 1, 7, 100, full.length - 3, full.length]) {
                const r = await raw(p.processId, 'stdout', `from=${off}`);
                assert.equal(r.status, 200);
                assert.equal(r.headers.get('x-stream-start'), String(off));
                assert.ok(r.body.equals(full.subarray(off)), `from=${off}`);
                const f = attach(p.processId, `from=${off}`);
                await f.opened;
                await f.done;
                assert.deepEqual(f.errors, []);
                assert.ok(f.out[1].equals(full.subarray(off)), `ws from=${off}`);
                if (off === full.length) assert.equal(f.out[1].length, 0);
                assert.deepEqual(f.order.filter((x) => x !== 'data').slice(-2), ['replayed', 'exit']);
                const ex = f.msgs.at(-1);
                assert.equal(ex.type, 'exit');
                assert.equal(ex.exitCode, 0);
        }
        // SSE: data events carry {stream, offset, data}; the id resumes
        const s = await sse(p.processId);
        assert.equal(s.status, 200);
        const outs = s.events.filter((e) => e.event === 'stdout');
        assert.equal(outs.map((e) => e.data.data).join(''), full.toString());
        assert.equal(outs[0].data.offset, 0);
        const mid = outs[Math.floor(outs.length / 2)];
        assert.match(mid.id, /^\d+,\d+$/);
        const resumed = await sse(p.processId, { headers: { 'last-event-id': mid.id } });
        const after = Number(mid.id.split(',')[0]);
        assert.equal(resumed.events.filter((e) => e.event === 'stdout').map((e) => e.data.data).join(''),
                full.subarray(after).toString());
        assert.equal(resumed.events.at(-1).event, 'exit');
});

test('two listeners of a live process get identical bytes; replay then live', async () => {
        const p = await start({ cmd: 'i=0; while [ $i -lt 40 ]; do echo tick$i; i=$((i+1)); sleep 0.02; done' });
        const a = attach(p.processId);
        await sleep(300);
        const b = attach(p.processId);
        await Promise.all([a.opened, b.opened]);
        await Promise.all([a.done, b.done]);
        assert.deepEqual(a.errors, []);
        assert.deepEqual(b.errors, []);
        assert.equal(a.out[1].toString(), expectedLines('tick', 40));
        assert.ok(a.out[1].equals(b.out[1]));
        // b joined late: part of its output came before the replay marker, the rest after it
        const marker = b.msgs.find((m) => m.type === 'replayed');
        assert.ok(marker.stdout > 0 && marker.stdout < b.out[1].length, fmt(marker));
});

test('a slow listener holds back neither the process nor other listeners', async () => {
        // 600 KiB fits the 1 MiB log: the stalled client gets it all once it reads again
        const p = await start({ cmd: 'head -c 614400 /dev/urandom | base64 -w 100' });
        const slow = attach(p.processId);
        await slow.opened;
        slow.ws._socket.pause();
        const fast = attach(p.processId);
        await fast.opened;
        const w = await wait(p.processId, { timeout: 20 });
        assert.equal(w.status, 'exited', 'the process finished while a client was not reading');
        await fast.done;
        slow.ws._socket.resume();
        await slow.done;
        assert.deepEqual(slow.errors, []);
        assert.equal(fast.out[1].length, w.streams.stdout.end);
        assert.ok(slow.out[1].equals(fast.out[1]));
        assert.equal(slow.msgs.filter((m) => m.type === 'truncated').length, 0);
});

test('past the log cap: the head is dropped and reported, never silently', async () => {
        const p = await start({ cmd: 'head -c 3000000 /dev/zero | tr "\\0" x' });
        const w = await wait(p.processId);
        assert.equal(w.streams.stdout.end, 3000000);
        assert.ok(w.streams.stdout.start > 0 && w.streams.stdout.start <= 3000000 - 1048576, fmt(w.streams));
        const f = attach(p.processId);
        await f.opened;
        await f.done;
        const tr = f.msgs.find((m) => m.type === 'truncated');
        assert.deepEqual(tr, { type: 'truncated', stream: 'stdout', from: 0, to: w.streams.stdout.start });
        assert.equal(f.out[1].length, 3000000 - w.streams.stdout.start);
        const r = await raw(p.processId);
        assert.equal(r.headers.get('x-stream-start'), String(w.streams.stdout.start));
        assert.equal(r.body.length, 3000000 - w.streams.stdout.start);
});

test('stdin: written over HTTP and WebSocket, closed with eof', async () => {
        const p = await start({ cmd: 'cat; echo done', stdin: true });
        assert.equal(p.stdinOpen, true);
        let r = await req('POST', P(sb.id, `/${p.processId}/stdin`), 'hello ', { raw: true });
        assert.equal(r.status, 204, describe(r));
        const f = attach(p.processId);
        await f.opened;
        f.ws.send(Buffer.from('from ws\n'));
        f.ws.send(JSON.stringify({ type: 'stdin', data: 'text frame\n' }));
        await waitFor(() => f.out[1].toString().includes('text frame'), 5000, { what: 'echo of stdin' });
        r = await req('POST', P(sb.id, `/${p.processId}/stdin?eof=true`), 'last\n', { raw: true });
        assert.equal(r.status, 204);
        await f.done;
        assert.equal(f.out[1].toString(), 'hello from ws\ntext frame\nlast\ndone\n');
        r = await req('POST', P(sb.id, `/${p.processId}/stdin`), 'late', { raw: true });
        expectError(r, 409, 'stdin_closed');
        // without stdin: true the process reads end of file at once
        const q = await start({ cmd: 'cat; echo eof' });
        assert.equal(q.stdinOpen, false);
        assert.equal((await wait(q.processId)).exitCode, 0);
        assert.equal((await raw(q.processId)).body.toString(), 'eof\n');
        const s = await start({ cmd: 'cat', stdin: 'given\n' });
        await wait(s.processId);
        assert.equal((await raw(s.processId)).body.toString(), 'given\n');
});

test('signals: TERM shows the signal; KILL (the default) kills the tree, also what left the group', async () => {
        const p = await start({ cmd: 'sleep 60' });
        let r = await req('POST', P(sb.id, `/${p.processId}/signal`), { signal: 'TERM' });
        assert.equal(r.status, 200, describe(r));
        let w = await wait(p.processId);
        assert.equal(w.status, 'killed');
        assert.equal(w.signal, 'SIGTERM');
        assert.equal(w.exitCode, 143);
        const tag = `marker${Date.now()}`;
        const q = await start({ argv: ['/bin/bash', '-c', `setsid bash -c 'exec -a ${tag} sleep 60' & exec -a ${tag}x sleep 60`] });
        await sleep(200);
        r = await req('POST', P(sb.id, `/${q.processId}/signal`), {});
        assert.equal(r.status, 200);
        w = await wait(q.processId);
        assert.equal(w.status, 'killed');
        assert.equal(w.signal, 'SIGKILL');
        await waitFor(async () => !(await fx.api.sh(sb.id, `ps -eo args | grep -c '^${tag}' || true`)).startsWith('1'), 5000,
                { what: 'the detached child killed too' });
        assert.equal((await fx.api.sh(sb.id, `ps -eo args | grep '^${tag}' | wc -l`)).trim(), '0');
        r = await req('POST', P(sb.id, `/${q.processId}/signal`), { signal: 'TERM' });
        expectError(r, 409, 'process_not_running');
});

test('a timeout kills the whole process tree and says so', async () => {
        const tag = `tmo${Date.now()}`;
        const p = await start({ argv: ['/bin/bash', '-c', `(exec -a ${tag} sleep 60) & exec -a ${tag} sleep 60`], timeout: 1 });
        const w = await wait(p.processId);
        assert.equal(w.status, 'timeout');
        assert.equal(w.signal, 'SIGKILL');
        assert.ok(w.durationMs >= 900 && w.durationMs < 5000, fmt(w));
        assert.equal((await fx.api.sh(sb.id, `ps -eo args | grep '^${tag}' | wc -l`)).trim(), '0');
});

test('a terminal: the process sees a tty, resize changes stty size, scrollback replays', async () => {
        const p = await start({ argv: ['/bin/bash', '--norc', '-i'], pty: { cols: 100, rows: 30 }, env: { PS1: '$ ' } });
        assert.deepEqual(p.pty, { cols: 100, rows: 30 });
        assert.deepEqual(Object.keys(p.streams), ['pty']);
        const f = attach(p.processId);
        await f.opened;
        f.ws.send(Buffer.from('tty; stty size\n'));
        await waitFor(() => /30 100/.test(f.out[3].toString()), 5000, { what: `stty size in ${fmt(f.out[3].toString())}` });
        assert.match(f.out[3].toString(), /\/dev\/pts\/\d+/);
        f.ws.send(JSON.stringify({ type: 'resize', cols: 132, rows: 43 }));
        await sleep(100);
        f.ws.send(Buffer.from('stty size\n'));
        await waitFor(() => /43 132/.test(f.out[3].toString()), 5000, { what: 'stty size after resize' });
        const r = await req('POST', P(sb.id, `/${p.processId}/resize`), { cols: 90, rows: 20 });
        assert.equal(r.status, 200, describe(r));
        f.ws.close();
        await f.done;
        // a second client replays the scrollback, then drives the shell to its end
        const g = attach(p.processId);
        await g.opened;
        await waitFor(() => g.order.includes('replayed'), 5000);
        assert.ok(g.out[3].toString().includes('43 132'));
        g.ws.send(Buffer.from('exit 7\n'));
        await g.done;
        assert.equal(g.msgs.at(-1).exitCode, 7);
        expectError(await req('GET', P(sb.id, `/${p.processId}/stderr`)), 404, 'stream_not_found');
        const q = await start({ cmd: 'sleep 1' });
        expectError(await req('POST', P(sb.id, `/${q.processId}/resize`), { cols: 10, rows: 10 }), 409, 'not_a_terminal');
});

test('keepAfterDisconnect false: killed when its last client leaves; maxRunAfterDisconnect', async () => {
        const p = await start({ cmd: 'sleep 60', keepAfterDisconnect: false });
        const f = attach(p.processId);
        await f.opened;
        await sleep(100);
        let g = await req('GET', P(sb.id, `/${p.processId}`));
        assert.equal(g.json.attached, 1);
        assert.equal(g.json.status, 'running');
        f.ws.close();
        const w = await wait(p.processId, { timeout: 10 });
        assert.equal(w.status, 'killed');
        const q = await start({ cmd: 'sleep 60', maxRunAfterDisconnect: 1 });
        const t0 = Date.now();
        const wq = await wait(q.processId, { timeout: 10 });
        assert.equal(wq.status, 'killed');
        assert.ok(Date.now() - t0 < 5000);
        // a process nobody attaches to and without limits runs on
        const r = await start({ cmd: 'sleep 2' });
        g = await wait(r.processId, { timeout: 0 });
        assert.equal(g.status, 'running');
});

test('a process runs as a user of the sandbox', async () => {
        const p = await start({ cmd: 'id -u; id -g; echo $HOME', user: 'nobody' });
        await wait(p.processId);
        assert.equal((await raw(p.processId)).body.toString(), '65534\n65534\n/nonexistent\n');
        expectError(await req('POST', P(sb.id), { cmd: 'id', user: 'no-such-user' }), 404, 'user_not_found');
});

test('bad input gets clear errors', async () => {
        const p = await start({ cmd: 'echo x' });
        await wait(p.processId);
        expectError(await req('GET', P(sb.id, '/prc_aaaaaaaaaaaaaaaaaaaa')), 404, 'process_not_found');
        expectError(await req('GET', P(sb.id, '/99999')), 404, 'process_not_found');
        expectError(await req('POST', P(sb.id, `/${p.processId}/signal`), { signal: 'NOPE' }), 400, 'invalid_value', 'signal');
        expectError(await req('POST', P(sb.id, `/${p.processId}/signal`), { signal: 99 }), 400, 'invalid_value', 'signal');
        expectError(await req('GET', P(sb.id, `/${p.processId}/stdout?from=-1`)), 400, 'invalid_value', 'from');
        expectError(await req('GET', P(sb.id, `/${p.processId}/stdout?from=3`)), 400, 'out_of_range', 'from');
        expectError(await req('GET', P(sb.id, `/${p.processId}/attach?from=abc`)), 400, 'invalid_value', 'from');
        expectError(await req('GET', P(sb.id, `/${p.processId}/wait?timeout=-1`)), 400, 'out_of_range', 'timeout');
        expectError(await req('POST', P(sb.id), { cmd: 'x', pty: { cols: 0 } }), 400, 'out_of_range', 'pty.cols');
        expectError(await req('POST', P(sb.id), { cmd: 'x', nope: 1 }), 400, 'unknown_field', 'nope');
        expectError(await req('POST', P(sb.id), { cmd: 'x', timeout: -1 }), 400, 'out_of_range', 'timeout');
        expectError(await req('POST', P(sb.id), { cmd: 'x', stdin: 3 }), 400, 'invalid_type', 'stdin');
        expectError(await req('POST', P(sb.id), {}), 400, 'missing_field');
        expectError(await req('POST', P('sbx_aaaaaaaaaaaaaaaaaaaa'), { cmd: 'x' }), 404, 'sandbox_not_found');
        // a command that does not exist: like a shell, 127 and the reason on stderr
        const q = await start({ argv: ['/no/such/binary'] });
        const w = await wait(q.processId);
        assert.equal(w.exitCode, 127);
        assert.match((await raw(q.processId, 'stderr')).body.toString(), /cannot execute/);
        expectError(await req('POST', P(sb.id), { cmd: 'x', cwd: '/no/such/dir' }), 400, 'invalid_value', 'cwd');
});

test('a stopped sandbox keeps its processes\' output; they show as killed', async () => {
        const other = await fx.api.createOk({});
        const p = await start({ cmd: 'echo before; sleep 60' }, other.id);
        await waitFor(async () => (await raw(p.processId, 'stdout', 'follow=false', other.id)).body.length > 0, 5000);
        const st = await fx.api.stop(other.id);
        assert.equal(st.status, 200, describe(st));
        const g = await req('GET', P(other.id, `/${p.processId}`));
        assert.equal(g.json.status, 'killed');
        assert.equal(g.json.signal, 'SIGKILL');
        assert.equal((await raw(p.processId, 'stdout', '', other.id)).body.toString(), 'before\n');
        assert.equal((await fx.api.del(other.id)).status, 204);
});

test('jobs: detached commands with pending/running/completed/failed/cancelled', async () => {
        const J = (rest = '') => `/v1/sandboxes/${sb.id}/jobs${rest}`;
        let r = await req('POST', J(), { cmd: 'echo built; exit 0', tag: 'build' });
        assert.equal(r.status, 201, describe(r));
        const ok = r.json;
        assert.equal(ok.jobId, ok.processId);
        assert.ok(['running', 'pending', 'completed'].includes(ok.status), ok.status);
        assert.equal(ok.kind, 'job');
        await wait(ok.jobId);
        r = await req('GET', J(`/${ok.jobId}`));
        assert.equal(r.json.status, 'completed');
        assert.equal((await fetch(`${fx.url}${r.json.stdoutUrl}`, { headers: { authorization: `Bearer ${fx.key}` } }).then((x) => x.text())), 'built\n');
        r = await req('POST', J(), { cmd: 'exit 2' });
        await wait(r.json.jobId);
        assert.equal((await req('GET', J(`/${r.json.jobId}`))).json.status, 'failed');
        // stop: TERM first; a job that ignores it is killed after the grace period
        r = await req('POST', J(), { argv: ['/bin/bash', '-c', 'trap "" TERM; sleep 60'] });
        const stubborn = r.json.jobId;
        r = await req('POST', J(), { cmd: 'sleep 60' });
        const polite = r.json.jobId;
        await sleep(200);
        r = await req('POST', J(`/${polite}/stop`));
        assert.equal(r.status, 200, describe(r));
        assert.equal((await wait(polite)).signal, 'SIGTERM');
        assert.equal((await req('GET', J(`/${polite}`))).json.status, 'cancelled');
        const t0 = Date.now();
        assert.equal((await req('POST', J(`/${stubborn}/stop`))).status, 200);
        const w = await wait(stubborn, { timeout: 20 });
        assert.equal(w.signal, 'SIGKILL');
        assert.ok(Date.now() - t0 >= 4500, 'killed after the grace period');
        const list = await req('GET', J());
        assert.ok(list.json.jobs.every((j) => j.kind === 'job'));
        assert.equal(list.json.jobs.find((j) => j.jobId === stubborn).status, 'cancelled');
        // maxRunAfterDisconnect: nobody attached, so it ends after that long
        r = await req('POST', J(), { cmd: 'sleep 60', maxRunAfterDisconnect: 1 });
        assert.equal((await wait(r.json.jobId, { timeout: 10 })).status, 'killed');
        assert.equal((await req('GET', J(`/${r.json.jobId}`))).json.status, 'failed');
        // a process is not a job; bad input
        const p = await start({ cmd: 'true' });
        expectError(await req('GET', J(`/${p.processId}`)), 404, 'job_not_found');
        expectError(await req('GET', J('/prc_aaaaaaaaaaaaaaaaaaaa')), 404, 'job_not_found');
        expectError(await req('POST', J(), { cmd: 'x', pty: { cols: 10, rows: 10 } }), 400, 'unknown_field', 'pty');
        expectError(await req('POST', J(`/${ok.jobId}/stop`)), 409, 'process_not_running');
});

test('a stream gets its log file only with its first byte', async () => {
        const dir = path.join(fx.daemon.dataDir, 'sandboxes', sb.id, 'streams');
        const quiet = await start({ cmd: 'true' });
        const loud = await start({ cmd: 'echo out' });
        await wait(quiet.processId);
        await wait(loud.processId);
        const files = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
        assert.ok(!files.some((f) => f.startsWith(quiet.processId)), fmt(files));
        assert.ok(files.includes(`${loud.processId}.stdout`), fmt(files));
        assert.ok(!files.includes(`${loud.processId}.stderr`), fmt(files));
        assert.equal((await raw(quiet.processId)).body.length, 0);
        assert.equal((await raw(quiet.processId, 'stderr', 'follow=false')).body.length, 0);
        assert.equal((await raw(loud.processId)).body.toString(), 'out\n');
});

test('WebSocket control frames: signal, bad frames get an error message', async () => {
        const p = await start({ argv: ['/bin/bash', '-c', 'trap "echo got-int; exit 9" INT; echo ready; while :; do sleep 0.05; done'] });
        const f = attach(p.processId);
        await f.opened;
        await waitFor(() => f.out[1].toString().includes('ready'), 5000, { what: 'ready' });
        f.ws.send('not json');
        f.ws.send(JSON.stringify({ type: 'dance' }));
        f.ws.send(JSON.stringify({ type: 'resize', cols: 10, rows: 10 }));
        f.ws.send(JSON.stringify({ type: 'signal', signal: 'BOGUS' }));
        await waitFor(() => f.msgs.filter((m) => m.type === 'error').length >= 4, 5000, { what: `errors in ${fmt(f.msgs)}` });
        const codes = f.msgs.filter((m) => m.type === 'error').map((m) => m.code);
        assert.deepEqual(codes, ['invalid_value', 'invalid_value', 'not_a_terminal', 'invalid_value']);
        f.ws.send(JSON.stringify({ type: 'signal', signal: 'INT' }));
        await f.done;
        assert.match(f.out[1].toString(), /got-int/);
        assert.equal(f.msgs.at(-1).exitCode, 9);
});
