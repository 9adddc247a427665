// SPDX-License-Identifier: Apache-2.0
//
// What the node benchmarks (files.mjs, processes.mjs) share: command-line options, percentiles,
// a private sbxd on a random port with its API, and the C helpers (sbx-bench, runcmd) built
// into bench/.cache/bin.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const bench = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(bench, '..');
export const cache = path.join(bench, '.cache');
export const GIB = 1 << 30;

/* The value after `name` on the command line, else def. */
export function opt(name, def) {
        const args = process.argv.slice(2);
        const i = args.indexOf(name);
        return i >= 0 ? args[i + 1] : def;
}

/* Nearest-rank percentile. */
export function pct(a, p) {
        const s = [...a].sort((x, y) => x - y);
        return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
export const stats = (a) => ({ p50: pct(a, 50), p99: pct(a, 99), n: a.length });

/* Build bench/<name>.c into bench/.cache/bin/<name> and return its path. */
export function buildTool(name) {
        const bin = path.join(cache, 'bin', name);
        fs.mkdirSync(path.dirname(bin), { recursive: true });
        const cc = spawnSync('sh', ['-c', `cc -O2 -D_GNU_SOURCE -o ${bin} ${path.join(bench, name + '.c')} $(pkg-config --cflags --libs libcurl jansson) -lm`]);
        if (cc.status !== 0) throw new Error(`cannot build ${name}: ${cc.stderr}`);
        return bin;
}

/*
 * A private sbxd for one benchmark: a fresh work dir (its data and log), a random port, the pool
 * off, the host template, plus extraArgs. Returns {proc, url, key, work, api(method, path, body),
 * ready()} — ready() resolves once /v1/health answers.
 */
export function startSbxd(name, extraArgs = []) {
        const work = path.join(cache, name);
        const sbxdPath = opt('--sbxd', path.join(repo, 'build', 'sbxd'));
        const key = 'sbx_key_' + crypto.randomBytes(20).toString('hex');
        const port = 17000 + Math.floor(Math.random() * 4000);
        const url = `http://127.0.0.1:${port}`;

        fs.rmSync(work, { recursive: true, force: true });
        fs.mkdirSync(work, { recursive: true });
        const log = fs.openSync(path.join(work, 'sbxd.log'), 'w');
        const proc = spawn(sbxdPath, ['--data-dir', path.join(work, 'data'), '--listen', `127.0.0.1:${port}`, '--api-key', key,
                '--pool-size', '0', '--default-template', 'host', '--log-level', 'info', ...extraArgs],
        { stdio: ['ignore', log, log] });
        async function api(method, p, body) {
                const headers = { authorization: `Bearer ${key}` };
                if (body !== undefined) headers['content-type'] = 'application/json';
                const res = await fetch(url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
                const text = await res.text();
                let json = null;
                try { json = JSON.parse(text); } catch { /* not JSON */ }
                return { status: res.status, json, text };
        }
        async function ready() {
                for (let i = 0; ; i++) {
                        try {
                                if ((await fetch(url + '/v1/health')).ok) return;
                        } catch { /* not yet */ }
                        if (i > 200) throw new Error(`sbxd did not start (log: ${path.join(work, 'sbxd.log')})`);
                        await new Promise((r) => setTimeout(r, 50));
                }
        }
        return { proc, url, key, work, api, ready };
}
