// SPDX-License-Identifier: Apache-2.0
//
// The template catalog: GET /v1/templates lists every built-in template with its state, GET
// /v1/templates/{name} resolves aliases (python:3, node:18, debian:12), unknown names are 404
// template_not_found naming what exists (also on create), and `python` is built from Debian's
// packages on its first use (the create waits for the build) and runs Python with pip and venv.
// The CLI's `sbx template ls/inspect` shows the same.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { SBX_CLI, describe, expectError, useDaemon } from '../lib/harness.mjs';

const fx = useDaemon();
const CATALOG = ['host', 'base', 'python', 'node', 'full'];

test('GET /v1/templates lists the catalog with states', async () => {
        const res = await fx.api.request('GET', '/v1/templates');
        assert.equal(res.status, 200, describe(res));
        const names = res.json.templates.map((t) => t.name);
        assert.deepEqual(names, CATALOG);
        for (const t of res.json.templates) {
                assert.ok(['available', 'building', 'failed', 'not_built'].includes(t.state), describe(res));
                assert.equal(typeof t.description, 'string');
                assert.ok(Array.isArray(t.packages));
                for (const k of ['sizeBytes', 'builtAt', 'progress', 'error']) assert.ok(k in t, `${t.name} lacks ${k}`);
        }
        const host = res.json.templates.find((t) => t.name === 'host');
        assert.equal(host.state, 'available');
        assert.deepEqual(host.packages, []);
        assert.ok(res.json.templates.find((t) => t.name === 'python').packages.includes('python3'));
        expectError(await fx.api.request('GET', '/v1/templates', undefined, { headers: { authorization: 'Bearer nope' } }),
                401, 'unauthorized');
});

test('aliases resolve; unknown names are 404 naming the catalog', async () => {
        for (const [alias, name] of [['python:3', 'python'], ['node:18', 'node'], ['debian:12', 'base'], ['host', 'host']]) {
                const res = await fx.api.request('GET', `/v1/templates/${encodeURIComponent(alias)}`);
                assert.equal(res.status, 200, describe(res));
                assert.equal(res.json.name, name);
        }
        const res = await fx.api.request('GET', '/v1/templates/ruby');
        expectError(res, 404, 'template_not_found');
        for (const n of CATALOG) assert.match(res.json.error.message, new RegExp(`\\b${n}\\b`));
        const c = await fx.api.create({ template: 'ruby:3' });
        expectError(c, 404, 'template_not_found');
        assert.match(c.json.error.message, /available: host, base, python, node, full/);
});

test('python is built on first use and runs Python with pip and venv', { timeout: 300_000 }, async (t) => {
        const api = fx.scope(t);
        const res = await api.request('POST', '/v1/sandboxes', { template: 'python:3' }, { timeoutMs: 280_000 });
        assert.equal(res.status, 201, describe(res));
        t.after(() => api.del(res.json.id).catch(() => {}));
        api.track(res.json.id);
        assert.equal(res.json.template, 'python:3');
        assert.equal(await api.sh(res.json.id, 'python3 -c "print(6*7)"'), '42\n');
        assert.match(await api.sh(res.json.id, 'python3 -m pip --version'), /^pip \d+/);
        await api.sh(res.json.id, 'python3 -m venv /tmp/v && /tmp/v/bin/python -c "import sys; print(sys.prefix)"');
        const tpl = await fx.api.request('GET', '/v1/templates/python');
        assert.equal(tpl.json.state, 'available');
        assert.ok(tpl.json.sizeBytes > 50e6, `size ${tpl.json.sizeBytes}`);
        assert.ok(tpl.json.builtAt);
});

test('sbx template ls / inspect', async () => {
        const env = { ...process.env, SBX_URL: fx.url, SBX_KEY: fx.key };
        let r = spawnSync(SBX_CLI, ['template', 'ls'], { env, encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /^NAME\s+STATE\s+SIZE\s+LAYERS\s+SOURCE\s+DESCRIPTION/);
        for (const n of CATALOG) assert.match(r.stdout, new RegExp(`^${n}\\s`, 'm'));
        r = spawnSync(SBX_CLI, ['template', 'inspect', 'node:18', '--json'], { env, encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
        assert.equal(JSON.parse(r.stdout).name, 'node');
        r = spawnSync(SBX_CLI, ['template', 'inspect', 'ruby'], { env, encoding: 'utf8' });
        assert.equal(r.status, 1);
        assert.match(r.stderr, /template_not_found/);
        r = spawnSync(SBX_CLI, ['template', 'frobnicate'], { env, encoding: 'utf8' });
        assert.equal(r.status, 2);
});
