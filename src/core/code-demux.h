/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Code runs, the pure side (docs/internals/code.md): splitting an interpreter driver's stdout and
 * stderr into the user's bytes and the driver's end/result markers, building request lines,
 * guessing a snippet's language and handing out the driver sources. No I/O, no processes, no
 * logging: sbxd's process code (core/code.c) feeds the bytes it reads and acts on the callbacks.
 * Not thread-safe: one demux belongs to the one driver process it reads.
 */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CODE_TOKEN_LEN 32                               /* hex chars of SBX_CODE_TOKEN */
#define CODE_MARKER_PREFIX_LEN (4 + CODE_TOKEN_LEN + 1) /* "\x1eSBX" token " " */
#define CODE_DEMUX_MAX_PENDING 16                       /* markers of one stream waiting for the other's */
#define CODE_MAX_ID ((UINT64_C(1) << 53) - 1)           /* run ids: exact in a JavaScript number */

enum code_stream {
        CODE_STDOUT,
        CODE_STDERR,
        _CODE_STREAM_MAX,
        _CODE_STREAM_INVALID = -EINVAL,
};

/*
 * What a demux reports, all optional (NULL = not interested). Called from inside
 * code_demux_feed()/code_demux_end() only, which they must not re-enter, and they must not
 * release the demux. JSON passed in is borrowed for the call (json_incref() to keep it).
 */
struct code_demux_callbacks {
        void *userdata;
        /* len > 0 bytes of user output on stream, in order, as soon as they are known not to be
         * part of a marker (at most CODE_MARKER_PREFIX_LEN - 1 bytes are held back) */
        void (*output)(void *userdata, enum code_stream stream, const char *buf, size_t len);
        /* a complete, valid marker on stream: the end marker {"id"} on stderr, the result on stdout */
        void (*marker)(void *userdata, enum code_stream stream, uint64_t id, const json_t *json);
        /* both markers of run id have arrived: the run is over and every byte of user output the
         * driver wrote before them has been passed to output(). result is the stdout marker:
         * {"id", "ok": bool, "output": string|null, "error": null|{"name","value","traceback"}},
         * checked to have that shape */
        void (*done)(void *userdata, uint64_t id, const json_t *result);
        /* a marker was refused: -SBX_E_TOO_LARGE (JSON over SBX_MAX_CODE_RESULT; the bytes were
         * dropped, and if its id was readable the run still ends with done() and a result
         * {"ok": false, "error": {"name": "ResultTooLarge", ...}}; -ENOMEM likewise with
         * "ResultLost" if its buffer could not grow), or -EBADMSG (bad JSON or shape,
         * cut short by the end of the stream, ids of the two streams out of step, more than
         * CODE_DEMUX_MAX_PENDING waiting): the driver is broken and should be killed */
        void (*error)(void *userdata, enum code_stream stream, int code, const char *msg);
};

struct code_demux_pending {
        uint64_t id;
        json_t *json; /* owned; the result (stdout) or NULL (stderr) */
};

struct code_demux_stream {
        size_t matched;   /* bytes of the marker prefix at the end of what was fed: held back */
        bool in_marker;   /* after a prefix, collecting the JSON up to '\n' */
        bool too_large;   /* ... which passed the limit: dropping bytes up to '\n' */
        uint64_t dropped; /* bytes dropped of that marker */
        char *line;       /* the marker's JSON so far; malloc'd, at most SBX_MAX_CODE_RESULT bytes */
        size_t line_len, line_cap;
        struct code_demux_pending pending[CODE_DEMUX_MAX_PENDING]; /* a ring */
        size_t first, n_pending;
};

struct code_demux {
        char prefix[CODE_MARKER_PREFIX_LEN]; /* "\x1eSBX<token> ", not NUL-terminated */
        size_t max_marker;                   /* SBX_MAX_CODE_RESULT; tests lower it */
        struct code_demux_stream streams[_CODE_STREAM_MAX];
};

/* Fill ret with a new random token: CODE_TOKEN_LEN lowercase hex chars and a NUL. 0 or -errno. */
int code_token_new(char ret[static CODE_TOKEN_LEN + 1]);

/* Initialise d for a driver started with SBX_CODE_TOKEN=token (CODE_TOKEN_LEN lowercase hex
 * chars, else -EINVAL). Nothing allocated yet; pair with code_demux_done(). */
int code_demux_init(struct code_demux *d, const char *token);
/* Release what d holds (partial markers, results waiting for their pair). NULL-safe. */
void code_demux_done(struct code_demux *d);

/*
 * Feed len bytes read from the driver's stream. Passes user bytes to cb->output as they arrive,
 * and reports markers, finished runs and refused markers through cb (see above). A marker may
 * follow user output on the same line and may be split anywhere across feeds. Returns 0, or
 * -EINVAL for a bad stream or buffer (then no callback was called).
 */
int code_demux_feed(struct code_demux *d, enum code_stream stream, const char *buf, size_t len,
                    const struct code_demux_callbacks *cb);
/* The stream reached its end: bytes held back are output after all; a marker cut short is an
 * -EBADMSG error. Returns 0 or -EINVAL. */
int code_demux_end(struct code_demux *d, enum code_stream stream, const struct code_demux_callbacks *cb);

/*
 * The request line for a run: {"id":id,"code":"..."} and '\n', malloc'd in *ret (NUL-terminated,
 * *ret_len bytes without the NUL). -EINVAL if code is not valid UTF-8 or id > CODE_MAX_ID,
 * -SBX_E_TOO_LARGE beyond SBX_MAX_JSON_BODY bytes of code, -ENOMEM.
 */
int code_request_build(uint64_t id, const char *code, size_t len, char **ret, size_t *ret_len);

/*
 * Guess the language of a snippet: "python", "node" or "bash" (static strings). A shebang line
 * decides first; otherwise each line scores signals of each language and the highest total wins,
 * ties going to python. The rules are listed in docs/internals/code.md. Looks at the first 64 KiB.
 */
const char *code_detect_language(const char *code, size_t len);

/* The canonical language for a name or alias (case-insensitive): python, python3, py -> "python";
 * node, nodejs, javascript, js -> "node"; bash, sh, shell -> "bash". NULL for anything else. */
const char *code_language_parse(const char *name);

/* The driver source for a language (a name code_language_parse() accepts): the text sbxd passes
 * as `python3 -u -c <source>` or `node -e <source>`. NULL for bash and unknown names: those
 * have no driver (a run without a context needs none). */
const char *code_driver_source(const char *language);
