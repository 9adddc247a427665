// SPDX-License-Identifier: Apache-2.0
//
// A create "returns when the sandbox is ready to exec", also when its template does not exist yet:
// with a fresh templates dir and no build at start, POST /v1/sandboxes {} waits while sbxd builds
// `base` (mmdebstrap, about 20 s) and then answers 201 with a usable Debian sandbox.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Api, assertNoLeaks, describe, startDaemon } from '../lib/harness.mjs';

test('a create waits for its template to be built', { timeout: 300_000 }, async () => {
        const templates = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-it-templates-'));
        const d = await startDaemon({ extraArgs: ['--templates-dir', templates, '--default-template', ''] });
        const api = new Api(() => d);
        let id = null;
        try {
                assert.ok(!fs.existsSync(path.join(templates, 'templates', 'base.json')), 'base must not exist yet');
                assert.equal((await api.request('GET', '/v1/templates/base')).json.state, 'not_built');
                const t0 = Date.now();
                const res = await api.request('POST', '/v1/sandboxes', {}, { timeoutMs: 280_000 });
                assert.equal(res.status, 201, describe(res));
                id = res.json.id;
                assert.equal(res.json.template, 'base');
                assert.equal(res.json.state, 'running');
                assert.ok(Date.now() - t0 > 1000, 'the create had to wait for the build');
                // published as a one-layer template whose layer holds the Debian tree
                const tpl = await api.request('GET', '/v1/templates/base');
                assert.equal(tpl.json.state, 'available');
                assert.equal(tpl.json.layers.length, 1);
                const hex = tpl.json.layers[0].replace('sha256:', '');
                assert.ok(fs.existsSync(path.join(templates, 'layers', hex, 'root', 'etc', 'debian_version')));
                assert.ok(fs.existsSync(path.join(templates, 'templates', 'base.json')));
                assert.match(await api.sh(id, 'cat /etc/debian_version'), /^12\./);
                assert.equal((await api.del(id)).status, 204);
                await assertNoLeaks([id], { daemonPid: d.pid, dataDir: d.dataDir });
        } finally {
                if (id) await api.del(id).catch(() => {});
                if (d.alive) assert.equal((await d.stop()).code, 0);
                fs.rmSync(d.dataDir, { recursive: true, force: true });
                fs.rmSync(templates, { recursive: true, force: true });
        }
});
