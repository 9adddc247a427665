// SPDX-License-Identifier: Apache-2.0
//
// The files API (issue 4) end to end on the real daemon and kernel: raw GET/HEAD/PUT with Range,
// ETag and atomic replace (a concurrent reader, a cut upload), a 2 GiB sparse file, fs stat/list/
// exists/mkdir/move/copy/delete/chmod, a 100,000-entry listing paged by cursor, search and replace
// on UTF-8 and binary files, batch semantics, tar.gz in and out, files of a stopped sandbox,
// ownership (files the API creates belong to the sandbox's root), the escape suite (symlinks,
// "..", /proc magic links, pseudo filesystems, FIFOs, devices, hard links; the host stays
// untouched) and bad input. Watchers are in watchers.test.mjs.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { describe, expectError, fmt, rawHttp, useDaemon } from '../lib/harness.mjs';

let sb;
const fx = useDaemon({}, async (f) => {
        sb = await f.api.createOk({});
});

const enc = (p) => p.split('/').map(encodeURIComponent).join('/');
const fileUrl = (id, p) => `/v1/sandboxes/${id}/files${p.startsWith('/') ? '' : '/'}${enc(p)}`;

async function raw(method, p, body, headers = {}) {
        const res = await fetch(fx.url + p, {
                method,
                headers: { authorization: `Bearer ${fx.key}`, ...headers },
                body,
                duplex: body && typeof body.getReader === 'function' ? 'half' : undefined,
        });
        const buf = Buffer.from(await res.arrayBuffer());
        let json = null;
        try {
                json = JSON.parse(buf.toString());
        } catch {
                /* bytes */
        }
        return { status: res.status, headers: Object.fromEntries(res.headers), buf, json, text: buf.toString('latin1') };
}
const put = (id, p, data, query = '') => raw('PUT', fileUrl(id, p) + query, data);
const get = (id, p, headers) => raw('GET', fileUrl(id, p), undefined, headers);
const fsGet = (id, q) => fx.api.request('GET', `/v1/sandboxes/${id}/fs?${new URLSearchParams(q)}`);
const fsPost = (id, body, sub = '') => fx.api.request('POST', `/v1/sandboxes/${id}/fs${sub}`, body);
const sh = async (id, cmd) => {
        const r = await fx.api.run(id, cmd);
        assert.equal(r.exitCode, 0, `${cmd}: ${fmt(r)}`);
        return r.stdout;
};

test('binary round trip: all 256 byte values, an empty file, HEAD, ETag and 304', async () => {
        const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        let r = await put(sb.id, '/root/bin.dat', all);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.type, 'file');
        assert.equal(r.json.size, 256);
        assert.equal(r.json.path, '/root/bin.dat');
        r = await get(sb.id, '/root/bin.dat');
        assert.equal(r.status, 200);
        assert.ok(r.buf.equals(all), 'bytes differ');
        assert.equal(r.headers['content-type'], 'application/octet-stream');
        assert.equal(r.headers['accept-ranges'], 'bytes');
        assert.ok(r.headers.etag && r.headers['last-modified'], fmt(r.headers));
        assert.equal(await sh(sb.id, 'od -An -tx1 /root/bin.dat | tr -d " \\n" | md5sum | cut -c1-32'),
                crypto.createHash('md5').update(all.toString('hex')).digest('hex') + '\n');

        const h = await raw('HEAD', fileUrl(sb.id, '/root/bin.dat'));
        assert.equal(h.status, 200);
        assert.equal(h.headers['content-length'], '256');
        assert.equal(h.buf.length, 0);
        const nm = await get(sb.id, '/root/bin.dat', { 'if-none-match': r.headers.etag });
        assert.equal(nm.status, 304);

        r = await put(sb.id, '/root/empty', Buffer.alloc(0));
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.size, 0);
        r = await get(sb.id, '/root/empty');
        assert.equal(r.status, 200);
        assert.equal(r.buf.length, 0);
});

test('Range: first bytes, middle, suffix, open end, unsatisfiable', async () => {
        const data = Buffer.from('0123456789abcdefghij');
        await put(sb.id, '/root/range.txt', data);
        const cases = [['bytes=0-3', '0123', 'bytes 0-3/20'], ['bytes=5-9', '56789', 'bytes 5-9/20'],
                ['bytes=-4', 'ghij', 'bytes 16-19/20'], ['bytes=15-', 'fghij', 'bytes 15-19/20'],
                ['bytes=18-100', 'ij', 'bytes 18-19/20']];
        for (const [range, want, cr] of cases) {
                const r = await get(sb.id, '/root/range.txt', { range });
                assert.equal(r.status, 206, range);
                assert.equal(r.buf.toString(), want, range);
                assert.equal(r.headers['content-range'], cr, range);
        }
        const r = await get(sb.id, '/root/range.txt', { range: 'bytes=20-30' });
        assert.equal(r.status, 416, r.text);
        assert.equal(r.json.error.code, 'range_not_satisfiable');
        const all = await get(sb.id, '/root/range.txt', { range: 'bytes=0-1,4-5' });
        assert.equal(all.status, 200, 'several ranges: the whole file');
});

test('a 2 GiB sparse file streams out whole', async () => {
        await sh(sb.id, 'truncate -s 2G /root/sparse && printf Z | dd of=/root/sparse bs=1 seek=2147483647 conv=notrunc 2>/dev/null');
        const res = await fetch(fx.url + fileUrl(sb.id, '/root/sparse'), { headers: { authorization: `Bearer ${fx.key}` } });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('content-length'), String(2 ** 31));
        let n = 0;
        let last = 0;
        for await (const chunk of res.body) {
                n += chunk.length;
                last = chunk[chunk.length - 1];
        }
        assert.equal(n, 2 ** 31);
        assert.equal(last, 'Z'.charCodeAt(0));
        const tail = await get(sb.id, '/root/sparse', { range: 'bytes=-1' });
        assert.equal(tail.buf.toString(), 'Z');
        await sh(sb.id, 'rm /root/sparse');
});

test('PUT: parents, mode, owner is the sandbox root, a replaced file keeps its owner and mode', async () => {
        let r = await put(sb.id, '/root/a/b/c.txt', 'x');
        expectError({ ...r, headers: r.headers, json: r.json }, 404, 'file_not_found', '/root/a/b/c.txt');
        r = await put(sb.id, '/root/a/b/c.txt', 'hello', '?parents=true&mode=0600');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.mode, 0o600);
        assert.equal(await sh(sb.id, 'stat -c "%u:%g %a" /root/a /root/a/b /root/a/b/c.txt'), '0:0 755\n0:0 755\n0:0 600\n');
        await sh(sb.id, 'chown 1000:1000 /root/a/b/c.txt && chmod 640 /root/a/b/c.txt');
        r = await put(sb.id, '/root/a/b/c.txt', 'again');
        assert.equal(r.status, 200, r.text);
        assert.equal(await sh(sb.id, 'stat -c "%u:%g %a" /root/a/b/c.txt; cat /root/a/b/c.txt'), '1000:1000 640\nagain');
        r = await put(sb.id, '/root/a', 'x');
        assert.equal(r.status, 400);
        assert.equal(r.json.error.code, 'is_a_directory');
});

test('user: what a call creates belongs to that sandbox user', async () => {
        let r = await put(sb.id, '/tmp/u/owned.txt', 'x', '?parents=true&user=nobody');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.uid, 65534);
        assert.equal(await sh(sb.id, 'stat -c "%u %g" /tmp/u /tmp/u/owned.txt'), '65534 65534\n65534 65534\n');
        r = await put(sb.id, '/tmp/u/num.txt', 'x', '?user=1234');
        assert.equal(await sh(sb.id, 'stat -c "%u %g" /tmp/u/num.txt'), '1234 1234\n');
        r = await fsPost(sb.id, { op: 'mkdir', path: '/tmp/u/d', user: '4321' });
        assert.equal(r.json.uid, 4321, describe(r));
        r = await fx.api.request('POST', `/v1/sandboxes/${sb.id}/fs/batch`, { user: '777', operations: [{ path: '/tmp/u/b/f', content: 'b' }] });
        assert.equal(r.status, 200, describe(r));
        assert.equal(await sh(sb.id, 'stat -c "%u" /tmp/u/b /tmp/u/b/f'), '777\n777\n');
        r = await put(sb.id, '/tmp/u/x', 'x', '?user=no-such-user');
        assert.equal(r.status, 404, r.text);
        assert.equal(r.json.error.code, 'user_not_found');
        r = await fsPost(sb.id, { op: 'mkdir', path: '/tmp/u/e', user: 'no-such-user' });
        expectError(r, 404, 'user_not_found', 'no-such-user');
        r = await fsPost(sb.id, { op: 'mkdir', path: '/tmp/u/e', user: 70000 });
        expectError(r, 400, 'invalid_type', 'user');
        await sh(sb.id, 'rm -rf /tmp/u');
});

test('atomic replace: a reader in the sandbox never sees a mix', async () => {
        const A = Buffer.alloc(1 << 20, 'a');
        const B = Buffer.alloc(1 << 20, 'b');
        const ha = crypto.createHash('md5').update(A).digest('hex');
        const hb = crypto.createHash('md5').update(B).digest('hex');
        await put(sb.id, '/root/atom', A);
        const reader = fx.api.run(sb.id,
                `n=0; end=$(($(date +%s) + 4)); while [ $(date +%s) -lt $end ]; do s=$(md5sum < /root/atom | cut -c1-32); ` +
                `case $s in ${ha}|${hb}) n=$((n+1));; *) echo "MIX $s"; exit 1;; esac; done; echo ok $n`, { timeout: 30 });
        for (let i = 0; i < 40; i++) {
                const r = await put(sb.id, '/root/atom', i % 2 ? A : B);
                assert.equal(r.status, 200, r.text);
        }
        const res = await reader;
        assert.equal(res.exitCode, 0, fmt(res));
        assert.match(res.stdout, /^ok \d+/);
});

test('a cut upload leaves the old content and no temp file', async () => {
        await put(sb.id, '/root/keep.txt', 'old content');
        const u = new URL(fx.url);
        const head = `PUT ${fileUrl(sb.id, '/root/keep.txt')} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${fx.key}\r\nContent-Length: 10000000`;
        await new Promise((resolve) => {
                import('node:net').then(({ default: net }) => {
                        const s = net.connect({ host: u.hostname, port: Number(u.port) }, () => {
                                s.write(head + '\r\n\r\n');
                                s.write(Buffer.alloc(300000, 'n'), () => setTimeout(() => { s.resetAndDestroy(); resolve(); }, 200));
                        });
                        s.on('error', () => resolve());
                });
        });
        const r = await get(sb.id, '/root/keep.txt');
        assert.equal(r.buf.toString(), 'old content');
        const ls = await sh(sb.id, 'ls -A /root');
        assert.ok(!/sbx-tmp/.test(ls), ls);
});

test('a hard link is replaced, not written through', async () => {
        await sh(sb.id, 'echo one > /root/hl1 && ln /root/hl1 /root/hl2');
        await put(sb.id, '/root/hl2', 'two');
        assert.equal(await sh(sb.id, 'cat /root/hl1 /root/hl2'), 'one\ntwo');
});

test('fs: stat, exists, list, mkdir, move, copy, chmod, delete', async () => {
        let r = await fsPost(sb.id, { op: 'mkdir', path: '/root/t/x/y', parents: true, mode: '0750' });
        assert.equal(r.status, 200, describe(r));
        assert.equal(r.json.type, 'dir');
        assert.equal(r.json.mode, 0o750);
        r = await fsPost(sb.id, { op: 'mkdir', path: '/root/t/x/y' });
        expectError(r, 409, 'already_exists', '/root/t/x/y');
        r = await fsPost(sb.id, { op: 'mkdir', path: '/root/t/x/y', parents: true });
        assert.equal(r.status, 200, 'mkdir -p of an existing dir is fine');
        await put(sb.id, '/root/t/f1', 'one');
        await sh(sb.id, 'ln -s f1 /root/t/link');

        r = await fsGet(sb.id, { op: 'stat', path: '/root/t/link' });
        assert.equal(r.json.type, 'symlink');
        assert.equal(r.json.symlinkTarget, 'f1');
        r = await fsGet(sb.id, { op: 'exists', path: '/root/t/f1' });
        assert.deepEqual(r.json, { exists: true, type: 'file' });
        r = await fsGet(sb.id, { op: 'exists', path: '/root/t/nope' });
        assert.deepEqual(r.json, { exists: false });
        r = await fsGet(sb.id, { op: 'list', path: '/root/t' });
        assert.deepEqual(r.json.entries.map((e) => `${e.name}:${e.type}`), ['f1:file', 'link:symlink', 'x:dir']);
        assert.equal(r.json.nextCursor, null);
        r = await fsGet(sb.id, { op: 'list', path: '/root/t', recursive: 'true' });
        assert.deepEqual(r.json.entries.map((e) => e.path), ['/root/t/f1', '/root/t/link', '/root/t/x', '/root/t/x/y']);
        r = await fsGet(sb.id, { op: 'list', path: '/root/t', depth: '1' });
        assert.deepEqual(r.json.entries.map((e) => e.path), ['/root/t/f1', '/root/t/link', '/root/t/x']);
        await sh(sb.id, 'mkdir /root/t/x/y/z');
        r = await fsGet(sb.id, { op: 'list', path: '/root/t', depth: '2' });
        assert.deepEqual(r.json.entries.map((e) => e.path), ['/root/t/f1', '/root/t/link', '/root/t/x', '/root/t/x/y']);
        await sh(sb.id, 'rmdir /root/t/x/y/z');

        r = await fsPost(sb.id, { op: 'copy', from: '/root/t', to: '/root/t2' });
        assert.equal(r.status, 200, describe(r));
        assert.equal(await sh(sb.id, 'cat /root/t2/f1; echo; readlink /root/t2/link; stat -c %u /root/t2/x/y'), 'one\nf1\n0\n');
        r = await fsPost(sb.id, { op: 'move', from: '/root/t2/f1', to: '/root/t/f1' });
        expectError(r, 409, 'already_exists');
        r = await fsPost(sb.id, { op: 'move', from: '/root/t2/f1', to: '/root/t/f1', overwrite: true });
        assert.equal(r.status, 200, describe(r));
        r = await fsPost(sb.id, { op: 'chmod', path: '/root/t/f1', mode: 0o604 });
        assert.equal(r.json.mode, 0o604);
        r = await fsPost(sb.id, { op: 'delete', path: '/root/t' });
        expectError(r, 409, 'directory_not_empty');
        r = await fsPost(sb.id, { op: 'delete', path: '/root/t', recursive: true });
        assert.equal(r.status, 204, describe(r));
        r = await fsPost(sb.id, { op: 'delete', path: '/root/t' });
        expectError(r, 404, 'file_not_found', '/root/t');
        r = await fsPost(sb.id, { op: 'delete', path: '/root/t2', recursive: true });
        assert.equal(r.status, 204);
});

test('a 100,000-entry directory lists in pages', async () => {
        await sh(sb.id, 'mkdir /root/many && cd /root/many && seq -w 1 100000 | xargs touch');
        const names = [];
        let cursor = null;
        const t0 = performance.now();
        let pages = 0;
        do {
                const q = { op: 'list', path: '/root/many', limit: '10000' };
                if (cursor) q.cursor = cursor;
                const r = await fsGet(sb.id, q);
                assert.equal(r.status, 200, describe(r));
                for (const e of r.json.entries) names.push(e.name);
                cursor = r.json.nextCursor;
                pages++;
        } while (cursor);
        const ms = performance.now() - t0;
        assert.equal(names.length, 100000);
        assert.equal(new Set(names).size, 100000, 'no entry twice');
        assert.deepEqual(names.slice(0, 2), ['000001', '000002']);
        assert.equal(names.at(-1), '100000');
        assert.equal(pages, 10);
        console.log(`listing 100,000 entries in 10 pages: ${ms.toFixed(0)} ms`);
        await fsPost(sb.id, { op: 'delete', path: '/root/many', recursive: true });
});

test('search and replace: UTF-8 and binary files', async () => {
        await put(sb.id, '/root/s/a.txt', 'héllo wörld\nsecond line wörld\n', '?parents=true');
        await put(sb.id, '/root/s/b.py', 'x = "wörld"\n');
        await put(sb.id, '/root/s/bin', Buffer.concat([Buffer.from([0, 0xff, 0xfe]), Buffer.from('wörld'), Buffer.from([0, 1, 10])]));
        let r = await fsPost(sb.id, { path: '/root/s', pattern: 'wörld' }, '/search');
        assert.equal(r.status, 200, describe(r));
        const m = r.json.matches;
        const a = m.filter((x) => x.file === '/root/s/a.txt');
        assert.deepEqual(a.map((x) => [x.line, x.column]), [[1, 7], [2, 13]]);
        assert.equal(a[0].content, 'héllo wörld');
        const bin = m.find((x) => x.file === '/root/s/bin');
        assert.ok(bin && bin.contentBase64, fmt(m));
        r = await fsPost(sb.id, { path: '/root/s', pattern: 'w.rld', regex: true, glob: '*.py' }, '/search');
        assert.deepEqual(r.json.matches.map((x) => x.file), ['/root/s/b.py']);
        r = await fsPost(sb.id, { path: '/root/s', pattern: '(', regex: true }, '/search');
        expectError(r, 400, 'invalid_value', 'pattern');

        r = await fsPost(sb.id, { files: ['/root/s/a.txt', '/root/s/bin', '/root/s/missing'], pattern: 'wörld', replacement: 'monde' }, '/replace');
        assert.equal(r.status, 200, describe(r));
        assert.equal(r.json.results[0].replacements, 2);
        assert.equal(r.json.results[1].replacements, 1);
        assert.equal(r.json.results[2].error.code, 'file_not_found');
        assert.equal((await get(sb.id, '/root/s/a.txt')).buf.toString(), 'héllo monde\nsecond line monde\n');
        const b = (await get(sb.id, '/root/s/bin')).buf;
        assert.ok(b.equals(Buffer.concat([Buffer.from([0, 0xff, 0xfe]), Buffer.from('monde'), Buffer.from([0, 1, 10])])));
        r = await fsPost(sb.id, { files: ['/root/s/b.py'], pattern: 'x = "(.*)"', replacement: 'y = \'\\1\'', regex: true }, '/replace');
        assert.equal(r.json.results[0].replacements, 1, describe(r));
        assert.equal((await get(sb.id, '/root/s/b.py')).buf.toString(), "y = 'wörld'\n");
});

test('batch: last operation per path wins, path order, per-path errors', async () => {
        const ops = [
                { path: '/root/batch/b.txt', op: 'write', content: 'first' },
                { path: '/root/batch/a.txt', op: 'write', contentBase64: Buffer.from([0, 1, 2]).toString('base64') },
                { path: '/root/batch/b.txt', op: 'write', content: 'second' },
                { path: '/root/batch/gone.txt', op: 'delete' },
                { path: '/root/batch/c.txt', op: 'write', content: 'c', mode: '0700' },
        ];
        const r = await fx.api.request('POST', `/v1/sandboxes/${sb.id}/fs/batch`, ops);
        assert.equal(r.status, 200, describe(r));
        assert.deepEqual(r.json.results.map((x) => [x.path, x.op, x.ok]), [
                ['/root/batch/a.txt', 'write', true], ['/root/batch/b.txt', 'write', true],
                ['/root/batch/c.txt', 'write', true], ['/root/batch/gone.txt', 'delete', false]]);
        assert.equal(r.json.results[3].error.code, 'file_not_found');
        assert.equal((await get(sb.id, '/root/batch/b.txt')).buf.toString(), 'second');
        assert.ok((await get(sb.id, '/root/batch/a.txt')).buf.equals(Buffer.from([0, 1, 2])));
        assert.equal(await sh(sb.id, 'stat -c %a /root/batch/c.txt'), '700\n');
        const bad = await fx.api.request('POST', `/v1/sandboxes/${sb.id}/fs/batch`, [{ path: '/x', op: 'write' }]);
        expectError(bad, 400, 'missing_field', 'operations[0]');
});

test('archives: a tar.gz in, a directory out', async () => {
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-arch-'));
        try {
                fs.mkdirSync(path.join(tmp, 'src/sub'), { recursive: true });
                fs.writeFileSync(path.join(tmp, 'src/a.txt'), 'alpha');
                fs.writeFileSync(path.join(tmp, 'src/sub/b.bin'), crypto.randomBytes(100000));
                fs.chmodSync(path.join(tmp, 'src/a.txt'), 0o751);
                fs.symlinkSync('a.txt', path.join(tmp, 'src/ln'));
                execFileSync('tar', ['-czf', path.join(tmp, 'in.tgz'), '-C', path.join(tmp, 'src'), '.']);
                let r = await raw('PUT', `/v1/sandboxes/${sb.id}/archive?path=/root/unpacked`, fs.readFileSync(path.join(tmp, 'in.tgz')));
                assert.equal(r.status, 200, r.text);
                assert.equal(r.json.files, 2);
                assert.equal(await sh(sb.id, 'cat /root/unpacked/a.txt; stat -c "%a %u" /root/unpacked/a.txt; readlink /root/unpacked/ln'), 'alpha751 0\na.txt\n');
                r = await raw('GET', `/v1/sandboxes/${sb.id}/archive?path=/root/unpacked`);
                assert.equal(r.status, 200);
                assert.equal(r.headers['content-type'], 'application/gzip');
                fs.writeFileSync(path.join(tmp, 'out.tgz'), r.buf);
                fs.mkdirSync(path.join(tmp, 'out'));
                execFileSync('tar', ['-xzf', path.join(tmp, 'out.tgz'), '-C', path.join(tmp, 'out')]);
                assert.equal(fs.readFileSync(path.join(tmp, 'out/a.txt'), 'utf8'), 'alpha');
                assert.ok(fs.readFileSync(path.join(tmp, 'out/sub/b.bin')).equals(fs.readFileSync(path.join(tmp, 'src/sub/b.bin'))));
                assert.equal(fs.readlinkSync(path.join(tmp, 'out/ln')), 'a.txt');
                r = await raw('GET', `/v1/sandboxes/${sb.id}/archive?path=/root/nope`);
                assert.equal(r.status, 404);
        } finally {
                fs.rmSync(tmp, { recursive: true, force: true });
        }
});

test('a stopped sandbox: files can be read and written, and are there on start', async () => {
        const s = await fx.api.createOk({});
        await put(s.id, '/root/before.txt', 'before');
        let r = await fx.api.stop(s.id);
        assert.equal(r.status, 200, describe(r));
        r = await get(s.id, '/root/before.txt');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.buf.toString(), 'before');
        r = await put(s.id, '/root/while-stopped.txt', 'written while stopped', '?mode=0640');
        assert.equal(r.status, 200, r.text);
        r = await fsGet(s.id, { op: 'list', path: '/root' });
        assert.ok(r.json.entries.some((e) => e.name === 'while-stopped.txt'), fmt(r.json));
        r = await fsPost(s.id, { op: 'delete', path: '/root/before.txt' });
        assert.equal(r.status, 204);
        r = await fx.api.start(s.id);
        assert.equal(r.status, 200, describe(r));
        assert.equal(await sh(s.id, 'cat /root/while-stopped.txt; stat -c "%u %a" /root/while-stopped.txt; ls /root/before.txt 2>&1 || true'),
                'written while stopped0 640\nls: cannot access \'/root/before.txt\': No such file or directory\n');
        await fx.api.del(s.id);
});

test('escapes: symlinks, "..", magic links, pseudo filesystems, FIFOs and devices stay refused', async () => {
        const marker = `sbx-escape-${crypto.randomBytes(4).toString('hex')}`;
        await sh(sb.id, `mkdir -p /root/esc && ln -sfn /../../../../.. /root/esc/up && ln -sfn /proc/1/root /root/esc/magic && ` +
                `ln -sfn /proc/self/root/tmp /root/esc/selfroot && mkfifo /root/esc/fifo`);
        // an absolute symlink resolves inside the sandbox: writing through it lands in the sandbox's /tmp
        let r = await put(sb.id, `/root/esc/up/tmp/${marker}`, 'inside');
        assert.equal(r.status, 200, r.text);
        assert.equal(await sh(sb.id, `cat /tmp/${marker}`), 'inside');
        assert.ok(!fs.existsSync(`/tmp/${marker}`), 'the host /tmp must be untouched');
        // "..": resolved inside the root
        r = await fsPost(sb.id, { op: 'mkdir', path: `/../../../../tmp/${marker}-dir` });
        assert.equal(r.status, 200, describe(r));
        assert.equal(r.json.path, `/tmp/${marker}-dir`);
        assert.ok(!fs.existsSync(`/tmp/${marker}-dir`));
        // the host template's /etc is the host's, read-only: no write reaches it
        r = await put(sb.id, `/root/esc/up/etc/${marker}`, 'x');
        assert.ok([403, 409].includes(r.status), r.text);
        assert.ok(!fs.existsSync(`/etc/${marker}`));
        // magic links (/proc/PID/root) are refused
        for (const p of ['/root/esc/magic/etc/hostname', '/root/esc/selfroot/x', '/proc/self/root/etc/hostname', '/proc/1/root/etc/passwd']) {
                r = await get(sb.id, p);
                assert.ok([400, 403, 404].includes(r.status), `${p}: ${r.status} ${r.text}`);
                assert.ok(!r.buf.includes('root:x:0:0'), `${p} must not reach a root filesystem's files`);
        }
        // pseudo filesystems: /proc, /sys
        for (const p of ['/proc/1/environ', '/proc/1/status', '/sys/kernel/uevent_seqnum']) {
                r = await get(sb.id, p);
                assert.equal(r.status, 403, `${p}: ${r.text}`);
                assert.equal(r.json.error.code, 'path_forbidden');
        }
        r = await put(sb.id, '/proc/sys/kernel/hostname', 'pwned');
        assert.equal(r.status, 403, r.text);
        // FIFOs and devices: refused at once, never opened
        const t0 = performance.now();
        r = await get(sb.id, '/root/esc/fifo');
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json.error.code, 'not_a_regular_file');
        assert.ok(performance.now() - t0 < 2000, 'no hang on a FIFO');
        r = await get(sb.id, '/dev/null');
        assert.equal(r.json.error.code, 'not_a_regular_file');
        r = await put(sb.id, '/root/esc/fifo', 'x');
        assert.equal(r.status, 400, r.text);
        // listing through a symlinked directory stays inside
        r = await fsGet(sb.id, { op: 'list', path: '/root/esc/up/root/esc' });
        assert.ok(r.json.entries.some((e) => e.name === 'fifo'), fmt(r.json));
});

test('bad input: missing path, NUL, too long, non-UTF-8, wrong types, unknown op', async () => {
        let r = await fsGet(sb.id, { op: 'stat' });
        expectError(r, 400, 'missing_field', 'path');
        r = await fx.api.request('GET', `/v1/sandboxes/${sb.id}/fs?op=stat&path=/root/a%00b`);
        expectError(r, 400, 'invalid_path', 'NUL');
        r = await fx.api.request('GET', `/v1/sandboxes/${sb.id}/fs?op=stat&path=/root/%FF`);
        expectError(r, 400, 'invalid_path', 'UTF-8');
        r = await fsGet(sb.id, { op: 'stat', path: '/' + 'a'.repeat(4200) });
        expectError(r, 400, 'name_too_long');
        r = await fsGet(sb.id, { op: 'stat', path: '/' + 'a'.repeat(300) });
        expectError(r, 400, 'name_too_long');
        r = await fsGet(sb.id, { op: 'frobnicate', path: '/' });
        expectError(r, 400, 'invalid_value', 'op');
        r = await fsPost(sb.id, { op: 'mkdir', path: 5 });
        expectError(r, 400, 'invalid_type', 'path');
        r = await fsPost(sb.id, { op: 'mkdir', path: '/x', bogus: 1 });
        expectError(r, 400, 'unknown_field', 'bogus');
        r = await fsPost(sb.id, { op: 'chmod', path: '/root', mode: '999' });
        expectError(r, 400, 'invalid_value', 'mode');
        r = await fsPost(sb.id, { op: 'nope' });
        expectError(r, 400, 'invalid_value', 'op');
        r = await fsPost(sb.id, { op: 'delete', path: '/' });
        expectError(r, 400, 'invalid_path');
        r = await fx.api.request('GET', `/v1/sandboxes/${sb.id}/files/root/%FF`);
        expectError(r, 400, 'invalid_path');
        r = await fx.api.request('GET', `/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa/files/etc/hostname`);
        expectError(r, 404, 'sandbox_not_found');
        r = await fx.api.request('GET', `/v1/sandboxes/${sb.id}/files/root/missing`);
        expectError(r, 404, 'file_not_found', '/root/missing');
        r = await fx.api.request('GET', `/v1/sandboxes/${sb.id}/files/root`);
        expectError(r, 400, 'is_a_directory');
        r = await rawHttp(fx.url, `PUT ${fileUrl(sb.id, '/root/q')}?mode=abc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${fx.key}\r\nContent-Length: 1`, 'x');
        expectError(r, 400, 'invalid_value', 'mode');
});
