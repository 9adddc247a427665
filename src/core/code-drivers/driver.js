// SPDX-License-Identifier: Apache-2.0
//
// sbx code driver for Node.js 18+ (built-in modules only; protocol in docs/internals/code.md).
// sbxd runs it inside a sandbox as `node -e <this file>` with SBX_CODE_TOKEN set and talks to it
// over stdin/stdout/stderr only: one JSON request per line on stdin, the user's output on the
// real fds 1 and 2, and after each run an end marker on stderr then a result marker on stdout.
// User code runs in Node's main context (vm.runInThisContext), so globals and top-level
// let/const/class persist across runs. Everything of the driver's own lives inside the function
// below: it must not leave names in the global scope, let user code read the requests (user
// stdin is /dev/null), leak the token to user code or its children, or show its own frames in
// stack traces.
(() => {
        'use strict';
        const fs = require('fs');
        const net = require('net');
        const util = require('util');
        const vm = require('vm');

        const NAME = 'SBX_CODE_TOKEN';
        const LIMIT = 15 << 20; // bytes of a marker's JSON we stay under (sbxd refuses > 16 MiB)
        const INTERRUPTED = 'Script execution was interrupted by `SIGINT`';
        const stringify = JSON.stringify;
        const parse = JSON.parse;
        const inspect = util.inspect;
        const isNativeError = util.types.isNativeError;
        const sleeper = new Int32Array(new SharedArrayBuffer(4));
        // import() in user code: Node >= 20.? has the main context's loader for vm scripts (and
        // warns that it is experimental: the warning is not the user's, so it is dropped). On
        // Node 18, import() in user code fails with ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING.
        const importModuleDynamically = vm.constants ? vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER : undefined;
        const emitWarning = process.emitWarning;
        process.emitWarning = function (warning, ...rest) {
                if (String(warning && warning.message !== undefined ? warning.message : warning)
                            .includes('USE_MAIN_CONTEXT_DEFAULT_LOADER'))
                        return;
                return emitWarning.call(this, warning, ...rest);
        };

        const token = process.env[NAME] || '';
        delete process.env[NAME]; // unsetenv(): children do not inherit it

        const writeAll = (fd, buf) => {
                for (let off = 0; off < buf.length;) {
                        try {
                                off += fs.writeSync(fd, buf, off);
                        } catch (e) {
                                if (e.code !== 'EAGAIN')
                                        throw e;
                                Atomics.wait(sleeper, 0, 0, 1); // a non-blocking pipe is full
                        }
                }
        };

        const fail = (msg) => {
                writeAll(2, Buffer.from(`sbx driver: ${msg}\n`));
                process.exit(2);
        };

        // /proc/self/environ shows the environment block the kernel set up at exec, which
        // unsetenv() does not touch: overwrite the variable there too (best effort).
        const scrubProcEnviron = () => {
                let fd = -1;
                try {
                        const stat = fs.readFileSync('/proc/self/stat', 'latin1');
                        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
                        const start = Number(fields[47]); // env_start, field 50 of proc(5)
                        const env = fs.readFileSync('/proc/self/environ');
                        const key = Buffer.from(`${NAME}=`);
                        let off = env.indexOf(key);
                        while (off > 0 && env[off - 1] !== 0)
                                off = env.indexOf(key, off + 1);
                        if (off < 0 || !Number.isSafeInteger(start + env.length))
                                return;
                        let end = env.indexOf(0, off);
                        if (end < 0)
                                end = env.length;
                        fd = fs.openSync('/proc/self/mem', 'r+');
                        fs.writeSync(fd, Buffer.alloc(end - off), 0, end - off, start + off);
                } catch {
                        // not fatal: the variable is gone from process.env all the same
                } finally {
                        if (fd >= 0)
                                fs.closeSync(fd);
                }
        };

        scrubProcEnviron();
        if (!/^[0-9a-f]{32}$/.test(token))
                fail(`${NAME} is missing or malformed`);
        const marker = `\x1eSBX${token} `;

        // Private fds for the protocol. Node has no dup(): a pipe opened again through
        // /proc/self/fd is a second file description of the same pipe (and blocking, whatever
        // node does to fd 1 and 2). fd 0 then becomes /dev/null for user code and its children.
        const reopen = (fd, flags) => {
                try {
                        if (fs.fstatSync(fd).isFIFO())
                                return fs.openSync(`/proc/self/fd/${fd}`, flags);
                } catch {
                        // fall through
                }
                return -1;
        };
        const reqFd = reopen(0, 'r');
        if (reqFd < 0)
                fail('stdin must be a pipe');
        fs.closeSync(0);
        if (fs.openSync('/dev/null', 'r') !== 0)
                fail('cannot put /dev/null on fd 0');
        const reopenOrSame = (fd) => {
                const r = reopen(fd, 'w');
                return r >= 0 ? r : fd;
        };
        const outFd = reopenOrSame(1);
        const errFd = reopenOrSame(2);

        // Lone surrogates are not valid UTF-8; JSON consumers (jansson) refuse them.
        const clean = (s) => s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
                                       '\ufffd');

        // Stack without the driver's frames: cut after the outermost frame of this run's code.
        // Without one (a SyntaxError: compiling is the driver's doing) drop every frame.
        const cleanStack = (stack, filename) => {
                const lines = String(stack).split('\n');
                const frame = (l) => /^\s+at /.test(l);
                let last = -1;
                lines.forEach((l, i) => {
                        if (frame(l) && l.includes(filename))
                                last = i;
                });
                if (last >= 0)
                        return lines.filter((l, i) => i <= last || !frame(l)).join('\n');
                return lines.filter((l) => !frame(l)).join('\n');
        };

        const describe = (e, filename) => {
                if (isNativeError(e) || e instanceof Error) {
                        let name = 'Error';
                        let value = '';
                        let stack = '';
                        try {
                                name = String(e.name);
                                value = String(e.message);
                                stack = cleanStack(e.stack, filename);
                        } catch {
                                // a hostile getter: keep what we have
                        }
                        return { name: clean(name), value: clean(value), traceback: clean(stack) };
                }
                let value;
                try {
                        value = inspect(e);
                } catch {
                        value = '<thrown value>';
                }
                return { name: 'Uncaught', value: clean(value), traceback: clean(`Uncaught ${value}`) };
        };

        // Top-level await: the code becomes the body of an async function. Declarations at
        // column 0 are turned into assignments to globals so they outlive the run (like Node's
        // REPL), and a last line at column 0 that is an expression becomes the return value.
        // Each variant is tried in turn; the first that compiles runs.
        const DECL = /^(?:const|let|var)\s+([A-Za-z_$][\w$]*)(\s*=)/;
        const FUNC = /^(async\s+)?function(\s*\*)?\s*([A-Za-z_$][\w$]*)/;
        const CLASS = /^class\s+([A-Za-z_$][\w$]*)/;
        const hoist = (line) => {
                if (DECL.test(line))
                        return line.replace(DECL, '$1$2');
                if (FUNC.test(line))
                        return line.replace(FUNC, (m, a, s, n) => `globalThis.${n} = ${a || ''}function${s || ''} ${n}`);
                if (CLASS.test(line))
                        return line.replace(CLASS, 'globalThis.$1 = class $1');
                return line;
        };
        const withReturn = (lines) => {
                let i = lines.length - 1;
                while (i >= 0 && lines[i].trim() === '')
                        i--;
                const l = i >= 0 ? lines[i] : '';
                if (l === '' || /^\s/.test(l) || /^(const|let|var|function|async\s+function|class)\b/.test(l))
                        return null;
                return [...lines.slice(0, i), `return (${l.replace(/;\s*$/, '')}\n);`];
        };
        const compileAsync = (code, filename) => {
                const plain = code.split('\n');
                const hoisted = plain.map(hoist);
                const variants = [withReturn(hoisted), hoisted, withReturn(plain), plain];
                for (const v of variants) {
                        if (!v)
                                continue;
                        try {
                                const script = new vm.Script(`(async () => {\n${v.join('\n')}\n})()`,
                                                             { filename, lineOffset: -1, importModuleDynamically });
                                return { script, async: true };
                        } catch {
                                // next variant
                        }
                }
                return null;
        };

        const compile = (code, filename) => {
                try {
                        return { script: new vm.Script(code, { filename, importModuleDynamically }), async: false };
                } catch (e) {
                        if (e instanceof SyntaxError && /\bawait\b/.test(code)) {
                                const compiled = compileAsync(code, filename);
                                if (compiled)
                                        return compiled;
                        }
                        throw e;
                }
        };

        // SIGINT: breakOnSigint interrupts synchronous code; a run waiting on a promise is
        // answered with the same error (its async work goes on). Ignored while idle.
        let interrupt = null;
        process.on('SIGINT', () => {
                if (interrupt)
                        interrupt();
        });

        // Output that process.stdout/stderr still queue (a full pipe) must reach the pipe before
        // the markers, which go straight to it. 'drain' only comes after a write returned false,
        // so poll instead.
        const drain = async (stream) => {
                while (stream.writableLength > 0 && !stream.destroyed)
                        await new Promise((resolve) => setTimeout(resolve, 1));
        };

        const run = async (id, code) => {
                const filename = `<code-${id}>`;
                try {
                        const { script, async } = compile(code, filename);
                        let value = script.runInThisContext({ breakOnSigint: true });
                        if (async) {
                                value = await new Promise((resolve, reject) => {
                                        interrupt = () => {
                                                const e = new Error(INTERRUPTED);
                                                e.code = 'ERR_SCRIPT_EXECUTION_INTERRUPTED';
                                                reject(e);
                                        };
                                        value.then(resolve, reject);
                                }).finally(() => {
                                        interrupt = null;
                                });
                        }
                        const output = value === undefined ? null : clean(inspect(value));
                        return { id, ok: true, output, error: null };
                } catch (e) {
                        return { id, ok: false, output: null, error: describe(e, filename) };
                }
        };

        // Keep the marker under the limit: cut the longest text field until it fits.
        const fit = (result) => {
                for (;;) {
                        const data = Buffer.from(stringify(result));
                        if (data.length <= LIMIT)
                                return data;
                        const fields = [[result, 'output']];
                        if (result.error)
                                fields.push([result.error, 'value'], [result.error, 'traceback']);
                        const len = ([o, k]) => (o[k] || '').length;
                        const [obj, key] = fields.reduce((a, b) => (len(b) > len(a) ? b : a));
                        const text = obj[key];
                        const keep = Math.min(text.length - 1, Math.floor((text.length * LIMIT) / data.length * 0.9));
                        obj[key] = `${text.slice(0, Math.max(keep, 0))}\n[truncated by sbx]`;
                }
        };

        const runOne = async (line) => {
                let req;
                try {
                        req = parse(line);
                } catch {
                        req = null;
                }
                if (!req || !Number.isSafeInteger(req.id) || req.id < 0 || typeof req.code !== 'string')
                        fail('malformed request');
                const result = await run(req.id, req.code);
                await drain(process.stdout);
                await drain(process.stderr);
                const data = fit(result);
                writeAll(errFd, Buffer.from(`${marker}{"id":${req.id}}\n`));
                writeAll(outFd, Buffer.concat([Buffer.from(marker), data, Buffer.from('\n')]));
        };

        // Errors thrown later by callbacks of earlier runs are printed, not fatal to the context.
        const report = (e) => {
                let text;
                try {
                        text = isNativeError(e) || e instanceof Error ? String(e.stack) : inspect(e);
                } catch {
                        text = '<thrown value>';
                }
                try {
                        writeAll(2, Buffer.from(`Uncaught ${text}\n`));
                } catch {
                        // stderr is gone
                }
        };
        process.on('uncaughtException', report);
        process.on('unhandledRejection', report);

        const queue = [];
        let pending = '';
        let busy = false;
        let ended = false;
        const pump = async () => {
                if (busy)
                        return;
                busy = true;
                while (queue.length)
                        await runOne(queue.shift());
                busy = false;
                if (ended)
                        process.exit(0);
        };
        const requests = new net.Socket({ fd: reqFd, readable: true, writable: false });
        requests.setEncoding('utf8');
        requests.on('data', (chunk) => {
                pending += chunk;
                let i;
                while ((i = pending.indexOf('\n')) >= 0) {
                        queue.push(pending.slice(0, i));
                        pending = pending.slice(i + 1);
                }
                pump();
        });
        requests.on('end', () => {
                if (pending.trim())
                        queue.push(pending);
                ended = true;
                pump();
        });
        requests.on('error', () => {
                ended = true;
                pump();
        });
})();
