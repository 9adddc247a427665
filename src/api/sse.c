// SPDX-License-Identifier: Apache-2.0
/*
 * Server-Sent Events formatting (text/event-stream, server.h, server-internal.h): turns an event
 * (event name, id, data) or a comment into its wire bytes with snprintf-like bounds. It is pure:
 * no streams, no libmicrohttpd, no allocation, no logging. Queueing the bytes on a stream is
 * server.c's job (http_sse_send, http_sse_comment), and so is refusing CR or LF in event and id.
 */
#include "api/server-internal.h"

#include <string.h>

#include "api/server.h"

/* Bounded writer for the SSE formatter: counts every byte, stores those that fit. */
struct sse_out {
        char *buf;
        size_t size, n;
};

static void sse_put(struct sse_out *o, const char *p, size_t len)
{
        if (o->n < o->size) {
                size_t k = o->size - o->n < len ? o->size - o->n : len;

                memcpy(o->buf + o->n, p, k);
        }
        o->n += len;
}

/* "name: value\n" with CR and LF left out of value (they would end the field). */
static void sse_field(struct sse_out *o, const char *name, const char *value)
{
        sse_put(o, name, strlen(name));
        while (*value) {
                size_t k = strcspn(value, "\r\n");

                sse_put(o, value, k);
                value += k;
                value += strspn(value, "\r\n");
        }
        sse_put(o, "\n", 1);
}

/* "prefix LINE\n" for every line of text; \n, \r\n and \r end a line; "" is one empty line. */
static void sse_lines(struct sse_out *o, const char *prefix, const char *text)
{
        for (;;) {
                size_t k = strcspn(text, "\r\n");

                sse_put(o, prefix, strlen(prefix));
                sse_put(o, text, k);
                sse_put(o, "\n", 1);
                text += k;
                if (*text == '\0')
                        return;
                text += (text[0] == '\r' && text[1] == '\n') ? 2 : 1;
        }
}

size_t server__sse_format_event(char *buf, size_t size, const char *event, const char *id, const char *data)
{
        struct sse_out o = { .buf = buf, .size = size };

        if (event)
                sse_field(&o, "event: ", event);
        if (id)
                sse_field(&o, "id: ", id);
        if (data)
                sse_lines(&o, "data: ", data);
        sse_put(&o, "\n", 1);
        return o.n;
}

size_t server__sse_format_comment(char *buf, size_t size, const char *text)
{
        struct sse_out o = { .buf = buf, .size = size };

        sse_lines(&o, ": ", text ?: "");
        sse_put(&o, "\n", 1);
        return o.n;
}

size_t http_sse_format(char *buf, size_t size, const char *event, const char *id, const char *data)
{
        size_t n = server__sse_format_event(buf, size ? size - 1 : 0, event, id, data);

        if (size > 0)
                buf[n < size - 1 ? n : size - 1] = '\0';
        return n;
}
