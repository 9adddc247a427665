// SPDX-License-Identifier: Apache-2.0
/*
 * Printing for the CLI (see output.h) and cli_err_set(). Everything that came from the server
 * goes through put_clean(), which replaces C0/C1 control characters so a reply cannot move the
 * cursor or retitle the terminal. No network, no option parsing.
 */
#include "output.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_err_set(struct cli_err *err, int code, const char *fmt, ...)
{
        va_list ap;

        if (!err || err->code != 0)
                return code;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        return code;
}

/* Length of the control byte sequence at p (C0, DEL, or C1 encoded as UTF-8), or 0. */
static size_t control_len(const unsigned char *p)
{
        if (*p < 0x20 || *p == 0x7f)
                return 1;
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
                return 2;
        return 0;
}

/* Columns s takes once cleaned: one per character (UTF-8 continuation bytes are not counted). */
static size_t clean_width(const char *s)
{
        size_t w = 0;

        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                size_t k = control_len(p);

                if (k) {
                        w++;
                        p += k;
                        continue;
                }
                if ((*p & 0xc0) != 0x80)
                        w++;
                p++;
        }
        return w;
}

static void put_clean(FILE *f, const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                size_t k = control_len(p);

                if (k) {
                        fputc('?', f);
                        p += k;
                        continue;
                }
                fputc(*p, f);
                p++;
        }
}

static int output_dump(const json_t *v, size_t flags)
{
        if (json_dumpf(v, stdout, flags | JSON_ENCODE_ANY) < 0 || fputc('\n', stdout) == EOF)
                return -EIO;
        return 0;
}

int output_json(const json_t *v)
{
        return output_dump(v, JSON_COMPACT);
}

int output_json_pretty(const json_t *v)
{
        return output_dump(v, JSON_INDENT(2));
}

void output_line(const char *s)
{
        put_clean(stdout, s);
        fputc('\n', stdout);
}

static const char *const table_keys[] = { "id", "name", "state", "template", "createdAt" };
static const char *const table_heads[] = { "ID", "NAME", "STATE", "TEMPLATE", "CREATED" };

static const char *cell(const json_t *sandbox, size_t col)
{
        const char *s = json_string_value(json_object_get(sandbox, table_keys[col]));

        return s && *s ? s : "-";
}

static void put_row(const char *const *cells, const size_t *widths, size_t ncols)
{
        for (size_t i = 0; i < ncols; i++) {
                put_clean(stdout, cells[i]);
                if (i + 1 == ncols)
                        break;
                /* pad to the column width plus a two-space gutter; no trailing blanks on the last column */
                for (size_t w = clean_width(cells[i]); w < widths[i] + 2; w++)
                        fputc(' ', stdout);
        }
        fputc('\n', stdout);
}

void output_sandbox_table(const json_t *sandboxes)
{
        size_t widths[ELEMENTSOF(table_keys)];
        const char *cells[ELEMENTSOF(table_keys)];
        const json_t *sb;
        size_t i;

        for (size_t c = 0; c < ELEMENTSOF(table_keys); c++)
                widths[c] = strlen(table_heads[c]);
        json_array_foreach(sandboxes, i, sb)
                for (size_t c = 0; c < ELEMENTSOF(table_keys); c++) {
                        size_t w = clean_width(cell(sb, c));

                        if (w > widths[c])
                                widths[c] = w;
                }

        put_row(table_heads, widths, ELEMENTSOF(table_keys));
        json_array_foreach(sandboxes, i, sb) {
                for (size_t c = 0; c < ELEMENTSOF(table_keys); c++)
                        cells[c] = cell(sb, c);
                put_row(cells, widths, ELEMENTSOF(table_keys));
        }
}

void output_errorf(const char *fmt, ...)
{
        char msg[SBX_CLI_ERR_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        (void)fflush(stdout); /* keep the order of what was printed before */
        fputs("sbx: ", stderr);
        put_clean(stderr, msg);
        fputc('\n', stderr);
}

int output_write_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t k = write(fd, p, n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}
