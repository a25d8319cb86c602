/* One WebSocket connection's life: identity at connect, reassembly and
 * checks of incoming messages, writing the outgoing queue, and the end.
 * This is lws's side (the callbacks in server.c land here) and calls down
 * to everything a connection owns; what the rest of the gateway uses to
 * talk to a connection (queueing frames, closing, the request queue) is in
 * out.c, below all of them. Runs on the lws thread only. */
#include "gateway.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "chat/log.h"

/* Room for a ?session= argument: larger than lws's header limit, so a long
 * argument is never cut and mistaken for a missing one. */
#define CONN_URLARG_MAX 4200

static const char *conn_close_text(uint16_t code)
{
    switch (code) {
    case 1001: return "going away";
    case 1003: return "binary frames are not accepted";
    case 1007: return "invalid UTF-8";
    case 1008: return "output buffer full";
    case 1009: return "message too big";
    case 1011: return "internal error";
    case 4401: return "unauthorized";
    case 4403: return "kicked";
    default: return "";
    }
}

/* Closes from inside this connection's own callback: the caller returns -1.
 * Only where lws is between frames (writeable, established): returning -1
 * in the middle of an incoming frame leaves lws misparsing the rest of it
 * as a protocol error and resetting the connection, close frame lost.
 *
 * lws then runs the close handshake of RFC 6455 7.1.1: it sends the close
 * frame, keeps reading (and discarding) until the client's close or EOF,
 * and drops a client that does not answer within 5 s. Reading on matters:
 * a socket closed with unread input answers with a reset, and the reset
 * destroys the close frame still on its way to the client. */
static int conn_close_now(gw_conn *c, uint16_t code)
{
    const char *why = conn_close_text(code);
    lws_close_reason(c->wsi, (enum lws_close_status)code, (unsigned char *)why, strlen(why));
    c->closing = true;
    c->close_code = code;
    c->close_sent = true;
    return -1;
}

gw_conn *gw_conn_find(gw_server *s, uint64_t id)
{
    gw_conn *c = NULL;
    HASH_FIND(hh, s->conns, &id, sizeof id, c);
    return c;
}

gw_user *gw_user_find(gw_server *s, const char *user_id)
{
    gw_user *u = NULL;
    HASH_FIND_STR(s->users, user_id, u);
    return u;
}

static int conn_attach_user(gw_server *s, gw_conn *c, const char *user_id)
{
    gw_user *u = gw_user_find(s, user_id);
    if (u == NULL) {
        u = calloc(1, sizeof *u);
        if (u == NULL)
            return -1;
        memcpy(u->id, user_id, sizeof u->id);
        HASH_ADD_STR(s->users, id, u);
    }
    DL_APPEND2(u->conns, c, uprev, unext);
    c->user = u;
    return 0;
}

static void conn_detach_user(gw_server *s, gw_conn *c)
{
    gw_user *u = c->user;
    if (u == NULL)
        return;
    DL_DELETE2(u->conns, c, uprev, unext);
    c->user = NULL;
    if (u->conns == NULL) {
        HASH_DEL(s->users, u);
        free(u);
    }
}

/* Reads ?session=. Returns 0 with no session, 1 with a valid one (user
 * written), -1 with an invalid or empty one, -2 when out of memory. */
static int conn_session(gw_server *s, struct lws *wsi, char user[CHAT_UUID_LEN + 1])
{
    char *buf = malloc(CONN_URLARG_MAX);
    if (buf == NULL)
        return -2;
    const char *tok = lws_get_urlarg_by_name(wsi, "session=", buf, CONN_URLARG_MAX);
    int rv = 0;
    if (tok != NULL) {
        int64_t now_s = chat_now_ms() / 1000;
        rv = gw_token_verify(s->cfg->session_secret, tok, now_s, user) == 0 ? 1 : -1;
    }
    free(buf);
    return rv;
}

/* register_user for c's user; the reply goes to conn_id (0: nobody). */
static void conn_register(gw_server *s, gw_conn *c, uint64_t conn_id)
{
    Chat__RegisterUserReq r = CHAT__REGISTER_USER_REQ__INIT;
    r.user_id = c->user->id;
    Chat__MessageRequest mr = CHAT__MESSAGE_REQUEST__INIT;
    mr.body_case = CHAT__MESSAGE_REQUEST__BODY_REGISTER_USER;
    mr.register_user = &r;
    s->m.be_requests[GW_SVC_MESSAGE]++;
    gw_backend_call(s->be, GW_OP_REGISTER, conn_id, NULL, &mr.base);
}

/* `connected` with a fresh token, then presence and (resumed) the replay.
 * Returns 0, or -1 when the token could not be made. */
static int conn_welcome(gw_server *s, gw_conn *c, bool resumed)
{
    char token[GW_TOKEN_MAX];
    int64_t expiry = chat_now_ms() / 1000 + s->cfg->session_ttl_s;
    if (gw_token_sign(s->cfg->session_secret, c->user->id, expiry, token) != 0) {
        chat_error("conn_open_failed", "conn=%" PRIu64 " err=\"token\"", c->id);
        return -1;
    }
    gw_conn_send(s, c, gw_render_connected(c->user->id, token, resumed));
    gw_presence_connect(s, c);
    if (resumed)
        gw_resume_start(s, c);
    return 0;
}

int gw_conn_open(gw_server *s, gw_conn *c, struct lws *wsi)
{
    c->wsi = wsi;
    c->ws = true;
    c->id = s->next_conn_id++;
    c->opened_ms = chat_now_ms();
    HASH_ADD(hh, s->conns, id, sizeof c->id, c);
    s->n_conns++;
    atomic_store(&s->conns_open, s->n_conns);
    s->m.conns_total++;

    char user[CHAT_UUID_LEN + 1];
    int session = conn_session(s, wsi, user);
    if (session == -2)
        return conn_close_now(c, 1011);
    if (session < 0) {
        chat_info("session_rejected", "conn=%" PRIu64, c->id);
        gw_conn_send_error(s, c, GW_E_UNAUTHORIZED, NULL, NULL);
        gw_conn_close(s, c, 4401);
        return 0;
    }
    if (session > 0 && gw_banned(s, user)) {
        /* As for a bad token, so a banned client behaves as it would then. */
        s->m.ban_refused++;
        chat_info("session_rejected", "conn=%" PRIu64 " user=%s reason=banned", c->id, user);
        gw_conn_send_error(s, c, GW_E_UNAUTHORIZED, NULL, NULL);
        gw_conn_close(s, c, 4401);
        return 0;
    }
    if (session == 0)
        chat_uuid_new(user);
    if (conn_attach_user(s, c, user) != 0) {
        chat_error("conn_open_failed", "conn=%" PRIu64 " err=\"out of memory\"", c->id);
        return conn_close_now(c, 1011);
    }
    chat_debug("conn_open", "conn=%" PRIu64 " user=%s resumed=%d", c->id, user, session > 0);
    if (session > 0) {
        /* Known already; registering again only repairs a wiped database,
         * so it does not hold up the resume. */
        conn_register(s, c, 0);
        return conn_welcome(s, c, true) == 0 ? 0 : conn_close_now(c, 1011);
    }
    /* A new user must be known before anyone can learn its id (open_dm
     * finds only known users): `connected` waits for the registration.
     * It counts as the connection's request in flight, so frames the
     * client sends meanwhile wait behind it. */
    c->registering = true;
    gw_conn_request_started(s, c);
    conn_register(s, c, c->id);
    return 0;
}

void gw_conn_registered(gw_server *s, gw_conn *c, const gw_item *it)
{
    if (!c->registering)
        return;
    c->registering = false;
    int code = it->err == 0 ? it->r.msg->code : CHAT__CODE__UNAVAILABLE;
    if (code != CHAT__CODE__OK)
        /* The user works without it; only open_dm to it answers not_found
         * until one of its connections registers it. */
        chat_warn("register_failed", "conn=%" PRIu64 " user=%s err=%d code=%d", c->id,
                  c->user->id, it->err, code);
    if (conn_welcome(s, c, false) != 0)
        gw_conn_close(s, c, 1011);
}

static void conn_rx_free(gw_conn *c)
{
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
}

/* The client broke a WebSocket-level rule: close with code once the
 * replies already queued are out. lws keeps reading (we ignore it) so the
 * rest of the offending message is consumed cleanly, and the client gets
 * the close frame instead of a reset. */
static int conn_violation(gw_server *s, gw_conn *c, uint16_t code)
{
    conn_rx_free(c);
    gw_conn_close(s, c, code);
    return 0;
}

/* One complete, reassembled text message. */
/* The connection's frame budget: a token bucket of CHAT_FRAME_RATE_PER_S
 * holding two seconds' worth. Every frame takes one, valid or not, before
 * it is even parsed, so garbage costs a flooder its budget like requests
 * do. Returns 0, or the ms until the next frame is allowed. */
static int64_t conn_frame_budget(gw_server *s, gw_conn *c)
{
    long long rate = s->cfg->frame_rate_per_s;
    if (rate == 0)
        return 0;
    int64_t now = chat_mono_ms();
    float cap = (float)(2 * rate);
    if (c->frames_ms == 0) {
        c->frames_left = cap;
    } else if (now > c->frames_ms) {
        c->frames_left += (float)(now - c->frames_ms) * (float)rate / 1000.0f;
        if (c->frames_left > cap)
            c->frames_left = cap;
    }
    c->frames_ms = now;
    if (c->frames_left >= 1.0f) {
        c->frames_left -= 1.0f;
        return 0;
    }
    return 1 + (int64_t)((1.0f - c->frames_left) * 1000.0f / (float)rate);
}

static int conn_message(gw_server *s, gw_conn *c, const char *buf, size_t len)
{
    s->m.frames_in++;
    int64_t wait_ms = conn_frame_budget(s, c);
    if (wait_ms > 0) {
        s->m.errors[GW_E_RATE_LIMITED]++;
        s->m.frames_over_budget++;
        gw_conn_send(s, c,
                     gw_render_error(GW_E_RATE_LIMITED, "too many frames", NULL, wait_ms));
        return 0;
    }
    if (!gw_utf8_valid(buf, len))
        return conn_violation(s, c, 1007);
    gw_request *rq = gw_frame_parse(buf, len, s->cfg->max_text);
    if (rq == NULL)
        return conn_violation(s, c, 1011);
    if (rq->err != GW_E_NONE) {
        gw_conn_send_error(s, c, rq->err, rq->err_msg, rq->req);
        gw_request_free(rq);
        return 0;
    }
    gw_request_dispatch(s, c, rq);
    return 0;
}

int gw_conn_receive(gw_server *s, gw_conn *c, const void *in, size_t len)
{
    if (c->closing)
        return 0; /* we are done with this client; ignore what it still sends */
    if (lws_frame_is_binary(c->wsi))
        return conn_violation(s, c, 1003);
    bool final = lws_is_final_fragment(c->wsi);
    if (c->rx == NULL && final)
        return conn_message(s, c, in, len); /* the common case: no copy */

    /* A message in pieces: collect it, never beyond the limit. */
    size_t need = c->rx_len + len;
    size_t rest = lws_remaining_packet_payload(c->wsi);
    if (need > GW_MAX_MESSAGE || rest > GW_MAX_MESSAGE - need)
        return conn_violation(s, c, 1009);
    if (need > c->rx_cap) {
        size_t cap = c->rx_cap * 2 > need + rest ? c->rx_cap * 2 : need + rest;
        if (cap > GW_MAX_MESSAGE)
            cap = GW_MAX_MESSAGE;
        char *p = realloc(c->rx, cap > 0 ? cap : 1);
        if (p == NULL)
            return conn_violation(s, c, 1011);
        c->rx = p;
        c->rx_cap = cap;
    }
    if (len > 0)
        memcpy(c->rx + c->rx_len, in, len);
    c->rx_len = need;
    if (!final)
        return 0;
    int rv = conn_message(s, c, c->rx, c->rx_len);
    conn_rx_free(c);
    return rv;
}

int gw_conn_writeable(gw_server *s, gw_conn *c)
{
    /* lws still offers writeable callbacks while it waits for the client's
     * close; returning -1 there would cut the handshake short. */
    if (c->close_sent)
        return 0;
    gw_qnode *n = c->out.head;
    if (n == NULL) {
        if (!c->closing)
            return 0;
        /* Everything queued before the close is out: now the close frame. */
        return conn_close_now(c, c->close_code);
    }
    c->out.head = n->next;
    if (c->out.head == NULL)
        c->out.tail = NULL;
    gw_frame *f = n->f;
    free(n);
    c->out.bytes -= f->len;
    int w = lws_write(c->wsi, (unsigned char *)gw_frame_data(f), f->len, LWS_WRITE_TEXT);
    size_t len = f->len;
    gw_frame_unref(f);
    if (w < 0 || (size_t)w < len)
        return -1;
    s->m.frames_out++;
    if (c->resume != NULL)
        gw_resume_on_drain(s, c);
    if (c->out.head != NULL || c->closing)
        lws_callback_on_writable(c->wsi);
    return 0;
}

void gw_conn_closed(gw_server *s, gw_conn *c)
{
    if (!c->ws)
        return;
    if (c->announced)
        gw_presence_disconnect(s, c);
    chat_debug("conn_closed", "conn=%" PRIu64 " user=%s", c->id, c->user ? c->user->id : "-");
    conn_detach_user(s, c);
    HASH_DEL(s->conns, c);
    s->n_conns--;
    atomic_store(&s->conns_open, s->n_conns);
    gw_queue_clear(&c->out);
    gw_queue_clear(&c->resume_held);
    gw_search_free(c);
    conn_rx_free(c);
    gw_conn_waiting_free(c);
    gw_order_free(s, c);
    gw_resume_free(c->resume);
    c->resume = NULL;
    c->ws = false;
}
