/* Connections: a gateway registers each WebSocket connection of a user and
 * its close. The first connection ends a running grace; the last one starts
 * it, marks last-seen, and takes the user out of the match queue. */
#include "presence.h"

#include <inttypes.h>
#include <stdio.h>

#include "chat/log.h"

/* KEYS: p:conns:{user} p:gw:{gw} p:grace p:gwalive; ARGV: gw/conn user/conn user gw.
 * Returns 1 when the user had no connection before. */
static const char CONNECT_SRC[] =
    "local n = redis.call('SCARD', KEYS[1])\n"
    "redis.call('SADD', KEYS[1], ARGV[1])\n"
    "redis.call('SADD', KEYS[2], ARGV[2])\n"
    "redis.call('ZREM', KEYS[3], ARGV[3])\n"
    /* The gateway is watched from its first connection on, not only from
     * its first heartbeat: one killed before that would otherwise leave its
     * users online for good. NX: a heartbeat's time is not moved back. */
    "local t = redis.call('TIME')\n"
    "redis.call('ZADD', KEYS[4], 'NX', t[1] * 1000 + math.floor(t[2] / 1000), ARGV[4])\n"
    "if n == 0 then return 1 end\n"
    "return 0\n";

/* KEYS: p:conns:{user} p:gw:{gw} p:seen:{user} p:grace;
 * ARGV: gw/conn user/conn now deadline user seen_ttl_s.
 * Returns 1 when the user has no connection left ("last"). Usually this call
 * closed it; but a repeated disconnect, or one whose connect never reached
 * us (presence was down), must still take the user out of the queue and
 * start the grace, without moving a running grace or last-seen later. */
static const char DISCONNECT_SRC[] =
    "local removed = redis.call('SREM', KEYS[1], ARGV[1])\n"
    "redis.call('SREM', KEYS[2], ARGV[2])\n"
    "if redis.call('SCARD', KEYS[1]) > 0 then return 0 end\n"
    "if removed == 1 or redis.call('EXISTS', KEYS[3]) == 0 then\n"
    "  redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[6])\n"
    "end\n"
    "redis.call('ZADD', KEYS[4], 'NX', ARGV[4], ARGV[5])\n"
    "return 1\n";

static chat_redis_script connect_script, disconnect_script;

void pres_conns_scripts_init(void)
{
    chat_redis_script_init(&connect_script, CONNECT_SRC);
    chat_redis_script_init(&disconnect_script, DISCONNECT_SRC);
}

int pres_conn_member(char *buf, size_t n, const char *gateway, uint64_t conn)
{
    int len = snprintf(buf, n, "%s/%" PRIu64, gateway, conn);
    return len < 0 || (size_t)len >= n ? -1 : len;
}

int pres_user_member(char *buf, size_t n, const char *user, uint64_t conn)
{
    int len = snprintf(buf, n, "%s/%" PRIu64, user, conn);
    return len < 0 || (size_t)len >= n ? -1 : len;
}

/* The keys and members both scripts use. Returns 0 or -1 (too long). */
typedef struct conn_keys {
    char conns[64];                        /* p:conns:{user} */
    char gw[8 + PRES_GATEWAY_ID_MAX];      /* p:gw:{gw} */
    char gwconn[PRES_GATEWAY_ID_MAX + 24]; /* gw/conn */
    char userconn[CHAT_UUID_LEN + 24];     /* user/conn */
} conn_keys;

static int conn_keys_make(conn_keys *k, const char *user, const Chat__ConnRef *c)
{
    snprintf(k->conns, sizeof k->conns, "p:conns:%s", user);
    int n = snprintf(k->gw, sizeof k->gw, "p:gw:%s", c->gateway_id);
    if (n < 0 || (size_t)n >= sizeof k->gw)
        return -1;
    if (pres_conn_member(k->gwconn, sizeof k->gwconn, c->gateway_id, c->conn_id) < 0 ||
        pres_user_member(k->userconn, sizeof k->userconn, user, c->conn_id) < 0)
        return -1;
    return 0;
}

void pres_connect(chat_redis *r, const Chat__ConnectReq *q, pres_out *out)
{
    conn_keys k;
    if (conn_keys_make(&k, q->user_id, q->conn) != 0) {
        pres_out_err(out, CHAT__CODE__BAD_REQUEST, "gateway id too long");
        return;
    }
    const char *args[] = {k.conns,  k.gw,       "p:grace",  "p:gwalive",
                          k.gwconn, k.userconn, q->user_id, q->conn->gateway_id};
    redisReply *rep = chat_redis_eval(r, &connect_script, 4, 8, args);
    if (rep == NULL) {
        pres_out_err(out, CHAT__CODE__UNAVAILABLE, "presence store unavailable");
        return;
    }
    out->reply.first = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    chat_debug("pres_connect", "user=%s conn=%s first=%d", q->user_id, k.gwconn,
               (int)out->reply.first);
}

void pres_disconnect(const pres_env *env, chat_redis *r, const Chat__DisconnectReq *q,
                     int64_t now, pres_out *out)
{
    conn_keys k;
    if (conn_keys_make(&k, q->user_id, q->conn) != 0) {
        pres_out_err(out, CHAT__CODE__BAD_REQUEST, "gateway id too long");
        return;
    }
    char seen_key[64], now_s[24], deadline[24], ttl[16];
    snprintf(seen_key, sizeof seen_key, "p:seen:%s", q->user_id);
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    snprintf(deadline, sizeof deadline, "%" PRId64, now + env->grace_ms);
    snprintf(ttl, sizeof ttl, "%d", PRES_SEEN_TTL_S);
    const char *args[] = {k.conns,    k.gw,  seen_key, "p:grace",  k.gwconn,
                          k.userconn, now_s, deadline, q->user_id, ttl};
    redisReply *rep = chat_redis_eval(r, &disconnect_script, 4, 10, args);
    if (rep == NULL) {
        pres_out_err(out, CHAT__CODE__UNAVAILABLE, "presence store unavailable");
        return;
    }
    out->reply.last = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    chat_debug("pres_disconnect", "user=%s conn=%s last=%d", q->user_id, k.gwconn,
               (int)out->reply.last);
    /* Before replying: whoever sees this disconnect finished also sees the
     * user out of the queue. A failure is logged; the user stays offline. */
    if (out->reply.last)
        pres_tell_match(env, CHAT__MATCH_REQUEST__BODY_USER_OFFLINE, q->user_id);
}
