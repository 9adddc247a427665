// SPDX-License-Identifier: Apache-2.0
//
// The lifecycle verbs of the sbx CLI against a live sbxd: pause/resume/hibernate/wake print the
// new state, timeout changes timers, events lists (and -f follows a pause as it happens),
// snapshot create/ls/lineage/tag/patch, create --snapshot gets the files, fork -n 2 prints two
// ids whose files match, checkpoint create/restore puts files back; unknown ids exit 1 with the
// API's message, bad flags exit 2.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { SBX_CLI, ensureExecutable, fmt, run, unknownId, useDaemon, waitFor } from '../lib/harness.mjs';

const fx = useDaemon({}, async () => ensureExecutable(SBX_CLI, 'sbx'));
const env = () => ({ ...process.env, SBX_URL: fx.url, SBX_KEY: fx.key });
const sbx = (args) => run(SBX_CLI, args, { env: env() });
const show = (r) => `exit ${r.code}, stdout ${fmt(r.stdout)}, stderr ${fmt(r.stderr)}`;
async function ok(args) {
        const r = await sbx(args);
        assert.equal(r.code, 0, `sbx ${args.join(' ')}: ${show(r)}`);
        return r.stdout;
}

test('pause, resume, hibernate, wake, timeout, events', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const sb = await api.createOk();
        assert.equal(await ok(['pause', sb.id]), `${sb.id} paused\n`);
        assert.equal((await api.get(sb.id)).json.state, 'paused');
        assert.equal(await ok(['resume', sb.id]), `${sb.id} running\n`);
        assert.match(await ok(['hibernate', sb.id]), new RegExp(`^${sb.id} hibernated \\(memory not kept`));
        assert.equal(await ok(['wake', sb.id]), `${sb.id} running\n`);
        assert.match(await ok(['timeout', sb.id, '600', '--idle', '30']), /expires 20\d\d-/);
        const got = (await api.get(sb.id)).json;
        assert.equal(got.timeout.idle, 30);
        assert.ok(Date.parse(got.expiresAt) > Date.now() + 500_000);
        await ok(['timeout', sb.id, '--idle', 'none']);
        assert.equal((await api.get(sb.id)).json.timeout.idle, null);
        const ev = await ok(['events', sb.id, '--limit', '100']);
        for (const type of ['sandbox.created', 'sandbox.paused', 'sandbox.hibernated', 'sandbox.updated']) assert.ok(ev.includes(type), `${type} missing:\n${ev}`);
        const json = JSON.parse(await ok(['events', sb.id, '--json', '--desc', '--limit', '1']));
        assert.equal(json.events.length, 1);
        // -f shows a pause as it happens
        const child = spawn(SBX_CLI, ['events', sb.id, '-f'], { env: env() });
        let out = '';
        child.stdout.on('data', (d) => { out += d; });
        try {
                await new Promise((r) => setTimeout(r, 300));
                await api.pause(sb.id);
                await waitFor(() => out.includes('sandbox.paused'), 5000, { what: 'the followed pause' });
        } finally {
                child.kill();
        }
        await api.resume(sb.id);
        const bad = await sbx(['pause', unknownId()]);
        assert.equal(bad.code, 1, show(bad));
        assert.match(bad.stderr, /not found/);
        assert.equal((await sbx(['timeout', sb.id, 'abc'])).code, 2);
        assert.equal((await sbx(['pause'])).code, 2);
});

test('snapshot, create --snapshot, fork, checkpoint', { timeout: 90_000 }, async (t) => {
        const api = fx.scope(t);
        const sb = await api.createOk();
        await api.sh(sb.id, 'echo original > /root/f');
        const snap = (await ok(['snapshot', 'create', sb.id, '--tag', 'cli-snap', '--name', 'first'])).trim();
        assert.match(snap, /^snp_[a-z2-7]{20}$/);
        assert.match(await ok(['snapshot', 'ls', '--tag', 'cli-snap']), new RegExp(`^${snap} .*#cli-snap\\n$`));
        const c = (await ok(['create', '--snapshot', 'cli-snap'])).trim();
        api.track(c);
        assert.equal(await api.sh(c, 'cat /root/f'), 'original\n');
        const lin = await ok(['snapshot', 'lineage', snap]);
        assert.match(lin, /template host/);
        assert.match(lin, new RegExp(`sandbox +${c}`));
        await ok(['snapshot', 'tag', snap, 'also']);
        assert.deepEqual((await api.request('GET', `/v1/snapshots/${snap}`)).json.tags, ['cli-snap', 'also']);
        const pid = (await ok(['snapshot', 'patch', 'add', snap, '--script', 'echo patched > /root/p', '--name', 'p1'])).trim();
        assert.match(await ok(['snapshot', 'patch', 'ls', snap]), new RegExp(`^${pid} +p1\\n$`));
        const d = (await ok(['create', '--snapshot', snap])).trim();
        api.track(d);
        assert.equal(await api.sh(d, 'cat /root/p'), 'patched\n');
        await ok(['snapshot', 'patch', 'rm', snap, pid]);

        const kids = (await ok(['fork', sb.id, '-n', '2'])).trim().split('\n');
        for (const k of kids) api.track(k);
        assert.equal(kids.length, 2, fmt(kids));
        for (const k of kids) assert.equal(await api.sh(k, 'cat /root/f'), 'original\n');
        assert.equal((await api.get(sb.id)).json.state, 'running');

        assert.match(await ok(['checkpoint', 'create', sb.id, 'before']), /^snp_/);
        await api.sh(sb.id, 'echo changed > /root/f');
        assert.match(await ok(['checkpoint', 'ls', sb.id]), /checkpoint .* before/);
        assert.equal(await ok(['checkpoint', 'restore', sb.id, 'before']), `${sb.id} running\n`);
        assert.equal(await api.sh(sb.id, 'cat /root/f'), 'original\n');
        await ok(['checkpoint', 'rm', sb.id, 'before']);
        const r = await sbx(['checkpoint', 'restore', sb.id, 'before']);
        assert.equal(r.code, 1, show(r));
        assert.match(r.stderr, /no checkpoint/);
        for (const id of [c, d, ...kids]) assert.equal((await api.del(id)).status, 204);
        assert.equal(await ok(['snapshot', 'rm', snap]), `${snap}\n`);
        assert.equal((await sbx(['snapshot', 'frobnicate', 'x'])).code, 2);
});
