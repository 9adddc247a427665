// SPDX-License-Identifier: Apache-2.0
//
// Sandbox timeouts: timeout.idle stops a sandbox nobody runs commands in (and an exec keeps it
// awake), timeout.lifetime deletes it when its time is up (expiresAt tells when); both survive as
// state the API reports, and a stopped idle sandbox starts again with its files.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describe, expectError, sleep, useDaemon, waitFor } from '../lib/harness.mjs';

const fx = useDaemon();

test('timeout.idle stops an idle sandbox; an exec resets the clock; start brings it back', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const sb = await api.createOk({ timeout: { idle: 2 } });
        assert.equal(sb.timeout.idle, 2);
        await api.sh(sb.id, 'echo kept > /root/f');
        // keep it busy past its idle time: an exec in flight and execs in a row keep it running
        await api.run(sb.id, 'sleep 2.5', { timeout: 10 });
        await sleep(1000);
        assert.equal((await api.get(sb.id)).json.state, 'running', 'still running 1 s after the last exec');
        await waitFor(async () => (await api.get(sb.id)).json.state === 'stopped', 6000, { what: 'the idle stop' });
        const got = (await api.get(sb.id)).json;
        assert.equal(got.stateReason, 'idle timeout');
        expectError(await api.exec(sb.id, { cmd: 'true' }), 409, 'invalid_state');
        const res = await api.start(sb.id);
        assert.equal(res.status, 200, describe(res));
        assert.equal(await api.sh(sb.id, 'cat /root/f'), 'kept\n');
});

test('timeout.lifetime deletes the sandbox when its time is up', { timeout: 60_000 }, async (t) => {
        const api = fx.scope(t);
        const t0 = Date.now();
        const sb = await api.createOk({ timeout: { lifetime: 2 } });
        assert.ok(sb.expiresAt, 'expiresAt is set');
        const exp = Date.parse(sb.expiresAt);
        assert.ok(exp >= t0 + 1000 && exp <= Date.now() + 2500, `expiresAt ${sb.expiresAt} is about 2 s ahead`);
        assert.equal((await api.get(sb.id)).json.state, 'running');
        await waitFor(async () => (await api.get(sb.id)).status === 404, 8000, { what: 'the lifetime delete' });
        expectError(await api.get(sb.id), 404, 'sandbox_not_found');
        // the record stays for audit: listed with state=deleted
        const list = await api.request('GET', '/v1/sandboxes?state=deleted&limit=1000');
        assert.equal(list.status, 200, describe(list));
        const row = list.json.sandboxes.find((s) => s.id === sb.id);
        assert.ok(row, 'the deleted sandbox is listed under state=deleted');
        assert.equal(row.stateReason, 'lifetime expired');
});
