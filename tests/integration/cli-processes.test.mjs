// SPDX-License-Identifier: Apache-2.0
//
// The process verbs of the `sbx` CLI against a real sbxd (docs/processes.md, docs/man/sbx.1.md):
// `exec -d` prints a process id that `ps` lists; `logs` prints the exact bytes (binary too) and
// `-f` follows a running process to its end; `kill -s TERM` ends a sleep and `ps --all` shows it
// killed; `shell` with piped stdin runs the commands on a terminal (tty is /dev/pts/N, stty size
// is 24 80), exits with the remote exit code (128 + signal when killed) and leaves nothing running;
// bad input: an unknown process is exit 1 with the server's message, a bad signal a usage error.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SBX_CLI, ensureExecutable, fmt, run, unknownId, useDaemon, waitFor } from '../lib/harness.mjs';

let sb;
const fx = useDaemon({}, async (f) => {
        ensureExecutable(SBX_CLI, 'sbx');
        sb = await f.api.createOk({});
});

const P = (id, rest = '') => `/v1/sandboxes/${id}/processes${rest}`;
const PRC_RE = /^prc_[a-z0-9]+$/;

/* Run sbx with SBX_URL/SBX_KEY set: {code, signal, stdout (Buffer), out (its text), stderr, ms}. */
const sbx = (args, opts = {}) =>
        run(SBX_CLI, args, { env: { ...process.env, SBX_URL: fx.url, SBX_KEY: fx.key }, binary: true, ...opts });

const show = (r) => `exit ${r.code}, stdout ${fmt(r.out)}, stderr ${fmt(r.stderr)}`;

/* exit status 1 and one line on stderr that mentions needle */
function assertOneLineError(r, needle, what) {
        assert.equal(r.code, 1, `${what}: ${show(r)}`);
        const err = r.stderr.replace(/\n$/, '');
        assert.ok(err.length > 0 && !err.includes('\n'), `${what}: stderr should be one line: ${show(r)}`);
        assert.ok(err.includes(needle), `${what}: stderr should mention "${needle}": ${show(r)}`);
}

/* `sbx exec -d ARGS...`: asserts it printed just a process id, returns it */
async function detach(args) {
        const r = await sbx(['exec', '-d', ...args]);
        assert.equal(r.code, 0, `exec -d ${fmt(args)}: ${show(r)}`);
        assert.equal(r.stderr, '');
        assert.ok(r.out.endsWith('\n') && !r.out.slice(0, -1).includes('\n'), `one line: ${fmt(r.out)}`);
        const pid = r.out.trim();
        assert.match(pid, PRC_RE, `exec -d should print just the process id: ${fmt(r.out)}`);
        return pid;
}

async function wait(pid, timeout = 30) {
        const r = await fx.api.request('GET', P(sb.id, `/${pid}/wait?timeout=${timeout}`), undefined, { timeoutMs: (timeout + 10) * 1000 });
        assert.equal(r.status, 200, fmt(r.json));
        return r.json;
}

test('exec -d prints a process id that ps lists; --tag, -c and --json', async () => {
        const a = await detach([sb.id, '--', 'sleep', '30']);
        const b = await detach(['--tag', 'web', sb.id, '-c', 'sleep 31']);

        const ps = await sbx(['ps', sb.id]);
        assert.equal(ps.code, 0, show(ps));
        const lines = ps.out.trimEnd().split('\n');
        assert.match(lines[0], /^PROCESS ID\s+PID\s+STATUS\s+EXIT\s+STARTED\s+COMMAND$/, ps.out);
        const rowA = lines.find((l) => l.startsWith(a));
        const rowB = lines.find((l) => l.startsWith(b));
        assert.ok(rowA, `ps does not list ${a}: ${ps.out}`);
        assert.ok(rowB, `ps does not list ${b}: ${ps.out}`);
        assert.match(rowA, /\s\d+\s+running\s+-\s+\d{4}-\S+\s+sleep 30$/, rowA);
        assert.match(rowB, /\/bin\/sh -c sleep 31$/, rowB);

        const js = await sbx(['ps', '--json', sb.id]);
        assert.equal(js.code, 0, show(js));
        const list = JSON.parse(js.out).processes;
        const pb = list.find((p) => p.processId === b);
        assert.equal(pb.status, 'running');
        assert.equal(pb.tag, 'web');
        assert.ok(list.every((p) => p.status === 'running' || p.status === 'starting'), 'ps without --all: running only');

        const j = await sbx(['exec', '-d', '--json', sb.id, '--', 'true']);
        assert.equal(j.code, 0, show(j));
        const obj = JSON.parse(j.out);
        assert.match(obj.processId, PRC_RE);
        assert.deepEqual(obj.argv, ['true']);

        for (const pid of [a, b]) {
                const k = await sbx(['kill', sb.id, pid]);
                assert.equal(k.code, 0, show(k));
                assert.equal(k.out, '', 'kill prints nothing');
        }
        assert.equal((await wait(a)).status, 'killed');
});

test('logs prints the exact bytes, binary too; --stderr, --from; -f follows to the end', async () => {
        const pid = await detach([sb.id, '-c', "printf 'a\\000b\\377\\376c\\n'; printf 'to-err' >&2"]);
        await wait(pid);
        const want = Buffer.from([0x61, 0x00, 0x62, 0xff, 0xfe, 0x63, 0x0a]);
        const r = await sbx(['logs', sb.id, pid]);
        assert.equal(r.code, 0, show(r));
        assert.ok(r.stdout.equals(want), `logs: ${r.stdout.toString('hex')}`);
        const e = await sbx(['logs', '--stderr', sb.id, pid]);
        assert.equal(e.code, 0, show(e));
        assert.equal(e.out, 'to-err');
        const f = await sbx(['logs', '--from', '3', sb.id, pid]);
        assert.ok(f.stdout.equals(want.subarray(3)), `logs --from 3: ${f.stdout.toString('hex')}`);

        // a running process: without -f, what is there now; with -f, everything until it ends
        const slow = await detach([sb.id, '-c', 'for i in 1 2 3 4; do echo line$i; sleep 0.5; done']);
        const now = await sbx(['logs', sb.id, slow]);
        assert.equal(now.code, 0, show(now));
        assert.ok(now.ms < 1500, `logs without -f should not wait for the end (${now.ms} ms)`);
        const full = 'line1\nline2\nline3\nline4\n';
        assert.ok(full.startsWith(now.out) && now.out !== full, `logs without -f: ${fmt(now.out)}`);
        const follow = await sbx(['logs', '-f', sb.id, slow]);
        assert.equal(follow.code, 0, show(follow));
        assert.equal(follow.out, full);
        assert.equal((await wait(slow, 0)).status, 'exited', 'logs -f returns once the process ended');
});

test('kill -s TERM ends a sleep; ps --all shows it killed', async () => {
        const pid = await detach([sb.id, '--', 'sleep', '60']);
        const k = await sbx(['kill', '-s', 'TERM', sb.id, pid]);
        assert.equal(k.code, 0, show(k));
        assert.equal(k.out + k.stderr, '');
        const w = await wait(pid);
        assert.equal(w.status, 'killed');
        assert.equal(w.signal, 'SIGTERM');

        const ps = await sbx(['ps', sb.id]);
        assert.ok(!ps.out.includes(pid), `ps without --all lists the ended ${pid}: ${ps.out}`);
        const all = await sbx(['ps', '--all', sb.id]);
        assert.equal(all.code, 0, show(all));
        const row = all.out.split('\n').find((l) => l.startsWith(pid));
        assert.ok(row, `ps --all does not list ${pid}: ${all.out}`);
        assert.match(row, /\skilled\s+143\s/, row);

        // by pid in the sandbox, and by number
        const p2 = await detach([sb.id, '--', 'sleep', '60']);
        const pidNum = (await fx.api.request('GET', P(sb.id, `/${p2}`))).json.pid;
        const k2 = await sbx(['kill', '-s', '15', sb.id, String(pidNum)]);
        assert.equal(k2.code, 0, show(k2));
        assert.equal((await wait(p2)).signal, 'SIGTERM');
});

test('shell with piped stdin: a terminal, the remote exit code, nothing left running', async () => {
        const r = await sbx(['shell', sb.id], { input: 'tty; stty size; exit 3\n' });
        assert.equal(r.code, 3, show(r));
        assert.match(r.out, /\/dev\/pts\/\d+/, 'tty on a terminal');
        assert.match(r.out, /^24 80\r?$/m, 'stty size: 80x24 when stdin is not a terminal');
        const list = (await fx.api.request('GET', P(sb.id))).json.processes;
        const shell = list.filter((p) => p.pty).at(-1);
        assert.deepEqual(shell.argv, ['/bin/bash', '-l'], 'bash is the default shell where it exists');
        assert.equal(shell.keepAfterDisconnect, false);

        const c = await sbx(['shell', sb.id, '--', '/bin/sh', '-c', 'tty; exit 4']);
        assert.equal(c.code, 4, show(c));
        assert.match(c.out, /\/dev\/pts\/\d+/);

        const killed = await sbx(['shell', sb.id, '--', '/bin/sh', '-c', 'kill -TERM $$']);
        assert.equal(killed.code, 143, `killed by TERM: 128 + 15: ${show(killed)}`);

        // stdin ends: the shell gets ^D and exits by itself
        const eof = await sbx(['shell', '--cwd', '/tmp', sb.id], { input: 'pwd\n' });
        assert.equal(eof.code, 0, show(eof));
        assert.match(eof.out, /^\/tmp\r?$/m);

        await waitFor(async () => {
                const ps = (await fx.api.request('GET', P(sb.id))).json.processes;
                return ps.filter((p) => p.pty && p.status === 'running').length === 0;
        }, 5000, { what: 'no shell left running' });
});

test('bad input: unknown process, unknown sandbox, bad signal, bad usage', async () => {
        const prc = 'prc_' + 'a'.repeat(20);
        assertOneLineError(await sbx(['logs', sb.id, prc]), 'process_not_found', 'logs of an unknown process');
        assertOneLineError(await sbx(['kill', sb.id, prc]), 'process_not_found', 'kill of an unknown process');
        assertOneLineError(await sbx(['ps', unknownId()]), 'sandbox_not_found', 'ps of an unknown sandbox');
        assertOneLineError(await sbx(['shell', unknownId()]), 'sandbox_not_found', 'shell in an unknown sandbox');

        for (const args of [
                ['kill', '-s', 'BOGUS', sb.id, prc],
                ['kill', '-s', '99', sb.id, prc],
                ['kill', sb.id],
                ['ps'],
                ['logs', sb.id],
                ['logs', '--from', 'x', sb.id, prc],
                ['exec', '--tag', 't', sb.id, '--', 'true'],
                ['shell', sb.id, '--'],
        ]) {
                const r = await sbx(args);
                assert.equal(r.code, 2, `${fmt(args)}: usage error expected: ${show(r)}`);
                assert.ok(r.stderr.startsWith('sbx: '), `${fmt(args)}: ${show(r)}`);
        }
        const s = await sbx(['kill', '-s', 'BOGUS', sb.id, prc]);
        assert.match(s.stderr, /signal 'BOGUS'/);
});
