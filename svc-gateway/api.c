/* The REST API: GET /api/conversations/{id}/messages?before=SEQ&limit=N
 * with "Authorization: Bearer TOKEN" -> the history page as JSON.
 *
 * Checks that need nothing but the request (token, parameters) answer at
 * once; otherwise the connection waits in gw_server.api_waiting (by id,
 * like a WebSocket request) for svc-message's reply, and the response is
 * written from the writeable callback when it comes. lws never blocks. */
#include "gateway.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat/log.h"

#define API_PREFIX "/api/conversations/"
#define API_SUFFIX "/messages"
#define API_ARG_MAX 64

bool gw_api_history_path(const char *path, char conv[GW_ID_MAX + 1])
{
    size_t np = strlen(API_PREFIX), ns = strlen(API_SUFFIX), n = strlen(path);
    if (n <= np + ns || strncmp(path, API_PREFIX, np) != 0 ||
        strcmp(path + n - ns, API_SUFFIX) != 0)
        return false;
    size_t len = n - np - ns;
    if (len > GW_ID_MAX || memchr(path + np, '/', len) != NULL)
        return false;
    memcpy(conv, path + np, len);
    conv[len] = '\0';
    return true;
}

bool gw_api_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (text[0] == '\0')
        return false;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

const char *gw_api_bearer(const char *header)
{
    /* The scheme is case-insensitive (RFC 9110); the token is not. */
    if (strncasecmp(header, "Bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t'))
        return NULL;
    const char *tok = header + 6;
    while (*tok == ' ' || *tok == '\t')
        tok++;
    return *tok != '\0' ? tok : NULL;
}

unsigned gw_api_status(gw_err e)
{
    switch (e) {
    case GW_E_BAD_REQUEST: return 400;
    case GW_E_UNAUTHORIZED: return 401;
    case GW_E_NOT_MEMBER: return 403;
    case GW_E_NOT_FOUND: return 404;
    case GW_E_RATE_LIMITED: return 429;
    case GW_E_UNAVAILABLE: return 503;
    default: return 500;
    }
}

/* Answers with {"error":CODE} now (inside LWS_CALLBACK_HTTP). */
static int api_error_now(gw_conn *c, struct lws *wsi, gw_err e)
{
    gw_frame *f = gw_render_rest_error(e, -1);
    if (f == NULL)
        return -1;
    int rv = gw_http_respond(c, wsi, gw_api_status(e), "application/json", gw_frame_data(f),
                             f->len, true);
    gw_frame_unref(f);
    return rv;
}

/* The user of a valid bearer token, or false (also for a banned user:
 * like a connect, a REST call is refused while the ban lasts). */
static bool api_user(gw_server *s, struct lws *wsi, char user[CHAT_UUID_LEN + 1])
{
    char hdr[GW_TOKEN_MAX + 32];
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 0 || (size_t)n >= sizeof hdr ||
        lws_hdr_copy(wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        return false;
    const char *tok = gw_api_bearer(hdr);
    if (tok == NULL ||
        gw_token_verify(s->cfg->session_secret, tok, chat_now_ms() / 1000, user) != 0)
        return false;
    if (!gw_banned(s, user))
        return true;
    s->m.ban_refused++;
    chat_info("api_refused", "user=%s reason=banned", user);
    return false;
}

/* An optional query argument: true when absent or a valid integer. */
static bool api_arg(struct lws *wsi, const char *name, uint64_t min, uint64_t max,
                    uint64_t *out)
{
    char buf[API_ARG_MAX];
    const char *v = lws_get_urlarg_by_name(wsi, name, buf, sizeof buf);
    return v == NULL || gw_api_uint(v, min, max, out);
}

int gw_api_request(gw_server *s, gw_conn *c, struct lws *wsi, const char *path)
{
    char conv[GW_ID_MAX + 1], user[CHAT_UUID_LEN + 1];
    if (!gw_api_history_path(path, conv))
        return api_error_now(c, wsi, GW_E_NOT_FOUND);
    if (!api_user(s, wsi, user))
        return api_error_now(c, wsi, GW_E_UNAUTHORIZED);
    uint64_t before = 0, limit = 0;
    if (!api_arg(wsi, "before=", 1, 9007199254740992ULL, &before) ||
        !api_arg(wsi, "limit=", 1, GW_HISTORY_MAX, &limit))
        return api_error_now(c, wsi, GW_E_BAD_REQUEST);

    Chat__HistoryReq r = CHAT__HISTORY_REQ__INIT;
    r.user_id = user;
    r.conversation_id = conv;
    r.before = before;
    r.limit = (uint32_t)limit;
    Chat__MessageRequest mr = CHAT__MESSAGE_REQUEST__INIT;
    mr.body_case = CHAT__MESSAGE_REQUEST__BODY_HISTORY;
    mr.history = &r;
    char req_id[GW_REQ_ID_MAX];
    gw_req_id_new(s, req_id);
    mr.req_id = req_id;
    /* Found again by id when the reply comes (or not: closed meanwhile). */
    c->wsi = wsi;
    c->id = s->next_conn_id++;
    c->api_waiting = true;
    HASH_ADD(hh, s->api_waiting, id, sizeof c->id, c);
    s->m.be_requests[GW_SVC_MESSAGE]++;
    chat_log_req(req_id);
    chat_debug("request", "type=api_history conn=%" PRIu64, c->id);
    gw_backend_call(s->be, GW_OP_API_HISTORY, c->id, NULL, &mr.base);
    chat_log_req(NULL);
    return 0;
}

void gw_api_reply(gw_server *s, gw_item *it)
{
    gw_conn *c = NULL;
    uint64_t id = it->conn_id;
    HASH_FIND(hh, s->api_waiting, &id, sizeof id, c);
    if (c == NULL)
        return; /* the client went away */
    gw_api_closed(s, c);
    gw_err e = GW_E_UNAVAILABLE;
    if (it->err == 0)
        e = gw_err_from_code(it->r.msg->code);
    gw_frame *f =
        e == GW_E_NONE
            ? gw_render_history_rest(it->r.msg->messages, it->r.msg->n_messages,
                                     it->r.msg->next_before)
            : gw_render_rest_error(e, e == GW_E_RATE_LIMITED ? it->r.msg->retry_after_ms : -1);
    unsigned status = e == GW_E_NONE ? 200 : gw_api_status(e);
    if (f == NULL || gw_http_respond(c, c->wsi, status, "application/json", gw_frame_data(f),
                                     f->len, false) != 0) {
        /* Out of memory: nothing sensible to write; drop the connection. */
        chat_warn("api_reply_failed", "conn=%" PRIu64, c->id);
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
    }
    gw_frame_unref(f);
}

void gw_api_closed(gw_server *s, gw_conn *c)
{
    if (c == NULL || !c->api_waiting)
        return;
    HASH_DELETE(hh, s->api_waiting, c);
    c->api_waiting = false;
}
