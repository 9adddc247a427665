// SPDX-License-Identifier: Apache-2.0
//
// Sessions (issue 5): named shells whose cwd and exported environment persist between commands;
// each command has its own id, logs and exit code; async commands; listing, deletion (running
// commands killed), bad input; sessions survive an sbxd restart.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describe, expectError, fmt, waitFor, withDaemon } from '../lib/harness.mjs';

const S = (sb, rest = '') => `/v1/sandboxes/${sb}/sessions${rest}`;

test('a session keeps cwd and exports between commands; async commands; restart; delete', { timeout: 120_000 }, (t) => withDaemon(t, async (fx) => {
        const sb = (await fx.api.createOk({})).id;
        const req = (m, p, b) => fx.api.request(m, p, b);
        let r = await req('POST', S(sb), { sessionId: 'dev', cwd: '/tmp', env: { GREETING: 'hi' } });
        assert.equal(r.status, 201, describe(r));
        assert.equal(r.json.sessionId, 'dev');
        const run = async (cmd, extra = {}) => {
                const x = await req('POST', S(sb, '/dev/exec'), { cmd, ...extra });
                assert.equal(x.status, extra.async ? 201 : 200, describe(x));
                return x.json;
        };
        let x = await run('pwd; echo $GREETING');
        assert.equal(x.stdout, '/tmp\nhi\n');
        assert.match(x.commandId, /^prc_/);
        await run("mkdir -p \"/tmp/it's here\" && cd \"/tmp/it's here\" && export MODE=dev GREETING=hello");
        x = await run('pwd; echo $MODE $GREETING');
        assert.equal(x.stdout, "/tmp/it's here\ndev hello\n");
        x = await run('echo oops >&2; exit 3');
        assert.deepEqual([x.exitCode, x.stderr], [3, 'oops\n']);
        x = await run('echo still; pwd');
        assert.equal(x.stdout, "still\n/tmp/it's here\n", 'a failing command keeps the state');
        // async: returns at once, its logs are the process's
        const a = await run('sleep 0.3; echo later', { async: true });
        assert.equal(a.status, 'running');
        const w = await req('GET', `/v1/sandboxes/${sb}/processes/${a.commandId}/wait?timeout=10`);
        assert.equal(w.json.exitCode, 0);
        assert.equal((await req('GET', `/v1/sandboxes/${sb}/processes/${a.commandId}/stdout`)).text, 'later\n');
        // a second session does not share the state
        r = await req('POST', S(sb), {});
        assert.equal(r.status, 201);
        const other = r.json.sessionId;
        assert.match(other, /^ses_/);
        const y = await req('POST', S(sb, `/${other}/exec`), { command: 'echo ${MODE:-none}; pwd' });
        assert.equal(y.json.stdout, 'none\n/root\n');
        // listing and one session with its commands
        const list = await req('GET', S(sb));
        assert.deepEqual(list.json.sessions.map((s) => s.sessionId).sort(), ['dev', other].sort());
        const g = await req('GET', S(sb, '/dev'));
        assert.equal(g.json.commands.length, 6, fmt(g.json.commands.map((c) => c.argv.at(-1))));
        // sessions and their state survive an sbxd restart
        await fx.daemon.kill9();
        await fx.restart();
        x = await run('pwd; echo $MODE');
        assert.equal(x.stdout, "/tmp/it's here\ndev\n");
        // delete: a running command is killed
        const long = await run('sleep 60', { async: true });
        assert.equal((await fx.api.sh(sb, `ls -a /tmp | grep -c '^.sbx-session-${sb}-dev$' || true`)).trim(), '1');
        assert.equal((await req('DELETE', S(sb, '/dev'))).status, 204);
        await waitFor(async () => (await fx.api.sh(sb, `ls -a /tmp | grep -c '^.sbx-session-${sb}-dev$' || true`)).trim() === '0',
                5000, { what: 'the session state file removed' });
        const lw = await req('GET', `/v1/sandboxes/${sb}/processes/${long.commandId}/wait?timeout=10`);
        assert.equal(lw.json.status, 'killed');
        expectError(await req('GET', S(sb, '/dev')), 404, 'session_not_found');
        expectError(await req('POST', S(sb, '/dev/exec'), { cmd: 'true' }), 404, 'session_not_found');
        // bad input
        expectError(await req('POST', S(sb), { sessionId: other }), 409, 'session_exists');
        expectError(await req('POST', S(sb), { sessionId: '../x' }), 400, 'invalid_value', 'sessionId');
        expectError(await req('POST', S(sb), { cwd: 'relative' }), 400, 'invalid_value', 'cwd');
        expectError(await req('POST', S(sb), { nope: 1 }), 400, 'unknown_field', 'nope');
        expectError(await req('POST', S(sb, `/${other}/exec`), {}), 400, 'missing_field', 'cmd');
        expectError(await req('POST', S(sb, `/${other}/exec`), { cmd: 'x', timeout: -1 }), 400, 'out_of_range', 'timeout');
}));
