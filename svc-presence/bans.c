/* Bans (chatctl ban / unban): who may not connect, until when. They live
 * in Redis with the rest of the live state, so every replica and, through
 * the gateways' heartbeats, every gateway sees the same ones:
 *   p:bans       hash user -> until (unix ms; 0 = until unbanned)
 *   p:bans:ver   the version: unix ms of the last change (kept rising), so a
 *                gateway that holds another one asks for the list again;
 *                a Redis that lost its data answers 0, and gateways then
 *                drop what they had, as Redis did.
 * An expired ban is pruned when the list is read. */
#include "presence.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

/* KEYS: p:bans p:bans:ver; ARGV: user until now ("" until: lift).
 * Returns the new version, or 0 when a lift found nothing to lift. */
static const char SET_SRC[] =
    "if ARGV[2] == '' then\n"
    "  if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "end\n"
    "local v = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "local now = tonumber(ARGV[3])\n"
    "if now <= v then now = v + 1 end\n"
    "redis.call('SET', KEYS[2], now)\n"
    "return now\n";

/* KEYS: p:bans p:bans:ver; ARGV: now. Prunes expired bans, returns
 * {version, user1, until1, ...}. */
static const char LIST_SRC[] = "local now = tonumber(ARGV[1])\n"
                               "local out = {tonumber(redis.call('GET', KEYS[2]) or '0')}\n"
                               "local all = redis.call('HGETALL', KEYS[1])\n"
                               "for i = 1, #all, 2 do\n"
                               "  local t = tonumber(all[i + 1]) or 0\n"
                               "  if t ~= 0 and t <= now then\n"
                               "    redis.call('HDEL', KEYS[1], all[i])\n"
                               "  else\n"
                               "    out[#out + 1] = all[i]\n"
                               "    out[#out + 1] = all[i + 1]\n"
                               "  end\n"
                               "end\n"
                               "return out\n";

static chat_redis_script set_script, list_script;

void pres_bans_scripts_init(void)
{
    chat_redis_script_init(&set_script, SET_SRC);
    chat_redis_script_init(&list_script, LIST_SRC);
}

static int64_t bans_change(chat_redis *r, const char *user, const char *until, int64_t now)
{
    char now_s[24];
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    const char *args[] = {"p:bans", "p:bans:ver", user, until, now_s};
    redisReply *rep = chat_redis_eval(r, &set_script, 2, 5, args);
    int64_t v = rep != NULL && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return v;
}

int pres_ban_set(chat_redis *r, const char *user, int64_t until_ms, int64_t now)
{
    char until[24];
    snprintf(until, sizeof until, "%" PRId64, until_ms);
    int64_t v = bans_change(r, user, until, now);
    if (v > 0)
        chat_info("pres_ban_set", "user=%s until_ms=%" PRId64 " version=%" PRId64, user,
                  until_ms, v);
    return v > 0 ? 0 : -1;
}

int pres_ban_lift(chat_redis *r, const char *user, int64_t now, bool *lifted)
{
    int64_t v = bans_change(r, user, "", now);
    if (v < 0)
        return -1;
    *lifted = v > 0;
    if (v > 0)
        chat_info("pres_ban_lifted", "user=%s version=%" PRId64, user, v);
    return 0;
}

int pres_ban_of(chat_redis *r, const char *user, int64_t now, int64_t *until_ms)
{
    redisReply *rep = chat_redis_cmd(r, "HGET p:bans %s", user);
    if (rep == NULL)
        return -1;
    *until_ms = -1;
    if (rep->type == REDIS_REPLY_STRING) {
        long long u = atoll(rep->str);
        if (u == 0 || u > now)
            *until_ms = u;
    }
    freeReplyObject(rep);
    return 0;
}

int pres_bans_version(chat_redis *r, uint64_t *version)
{
    redisReply *rep = chat_redis_cmd(r, "GET p:bans:ver");
    if (rep == NULL)
        return -1;
    *version = rep->type == REDIS_REPLY_STRING ? strtoull(rep->str, NULL, 10) : 0;
    freeReplyObject(rep);
    return 0;
}

/* Copies the list script's reply into out (entries, pointers and user ids
 * in one block that pres_out_free frees). */
static int bans_fill(const redisReply *rep, pres_out *out)
{
    size_t n = (rep->elements - 1) / 2;
    size_t size = n * (sizeof(Chat__BanEntry) + sizeof(Chat__BanEntry *) + CHAT_UUID_LEN + 1);
    char *mem = calloc(1, size > 0 ? size : 1);
    if (mem == NULL)
        return -1;
    Chat__BanEntry *entries = (Chat__BanEntry *)mem;
    Chat__BanEntry **ptrs = (Chat__BanEntry **)(entries + n);
    char *ids = (char *)(ptrs + n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *u = rep->element[1 + 2 * i], *t = rep->element[2 + 2 * i];
        if (u->type != REDIS_REPLY_STRING || u->len != CHAT_UUID_LEN ||
            t->type != REDIS_REPLY_STRING)
            continue;
        chat__ban_entry__init(&entries[k]);
        entries[k].user_id = memcpy(ids + k * (CHAT_UUID_LEN + 1), u->str, CHAT_UUID_LEN + 1);
        entries[k].until_ms = atoll(t->str);
        ptrs[k] = &entries[k];
        k++;
    }
    out->bans_mem = mem;
    out->reply.bans = ptrs;
    out->reply.n_bans = k;
    out->reply.bans_version = (uint64_t)rep->element[0]->integer;
    return 0;
}

void pres_bans_list(chat_redis *r, int64_t now, pres_out *out)
{
    char now_s[24];
    snprintf(now_s, sizeof now_s, "%" PRId64, now);
    const char *args[] = {"p:bans", "p:bans:ver", now_s};
    redisReply *rep = chat_redis_eval(r, &list_script, 2, 3, args);
    if (rep == NULL) {
        pres_out_err(out, CHAT__CODE__UNAVAILABLE, "presence store unavailable");
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || rep->elements % 2 != 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER)
        pres_out_err(out, CHAT__CODE__INTERNAL, "unexpected bans state");
    else if (bans_fill(rep, out) != 0)
        pres_out_err(out, CHAT__CODE__INTERNAL, "out of memory");
    freeReplyObject(rep);
}
