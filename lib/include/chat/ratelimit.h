/* Token buckets in Redis, one per key the caller names (a user, a user and
 * an area), shared by every replica of every service that uses the same
 * Redis: a user is limited the same wherever the requests land. A bucket
 * holds up to `burst` tokens and refills per_min / 60000 per ms; a bucket
 * that would be full again expires, so idle users cost nothing. */
#ifndef CHAT_RATELIMIT_H
#define CHAT_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/redis.h"

/* The per-user limit of a service's requests other than sends (svc-message:
 * open_dm, rooms, history, typing, receipt; svc-match: start and stop
 * search; svc-presence: presence queries), each service a bucket of its
 * own per user, for its configuration table. */
#define CHAT_RATE_CFG_OPS(per_min, burst)                                            \
    {"CHAT_OPS_RATE_PER_MIN",                                                        \
     CHAT_CFG_INT,                                                                   \
     "600",                                                                          \
     0,                                                                              \
     1000000,                                                                        \
     "a user's requests to this service other than sends, per minute, all replicas " \
     "together (0: no limit)",                                                       \
     per_min},                                                                       \
    {                                                                                \
        "CHAT_OPS_BURST", CHAT_CFG_INT, "100", 1, 1000000,                           \
            "of those, how many a user may send at once", burst                      \
    }

typedef enum chat_rate_result {
    CHAT_RATE_OK,
    CHAT_RATE_LIMITED,
    CHAT_RATE_ERROR
} chat_rate_result;

/* The take script (KEYS[1] the bucket; ARGV: burst, per_min, now ms;
 * returns {allowed 0/1, ms until one token}), for callers that pipeline it
 * with chat_redis_append_eval. */
const chat_redis_script *chat_rate_take_script(void);
/* Reads a take's reply. NOSCRIPT (the script cache flushed under us) is
 * CHAT_RATE_ERROR with *noscript set, so that the caller can run it again. */
chat_rate_result chat_rate_parse(const redisReply *rep, int64_t *retry_ms, bool *noscript);
/* One take, one round trip (CHAT_RATE_ERROR: Redis unreachable or broken;
 * the caller decides whether to let the request through). */
chat_rate_result chat_rate_take(chat_redis *r, const char *key, long long burst,
                                long long per_min, int64_t now_ms, int64_t *retry_ms);
/* "PREFIX:user" with the user id lower-cased (ids arrive in either case). */
void chat_rate_key(char *key, size_t n, const char *prefix, const char *user);

#endif
