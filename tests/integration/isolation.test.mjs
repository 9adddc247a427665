// SPDX-License-Identifier: Apache-2.0
//
// Isolation, checked from inside sandboxes (host template) through exec, plus a look at the host side:
// uid 0 inside is an unprivileged uid outside (uid_map, owner of a file on the host disk);
// no_new_privs, seccomp and a reduced capability bounding set; mount, unshare, ptrace, keyctl and bpf
// fail with EPERM; host processes are invisible (PID 1 is sbx-init, few pids); /proc/sys is read-only;
// only the lo interface; own hostname; the host's /usr and /etc are read-only and host files outside
// the template are invisible; a memory limit OOM-kills and is reported; a pids limit stops a fork
// bomb while the daemon stays responsive; two sandboxes see neither each other's files nor processes.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { describe, findProcsInSandboxCgroups, fmt, rand, sleep, useDaemon, waitFor, withTimeout } from '../lib/harness.mjs';

let sb;
const fx = useDaemon({}, async (f) => {
        sb = await f.api.createOk();
});
const PY = '/usr/bin/python3'; // the host template exposes the host's /usr

// Syscalls the sandbox must not be able to make, each tried for real (they succeed for root in a
// plain user namespace). Prints {name: [ret, errno]} as JSON.
const SYSCALL_PROBE = String.raw`
import ctypes, json, os, platform, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {'x86_64': dict(ptrace=101, keyctl=250, bpf=321, unshare=272, mount=165),
      'aarch64': dict(ptrace=117, keyctl=219, bpf=280, unshare=97, mount=40)}[platform.machine()]
L = ctypes.c_long
def call(*a):
    ctypes.set_errno(0)
    r = libc.syscall(*a)
    return [r, ctypes.get_errno()]
def in_child(fn):
    # run fn in a child so a syscall that unexpectedly succeeds cannot change this process
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        os.write(wfd, json.dumps(fn()).encode())
        os._exit(0)
    os.close(wfd)
    data = b''
    while True:
        b = os.read(rfd, 4096)
        if not b: break
        data += b
    os.waitpid(pid, 0)
    return json.loads(data)
out = {}
victim = os.fork()
if victim == 0:
    time.sleep(30)
    os._exit(0)
out['ptrace_attach'] = call(NR['ptrace'], L(16), L(victim), None, None)
os.kill(victim, 9)
os.waitpid(victim, 0)
out['keyctl'] = call(NR['keyctl'], L(0), L(-3), L(1))          # KEYCTL_GET_KEYRING_ID session, create
attr = (ctypes.c_uint32 * 32)(2, 4, 4, 1)                        # BPF_MAP_TYPE_ARRAY, key 4, value 4, 1 entry
out['bpf'] = call(NR['bpf'], L(0), ctypes.byref(attr), L(128))  # BPF_MAP_CREATE
os.makedirs('/tmp/probe-mnt', exist_ok=True)
out['mount_tmpfs'] = in_child(lambda: call(NR['mount'], b'x', b'/tmp/probe-mnt', b'tmpfs', L(0), None))
out['unshare_user'] = in_child(lambda: call(NR['unshare'], L(0x10000000)))
out['unshare_mnt'] = in_child(lambda: call(NR['unshare'], L(0x00020000)))
out['unshare_net'] = in_child(lambda: call(NR['unshare'], L(0x40000000)))
print(json.dumps(out))
`;

test('uid 0 inside is an unprivileged uid outside', { timeout: 60_000 }, async () => {
        assert.equal(await fx.api.sh(sb.id, 'id -u; id -g'), '0\n0\n');
        const uidMap = (await fx.api.sh(sb.id, 'cat /proc/self/uid_map')).trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
        const gidMap = (await fx.api.sh(sb.id, 'cat /proc/self/gid_map')).trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
        for (const [what, map] of [['uid_map', uidMap], ['gid_map', gidMap]]) {
                assert.ok(map.length >= 1, what);
                for (const [, outside, count] of map) {
                        assert.ok(count > 0, `${what}: ${fmt(map)}`);
                        assert.ok(outside > 0, `${what} maps onto host id 0: ${fmt(map)}`);
                }
        }
        const root = uidMap.find(([inside]) => inside === 0);
        assert.ok(root, 'uid 0 is mapped');
        const hostUid = root[1];
        const hostGid = gidMap.find(([inside]) => inside === 0)[1];
        assert.notEqual(hostUid, 0);

        // a file root creates inside is owned by that unprivileged uid on the host disk
        const marker = `marker-${rand()}`;
        await fx.api.sh(sb.id, `echo x > /root/${marker}`);
        const found = spawnSync('find', [fx.dataDir, '-xdev', '-name', marker], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
        assert.ok(found.length >= 1, `${marker} not found on the host under ${fx.dataDir}`);
        for (const p of found) {
                const st = fs.statSync(p);
                assert.equal(st.uid, hostUid, `${p} owner on the host`);
                assert.equal(st.gid, hostGid, `${p} group on the host`);
        }
});

test('no_new_privs, seccomp filter, reduced capability bounding set', async () => {
        const status = await fx.api.sh(sb.id, 'cat /proc/self/status');
        const field = (n) => (status.match(new RegExp(`^${n}:\\s*(\\S+)`, 'm')) ?? [])[1];
        assert.equal(field('NoNewPrivs'), '1');
        assert.equal(field('Seccomp'), '2', 'seccomp filter mode');
        const hostBnd = BigInt('0x' + fs.readFileSync('/proc/self/status', 'utf8').match(/^CapBnd:\s*(\S+)/m)[1]);
        const bnd = BigInt('0x' + field('CapBnd'));
        assert.equal(bnd & ~hostBnd, 0n, 'bounding set is a subset of the host one');
        assert.notEqual(bnd, hostBnd, 'bounding set is reduced');
});

test('mount, unshare, ptrace, keyctl and bpf fail with EPERM', { timeout: 60_000 }, async () => {
        const r = await fx.api.run(sb.id, [PY, '-c', SYSCALL_PROBE]);
        assert.equal(r.exitCode, 0, `probe failed: ${fmt(r)}`);
        const out = JSON.parse(r.stdout);
        const EPERM = 1;
        for (const k of ['ptrace_attach', 'keyctl', 'bpf', 'mount_tmpfs']) {
                assert.deepEqual(out[k], [-1, EPERM], `${k} should fail with EPERM, got ${fmt(out[k])}`);
        }
        for (const k of ['unshare_user', 'unshare_mnt', 'unshare_net']) {
                assert.equal(out[k][0], -1, `${k} should fail, got ${fmt(out[k])}`);
        }
        // the same through the usual tools
        const m = await fx.api.run(sb.id, 'mkdir -p /tmp/m && mount -t tmpfs x /tmp/m; echo rc=$?; grep " /tmp/m " /proc/self/mountinfo; true');
        assert.match(m.stdout, /^rc=[1-9]\d*$/m, `mount succeeded: ${fmt(m)}`);
        assert.doesNotMatch(m.stdout, /\/tmp\/m /, 'nothing mounted on /tmp/m');
        for (const cmd of ['unshare -m true', 'unshare -U -r true', 'unshare -n true']) {
                const u = await fx.api.run(sb.id, cmd);
                assert.notEqual(u.exitCode, 0, `${cmd} succeeded`);
        }
        if (fs.existsSync('/usr/bin/strace')) {
                const s = await fx.api.run(sb.id, '/usr/bin/strace -f -o /dev/null /bin/true');
                assert.notEqual(s.exitCode, 0, `strace works inside: ${fmt(s)}`);
        }
});

test('host processes are invisible; PID 1 is sbx-init', async () => {
        assert.equal(await fx.api.sh(sb.id, 'cat /proc/1/comm'), 'sbx-init\n');
        const n = Number((await fx.api.sh(sb.id, "ls /proc | grep -E '^[0-9]+$' | wc -l")).trim());
        assert.ok(n >= 2 && n < 10, `${n} pids visible inside`);
        const comms = (await fx.api.sh(sb.id, 'for p in /proc/[0-9]*; do cat $p/comm; done 2>/dev/null')).split('\n').filter(Boolean);
        for (const c of ['sbxd', 'node', 'systemd', 'init', 'sshd']) assert.ok(!comms.includes(c), `host process "${c}" visible: ${comms}`);
        // our own host pid is not a process in there (its pid number, if present, is someone else)
        const hostComm = (await fx.api.sh(sb.id, `cat /proc/${process.pid}/comm 2>/dev/null || echo none`)).trim();
        assert.notEqual(hostComm, 'node');
});

test('/proc/sys is read-only', async () => {
        // masked (absent) is fine too; writable is not
        for (const [file, val] of [['/proc/sys/kernel/domainname', 'sbxtest'], ['/proc/sys/net/ipv4/ip_forward', '1'], ['/proc/sys/kernel/hostname', 'sbxhack']]) {
                const read = `cat ${file} 2>/dev/null || echo MISSING`;
                const before = (await fx.api.sh(sb.id, read)).trim();
                const r = await fx.api.run(sb.id, `echo ${val} > ${file}`);
                assert.notEqual(r.exitCode, 0, `writing ${file} succeeded`);
                assert.equal((await fx.api.sh(sb.id, read)).trim(), before, `${file} changed`);
        }
        const d = await fx.api.run(sb.id, 'mount -o remount,rw /proc/sys');
        assert.notEqual(d.exitCode, 0, 'remounting /proc/sys read-write succeeded');
});

test('network: only the loopback interface', async () => {
        const dev = await fx.api.sh(sb.id, 'cat /proc/net/dev');
        const ifs = dev.split('\n').slice(2).filter((l) => l.includes(':')).map((l) => l.split(':')[0].trim());
        assert.deepEqual(ifs, ['lo'], `interfaces: ${ifs}`);
});

test('hostname is not the host one', async () => {
        const h = (await fx.api.sh(sb.id, 'uname -n')).trim();
        assert.ok(h.length > 0);
        assert.notEqual(h, os.hostname());
});

test('host /usr and /etc are read-only; other host files are invisible', async () => {
        const tag = rand();
        for (const dir of ['/usr', '/usr/bin', '/etc', '/bin']) {
                const r = await fx.api.run(sb.id, `touch ${dir}/sbx-write-${tag}`);
                assert.notEqual(r.exitCode, 0, `could create a file in ${dir}`);
                assert.ok(!fs.existsSync(`${dir}/sbx-write-${tag}`), `${dir}/sbx-write-${tag} appeared on the host`);
        }
        const hostFile = path.join(os.tmpdir(), `sbx-host-secret-${tag}`);
        fs.writeFileSync(hostFile, 'secret');
        try {
                for (const p of [hostFile, fx.dataDir, '/root/.bash_history', '/root/.pyenv', '/work']) {
                        if (p !== hostFile && p !== fx.dataDir && !fs.existsSync(p)) continue;
                        const r = await fx.api.run(sb.id, `test -e '${p}'`);
                        assert.equal(r.exitCode, 1, `host path ${p} is visible inside`);
                }
        } finally {
                fs.rmSync(hostFile, { force: true });
        }
});

test('memory limit: allocating past it is OOM-killed and reported', { timeout: 90_000 }, async (t) => {
        const api = fx.scope(t);
        const box = await api.createOk({ resources: { memory: 64 } });
        assert.equal(box.resources.memory, 64);
        const ok = await api.run(box.id, [PY, '-c', "x = b'a' * (16 << 20); print(len(x))"], { timeout: 30 });
        assert.equal(ok.exitCode, 0, `16 MB under a 64 MiB limit should work: ${fmt(ok)}`);
        assert.equal(ok.oomKilled, false);
        const r = await api.run(box.id, [PY, '-c', "x = b'a' * (200 << 20); print('survived')"], { timeout: 60 });
        assert.equal(r.oomKilled, true, fmt(r));
        assert.equal(r.exitCode, 137, fmt(r));
        assert.equal(r.timedOut, false);
        assert.doesNotMatch(r.stdout, /survived/);
        // the sandbox lives on
        assert.equal(await api.sh(box.id, 'echo alive'), 'alive\n');
});

test('pids limit: fork fails at the limit; a fork bomb leaves the daemon responsive', { timeout: 90_000 }, async (t) => {
        const api = fx.scope(t);
        const box = await api.createOk({ resources: { pids: 64 } });
        assert.equal(box.resources.pids, 64);

        const count = await api.run(box.id, [PY, '-c', String.raw`
import os, time
kids, err = [], None
try:
    while len(kids) < 1000:
        pid = os.fork()
        if pid == 0:
            os.closerange(0, 3)
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
except OSError as e:
    err = e.errno
print(len(kids), err)
for k in kids: os.kill(k, 9)
for k in kids: os.waitpid(k, 0)
`], { timeout: 30 });
        assert.equal(count.exitCode, 0, fmt(count));
        const [n, errno] = count.stdout.trim().split(' ');
        assert.equal(errno, '11', `fork should fail with EAGAIN at the limit: ${fmt(count)}`);
        assert.ok(Number(n) >= 30 && Number(n) < 64, `${n} children forked under pids=64`);

        // bounded bomb (at most 400 sleeps even without a limit), killed by the exec timeout
        const bomb = api.run(box.id, 'i=0; while [ $i -lt 400 ]; do sleep 60 </dev/null >/dev/null 2>&1 & i=$((i+1)); done; wait',
                { timeout: 5 }).catch((e) => e);
        const lat = [];
        let maxProcs = 0;
        const t0 = Date.now();
        while (Date.now() - t0 < 4500) {
                const h = await fx.api.health();
                assert.equal(h.status, 200);
                lat.push(h.ms);
                maxProcs = Math.max(maxProcs, findProcsInSandboxCgroups([box.id]).length);
                await sleep(50);
        }
        const res = await bomb;
        assert.ok(!(res instanceof Error), `bomb exec request failed: ${res?.message}`);
        assert.ok(lat.length >= 20, `only ${lat.length} health samples`);
        const worst = Math.max(...lat);
        assert.ok(worst < 500, `GET /v1/health took up to ${Math.round(worst)} ms during the bomb`);
        assert.ok(maxProcs <= 64, `${maxProcs} processes in the sandbox cgroups with pids=64`);

        // afterwards the sandbox is usable again, or at least deletable
        let usable = false;
        try {
                await waitFor(async () => (await api.run(box.id, 'echo ok', { timeout: 5 })).stdout === 'ok\n', 10_000);
                usable = true;
        } catch {
                usable = false;
        }
        if (!usable) {
                const d = await api.del(box.id);
                assert.equal(d.status, 204, `sandbox neither usable nor deletable after the bomb: ${describe(d)}`);
        }
});

test('two sandboxes see neither each other\'s files nor processes', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const a = await api.createOk();
        const b = await api.createOk();
        const tag = rand();
        await api.sh(a.id, `echo secret > /root/a-${tag}; echo secret > /tmp/a-${tag}`);
        assert.equal(await api.sh(a.id, `cat /root/a-${tag}`), 'secret\n');
        for (const p of [`/root/a-${tag}`, `/tmp/a-${tag}`]) {
                const r = await api.run(b.id, `test -e ${p}`);
                assert.equal(r.exitCode, 1, `B sees A's ${p}`);
        }
        // A's files are not reachable through the shared host template either
        const r = await api.run(b.id, `find / -xdev -name 'a-${tag}' 2>/dev/null | head -1`);
        assert.equal(r.stdout, '');

        const bg = api.run(a.id, 'sleep 77', { timeout: 20 }).catch((e) => e);
        const cmdlines = 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done';
        // control: the method does see "sleep 77" inside A
        await waitFor(async () => (await api.sh(a.id, cmdlines)).includes('sleep 77'), 5000, { what: 'sleep 77 visible in A' });
        const inB = await api.sh(b.id, cmdlines);
        assert.ok(!inB.includes('sleep 77'), `B sees A's process:\n${inB}`);
        const nB = Number((await api.sh(b.id, "ls /proc | grep -E '^[0-9]+$' | wc -l")).trim());
        assert.ok(nB < 10, `${nB} pids visible in B`);
        // deleting A ends the background exec
        assert.equal((await api.del(a.id)).status, 204);
        await withTimeout(bg, 25_000);
});
