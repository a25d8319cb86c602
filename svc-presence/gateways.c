/* Gateways: heartbeats, and closing the connections of a gateway that went
 * silent. A dead gateway is claimed at once (its connection set moves to
 * p:dead:{gw}), then its connections are closed a chunk per sweeper tick, so
 * a gateway with 20,000 connections never blocks Redis or the sweeper. */
#include "presence.h"

#include <inttypes.h>
#include <stdio.h>

#include "chat/log.h"

/* KEYS: p:gwalive p:gwhb; ARGV: now gw connections. Returns 1 (resync) when
 * the gateway had not heartbeated yet (new, declared dead, or Redis lost its
 * data) and says it holds connections: it then sends connect again for each.
 * p:gwhb, not p:gwalive, says "heard before": a connect also enters the
 * gateway in p:gwalive (see conns.c). A heartbeat that says 0 connections
 * does not count as heard: the count may be a moment old (the gateway
 * heartbeats from a thread of its own), and the first one that says more
 * asks for the resync. */
static const char HEARTBEAT_SRC[] =
    "local known = redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1\n"
    "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])\n"
    "if tonumber(ARGV[3]) == 0 then return 0 end\n"
    "if known then return 0 end\n"
    "redis.call('SADD', KEYS[2], ARGV[2])\n"
    "return 1\n";

/* KEYS: p:gwalive p:gw:{gw} p:dead:{gw} p:deadgws; ARGV: gw cutoff.
 * Claims a gateway silent since cutoff ("+inf": whatever its last
 * heartbeat; only one replica succeeds). Its
 * entries join p:dead:{gw}; connections it registers after a resync go to a
 * fresh p:gw:{gw} and are left alone by the chunks. Returns 1 if claimed. */
static const char GW_CLAIM_SRC[] =
    "local s = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
    "if not s or (ARGV[2] ~= '+inf' and tonumber(s) > tonumber(ARGV[2])) then return 0 end\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('SREM', 'p:gwhb', ARGV[1])\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "  redis.call('SUNIONSTORE', KEYS[3], KEYS[3], KEYS[2])\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('SADD', KEYS[4], ARGV[1])\n"
    "end\n"
    "return 1\n";

/* KEYS: p:deadgws; ARGV: now grace_deadline chunk seen_ttl_s.
 * Closes up to `chunk` connections of one dead gateway; returns the users
 * whose last connection that was (they now are offline, in grace). A
 * connection registered again meanwhile (in p:gw:{gw}) is kept. */
static const char GW_CHUNK_SRC[] =
    "local gw = redis.call('SRANDMEMBER', KEYS[1])\n"
    "if not gw then return {} end\n"
    "local dk = 'p:dead:' .. gw\n"
    "local live = 'p:gw:' .. gw\n"
    "local items = redis.call('SPOP', dk, tonumber(ARGV[3]))\n"
    "local out = {}\n"
    "for _, it in ipairs(items) do\n"
    "  local slash = string.find(it, '/', 1, true)\n"
    "  if slash and redis.call('SISMEMBER', live, it) == 0 then\n"
    "    local user = string.sub(it, 1, slash - 1)\n"
    "    local ck = 'p:conns:' .. user\n"
    "    if redis.call('SREM', ck, gw .. '/' .. string.sub(it, slash + 1)) == 1\n"
    "       and redis.call('SCARD', ck) == 0 then\n"
    "      redis.call('SET', 'p:seen:' .. user, ARGV[1], 'EX', ARGV[4])\n"
    "      redis.call('ZADD', 'p:grace', ARGV[2], user)\n"
    "      table.insert(out, user)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if redis.call('EXISTS', dk) == 0 then redis.call('SREM', KEYS[1], gw) end\n"
    "return out\n";

static chat_redis_script heartbeat_script, gw_claim_script, gw_chunk_script;

void pres_gateways_scripts_init(void)
{
    chat_redis_script_init(&heartbeat_script, HEARTBEAT_SRC);
    chat_redis_script_init(&gw_claim_script, GW_CLAIM_SRC);
    chat_redis_script_init(&gw_chunk_script, GW_CHUNK_SRC);
}

/* Runs GW_CLAIM_SRC for gw. Returns 1 (claimed), 0 (not: alive since
 * cutoff, or another replica was first) or -1 (Redis unavailable). */
static int claim_gateway(chat_redis *r, const char *gw, const char *cutoff)
{
    char kgw[8 + PRES_GATEWAY_ID_MAX + 1], kdead[10 + PRES_GATEWAY_ID_MAX + 1];
    snprintf(kgw, sizeof kgw, "p:gw:%s", gw);
    snprintf(kdead, sizeof kdead, "p:dead:%s", gw);
    const char *args[] = {"p:gwalive", kgw, kdead, "p:deadgws", gw, cutoff};
    redisReply *rep = chat_redis_eval(r, &gw_claim_script, 4, 6, args);
    if (rep == NULL)
        return -1;
    int claimed = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    return claimed;
}

/* Claims gw as dead now (its stopping heartbeat). */
static void claim_stopping(chat_redis *r, const char *gw, pres_out *out)
{
    int claimed = claim_gateway(r, gw, "+inf");
    if (claimed < 0) {
        pres_out_err(out, CHAT__CODE__UNAVAILABLE, "presence store unavailable");
        return;
    }
    chat_info("pres_gateway_stopped", "gateway=%s claimed=%d", gw, claimed);
}

void pres_heartbeat(chat_redis *r, const Chat__HeartbeatReq *q, int64_t now, pres_out *out)
{
    if (q->stopping) {
        claim_stopping(r, q->gateway_id, out);
        return;
    }
    char now_s[24], conns[16];
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    snprintf(conns, sizeof conns, "%" PRIu32, q->connections);
    const char *args[] = {"p:gwalive", "p:gwhb", now_s, q->gateway_id, conns};
    redisReply *rep = chat_redis_eval(r, &heartbeat_script, 2, 5, args);
    if (rep == NULL) {
        pres_out_err(out, CHAT__CODE__UNAVAILABLE, "presence store unavailable");
        return;
    }
    out->reply.resync = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    /* The gateway asks for the bans when this is not the version it has.
     * Unknown (Redis failed just now) says 0: the gateway's BansReq then
     * fails too and it keeps what it has; the heartbeat itself counted. */
    uint64_t version = 0;
    if (pres_bans_version(r, &version) == 0)
        out->reply.bans_version = version;
    if (out->reply.resync)
        chat_info("pres_gateway_resync", "gateway=%s connections=%" PRIu32, q->gateway_id,
                  q->connections);
}

/* Claims every gateway silent for the TTL (a bounded batch). Returns how
 * many were claimed, or -1 when Redis is unreachable. */
static int claim_dead(const pres_env *env, chat_redis *r, int64_t now)
{
    char cutoff[24];
    snprintf(cutoff, sizeof cutoff, "%" PRId64, now - env->gw_ttl_ms);
    redisReply *list = chat_redis_cmd(r, "ZRANGEBYSCORE p:gwalive -inf %s LIMIT 0 %d", cutoff,
                                      PRES_GW_CLAIM_BATCH);
    if (list == NULL || list->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(list);
        return -1;
    }
    int claimed = 0;
    for (size_t i = 0; i < list->elements; i++) {
        const redisReply *gw = list->element[i];
        if (gw->type != REDIS_REPLY_STRING)
            continue;
        if (claim_gateway(r, gw->str, cutoff) == 1) {
            chat_warn("pres_gateway_dead", "gateway=%s ttl_ms=%" PRId64, gw->str,
                      env->gw_ttl_ms);
            claimed++;
        }
    }
    freeReplyObject(list);
    return claimed;
}

/* Closes one chunk of dead connections. Returns how many users went
 * offline, 0 when nothing is left, -1 when Redis is unreachable. *more is
 * set when something was processed (the caller may go on). */
static int close_chunk(const pres_env *env, chat_redis *r, int64_t now, bool *more)
{
    char now_s[24], deadline[24], chunk[16], ttl[16];
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    snprintf(deadline, sizeof deadline, "%" PRId64, now + env->grace_ms);
    snprintf(chunk, sizeof chunk, "%d", PRES_GW_CHUNK);
    snprintf(ttl, sizeof ttl, "%d", PRES_SEEN_TTL_S);
    const char *args[] = {"p:deadgws", now_s, deadline, chunk, ttl};
    redisReply *rep = chat_redis_eval(r, &gw_chunk_script, 1, 5, args);
    *more = false;
    if (rep == NULL)
        return -1;
    int offline = 0;
    if (rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements; i++) {
            const redisReply *u = rep->element[i];
            if (u->type != REDIS_REPLY_STRING)
                continue;
            chat_debug("pres_offline_dead_gateway", "user=%s", u->str);
            pres_tell_match(env, CHAT__MATCH_REQUEST__BODY_USER_OFFLINE, u->str);
            if (env->notify != NULL)
                env->notify(env->nctx, u->str, false, now);
            offline++;
        }
    }
    freeReplyObject(rep);
    /* An empty answer may still have drained a set of connections that all
     * came back; asking whether gateways are left is cheaper than guessing. */
    redisReply *left = chat_redis_cmd(r, "SCARD p:deadgws");
    *more = left != NULL && left->type == REDIS_REPLY_INTEGER && left->integer > 0;
    freeReplyObject(left);
    return offline;
}

int pres_sweep_gateways(const pres_env *env, chat_redis *r, int64_t now)
{
    if (claim_dead(env, r, now) < 0)
        return -1;
    int offline = 0;
    bool more = true;
    for (int i = 0; i < PRES_GW_CHUNKS_PER_TICK && more; i++) {
        int n = close_chunk(env, r, now, &more);
        if (n < 0)
            return -1;
        offline += n;
    }
    return offline;
}
