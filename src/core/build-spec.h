/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Template specs (docs/templates.md): the declarative JSON a user builds a template from.
 *
 *   { "name": "myapp:1", "description": "...",
 *     "from": "python"                      | "base": {"suite": "bookworm", "variant": "minbase"},
 *     "packages": ["jq", ...],              Debian packages (with "base" only)
 *     "npm": ["left-pad@1.3.0", ...],       npm packages installed globally (/usr/local)
 *     "files": [{"path": "/app/x.py", "content": "..." | "contentBase64": "...", "mode": 420}],
 *     "env": {"K": "V"}, "workdir": "/app", "user": "root", "cmd": [...], "entrypoint": [...],
 *     "labels": {"k": "v"},
 *     "setup": ["pip install ...", ...],    shell commands run in a sandbox of the layers so far
 *     "setupTimeout": 600 }
 *
 * Pure code: parsing, validation (every error names the field) and the cache keys of the steps.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/limits.h"

#define SBX_MAX_SPEC_PACKAGES 1024
#define SBX_MAX_SPEC_NPM 256
#define SBX_MAX_SPEC_FILES 1024
#define SBX_MAX_SPEC_SETUP 64
#define SBX_MAX_SETUP_COMMAND (64 * 1024)
#define SBX_DEFAULT_SETUP_TIMEOUT_S 600
#define SBX_MAX_SETUP_TIMEOUT_S 3600

struct build_file {
        char *path;          /* absolute, normalised */
        unsigned char *data; /* decoded content */
        size_t len;
        unsigned mode;       /* 0..07777 */
};

struct build_spec {
        char name[SBX_MAX_TEMPLATE_NAME + 1];
        char from[SBX_MAX_TEMPLATE_NAME + 1];  /* "" = start from base */
        char suite[32], variant[32];
        char *packages;                        /* comma-separated, "" if none (never NULL after parse) */
        char **npm;
        size_t n_npm;
        struct build_file *files;
        size_t n_files;
        char **setup;
        size_t n_setup;
        unsigned setup_timeout_s;
        json_t *config;                        /* {env:[K=V..], workdir, user, cmd, entrypoint, labels} */
        json_t *canonical;                     /* the spec as parsed (for the manifest) */
        char digest[72];                       /* sha256 of the canonical spec: identical specs share a build */
};

/* Parse and validate j into *ret. -SBX_E_INVALID with reason unknown_field / invalid_type /
 * invalid_value / missing_field and a message naming the field. */
int build_spec_parse(json_t *j, struct build_spec *ret, struct sbx_err *err);
void build_spec_release(struct build_spec *s);

/* The packages every Debian base gets, before the spec's own. */
#define SBX_BASE_PACKAGES "bash,coreutils,ca-certificates"

/* Cache key of a step on top of the layer parent ("sha256:..."): kind "files", "npm", "setup". */
void build_spec_step_key(const struct build_spec *s, const char *kind, const char *parent, char out[65]);
