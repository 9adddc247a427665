// SPDX-License-Identifier: Apache-2.0
//
// Exec semantics of POST /v1/sandboxes/{id}/exec (host template): exit codes, stdout/stderr
// separation, env (sandbox env, exec env overriding it), cwd (default /root), stdin (small, multi-KB,
// none), argv form vs cmd form, a missing binary (127), timeouts killing the whole process tree
// (also a child that left the process group), the 1 MiB output cap and its truncated flag,
// non-UTF-8 output, durationMs, ten concurrent execs, and NDJSON streaming (chunks arrive while the
// process still runs; the last line is the exit record).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describe, expectError, fmt, useDaemon, waitFor } from '../lib/harness.mjs';

let sb; // shared sandbox for the tests that leave nothing running behind
const fx = useDaemon({}, async (f) => {
        sb = await f.api.createOk({ env: { SBX_VAR: 'from-sandbox', ONLY_SANDBOX: 'yes' } });
});

// Every process in the sandbox as "pid cmdline" lines (no procps needed).
const PS = 'for p in /proc/[0-9]*; do printf "%s %s\\n" "${p#/proc/}" "$(tr "\\0" " " < $p/cmdline 2>/dev/null)"; done';

test('exit codes 0, 3, 255', async () => {
        for (const code of [0, 3, 255]) {
                const r = await fx.api.run(sb.id, `exit ${code}`);
                assert.equal(r.exitCode, code, fmt(r));
                assert.equal(r.timedOut, false);
                assert.equal(r.oomKilled, false);
                assert.equal(r.truncated, false);
        }
        const r = await fx.api.run(sb.id, ['/bin/false']);
        assert.equal(r.exitCode, 1, fmt(r));
});

test('stdout and stderr are separate streams', async () => {
        const r = await fx.api.run(sb.id, 'echo out1; echo err1 >&2; echo out2; printf err2 >&2');
        assert.equal(r.stdout, 'out1\nout2\n');
        assert.equal(r.stderr, 'err1\nerr2');
        assert.equal(r.exitCode, 0);
});

test('result has the documented fields and types', async () => {
        const res = await fx.api.exec(sb.id, { cmd: 'echo hi' });
        assert.equal(res.status, 200, describe(res));
        assert.match(res.headers['content-type'] ?? '', /^application\/json/);
        const r = res.json;
        assert.deepEqual(Object.keys(r).sort(), ['durationMs', 'exitCode', 'oomKilled', 'stderr', 'stdout', 'timedOut', 'truncated']);
        assert.ok(Number.isInteger(r.exitCode));
        assert.equal(typeof r.durationMs, 'number');
        for (const k of ['timedOut', 'truncated', 'oomKilled']) assert.equal(typeof r[k], 'boolean', k);
});

test('env: sandbox env is inherited; exec env overrides and does not stick', async () => {
        let r = await fx.api.run(sb.id, 'printf "%s,%s,%s" "$SBX_VAR" "$ONLY_SANDBOX" "${EXTRA-unset}"');
        assert.equal(r.stdout, 'from-sandbox,yes,unset');
        r = await fx.api.run(sb.id, 'printf "%s,%s,%s" "$SBX_VAR" "$ONLY_SANDBOX" "${EXTRA-unset}"',
                { env: { SBX_VAR: 'from-exec', EXTRA: 'x y' } });
        assert.equal(r.stdout, 'from-exec,yes,x y', 'exec env overrides sandbox env');
        r = await fx.api.run(sb.id, 'printf "%s,%s" "$SBX_VAR" "${EXTRA-unset}"');
        assert.equal(r.stdout, 'from-sandbox,unset', 'exec env must not leak into later execs');
        r = await fx.api.run(sb.id, ['/usr/bin/env'], { env: { ARGV_ENV: '1' } });
        assert.match(r.stdout, /^ARGV_ENV=1$/m, 'argv form gets the env too');
        assert.match(r.stdout, /^SBX_VAR=from-sandbox$/m);
});

test('cwd: default /root, or the given absolute directory', async () => {
        assert.equal(await fx.api.sh(sb.id, 'pwd'), '/root\n');
        assert.equal(await fx.api.sh(sb.id, 'pwd', { cwd: '/tmp' }), '/tmp\n');
        assert.equal(await fx.api.sh(sb.id, 'pwd', { cwd: '/' }), '/\n');
        const r = await fx.api.run(sb.id, ['/bin/pwd'], { cwd: '/tmp' });
        assert.equal(r.stdout, '/tmp\n');
});

test('stdin: given, multi-KB, and absent (EOF at once)', { timeout: 60_000 }, async () => {
        assert.equal(await fx.api.sh(sb.id, 'cat', { stdin: 'hello\nworld' }), 'hello\nworld');
        const big = 'abcdefghij'.repeat(20_000) + 'é'; // 200,002 bytes: more than a pipe buffer
        assert.equal(await fx.api.sh(sb.id, 'wc -c', { stdin: big }), '200002\n');
        const echoed = await fx.api.sh(sb.id, 'cat', { stdin: big });
        assert.equal(echoed, big, 'stdin round trip through cat');
        const t0 = Date.now();
        const r = await fx.api.run(sb.id, 'cat; echo done', { timeout: 10 });
        assert.equal(r.stdout, 'done\n', 'no stdin = immediate EOF');
        assert.equal(r.timedOut, false);
        assert.ok(Date.now() - t0 < 5000, 'cat without stdin must not wait for the timeout');
});

test('argv form runs without a shell; cmd form uses /bin/sh -c', async () => {
        let r = await fx.api.run(sb.id, ['/bin/echo', 'a  b', '$HOME', '*', ';', 'exit 3']);
        assert.equal(r.exitCode, 0);
        assert.equal(r.stdout, 'a  b $HOME * ; exit 3\n');
        r = await fx.api.run(sb.id, ['/bin/sh', '-c', 'echo "$0:$1"', 'zero', 'one']);
        assert.equal(r.stdout, 'zero:one\n');
        r = await fx.api.run(sb.id, 'echo $((6*7)) "$HOME"x; echo *', { cwd: '/' });
        assert.match(r.stdout, /^42 \S*x\n/);
        assert.match(r.stdout, /\bproc\b/, 'glob expanded by the shell');
});

test('missing binary: exit code 127', async () => {
        const r = await fx.api.run(sb.id, ['/nonexistent/binary', 'arg']);
        assert.equal(r.exitCode, 127, fmt(r));
        assert.equal(r.timedOut, false);
        const s = await fx.api.run(sb.id, 'no-such-command-sbx-test');
        assert.equal(s.exitCode, 127, fmt(s));
        assert.match(s.stderr, /not found/);
});

test('timeout kills the whole process tree', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const box = await api.createOk();
        const t0 = Date.now();
        const r = await api.run(box.id, 'sleep 100 & sleep 100', { timeout: 1 });
        const took = Date.now() - t0;
        assert.equal(r.timedOut, true, fmt(r));
        assert.equal(r.exitCode, 137, fmt(r));
        assert.ok(took >= 900, `returned after ${took} ms, before the 1 s timeout`);
        assert.ok(took < 3000, `timeout of 1 s took ${took} ms`);
        // the background sleep is dead too (allow a moment for the kill to land)
        await waitFor(async () => !/ sleep 100/.test(await api.sh(box.id, PS)), 2000, { what: 'no "sleep 100" left in the sandbox' });
        // and the sandbox is still usable
        assert.equal(await api.sh(box.id, 'echo alive'), 'alive\n');
});

test('timeout also kills children that left the session or were orphaned', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const box = await api.createOk();
        const r = await api.run(box.id,
                'setsid sleep 101 </dev/null >/dev/null 2>&1 & (sleep 102 </dev/null >/dev/null 2>&1 &); sleep 100', { timeout: 1 });
        assert.equal(r.timedOut, true, fmt(r));
        await waitFor(async () => !/ sleep 10[012]/.test(await api.sh(box.id, PS)), 2000,
                { what: 'no setsid/orphaned sleep left after the exec timed out' });
});

test('a process that finishes has timedOut false even with a short timeout', async () => {
        const r = await fx.api.run(sb.id, 'sleep 0.2; echo ok', { timeout: 5 });
        assert.equal(r.timedOut, false);
        assert.equal(r.exitCode, 0);
        assert.equal(r.stdout, 'ok\n');
});

test('output over 1 MiB per stream is truncated and flagged', { timeout: 60_000 }, async () => {
        let r = await fx.api.run(sb.id, "head -c 3000000 /dev/zero | tr '\\0' a");
        assert.equal(r.exitCode, 0, 'the process runs to completion; only the kept output is capped');
        assert.equal(r.truncated, true);
        assert.equal(r.stdout.length, 1048576);
        assert.match(r.stdout, /^a+$/);
        assert.equal(r.stderr, '');

        r = await fx.api.run(sb.id, "head -c 1048576 /dev/zero | tr '\\0' b");
        assert.equal(r.truncated, false, 'exactly 1 MiB is not truncated');
        assert.equal(r.stdout.length, 1048576);

        r = await fx.api.run(sb.id, "head -c 2000000 /dev/zero | tr '\\0' c >&2; echo small");
        assert.equal(r.truncated, true, 'stderr is capped too');
        assert.equal(r.stderr.length, 1048576);
        assert.equal(r.stdout, 'small\n');
});

test('non-UTF-8 output does not break the JSON response', async () => {
        const res = await fx.api.exec(sb.id, { cmd: "printf 'ok\\377\\376ok'; printf '\\300' >&2" });
        assert.equal(res.status, 200, describe(res));
        assert.equal(res.invalidUtf8, false, 'the response body must be valid UTF-8');
        assert.ok(res.json, `response does not parse: ${fmt(res.text)}`);
        assert.equal(res.json.exitCode, 0);
        assert.equal(typeof res.json.stdout, 'string');
        assert.ok(res.json.stdout.startsWith('ok') && res.json.stdout.endsWith('ok'), fmt(res.json.stdout));
        assert.ok(res.json.stdout.length > 4, 'the invalid bytes are represented somehow');
        assert.ok(res.json.stderr.length > 0);
});

test('durationMs measures the run', async () => {
        const r = await fx.api.run(sb.id, 'sleep 0.3');
        assert.equal(typeof r.durationMs, 'number');
        assert.ok(r.durationMs > 0);
        assert.ok(r.durationMs >= 250 && r.durationMs < 5000, `durationMs ${r.durationMs} for sleep 0.3`);
});

test('10 concurrent execs all succeed and run in parallel', { timeout: 60_000 }, async () => {
        const t0 = Date.now();
        const rs = await Promise.all(Array.from({ length: 10 }, (_, i) =>
                fx.api.run(sb.id, `sleep 1; echo n${i}; echo e${i} >&2`)));
        const took = Date.now() - t0;
        rs.forEach((r, i) => {
                assert.equal(r.exitCode, 0, fmt(r));
                assert.equal(r.stdout, `n${i}\n`);
                assert.equal(r.stderr, `e${i}\n`);
        });
        assert.ok(took < 5000, `10 x sleep 1 in parallel took ${took} ms (serialised?)`);
});

test('NDJSON streaming: output arrives while the process runs; last line is exit', { timeout: 30_000 }, async () => {
        const s = await fx.api.execStream(sb.id, { cmd: 'echo a; sleep 1; echo b; echo e >&2; sleep 0.2; exit 5' });
        assert.equal(s.status, 200, fmt(s.text));
        assert.match(s.headers['content-type'] ?? '', /^application\/x-ndjson/);
        assert.equal(s.invalidUtf8, false);
        assert.ok(s.lines.length >= 3, fmt(s.text));
        for (const l of s.lines) {
                assert.ok(l.obj && typeof l.obj === 'object', `line is not a JSON object: ${fmt(l.raw)}`);
                assert.ok(!l.unterminated, 'every line ends with \\n');
        }
        const firstOut = s.lines.find((l) => l.obj.type === 'stdout');
        assert.ok(firstOut, 'a stdout line');
        assert.equal(firstOut.obj.data, 'a\n');
        assert.ok(firstOut.at < 800, `first chunk arrived after ${Math.round(firstOut.at)} ms (not streamed)`);
        const last = s.lines[s.lines.length - 1];
        assert.equal(last.obj.type, 'exit', fmt(last.raw));
        assert.ok(last.at >= 1000, 'exit line comes at the end');
        assert.equal(last.obj.exitCode, 5);
        assert.equal(last.obj.timedOut, false);
        assert.equal(last.obj.truncated, false);
        assert.equal(last.obj.oomKilled, false);
        assert.equal(typeof last.obj.durationMs, 'number');
        assert.ok(last.obj.durationMs >= 1000);
        assert.equal(s.lines.filter((l) => l.obj.type === 'exit').length, 1, 'exactly one exit line');
        const out = s.lines.filter((l) => l.obj.type === 'stdout').map((l) => l.obj.data).join('');
        const err = s.lines.filter((l) => l.obj.type === 'stderr').map((l) => l.obj.data).join('');
        assert.equal(out, 'a\nb\n');
        assert.equal(err, 'e\n');
        for (const l of s.lines) assert.ok(['stdout', 'stderr', 'exit'].includes(l.obj.type), fmt(l.raw));
});

test('NDJSON streaming: 24 MB through back-pressure arrive whole, with stdout and stderr apart', { timeout: 60_000 }, async () => {
        // far more than the 256 KiB stream buffer and the 1 MiB buffered cap: nothing may be lost,
        // truncated or reordered within a stream, and the exit line comes last
        const n = 16 * 1024 * 1024, m = 8 * 1024 * 1024;
        const s = await fx.api.execStream(sb.id, {
                cmd: `head -c ${n} /dev/zero | tr '\\0' a; head -c ${m} /dev/zero | tr '\\0' b >&2`,
        });
        assert.equal(s.status, 200, fmt(s.text.slice(0, 500)));
        let out = 0, err = 0, other = 0;
        for (const l of s.lines) {
                if (l.obj.type === 'stdout') {
                        out += l.obj.data.length;
                        if (!/^a*$/.test(l.obj.data)) other++;
                } else if (l.obj.type === 'stderr') {
                        err += l.obj.data.length;
                        if (!/^b*$/.test(l.obj.data)) other++;
                }
        }
        assert.equal(out, n, 'every stdout byte arrived');
        assert.equal(err, m, 'every stderr byte arrived');
        assert.equal(other, 0, 'no stream mixed into the other');
        const last = s.lines[s.lines.length - 1];
        assert.equal(last.obj.type, 'exit');
        assert.equal(last.obj.exitCode, 0);
        assert.equal(last.obj.truncated, false);
});

test('NDJSON streaming: a client that stalls loses nothing, also when the process exits meanwhile', { timeout: 60_000 }, async () => {
        // the client stops reading for a while after the first chunk; whatever sbxd, the kernel and
        // the client's buffers do meanwhile, every byte must arrive once it reads again, and the
        // exit line must come last
        const n = 12 * 1024 * 1024;
        for (const stall of [1500, 300]) {
                const res = await fx.api.request('POST', `/v1/sandboxes/${sb.id}/exec`,
                        { cmd: `head -c ${n} /dev/zero | tr '\\0' a` },
                        { stream: true, headers: { accept: 'application/x-ndjson' }, timeoutMs: 50_000 });
                assert.equal(res.status, 200);
                const reader = res.body.getReader();
                const dec = new TextDecoder();
                let text = '', first = true;
                for (;;) {
                        const { value, done } = await reader.read();
                        if (done) break;
                        text += dec.decode(value, { stream: true });
                        if (first) {
                                first = false;
                                await new Promise((r) => setTimeout(r, stall));
                        }
                }
                const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
                const got = lines.filter((l) => l.type === 'stdout').reduce((a, l) => a + l.data.length, 0);
                assert.equal(got, n, `stall ${stall} ms: every stdout byte arrived`);
                assert.equal(lines[lines.length - 1].type, 'exit');
                assert.equal(lines[lines.length - 1].exitCode, 0);
        }
});

test('NDJSON streaming of a timed-out exec ends with timedOut true', { timeout: 30_000 }, async () => {
        const s = await fx.api.execStream(sb.id, { cmd: 'echo start; sleep 30', timeout: 1 });
        assert.equal(s.status, 200, fmt(s.text));
        const last = s.lines[s.lines.length - 1].obj;
        assert.equal(last.type, 'exit');
        assert.equal(last.timedOut, true);
        assert.equal(last.exitCode, 137);
        assert.ok(s.lines.some((l) => l.obj.type === 'stdout' && l.obj.data === 'start\n'), 'output before the timeout is kept');
});

test('NDJSON error before the stream starts is a normal JSON error', async () => {
        const s = await fx.api.execStream(sb.id, { cmd: 'true', bogus: 1 });
        assert.equal(s.status, 400, fmt(s.text));
        expectError({ status: s.status, headers: s.headers, json: JSON.parse(s.text), text: s.text }, 400, 'unknown_field', 'bogus');
});
