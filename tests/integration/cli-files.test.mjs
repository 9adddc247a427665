// SPDX-License-Identifier: Apache-2.0
//
// The `sbx` CLI's file commands against a real sbxd: `sbx cp` of a file both ways (every byte
// value, byte-exact, the mode kept), into an existing sandbox or local directory and to a DST
// ending in '/'; of a directory tree both ways (nested directories, a symlink, an empty
// directory, modes), a missing DST becoming the copy and an existing one getting it inside, and
// "DIR/." copying the content; "-" as standard input and output; the sandbox named by id or by
// name; progress lines with --progress and none otherwise; `sbx ls` (plain, -l, -R, --json, a
// file) and `sbx cat` (several files, binary); a stopped sandbox; errors (a missing sandbox file,
// local file or sandbox name: exit 1 and one stderr line naming it, nothing left behind; bad
// usage: exit 2). Sandboxes use the `host` template and are deleted by the end of each test;
// local files live in a temp dir removed with it.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SBX_CLI, ensureExecutable, fmt, rand, run, useDaemon } from '../lib/harness.mjs';

const fx = useDaemon({}, () => ensureExecutable(SBX_CLI, 'sbx'));

/* Run sbx with SBX_URL/SBX_KEY set: {code, signal, stdout (Buffer), out (its text), stderr, ms}. */
const sbx = (args, opts = {}) =>
        run(SBX_CLI, args, { env: { ...process.env, SBX_URL: fx.url, SBX_KEY: fx.key }, binary: true, ...opts });

const show = (r) => `exit ${r.code}, stdout ${fmt(r.out, 600)}, stderr ${fmt(r.stderr)}`;

async function ok(args, opts) {
        const r = await sbx(args, opts);
        assert.equal(r.code, 0, `sbx ${args.join(' ')}: ${show(r)}`);
        return r;
}

/* exit status `code` and exactly one stderr line "sbx: ..." containing every needle */
function assertError(r, code, needles, what) {
        assert.equal(r.code, code, `${what}: ${show(r)}`);
        const err = r.stderr.replace(/\n$/, '');
        assert.ok(err.startsWith('sbx: ') && !err.includes('\n'), `${what}: expected one "sbx: " line: ${fmt(r.stderr)}`);
        for (const n of needles) assert.ok(err.includes(n), `${what}: stderr should mention "${n}": ${fmt(r.stderr)}`);
}

/* A running sandbox deleted when t ends, and a local temp dir removed then too. */
async function setup(t, body = {}) {
        const api = fx.scope(t);
        const sb = await api.createOk(body);
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-cli-files-'));
        t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
        return { api, id: sb.id, dir, local: (...p) => path.join(dir, ...p) };
}

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

/* Every byte value, in an order that is not a plain ramp, n bytes long. */
function allBytes(n) {
        const b = Buffer.alloc(n);
        for (let i = 0; i < n; i++) b[i] = (i * 167 + (i >> 8)) & 0xff;
        return b;
}

/* sha256 and octal mode of a file in the sandbox. */
async function remoteFile(api, id, p) {
        const out = await api.sh(id, `sha256sum '${p}' | cut -d' ' -f1; stat -c %a '${p}'`);
        const [hash, mode] = out.trim().split('\n');
        return { hash, mode };
}

/* A local tree: nested dirs with modes, files with modes, a relative symlink, an empty dir. */
function makeTree(root) {
        fs.mkdirSync(path.join(root, 'a', 'b', 'c'), { recursive: true });
        fs.mkdirSync(path.join(root, 'empty'));
        fs.writeFileSync(path.join(root, 'top.txt'), 'top\n');
        fs.writeFileSync(path.join(root, 'a', 'run.sh'), '#!/bin/sh\necho run\n');
        fs.writeFileSync(path.join(root, 'a', 'b', 'c', 'deep.bin'), allBytes(70_000));
        fs.writeFileSync(path.join(root, 'a', 'b', 'secret'), 'secret\n');
        fs.symlinkSync('b/c/deep.bin', path.join(root, 'a', 'link'));
        fs.chmodSync(path.join(root, 'a', 'run.sh'), 0o755);
        fs.chmodSync(path.join(root, 'a', 'b', 'secret'), 0o600);
        fs.chmodSync(path.join(root, 'a', 'b'), 0o750);
        fs.chmodSync(path.join(root, 'empty'), 0o700);
}

/* "relpath type mode [-> target | sha]" for every entry below root, sorted: comparable with treeRemote. */
function treeLocal(root) {
        const lines = [];
        const walk = (rel) => {
                for (const n of fs.readdirSync(path.join(root, rel)).sort()) {
                        const r = rel ? `${rel}/${n}` : n;
                        const p = path.join(root, r);
                        const st = fs.lstatSync(p);
                        const mode = (st.mode & 0o7777).toString(8);
                        if (st.isSymbolicLink()) lines.push(`${r} l -> ${fs.readlinkSync(p)}`);
                        else if (st.isDirectory()) {
                                lines.push(`${r} d ${mode}`);
                                walk(r);
                        } else lines.push(`${r} f ${mode} ${sha256(fs.readFileSync(p))}`);
                }
        };
        walk('');
        return lines.sort();
}

async function treeRemote(api, id, root) {
        const out = await api.sh(id, `cd '${root}' && find . -mindepth 1 | sed 's|^\\./||' | sort | while read -r p; do ` +
                `if [ -L "$p" ]; then echo "$p l -> $(readlink "$p")"; ` +
                `elif [ -d "$p" ]; then echo "$p d $(stat -c %a "$p")"; ` +
                `else echo "$p f $(stat -c %a "$p") $(sha256sum "$p" | cut -d' ' -f1)"; fi; done`);
        return out.split('\n').filter(Boolean).sort();
}

test('cp a file both ways: every byte value, byte-exact, mode kept', { timeout: 120_000 }, async (t) => {
        const { api, id, dir, local } = await setup(t);
        const data = allBytes(3 * 65536 + 1234);
        fs.writeFileSync(local('bin.dat'), data);
        fs.chmodSync(local('bin.dat'), 0o741);

        await ok(['cp', local('bin.dat'), `${id}:/tmp/bin.dat`]);
        assert.deepEqual(await remoteFile(api, id, '/tmp/bin.dat'), { hash: sha256(data), mode: '741' });

        // relative paths are from "/"; missing parents are created
        await ok(['cp', local('bin.dat'), `${id}:tmp/new/dir/copy`]);
        assert.equal((await remoteFile(api, id, '/tmp/new/dir/copy')).hash, sha256(data));

        await ok(['cp', `${id}:/tmp/bin.dat`, local('back.dat')]);
        assert.ok(fs.readFileSync(local('back.dat')).equals(data), 'downloaded bytes differ');
        assert.equal((fs.statSync(local('back.dat')).mode & 0o777).toString(8), '741');
        assert.deepEqual(fs.readdirSync(dir).sort(), ['back.dat', 'bin.dat'], 'no temp file left behind');

        // overwrite an existing local file
        fs.writeFileSync(local('back.dat'), 'old content that is longer than nothing');
        await ok(['cp', `${id}:/tmp/new/dir/copy`, local('back.dat')]);
        assert.ok(fs.readFileSync(local('back.dat')).equals(data));

        // an empty file
        await api.sh(id, ': > /tmp/empty');
        await ok(['cp', `${id}:/tmp/empty`, local('empty')]);
        assert.equal(fs.readFileSync(local('empty')).length, 0);
});

test('cp into an existing directory puts the copy inside it', { timeout: 120_000 }, async (t) => {
        const { api, id, local } = await setup(t);
        fs.writeFileSync(local('f.txt'), 'inside\n');
        await api.sh(id, 'mkdir -p /tmp/d');

        await ok(['cp', local('f.txt'), `${id}:/tmp/d`]);
        assert.equal(await api.sh(id, 'cat /tmp/d/f.txt'), 'inside\n');
        // a DST ending in '/' names a directory, created if missing
        await ok(['cp', local('f.txt'), `${id}:/tmp/made/`]);
        assert.equal(await api.sh(id, 'cat /tmp/made/f.txt'), 'inside\n');

        fs.mkdirSync(local('here'));
        await ok(['cp', `${id}:/tmp/d/f.txt`, local('here')]);
        assert.equal(fs.readFileSync(local('here', 'f.txt'), 'utf8'), 'inside\n');
        await ok(['cp', `${id}:/tmp/d/f.txt`, '.'], { cwd: local('here') });
        assert.deepEqual(fs.readdirSync(local('here')), ['f.txt']);
});

test('cp a directory tree both ways: nesting, symlink, empty dir, modes', { timeout: 120_000 }, async (t) => {
        const { api, id, local } = await setup(t);
        makeTree(local('tree'));
        const want = treeLocal(local('tree'));

        // a DST that does not exist becomes the copy
        await ok(['cp', local('tree'), `${id}:/tmp/copy`]);
        assert.deepEqual(await treeRemote(api, id, '/tmp/copy'), want);
        // an existing DST gets it inside, under the source's name
        await ok(['cp', local('tree'), `${id}:/tmp/copy`]);
        assert.deepEqual(await treeRemote(api, id, '/tmp/copy/tree'), want);
        // DIR/. copies the content
        await api.sh(id, 'mkdir /tmp/content');
        await ok(['cp', local('tree') + '/.', `${id}:/tmp/content`]);
        assert.deepEqual(await treeRemote(api, id, '/tmp/content'), want);

        // and back: a missing local DST becomes the copy, an existing one gets it inside
        await api.sh(id, 'rm -rf /tmp/copy/tree');
        await ok(['cp', `${id}:/tmp/copy`, local('out')]);
        assert.deepEqual(treeLocal(local('out')), want);
        await ok(['cp', `${id}:/tmp/copy`, local('out')]);
        assert.deepEqual(treeLocal(local('out', 'copy')), want);
        fs.mkdirSync(local('content'));
        await ok(['cp', `${id}:/tmp/copy/.`, local('content')]);
        assert.deepEqual(treeLocal(local('content')), want);
});

test('"-": standard input into a sandbox file, a sandbox file to standard output', { timeout: 120_000 }, async (t) => {
        const { api, id } = await setup(t);
        await ok(['cp', '-', `${id}:/tmp/x`], { input: 'hi\n' });
        assert.equal(await api.sh(id, 'cat /tmp/x'), 'hi\n');
        const r = await ok(['cp', `${id}:/tmp/x`, '-']);
        assert.equal(r.out, 'hi\n');

        const data = allBytes(200_000);
        await ok(['cp', '-', `${id}:/tmp/bin`], { input: data });
        assert.equal((await remoteFile(api, id, '/tmp/bin')).hash, sha256(data));
        const b = await ok(['cp', `${id}:/tmp/bin`, '-']);
        assert.ok(b.stdout.equals(data), 'stdout bytes differ');
        assert.equal(b.stderr, '', 'no progress when stderr is not a terminal');

        assertError(await sbx(['cp', `${id}:/tmp`, '-']), 1, ['/tmp', 'directory'], 'a directory to stdout');
});

test('the sandbox can be named by its name; --progress and --quiet', { timeout: 120_000 }, async (t) => {
        const name = `files-${rand(4)}`;
        const { api, id, local } = await setup(t, { name });
        const data = allBytes(3 << 20);
        fs.writeFileSync(local('big'), data);

        const up = await ok(['cp', '--progress', local('big'), `${name}:/tmp/big`]);
        assert.match(up.stderr, /\r {2}3\.0 MiB \/ 3\.0 MiB {2}100% {2}\S+ \S+\/s\n$/, `progress line: ${fmt(up.stderr)}`);
        assert.equal((await remoteFile(api, id, '/tmp/big')).hash, sha256(data));
        const down = await ok(['cp', '-q', '--progress', `${name}:/tmp/big`, local('big2')]);
        assert.equal(down.stderr, '', '--quiet wins over --progress');
        assert.ok(fs.readFileSync(local('big2')).equals(data));
        const plain = await ok(['cp', `${name}:/tmp/big`, local('big3')]);
        assert.equal(plain.stderr, '', 'no progress when stderr is not a terminal');
        assert.equal((await ok(['ls', `${name}:/tmp/big`])).out, 'big\n');
        assert.equal((await ok(['cat', `${name}:/tmp/big`])).stdout.length, data.length);
});

test('ls: plain, -l, -R, --json, a file', { timeout: 120_000 }, async (t) => {
        const { api, id } = await setup(t);
        await api.sh(id, 'mkdir -p /tmp/l/sub/deeper && printf 12345 > /tmp/l/five && chmod 640 /tmp/l/five && ' +
                'ln -s five /tmp/l/link && : > /tmp/l/sub/inner && : > /tmp/l/sub/deeper/x');

        const plain = await ok(['ls', `${id}:/tmp/l`]);
        assert.equal(plain.out, 'five\nlink\nsub/\n');

        const long = (await ok(['ls', '-l', `${id}:/tmp/l`])).out.split('\n').filter(Boolean);
        assert.equal(long.length, 3, fmt(long));
        assert.match(long[0], /^-rw-r----- +5 \d{4}-\d\d-\d\d \d\d:\d\d five$/);
        assert.match(long[1], /^lrwxrwxrwx +\d+ \S+ \S+ link -> five$/);
        assert.match(long[2], /^drwx\S+ +\d+ \S+ \S+ sub$/);

        const rec = await ok(['ls', '-R', `${id}:tmp/l/`]);
        assert.deepEqual(rec.out.split('\n').filter(Boolean).sort(),
                ['five', 'link', 'sub/', 'sub/deeper/', 'sub/deeper/x', 'sub/inner'].sort());

        const j = JSON.parse((await ok(['ls', '--json', `${id}:/tmp/l`])).out);
        assert.ok(Array.isArray(j), fmt(j));
        const five = j.find((e) => e.name === 'five');
        assert.equal(five.path, '/tmp/l/five');
        assert.equal(five.type, 'file');
        assert.equal(five.size, 5);
        assert.equal(five.mode, 0o640);
        assert.equal(j.find((e) => e.name === 'link').symlinkTarget, 'five');
        assert.deepEqual(JSON.parse((await ok(['ls', '--json', `${id}:/tmp/l/sub/deeper/x`])).out).map((e) => e.name), ['x']);
        assert.deepEqual(JSON.parse((await ok(['ls', '--json', `${id}:/tmp/l/sub/deeper/x/..`])).out).map((e) => e.name), ['x']);

        assert.equal((await ok(['ls', `${id}:/tmp/l/five`])).out, 'five\n', 'a file lists as itself');
        // without SANDBOX:PATH, ls still lists sandboxes
        assert.ok((await ok(['ls'])).out.includes(id));
});

test('cat: several files, binary content', { timeout: 120_000 }, async (t) => {
        const { id, local } = await setup(t);
        const data = allBytes(100_000);
        fs.writeFileSync(local('bin'), data);
        await ok(['cp', local('bin'), `${id}:/tmp/bin`]);
        await ok(['cp', '-', `${id}:/tmp/a`], { input: 'A\n' });

        const r = await ok(['cat', `${id}:/tmp/a`, `${id}:/tmp/bin`, `${id}:/tmp/a`]);
        assert.ok(r.stdout.equals(Buffer.concat([Buffer.from('A\n'), data, Buffer.from('A\n')])), 'cat output differs');
});

test('a stopped sandbox: cp both ways, ls and cat work on its filesystem', { timeout: 120_000 }, async (t) => {
        const { api, id, local } = await setup(t);
        fs.writeFileSync(local('f'), 'while stopped\n');
        const st = await api.stop(id);
        assert.equal(st.status, 200, fmt(st.json));
        await ok(['cp', local('f'), `${id}:/root/f`]);
        assert.equal((await ok(['ls', `${id}:/root`])).out.split('\n').includes('f'), true);
        assert.equal((await ok(['cat', `${id}:/root/f`])).out, 'while stopped\n');
        await ok(['cp', `${id}:/root`, local('root-copy')]);
        assert.equal(fs.readFileSync(local('root-copy', 'f'), 'utf8'), 'while stopped\n');
        const sa = await api.start(id);
        assert.equal(sa.status, 200, fmt(sa.json));
        assert.equal(await api.sh(id, 'cat /root/f'), 'while stopped\n');
});

test('errors name the path and leave nothing behind; bad usage exits 2', { timeout: 120_000 }, async (t) => {
        const { id, dir, local } = await setup(t);
        const missing = `/tmp/no-such-${rand(4)}`;
        const named = missing.slice(1); // the server may name it as in the URL, without the leading '/'

        assertError(await sbx(['cp', `${id}:${missing}`, local('dst')]), 1, [named], 'cp of a missing sandbox file');
        assert.deepEqual(fs.readdirSync(dir), [], 'a failed download leaves nothing behind');
        assertError(await sbx(['cp', `${id}:${missing}/`, local('dst')]), 1, [named], 'cp of a missing sandbox dir');
        assert.deepEqual(fs.readdirSync(dir), []);
        assertError(await sbx(['cat', `${id}:${missing}`]), 1, [named], 'cat of a missing file');
        assertError(await sbx(['ls', `${id}:${missing}`]), 1, [named], 'ls of a missing directory');
        assertError(await sbx(['cp', local('nope'), `${id}:/tmp/x`]), 1, [local('nope')], 'cp of a missing local file');

        // cat goes on after a missing file, and exits 1
        await ok(['cp', '-', `${id}:/tmp/ok`], { input: 'ok\n' });
        const c = await sbx(['cat', `${id}:${missing}`, `${id}:/tmp/ok`]);
        assert.equal(c.code, 1, show(c));
        assert.equal(c.out, 'ok\n');
        assert.ok(c.stderr.includes(named), fmt(c.stderr));

        const unknownSb = await sbx(['cp', 'sbx_aaaaaaaaaaaaaaaaaaaa:/tmp/x', local('y')]);
        assertError(unknownSb, 1, ['sandbox_not_found'], 'an unknown sandbox');
        const unknownName = `no-such-sandbox-${rand(4)}`;
        assertError(await sbx(['cat', `${unknownName}:/tmp/x`]), 1, [unknownName, 'sandbox_not_found'], 'an unknown name');
        assert.deepEqual(fs.readdirSync(dir), []);

        for (const args of [['cp'], ['cp', local('a')], ['cp', local('a'), local('b')], ['cp', `${id}:/a`, `${id}:/b`],
                ['cp', local('a'), `${id}:/b`, 'extra'], ['cp', '--bogus', local('a'), `${id}:/b`], ['cat'], ['cat', 'nocolon'],
                ['ls', 'nocolon'], ['ls', `${id}:/a`, `${id}:/b`]]) {
                const r = await sbx(args);
                assert.equal(r.code, 2, `sbx ${args.join(' ')}: ${show(r)}`);
                assert.match(r.stderr, /^sbx: .*\n$/, `sbx ${args.join(' ')}: ${fmt(r.stderr)}`);
        }
        for (const v of ['cp', 'cat', 'ls']) {
                const h = await ok([v, '--help']);
                assert.match(h.out, new RegExp(`usage: sbx ${v} `));
        }
});
