#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// Files API benchmark (a benchmark, not a test: it fails nothing). Starts a private sbxd (pool
// off, host template) and measures, printing p50/p99 and ratios against a baseline run side by
// side on the same disk:
//   1. upload (PUT .../files/...) and download (GET) of a 1 GiB file over loopback with curl,
//      against `dd conv=fsync` of the same file into the same filesystem (upload: the disk's floor
//      for write + fsync) and `cat > /dev/null` of it (download: page cache read); sbxd's RSS is
//      sampled every 20 ms during each transfer (growth = max - before);
//   2. listing a 100,000-entry directory (all pages, limit 10,000 and a single 1,000 page), against
//      `ls -f | wc -l` of the same directory run inside the sandbox (an exec, so its ~1 ms
//      overhead is included);
//   3. stat RTT: GET /fs?op=stat from a C client on a kept-alive connection (bench/sbx-bench get),
//      against GET /v1/health (the HTTP floor of the same client and server);
//   4. watcher latency: a program inside the sandbox writes the current CLOCK_REALTIME (ns) into a
//      file every 20 ms; the watcher (content: text) delivers it over SSE and the client takes
//      now - that stamp (same host clock).
// Usage: sudo node bench/files.mjs [--runs N] [--sbxd PATH] [--out FILE]
// Results also go to bench/results-files.json.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { GIB, bench, buildTool, opt, startSbxd, stats } from './lib.mjs';

const RUNS = Number(opt('--runs', 5));
const outFile = opt('--out', path.join(bench, 'results-files.json'));
const say = (s) => process.stderr.write(`files.mjs: ${s}\n`);
const sbxd0 = startSbxd('files-bench');
const { url, key, work, api } = sbxd0;
const sbxd = sbxd0.proc;

function rssKiB(pid) {
        const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
        return m ? Number(m[1]) : 0;
}

/* Run cmd (argv) while sampling sbxd's RSS; {ms, rssGrowthKiB, stdout}. */
function timedWithRss(cmd, argv) {
        return new Promise((resolve, reject) => {
                const before = rssKiB(sbxd.pid);
                let max = before;
                const timer = setInterval(() => { max = Math.max(max, rssKiB(sbxd.pid)); }, 20);
                const t0 = performance.now();
                const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
                let out = '';
                let err = '';
                p.stdout.on('data', (c) => (out += c));
                p.stderr.on('data', (c) => (err += c));
                p.on('exit', (code) => {
                        const ms = performance.now() - t0;
                        clearInterval(timer);
                        max = Math.max(max, rssKiB(sbxd.pid));
                        if (code !== 0) reject(new Error(`${cmd} ${argv.join(' ')}: exit ${code}: ${err}`));
                        else resolve({ ms, rssGrowthKiB: max - before, stdout: out });
                });
        });
}

async function main() {
        await sbxd0.ready();
        const c = await api('POST', '/v1/sandboxes', { template: 'host' });
        if (c.status !== 201) throw new Error(`create: ${c.text}`);
        const id = c.json.id;
        const sbxDir = path.join(work, 'data', 'sandboxes', id);
        const results = { date: new Date().toISOString(), runs: RUNS };
        try {
                // ---- 1. 1 GiB up and down ----
                const src = path.join(work, 'src.bin');
                execFileSync('dd', ['if=/dev/urandom', `of=${src}`, 'bs=1M', 'count=1024', 'status=none']);
                const up = [], down = [], dd = [], cat = [], rssUp = [], rssDown = [];
                for (let i = 0; i < RUNS; i++) {
                        const ddDst = path.join(sbxDir, 'upper', 'dd.bin');
                        let t = await timedWithRss('dd', [`if=${src}`, `of=${ddDst}`, 'bs=1M', 'conv=fsync', 'status=none']);
                        dd.push(GIB / (t.ms / 1000) / GIB);
                        fs.rmSync(ddDst);
                        t = await timedWithRss('curl', ['-sS', '-f', '-o', '/dev/null', '-T', src, '-H', `Authorization: Bearer ${key}`,
                                `${url}/v1/sandboxes/${id}/files/root/big.bin`]);
                        up.push(GIB / (t.ms / 1000) / GIB);
                        rssUp.push(t.rssGrowthKiB);
                        t = await timedWithRss('curl', ['-sS', '-f', '-o', '/dev/null', '-H', `Authorization: Bearer ${key}`,
                                `${url}/v1/sandboxes/${id}/files/root/big.bin`]);
                        down.push(GIB / (t.ms / 1000) / GIB);
                        rssDown.push(t.rssGrowthKiB);
                        t = await timedWithRss('sh', ['-c', `cat ${path.join(sbxDir, 'upper', 'root', 'big.bin')} > /dev/null`]);
                        cat.push(GIB / (t.ms / 1000) / GIB);
                        say(`1 GiB run ${i + 1}: up ${up.at(-1).toFixed(2)} GiB/s (dd+fsync ${dd.at(-1).toFixed(2)}), down ${down.at(-1).toFixed(2)} GiB/s (cat ${cat.at(-1).toFixed(2)}), RSS +${rssUp.at(-1)}/+${rssDown.at(-1)} KiB`);
                }
                fs.rmSync(src);
                results.transfer = {
                        uploadGiBs: stats(up), ddFsyncGiBs: stats(dd), downloadGiBs: stats(down), catGiBs: stats(cat),
                        rssGrowthKiB: { upload: Math.max(...rssUp), download: Math.max(...rssDown) },
                };
                await api('POST', `/v1/sandboxes/${id}/fs`, { op: 'delete', path: '/root/big.bin' });

                // ---- 2. 100,000-entry listing ----
                const mk = await api('POST', `/v1/sandboxes/${id}/exec`, { cmd: 'mkdir /root/many && cd /root/many && seq -w 1 100000 | xargs touch', timeout: 600 });
                if (mk.json?.exitCode !== 0) throw new Error(`mkdir many: ${mk.text}`);
                const all = [], page = [], ls = [];
                for (let i = 0; i < Math.max(RUNS, 5); i++) {
                        let t0 = performance.now();
                        let cursor = null, n = 0;
                        do {
                                const q = new URLSearchParams({ op: 'list', path: '/root/many', limit: '10000' });
                                if (cursor) q.set('cursor', cursor);
                                const r = await api('GET', `/v1/sandboxes/${id}/fs?${q}`);
                                n += r.json.entries.length;
                                cursor = r.json.nextCursor;
                        } while (cursor);
                        all.push(performance.now() - t0);
                        if (n !== 100000) throw new Error(`listed ${n}`);
                        t0 = performance.now();
                        await api('GET', `/v1/sandboxes/${id}/fs?op=list&path=/root/many&limit=1000`);
                        page.push(performance.now() - t0);
                        t0 = performance.now();
                        const e = await api('POST', `/v1/sandboxes/${id}/exec`, { cmd: 'ls -f /root/many | wc -l' });
                        ls.push(performance.now() - t0);
                        if (e.json.stdout.trim() !== '100002') throw new Error(`ls: ${e.text}`);
                }
                results.listing = { all100kMs: stats(all), page1000Ms: stats(page), lsInSandboxMs: stats(ls) };
                say(`list 100k: ${stats(all).p50.toFixed(0)} ms p50 (page of 1000: ${stats(page).p50.toFixed(1)} ms; ls -f in the sandbox ${stats(ls).p50.toFixed(1)} ms)`);

                // ---- 3. stat RTT (C client, keep-alive) ----
                const tool = buildTool('sbx-bench');
                const env = { ...process.env, SBX_URL: url, SBX_KEY: key };
                const statOut = JSON.parse(execFileSync(tool, ['-n', String(2000), '--path', `/v1/sandboxes/${id}/fs?op=stat&path=/root/many/050000`, 'get'], { env }).toString());
                const healthOut = JSON.parse(execFileSync(tool, ['-n', String(2000), 'health'], { env }).toString());
                results.stat = { statMs: statOut, healthMs: healthOut };
                say(`stat RTT p50 ${statOut.p50_ms} ms p99 ${statOut.p99_ms} ms (health ${healthOut.p50_ms} / ${healthOut.p99_ms} ms)`);

                // ---- 4. watcher latency ----
                await api('POST', `/v1/sandboxes/${id}/fs`, { op: 'mkdir', path: '/root/wl' });
                const w = await api('POST', `/v1/sandboxes/${id}/watchers`, { path: '/root/wl', content: 'text' });
                const ac = new AbortController();
                const lat = [];
                const res = await fetch(`${url}/v1/sandboxes/${id}/watchers/${w.json.id}/events`, { headers: { authorization: `Bearer ${key}` }, signal: ac.signal });
                const reader = (async () => {
                        let buf = '';
                        try {
                                for await (const chunk of res.body) {
                                        const wall = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
                                        buf += Buffer.from(chunk).toString();
                                        let i;
                                        while ((i = buf.indexOf('\n\n')) >= 0) {
                                                const block = buf.slice(0, i);
                                                buf = buf.slice(i + 2);
                                                const d = block.split('\n').find((l) => l.startsWith('data: '));
                                                if (!d) continue;
                                                const ev = JSON.parse(d.slice(6));
                                                const stamp = (ev.content ?? '').trim();
                                                if ((ev.type === 'change' || ev.type === 'add') && /^\d+$/.test(stamp)) lat.push(Number(wall - BigInt(stamp)) / 1e6);
                                        }
                                }
                        } catch { /* aborted */ }
                })();
                const n = Math.max(200, RUNS * 40);
                await api('POST', `/v1/sandboxes/${id}/exec`, { cmd: `for i in $(seq ${n}); do date +%s%N > /root/wl/stamp; sleep 0.02; done`, timeout: 600 });
                await new Promise((r) => setTimeout(r, 200));
                ac.abort();
                await reader;
                results.watcher = { latencyMs: stats(lat) };
                say(`watcher latency p50 ${stats(lat).p50?.toFixed(2)} ms p99 ${stats(lat).p99?.toFixed(2)} ms over ${lat.length} events`);
        } finally {
                await api('DELETE', `/v1/sandboxes/${id}`);
                sbxd.kill('SIGTERM');
        }
        fs.writeFileSync(outFile, JSON.stringify(results, null, 2) + '\n');
        const t = results.transfer;
        console.log('\nfiles benchmark (p50 / p99)');
        console.log(`upload 1 GiB    ${t.uploadGiBs.p50.toFixed(2)} / ${t.uploadGiBs.p99.toFixed(2)} GiB/s   dd conv=fsync ${t.ddFsyncGiBs.p50.toFixed(2)} GiB/s   ratio ${(t.uploadGiBs.p50 / t.ddFsyncGiBs.p50).toFixed(2)}`);
        console.log(`download 1 GiB  ${t.downloadGiBs.p50.toFixed(2)} / ${t.downloadGiBs.p99.toFixed(2)} GiB/s   cat ${t.catGiBs.p50.toFixed(2)} GiB/s   ratio ${(t.downloadGiBs.p50 / t.catGiBs.p50).toFixed(2)}`);
        console.log(`sbxd RSS growth upload ${(t.rssGrowthKiB.upload / 1024).toFixed(1)} MiB, download ${(t.rssGrowthKiB.download / 1024).toFixed(1)} MiB`);
        const l = results.listing;
        console.log(`list 100,000    ${l.all100kMs.p50.toFixed(0)} / ${l.all100kMs.p99.toFixed(0)} ms (10 pages)   page of 1000 ${l.page1000Ms.p50.toFixed(1)} ms   ls -f in sandbox ${l.lsInSandboxMs.p50.toFixed(1)} ms`);
        const s = results.stat;
        console.log(`stat RTT        ${s.statMs.p50_ms} / ${s.statMs.p99_ms} ms   health ${s.healthMs.p50_ms} / ${s.healthMs.p99_ms} ms`);
        const wl = results.watcher.latencyMs;
        console.log(`watcher event   ${wl.p50?.toFixed(2)} / ${wl.p99?.toFixed(2)} ms (${wl.n} events)`);
}

main().catch((e) => {
        say(e.stack);
        sbxd.kill('SIGTERM');
        process.exit(1);
});
