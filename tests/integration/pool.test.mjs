// The sandbox pool (sbxd --pool-size N): creates that match the pool's defaults are served from
// sandboxes launched ahead, and still get their own id, env, metadata, name, limits and timers;
// pooled sandboxes are invisible to the API; a clean shutdown kills them; nothing leaks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
        Api, startDaemon, waitFor, expectError, assertSandboxShape, findProcsInSandboxCgroups, findCgroupDirs,
        scanDataDirIds, assertNoLeaks, describe,
} from '../lib/harness.mjs';

function sandboxDirs(dataDir) {
        const d = path.join(dataDir, 'sandboxes');
        return fs.existsSync(d) ? fs.readdirSync(d).filter((n) => n.startsWith('sbx_')) : [];
}

test('creates are served from the pool and behave like any other sandbox', async () => {
        const d = await startDaemon({ extraArgs: ['--pool-size', '2'] });
        const api = new Api(() => d);
        const created = [];
        let poolIds = [];
        try {
                // the first create is cold and warms the pool for the template
                let res = await api.create({ template: 'host' });
                assert.equal(res.status, 201, describe(res));
                created.push(res.json.id);
                await waitFor(() => sandboxDirs(d.dataDir).length >= 3, 10_000, { what: 'the pool to fill (2 ready)' });
                poolIds = sandboxDirs(d.dataDir).filter((id) => !created.includes(id));
                assert.equal(poolIds.length, 2, `pool dirs: ${poolIds}`);

                // pooled sandboxes are not API objects
                const list = await api.request('GET', '/v1/sandboxes');
                assert.deepEqual(list.json.sandboxes.map((s) => s.id), created);
                for (const id of poolIds) expectError(await api.get(id), 404, 'sandbox_not_found');

                // a create now takes one of them, with everything the request asked for
                const t0 = performance.now();
                res = await api.create({ template: 'host', name: 'from-pool', env: { FOO: 'bar' }, metadata: { k: 'v' },
                        resources: { cpu: 0.5, pids: 100 }, timeout: { lifetime: 3600 } });
                const ms = performance.now() - t0;
                assert.equal(res.status, 201, describe(res));
                const sb = res.json;
                created.push(sb.id);
                assertSandboxShape(sb);
                assert.ok(poolIds.includes(sb.id), `expected a pooled sandbox, got ${sb.id} after ${ms} ms`);
                assert.equal(sb.name, 'from-pool');
                assert.deepEqual(sb.metadata, { k: 'v' });
                assert.deepEqual(sb.env, { FOO: 'bar' });
                assert.equal(sb.resources.cpu, 0.5);
                assert.equal(sb.resources.pids, 100);
                assert.ok(sb.expiresAt, 'lifetime sets expiresAt');
                assert.ok(Date.now() - Date.parse(sb.createdAt) < 5000, 'createdAt is the time of the create');
                const out = await api.sh(sb.id, 'echo $FOO; hostname; cat /proc/1/comm');
                assert.equal(out, `bar\n${sb.id}\nsbx-init\n`);
                // the request's limits hold, not the pool's defaults
                const dirs = findCgroupDirs([sb.id]);
                const pids = dirs.find((p) => p.includes('/pids/'));
                const cpu = dirs.find((p) => p.includes('/cpu/'));
                assert.ok(pids && cpu, `cgroup dirs of ${sb.id}: ${dirs}`);
                assert.equal(fs.readFileSync(path.join(pids, 'pids.max'), 'utf8').trim(), '100');
                assert.equal(fs.readFileSync(path.join(cpu, 'cpu.cfs_quota_us'), 'utf8').trim(), '50000');
                const got = await api.get(sb.id);
                assert.equal(got.status, 200);
                assert.equal(got.json.name, 'from-pool');

                // a name clash is still a 409 when the pool serves the create
                expectError(await api.create({ template: 'host', name: 'from-pool' }), 409, 'name_taken');

                // the pool refills; requests the pool cannot serve (other memory) launch fresh
                res = await api.create({ template: 'host', resources: { memory: 256 } });
                assert.equal(res.status, 201, describe(res));
                created.push(res.json.id);
                assert.equal(res.json.resources.memory, 256);

                for (const id of created) assert.equal((await api.del(id)).status, 204);
                await assertNoLeaks(created, { daemonPid: d.pid, dataDir: d.dataDir });
        } finally {
                const all = new Set([...created, ...scanDataDirIds(d.dataDir)]);
                if (d.alive) {
                        for (const id of created) await api.del(id).catch(() => {});
                        const info = await d.stop();
                        assert.equal(info.code, 0, 'sbxd exits 0 on SIGTERM');
                }
                // a clean shutdown kills the pool: no sandbox process and no cgroup is left, the dirs are gone
                await waitFor(() => findProcsInSandboxCgroups(all).filter((p) => p.state !== 'Z').length === 0, 5000,
                        { what: 'no pooled sandbox process after shutdown' });
                await waitFor(() => findCgroupDirs([...all]).length === 0, 5000, { what: 'no pooled cgroup after shutdown' });
                assert.deepEqual(sandboxDirs(d.dataDir), [], 'sandbox dirs left after shutdown');
                fs.rmSync(d.dataDir, { recursive: true, force: true });
        }
});
