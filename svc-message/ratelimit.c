/* Per-user token buckets in Redis (key rl:<user>, hash {tokens, ts}),
 * shared by every replica. The Lua scripts keep each take or refund
 * atomic; the writer sends a whole batch's takes in one round trip. */
#include "message.h"

#include "chat/log.h"
#include "chat/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS[1] bucket; ARGV[1] capacity (= rate per minute), ARGV[2] now (ms,
 * from the caller). Refills rate/60000 tokens per ms up to the capacity.
 * Returns {allowed 0/1, ms until one token when refused}. The bucket
 * expires once it would be full again, so idle users cost nothing. */
static const char take_lua[] =
    "local cap = tonumber(ARGV[1])\n"
    "local now = tonumber(ARGV[2])\n"
    "local per_ms = cap / 60000\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens, ts = tonumber(b[1]), tonumber(b[2])\n"
    "if tokens == nil or ts == nil then\n"
    "  tokens, ts = cap, now\n"
    "elseif now > ts then\n"
    "  tokens, ts = math.min(cap, tokens + (now - ts) * per_ms), now\n"
    "end\n"
    "local allowed, retry = 0, 0\n"
    "if tokens >= 1 then\n"
    "  tokens, allowed = tokens - 1, 1\n"
    "else\n"
    "  retry = math.max(1, math.ceil((1 - tokens) / per_ms))\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / per_ms) + 1000)\n"
    "return {allowed, retry}\n";

/* KEYS[1] bucket; ARGV[1] capacity. A token back, never above capacity;
 * an expired bucket is full already. */
static const char refund_lua[] =
    "local cap = tonumber(ARGV[1])\n"
    "local t = tonumber(redis.call('HGET', KEYS[1], 'tokens'))\n"
    "if t == nil then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'tokens', tostring(math.min(cap, t + 1)))\n"
    "return 1\n";

static chat_redis_script take_script, refund_script;

/* Note: the chat_redis eval helpers count the keys in nargs (args holds the
 * keys, then the arguments). */

void msg_rate_init(void)
{
    chat_redis_script_init(&take_script, take_lua);
    chat_redis_script_init(&refund_script, refund_lua);
}

static void bucket_key(char *key, size_t n, const char *user)
{
    size_t len = (size_t)snprintf(key, n, "rl:%s", user);
    for (size_t i = 3; i < len && i < n; i++)
        key[i] = (char)tolower((unsigned char)key[i]);
}

/* Reads one take reply. NOSCRIPT (script cache flushed under us) is
 * reported as MSG_RL_ERROR with *noscript set so the caller can retry. */
static msg_rl parse_take(const redisReply *rep, int64_t *retry_ms, bool *noscript)
{
    *noscript = false;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_INTEGER) {
        if (rep->element[0]->integer == 1)
            return MSG_RL_OK;
        *retry_ms = rep->element[1]->integer > 0 ? rep->element[1]->integer : 1;
        return MSG_RL_LIMITED;
    }
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0)
        *noscript = true;
    else
        chat_warn("rate_script_error", "err=\"%s\"",
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    return MSG_RL_ERROR;
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
        const char *args[] = {key, cap, now};
        if (chat_redis_append_eval(r, &take_script, 1, 3, args) != 0)
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
        const char *args[] = {key, cap, now};
        redisReply *rep = chat_redis_eval(r, &take_script, 1, 3, args);
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
