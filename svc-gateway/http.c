/* Plain HTTP on the WebSocket port: health, readiness, metrics and the web
 * client's static files. Small dynamic bodies are built at once and written
 * in LWS_CALLBACK_HTTP_WRITEABLE; files go through lws_serve_http_file. */
#include "gateway.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat/log.h"

static int http_respond(gw_conn *c, struct lws *wsi, unsigned status, const char *ctype,
                        const char *body, size_t len)
{
    return gw_http_respond(c, wsi, status, ctype, body, len, true);
}

static int http_text(gw_conn *c, struct lws *wsi, unsigned status, const char *text)
{
    return http_respond(c, wsi, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* The services without a connected replica, as a JSON list's items.
 * Returns the length written (0: none missing). */
static size_t http_missing(gw_server *s, char *out, size_t cap)
{
    size_t m = 0;
    out[0] = '\0';
    for (int i = 0; i < GW_SVC_COUNT; i++)
        if (!gw_backend_ready(s->be, (gw_svc)i))
            m += (size_t)snprintf(out + m, cap - m, "%s\"%s\"", m ? "," : "",
                                  gw_svc_name((gw_svc)i));
    return m;
}

bool gw_http_ready(gw_server *s)
{
    char missing[128];
    return !s->drain.on && http_missing(s, missing, sizeof missing) == 0;
}

/* 200 once every service has a connected replica and every event
 * publisher is connected, and the gateway is not draining; otherwise 503
 * naming what is missing (and "draining":true). */
static int http_readyz(gw_server *s, gw_conn *c, struct lws *wsi)
{
    char missing[128];
    size_t m = http_missing(s, missing, sizeof missing);
    bool ready = m == 0 && !s->drain.on;
    char body[256];
    int n =
        snprintf(body, sizeof body, "{\"ready\":%s,\"missing\":[%s]%s}\n",
                 ready ? "true" : "false", missing, s->drain.on ? ",\"draining\":true" : "");
    return http_respond(c, wsi, ready ? 200 : 503, "application/json", body, (size_t)n);
}

static int http_metrics(gw_server *s, gw_conn *c, struct lws *wsi)
{
    size_t len = 0;
    char *text = gw_metrics_render(s, &len);
    if (text == NULL)
        return http_text(c, wsi, 500, "out of memory\n");
    int rv = http_respond(c, wsi, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return rv;
}

static const char *http_mime(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".webmanifest", "application/manifest+json"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot != NULL && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* Only plain names: no '/', no "..", no hidden files. */
static bool http_name_ok(const char *name)
{
    if (name[0] == '\0' || name[0] == '.' || strlen(name) > 128)
        return false;
    for (const char *p = name; *p != '\0'; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static int http_static(gw_server *s, gw_conn *c, struct lws *wsi, const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    if (!http_name_ok(name) ||
        (size_t)snprintf(path, sizeof path, "%s/%s", s->cfg->web_dir, name) >= sizeof path ||
        stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return http_text(c, wsi, 404, "not found\n");
    int n = lws_serve_http_file(wsi, path, http_mime(name), NULL, 0);
    /* > 0: sent completely; the transaction ends here. */
    if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi)))
        return -1;
    return 0;
}

int gw_http_request(gw_server *s, gw_conn *c, struct lws *wsi, const char *path)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
        /* A body may follow; rather than skip it, answer and hang up. */
        lws_return_http_status(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, NULL);
        return -1;
    }
    if (path == NULL || path[0] != '/')
        return http_text(c, wsi, 404, "not found\n");
    if (strcmp(path, "/healthz") == 0)
        return http_text(c, wsi, 200, "ok");
    if (strcmp(path, "/readyz") == 0)
        return http_readyz(s, c, wsi);
    if (strcmp(path, "/metrics") == 0)
        return http_metrics(s, c, wsi);
    if (strcmp(path, "/") == 0)
        return http_static(s, c, wsi, "index.html");
    if (strncmp(path, "/api/", 5) == 0)
        return gw_api_request(s, c, wsi, path);
    /* /ws without an upgrade, anything else. */
    return http_static(s, c, wsi, path + 1);
}
