#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// Processes and output streams benchmark (a benchmark, not a test: it fails nothing). Starts a
// private sbxd (pool off, host template, --stream-log 2G so the 1 GiB stream is kept whole) and
// measures, printing p50/p99 and ratios against a baseline run side by side:
//   1. background process start: POST .../processes {"argv":["/bin/true"]} until its 201, from a C
//      client on a kept-alive connection (bench/sbx-bench spawn), next to the exec round trip of
//      the same command (sbx-bench exec) and `nsenter -a -t <the sandbox's PID 1> /bin/true` (the
//      kernel's floor for starting a process in existing namespaces, what `docker exec` wraps);
//   2. first byte latency: python3 in the sandbox writes time.monotonic_ns() every 2 ms; a
//      WebSocket client (npm ws) attached to the process takes now - stamp on arrival (the same
//      CLOCK_MONOTONIC: sandboxes have no time namespace);
//   3. throughput: `head -c 1G /dev/zero` followed over WebSocket (node) and over the plain
//      chunked .../stdout (curl -o /dev/null), against `head -c 1G /dev/zero | cat > /dev/null`;
//   4. fan-out: 1,000 WebSocket clients attached at once (10 processes x 100) to processes that
//      write a stamp every 50 ms for 10 s: errors and the p99 event latency over all of them.
// Usage: sudo node bench/processes.mjs [--runs N] [--sbxd PATH] [--out FILE]
// Results also go to bench/results-processes.json.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { GIB, bench, buildTool, opt, repo, startSbxd, stats as stats0 } from './lib.mjs';

const WebSocket = createRequire(path.join(repo, 'tests', 'package.json'))('ws');
const RUNS = Number(opt('--runs', 500));
const outFile = opt('--out', path.join(bench, 'results-processes.json'));
const say = (s) => process.stderr.write(`processes.mjs: ${s}\n`);
const r3 = (v) => Math.round(v * 1000) / 1000;
const stats = (a) => {
        const s = stats0(a);
        return { p50: r3(s.p50), p99: r3(s.p99), n: s.n };
};
const sbxd = startSbxd('processes-bench', ['--stream-log', '2G']);
const { url, key, api } = sbxd;
const port = new URL(url).port;

/* Now in ns on CLOCK_MONOTONIC, which the sandbox shares with the host (no time namespace): the
 * stamps written inside compare with it directly, no calibration between two clocks. */
const nowNs = () => process.hrtime.bigint();

function attach(sb, pid, onFrame, query = '') {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/sandboxes/${sb}/processes/${pid}/attach${query}`, {
                headers: { authorization: `Bearer ${key}` }, perMessageDeflate: false,
        });
        const c = { ws, errors: 0, closed: false };
        c.opened = new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
        c.done = new Promise((resolve) => ws.on('close', () => { c.closed = true; resolve(); }));
        ws.on('error', () => { c.errors++; });
        ws.on('message', (data, isBinary) => {
                if (isBinary) onFrame(data);
                else if (JSON.parse(data.toString()).type === 'truncated') c.errors++;
        });
        return c;
}

/* A line splitter over frames: calls fn(stampNs) for each complete "<ns>\n" line, at arrival. */
function stampParser(fn) {
        let partial = '';
        return (frame) => {
                const t = nowNs();
                const text = partial + frame.subarray(9).toString();
                const lines = text.split('\n');
                partial = lines.pop();
                for (const l of lines) if (l) fn(Number(t - BigInt(l)) / 1e6);
        };
}

const STAMPER = (n, ms) => ['python3', '-c', `import time,sys\nfor i in range(${n}):\n    sys.stdout.write(str(time.monotonic_ns())+'\\n'); sys.stdout.flush(); time.sleep(${ms / 1000})`];

const results = { date: new Date().toISOString(), host: fs.readFileSync('/proc/loadavg', 'utf8').trim() };
try {
        const sbxBench = buildTool('sbx-bench');
        const runcmd = buildTool('runcmd');
        const env = { ...process.env, SBX_URL: url, SBX_KEY: key };
        execFileSync(sbxBench, ['wait', '--timeout', '60'], { env });
        const run = (mode, n) => JSON.parse(execFileSync(sbxBench, ['-n', String(n), '-w', '20', '--template', 'host', mode], { env }).toString());

        // ---- 1. start RTT ----
        say(`start: ${RUNS} POST .../processes, ${RUNS} exec, nsenter`);
        const spawnRes = run('spawn', RUNS);
        const execRes = run('exec', RUNS);
        const sb = (await api('POST', '/v1/sandboxes', { template: 'host' })).json.id;
        const init = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).find((d) => {
                try {
                        return fs.readFileSync(`/proc/${d}/cgroup`, 'utf8').includes(sb) &&
                                fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').startsWith('sbx-init');
                } catch { return false; }
        });
        let nsenter = null;
        if (init) {
                const out = spawnSync(runcmd, ['-n', String(Math.min(RUNS, 200)), '-w', '10', '-N', 'nsenter', '--', 'nsenter', '-a', '-t', init, '/bin/true']);
                nsenter = out.status === 0 ? JSON.parse(out.stdout.toString()) : null;
        }
        results.start = {
                spawn: { p50: spawnRes.p50_ms, p99: spawnRes.p99_ms, n: spawnRes.runs },
                exec: { p50: execRes.p50_ms, p99: execRes.p99_ms },
                nsenter: nsenter && { p50: nsenter.p50_ms, p99: nsenter.p99_ms },
        };

        // ---- 2. first byte latency ----
        say('latency: 2000 stamps, 2 ms apart');
        const lat = [];
        let p = (await api('POST', `/v1/sandboxes/${sb}/processes`, { argv: ['sh', '-c', 'sleep 0.3; exec "$@"', 'x', ...STAMPER(2000, 2)] })).json;
        const l = attach(sb, p.processId, stampParser((ms) => lat.push(ms)));
        await l.done;
        results.latency = { ...stats(lat.slice(50)), errors: l.errors };

        // ---- 3. throughput ----
        say('throughput: 1 GiB over WebSocket, over chunked HTTP, and a plain pipe');
        p = (await api('POST', `/v1/sandboxes/${sb}/processes`, { cmd: 'sleep 0.3; head -c 1073741824 /dev/zero' })).json;
        let bytes = 0;
        let t0 = 0;
        const tp = attach(sb, p.processId, (f) => { if (!t0) t0 = performance.now(); bytes += f.length - 9; });
        await tp.done;
        const wsSecs = (performance.now() - t0) / 1000;
        const curl = spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{size_download} %{time_total}', '-H', `Authorization: Bearer ${key}`,
                `${url}/v1/sandboxes/${sb}/processes/${p.processId}/stdout`]);
        const [cBytes, cSecs] = curl.stdout.toString().split(' ').map(Number);
        const t1 = performance.now();
        execFileSync('sh', ['-c', 'head -c 1073741824 /dev/zero | cat > /dev/null']);
        const pipeSecs = (performance.now() - t1) / 1000;
        results.throughput = {
                wsGiBs: r3(bytes / GIB / wsSecs), wsBytes: bytes,
                httpGiBs: r3(cBytes / GIB / cSecs), httpBytes: cBytes,
                pipeGiBs: r3(1 / pipeSecs),
        };

        // ---- 4. 1,000 attached clients ----
        say('fan-out: 1000 WebSocket clients on 10 processes');
        const fan = [];
        const sbs = [];
        const clients = [];
        for (let i = 0; i < 10; i++) {
                const q = (await api('POST', `/v1/sandboxes/${sb}/processes`, { argv: ['sh', '-c', 'sleep 3; exec "$@"', 'x', ...STAMPER(200, 50)] })).json;
                sbs.push(q.processId);
                for (let k = 0; k < 100; k++) clients.push(attach(sb, q.processId, stampParser((ms) => fan.push(ms)), '?from=0'));
        }
        await Promise.all(clients.map((c) => c.opened.catch(() => { c.errors++; })));
        const tOpen = performance.now();
        await Promise.all(clients.map((c) => c.done));
        results.fanout = {
                clients: clients.length, ...stats(fan), errors: clients.reduce((a, c) => a + c.errors, 0),
                expectedEvents: 10 * 100 * 200, secs: r3((performance.now() - tOpen) / 1000),
        };
        await api('DELETE', `/v1/sandboxes/${sb}`);
} finally {
        sbxd.proc.kill('SIGTERM');
}

const s = results.start;
console.log('\nprocesses benchmark (ms unless noted; p50 / p99)');
console.log(`  start (POST .../processes -> 201)  ${s.spawn.p50} / ${s.spawn.p99}` +
        `   exec round trip ${s.exec.p50} / ${s.exec.p99}` +
        (s.nsenter ? `   nsenter -a /bin/true ${s.nsenter.p50} / ${s.nsenter.p99}  (ratio ${r3(s.spawn.p50 / s.nsenter.p50)}x)` : ''));
console.log(`  first byte latency (WebSocket)      ${results.latency.p50} / ${results.latency.p99}  (${results.latency.n} events, ${results.latency.errors} errors)`);
const t = results.throughput;
console.log(`  1 GiB stream                        WebSocket ${t.wsGiBs} GiB/s (${t.wsBytes} B), HTTP ${t.httpGiBs} GiB/s (${t.httpBytes} B), plain pipe ${t.pipeGiBs} GiB/s`);
const f = results.fanout;
console.log(`  1000 attached clients               latency ${f.p50} / ${f.p99}, ${f.n} of ${f.expectedEvents} events, ${f.errors} errors`);
fs.writeFileSync(outFile, JSON.stringify(results, null, 2) + '\n');
