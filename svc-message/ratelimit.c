/* Per-user send limits: token buckets in Redis (key rl:<user>, see
 * chat/ratelimit.h), shared by every replica. The writer sends a whole
 * batch's takes in one round trip; a refund gives a token back. */
#include "message.h"

#include "chat/log.h"
#include "chat/ratelimit.h"
#include "chat/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS[1] bucket; ARGV[1] capacity. A token back, never above capacity;
 * an expired bucket is full already. */
static const char refund_lua[] =
    "local cap = tonumber(ARGV[1])\n"
    "local t = tonumber(redis.call('HGET', KEYS[1], 'tokens'))\n"
    "if t == nil then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'tokens', tostring(math.min(cap, t + 1)))\n"
    "return 1\n";

static chat_redis_script refund_script;

/* Note: the chat_redis eval helpers count the keys in nargs (args holds the
 * keys, then the arguments). */

void msg_rate_init(void)
{
    chat_redis_script_init(&refund_script, refund_lua);
}

/* The send bucket: capacity = the rate per minute (a burst of a minute's
 * worth), as PROTOCOL.md says. */
static void bucket_key(char *key, size_t n, const char *user)
{
    chat_rate_key(key, n, "rl", user);
}

static msg_rl parse_take(const redisReply *rep, int64_t *retry_ms, bool *noscript)
{
    switch (chat_rate_parse(rep, retry_ms, noscript)) {
    case CHAT_RATE_OK: return MSG_RL_OK;
    case CHAT_RATE_LIMITED: return MSG_RL_LIMITED;
    default: return MSG_RL_ERROR;
    }
}

int msg_rate_take(chat_redis *r, long long per_min, const char *const *users, int n,
                  int64_t now_ms, msg_rl *res, int64_t *retry_ms)
{
    char cap[24], now[24], key[80];
    snprintf(cap, sizeof cap, "%lld", per_min);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    for (int i = 0; i < n; i++) {
        res[i] = MSG_RL_ERROR;
        retry_ms[i] = 0;
    }
    for (int i = 0; i < n; i++) {
        bucket_key(key, sizeof key, users[i]);
        const char *args[] = {key, cap, cap, now};
        if (chat_redis_append_eval(r, chat_rate_take_script(), 1, 4, args) != 0)
            return -1;
    }
    bool again[n > 0 ? n : 1];
    bool retry_any = false;
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (chat_redis_get_reply(r, &rep) != 0)
            return -1; /* link lost: the caller answers UNAVAILABLE for all */
        bool noscript;
        res[i] = parse_take(rep, &retry_ms[i], &noscript);
        freeReplyObject(rep);
        again[i] = noscript;
        retry_any |= noscript;
    }
    /* The script cache was flushed under us: those takes did not run.
     * chat_redis_eval loads the script and runs them, now that the
     * pipeline's replies are all read. */
    for (int i = 0; retry_any && i < n; i++) {
        if (!again[i])
            continue;
        bucket_key(key, sizeof key, users[i]);
        const char *args[] = {key, cap, cap, now};
        redisReply *rep = chat_redis_eval(r, chat_rate_take_script(), 1, 4, args);
        if (rep != NULL) {
            bool noscript;
            res[i] = parse_take(rep, &retry_ms[i], &noscript);
            freeReplyObject(rep);
        }
    }
    return 0;
}

void msg_rate_refund(chat_redis *r, long long per_min, const char *const *users, int n)
{
    char cap[24], key[80];
    snprintf(cap, sizeof cap, "%lld", per_min);
    int sent = 0;
    for (int i = 0; i < n; i++) {
        bucket_key(key, sizeof key, users[i]);
        const char *args[] = {key, cap};
        if (chat_redis_append_eval(r, &refund_script, 1, 2, args) != 0)
            break;
        sent++;
    }
    bool again[sent > 0 ? sent : 1];
    bool any = false;
    for (int i = 0; i < sent; i++) {
        redisReply *rep = NULL;
        if (chat_redis_get_reply(r, &rep) != 0)
            return; /* lost refunds only make the bucket stricter for a while */
        again[i] = rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0;
        any |= again[i];
        freeReplyObject(rep);
    }
    for (int i = 0; any && i < sent; i++) {
        if (!again[i])
            continue;
        bucket_key(key, sizeof key, users[i]);
        const char *args[] = {key, cap};
        redisReply *rep = chat_redis_eval(r, &refund_script, 1, 2, args);
        if (rep != NULL)
            freeReplyObject(rep);
    }
}
