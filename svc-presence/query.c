/* Presence queries: online (some connection open; last seen = now) or
 * offline with the time the last connection closed (0 when unknown). */
#include "presence.h"

#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

/* ARGV: user ids. Returns {scard1, seen1, scard2, seen2, ...}, seen "" when
 * unknown (a Lua nil would end the array). */
static const char QUERY_SRC[] = "local out = {}\n"
                                "for i, u in ipairs(ARGV) do\n"
                                "  out[2 * i - 1] = redis.call('SCARD', 'p:conns:' .. u)\n"
                                "  out[2 * i] = redis.call('GET', 'p:seen:' .. u) or ''\n"
                                "end\n"
                                "return out\n";

/* Ids per script call (chat_redis_eval takes at most 64 arguments). */
#define QUERY_CHUNK 50

/* No keys (reads p:gwalive and p:gw:*). Returns {users online, their
 * connections} over every live gateway. */
static const char ONLINE_SRC[] =
    "local seen, users, conns = {}, 0, 0\n"
    "for _, gw in ipairs(redis.call('ZRANGE', 'p:gwalive', 0, -1)) do\n"
    "  for _, m in ipairs(redis.call('SMEMBERS', 'p:gw:' .. gw)) do\n"
    "    conns = conns + 1\n"
    "    local u = string.match(m, '^(.-)/')\n"
    "    if u and not seen[u] then seen[u] = true; users = users + 1 end\n"
    "  end\n"
    "end\n"
    "return {users, conns}\n";

static chat_redis_script query_script, online_script;

void pres_query_scripts_init(void)
{
    chat_redis_script_init(&query_script, QUERY_SRC);
    chat_redis_script_init(&online_script, ONLINE_SRC);
}

int pres_online_count(chat_redis *r, uint64_t *users, uint64_t *conns)
{
    redisReply *rep = chat_redis_eval(r, &online_script, 0, 0, NULL);
    int rv = -1;
    if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_INTEGER) {
        *users = (uint64_t)rep->element[0]->integer;
        *conns = (uint64_t)rep->element[1]->integer;
        rv = 0;
    }
    freeReplyObject(rep);
    return rv;
}

int pres_parse_query(const redisReply *rep, size_t n, bool *online, int64_t *seen)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const redisReply *c = rep->element[2 * i], *s = rep->element[2 * i + 1];
        if (c->type != REDIS_REPLY_INTEGER || s->type != REDIS_REPLY_STRING)
            return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *c = rep->element[2 * i], *s = rep->element[2 * i + 1];
        online[i] = c->integer > 0;
        char *end = NULL;
        long long v = s->len > 0 ? strtoll(s->str, &end, 10) : 0;
        seen[i] = (s->len > 0 && end != NULL && *end == '\0' && v > 0) ? v : 0;
    }
    return 0;
}

/* Fills online/seen for ids[0..n) with one script call. Returns 0 or -1. */
static int query_chunk(chat_redis *r, char **ids, size_t n, bool *online, int64_t *seen)
{
    redisReply *rep = chat_redis_eval(r, &query_script, 0, (int)n, (const char **)ids);
    if (rep == NULL)
        return -1;
    int rv = pres_parse_query(rep, n, online, seen);
    if (rv != 0)
        chat_error("pres_bad_script_reply", "script=query n=%zu", n);
    freeReplyObject(rep);
    return rv;
}

void pres_query(chat_redis *r, const Chat__QueryReq *q, int64_t now, pres_out *out)
{
    size_t n = q->n_user_ids;
    if (n == 0)
        return;
    bool *online = calloc(n, sizeof *online);
    int64_t *seen = calloc(n, sizeof *seen);
    out->statuses = calloc(n, sizeof *out->statuses);
    out->status_ptrs = calloc(n, sizeof *out->status_ptrs);
    if (!online || !seen || !out->statuses || !out->status_ptrs) {
        pres_out_err(out, CHAT__CODE__INTERNAL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i += QUERY_CHUNK) {
        size_t k = n - i < QUERY_CHUNK ? n - i : QUERY_CHUNK;
        if (query_chunk(r, q->user_ids + i, k, online + i, seen + i) != 0) {
            pres_out_err(out, CHAT__CODE__UNAVAILABLE, "presence store unavailable");
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++) {
        Chat__UserStatus *st = &out->statuses[i];
        chat__user_status__init(st);
        st->user_id = q->user_ids[i];
        st->online = online[i];
        st->last_seen = online[i] ? now : seen[i];
        out->status_ptrs[i] = st;
    }
    out->reply.n_statuses = n;
    out->reply.statuses = out->status_ptrs;
done:
    free(online);
    free(seen);
}

int pres_status_of(chat_redis *r, const char *user, bool *online, int64_t *seen)
{
    char *ids[] = {(char *)user};
    return query_chunk(r, ids, 1, online, seen);
}
