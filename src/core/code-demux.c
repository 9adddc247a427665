/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Code runs, the pure side (docs/internals/code.md): the marker demux of a driver's output, the
 * request line, language detection and the driver sources compiled in from the generated
 * code-drivers.h. Pure: no I/O, no logging, no knowledge of processes or sandboxes.
 */
#include "core/code-demux.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "code-drivers.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/util.h"

#define MARKER_START '\x1e'
#define LINE_KEEP (64 * 1024) /* a marker buffer grown past this is freed after its marker */

/* ---- tokens and requests ---- */

static bool token_valid(const char *token)
{
        for (size_t i = 0; i < CODE_TOKEN_LEN; i++)
                if (!((token[i] >= '0' && token[i] <= '9') || (token[i] >= 'a' && token[i] <= 'f')))
                        return false;
        return token[CODE_TOKEN_LEN] == '\0';
}

int code_token_new(char ret[static CODE_TOKEN_LEN + 1])
{
        static const char hex[] = "0123456789abcdef";
        uint8_t raw[CODE_TOKEN_LEN / 2];
        int r;

        r = sbx_random_bytes(raw, sizeof raw);
        if (r < 0)
                return r;
        for (size_t i = 0; i < sizeof raw; i++) {
                ret[2 * i] = hex[raw[i] >> 4];
                ret[2 * i + 1] = hex[raw[i] & 0xf];
        }
        ret[CODE_TOKEN_LEN] = '\0';
        return 0;
}

int code_request_build(uint64_t id, const char *code, size_t len, char **ret, size_t *ret_len)
{
        _cleanup_(json_decrefp) json_t *req = NULL;
        char *s;

        if ((!code && len > 0) || id > CODE_MAX_ID)
                return -EINVAL;
        if (len > SBX_MAX_JSON_BODY)
                return -SBX_E_TOO_LARGE;
        if (!utf8_valid(code ? code : "", len))
                return -EINVAL;
        req = json_pack("{s:I,s:s%}", "id", (json_int_t)id, "code", code ? code : "", len);
        if (!req)
                return -ENOMEM;
        /* compact, and JSON escapes every control char, so the line has exactly one '\n' */
        s = json_dumps(req, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        /* room for the '\n': dumps() gives strlen + 1 bytes; grow by one */
        size_t n = strlen(s);
        char *line = realloc(s, n + 2);
        if (!line) {
                free(s);
                return -ENOMEM;
        }
        line[n] = '\n';
        line[n + 1] = '\0';
        *ret = line;
        if (ret_len)
                *ret_len = n + 1;
        return 0;
}

/* ---- the demux ---- */

int code_demux_init(struct code_demux *d, const char *token)
{
        if (!d || !token || !token_valid(token))
                return -EINVAL;
        *d = (struct code_demux){ .max_marker = SBX_MAX_CODE_RESULT };
        memcpy(d->prefix, "\x1eSBX", 4);
        memcpy(d->prefix + 4, token, CODE_TOKEN_LEN);
        d->prefix[CODE_MARKER_PREFIX_LEN - 1] = ' ';
        return 0;
}

static void line_reset(struct code_demux_stream *s)
{
        if (s->line_cap > LINE_KEEP) {
                free(s->line);
                s->line = NULL;
                s->line_cap = 0;
        }
        s->line_len = 0;
        s->in_marker = false;
        s->too_large = false;
        s->dropped = 0;
}

void code_demux_done(struct code_demux *d)
{
        if (!d)
                return;
        for (size_t k = 0; k < _CODE_STREAM_MAX; k++) {
                struct code_demux_stream *s = &d->streams[k];

                for (size_t i = 0; i < s->n_pending; i++)
                        json_decref(s->pending[(s->first + i) % CODE_DEMUX_MAX_PENDING].json);
                free(s->line);
                *s = (struct code_demux_stream){};
        }
}

static void emit(const struct code_demux_callbacks *cb, enum code_stream stream, const char *buf, size_t len)
{
        if (len > 0 && cb && cb->output)
                cb->output(cb->userdata, stream, buf, len);
}

static void report(const struct code_demux_callbacks *cb, enum code_stream stream, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void report(const struct code_demux_callbacks *cb, enum code_stream stream, int code, const char *fmt, ...)
{
        char msg[SBX_ERR_MSG_MAX];
        va_list ap;

        if (!cb || !cb->error)
                return;
        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        cb->error(cb->userdata, stream, code, msg);
}

static const char *stream_name(enum code_stream stream)
{
        return stream == CODE_STDOUT ? "stdout" : "stderr";
}

/* Append to the marker being collected; past the limit, count instead of keeping. */
static void marker_append(struct code_demux *d, struct code_demux_stream *s, const char *buf, size_t len)
{
        if (s->too_large || len > d->max_marker - s->line_len) {
                s->too_large = true;
                s->dropped += len;
                return;
        }
        if (s->line_len + len > s->line_cap) {
                size_t cap = s->line_cap ? s->line_cap : 256;
                char *p;

                while (cap < s->line_len + len)
                        cap = cap > d->max_marker / 2 ? d->max_marker : cap * 2;
                p = realloc(s->line, cap);
                if (!p) {
                        /* refused like an over-limit marker (as -ENOMEM), never parsed in part */
                        s->too_large = true;
                        s->dropped += len;
                        return;
                }
                s->line = p;
                s->line_cap = cap;
        }
        memcpy(s->line + s->line_len, buf, len);
        s->line_len += len;
}

/* The id of a marker whose JSON starts like the drivers write it: {"id":N, */
static int marker_peek_id(const struct code_demux_stream *s, uint64_t *ret)
{
        static const char head[] = "{\"id\":";
        char digits[24];
        size_t n = sizeof head - 1, k = 0;

        if (s->line_len < n || memcmp(s->line, head, n) != 0)
                return -EBADMSG;
        while (n + k < s->line_len && k < sizeof digits - 1 && isdigit((unsigned char)s->line[n + k])) {
                digits[k] = s->line[n + k];
                k++;
        }
        digits[k] = '\0';
        if (n + k >= s->line_len || (s->line[n + k] != ',' && s->line[n + k] != '}'))
                return -EBADMSG;
        if (parse_u64(digits, ret) < 0 || *ret > CODE_MAX_ID)
                return -EBADMSG;
        return 0;
}

static bool is_string_or_null(const json_t *v)
{
        return v && (json_is_string(v) || json_is_null(v));
}

/* Check a parsed marker's shape; *ret_id on success, else a static message. */
static const char *marker_check(const json_t *j, enum code_stream stream, uint64_t *ret_id)
{
        const json_t *id = json_object_get(j, "id"), *ok, *error;

        if (!json_is_object(j))
                return "not a JSON object";
        if (!json_is_integer(id) || json_integer_value(id) < 0 || (uint64_t)json_integer_value(id) > CODE_MAX_ID)
                return "'id' is not a run id";
        *ret_id = (uint64_t)json_integer_value(id);
        if (stream == CODE_STDERR)
                return NULL;
        ok = json_object_get(j, "ok");
        error = json_object_get(j, "error");
        if (!json_is_boolean(ok))
                return "'ok' is not a boolean";
        if (!is_string_or_null(json_object_get(j, "output")))
                return "'output' is not a string or null";
        if (json_is_true(ok) ? !json_is_null(error) : !json_is_object(error))
                return "'error' does not go with 'ok'";
        if (json_is_object(error))
                for (const char *const *k = (const char *const[]){ "name", "value", "traceback", NULL }; *k; k++)
                        if (!json_is_string(json_object_get(error, *k)))
                                return "'error' lacks a name, value or traceback string";
        return NULL;
}

/* The stand-in for a marker that was too large (or met an allocation failure): the run ends
 * all the same. */
static json_t *marker_lost(enum code_stream stream, uint64_t id, uint64_t bytes, size_t limit, int code)
{
        char value[160];

        if (stream == CODE_STDERR)
                return json_pack("{s:I}", "id", (json_int_t)id);
        if (code == -ENOMEM)
                (void)snprintf(value, sizeof value, "no memory for the result of run %" PRIu64 " (%" PRIu64 " bytes)",
                               id, bytes);
        else
                (void)snprintf(value, sizeof value,
                               "the result of run %" PRIu64 " is %" PRIu64 " bytes, over the limit of %zu", id, bytes,
                               limit);
        return json_pack("{s:I,s:b,s:n,s:{s:s,s:s,s:s}}", "id", (json_int_t)id, "ok", 0, "output", "error", "name",
                         code == -ENOMEM ? "ResultLost" : "ResultTooLarge", "value", value, "traceback", "");
}

/* Pair the marker with the other stream's marker of the same run, or queue it. Takes json. */
static void marker_pair(struct code_demux *d, enum code_stream stream, uint64_t id, json_t *json,
                        const struct code_demux_callbacks *cb)
{
        enum code_stream other = stream == CODE_STDOUT ? CODE_STDERR : CODE_STDOUT;
        struct code_demux_stream *s = &d->streams[stream], *o = &d->streams[other];
        struct code_demux_pending head;

        if (stream == CODE_STDERR) {
                /* only the result (stdout) is kept; the end marker says nothing but its id */
                json_decref(json);
                json = NULL;
        }
        if (o->n_pending == 0) {
                if (s->n_pending == CODE_DEMUX_MAX_PENDING) {
                        report(cb, stream, -EBADMSG, "more than %d runs ended on %s and not on %s",
                               CODE_DEMUX_MAX_PENDING, stream_name(stream), stream_name(other));
                        json_decref(json);
                        return;
                }
                s->pending[(s->first + s->n_pending) % CODE_DEMUX_MAX_PENDING] =
                        (struct code_demux_pending){ .id = id, .json = json };
                s->n_pending++;
                return;
        }
        head = o->pending[o->first];
        o->first = (o->first + 1) % CODE_DEMUX_MAX_PENDING;
        o->n_pending--;
        if (head.id != id)
                report(cb, stream, -EBADMSG, "markers out of step: run %" PRIu64 " ended on %s, run %" PRIu64 " on %s",
                       head.id, stream_name(other), id, stream_name(stream));
        else if (cb && cb->done)
                cb->done(cb->userdata, id, json ? json : head.json);
        json_decref(head.json);
        json_decref(json);
}

/* A marker's '\n' arrived: parse, check and pair it. */
static void marker_end(struct code_demux *d, enum code_stream stream, const struct code_demux_callbacks *cb)
{
        struct code_demux_stream *s = &d->streams[stream];
        json_t *json = NULL;
        const char *why;
        uint64_t id = 0;

        if (s->too_large) {
                uint64_t bytes = s->line_len + s->dropped;
                int code = bytes > d->max_marker ? -SBX_E_TOO_LARGE : -ENOMEM;
                bool known = marker_peek_id(s, &id) >= 0;

                if (code == -ENOMEM)
                        report(cb, stream, code, "no memory for a marker on %s of %" PRIu64 " bytes",
                               stream_name(stream), bytes);
                else if (known)
                        report(cb, stream, code,
                               "marker of run %" PRIu64 " on %s of %" PRIu64 " bytes is over the limit of %zu", id,
                               stream_name(stream), bytes, d->max_marker);
                else
                        report(cb, stream, code, "marker on %s of %" PRIu64 " bytes is over the limit of %zu",
                               stream_name(stream), bytes, d->max_marker);
                json = known ? marker_lost(stream, id, bytes, d->max_marker, code) : NULL;
                if (!json)
                        goto out;
        } else {
                json_error_t e;

                /* NUL is fine: an exception's message may hold one */
                json = json_loadb(s->line ? s->line : "", s->line_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
                if (!json) {
                        report(cb, stream, -EBADMSG, "marker on %s is not JSON: %s", stream_name(stream), e.text);
                        goto out;
                }
                why = marker_check(json, stream, &id);
                if (why) {
                        report(cb, stream, -EBADMSG, "marker on %s: %s", stream_name(stream), why);
                        json_decref(json);
                        goto out;
                }
        }
        if (cb && cb->marker)
                cb->marker(cb->userdata, stream, id, json);
        marker_pair(d, stream, id, json, cb);
out:
        line_reset(s);
}

int code_demux_feed(struct code_demux *d, enum code_stream stream, const char *buf, size_t len,
                    const struct code_demux_callbacks *cb)
{
        struct code_demux_stream *s;
        size_t i = 0;

        if (!d || stream < 0 || stream >= _CODE_STREAM_MAX || (!buf && len > 0))
                return -EINVAL;
        s = &d->streams[stream];
        while (i < len) {
                if (s->in_marker) {
                        const char *nl = memchr(buf + i, '\n', len - i);
                        size_t n = nl ? (size_t)(nl - (buf + i)) : len - i;

                        marker_append(d, s, buf + i, n);
                        i += n;
                        if (!nl)
                                break;
                        i++;
                        marker_end(d, stream, cb);
                        continue;
                }
                if (s->matched > 0) {
                        while (i < len && s->matched < CODE_MARKER_PREFIX_LEN && buf[i] == d->prefix[s->matched]) {
                                s->matched++;
                                i++;
                        }
                        if (s->matched == CODE_MARKER_PREFIX_LEN) {
                                s->matched = 0;
                                s->in_marker = true;
                        } else if (i < len) {
                                /* not a marker (or another token): what was held back is output;
                                 * buf[i] is looked at again, it may start a marker itself */
                                emit(cb, stream, d->prefix, s->matched);
                                s->matched = 0;
                        }
                        continue;
                }
                const char *rs = memchr(buf + i, MARKER_START, len - i);
                size_t n = rs ? (size_t)(rs - (buf + i)) : len - i;

                emit(cb, stream, buf + i, n);
                i += n;
                if (rs) {
                        s->matched = 1;
                        i++;
                }
        }
        return 0;
}

int code_demux_end(struct code_demux *d, enum code_stream stream, const struct code_demux_callbacks *cb)
{
        struct code_demux_stream *s;

        if (!d || stream < 0 || stream >= _CODE_STREAM_MAX)
                return -EINVAL;
        s = &d->streams[stream];
        emit(cb, stream, d->prefix, s->matched);
        s->matched = 0;
        if (s->in_marker) {
                report(cb, stream, -EBADMSG, "marker on %s cut short by the end of the stream", stream_name(stream));
                line_reset(s);
        }
        return 0;
}

/* ---- languages ---- */

#define DETECT_MAX_BYTES (64 * 1024) /* a guess needs no more; bounds the work on 1 MiB of code */

enum {
        L_PYTHON,
        L_NODE,
        L_BASH,
        _L_MAX
};
static const char *const language_names[_L_MAX] = { "python", "node", "bash" };

enum match {
        M_START, /* the line (after its indentation) starts with text */
        M_ANY,   /* text anywhere in the line */
        M_WORD,  /* text as a whole word (not inside an identifier) */
        M_LINE,  /* the line is text (indentation and trailing blanks aside) */
        M_END,   /* the line ends with text */
};

/* One line's worth of evidence; special rules (imports, commands, blocks) are in score_line(). */
static const struct signal {
        uint8_t language;
        uint8_t match;
        uint8_t weight;
        const char *text;
} signals[] = {
        { L_PYTHON, M_START, 3, "def " },
        { L_PYTHON, M_START, 3, "async def " },
        { L_PYTHON, M_START, 3, "elif " },
        { L_PYTHON, M_START, 3, "except:" },
        { L_PYTHON, M_START, 3, "except " },
        { L_PYTHON, M_LINE, 3, "pass" },
        { L_PYTHON, M_LINE, 3, "try:" },
        { L_PYTHON, M_LINE, 3, "else:" },
        { L_PYTHON, M_LINE, 3, "finally:" },
        { L_PYTHON, M_START, 2, "raise " },
        { L_PYTHON, M_ANY, 2, "print(" },
        { L_PYTHON, M_ANY, 2, "__name__" },
        { L_PYTHON, M_ANY, 2, "lambda " },
        { L_PYTHON, M_ANY, 2, " not in " },
        { L_PYTHON, M_ANY, 2, "\"\"\"" },
        { L_PYTHON, M_ANY, 2, "'''" },
        { L_PYTHON, M_ANY, 1, "self." },
        { L_PYTHON, M_ANY, 1, " is not " },
        { L_PYTHON, M_ANY, 1, "range(" },
        { L_PYTHON, M_ANY, 1, "len(" },
        { L_PYTHON, M_WORD, 1, "None" },
        { L_PYTHON, M_WORD, 1, "True" },
        { L_PYTHON, M_WORD, 1, "False" },
        { L_PYTHON, M_START, 1, "@" },

        { L_NODE, M_ANY, 3, "console." },
        { L_NODE, M_ANY, 3, "require(" },
        { L_NODE, M_ANY, 3, "===" },
        { L_NODE, M_ANY, 3, "!==" },
        { L_NODE, M_ANY, 3, "module.exports" },
        { L_NODE, M_START, 3, "async function" },
        { L_NODE, M_START, 3, "export default" },
        { L_NODE, M_START, 3, "export const " },
        { L_NODE, M_START, 3, "export function" },
        { L_NODE, M_ANY, 2, "=>" },
        { L_NODE, M_ANY, 2, "function(" },
        { L_NODE, M_ANY, 2, "function (" },
        { L_NODE, M_START, 2, "function " },
        { L_NODE, M_ANY, 2, ".then(" },
        { L_NODE, M_ANY, 2, "process." },
        { L_NODE, M_START, 2, "//" },
        { L_NODE, M_START, 2, "/*" },
        { L_NODE, M_ANY, 2, "typeof " },
        { L_NODE, M_ANY, 2, "JSON." },
        { L_NODE, M_ANY, 2, "Math." },
        { L_NODE, M_ANY, 2, "catch (" },
        { L_NODE, M_ANY, 2, "catch(" },
        { L_NODE, M_ANY, 2, "} else" },
        { L_NODE, M_ANY, 2, "this." },
        { L_NODE, M_ANY, 2, ".forEach(" },
        { L_NODE, M_ANY, 2, "new Promise" },
        { L_NODE, M_ANY, 2, "Buffer." },
        { L_NODE, M_LINE, 2, "});" },
        { L_NODE, M_ANY, 2, "Object." },
        { L_NODE, M_ANY, 2, "Array." },
        { L_NODE, M_ANY, 2, "Promise." },
        { L_NODE, M_LINE, 1, "}" },
        { L_NODE, M_END, 1, ";" },
        { L_NODE, M_WORD, 1, "undefined" },
        { L_NODE, M_WORD, 1, "null" },
        { L_NODE, M_ANY, 1, "await " },
        { L_NODE, M_ANY, 1, "fetch(" },
        { L_NODE, M_START, 1, "case " },
        { L_NODE, M_ANY, 1, ".length" },

        { L_BASH, M_ANY, 3, "2>&1" },
        { L_BASH, M_ANY, 3, ">/dev/null" },
        { L_BASH, M_ANY, 3, "> /dev/null" },
        { L_BASH, M_LINE, 3, "fi" },
        { L_BASH, M_LINE, 3, "done" },
        { L_BASH, M_LINE, 3, "esac" },
        { L_BASH, M_LINE, 3, "then" },
        { L_BASH, M_LINE, 3, "do" },
        { L_BASH, M_END, 3, "; then" },
        { L_BASH, M_END, 3, "; do" },
        { L_BASH, M_ANY, 3, "; done" },
        { L_BASH, M_ANY, 3, "; fi" },
        { L_BASH, M_START, 3, "if [" },
        { L_BASH, M_START, 3, "set -" },
        { L_BASH, M_ANY, 2, "[[ " },
        { L_BASH, M_START, 2, "./" },
        { L_BASH, M_START, 2, "source " },
        { L_BASH, M_ANY, 2, "$(" },
        { L_BASH, M_ANY, 1, "&&" },
};

/* Commands that start a shell line (as a command: see command_at()). */
static const char *const shell_commands[] = {
        "echo", "ls",   "cd",   "pwd",    "mkdir", "rm",     "rmdir",    "cp",      "mv",    "cat",
        "grep", "sed",  "awk",  "curl",   "wget",  "apt",    "apt-get",  "pip",     "pip3",  "npm",
        "npx",  "yarn", "git",  "sudo",   "chmod", "chown",  "touch",    "which",   "head",  "tail",
        "wc",   "find", "tar",  "sleep",  "kill",  "ps",     "env",      "whoami",  "uname", "df",
        "du",   "ln",   "make", "printf", "unset", "date",   "sort",     "uniq",    "xargs", "tee",
        "cut",  "tr",   "jq",   "unzip",  "ping",  "docker", "python",   "python3", "node",  "bash",
        "sh",   "exit", "true", "false",  "test",  "id",     "hostname",
};
/* Modules python code names often: "np." etc. (after a non-identifier char) */
static const char *const python_modules[] = {
        "os",         "sys",    "np",       "pd",   "plt",     "asyncio",     "math",      "json",  "re",
        "subprocess", "random", "datetime", "time", "pathlib", "collections", "itertools", "torch", "requests",
};
static const char *const pipe_commands[] = {
        "grep", "sed", "awk", "head", "tail", "sort", "uniq", "wc", "xargs", "tee", "cut", "tr", "jq", "less", "cat",
};

static bool ident_char(char c)
{
        return isalnum((unsigned char)c) || c == '_' || c == '$';
}

static bool starts(const char *p, size_t n, const char *text)
{
        size_t k = strlen(text);

        return n >= k && memcmp(p, text, k) == 0;
}

static bool ends(const char *p, size_t n, const char *text)
{
        size_t k = strlen(text);

        return n >= k && memcmp(p + n - k, text, k) == 0;
}

static bool has(const char *p, size_t n, const char *text)
{
        return memmem(p, n, text, strlen(text)) != NULL;
}

static bool has_word(const char *p, size_t n, const char *word)
{
        size_t k = strlen(word);

        for (const char *q = p; (q = memmem(q, n - (size_t)(q - p), word, k)); q++)
                if ((q == p || !ident_char(q[-1])) && (q + k == p + n || !ident_char(q[k])))
                        return true;
        return false;
}

/* name followed by '.', not inside an identifier: a module's attribute */
static bool has_word_dot(const char *p, size_t n, const char *name)
{
        size_t k = strlen(name);

        for (const char *q = p; (q = memmem(q, n - (size_t)(q - p), name, k)); q++)
                if ((q == p || (!ident_char(q[-1]) && q[-1] != '.')) && q + k < p + n && q[k] == '.')
                        return true;
        return false;
}

/* The first word of the line is cmd, used as a command: followed by nothing, a blank or a shell
 * operator, and not by '=' or '(' (an assignment or a call in python or node). */
static bool command_at(const char *p, size_t n, const char *cmd)
{
        size_t k = strlen(cmd), j;

        if (!starts(p, n, cmd))
                return false;
        if (k == n)
                return true;
        if (p[k] != ' ' && p[k] != '\t' && p[k] != ';' && p[k] != '|' && p[k] != '&' && p[k] != '>')
                return false;
        for (j = k; j < n && (p[j] == ' ' || p[j] == '\t'); j++)
                ;
        return j == n || (p[j] != '=' && p[j] != '(' && p[j] != '.');
}

static size_t indent_of(const char *p, size_t n)
{
        size_t i = 0;

        while (i < n && (p[i] == ' ' || p[i] == '\t'))
                i++;
        return i;
}

/* The next line after end that is not blank, or NULL; its indentation in *ret_indent. */
static const char *next_line(const char *end, const char *stop, size_t *ret_indent)
{
        for (const char *p = end; p < stop;) {
                const char *nl = memchr(p, '\n', (size_t)(stop - p));
                size_t n = nl ? (size_t)(nl - p) : (size_t)(stop - p), ind = indent_of(p, n);

                if (ind < n && p[ind] != '\r') {
                        *ret_indent = ind;
                        return p;
                }
                if (!nl)
                        break;
                p = nl + 1;
        }
        return NULL;
}

/* Add one line's evidence; line is the text after indent blanks, n bytes without trailing blanks. */
static void score_line(const char *line, size_t n, size_t indent, const char *after, const char *stop,
                       int score[_L_MAX])
{
        size_t next_indent;

        for (size_t i = 0; i < ELEMENTSOF(signals); i++) {
                const struct signal *s = &signals[i];
                bool hit = false;

                switch (s->match) {
                case M_START:
                        hit = starts(line, n, s->text);
                        break;
                case M_ANY:
                        hit = has(line, n, s->text);
                        break;
                case M_WORD:
                        hit = has_word(line, n, s->text);
                        break;
                case M_LINE:
                        hit = n == strlen(s->text) && memcmp(line, s->text, n) == 0;
                        break;
                case M_END:
                        hit = ends(line, n, s->text);
                        break;
                }
                if (hit)
                        score[s->language] += s->weight;
        }

        /* imports: python's name modules, ES modules name a quoted path or a brace list */
        if (starts(line, n, "import ")) {
                if (has(line, n, " from '") || has(line, n, " from \"") || starts(line, n, "import {") ||
                    starts(line, n, "import * as") || has(line, n, "require("))
                        score[L_NODE] += 3;
                else
                        score[L_PYTHON] += 3;
        }
        if (starts(line, n, "from ") && has(line, n, " import "))
                score[L_PYTHON] += 3;

        for (size_t i = 0; i < ELEMENTSOF(python_modules); i++)
                if (has_word_dot(line, n, python_modules[i])) {
                        score[L_PYTHON] += 1;
                        break;
                }

        /* declarations: const x = / let {a} = ... */
        for (const char *const *kw = (const char *const[]){ "const ", "let ", "var ", NULL }; *kw; kw++) {
                size_t k = strlen(*kw);

                if (starts(line, n, *kw) && n > k && (ident_char(line[k]) || line[k] == '{' || line[k] == '['))
                        score[L_NODE] += 2;
        }

        /* shell commands, "export NAME=", pipes into filters, $VAR */
        for (size_t i = 0; i < ELEMENTSOF(shell_commands); i++)
                if (command_at(line, n, shell_commands[i])) {
                        score[L_BASH] += 3;
                        break;
                }
        if (starts(line, n, "export ") && n > 7 && !starts(line, n, "export default") &&
            !starts(line, n, "export const") && !starts(line, n, "export function") && !starts(line, n, "export class"))
                score[L_BASH] += 3;
        for (const char *q = line; (q = memmem(q, n - (size_t)(q - line), " | ", 3)); q += 3) {
                const char *cmd = q + 3;
                size_t left = n - (size_t)(cmd - line);
                bool filter = false;

                for (size_t i = 0; i < ELEMENTSOF(pipe_commands); i++)
                        if (command_at(cmd, left, pipe_commands[i]))
                                filter = true;
                score[L_BASH] += filter ? 3 : 1;
                break;
        }
        for (size_t i = 0; i + 1 < n; i++)
                if (line[i] == '$' &&
                    (isalpha((unsigned char)line[i + 1]) || strchr("_{?#@!0123456789", line[i + 1]))) {
                        score[L_BASH] += 2;
                        break;
                }
        if (has(line, n, "`") && has(line, n, "${"))
                score[L_NODE] += 2;

        /* new Date(), .toUpperCase(): constructors and camelCase methods */
        for (size_t i = 0; i + 5 < n; i++)
                if ((i == 0 || !ident_char(line[i - 1])) && memcmp(line + i, "new ", 4) == 0 &&
                    isupper((unsigned char)line[i + 4])) {
                        score[L_NODE] += 2;
                        break;
                }
        for (size_t i = 0; i + 2 < n; i++)
                if (line[i] == '.' && islower((unsigned char)line[i + 1])) {
                        size_t j = i + 1;
                        bool upper = false;

                        while (j < n && ident_char(line[j]))
                                upper |= isupper((unsigned char)line[j++]) != 0;
                        if (upper && j < n && line[j] == '(') {
                                score[L_NODE] += 1;
                                break;
                        }
                }

        /* NAME=value is the shell's assignment, NAME = value (undeclared) python's; name() { at
         * column 0 a shell function */
        if (n > 0 && (isalpha((unsigned char)line[0]) || line[0] == '_')) {
                size_t i = 1;

                while (i < n && (isalnum((unsigned char)line[i]) || line[i] == '_'))
                        i++;
                if (i < n && line[i] == '=' && (i + 1 == n || line[i + 1] != '='))
                        score[L_BASH] += 1;
                if (i + 2 < n && line[i] == ' ' && line[i + 1] == '=' && line[i + 2] == ' ')
                        score[L_PYTHON] += 1;
                if (indent == 0 && starts(line + i, n - i, "() {"))
                        score[L_BASH] += 3;
        }

        /* a block: "...:" followed by a more indented line (a switch's case is node's) */
        if (n > 1 && line[n - 1] == ':') {
                if (starts(line, n, "case ") || starts(line, n, "default"))
                        score[L_NODE] += 1;
                else if (next_line(after, stop, &next_indent) && next_indent > indent)
                        score[L_PYTHON] += 3;
        }
}

/* "#!/usr/bin/env python3", "#!/bin/bash": the interpreter's language, or -1. */
static int shebang_language(const char *line, size_t n)
{
        const char *p = line + 2, *end = line + n, *word;
        size_t k;

        while (p < end && (*p == ' ' || *p == '\t'))
                p++;
        for (bool env = false;;) {
                word = p;
                while (p < end && *p != ' ' && *p != '\t')
                        p++;
                k = (size_t)(p - word);
                for (const char *slash; (slash = memchr(word, '/', k));) {
                        k -= (size_t)(slash + 1 - word);
                        word = slash + 1;
                }
                while (p < end && (*p == ' ' || *p == '\t'))
                        p++;
                if (!env && k == 3 && memcmp(word, "env", 3) == 0) {
                        env = true;
                        /* env's options (-S, -i) come before the interpreter */
                        while (p < end && *p == '-') {
                                while (p < end && *p != ' ' && *p != '\t')
                                        p++;
                                while (p < end && (*p == ' ' || *p == '\t'))
                                        p++;
                        }
                        continue;
                }
                break;
        }
        if (k >= 6 && memcmp(word, "python", 6) == 0)
                return L_PYTHON;
        if ((k == 4 && memcmp(word, "node", 4) == 0) || (k == 6 && memcmp(word, "nodejs", 6) == 0))
                return L_NODE;
        for (const char *const *sh = (const char *const[]){ "bash", "sh", "dash", "zsh", "ksh", "ash", NULL }; *sh;
             sh++)
                if (k == strlen(*sh) && memcmp(word, *sh, k) == 0)
                        return L_BASH;
        return -1;
}

const char *code_detect_language(const char *code, size_t len)
{
        int score[_L_MAX] = {}, best = L_PYTHON;
        const char *stop;

        if (!code)
                return language_names[L_PYTHON];
        stop = code + (len > DETECT_MAX_BYTES ? DETECT_MAX_BYTES : len);
        for (const char *p = code; p < stop;) {
                const char *nl = memchr(p, '\n', (size_t)(stop - p)), *after = nl ? nl + 1 : stop;
                size_t n = nl ? (size_t)(nl - p) : (size_t)(stop - p), indent;

                if (p == code && starts(p, n, "#!")) {
                        int l = shebang_language(p, n);

                        if (l >= 0)
                                return language_names[l];
                        p = after;
                        continue;
                }
                indent = indent_of(p, n);
                while (n > indent && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
                        n--;
                /* blank lines say nothing; '#' starts a comment in python and bash alike */
                if (n > indent && p[indent] != '#')
                        score_line(p + indent, n - indent, indent, after, stop, score);
                p = after;
        }
        for (int l = L_NODE; l < _L_MAX; l++)
                if (score[l] > score[best])
                        best = l;
        for (int l = 0; l < _L_MAX; l++)
                if (l != best && score[l] == score[best])
                        return language_names[L_PYTHON];
        return language_names[best];
}

static const struct {
        const char *name;
        const char *language;
} language_aliases[] = {
        { "python", "python" },   { "python3", "python" }, { "py", "python" }, { "node", "node" }, { "nodejs", "node" },
        { "javascript", "node" }, { "js", "node" },        { "bash", "bash" }, { "sh", "bash" },   { "shell", "bash" },
};

const char *code_language_parse(const char *name)
{
        if (!name)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(language_aliases); i++)
                if (strcasecmp(name, language_aliases[i].name) == 0)
                        return language_aliases[i].language;
        return NULL;
}

const char *code_driver_source(const char *language)
{
        const char *l = code_language_parse(language);

        if (!l)
                return NULL;
        if (strcmp(l, "python") == 0)
                return code_driver_python;
        if (strcmp(l, "node") == 0)
                return code_driver_node;
        return NULL;
}
