/* An HTTP response on its way out: the body kept by the connection until
 * lws can write it, headers now or with the body. The layer below the
 * request handlers (http.c, api.c), which both answer through it. */
#include "gateway.h"

#include <stdlib.h>
#include <string.h>

/* A response body with lws_write headroom; owned by the connection. */
struct gw_http_resp {
    bool headers_due; /* the headers still wait for the writeable callback */
    unsigned status;
    const char *ctype; /* static */
    size_t len;
    unsigned char buf[]; /* LWS_PRE, then len bytes */
};

void gw_http_free(gw_conn *c)
{
    if (c == NULL)
        return;
    free(c->http);
    c->http = NULL;
}

static int http_headers(struct lws *wsi, unsigned status, const char *ctype, size_t len)
{
    unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start;
    unsigned char *end = hdr + sizeof hdr - 1;
    if (lws_add_http_common_headers(wsi, status, ctype, len, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    return 0;
}

int gw_http_respond(gw_conn *c, struct lws *wsi, unsigned status, const char *ctype,
                    const char *body, size_t len, bool now)
{
    gw_http_free(c);
    c->http = malloc(sizeof *c->http + LWS_PRE + len);
    if (c->http == NULL)
        return -1;
    c->http->headers_due = !now;
    c->http->status = status;
    c->http->ctype = ctype;
    c->http->len = len;
    memcpy(c->http->buf + LWS_PRE, body, len);
    if (now && http_headers(wsi, status, ctype, len) != 0)
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

int gw_http_writeable(gw_server *s, gw_conn *c, struct lws *wsi)
{
    if (c == NULL || c->http == NULL)
        return 0;
    if (c->http->headers_due) {
        /* An answer that came later: headers now, the body next time. */
        c->http->headers_due = false;
        if (http_headers(wsi, c->http->status, c->http->ctype, c->http->len) != 0)
            return -1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    size_t len = c->http->len;
    int n = lws_write(wsi, c->http->buf + LWS_PRE, len, LWS_WRITE_HTTP_FINAL);
    gw_http_free(c);
    if (n < 0 || (size_t)n != len)
        return -1;
    /* Keep-alive: the connection waits for its next request. */
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}
