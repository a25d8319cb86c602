/* One PresenceRequest -> one PresenceReply: validation and dispatch to the
 * handlers; their shared helpers are below them, in out.c and calls.c. No
 * nng here (see server.c, peers.c). */
#include "presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"
#include "chat/ratelimit.h"

void pres_scripts_init(void)
{
    pres_conns_scripts_init();
    pres_gateways_scripts_init();
    pres_grace_scripts_init();
    pres_query_scripts_init();
    pres_bans_scripts_init();
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

/* Heartbeats take the urgent lane: a gateway busy registering thousands of
 * connections must not be declared dead because its heartbeat waits behind
 * them. A PresenceRequest sets one field of its oneof, so the first byte is
 * that field's tag: heartbeat is field 3, length-delimited. */
bool pres_server_urgent(const uint8_t *data, size_t len)
{
    return len > 0 && data[0] == ((CHAT__PRESENCE_REQUEST__BODY_HEARTBEAT << 3) | 2);
}

/* A presence query takes from the asker's bucket (shared by every replica
 * through Redis); false: answered RATE_LIMITED. No asker named (older
 * gateways) or Redis unreachable: not limited. */
static bool query_within_limit(const pres_env *env, chat_redis *r, const Chat__QueryReq *q,
                               int64_t now, pres_out *out)
{
    if (env->ops_per_min <= 0 || q->user_id == NULL || !chat_uuid_valid(q->user_id))
        return true;
    char key[96];
    chat_rate_key(key, sizeof key, "rl:presence", q->user_id);
    int64_t retry = 0;
    if (chat_rate_take(r, key, env->ops_burst, env->ops_per_min, now, &retry) !=
        CHAT_RATE_LIMITED)
        return true;
    pres_out_err(out, CHAT__CODE__RATE_LIMITED, "too many requests");
    out->reply.retry_after_ms = retry;
    return false;
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
        if (query_valid(req->query, out) && query_within_limit(env, r, req->query, now, out))
            pres_query(r, req->query, now, out);
        break;
    case CHAT__PRESENCE_REQUEST__BODY_BANS: pres_bans_list(r, now, out); break;
    default: pres_out_err(out, CHAT__CODE__BAD_REQUEST, "empty request"); break;
    }
}
