/* svc-presence bookkeeping: connect/disconnect per connection, the last
 * heartbeat at shutdown, and what a heartbeat's answer asks (heartbeat.c
 * sends them): re-register everything after presence lost its state or
 * declared this gateway dead.
 *
 * A connect or disconnect is remembered until presence confirms it. One
 * that failed (presence or its Redis down or hung) is sent again after the
 * next heartbeat that succeeds: otherwise a user whose connection closed
 * during an outage would stay "online" for as long as this gateway lives
 * (its heartbeats keep its registrations alive). The table is bounded;
 * past it nothing is remembered (logged once). */
#include "gateway.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "chat/log.h"

#define PRES_RETRY_MAX 100000

struct gw_pres_retry {
    UT_hash_handle hh;
    uint64_t conn_id;
    char user[CHAT_UUID_LEN + 1];
    int64_t opened_ms;
    bool disconnect; /* the last word sent for the connection */
    bool failed;     /* to be sent again after a good heartbeat */
};

static void presence_call(gw_server *s, gw_op op, uint64_t conn_id, Chat__PresenceRequest *pr)
{
    s->m.be_requests[GW_SVC_PRESENCE]++;
    gw_backend_call(s->be, op, conn_id, NULL, &pr->base);
}

/* Remembers the connection's last word until presence confirms it. */
static gw_pres_retry *retry_note(gw_server *s, uint64_t conn_id, const char *user,
                                 int64_t opened_ms, bool disconnect)
{
    gw_pres_retry *r = NULL;
    HASH_FIND(hh, s->pres_retry, &conn_id, sizeof conn_id, r);
    if (r == NULL) {
        if (s->n_pres_retry >= PRES_RETRY_MAX || (r = calloc(1, sizeof *r)) == NULL) {
            if (!s->pres_retry_full_logged)
                chat_warn("presence_retry_full", "entries=%zu", s->n_pres_retry);
            s->pres_retry_full_logged = true;
            return NULL;
        }
        r->conn_id = conn_id;
        HASH_ADD(hh, s->pres_retry, conn_id, sizeof r->conn_id, r);
        s->n_pres_retry++;
    }
    snprintf(r->user, sizeof r->user, "%s", user);
    r->opened_ms = opened_ms;
    r->disconnect = disconnect;
    r->failed = false;
    return r;
}

static void retry_drop(gw_server *s, gw_pres_retry *r)
{
    HASH_DEL(s->pres_retry, r);
    s->n_pres_retry--;
    free(r);
}

static void send_connect(gw_server *s, uint64_t conn_id, const char *user, int64_t opened_ms)
{
    Chat__ConnRef conn = CHAT__CONN_REF__INIT;
    conn.gateway_id = (char *)s->gateway_id;
    conn.conn_id = conn_id;
    Chat__ConnectReq req = CHAT__CONNECT_REQ__INIT;
    req.user_id = (char *)user;
    req.conn = &conn;
    req.opened_at = opened_ms;
    Chat__PresenceRequest pr = CHAT__PRESENCE_REQUEST__INIT;
    pr.body_case = CHAT__PRESENCE_REQUEST__BODY_CONNECT;
    pr.connect = &req;
    retry_note(s, conn_id, user, opened_ms, false);
    presence_call(s, GW_OP_CONNECT, conn_id, &pr);
}

static void send_disconnect(gw_server *s, uint64_t conn_id, const char *user)
{
    Chat__ConnRef conn = CHAT__CONN_REF__INIT;
    conn.gateway_id = (char *)s->gateway_id;
    conn.conn_id = conn_id;
    Chat__DisconnectReq req = CHAT__DISCONNECT_REQ__INIT;
    req.user_id = (char *)user;
    req.conn = &conn;
    Chat__PresenceRequest pr = CHAT__PRESENCE_REQUEST__INIT;
    pr.body_case = CHAT__PRESENCE_REQUEST__BODY_DISCONNECT;
    pr.disconnect = &req;
    retry_note(s, conn_id, user, 0, true);
    presence_call(s, GW_OP_DISCONNECT, conn_id, &pr);
}

void gw_presence_connect(gw_server *s, gw_conn *c)
{
    c->announced = true;
    send_connect(s, c->id, c->user->id, c->opened_ms);
}

void gw_presence_disconnect(gw_server *s, gw_conn *c)
{
    if (s->closing_all) {
        c->announced = false; /* gw_presence_stopping() speaks for it */
        return;
    }
    c->announced = false;
    send_disconnect(s, c->id, c->user->id);
}

/* After a good heartbeat: what failed goes again (a connect only while its
 * connection is still open and announced). */
static void retry_failed(gw_server *s)
{
    gw_pres_retry *r, *tmp;
    unsigned n = 0;
    HASH_ITER (hh, s->pres_retry, r, tmp) {
        if (!r->failed)
            continue;
        gw_conn *c = r->disconnect ? NULL : gw_conn_find(s, r->conn_id);
        char user[CHAT_UUID_LEN + 1];
        snprintf(user, sizeof user, "%s", r->user);
        if (r->disconnect)
            send_disconnect(s, r->conn_id, user);
        else if (c != NULL && c->announced)
            send_connect(s, r->conn_id, user, r->opened_ms);
        else
            retry_drop(s, r);
        n++;
    }
    if (n > 0)
        chat_info("presence_retried", "requests=%u", n);
}

void gw_presence_free(gw_server *s)
{
    gw_pres_retry *r, *tmp;
    HASH_ITER (hh, s->pres_retry, r, tmp)
        retry_drop(s, r);
}

static void presence_heartbeat_send(gw_server *s, bool stopping)
{
    Chat__HeartbeatReq hb = CHAT__HEARTBEAT_REQ__INIT;
    hb.gateway_id = (char *)s->gateway_id;
    hb.connections = s->n_conns;
    hb.stopping = stopping;
    Chat__PresenceRequest pr = CHAT__PRESENCE_REQUEST__INIT;
    pr.body_case = CHAT__PRESENCE_REQUEST__BODY_HEARTBEAT;
    pr.heartbeat = &hb;
    presence_call(s, GW_OP_HEARTBEAT, 0, &pr);
}

void gw_presence_stopping(gw_server *s)
{
    presence_heartbeat_send(s, true);
}

static void presence_resync(gw_server *s)
{
    unsigned n = 0;
    for (gw_conn *c = s->conns; c != NULL; c = c->hh.next) {
        if (c->user != NULL && !c->closing) {
            gw_presence_connect(s, c);
            n++;
        }
    }
    chat_info("presence_resync", "connections=%u", n);
}

/* The heartbeat thread's answer (heartbeat.c), or the stopping one's. */
static void presence_heartbeat_reply(gw_server *s, gw_item *it)
{
    int code = it->err == 0 ? it->r.pres->code : CHAT__CODE__UNAVAILABLE;
    bool failing = it->err != 0 || code != CHAT__CODE__OK;
    /* Logged on change only: a presence outage would otherwise log every 2 s. */
    if (failing && !s->heartbeat_failing)
        chat_warn("heartbeat_failed", "err=%d code=%d", it->err, code);
    else if (!failing && s->heartbeat_failing)
        chat_info("heartbeat_ok", "gateway=%s", s->gateway_id);
    s->heartbeat_failing = failing;
    if (!failing && it->r.pres->resync)
        presence_resync(s);
    if (!failing)
        retry_failed(s);
    if (!failing)
        gw_bans_heard(s, it->r.pres->bans_version);
}

void gw_presence_reply(gw_server *s, gw_item *it)
{
    if (it->op == GW_OP_HEARTBEAT) {
        presence_heartbeat_reply(s, it);
        return;
    }
    int code = it->err == 0 ? it->r.pres->code : CHAT__CODE__UNAVAILABLE;
    bool ok = it->err == 0 && code == CHAT__CODE__OK;
    gw_pres_retry *r = NULL;
    uint64_t id = it->conn_id;
    HASH_FIND(hh, s->pres_retry, &id, sizeof id, r);
    bool retry = false;
    /* Only the answer to the connection's last word settles it. */
    if (r != NULL && r->disconnect == (it->op == GW_OP_DISCONNECT)) {
        /* A refusal for a bad request will not get better by retrying. */
        retry = !ok && code != CHAT__CODE__BAD_REQUEST;
        if (retry)
            r->failed = true;
        else
            retry_drop(s, r);
    }
    if (!ok)
        chat_warn(it->op == GW_OP_CONNECT ? "presence_connect_failed"
                                          : "presence_disconnect_failed",
                  "conn=%" PRIu64 " err=%d code=%d retry=%s", it->conn_id, it->err, code,
                  retry ? "after_heartbeat" : "no");
}
