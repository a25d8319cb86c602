/* Token buckets in Redis (see chat/ratelimit.h). The Lua script keeps a
 * take atomic, whichever replica runs it. */
#include "chat/ratelimit.h"

#include "chat/log.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const char take_lua[] =
    "local burst = tonumber(ARGV[1])\n"
    "local per_ms = tonumber(ARGV[2]) / 60000\n"
    "local now = tonumber(ARGV[3])\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens, ts = tonumber(b[1]), tonumber(b[2])\n"
    "if tokens == nil or ts == nil then\n"
    "  tokens, ts = burst, now\n"
    "elseif now > ts then\n"
    "  tokens, ts = math.min(burst, tokens + (now - ts) * per_ms), now\n"
    "end\n"
    "local allowed, retry = 0, 0\n"
    "if tokens >= 1 then\n"
    "  tokens, allowed = tokens - 1, 1\n"
    "else\n"
    "  retry = math.max(1, math.ceil((1 - tokens) / per_ms))\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / per_ms) + 1000)\n"
    "return {allowed, retry}\n";

static chat_redis_script take_script;
static pthread_once_t take_once = PTHREAD_ONCE_INIT;

static void rate_init(void)
{
    chat_redis_script_init(&take_script, take_lua);
}

const chat_redis_script *chat_rate_take_script(void)
{
    pthread_once(&take_once, rate_init);
    return &take_script;
}

chat_rate_result chat_rate_parse(const redisReply *rep, int64_t *retry_ms, bool *noscript)
{
    *noscript = false;
    *retry_ms = 0;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_INTEGER) {
        if (rep->element[0]->integer == 1)
            return CHAT_RATE_OK;
        *retry_ms = rep->element[1]->integer > 0 ? rep->element[1]->integer : 1;
        return CHAT_RATE_LIMITED;
    }
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0)
        *noscript = true;
    else
        chat_warn("rate_script_error", "err=\"%s\"",
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    return CHAT_RATE_ERROR;
}

chat_rate_result chat_rate_take(chat_redis *r, const char *key, long long burst,
                                long long per_min, int64_t now_ms, int64_t *retry_ms)
{
    char b[24], rate[24], now[24];
    snprintf(b, sizeof b, "%lld", burst);
    snprintf(rate, sizeof rate, "%lld", per_min);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    const char *args[] = {key, b, rate, now};
    *retry_ms = 0;
    redisReply *rep = chat_redis_eval(r, chat_rate_take_script(), 1, 4, args);
    if (rep == NULL)
        return CHAT_RATE_ERROR;
    bool noscript;
    chat_rate_result res = chat_rate_parse(rep, retry_ms, &noscript);
    freeReplyObject(rep);
    return res;
}

void chat_rate_key(char *key, size_t n, const char *prefix, const char *user)
{
    int p = snprintf(key, n, "%s:", prefix);
    size_t len = (size_t)snprintf(key + p, n - (size_t)p, "%s", user) + (size_t)p;
    for (size_t i = (size_t)p; i < len && i < n; i++)
        key[i] = (char)tolower((unsigned char)key[i]);
}
