// SPDX-License-Identifier: Apache-2.0
//
// Tests of the code-run drivers (src/core/code-drivers/driver.{py,js}; protocol in
// docs/internals/code.md), run directly with the host's python3 and node the way sbxd starts them
// (`python3 -u -c <driver>`, `node -e <driver>`, SBX_CODE_TOKEN in the environment, pipes on
// 0/1/2), no sbxd involved. The markers are split out here by a small reader of its own, so the
// drivers are checked independently of src/core/code-demux.c. Run: node --test tests/drivers/.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const driverDir = join(here, '..', '..', 'src', 'core', 'code-drivers');
const PYTHON = process.env.PYTHON3 || 'python3';
const NODE = process.env.NODE || process.execPath;

// A driver process and its output split into runs. sbx-init gives a process pipes (node's spawn
// would give socketpairs), so the driver's 0/1/2 are FIFOs here, opened by the shell that execs it.
class Driver {
        constructor(language) {
                this.token = randomBytes(16).toString('hex');
                const src = readFileSync(join(driverDir, language === 'python' ? 'driver.py' : 'driver.js'), 'utf8');
                const argv = language === 'python' ? [PYTHON, '-u', '-c', src] : [NODE, '-e', src];
                this.dir = mkdtempSync(join(tmpdir(), 'sbx-drivers-'));
                for (const n of ['in', 'out', 'err'])
                        execFileSync('mkfifo', [join(this.dir, n)]);
                // O_RDWR: the shell's open of "in" for reading does not wait for a writer
                this.inFd = openSync(join(this.dir, 'in'), constants.O_RDWR);
                const outFd = openSync(join(this.dir, 'out'), constants.O_RDONLY | constants.O_NONBLOCK);
                const errFd = openSync(join(this.dir, 'err'), constants.O_RDONLY | constants.O_NONBLOCK);
                this.proc = spawn('sh', ['-c', 'd=$1; shift; exec "$@" <"$d/in" >"$d/out" 2>"$d/err"', 'sh', this.dir, ...argv], {
                        env: { ...process.env, SBX_CODE_TOKEN: this.token },
                        stdio: 'ignore',
                });
                this.nextId = 1;
                this.waiting = new Map(); // id -> { resolve, parts }
                this.streams = {};
                const closed = [];
                for (const [name, fd] of [['stdout', outFd], ['stderr', errFd]]) {
                        this.streams[name] = { buf: Buffer.alloc(0), chunks: [] };
                        const sock = new net.Socket({ fd, readable: true, writable: false });
                        sock.on('data', (chunk) => this.feed(name, chunk));
                        closed.push(new Promise((resolve) => sock.on('close', resolve)));
                }
                const exit = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
                this.exited = Promise.all([exit, ...closed]).then(([status]) => {
                        if (this.inFd >= 0)
                                closeSync(this.inFd);
                        this.inFd = -1;
                        rmSync(this.dir, { recursive: true, force: true });
                        return status;
                });
        }

        // Everything before the marker (the marker may follow output on the same line) belongs to
        // the run the marker names; bytes arriving are timestamped for the streaming test.
        feed(name, chunk) {
                const s = this.streams[name];
                s.chunks.push({ at: Date.now(), text: chunk.toString() });
                s.buf = Buffer.concat([s.buf, chunk]);
                const prefix = Buffer.from(`\x1eSBX${this.token} `);
                for (;;) {
                        const at = s.buf.indexOf(prefix);
                        if (at < 0)
                                return;
                        const nl = s.buf.indexOf(10, at);
                        if (nl < 0)
                                return;
                        const text = s.buf.subarray(0, at).toString();
                        const json = JSON.parse(s.buf.subarray(at + prefix.length, nl).toString());
                        s.buf = s.buf.subarray(nl + 1);
                        const w = this.waiting.get(json.id);
                        assert.ok(w, `marker for unknown run ${json.id}`);
                        w.parts[name] = { text, json, at: Date.now() };
                        if (w.parts.stdout && w.parts.stderr) {
                                this.waiting.delete(json.id);
                                w.resolve({
                                        stdout: w.parts.stdout.text,
                                        stderr: w.parts.stderr.text,
                                        result: w.parts.stdout.json,
                                        end: w.parts.stderr.json,
                                        at: w.parts.stdout.at,
                                });
                        }
                }
        }

        send(code) {
                const id = this.nextId++;
                const p = new Promise((resolve) => this.waiting.set(id, { resolve, parts: {} }));
                writeSync(this.inFd, `${JSON.stringify({ id, code })}\n`);
                p.id = id;
                return p;
        }

        async run(code) {
                const r = await this.send(code);
                assert.equal(r.result.id, r.end.id);
                return r;
        }

        async ok(code) {
                const r = await this.run(code);
                assert.equal(r.result.ok, true, `run failed: ${JSON.stringify(r.result.error)}`);
                return r;
        }

        close() {
                closeSync(this.inFd); // EOF on the driver's requests
                this.inFd = -1;
                return this.exited;
        }
}

const both = ['python', 'node'];

for (const lang of both) {
        test(`${lang}: variables persist between runs`, async () => {
                const d = new Driver(lang);
                const first = await d.ok(lang === 'python' ? 'x = 1' : 'var x = 1');
                assert.equal(first.result.output, null);
                assert.equal((await d.ok('x + 1')).result.output, '2');
                if (lang === 'node') {
                        await d.ok('let y = 20\nconst z = 1');
                        assert.equal((await d.ok('y + z')).result.output, '21');
                        assert.equal((await d.ok('function f(a) { return a * 2 }')).result.output, null);
                        assert.equal((await d.ok('f(x)')).result.output, '2');
                } else {
                        await d.ok('def f(a):\n    return a * 2\n');
                        assert.equal((await d.ok('f(x)')).result.output, '2');
                        assert.equal((await d.ok('__name__')).result.output, "'__main__'");
                }
                assert.deepEqual(await d.close(), { code: 0, signal: null });
        });

        test(`${lang}: output is the repr of the last expression`, async () => {
                const d = new Driver(lang);
                assert.equal((await d.ok("'hi'")).result.output, "'hi'");
                if (lang === 'python') {
                        assert.equal((await d.ok('None')).result.output, null);
                        assert.equal((await d.ok('print(1)')).result.output, null);
                        assert.equal((await d.ok('[1, 2] + [3]')).result.output, '[1, 2, 3]');
                        assert.equal((await d.ok('s = "\\ud800"\ns')).result.output, "'\\ud800'");
                } else {
                        assert.equal((await d.ok('undefined')).result.output, null);
                        assert.equal((await d.ok('null')).result.output, 'null');
                        assert.equal((await d.ok('[1, 2, 3].map((v) => v * 2)')).result.output, '[ 2, 4, 6 ]');
                        // main context: no realm mismatch between user code and built-in modules
                        assert.equal((await d.ok("require('fs').readdirSync('/') instanceof Array")).result.output, 'true');
                }
                await d.close();
        });

        test(`${lang}: exceptions give ok:false with name, value and a traceback without driver frames`, async () => {
                const d = new Driver(lang);
                const code = lang === 'python'
                        ? 'def g():\n    raise ValueError("bad")\ng()'
                        : 'function g() { throw new RangeError("bad") }\ng()';
                const r = await d.run(code);
                assert.equal(r.result.ok, false);
                assert.equal(r.result.output, null);
                assert.equal(r.result.error.name, lang === 'python' ? 'ValueError' : 'RangeError');
                assert.equal(r.result.error.value, 'bad');
                assert.match(r.result.error.traceback, new RegExp(`<code-${r.result.id}>`));
                assert.doesNotMatch(r.result.error.traceback, /<string>|\[eval\]|node:vm|_sbx|driver/);
                const syn = await d.run(lang === 'python' ? 'def f(:\n  pass' : 'function f( {');
                assert.equal(syn.result.ok, false);
                assert.equal(syn.result.error.name, 'SyntaxError');
                assert.doesNotMatch(syn.result.error.traceback, /<string>|\[eval\]|node:vm|\n\s+at /);
                // a NUL and a lone surrogate in the message still make valid JSON for jansson
                const odd = await d.run(lang === 'python' ? 'raise ValueError("a\\0b\\ud800")' : 'throw new Error("a\\0b\\ud800")');
                assert.equal(odd.result.error.value, lang === 'python' ? 'a\0b\\ud800' : 'a\0b\ufffd');
                // the context survives
                assert.equal((await d.ok('1 + 1')).result.output, '2');
                await d.close();
        });

        test(`${lang}: output streams live and precedes the marker, also without a newline`, async () => {
                const d = new Driver(lang);
                const code = lang === 'python'
                        ? 'import sys, time\nprint("early", flush=True)\ntime.sleep(1)\nsys.stderr.write("e")\nprint("tail", end="")'
                        : 'console.log("early"); const t = Date.now(); while (Date.now() - t < 1000); process.stderr.write("e"); process.stdout.write("tail")';
                const started = Date.now();
                const r = await d.ok(code);
                assert.equal(r.stdout, 'early\ntail');
                assert.equal(r.stderr, 'e');
                const early = d.streams.stdout.chunks.find((c) => c.text.includes('early'));
                assert.ok(early.at - started < 700, `first output after ${early.at - started} ms`);
                assert.ok(r.at - early.at >= 500);
                await d.close();
        });

        test(`${lang}: output of child processes lands on fd 1 before the marker`, async () => {
                const d = new Driver(lang);
                const code = lang === 'python'
                        ? 'import os, subprocess\nos.system("echo child1")\nsubprocess.run(["sh", "-c", "echo child2; echo err2 >&2"])\nNone'
                        : 'const cp = require("child_process")\ncp.execSync("echo child1", { stdio: "inherit" })\ncp.spawnSync("sh", ["-c", "echo child2; echo err2 >&2"], { stdio: "inherit" }); undefined';
                const r = await d.ok(code);
                assert.equal(r.stdout, 'child1\nchild2\n');
                assert.equal(r.stderr, 'err2\n');
                await d.close();
        });

        test(`${lang}: exit ends the driver`, async () => {
                const d = new Driver(lang);
                await d.ok('1');
                d.send(lang === 'python' ? 'import sys\nsys.exit(3)' : 'process.exit(3)');
                assert.deepEqual(await d.exited, { code: 3, signal: null });
                assert.equal(d.waiting.size, 1);
        });

        test(`${lang}: the token is not visible to user code or its children`, async () => {
                const d = new Driver(lang);
                const code = lang === 'python'
                        ? 'import os\n[("SBX_CODE_TOKEN" in os.environ), os.popen("env").read(), open("/proc/self/environ", "rb").read().decode("latin1")]'
                        : 'JSON.stringify(["SBX_CODE_TOKEN" in process.env, require("child_process").execSync("env").toString(), require("fs").readFileSync("/proc/self/environ", "latin1")])';
                const r = await d.ok(code);
                assert.match(r.result.output, lang === 'python' ? /^\[False, / : /^'\[false,/);
                assert.ok(!r.result.output.includes(d.token), 'token visible');
                assert.ok(!r.result.output.includes('SBX_CODE_TOKEN='), 'variable visible');
                await d.close();
        });

        test(`${lang}: user code reads an empty stdin, never the requests`, async () => {
                const d = new Driver(lang);
                // the second request is already in the pipe while the first reads its stdin
                const code = lang === 'python'
                        ? 'import os, sys\n[sys.stdin.read(), os.read(0, 100), os.popen("cat").read()]'
                        : 'const fs = require("fs"); [fs.readFileSync(0, "utf8"), require("child_process").execSync("cat", { stdio: ["inherit", "pipe", "pipe"] }).toString()]';
                const a = d.send(code);
                const b = d.send('40 + 2');
                const [ra, rb] = await Promise.all([a, b]);
                assert.equal(ra.result.ok, true, JSON.stringify(ra.result.error));
                assert.equal(ra.result.output, lang === 'python' ? "['', b'', '']" : "[ '', '' ]");
                assert.equal(rb.result.output, '42');
                if (lang === 'python') {
                        const r = await d.run('input()');
                        assert.equal(r.result.error.name, 'EOFError');
                }
                await d.close();
        });

        test(`${lang}: await at the top level`, async () => {
                const d = new Driver(lang);
                if (lang === 'python') {
                        const r = await d.ok('import asyncio\nawait asyncio.sleep(0.01)\nv = 7\nv * 6');
                        assert.equal(r.result.output, '42');
                        assert.equal((await d.ok('v')).result.output, '7');
                } else {
                        const r = await d.ok('const v = await new Promise((r) => setTimeout(() => r(7), 10))\nv * 6');
                        assert.equal(r.result.output, '42');
                        // declarations at column 0 become globals, so they outlive the run
                        assert.equal((await d.ok('v')).result.output, '7');
                        assert.equal((await d.ok('await Promise.resolve("x")')).result.output, "'x'");
                        await d.ok('function later() { return 5 }\nawait null');
                        assert.equal((await d.ok('later()')).result.output, '5');
                        const e = await d.run('await Promise.reject(new TypeError("no"))');
                        assert.equal(e.result.ok, false);
                        assert.equal(e.result.error.name, 'TypeError');
                        assert.doesNotMatch(e.result.error.traceback, /\[eval\]|node:vm/);
                        // import() goes through the main context's loader where Node has one (20.x)
                        const im = await d.run('const os = await import("node:os")\ntypeof os.cpus');
                        if (im.result.ok)
                                assert.equal(im.result.output, "'function'");
                        else
                                assert.match(im.result.error.traceback, /ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING/);
                        assert.equal(im.stderr, '');
                        // "await" in a string is not top-level await
                        assert.equal((await d.ok('"await"')).result.output, "'await'");
                }
                await d.close();
        });

        test(`${lang}: SIGINT interrupts a run and the context goes on`, async () => {
                const d = new Driver(lang);
                await d.ok(lang === 'python' ? 'n = 5' : 'var n = 5');
                const code = lang === 'python' ? 'import time\ntime.sleep(30)' : 'while (true) {}';
                const p = d.send(code);
                await new Promise((r) => setTimeout(r, 500));
                d.proc.kill('SIGINT');
                const r = await p;
                assert.equal(r.result.ok, false);
                if (lang === 'python')
                        assert.equal(r.result.error.name, 'KeyboardInterrupt');
                else
                        assert.match(r.result.error.value, /interrupted/);
                if (lang === 'node') {
                        const q = d.send('await new Promise(() => {})');
                        await new Promise((res) => setTimeout(res, 300));
                        d.proc.kill('SIGINT');
                        assert.match((await q).result.error.value, /interrupted/);
                }
                // SIGINT while idle is ignored
                d.proc.kill('SIGINT');
                await new Promise((res) => setTimeout(res, 200));
                assert.equal((await d.ok('n')).result.output, '5');
                assert.deepEqual(await d.close(), { code: 0, signal: null });
        });

        test(`${lang}: a huge result is cut to fit the marker limit`, async () => {
                const d = new Driver(lang);
                // node's inspect() cuts long strings itself; a custom inspect does not
                const r = await d.ok(lang === 'python'
                        ? '"x" * (20 << 20)'
                        : '({ [Symbol.for("nodejs.util.inspect.custom")]() { return "x".repeat(20 << 20) } })');
                assert.ok(r.result.output.length < 16 << 20);
                assert.ok(r.result.output.length > 8 << 20);
                assert.match(r.result.output, /^'?xxx.*\n\[truncated by sbx\]$/s);
                await d.close();
        });

        test(`${lang}: a marker with a wrong token is plain output`, async () => {
                const d = new Driver(lang);
                const fake = '\\x1eSBX' + '0'.repeat(32) + ' {\\"id\\":1}';
                const r = await d.ok(lang === 'python' ? `print("${fake}")` : `console.log("${fake}")`);
                assert.equal(r.stdout, `\x1eSBX${'0'.repeat(32)} {"id":1}\n`);
                await d.close();
        });
}

test('python: a missing token stops the driver with status 2', async () => {
        const src = readFileSync(join(driverDir, 'driver.py'), 'utf8');
        const env = { ...process.env };
        delete env.SBX_CODE_TOKEN;
        const p = spawn(PYTHON, ['-u', '-c', src], { env, stdio: ['pipe', 'pipe', 'pipe'] });
        const code = await new Promise((r) => p.on('exit', r));
        assert.equal(code, 2);
});

test('node: a missing token stops the driver with status 2', async () => {
        const src = readFileSync(join(driverDir, 'driver.js'), 'utf8');
        const env = { ...process.env, SBX_CODE_TOKEN: 'short' };
        const p = spawn(NODE, ['-e', src], { env, stdio: ['pipe', 'pipe', 'pipe'] });
        const code = await new Promise((r) => p.on('exit', r));
        assert.equal(code, 2);
});

test('node: uncaught errors of earlier runs do not end the context', async () => {
        const d = new Driver('node');
        await d.ok('setTimeout(() => { throw new Error("later") }, 1); Promise.reject(new Error("rej")); 1');
        await new Promise((r) => setTimeout(r, 100));
        const r = await d.ok('2');
        assert.match(r.stderr, /Uncaught Error: later/);
        assert.match(r.stderr, /Uncaught Error: rej/);
        assert.deepEqual(await d.close(), { code: 0, signal: null });
});

test('node: output queued behind a full pipe still comes before the marker', async () => {
        const d = new Driver('node');
        // 4 MiB through console.log: more than a pipe holds, so node queues some of it
        const r = await d.ok('for (let i = 0; i < 4096; i++) console.log("y".repeat(1023)); "end"');
        assert.equal(r.stdout.length, 4096 * 1024);
        assert.equal(r.result.output, "'end'");
        await d.close();
});

for (const lang of both) {
        test(`${lang}: markers still reach sbxd after user code closes or redirects fd 1`, async () => {
                const d = new Driver(lang);
                const code = lang === 'python'
                        ? 'import os\nos.dup2(os.open("/dev/null", os.O_WRONLY), 1)\nprint("lost")\n3'
                        : 'require("fs").closeSync(1)\n3';
                const r = await d.run(code);
                assert.equal(r.result.output, '3');
                assert.equal(r.stdout, '');
                assert.equal((await d.run('4')).result.output, '4');
                await d.close();
        });
}
