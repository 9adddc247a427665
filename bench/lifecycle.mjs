#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// Lifecycle benchmark (a benchmark, not a test: it fails nothing). Starts a private sbxd (pool off,
// host template; --storage is passed through, e.g. --storage btrfs) and measures, printing p50/p99
// and ratios against a baseline run side by side:
//   1. pause and resume: POST .../pause and .../resume round trips (node http, kept-alive) on a
//      sandbox running 10 sleepers, one busy loop and a process streaming to an attached WebSocket
//      (which must keep its connection and get output again after each resume), next to the kernel
//      floor: writing cgroup.freeze on a host cgroup holding the same processes and polling
//      cgroup.events until "frozen 1";
//   2. snapshot of a sandbox with 10,000 changed files (100 B-8 KiB in 100 dirs): POST .../snapshots
//      until its 201, and how long the sandbox was frozen (frozenMs), next to `cp -a` of a tree like
//      the upper (what copying a container's writable layer costs);
//   3. fork x10 of that sandbox: POST .../fork {count:10} until its 201 (all ten running), and the
//      parent's frozen time;
//   4. hibernate and wake of a sandbox holding a 64 MiB python process (hibernation.memory says
//      whether the memory was kept).
// Usage: sudo node bench/lifecycle.mjs [--runs N] [--sbxd PATH] [--storage dir|btrfs] [--out FILE]
// Results also go to bench/results-lifecycle.json.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { bench, opt, repo, startSbxd, stats as stats0 } from './lib.mjs';

const WebSocket = createRequire(path.join(repo, 'tests', 'package.json'))('ws');
const RUNS = Number(opt('--runs', 100));
const SNAP_RUNS = Number(opt('--snap-runs', 5));
const storage = opt('--storage', null);
const outFile = opt('--out', path.join(bench, storage === 'btrfs' ? 'results-lifecycle-btrfs.json' : 'results-lifecycle.json'));
const say = (s) => process.stderr.write(`lifecycle.mjs: ${s}\n`);
const r3 = (v) => Math.round(v * 1000) / 1000;
const stats = (a) => {
        const s = stats0(a);
        return { p50: r3(s.p50), p99: r3(s.p99), n: s.n };
};
const sbxd = startSbxd('lifecycle-bench', storage ? ['--storage', storage] : []);
const { url, key } = sbxd;
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

/* One request on a kept-alive connection: {status, json, ms}. */
function req(method, p, body) {
        return new Promise((resolve, reject) => {
                const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
                const t0 = process.hrtime.bigint();
                const r = http.request(url + p, {
                        method, agent,
                        headers: { authorization: `Bearer ${key}`, ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}) },
                }, (res) => {
                        const chunks = [];
                        res.on('data', (c) => chunks.push(c));
                        res.on('end', () => {
                                const ms = Number(process.hrtime.bigint() - t0) / 1e6;
                                const text = Buffer.concat(chunks).toString();
                                let json = null;
                                try { json = JSON.parse(text); } catch { /* not JSON */ }
                                resolve({ status: res.statusCode, json, text, ms });
                        });
                });
                r.on('error', reject);
                if (data) r.write(data);
                r.end();
        });
}

async function ok(method, p, body, status = [200, 201, 204]) {
        const res = await req(method, p, body);
        if (!status.includes(res.status)) throw new Error(`${method} ${p}: ${res.status} ${res.text}`);
        return res;
}

const created = [];
async function create(body = {}) {
        const res = await ok('POST', '/v1/sandboxes', { template: 'host', ...body });
        created.push(res.json.id);
        return res.json;
}
const sh = async (id, cmd) => (await ok('POST', `/v1/sandboxes/${id}/exec`, { cmd, timeout: 600 })).json;

/* --- 1. pause / resume --------------------------------------------------------------------- */

/* The kernel floor: the same processes in a host cgroup, frozen and thawed by writing
 * cgroup.freeze and polling cgroup.events. */
function freezerFloor(runs) {
        const root = '/sys/fs/cgroup/unified';
        const dir = path.join(fs.existsSync(path.join(root, 'cgroup.procs')) ? root : '/sys/fs/cgroup', `sbx-bench-${process.pid}`);
        fs.mkdirSync(dir);
        const kids = [];
        try {
                for (let i = 0; i < 10; i++) kids.push(spawn('sleep', ['600'], { stdio: 'ignore' }));
                kids.push(spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
                for (const k of kids) fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(k.pid));
                const freeze = [], thaw = [];
                for (let i = 0; i < runs; i++) {
                        let t0 = process.hrtime.bigint();
                        fs.writeFileSync(path.join(dir, 'cgroup.freeze'), '1');
                        while (!fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8').includes('frozen 1'));
                        freeze.push(Number(process.hrtime.bigint() - t0) / 1e6);
                        t0 = process.hrtime.bigint();
                        fs.writeFileSync(path.join(dir, 'cgroup.freeze'), '0');
                        thaw.push(Number(process.hrtime.bigint() - t0) / 1e6);
                }
                return { freeze: stats(freeze), thaw: stats(thaw) };
        } finally {
                for (const k of kids) k.kill('SIGKILL');
                for (let i = 0; i < 100; i++) {
                        try { fs.rmdirSync(dir); break; } catch { execFileSync('sleep', ['0.02']); }
                }
        }
}

/* Pause/resume round trips on a sandbox running 10 sleepers and a process streaming to an
 * attached WebSocket (busy: plus a CPU-bound loop, which competes with sbxd and this client for
 * the 2 cores and takes the freezer longer to stop). */
async function pauseResume(busy) {
        const sb = await create();
        for (let i = 0; i < 10; i++) await ok('POST', `/v1/sandboxes/${sb.id}/processes`, { cmd: 'sleep 600' });
        if (busy) await ok('POST', `/v1/sandboxes/${sb.id}/processes`, { cmd: 'while :; do :; done' });
        const ticker = (await ok('POST', `/v1/sandboxes/${sb.id}/processes`, { cmd: 'while :; do echo tick; sleep 0.01; done' })).json;
        let frames = 0, closed = false;
        const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/sandboxes/${sb.id}/processes/${ticker.processId}/attach`, { headers: { authorization: `Bearer ${key}` } });
        ws.on('message', (m, binary) => { if (binary) frames++; });
        ws.on('close', () => { closed = true; });
        await new Promise((r) => ws.on('open', r));
        const pause = [], resume = [];
        let resumedOutput = 0, checks = 0;
        for (let i = 0; i < RUNS; i++) {
                const p = await ok('POST', `/v1/sandboxes/${sb.id}/pause`);
                pause.push(p.ms);
                const r = await ok('POST', `/v1/sandboxes/${sb.id}/resume`);
                resume.push(r.ms);
                if (i % 10 === 0) {
                        const before = frames;
                        checks++;
                        for (let k = 0; k < 100 && frames === before; k++) await new Promise((res) => setTimeout(res, 5));
                        if (frames > before) resumedOutput++;
                }
        }
        const wsKept = !closed;
        ws.close();
        await ok('DELETE', `/v1/sandboxes/${sb.id}`);
        return { pause: stats(pause), resume: stats(resume), wsKept, outputAfterResume: `${resumedOutput}/${checks}` };
}

/* --- 2. snapshot of 10,000 changed files, 3. fork x10 ---------------------------------------- */

const MAKE_FILES = `python3 - <<'EOF'
import os, random
random.seed(7)
for d in range(100):
    p = f"/root/data/d{d:03}"
    os.makedirs(p, exist_ok=True)
    for f in range(100):
        with open(f"{p}/f{f:03}", "wb") as fh:
            fh.write(os.urandom(random.randint(100, 8192)))
EOF`;

function cpFloor(runs) {
        const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-bench-cp-'));
        const src = path.join(base, 'src');
        try {
                spawnSync('sh', ['-c', `mkdir -p ${src} && cd ${src} && ${MAKE_FILES.replaceAll('/root/data', src)}`]);
                const t = [];
                for (let i = 0; i < runs; i++) {
                        const t0 = process.hrtime.bigint();
                        spawnSync('cp', ['-a', src, path.join(base, `dst${i}`)]);
                        t.push(Number(process.hrtime.bigint() - t0) / 1e6);
                }
                return stats(t);
        } finally {
                fs.rmSync(base, { recursive: true, force: true });
        }
}

async function snapshots() {
        const sb = await create();
        await sh(sb.id, MAKE_FILES);
        await ok('POST', `/v1/sandboxes/${sb.id}/processes`, { cmd: 'while :; do date > /root/clock; sleep 0.01; done' });
        const total = [], frozen = [];
        let backend = null;
        for (let i = 0; i < SNAP_RUNS; i++) {
                const res = await ok('POST', `/v1/sandboxes/${sb.id}/snapshots`, {});
                total.push(res.ms);
                frozen.push(res.json.frozenMs);
                backend = res.json.backend;
                if (i === 0) say(`snapshot: ${res.json.entries} entries, ${res.json.sizeBytes} bytes`);
                await ok('DELETE', `/v1/snapshots/${res.json.id}`);
        }
        const fork = [], forkFrozen = [];
        for (let i = 0; i < SNAP_RUNS; i++) {
                const res = await ok('POST', `/v1/sandboxes/${sb.id}/fork`, { count: 10 });
                fork.push(res.ms);
                forkFrozen.push(res.json.frozenMs);
                if (res.json.sandboxes.length !== 10) say(`fork made ${res.json.sandboxes.length}: ${JSON.stringify(res.json.errors)}`);
                for (const c of res.json.sandboxes) await ok('DELETE', `/v1/sandboxes/${c.id}`);
        }
        return { backend, snapshot: stats(total), frozen: stats(frozen), fork10: stats(fork), forkFrozen: stats(forkFrozen), cpA: cpFloor(SNAP_RUNS) };
}

/* --- 4. hibernate / wake ------------------------------------------------------------------ */

async function hibernate() {
        const sb = await create({ resources: { memory: 1024 } });
        const h = [], w = [];
        let memory = null;
        for (let i = 0; i < SNAP_RUNS; i++) {
                await ok('POST', `/v1/sandboxes/${sb.id}/processes`, { cmd: 'python3 -c "import time; b = bytearray(64 << 20); b[::4096] = b\'x\' * len(b[::4096]); time.sleep(3600)"' });
                await new Promise((r) => setTimeout(r, 500));
                const a = await ok('POST', `/v1/sandboxes/${sb.id}/hibernate`);
                h.push(a.ms);
                memory = a.json.hibernation?.memory ?? null;
                const b = await ok('POST', `/v1/sandboxes/${sb.id}/wake`);
                w.push(b.ms);
        }
        return { hibernate: stats(h), wake: stats(w), memory };
}

try {
        await sbxd.ready();
        const results = { date: new Date().toISOString(), runs: RUNS, storage: storage || 'dir' };
        say('pause/resume');
        results.pauseResume = await pauseResume(false);
        results.pauseResumeBusy = await pauseResume(true);
        results.freezerFloor = freezerFloor(RUNS);
        results.pauseResumeBusy = await pauseResume(true);
        results.freezerFloor = freezerFloor(RUNS);
        say('snapshots and fork');
        results.snapshots = await snapshots();
        say('hibernate/wake');
        results.hibernate = await hibernate();
        fs.writeFileSync(outFile, JSON.stringify(results, null, 2) + '\n');
        const pr = results.pauseResume, pb = results.pauseResumeBusy, fl = results.freezerFloor;
        const sn = results.snapshots, hb = results.hibernate;
        const ratio = (x, y) => (y ? r3(x / y) : null);
        console.log(`\nlifecycle benchmark (ms; p50 / p99; storage ${results.storage})`);
        console.log(`  pause  (HTTP round trip)            ${pr.pause.p50} / ${pr.pause.p99}   busy sandbox ${pb.pause.p50} / ${pb.pause.p99}   kernel freeze floor (busy) ${fl.freeze.p50} / ${fl.freeze.p99}  (x${ratio(pr.pause.p50, fl.freeze.p50)})`);
        console.log(`  resume (HTTP round trip)            ${pr.resume.p50} / ${pr.resume.p99}   busy sandbox ${pb.resume.p50} / ${pb.resume.p99}   kernel thaw floor ${fl.thaw.p50} / ${fl.thaw.p99}`);
        console.log(`  WebSocket kept through ${RUNS} pauses: ${pr.wsKept && pb.wsKept}, output after resume ${pr.outputAfterResume}, busy ${pb.outputAfterResume}`);
        console.log(`  snapshot, 10,000 files (${sn.backend})    ${sn.snapshot.p50} / ${sn.snapshot.p99}   frozen ${sn.frozen.p50} / ${sn.frozen.p99}   cp -a ${sn.cpA.p50} / ${sn.cpA.p99} (x${ratio(sn.snapshot.p50, sn.cpA.p50)})`);
        console.log(`  fork x10                            ${sn.fork10.p50} / ${sn.fork10.p99}   parent frozen ${sn.forkFrozen.p50} / ${sn.forkFrozen.p99}`);
        console.log(`  hibernate (64 MiB python)           ${hb.hibernate.p50} / ${hb.hibernate.p99}   wake ${hb.wake.p50} / ${hb.wake.p99}   memory kept: ${hb.memory}`);
} finally {
        for (const id of created) await req('DELETE', `/v1/sandboxes/${id}`).catch(() => {});
        agent.destroy();
        const exited = new Promise((r) => sbxd.proc.once('exit', r));
        sbxd.proc.kill('SIGTERM');
        await exited;
        // --storage btrfs left its image mounted for the next sbxd: nothing is left on it now
        if (storage === 'btrfs') spawnSync('umount', [path.join(sbxd.work, 'data', 'btrfs')]);
}
