// SPDX-License-Identifier: Apache-2.0
//
// Restart survival (kill -9 of sbxd, then a new sbxd on the same data dir and key):
//  1. sandboxes are still listed as running, their files are intact, exec works, and a process
//     started before the crash is still running (sandboxes do not share sbxd's lifetime);
//  2. a sandbox whose processes were killed behind sbxd's back while it was down comes back as
//     "stopped" (the others stay running) and can be started again with its files;
//  3. kill -9 during a burst of creates: after the restart every sandbox is running (and usable) or
//     failed/absent, every create that got a 201 is running, and after deleting them all no cgroup,
//     process or mount of any of them (including ids only the data dir knows) remains.
// Sandbox processes are found from the host through the cgroups named after the sandbox ids.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
        assertNoLeaks, deleteAll, describe, expectError, findProcsInSandboxCgroups, fmt, killPids, rand,
        scanDataDirIds, sleep, waitFor, withDaemon, withTimeout,
} from '../lib/harness.mjs';

// live (non-zombie) host processes in the sandbox's cgroups
const live = (id) => findProcsInSandboxCgroups([id]).filter((p) => p.state !== 'Z');
const CMDLINES = 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done';
const TRANSIENT = ['creating', 'starting', 'stopping'];

test('kill -9 sbxd: sandboxes, files and processes survive; exec works after restart', { timeout: 120_000 }, (t) => withDaemon(t, async (fx) => {
        const a = await fx.api.createOk({ name: `a-${rand(4)}`, metadata: { role: 'a' } });
        const b = await fx.api.createOk({ metadata: { role: 'b' } });
        const ta = rand();
        const tb = rand();
        await fx.api.sh(a.id, `echo ${ta} > /root/a.txt; mkdir -p /root/d/e && echo deep > /root/d/e/f`);
        await fx.api.sh(b.id, `echo ${tb} > /root/b.txt`);

        // a long exec in A; its HTTP request dies with sbxd, the process must not
        const long = fx.api.exec(a.id, { cmd: 'sleep 1000', timeout: 3600 }).catch((e) => e);
        await waitFor(async () => (await fx.api.sh(a.id, CMDLINES)).includes('sleep 1000'), 5000, { what: 'sleep 1000 running in A' });

        const oldPid = fx.daemon.pid;
        await fx.daemon.kill9();
        await withTimeout(long, 5000);
        assert.ok(live(a.id).length > 0, 'A\'s processes died with sbxd');
        assert.ok(live(b.id).length > 0, 'B\'s processes died with sbxd');

        await fx.restart();
        assert.notEqual(fx.daemon.pid, oldPid);
        assert.equal(fx.daemon.printedKey, fx.key, 'same key after restart');
        const all = await fx.api.listAll();
        for (const x of [a, b]) {
                const s = all.find((y) => y.id === x.id);
                assert.ok(s, `${x.id} not listed after restart`);
                assert.equal(s.state, 'running', `${x.id} after restart: ${fmt(s)}`);
                assert.deepEqual(s.metadata, x.metadata);
                assert.equal(s.name, x.name);
                assert.equal(s.createdAt, x.createdAt);
        }
        assert.equal(await fx.api.sh(a.id, 'cat /root/a.txt /root/d/e/f'), `${ta}\ndeep\n`);
        assert.equal(await fx.api.sh(b.id, 'cat /root/b.txt'), `${tb}\n`);
        assert.ok((await fx.api.sh(a.id, CMDLINES)).includes('sleep 1000'), 'the process started before the crash still runs');
        assert.equal(await fx.api.sh(b.id, 'echo after-restart'), 'after-restart\n');
        const ns = await fx.api.execStream(b.id, { cmd: 'echo streamed' });
        assert.equal(ns.lines.at(-1)?.obj?.type, 'exit', fmt(ns.text));

        // a second crash+restart in a row changes nothing
        await fx.daemon.kill9();
        await fx.restart();
        assert.equal(expectOk(await fx.api.get(a.id)).state, 'running');
        assert.equal(await fx.api.sh(a.id, 'cat /root/a.txt'), `${ta}\n`);

        // new sandboxes can be created next to the adopted ones, and stop/start still work on them
        const c = await fx.api.createOk();
        assert.equal(await fx.api.sh(c.id, 'echo new'), 'new\n');
        assert.equal(expectOk(await fx.api.stop(a.id)).state, 'stopped');
        assert.equal(expectOk(await fx.api.start(a.id)).state, 'running');
        assert.equal(await fx.api.sh(a.id, 'cat /root/a.txt'), `${ta}\n`);
}));

function expectOk(res) {
        assert.equal(res.status, 200, describe(res));
        return res.json;
}

test('a sandbox killed behind sbxd\'s back while it was down shows as stopped', { timeout: 120_000 }, (t) => withDaemon(t, async (fx) => {
        const a = await fx.api.createOk();
        const b = await fx.api.createOk();
        const tb = rand();
        await fx.api.sh(b.id, `echo ${tb} > /root/keep`);
        await fx.daemon.kill9();

        const procs = live(b.id);
        assert.ok(procs.length > 0, `no host process found in a cgroup named after ${b.id}`);
        assert.ok(procs.some((p) => p.comm === 'sbx-init'), `no sbx-init among ${fmt(procs)}`);
        await waitFor(() => {
                const left = live(b.id);
                killPids(left.map((p) => p.pid));
                return left.length === 0;
        }, 5000, { what: `B's processes to die`, interval: 100 });
        assert.ok(live(a.id).length > 0, 'A was not touched');

        await fx.restart();
        const sb = await waitFor(async () => {
                const g = expectOk(await fx.api.get(b.id));
                return g.state === 'stopped' ? g : null;
        }, 10_000, { what: 'B to show as stopped' });
        assert.equal(sb.state, 'stopped');
        assert.equal(expectOk(await fx.api.get(a.id)).state, 'running', 'A is still running');
        assert.equal(await fx.api.sh(a.id, 'echo a-ok'), 'a-ok\n');
        expectError(await fx.api.exec(b.id, { cmd: 'true' }), 409, 'invalid_state');
        const stopped = expectOk(await fx.api.list({ state: 'stopped' })).sandboxes.map((s) => s.id);
        assert.deepEqual(stopped, [b.id]);

        const st = expectOk(await fx.api.start(b.id));
        assert.equal(st.state, 'running');
        assert.equal(await fx.api.sh(b.id, 'cat /root/keep'), `${tb}\n`, 'B\'s files survived');
        assert.equal(await fx.api.sh(b.id, 'cat /proc/1/comm'), 'sbx-init\n');
}));

test('kill -9 during a burst of creates: recovery leaves only usable or failed sandboxes, no leftovers', { timeout: 180_000 }, (t) => withDaemon(t, async (fx) => {
        const pre = await fx.api.createOk({ metadata: { pre: '1' } });
        const everyId = new Set([pre.id]);
        for (const [round, delay] of [[1, 30], [2, 10], [3, 80]]) {
                const burst = Array.from({ length: 10 }, (_, i) =>
                        // short client timeout: a request the dead daemon never answers must not eat the test's time
                        fx.api.create({ template: 'host', metadata: { burst: String(round), i: String(i) } }, { timeoutMs: 15_000 }).catch((e) => e));
                await sleep(delay);
                await fx.daemon.kill9();
                const results = await Promise.all(burst);
                const got201 = results.filter((r) => !(r instanceof Error) && r.status === 201).map((r) => r.json.id);
                for (const r of results) {
                        if (!(r instanceof Error) && r.status !== 201) {
                                // a refusal before the crash must still be a proper error
                                assert.ok(r.status >= 400, `round ${round}: unexpected ${describe(r)}`);
                        }
                }
                got201.forEach((id) => everyId.add(id));

                await fx.restart();
                const all = await waitFor(async () => {
                        const l = await fx.api.listAll();
                        return l.some((s) => TRANSIENT.includes(s.state)) ? null : l;
                }, 15_000, { what: `round ${round}: no sandbox left in a transient state after recovery` });
                for (const s of all) everyId.add(s.id);
                for (const s of all) {
                        assert.ok(['running', 'failed'].includes(s.state), `round ${round}: ${s.id} is ${s.state} after recovery: ${fmt(s)}`);
                }
                const byId = new Map(all.map((s) => [s.id, s]));
                assert.equal(byId.get(pre.id)?.state, 'running', 'the sandbox created before the burst is untouched');
                for (const id of got201) {
                        assert.equal(byId.get(id)?.state, 'running', `round ${round}: ${id} got 201 before the crash but is ${byId.get(id)?.state ?? 'absent'}`);
                }
                for (const s of all.filter((x) => x.state === 'running')) {
                        const r = await fx.api.run(s.id, 'echo ok; cat /proc/1/comm', { timeout: 10 });
                        assert.equal(r.stdout, 'ok\nsbx-init\n', `round ${round}: running sandbox ${s.id} not usable: ${fmt(r)}`);
                }
        }

        // delete everything the daemon or its data dir knows about, then look for leftovers of any of them
        for (const id of scanDataDirIds(fx.dataDir)) everyId.add(id);
        const problems = await deleteAll(fx.api, everyId);
        assert.deepEqual(problems, [], 'every sandbox, failed ones included, can be deleted');
        for (const id of everyId) expectError(await fx.api.get(id), 404, 'sandbox_not_found');
        const left = (await fx.api.listAll()).filter((s) => s.state !== 'deleted');
        assert.deepEqual(left, [], 'nothing left listed');
        await assertNoLeaks(everyId, { daemonPid: fx.daemon.pid, dataDir: fx.dataDir });
        // and a restart afterwards finds nothing to resurrect
        await fx.daemon.kill9();
        await fx.restart();
        assert.deepEqual((await fx.api.listAll()).filter((s) => s.state !== 'deleted'), []);
        await assertNoLeaks(everyId, { daemonPid: fx.daemon.pid, dataDir: fx.dataDir });
}));

test('kill -9 sbxd during a template build: the build sandbox is removed at restart, the spec builds again', { timeout: 300_000 }, (t) => withDaemon(t, async (fx) => {
        const name = `t-crash-${rand(3)}`;
        const spec = { name, from: 'base', setup: ['sleep 600'] };
        const r = await fx.api.request('POST', '/v1/templates', spec, { timeoutMs: 280_000 });
        assert.equal(r.status, 202, describe(r));
        // wait until the setup sandbox runs the long command
        let buildId = null;
        await waitFor(async () => {
                const all = await fx.api.listAll();
                buildId = all.find((s) => s.metadata?.['sbx.build'] === name && s.state === 'running')?.id ?? null;
                return buildId !== null;
        }, 250_000, { interval: 200, what: 'the setup sandbox of the build' });
        await fx.daemon.kill9();
        await fx.restart();
        await waitFor(async () => !(await fx.api.listAll()).some((s) => s.id === buildId), 15_000,
                { what: 'the interrupted build sandbox deleted at restart' });
        expectError(await fx.api.request('GET', `/v1/templates/${name}/build`), 404, 'not_found');
        expectError(await fx.api.create({ template: name }), 404, 'template_not_found');
        // the same name builds again (its base is cached)
        const again = await fx.api.request('POST', '/v1/templates', { ...spec, setup: ['echo rebuilt > /r'] });
        assert.equal(again.status, 202, describe(again));
        await waitFor(async () => (await fx.api.request('GET', `/v1/templates/${name}`)).json?.state === 'available', 60_000,
                { what: 'rebuilt template' });
        const sb = await fx.api.createOk({ template: name });
        assert.equal(await fx.api.sh(sb.id, 'cat /r'), 'rebuilt\n');
        await fx.api.del(sb.id);
        await fx.api.request('DELETE', `/v1/templates/${name}`);
        await assertNoLeaks([buildId], { daemonPid: fx.daemon.pid, dataDir: fx.daemon.dataDir });
}));

test('kill -9 sbxd during a file upload and while a stopped sandbox\'s files are open: old content kept, nothing left over', { timeout: 120_000 }, (t) => withDaemon(t, async (fx) => {
        const a = await fx.api.createOk({});
        const s = await fx.api.createOk({});
        const put = (id, p, body) => fetch(`${fx.url}/v1/sandboxes/${id}/files${p}`, {
                method: 'PUT', headers: { authorization: `Bearer ${fx.key}` }, body,
        });
        assert.equal((await put(a.id, '/root/keep.txt', 'old')).status, 200);
        assert.equal((await put(s.id, '/root/vol.txt', 'volume')).status, 200);
        assert.equal((await fx.api.stop(s.id)).status, 200);
        // the stopped sandbox's overlay is mounted (detached) while sbxd lives
        const r = await fetch(`${fx.url}/v1/sandboxes/${s.id}/files/root/vol.txt`, { headers: { authorization: `Bearer ${fx.key}` } });
        assert.equal(await r.text(), 'volume');

        // an upload cut by the crash: a body that never ends
        let push;
        const body = new ReadableStream({ start(c) { push = c; } });
        const pending = fetch(`${fx.url}/v1/sandboxes/${a.id}/files/root/keep.txt`, {
                method: 'PUT', headers: { authorization: `Bearer ${fx.key}` }, body, duplex: 'half',
        }).catch((e) => e);
        push.enqueue(new Uint8Array(1 << 20).fill(110));
        await sleep(300);
        await fx.daemon.kill9();
        await withTimeout(pending, 5000);
        await fx.restart();

        assert.equal(await fx.api.sh(a.id, 'cat /root/keep.txt; ls -A /root | grep -c sbx-tmp || true'), 'old0\n');
        // the stopped sandbox starts (its overlay was only in the dead sbxd) and has its file
        const st = await fx.api.start(s.id);
        assert.equal(st.status, 200, describe(st));
        assert.equal(await fx.api.sh(s.id, 'cat /root/vol.txt'), 'volume');
        assert.equal(await fx.api.sh(a.id, 'grep -c " overlay " /proc/self/mountinfo'), '1\n');
}));
