/* The reconnect grace: a user whose last connection closed keeps its random
 * chat for CHAT_RECONNECT_GRACE_MS; after that svc-match ends it. Every
 * replica's sweeper scans the due users, and a Lua claim makes sure exactly
 * one of them tells svc-match. */
#include "presence.h"

#include <inttypes.h>
#include <stdio.h>

#include "chat/log.h"

/* KEYS: p:grace p:conns:{user}; ARGV: user now. Returns 1 when this caller
 * owns the expiry: the deadline has passed and the user has no connection.
 * A due entry of a user who is connected is stale and just dropped. */
static const char CLAIM_SRC[] =
    "local s = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
    "if not s or tonumber(s) > tonumber(ARGV[2]) then return 0 end\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "if redis.call('SCARD', KEYS[2]) > 0 then return 0 end\n"
    "return 1\n";

/* KEYS: p:grace p:conns:{user}; ARGV: user when. Puts a claimed user back
 * for a later try, unless it came back meanwhile or has a newer grace. */
static const char RETRY_SRC[] = "if redis.call('SCARD', KEYS[2]) > 0 then return 0 end\n"
                                "redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])\n"
                                "return 1\n";

static chat_redis_script claim_script, retry_script;

void pres_grace_scripts_init(void)
{
    chat_redis_script_init(&claim_script, CLAIM_SRC);
    chat_redis_script_init(&retry_script, RETRY_SRC);
}

/* Returns 1 claimed, 0 not ours, -1 Redis unreachable. */
static int claim(chat_redis *r, const char *user, const char *now_s)
{
    char kconns[64];
    snprintf(kconns, sizeof kconns, "p:conns:%s", user);
    const char *args[] = {"p:grace", kconns, user, now_s};
    redisReply *rep = chat_redis_eval(r, &claim_script, 2, 4, args);
    if (rep == NULL)
        return -1;
    int rv = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    return rv;
}

static void retry_later(chat_redis *r, const char *user, int64_t when)
{
    char kconns[64], when_s[24];
    snprintf(kconns, sizeof kconns, "p:conns:%s", user);
    snprintf(when_s, sizeof when_s, "%" PRId64, when);
    const char *args[] = {"p:grace", kconns, user, when_s};
    redisReply *rep = chat_redis_eval(r, &retry_script, 2, 4, args);
    if (rep == NULL)
        chat_error("pres_grace_lost", "user=%s reason=redis_unreachable", user);
    freeReplyObject(rep);
}

int pres_sweep_grace(const pres_env *env, chat_redis *r, int64_t now)
{
    char now_s[24];
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    redisReply *due =
        chat_redis_cmd(r, "ZRANGEBYSCORE p:grace -inf %s LIMIT 0 %d", now_s, PRES_GRACE_BATCH);
    if (due == NULL || due->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(due);
        return -1;
    }
    int claimed = 0;
    for (size_t i = 0; i < due->elements; i++) {
        const redisReply *u = due->element[i];
        if (u->type != REDIS_REPLY_STRING)
            continue;
        if (!chat_uuid_valid(u->str)) {
            /* Never written by us; drop it so it does not fill every batch. */
            freeReplyObject(chat_redis_cmd(r, "ZREM p:grace %b", u->str, u->len));
            continue;
        }
        int c = claim(r, u->str, now_s);
        if (c < 0) {
            claimed = -1;
            break;
        }
        if (c == 0)
            continue;
        claimed++;
        chat_info("pres_grace_expired", "user=%s", u->str);
        if (pres_tell_match(env, CHAT__MATCH_REQUEST__BODY_USER_GONE, u->str) != 0)
            retry_later(r, u->str, now + PRES_GONE_RETRY_MS);
    }
    freeReplyObject(due);
    return claimed;
}
