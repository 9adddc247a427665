#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// Templates and layers benchmark (a benchmark, not a test: it fails nothing). Starts a private
// sbxd (pool off) and measures, printing p50/p99 and ratios:
//   1. create latency (POST /v1/sandboxes until running, then delete) from a 1-layer template
//      (base) and from a 10-layer template (base + 9 file layers), interleaved;
//   2. importing an image tarball of about 300 MB (two new layers: 170 MB of incompressible
//      files, 20000 small files) against `tar -x` of the same layer blobs into a fresh directory
//      on the same disk (the import includes the upload over HTTP, the digest checks, unpacking
//      and committing the layers: hashing their canonical tar streams);
//   3. rebuilding an unchanged spec (every step a cache hit) until its `done` event.
// Usage: sudo node bench/templates.mjs [--runs N] [--templates-dir DIR] [--sbxd PATH] [--out FILE]
// Results also go to bench/results-templates.json. Everything is cached in bench/.cache/.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const bench = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(bench, '..');
const args = process.argv.slice(2);
const opt = (name, def) => {
        const i = args.indexOf(name);
        return i >= 0 ? args[i + 1] : def;
};
const RUNS = Number(opt('--runs', 100));
const cache = path.join(bench, '.cache');
const templatesDir = opt('--templates-dir', path.join(cache, 'sbx-templates'));
const sbxdPath = opt('--sbxd', path.join(repo, 'build', 'sbxd'));
const outFile = opt('--out', path.join(bench, 'results-templates.json'));
const work = path.join(cache, 'templates-bench');
const key = 'sbx_key_' + crypto.randomBytes(20).toString('hex');
const say = (s) => process.stderr.write(`templates.mjs: ${s}\n`);

function pct(a, p) {
        const s = [...a].sort((x, y) => x - y);
        return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const ms = (v) => `${v.toFixed(2)} ms`;

fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });
const port = 17000 + Math.floor(Math.random() * 2000);
const url = `http://127.0.0.1:${port}`;
const log = fs.openSync(path.join(work, 'sbxd.log'), 'w');
const sbxd = spawn(sbxdPath, ['--data-dir', path.join(work, 'data'), '--templates-dir', templatesDir, '--listen',
        `127.0.0.1:${port}`, '--api-key', key, '--pool-size', '0', '--default-template', '', '--log-level', 'info'],
{ stdio: ['ignore', log, log] });

async function api(method, p, body, extra = {}) {
        const headers = { authorization: `Bearer ${key}`, ...(extra.headers ?? {}) };
        let payload;
        if (body !== undefined) {
                payload = extra.raw ? body : JSON.stringify(body);
                if (!extra.raw) headers['content-type'] = 'application/json';
        }
        const res = await fetch(url + p, { method, headers, body: payload, duplex: 'half' });
        if (extra.stream) return res;
        const text = await res.text();
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        return { status: res.status, json, text };
}

async function waitBuild(name) {
        const res = await api('GET', `/v1/templates/${encodeURIComponent(name)}/build/events`, undefined, { stream: true });
        const text = await res.text();
        const done = text.split('\n\n').filter((b) => b.startsWith('event: done') || b.startsWith('event: failed')).pop();
        if (!done || done.startsWith('event: failed')) throw new Error(`build of ${name} failed: ${text.slice(-2000)}`);
        return JSON.parse(done.split('\n').find((l) => l.startsWith('data: ')).slice(6));
}

async function createDelete(template) {
        const t0 = performance.now();
        const r = await api('POST', '/v1/sandboxes', { template });
        const t = performance.now() - t0;
        if (r.status !== 201) throw new Error(`create ${template}: ${r.status} ${r.text}`);
        await api('DELETE', `/v1/sandboxes/${r.json.id}`);
        return t;
}

const results = { date: new Date().toISOString(), runs: RUNS };
try {
        for (let i = 0; i < 100; i++) {
                try {
                        if ((await api('GET', '/v1/health')).status === 200) break;
                } catch { /* not up yet */ }
                await new Promise((r) => setTimeout(r, 100));
        }
        say('base (built once, cached in the templates dir)');
        await createDelete('base').catch(async () => createDelete('base'));

        // 1. a 10-layer template: base + 9 chained file layers
        let from = 'base';
        for (let i = 1; i <= 9; i++) {
                const name = `bench-l${i + 1}`;
                const r = await api('POST', '/v1/templates', { name, from, files: [{ path: `/layer${i}/file`, content: `layer ${i}\n` }] });
                if (r.status !== 202) throw new Error(`build ${name}: ${r.text}`);
                await waitBuild(name);
                from = name;
        }
        const tpl10 = await api('GET', '/v1/templates/bench-l10');
        say(`bench-l10 has ${tpl10.json.layers.length} layers`);
        for (let i = 0; i < 5; i++) {
                await createDelete('base');
                await createDelete('bench-l10');
        }
        const one = [], ten = [];
        for (let i = 0; i < RUNS; i++) {
                one.push(await createDelete('base'));
                ten.push(await createDelete('bench-l10'));
        }
        results.create = {
                oneLayer: { p50: pct(one, 50), p99: pct(one, 99) },
                tenLayers: { p50: pct(ten, 50), p99: pct(ten, 99), layers: tpl10.json.layers.length },
                deltaP50: pct(ten, 50) - pct(one, 50),
        };

        // 3. an unchanged spec: cache hit
        const spec = { name: 'bench-cached', from: 'base', files: [{ path: '/c', content: 'c\n' }], setup: ['echo cached > /c2'] };
        let r = await api('POST', '/v1/templates', spec);
        await waitBuild('bench-cached');
        const hits = [];
        for (let i = 0; i < 20; i++) {
                const t0 = performance.now();
                r = await api('POST', '/v1/templates', spec);
                if (r.status !== 202) throw new Error(r.text);
                const d = await waitBuild('bench-cached');
                hits.push(performance.now() - t0);
                if (!d.cached) throw new Error('rebuild was not a cache hit');
        }
        results.cachedRebuild = { p50: pct(hits, 50), p99: pct(hits, 99) };

        // 2. import ~300 MB: two new layers (170 MB of 1 MiB files + 2000 small ones; 20000 files
        //    of 6.5 KB) as an OCI layout, against `tar -x` of the same two layer blobs. Each pair
        //    gets an image of its own (fresh random content: nothing to dedupe) and nothing is
        //    deleted until the end: on this ext4 the cost of creating files swings tenfold right
        //    after many deletions, which would measure the disk's history, not the importer.
        const IMPORT_RUNS = 5;
        const imp = [], tarx = [], ratios = [];
        let imageBytes = 0, nLayers = 0;
        const makeImage = (i) => {
                const layout = path.join(work, `layout${i}`);
                const blobs = path.join(layout, 'blobs', 'sha256');
                fs.mkdirSync(blobs, { recursive: true });
                const layerOf = (dir, fill) => {
                        fs.mkdirSync(dir, { recursive: true });
                        fill(dir);
                        const t = dir + '.tar';
                        spawnSync('tar', ['--sort=name', '-cf', t, '-C', dir, '.']);
                        const buf = fs.readFileSync(t); // dir stays until the end: no deletions between runs
                        const d = crypto.createHash('sha256').update(buf).digest('hex');
                        fs.renameSync(t, path.join(blobs, d));
                        return { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${d}`, size: buf.length };
                };
                const layers = [
                        layerOf(path.join(work, `la${i}`), (dir) => {
                                for (let k = 0; k < 170; k++) fs.writeFileSync(path.join(dir, `f${k}`), crypto.randomBytes(1 << 20));
                                for (let k = 0; k < 2000; k++) fs.writeFileSync(path.join(dir, `small${k}`), crypto.randomBytes(512));
                        }),
                        layerOf(path.join(work, `lb${i}`), (dir) => {
                                for (let d = 0; d < 200; d++) {
                                        fs.mkdirSync(path.join(dir, `d${d}`));
                                        for (let k = 0; k < 100; k++) fs.writeFileSync(path.join(dir, `d${d}`, `f${k}`), crypto.randomBytes(6500));
                                }
                        }),
                ];
                const write = (obj) => {
                        const b = Buffer.from(JSON.stringify(obj));
                        const d = crypto.createHash('sha256').update(b).digest('hex');
                        fs.writeFileSync(path.join(blobs, d), b);
                        return { d, n: b.length };
                };
                const c = write({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } });
                const m = write({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
                        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${c.d}`, size: c.n }, layers });
                fs.writeFileSync(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
                fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2,
                        manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${m.d}`, size: m.n }] }));
                const image = path.join(work, `image${i}.tar`);
                spawnSync('tar', ['-cf', image, '-C', layout, '.']);
                return { image, files: layers.map((l) => path.join(blobs, l.digest.slice(7))) };
        };
        const runTar = (i, files) => {
                const t0 = performance.now();
                files.forEach((f, k) => {
                        // beside the layers the import writes (same directory, same ext4 groups)
                        const dir = path.join(templatesDir, 'layers', `bench-tarx-${i}-${k}`);
                        fs.mkdirSync(dir);
                        const x = spawnSync('tar', ['-xf', f, '-C', dir]);
                        if (x.status !== 0) throw new Error(`tar -x: ${x.stderr}`);
                });
                return performance.now() - t0;
        };
        const runImport = async (i, image) => {
                const t0 = performance.now();
                const res = await api('POST', `/v1/templates/import?name=bench-import-${i}`, fs.createReadStream(image),
                        { raw: true, headers: { 'content-type': 'application/x-tar' } });
                const t = performance.now() - t0;
                if (res.status !== 201) throw new Error(`import: ${res.text}`);
                return t;
        };
        const images = [];
        for (let i = 0; i < IMPORT_RUNS; i++) images.push(makeImage(i));
        spawnSync('sync');
        await new Promise((r) => setTimeout(r, 35_000)); // ext4 skips inodes freed in the last 30 s, slowly
        for (let i = 0; i < IMPORT_RUNS; i++) {
                const { image, files } = images[i];
                imageBytes = fs.statSync(image).size;
                nLayers = files.length;
                let a, b;
                spawnSync('sync');
                if (i % 2 === 0) {
                        a = runTar(i, files);
                        spawnSync('sync');
                        b = await runImport(i, image);
                } else {
                        b = await runImport(i, image);
                        spawnSync('sync');
                        a = runTar(i, files);
                }
                tarx.push(a);
                imp.push(b);
                ratios.push(b / a);
                say(`import pair ${i + 1}: tar -x ${a.toFixed(0)} ms, import ${b.toFixed(0)} ms`);
        }
        results.import = { imageBytes, layers: nLayers, importP50: pct(imp, 50), tarxP50: pct(tarx, 50), ratio: pct(ratios, 50),
                pairs: imp.map((v, i) => [tarx[i], v]) };
        for (let i = 0; i < IMPORT_RUNS; i++) {
                await api('DELETE', `/v1/templates/bench-import-${i}`);
                for (let k = 0; k < nLayers; k++)
                        fs.rmSync(path.join(templatesDir, 'layers', `bench-tarx-${i}-${k}`), { recursive: true, force: true });
        }

        // clean up what we made (base stays cached)
        for (const n of ['bench-cached', ...Array.from({ length: 9 }, (_, i) => `bench-l${9 - i + 1}`)])
                await api('DELETE', `/v1/templates/${n}`);
        await api('POST', '/v1/layers/gc');
} finally {
        sbxd.kill('SIGTERM');
}

const R = results;
console.log('\ntemplates and layers (sbx, pool off)                      p50          p99');
console.log(`create from 1 layer (base)                       ${ms(R.create.oneLayer.p50).padStart(12)} ${ms(R.create.oneLayer.p99).padStart(12)}`);
console.log(`create from ${R.create.tenLayers.layers} layers                             ${ms(R.create.tenLayers.p50).padStart(12)} ${ms(R.create.tenLayers.p99).padStart(12)}`);
console.log(`  difference at p50: ${ms(R.create.deltaP50)} (target <= 1 ms)`);
console.log(`rebuild of an unchanged spec (cache hit)         ${ms(R.cachedRebuild.p50).padStart(12)} ${ms(R.cachedRebuild.p99).padStart(12)}   (target < 100 ms)`);
console.log(`import ${(R.import.imageBytes / 1e6).toFixed(0)} MB image (${R.import.layers} layers)             ${ms(R.import.importP50).padStart(12)}`);
console.log(`tar -x of the same layers                        ${ms(R.import.tarxP50).padStart(12)}`);
console.log(`  import / tar -x, median of ${R.import.pairs.length} pairs: ${R.import.ratio.toFixed(2)}x (target <= 2x)`);
fs.writeFileSync(outFile, JSON.stringify(results, null, 2) + '\n');
say(`wrote ${outFile}`);
