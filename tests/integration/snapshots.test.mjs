// SPDX-License-Identifier: Apache-2.0
//
// Snapshots, fork, checkpoints and patches (docs/lifecycle.md), on both storage backends: plain
// directories (copies) and btrfs (a loop-mounted image, subvolume snapshots). For each: snapshot ->
// create -> the files are equal (contents, owners, modes, hardlinks, symlinks); a file deleted in a
// child stays deleted in the grandchild (whiteouts across layers); the lineage of a 3-deep chain;
// fork x10 gives ten independent sandboxes while the parent keeps running and keeps its attached
// stream; checkpoint restore in place (running and stopped); patches run in order and a failing one
// fails the create; tags; delete refused while in use; bad input. Then: snapshots and the
// sandboxes standing on them survive an sbxd restart, and a snapshot taken while sbxd is killed
// leaves no half-made copy and no frozen sandbox behind.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describe, expectError, fmt, useDaemon, sleep, waitFor } from '../lib/harness.mjs';

/* A tree with every kind of entry, and a digest of it (names, types, owners, modes, sizes, link
 * targets, inode sharing, file contents) to compare sandboxes by. */
const MAKE_TREE = `set -e
mkdir -p /root/t/d/e /root/t/gone-dir
echo hello > /root/t/a; printf 'x%.0s' $(seq 1 5000) > /root/t/d/big
ln /root/t/a /root/t/a-link; ln -s ../a /root/t/d/sym
chmod 4755 /root/t/d/big; chown 1234:2345 /root/t/d/e; mkfifo /root/t/fifo
echo bye > /root/t/gone; echo x > /root/t/gone-dir/x`;
const DIGEST = `cd /root/t && find . -printf '%p %y %U:%G %m %s %n %l\\n' | sort && find . -type f -exec md5sum {} + | sort`;

function suite(storage) {
        const fx = useDaemon(storage === 'btrfs' ? { extraArgs: ['--storage', 'btrfs', '--storage-size', '2G'] } : {});

        const snap = async (api, id, body = {}) => {
                const res = await api.request('POST', `/v1/sandboxes/${id}/snapshots`, body);
                assert.equal(res.status, 201, describe(res));
                return res.json;
        };

        test(`[${storage}] snapshot -> create: the files are equal; deletions stay deleted down a 3-deep chain`, { timeout: 120_000 }, async (t) => {
                const api = fx.scope(t);
                const a = await api.createOk({ env: { FROM: 'a' }, resources: { memory: 256 } });
                await api.sh(a.id, MAKE_TREE);
                const digestA = await api.sh(a.id, DIGEST);
                const s1 = await snap(api, a.id, { name: 'first', tag: `t-${storage}-1`, description: 'the tree' });
                assert.match(s1.id, /^snp_[a-z2-7]{20}$/);
                assert.equal(s1.kind, 'snapshot');
                assert.equal(s1.sandboxId, a.id);
                assert.equal(s1.parentId, null);
                assert.equal(s1.backend, storage);
                assert.deepEqual(s1.tags, [`t-${storage}-1`]);
                assert.equal(s1.layers[0], s1.id);
                if (storage === 'dir') assert.ok(s1.entries >= 10 && s1.sizeBytes >= 5000, fmt(s1));
                // the source goes on changing; the snapshot does not
                await api.sh(a.id, 'echo later > /root/t/a; rm /root/t/d/big');

                // by tag; settings the request leaves out come from the snapshot's sandbox
                const b = await api.createOk({ snapshot: `t-${storage}-1` });
                assert.equal(b.snapshot, s1.id);
                assert.equal(b.template, 'host');
                assert.equal(b.resources.memory, 256);
                assert.equal(b.env.FROM, 'a');
                assert.equal(await api.sh(b.id, DIGEST), digestA);
                await api.sh(b.id, 'rm /root/t/gone; rm -r /root/t/gone-dir; echo b > /root/t/b');

                const s2 = await snap(api, b.id);
                assert.equal(s2.parentId, s1.id);
                const c = await api.createOk({ snapshot: s2.id });
                assert.equal(await api.sh(c.id, 'cat /root/t/b /root/t/a; ls /root/t'), 'b\nhello\na\na-link\nb\nd\nfifo\n');
                await api.sh(c.id, 'echo c > /root/t/gone');
                const s3 = await snap(api, c.id);
                const d = await api.createOk({ snapshot: s3.id });
                assert.equal(await api.sh(d.id, 'cat /root/t/gone; test ! -e /root/t/gone-dir && echo no-dir'), 'c\nno-dir\n');

                const lin = await api.request('GET', `/v1/snapshots/${s3.id}/lineage`);
                assert.equal(lin.status, 200, describe(lin));
                assert.deepEqual(lin.json.ancestors.map((x) => x.id), [s2.id, s1.id]);
                assert.deepEqual(lin.json.sandboxes, [d.id]);
                assert.equal(lin.json.template, 'host');
                const l1 = await api.request('GET', `/v1/snapshots/${s1.id}/lineage`);
                assert.deepEqual(l1.json.children, [s2.id]);
                assert.deepEqual(l1.json.sandboxes, [b.id]);
                assert.deepEqual(s3.layers.slice(0, 3), [s3.id, s2.id, s1.id]);

                // in use: refused, and the message says by what
                const del = await api.request('DELETE', `/v1/snapshots/${s1.id}`);
                expectError(del, 409, 'snapshot_in_use');
                assert.match(del.json.error.message, /sandbox/);
                // listing and filters
                const list = await api.request('GET', `/v1/snapshots?sandbox=${a.id}`);
                assert.deepEqual(list.json.snapshots.map((x) => x.id), [s1.id]);
                const byTag = await api.request('GET', `/v1/snapshots?tag=t-${storage}-1`);
                assert.deepEqual(byTag.json.snapshots.map((x) => x.id), [s1.id]);
                // once nothing stands on them they go, newest first
                for (const sb of [d, c, b]) assert.equal((await api.del(sb.id)).status, 204);
                for (const s of [s3, s2, s1]) {
                        const r = await api.request('DELETE', `/v1/snapshots/${s.id}`);
                        assert.equal(r.status, 204, describe(r));
                }
                expectError(await api.request('GET', `/v1/snapshots/${s1.id}`), 404, 'snapshot_not_found');
                expectError(await api.create({ snapshot: s1.id }), 404, 'snapshot_not_found');
        });

        test(`[${storage}] fork x10: independent children, the parent keeps running and its stream`, { timeout: 120_000 }, async (t) => {
                const api = fx.scope(t);
                const p = await api.createOk({ metadata: { team: 'x' } });
                await api.sh(p.id, 'echo parent > /root/f');
                const ticker = await api.request('POST', `/v1/sandboxes/${p.id}/processes`, { cmd: 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done' });
                assert.equal(ticker.status, 201, describe(ticker));
                const res = await api.request('POST', `/v1/sandboxes/${p.id}/fork`, { count: 10, name: `fk-${storage}` });
                assert.equal(res.status, 201, describe(res));
                const kids = res.json.sandboxes;
                for (const k of kids) api.track(k.id);
                assert.equal(kids.length, 10, fmt(res.json.errors));
                assert.deepEqual(res.json.errors, []);
                assert.equal(res.json.parentId, p.id);
                assert.ok(typeof res.json.frozenMs === 'number');
                assert.deepEqual(kids.map((k) => k.name).sort(), Array.from({ length: 10 }, (_, i) => `fk-${storage}-${i + 1}`).sort());
                for (const k of kids) assert.deepEqual(k.metadata, { team: 'x' });
                await Promise.all(kids.map((k, i) => api.sh(k.id, `echo kid${i} > /root/f`)));
                for (const [i, k] of kids.entries()) assert.equal(await api.sh(k.id, 'cat /root/f'), `kid${i}\n`);
                assert.equal(await api.sh(p.id, 'cat /root/f'), 'parent\n');
                // the parent's process kept going through the fork
                const before = (await api.request('GET', `/v1/sandboxes/${p.id}/processes/${ticker.json.processId}`)).json;
                assert.equal(before.status, 'running');
                const out = await api.request('GET', `/v1/sandboxes/${p.id}/processes/${ticker.json.processId}/stdout?follow=false`);
                const n1 = out.text.trim().split('\n').length;
                await sleep(300);
                const n2 = (await api.request('GET', `/v1/sandboxes/${p.id}/processes/${ticker.json.processId}/stdout?follow=false`)).text.trim().split('\n').length;
                assert.ok(n2 > n1, `the parent's output stopped after the fork (${n1} -> ${n2})`);
                // the fork base goes with the last child
                const base = res.json.snapshotId;
                assert.equal((await api.request('GET', `/v1/snapshots/${base}`)).json.kind, 'fork');
                for (const k of kids) assert.equal((await api.del(k.id)).status, 204);
                await waitFor(async () => (await api.request('GET', `/v1/snapshots/${base}`)).status === 404, 5000, { what: 'the fork base removal' });
                expectError(await api.request('POST', `/v1/sandboxes/${p.id}/fork`, { count: 0 }), 400, 'out_of_range');
                expectError(await api.request('POST', `/v1/sandboxes/${p.id}/fork`, { count: 65 }), 400, 'out_of_range');
                expectError(await api.request('POST', `/v1/sandboxes/${p.id}/fork`, { memory: true }), 409, 'memory_unavailable');
                expectError(await api.request('POST', `/v1/sandboxes/${p.id}/fork`, { bogus: 1 }), 400, 'unknown_field');
        });

        test(`[${storage}] checkpoints: restore in place (running and stopped), patches in order`, { timeout: 120_000 }, async (t) => {
                const api = fx.scope(t);
                const s = await api.createOk();
                await api.sh(s.id, 'echo v1 > /root/f; echo keep > /root/k');
                const cp = await api.request('POST', `/v1/sandboxes/${s.id}/checkpoints`, { name: 'v1' });
                assert.equal(cp.status, 201, describe(cp));
                assert.equal(cp.json.kind, 'checkpoint');
                assert.equal(cp.json.name, 'v1');
                expectError(await api.request('POST', `/v1/sandboxes/${s.id}/checkpoints`, { name: 'v1' }), 409, 'checkpoint_exists');
                expectError(await api.request('POST', `/v1/sandboxes/${s.id}/checkpoints`, {}), 400, 'missing_field');
                await api.sh(s.id, 'echo v2 > /root/f; rm /root/k; echo new > /root/n');
                const r1 = await api.request('POST', `/v1/sandboxes/${s.id}/checkpoints/v1/restore`);
                assert.equal(r1.status, 200, describe(r1));
                assert.equal(r1.json.state, 'running');
                assert.equal(await api.sh(s.id, 'cat /root/f /root/k; test ! -e /root/n && echo gone'), 'v1\nkeep\ngone\n');
                // stopped: it stays stopped, the files are back
                await api.sh(s.id, 'echo v3 > /root/f');
                assert.equal((await api.stop(s.id)).status, 200);
                const r2 = await api.request('POST', `/v1/sandboxes/${s.id}/checkpoints/v1/restore`);
                assert.equal(r2.json.state, 'stopped', describe(r2));
                assert.equal((await api.start(s.id)).status, 200);
                assert.equal(await api.sh(s.id, 'cat /root/f'), 'v1\n');
                const list = await api.request('GET', `/v1/sandboxes/${s.id}/checkpoints`);
                assert.deepEqual(list.json.checkpoints.map((c) => c.name), ['v1']);
                expectError(await api.request('POST', `/v1/sandboxes/${s.id}/checkpoints/nope/restore`), 404, 'checkpoint_not_found');

                // patches: in order, as root, before the create answers
                const p1 = await api.request('POST', `/v1/snapshots/${cp.json.id}/patches`, { name: 'one', script: 'echo one >> /root/log' });
                assert.equal(p1.status, 201, describe(p1));
                await api.request('POST', `/v1/snapshots/${cp.json.id}/patches`, { script: 'echo "two $(id -u)" >> /root/log' });
                const pl = await api.request('GET', `/v1/snapshots/${cp.json.id}/patches`);
                assert.deepEqual(pl.json.patches.map((p) => p.name), ['one', null]);
                const c = await api.createOk({ snapshot: cp.json.id });
                assert.equal(c.patchesApplied, 2);
                assert.equal(await api.sh(c.id, 'cat /root/log /root/f'), 'one\ntwo 0\nv1\n');
                const bad = await api.request('POST', `/v1/snapshots/${cp.json.id}/patches`, { script: 'echo broken; exit 7' });
                const failed = await api.create({ snapshot: cp.json.id });
                expectError(failed, 409, 'patch_failed');
                assert.match(failed.json.error.message, /exited with 7[\s\S]*broken/);
                assert.equal((await api.request('DELETE', `/v1/snapshots/${cp.json.id}/patches/${bad.json.id}`)).status, 204);
                expectError(await api.request('DELETE', `/v1/snapshots/${cp.json.id}/patches/pch_nope`), 404, 'patch_not_found');
                expectError(await api.request('POST', `/v1/snapshots/${cp.json.id}/patches`, {}), 400, 'missing_field');
                assert.equal((await api.del(c.id)).status, 204);
                assert.equal((await api.request('DELETE', `/v1/sandboxes/${s.id}/checkpoints/v1`)).status, 204);
        });
}

suite('dir');
suite('btrfs');

const fx = useDaemon();

test('tags move, bad input is refused with the field named', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const s = await api.createOk();
        const a = (await api.request('POST', `/v1/sandboxes/${s.id}/snapshots`, { tag: 'moving' })).json;
        const b = (await api.request('POST', `/v1/sandboxes/${s.id}/snapshots`, { tags: ['moving', 'other'] })).json;
        assert.deepEqual(b.tags, ['moving', 'other']);
        assert.deepEqual((await api.request('GET', `/v1/snapshots/${a.id}`)).json.tags, []);
        // the move is stored, not only in memory
        await fx.daemon.kill9();
        await fx.restart();
        assert.deepEqual((await api.request('GET', `/v1/snapshots/${a.id}`)).json.tags, []);
        assert.equal((await api.request('GET', '/v1/snapshots/moving')).json.id, b.id);
        const tg = await api.request('POST', `/v1/snapshots/${a.id}/tags`, { tag: 'moving' });
        assert.equal(tg.status, 200, describe(tg));
        assert.deepEqual((await api.request('GET', `/v1/snapshots/${b.id}`)).json.tags, ['other']);
        assert.deepEqual((await api.request('DELETE', `/v1/snapshots/${b.id}/tags/other`)).json.tags, []);
        expectError(await api.request('DELETE', `/v1/snapshots/${b.id}/tags/other`), 404, 'tag_not_found');
        for (const body of [{ tag: '-x' }, { tags: 'x' }, { tags: [1] }, { name: 5 }, { bogus: true }, { description: 'x'.repeat(2000) }]) {
                const r = await api.request('POST', `/v1/sandboxes/${s.id}/snapshots`, body);
                assert.equal(r.status, 400, `${fmt(body)}: ${describe(r)}`);
        }
        expectError(await api.request('POST', '/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa/snapshots', {}), 404, 'sandbox_not_found');
        expectError(await api.create({ snapshot: 'no such tag' }), 400, 'invalid_value');
        expectError(await api.create({ snapshot: a.id, template: 'base' }), 400, 'invalid_value');
        expectError(await api.request('GET', '/v1/snapshots?kind=weird'), 400, 'invalid_value');
        for (const x of [a, b]) assert.equal((await api.request('DELETE', `/v1/snapshots/${x.id}`)).status, 204);
});

test('restart: snapshots and the sandboxes on them survive; a snapshot cut short leaves nothing frozen or half-made', { timeout: 120_000 }, async (t) => {
        const api = fx.scope(t);
        const s = await api.createOk();
        await api.sh(s.id, 'mkdir -p /root/many && for i in $(seq 1 3000); do echo $i > /root/many/$i; done');
        const s1 = (await api.request('POST', `/v1/sandboxes/${s.id}/snapshots`, {})).json;
        const c = await api.createOk({ snapshot: s1.id });
        const ticker = await api.request('POST', `/v1/sandboxes/${s.id}/processes`, { cmd: 'i=0; while :; do i=$((i+1)); echo $i > /root/clock.new; mv /root/clock.new /root/clock; sleep 0.01; done' });
        assert.equal(ticker.status, 201);
        // kill sbxd while it copies
        const inflight = api.request('POST', `/v1/sandboxes/${s.id}/snapshots`, {}).catch((e) => e);
        await sleep(15);
        await fx.daemon.kill9();
        await inflight;
        await fx.restart();
        const got = (await api.get(s.id)).json;
        assert.equal(got.state, 'running', fmt(got));
        // not left frozen: its clock moves
        const t1 = await api.sh(s.id, 'cat /root/clock');
        await sleep(100);
        assert.notEqual(await api.sh(s.id, 'cat /root/clock'), t1);
        const snaps = (await api.request('GET', `/v1/snapshots?sandbox=${s.id}`)).json.snapshots;
        assert.ok(snaps.some((x) => x.id === s1.id), 'the finished snapshot survived');
        for (const x of snaps) if (x.id !== s1.id) assert.equal((await api.request('DELETE', `/v1/snapshots/${x.id}`)).status, 204);
        assert.equal(await api.sh(c.id, 'cat /root/many/3000'), '3000\n');
        assert.equal((await api.get(c.id)).json.snapshot, s1.id);
        expectError(await api.request('DELETE', `/v1/snapshots/${s1.id}`), 409, 'snapshot_in_use');
        assert.equal((await api.del(c.id)).status, 204);
        assert.equal((await api.request('DELETE', `/v1/snapshots/${s1.id}`)).status, 204);
});
