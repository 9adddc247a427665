// SPDX-License-Identifier: Apache-2.0
//
// Turn one bench/run.sh result directory into the printed table and bench/results.json. It only
// reads what runcmd and sbx-bench measured (they compute the percentiles); here we pick the
// comparisons: every peer's `X run /bin/true` against sbx's create + exec true + delete over HTTP
// ("cycle"), as a ratio peer/sbx (above 1: sbx is faster).
//
// Usage: node bench/report.mjs RESULT_DIR OUT_JSON
import fs from 'node:fs';
import path from 'node:path';

const [dir, outFile] = process.argv.slice(2);
if (!dir || !outFile) {
  console.error('usage: node bench/report.mjs RESULT_DIR OUT_JSON');
  process.exit(2);
}

const read = (name) => {
  try {
    return fs.readFileSync(path.join(dir, name), 'utf8').trim();
  } catch {
    return null;
  }
};
const readJson = (name) => {
  const s = read(name);
  if (s === null) return null;
  try {
    return JSON.parse(s.split('\n').filter(Boolean).pop());
  } catch {
    return null;
  }
};

const meta = {};
for (const line of (read('meta.env') || '').split('\n')) {
  const i = line.indexOf('=');
  if (i > 0) meta[line.slice(0, i)] = line.slice(i + 1);
}
const num = (v) => (v === undefined || v === '' || isNaN(Number(v)) ? v : Number(v));

const PEERS = ['crun', 'runc', 'runsc', 'bwrap', 'podman'];
const peerNames = [
  ...PEERS,
  ...fs
    .readdirSync(dir)
    .map((f) => /^peer-(.+)\.(json|err)$/.exec(f)?.[1])
    .filter((n) => n && !PEERS.includes(n)),
].filter((n, i, a) => a.indexOf(n) === i && (read(`peer-${n}.json`) !== null || read(`peer-${n}.err`) !== null));

const sbx = {};
for (const step of ['wait', 'create', 'exec', 'cycle-nopool', 'create-pool', 'cycle', 'density-host', 'density-base']) {
  const r = readJson(`sbx-${step}.json`);
  const e = read(`sbx-${step}.err`);
  if (r) sbx[step] = r;
  else if (e) sbx[step] = { error: e.slice(0, 2000) };
}
const sbxError = read('sbx.err');
const ref = sbx.cycle && sbx.cycle.p50_ms ? sbx.cycle : null;

const ratio = (a, b) => (a && b ? Math.round((a / b) * 100) / 100 : null);
const peers = peerNames.map((name) => {
  const r = readJson(`peer-${name}.json`);
  const base = {
    name,
    command: read(`peer-${name}.cmd`),
    version: read(`peer-${name}.version`),
    note: read(`peer-${name}.note`),
  };
  if (!r) return { ...base, ok: false, error: (read(`peer-${name}.err`) || 'no result').slice(0, 2000) };
  return {
    ...base,
    ok: true,
    ...r,
    ratio_p50_vs_sbx: ref ? ratio(r.p50_ms, ref.p50_ms) : null,
    ratio_p99_vs_sbx: ref ? ratio(r.p99_ms, ref.p99_ms) : null,
  };
});

const results = {
  generated: meta.date || new Date().toISOString(),
  host: { kernel: meta.kernel, cpus: num(meta.cpus), memTotalKiB: num(meta.mem_total_kib) },
  commit: meta.commit,
  runs: num(meta.runs),
  warmup: num(meta.warmup),
  rootfs: meta.rootfs,
  method:
    'p50/p99 by nearest rank over N runs after warm-up; peers: posix_spawn+waitpid of `X run /bin/true` ' +
    '(bench/runcmd.c); sbx: libcurl with one keep-alive connection (bench/sbx-bench.c); ' +
    'ratio = peer / sbx create+exec+delete',
  peers,
  sbx: sbxError ? { error: sbxError } : sbx,
};
fs.writeFileSync(outFile, JSON.stringify(results, null, 2) + '\n');

// ---- the table ----
const f = (v) => (typeof v === 'number' ? v.toFixed(v < 10 ? 2 : 1) : '-');
const rows = [];
const row = (label, r, ratioText = '') => rows.push([label, r ? String(r.runs) : '-', f(r?.p50_ms), f(r?.p99_ms), ratioText]);
const failed = [];

if (sbxError) failed.push(['sbx', sbxError]);
if (sbx.wait?.error) failed.push(['sbx (sbxd start)', sbx.wait.error]);
const sbxLabels = {
  create: 'sbx create -> ready, no pool',
  exec: 'sbx exec true round trip (POST .../exec)',
  'cycle-nopool': 'sbx create + exec true + delete, no pool',
  'create-pool': 'sbx create -> ready, pool (default)',
  cycle: 'sbx create + exec true + delete, pool',
};
for (const [step, label] of Object.entries(sbxLabels)) {
  if (!sbx[step]) continue;
  if (sbx[step].error) failed.push([`sbx ${step}`, sbx[step].error]);
  else if (step === 'cycle') row(label, sbx[step], '1.00x (reference)');
  else if (step === 'cycle-nopool' && ref && sbx[step].p50_ms)
    row(label, sbx[step], `${(sbx[step].p50_ms / ref.p50_ms).toFixed(2)}x`);
  else row(label, sbx[step]);
}
for (const p of peers) {
  if (!p.ok) {
    failed.push([p.name, p.error]);
    continue;
  }
  const verb = { bwrap: 'bwrap ... /bin/true', podman: 'podman run --rootfs /bin/true' }[p.name] || `${p.name} run /bin/true`;
  const label = `${verb}${p.note ? ' *' : ''}`;
  row(label, p, p.ratio_p50_vs_sbx ? `${p.ratio_p50_vs_sbx.toFixed(2)}x (p99 ${p.ratio_p99_vs_sbx.toFixed(2)}x)` : '-');
}

const head = ['benchmark', 'runs', 'p50 ms', 'p99 ms', 'vs sbx create+exec+delete'];
const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r) => r.map((c, i) => (i === 0 || i === 4 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd();
console.log();
console.log(`sbx benchmark  ${results.generated}  kernel ${meta.kernel || '?'}  ${meta.cpus || '?'} CPUs  runs=${meta.runs}  commit ${meta.commit}`);
console.log(line(head));
console.log(line(w.map((n) => '-'.repeat(n))));
for (const r of rows) console.log(line(r));
for (const p of peers.filter((p) => p.ok && p.note)) console.log(`  * ${p.name}: ${p.note}`);
console.log('  ratio = peer p50 / sbx p50 (above 1: sbx is faster)');

for (const step of ['density-host', 'density-base']) {
  const d = sbx[step];
  if (!d) continue;
  if (d.error && !d.created) {
    failed.push([`sbx ${step}`, d.error]);
    continue;
  }
  console.log();
  console.log(`density, template "${d.template}": ${d.created}/${d.requested} sandboxes`);
  console.log(`  host memory per sandbox   ${f(d.host_kib_per_sandbox)} KiB (MemAvailable delta${d.drop_caches ? ', after drop_caches' : ', caches NOT dropped'})`);
  console.log(`  sbxd RSS                  ${d.sbxd_rss_before_kib} -> ${d.sbxd_rss_after_kib} KiB (${f(d.sbxd_rss_kib_per_sandbox)} KiB per sandbox)`);
  console.log(`  create while ramping      p50 ${f(d.create?.p50_ms)} ms  p99 ${f(d.create?.p99_ms)} ms`);
  console.log(`  GET /v1/health meanwhile  p50 ${f(d.health?.p50_ms)} ms  p99 ${f(d.health?.p99_ms)} ms  (${d.health?.runs} runs)`);
  console.log(`  delete all                ${f(d.delete_total_ms)} ms total, p50 ${f(d.delete?.p50_ms)} ms  p99 ${f(d.delete?.p99_ms)} ms`);
  if (d.error) console.log(`  stopped early: ${d.error}`);
}
if (sbx.wait && !sbx.wait.error) console.log(`\nsbxd ready (health + template "${sbx.wait.template}") after ${f(sbx.wait.ready_after_s)} s`);

if (failed.length) {
  console.log('\nnot measured:');
  for (const [name, why] of failed) console.log(`  ${name}: ${why.split('\n').filter(Boolean).slice(-3).join(' | ')}`);
}
console.log(`\nwrote ${outFile}`);
