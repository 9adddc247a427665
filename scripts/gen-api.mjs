#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// Generate the route table (src/api/routes.def), the handler prototypes (src/api/handlers.h) and
// the API reference (docs/api.md) from the single schema api/schema/api.json, after checking the
// schema (unique routes, known error codes and types, parameter counts) and that every limit it
// copies from src/common/limits.h (the *From keys) still has the same value there.
// Node 20, no npm dependencies. It writes only those three files.
//
// Usage: node scripts/gen-api.mjs            regenerate (files are rewritten only when they change)
//        node scripts/gen-api.mjs --check    exit 1 if a generated file is stale or the schema is wrong

import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCHEMA = 'api/schema/api.json';
const LIMITS = 'src/common/limits.h';
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
const BANNER = 'Generated from api/schema/api.json by scripts/gen-api.mjs, do not edit.';

const problems = [];
const problem = (msg) => problems.push(msg);

// ---------------------------------------------------------------------------------------------
// limits.h: evaluate `#define SBX_NAME expr` with a small arithmetic parser (no eval)

function tokenize(expr) {
  const re = /\s*(0x[0-9a-fA-F]+|\d+\.\d*|\d+|[A-Za-z_]\w*|<<|>>|[-+*/()])/y;
  const out = [];
  let m;
  re.lastIndex = 0;
  while (re.lastIndex < expr.length) {
    const at = re.lastIndex;
    if (/^\s*$/.test(expr.slice(at))) break;
    if (!(m = re.exec(expr))) throw new Error(`cannot parse '${expr}' at '${expr.slice(at)}'`);
    out.push(m[1]);
  }
  return out;
}

function evaluate(expr, defs, depth = 0) {
  if (depth > 16) throw new Error(`recursive definition in '${expr}'`);
  // integer suffixes (ULL, U, L) carry no value
  const toks = tokenize(expr.replace(/\b(\d+)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU]?)\b/g, '$1'));
  let i = 0;
  const peek = () => toks[i];
  const next = () => toks[i++];
  const primary = () => {
    const t = next();
    if (t === undefined) throw new Error(`unexpected end of '${expr}'`);
    if (t === '(') {
      const v = shift();
      if (next() !== ')') throw new Error(`missing ')' in '${expr}'`);
      return v;
    }
    if (t === '-') return -primary();
    if (/^(0x[0-9a-fA-F]+|\d)/.test(t)) return Number(t);
    if (/^[A-Za-z_]/.test(t)) {
      if (!(t in defs)) throw new Error(`unknown macro ${t} in '${expr}'`);
      return evaluate(defs[t], defs, depth + 1);
    }
    throw new Error(`unexpected '${t}' in '${expr}'`);
  };
  const mul = () => {
    let v = primary();
    while (peek() === '*' || peek() === '/') v = next() === '*' ? v * primary() : v / primary();
    return v;
  };
  const add = () => {
    let v = mul();
    while (peek() === '+' || peek() === '-') v = next() === '+' ? v + mul() : v - mul();
    return v;
  };
  const shift = () => {
    let v = add();
    while (peek() === '<<' || peek() === '>>') v = next() === '<<' ? v * 2 ** add() : Math.floor(v / 2 ** add());
    return v;
  };
  const v = shift();
  if (i !== toks.length) throw new Error(`trailing '${toks.slice(i).join(' ')}' in '${expr}'`);
  return v;
}

function readLimits() {
  const text = readFileSync(join(root, LIMITS), 'utf8');
  const defs = {};
  const comments = {};
  for (const line of text.split('\n')) {
    const m = /^#define\s+(SBX_\w+)\s+(.*?)\s*(?:\/\*\s*(.*?)\s*\*\/)?\s*$/.exec(line);
    if (m) {
      defs[m[1]] = m[2];
      comments[m[1]] = m[3] ?? '';
    }
  }
  return {
    value(name) {
      // "SBX_X" or "SBX_X/1048576" (unit conversion in the schema)
      const [macro, div] = name.split('/');
      if (!(macro in defs)) throw new Error(`${LIMITS} has no ${macro}`);
      const v = evaluate(defs[macro], defs);
      return div ? v / Number(div) : v;
    },
    comment: (name) => comments[name] ?? '',
  };
}

// ---------------------------------------------------------------------------------------------
// schema checks

function checkFromKeys(where, field, limits) {
  for (const [key, val] of Object.entries(field)) {
    const m = /^(\w+)From$/.exec(key);
    if (!m) continue;
    const target = m[1];
    let want;
    try {
      want = limits.value(val);
    } catch (e) {
      problem(`${where}: ${key}: ${e.message}`);
      continue;
    }
    if (field[target] !== want)
      problem(`${where}: ${target} is ${field[target]} but ${val} in ${LIMITS} is ${want}`);
  }
}

function walkFields(where, fields, fn) {
  for (const [name, f] of Object.entries(fields ?? {})) {
    fn(`${where}.${name}`, name, f);
    if (f.fields) walkFields(`${where}.${name}`, f.fields, fn);
  }
}

function checkSchema(schema, limits) {
  const errorCodes = new Set();
  for (const e of schema.errors) {
    if (!/^[a-z][a-z0-9_]*$/.test(e.code)) problem(`error code '${e.code}' is not snake_case`);
    if (errorCodes.has(e.code)) problem(`error code '${e.code}' listed twice`);
    errorCodes.add(e.code);
  }
  const maxParams = limits.value('SBX_MAX_PATH_PARAMS');
  const seen = new Set();
  const handlers = new Set();
  for (const r of schema.routes) {
    const id = `${r.method} ${r.path}`;
    if (!METHODS.includes(r.method)) problem(`${id}: unknown method`);
    if (!/^\/[A-Za-z0-9._\-/{}*]*$/.test(r.path) || r.path.includes('//')) problem(`${id}: malformed path`);
    if (seen.has(id)) problem(`${id}: route listed twice`);
    seen.add(id);
    if (!/^[a-z_][a-z0-9_]*$/.test(r.handler)) problem(`${id}: handler '${r.handler}' is not a C identifier`);
    if (handlers.has(r.handler)) problem(`${id}: handler '${r.handler}' used twice`);
    handlers.add(r.handler);
    if (typeof r.auth !== 'boolean') problem(`${id}: auth must be true or false`);
    if (r.upload !== undefined && typeof r.upload !== 'boolean') problem(`${id}: upload must be true or false`);
    if (r.upload && r.request) problem(`${id}: an upload route has no JSON request body`);
    if (/\*\//.test(r.summary ?? '') || !r.summary) problem(`${id}: summary must be set and must not contain '*/'`);
    const params = [...r.path.matchAll(/\{([^}*]*)\*?\}/g)].map((m) => m[1]);
    if (params.length > maxParams) problem(`${id}: ${params.length} path parameters, SBX_MAX_PATH_PARAMS is ${maxParams}`);
    for (const seg of r.path.split('/').slice(1))
      if (seg.includes('{') && !/^\{[a-z][A-Za-z0-9]*\*?\}$/.test(seg)) problem(`${id}: parameter segment '${seg}' must be exactly {name} (or {name*}, the rest of the path, last)`);
    if (/\*\}./.test(r.path)) problem(`${id}: a {name*} parameter must be the last segment`);
    const declared = Object.keys(r.params ?? {});
    if (declared.join() !== params.join()) problem(`${id}: params [${declared}] do not match the path's [${params}]`);
    for (const code of r.errors ?? []) if (!errorCodes.has(code)) problem(`${id}: unknown error code '${code}'`);
    if (r.auth && !(r.errors ?? []).includes('unauthorized')) problem(`${id}: auth route must list 'unauthorized'`);
    for (const resp of r.responses ?? []) if (resp.type && !schema.types[resp.type]) problem(`${id}: unknown type '${resp.type}'`);
    walkFields(id, r.request?.fields, (where, _n, f) => checkFromKeys(where, f, limits));
    walkFields(`${id} query`, r.query, (where, _n, f) => checkFromKeys(where, f, limits));
  }
  for (const [name, t] of Object.entries(schema.types))
    walkFields(name, t.fields, (where, _n, f) => {
      if (f.type === 'array' && typeof f.items === 'string' && !['string', 'integer', 'number', 'boolean', 'object'].includes(f.items) && !schema.types[f.items])
        problem(`${where}: unknown item type '${f.items}'`);
    });
  for (const l of schema.limits) {
    try {
      limits.value(l.macro);
    } catch (e) {
      problem(`limits: ${e.message}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// C outputs

function genRoutesDef(schema) {
  const lines = [
    '/* SPDX-License-Identifier: Apache-2.0 */',
    `/* ${BANNER} */`,
    '/*',
    ' * ROUTE(METHOD, "pattern", handler, auth, upload, resume): one line per route of the native API,',
    ' * in schema order (the router takes the first match). upload: the body is streamed to a file',
    ' * (http_request_upload_fd) instead of being collected in memory. resume: the route needs a',
    ' * running sandbox and passes the gate first (a paused sandbox answers 409 sandbox_paused, or is',
    ' * resumed when the request asks with autoResume). Expanded by src/api/routes.c and by tests.',
    ' */',
  ];
  for (const r of schema.routes)
    lines.push(`ROUTE(${r.method}, "${r.path}", ${r.handler}, ${r.auth}, ${r.upload === true}, ${r.resume === true})`);
  return lines.join('\n') + '\n';
}

function genHandlersH(schema) {
  const lines = [
    '/* SPDX-License-Identifier: Apache-2.0 */',
    `/* ${BANNER} */`,
    '/*',
    ' * Handlers of the native API, one per route in api/schema/api.json, implemented in src/api/v1/.',
    ' * Each runs on the loop thread and replies exactly once, now or later (src/api/server.h).',
    ' */',
    '#pragma once',
    '',
    '#include "api/server.h"',
    '',
  ];
  for (const r of schema.routes) {
    lines.push(`/* ${r.method} ${r.path}: ${r.summary}${r.auth ? '' : ' (no auth)'}${r.upload ? ' (body streamed to a file)' : ''} */`);
    lines.push(`void ${r.handler}(struct http_request *req);`);
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// docs/api.md

const esc = (s) => String(s ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');
const anchor = (s) => s.toLowerCase().replace(/[^a-z0-9 -]/g, '').trim().replace(/ /g, '-');

function typeName(f) {
  let t = f.type;
  if (t === 'map') t = `object (${f.values ?? 'string'} values)`;
  else if (t === 'array') t = `array of ${f.items}`;
  if (f.format) t += ` (${f.format === 'rfc3339ms' ? 'RFC 3339, ms' : f.format})`;
  if (f.nullable) t += ' or null';
  return t;
}

function constraints(f) {
  const c = [];
  if (f.enum) c.push(f.enum.map((v) => `\`${v}\``).join(', '));
  if (f.min !== undefined && f.max !== undefined) c.push(`${f.min}..${f.max}`);
  else if (f.min !== undefined) c.push(`>= ${f.min}`);
  else if (f.max !== undefined) c.push(`<= ${f.max}`);
  if (f.maxLength !== undefined) c.push(`<= ${f.maxLength} bytes`);
  if (f.pattern) c.push(`\`${f.pattern}\``);
  if (f.maxEntries !== undefined) c.push(`<= ${f.maxEntries} entries`);
  if (f.maxKey !== undefined) c.push(`keys <= ${f.maxKey} bytes`);
  if (f.maxValue !== undefined) c.push(`values <= ${f.maxValue} bytes`);
  if (f.default !== undefined) c.push(`default ${JSON.stringify(f.default)}`);
  return c.join('; ');
}

function fieldRows(fields, prefix, withConstraints) {
  const rows = [];
  for (const [name, f] of Object.entries(fields ?? {})) {
    const cells = [`\`${prefix}${name}\``, esc(typeName(f))];
    if (withConstraints) cells.push(esc(constraints(f)));
    cells.push(esc(f.description));
    rows.push(`| ${cells.join(' | ')} |`);
    if (f.fields) rows.push(...fieldRows(f.fields, `${prefix}${name}.`, withConstraints));
  }
  return rows;
}

function fieldTable(fields, withConstraints) {
  const head = withConstraints ? ['field', 'type', 'limits', 'description'] : ['field', 'type', 'description'];
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...fieldRows(fields, '', withConstraints)];
}

function human(v, unit) {
  if (unit === 'bytes' && v >= 1024 && v % 1024 === 0) {
    const units = ['KiB', 'MiB', 'GiB'];
    let n = v / 1024;
    let u = 0;
    while (n >= 1024 && n % 1024 === 0 && u < units.length - 1) {
      n /= 1024;
      u++;
    }
    return `${v} (${n} ${units[u]})`;
  }
  return `${v}`;
}

function exampleParams(path) {
  return path.replace(/\{id\}/g, 'sbx_a7k2m4q6x3b5c6d2e4f7').replace(/\{[^}]*\}/g, 'VALUE');
}

function genDocs(schema, limits) {
  const L = [];
  const p = (...s) => L.push(...s);
  p(`<!-- ${BANNER} -->`, '', `# ${schema.info.title} (${schema.info.version})`, '', schema.info.description, '');
  p('The daemon listens on `127.0.0.1:7070` by default and on a unix socket (mode 0600). Examples use');
  p('`$SBX_URL` (e.g. `http://127.0.0.1:7070`) and `$SBX_API_KEY`. Connections are HTTP/1.1 with');
  p('keep-alive; request bodies may use `Content-Length` or chunked transfer encoding.', '');
  p('## Contents', '');
  p('- [Authentication](#authentication)', '- [Errors](#errors)', '- [Limits](#limits)', '- [Routes](#routes)', '- [Types](#types)', '');

  p('## Authentication', '', schema.auth.description, '');
  p('```', `${schema.auth.header}: ${schema.auth.scheme} sbx_key_0123456789abcdef0123456789abcdef01234567`, '```', '');

  p('## Errors', '', schema.errorFormat.description, '', '```json', JSON.stringify(schema.errorFormat.example), '```', '');
  p('| status | code | meaning |', '|---|---|---|');
  for (const e of [...schema.errors].sort((a, b) => a.status - b.status)) p(`| ${e.status} | \`${e.code}\` | ${esc(e.description)} |`);
  p('');

  p('## Limits', '', 'Values come from `src/common/limits.h`.', '', '| limit | value | unit | meaning |', '|---|---|---|---|');
  for (const l of schema.limits) p(`| \`${l.macro}\` | ${human(limits.value(l.macro), l.unit)} | ${l.unit} | ${esc(l.description)} |`);
  p('');

  p('## Routes', '', '| method | path | auth | summary |', '|---|---|---|---|');
  for (const r of schema.routes)
    p(`| ${r.method} | [\`${r.path}\`](#${anchor(`${r.method} ${r.path}`)}) | ${r.auth ? 'yes' : 'no'} | ${esc(r.summary)} |`);
  p('');

  for (const r of schema.routes) {
    p(`### ${r.method} ${r.path}`, '', `**${r.summary}.** ${r.description ?? ''}`.trim(), '');
    p(`Handler \`${r.handler}\`; authentication ${r.auth ? 'required' : 'not required'}.`, '');
    if (r.params) {
      p('Path parameters:', '', '| name | type | description |', '|---|---|---|');
      for (const [n, f] of Object.entries(r.params)) p(`| \`${n}\` | ${f.type} | ${esc(f.description)} |`);
      p('');
    }
    if (r.query) {
      p('Query parameters:', '', ...fieldTable(r.query, true), '');
    }
    if (r.upload) {
      p('Body: streamed to disk (no 1 MiB limit); any content type, `Content-Length` or chunked.', '');
    }
    if (r.request) {
      p('Request body (JSON object; every field optional unless stated, unknown fields are rejected):', '');
      p(...fieldTable(r.request.fields, true), '');
    }
    p('Responses:', '');
    for (const resp of r.responses) {
      let line = `- **${resp.status}**`;
      if (resp.contentType) line += ` \`${resp.contentType}\``;
      if (resp.type) line += `: ${resp.streamed ? 'a stream of ' : ''}[${resp.type}](#${anchor(resp.type)})${resp.streamed ? ' lines' : ''}`;
      if (resp.status === 204) line += ': no body';
      if (resp.when) line += ` (with \`${resp.when}\`)`;
      p(line);
    }
    p('');
    if (r.errors?.length) p(`Errors: ${r.errors.map((c) => `\`${c}\``).join(', ')}.`, '');
    const curl = ['curl'];
    if (r.method !== 'GET') curl.push(`-X ${r.method}`);
    if (r.auth) curl.push('-H "Authorization: Bearer $SBX_API_KEY"');
    if (r.upload) curl.push('-T FILE');
    if (r.request?.example) curl.push(`-H 'Content-Type: application/json' -d '${JSON.stringify(r.request.example)}'`);
    curl.push(`"$SBX_URL${exampleParams(r.path)}"`);
    p('Example:', '', '```sh', curl.join(' \\\n  '), '```', '');
    const main = r.responses[0];
    if (main?.type && schema.types[main.type]?.example) {
      p('```json', JSON.stringify(schema.types[main.type].example, null, 2), '```', '');
    } else if (main?.text) {
      p('```', main.text, '```', '');
    }
  }

  p('## Types', '');
  for (const [name, t] of Object.entries(schema.types)) {
    p(`### ${name}`, '', t.description, '', ...fieldTable(t.fields, true), '');
  }
  return L.join('\n').replace(/\n{3,}/g, '\n\n').replace(/\n*$/, '\n');
}

// ---------------------------------------------------------------------------------------------

function main() {
  const check = process.argv.includes('--check');
  const schema = JSON.parse(readFileSync(join(root, SCHEMA), 'utf8'));
  const limits = readLimits();
  checkSchema(schema, limits);
  if (problems.length) {
    for (const m of problems) console.error(`gen-api: ${SCHEMA}: ${m}`);
    process.exit(1);
  }
  const outputs = {
    'src/api/routes.def': genRoutesDef(schema),
    'src/api/handlers.h': genHandlersH(schema),
    'docs/api.md': genDocs(schema, limits),
  };
  let stale = 0;
  for (const [rel, text] of Object.entries(outputs)) {
    const path = join(root, rel);
    const old = existsSync(path) ? readFileSync(path, 'utf8') : null;
    if (old === text) continue;
    if (check) {
      console.error(`gen-api: ${rel} is stale; run node scripts/gen-api.mjs`);
      stale++;
    } else {
      writeFileSync(path, text);
      console.log(`gen-api: wrote ${rel}`);
    }
  }
  process.exit(stale ? 1 : 0);
}

main();
