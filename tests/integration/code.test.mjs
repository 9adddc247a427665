// SPDX-License-Identifier: Apache-2.0
//
// Code runs and contexts (issue 5): one-shot python/node/bash runs with their output and exit
// code, the language guessed when not named, timeouts; contexts that keep state between runs
// (python and node), are isolated from each other, turn exceptions into errors, survive a
// timeout (interrupt), and end when their interpreter exits; bad input.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describe, expectError, fmt, useDaemon } from '../lib/harness.mjs';

let sb;
const fx = useDaemon({}, async (f) => {
        sb = await f.api.createOk({});
});

async function code(body, status = 200) {
        const r = await fx.api.request('POST', `/v1/sandboxes/${sb.id}/code`, body, { timeoutMs: 60_000 });
        assert.equal(r.status, status, `${fmt(body)}: ${describe(r)}`);
        return r.json;
}

async function context(language) {
        const r = await fx.api.request('POST', `/v1/sandboxes/${sb.id}/contexts`, { language });
        assert.equal(r.status, 201, describe(r));
        assert.match(r.json.contextId, /^ctx_[a-z2-7]{20}$/);
        assert.equal(r.json.language, language);
        assert.equal(r.json.status, 'running');
        return r.json.contextId;
}

test('one-shot runs: python, node, bash; stdout, stderr, exit code', async () => {
        let r = await code({ code: 'import sys\nprint("py", 6*7)\nprint("err", file=sys.stderr)\nsys.exit(3)', language: 'python' });
        assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.language, r.output, r.contextId], ['py 42\n', 'err\n', 3, 'python', null, null]);
        r = await code({ code: 'console.log("js", [1,2].map(x => x * 2).join(","))', language: 'js' });
        assert.deepEqual([r.stdout, r.exitCode, r.language], ['js 2,4\n', 0, 'node']);
        r = await code({ code: 'echo sh $((2+3)); exit 4', language: 'sh' });
        assert.deepEqual([r.stdout, r.exitCode, r.language], ['sh 5\n', 4, 'bash']);
        assert.equal(r.timedOut, false);
        assert.equal(typeof r.durationMs, 'number');
});

test('the language is guessed when not named', async () => {
        const cases = [
                ['print("hi")', 'python', 'hi\n'],
                ['import os\nprint(os.getcwd())', 'python', '/root\n'],
                ['console.log("hi")', 'node', 'hi\n'],
                ['const x = 2;\nconsole.log(x * 3);', 'node', '6\n'],
                ['echo hi | tr h H', 'bash', 'Hi\n'],
                ['#!/bin/bash\nx=5; echo $x', 'bash', '5\n'],
                ['#!/usr/bin/env python3\nprint(1)', 'python', '1\n'],
        ];
        for (const [c, lang, out] of cases) {
                const r = await code({ code: c });
                assert.equal(r.language, lang, c);
                assert.equal(r.stdout, out, c);
        }
});

test('a one-shot timeout kills the run', async () => {
        const r = await code({ code: 'import time\nprint("start", flush=True)\ntime.sleep(30)', language: 'python', timeout: 1 });
        assert.equal(r.timedOut, true);
        assert.equal(r.stdout, 'start\n');
        assert.notEqual(r.exitCode, 0);
});

test('a python context keeps state, shows the last value, turns exceptions into errors', async () => {
        const ctx = await context('python');
        let r = await code({ code: 'x = 21\nimport math\ndef f(v):\n    return v * 2', contextId: ctx });
        assert.deepEqual([r.exitCode, r.output, r.error, r.contextId, r.language], [0, null, null, ctx, 'python']);
        r = await code({ code: 'print("x is", x)\nf(x)', contextId: ctx });
        assert.equal(r.stdout, 'x is 21\n');
        assert.equal(r.output, '42');
        r = await code({ code: '"text"', contextId: ctx });
        assert.equal(r.output, "'text'");
        r = await code({ code: 'print("before")\n1 / 0', contextId: ctx });
        assert.equal(r.exitCode, 1);
        assert.equal(r.stdout, 'before\n');
        assert.equal(r.error.name, 'ZeroDivisionError');
        assert.match(r.error.traceback, /ZeroDivisionError/);
        r = await code({ code: 'math.floor(x / 2)', contextId: ctx, language: 'python' });
        assert.equal(r.output, '10', 'state survives an exception');
        // output of child processes lands in the run too
        r = await code({ code: 'import os\nos.system("echo from-child")', contextId: ctx });
        assert.equal(r.stdout, 'from-child\n');
});

test('a node context keeps state and awaits', async () => {
        const ctx = await context('node');
        let r = await code({ code: 'let a = 5; const fs = require("fs");', contextId: ctx });
        assert.equal(r.exitCode, 0, fmt(r));
        r = await code({ code: 'a + 1', contextId: ctx });
        assert.equal(r.output, '6');
        r = await code({ code: 'await new Promise((res) => setTimeout(() => res(a * 10), 50))', contextId: ctx });
        assert.equal(r.output, '50');
        r = await code({ code: 'console.log(fs.existsSync("/root")); null.x', contextId: ctx });
        assert.equal(r.stdout, 'true\n');
        assert.equal(r.error.name, 'TypeError');
});

test('contexts are isolated; a timeout interrupts and keeps the context; exit ends it', async () => {
        const a = await context('python');
        const b = await context('python');
        await code({ code: 'secret = 1', contextId: a });
        let r = await code({ code: 'secret', contextId: b });
        assert.equal(r.error.name, 'NameError');
        r = await code({ code: 'while True:\n    pass', contextId: a, timeout: 1 });
        assert.equal(r.timedOut, true);
        assert.equal(r.error.name, 'KeyboardInterrupt');
        r = await code({ code: 'secret + 1', contextId: a });
        assert.equal(r.output, '2', 'the context survived the interrupt');
        r = await code({ code: 'import sys\nsys.exit(0)', contextId: b });
        assert.equal(r.error.name, 'ContextExited');
        expectError(await fx.api.request('POST', `/v1/sandboxes/${sb.id}/code`, { code: '1', contextId: b }), 409, 'context_not_running');
        const list = await fx.api.request('GET', `/v1/sandboxes/${sb.id}/contexts`);
        assert.ok(list.json.contexts.some((c) => c.contextId === a && c.status === 'running'), fmt(list.json));
        assert.equal((await fx.api.request('DELETE', `/v1/sandboxes/${sb.id}/contexts/${a}`)).status, 204);
        expectError(await fx.api.request('GET', `/v1/sandboxes/${sb.id}/contexts/${a}`), 404, 'context_not_found');
});

test('bad input', async () => {
        const P = `/v1/sandboxes/${sb.id}`;
        expectError(await fx.api.request('POST', `${P}/code`, {}), 400, 'missing_field', 'code');
        expectError(await fx.api.request('POST', `${P}/code`, { code: 1 }), 400, 'invalid_type', 'code');
        expectError(await fx.api.request('POST', `${P}/code`, { code: 'x', language: 'cobol' }), 400, 'invalid_value', 'language');
        expectError(await fx.api.request('POST', `${P}/code`, { code: 'x', contextId: 'ctx_aaaaaaaaaaaaaaaaaaaa' }), 404, 'context_not_found');
        expectError(await fx.api.request('POST', `${P}/code`, { code: 'x', timeout: 0 }), 400, 'out_of_range', 'timeout');
        expectError(await fx.api.request('POST', `${P}/code`, { code: 'x', nope: 1 }), 400, 'unknown_field', 'nope');
        expectError(await fx.api.request('POST', `${P}/contexts`, { language: 'bash' }), 400, 'invalid_value', 'language');
        expectError(await fx.api.request('POST', `${P}/contexts`, { language: 'python', cwd: 'rel' }), 400, 'invalid_value', 'cwd');
        expectError(await fx.api.request('POST', `/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa/code`, { code: 'x' }), 404, 'sandbox_not_found');
});
