/* svc-presence bookkeeping: connect/disconnect per connection (fire and
 * forget), the last heartbeat at shutdown, and what a heartbeat's answer
 * asks (heartbeat.c sends them): re-register everything after presence
 * lost its state or declared this gateway dead. */
#include "gateway.h"

#include <inttypes.h>

#include "chat/log.h"

static void presence_call(gw_server *s, gw_op op, uint64_t conn_id, Chat__PresenceRequest *pr)
{
    s->m.be_requests[GW_SVC_PRESENCE]++;
    gw_backend_call(s->be, op, conn_id, NULL, &pr->base);
}

void gw_presence_connect(gw_server *s, gw_conn *c)
{
    Chat__ConnRef conn = CHAT__CONN_REF__INIT;
    conn.gateway_id = (char *)s->gateway_id;
    conn.conn_id = c->id;
    Chat__ConnectReq req = CHAT__CONNECT_REQ__INIT;
    req.user_id = c->user->id;
    req.conn = &conn;
    req.opened_at = c->opened_ms;
    Chat__PresenceRequest pr = CHAT__PRESENCE_REQUEST__INIT;
    pr.body_case = CHAT__PRESENCE_REQUEST__BODY_CONNECT;
    pr.connect = &req;
    c->announced = true;
    presence_call(s, GW_OP_CONNECT, c->id, &pr);
}

void gw_presence_disconnect(gw_server *s, gw_conn *c)
{
    if (s->closing_all) {
        c->announced = false; /* gw_presence_stopping() speaks for it */
        return;
    }
    Chat__ConnRef conn = CHAT__CONN_REF__INIT;
    conn.gateway_id = (char *)s->gateway_id;
    conn.conn_id = c->id;
    Chat__DisconnectReq req = CHAT__DISCONNECT_REQ__INIT;
    req.user_id = c->user->id;
    req.conn = &conn;
    Chat__PresenceRequest pr = CHAT__PRESENCE_REQUEST__INIT;
    pr.body_case = CHAT__PRESENCE_REQUEST__BODY_DISCONNECT;
    pr.disconnect = &req;
    c->announced = false;
    presence_call(s, GW_OP_DISCONNECT, c->id, &pr);
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
        gw_bans_heard(s, it->r.pres->bans_version);
}

void gw_presence_reply(gw_server *s, gw_item *it)
{
    if (it->op == GW_OP_HEARTBEAT) {
        presence_heartbeat_reply(s, it);
        return;
    }
    int code = it->err == 0 ? it->r.pres->code : CHAT__CODE__UNAVAILABLE;
    if (it->err != 0 || code != CHAT__CODE__OK)
        chat_warn(it->op == GW_OP_CONNECT ? "presence_connect_failed"
                                          : "presence_disconnect_failed",
                  "conn=%" PRIu64 " err=%d code=%d", it->conn_id, it->err, code);
}
