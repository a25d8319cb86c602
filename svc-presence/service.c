/* One PresenceRequest -> one PresenceReply: validation, dispatch, and the
 * helpers the handlers share. No nng here (see server.c, peers.c). */
#include "presence.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

void pres_out_init(pres_out *o)
{
    memset(o, 0, sizeof *o);
    Chat__PresenceReply init = CHAT__PRESENCE_REPLY__INIT;
    o->reply = init;
    o->reply.code = CHAT__CODE__OK;
}

void pres_out_free(pres_out *o)
{
    if (o == NULL)
        return;
    free(o->statuses);
    free(o->status_ptrs);
    o->statuses = NULL;
    o->status_ptrs = NULL;
    o->reply.n_statuses = 0;
    o->reply.statuses = NULL;
}

void pres_out_err(pres_out *o, Chat__Code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->detail, sizeof o->detail, fmt, ap);
    va_end(ap);
    o->reply.code = code;
    o->reply.detail = o->detail;
    /* An error reply carries nothing else. */
    o->reply.first = o->reply.last = o->reply.resync = 0;
    o->reply.n_statuses = 0;
    o->reply.statuses = NULL;
}

void pres_scripts_init(void)
{
    pres_conns_scripts_init();
    pres_gateways_scripts_init();
    pres_grace_scripts_init();
    pres_query_scripts_init();
}

int pres_tell_match(const pres_env *env, Chat__MatchRequest__BodyCase kind, const char *user)
{
    Chat__UserOfflineReq off = CHAT__USER_OFFLINE_REQ__INIT;
    Chat__UserGoneReq gone = CHAT__USER_GONE_REQ__INIT;
    Chat__MatchRequest req = CHAT__MATCH_REQUEST__INIT;
    req.body_case = kind;
    if (kind == CHAT__MATCH_REQUEST__BODY_USER_OFFLINE) {
        off.user_id = (char *)user;
        req.user_offline = &off;
    } else {
        gone.user_id = (char *)user;
        req.user_gone = &gone;
    }
    const char *what =
        kind == CHAT__MATCH_REQUEST__BODY_USER_OFFLINE ? "user_offline" : "user_gone";
    Chat__MatchReply *rep = NULL;
    if (env->match_call(env->ctx, &req, &rep) != 0) {
        chat_warn("pres_match_call_failed", "call=%s user=%s err=unreachable", what, user);
        return -1;
    }
    int rv = 0;
    if (rep->code != CHAT__CODE__OK) {
        chat_warn("pres_match_call_failed", "call=%s user=%s code=%d", what, user,
                  (int)rep->code);
        rv = -1;
    }
    chat__match_reply__free_unpacked(rep, NULL);
    return rv;
}

static bool gateway_id_valid(const char *gw)
{
    size_t n = gw != NULL ? strlen(gw) : 0;
    return n > 0 && n <= PRES_GATEWAY_ID_MAX;
}

/* Validates a user + connection pair; sets the error and returns false. */
static bool conn_valid(const char *user, const Chat__ConnRef *conn, pres_out *out)
{
    if (!chat_uuid_valid(user)) {
        pres_out_err(out, CHAT__CODE__BAD_REQUEST, "user_id is not a uuid");
        return false;
    }
    if (conn == NULL || !gateway_id_valid(conn->gateway_id)) {
        pres_out_err(out, CHAT__CODE__BAD_REQUEST, "bad connection reference");
        return false;
    }
    return true;
}

static bool query_valid(const Chat__QueryReq *q, pres_out *out)
{
    if (q->n_user_ids > PRES_QUERY_MAX) {
        pres_out_err(out, CHAT__CODE__BAD_REQUEST, "at most %d user ids", PRES_QUERY_MAX);
        return false;
    }
    for (size_t i = 0; i < q->n_user_ids; i++) {
        if (!chat_uuid_valid(q->user_ids[i])) {
            pres_out_err(out, CHAT__CODE__BAD_REQUEST, "user_ids[%zu] is not a uuid", i);
            return false;
        }
    }
    return true;
}

void pres_handle(const pres_env *env, chat_redis *r, const Chat__PresenceRequest *req,
                 int64_t now, pres_out *out)
{
    switch (req->body_case) {
    case CHAT__PRESENCE_REQUEST__BODY_CONNECT:
        if (conn_valid(req->connect->user_id, req->connect->conn, out))
            pres_connect(r, req->connect, out);
        if (out->reply.code == CHAT__CODE__OK && out->reply.first && env->notify != NULL)
            env->notify(env->nctx, req->connect->user_id, true,
                        req->connect->opened_at > 0 ? req->connect->opened_at : now);
        break;
    case CHAT__PRESENCE_REQUEST__BODY_DISCONNECT:
        if (conn_valid(req->disconnect->user_id, req->disconnect->conn, out))
            pres_disconnect(env, r, req->disconnect, now, out);
        if (out->reply.code == CHAT__CODE__OK && out->reply.last && env->notify != NULL)
            env->notify(env->nctx, req->disconnect->user_id, false, now);
        break;
    case CHAT__PRESENCE_REQUEST__BODY_HEARTBEAT:
        if (!gateway_id_valid(req->heartbeat->gateway_id))
            pres_out_err(out, CHAT__CODE__BAD_REQUEST, "bad gateway_id");
        else
            pres_heartbeat(r, req->heartbeat, now, out);
        break;
    case CHAT__PRESENCE_REQUEST__BODY_QUERY:
        if (query_valid(req->query, out))
            pres_query(r, req->query, now, out);
        break;
    default: pres_out_err(out, CHAT__CODE__BAD_REQUEST, "empty request"); break;
    }
}
