/* The search queue: start_search pairs a searcher with the user who has
 * waited longest, or queues it; stop_search and user_offline leave the
 * queue. All decisions are Lua scripts (see match.h for the keys). */
#include "match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

/* KEYS: m:chat:{user} m:q:{user} m:queue m:ticket; ARGV: user pending_ttl_s
 * queue_only ("1": do not pair, just queue).
 * Returns {"in_chat"}, {"searching"} or {"paired", partner, partner_ticket}.
 * A user whose conversation is being created ("pending") is as good as
 * matched: asking again answers "searching" (and takes back a stop made
 * meanwhile), the match itself arrives as an event. Entries are popped from
 * the head until a live one of another user shows up, so stale entries are
 * dropped as they are met and each entry is popped once. */
static const char PAIR_SRC[] =
    "local chat = redis.call('GET', KEYS[1])\n"
    "if chat then\n"
    "  if chat == 'pending:left' then redis.call('SET', KEYS[1], 'pending', 'KEEPTTL') end\n"
    "  if string.sub(chat, 1, 7) == 'pending' then return {'searching'} end\n"
    "  return {'in_chat'}\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then return {'searching'} end\n"
    "while ARGV[3] ~= '1' do\n"
    "  local e = redis.call('LPOP', KEYS[3])\n"
    "  if not e then break end\n"
    "  local sep = string.find(e, ':', 1, true)\n"
    "  if sep then\n"
    "    local t = string.sub(e, 1, sep - 1)\n"
    "    local u = string.sub(e, sep + 1)\n"
    "    redis.call('HDEL', 'm:qsince', t)\n"
    "    local qk = 'm:q:' .. u\n"
    "    if u ~= ARGV[1] and redis.call('GET', qk) == t then\n"
    "      redis.call('DEL', qk)\n"
    "      if not redis.call('GET', 'm:chat:' .. u) then\n"
    "        redis.call('SET', 'm:chat:' .. u, 'pending', 'EX', ARGV[2])\n"
    "        redis.call('SET', KEYS[1], 'pending', 'EX', ARGV[2])\n"
    "        return {'paired', u, t}\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local t = redis.call('INCR', KEYS[4])\n"
    "redis.call('SET', KEYS[2], t)\n"
    "redis.call('RPUSH', KEYS[3], t .. ':' .. ARGV[1])\n"
    "local now = redis.call('TIME')\n"
    "redis.call('HSET', 'm:qsince', t, now[1] * 1000 + math.floor(now[2] / 1000))\n"
    "return {'searching'}\n";

/* KEYS: m:chat:{user} m:chat:{partner} m:conv:{id}; ARGV: id partner user.
 * Turns both reservations into the conversation. Returns 0 without a change
 * if either user is already in another chat (a reservation outlived its TTL
 * and was reused: should never happen, but must not pair anyone twice); 2
 * when the partner, 3 when the user, stopped searching or went offline while
 * the conversation was being created ("pending:left"): their search_stopped
 * is final, and nobody is matched with a user who is gone. */
static const char COMMIT_SRC[] =
    "for i = 1, 2 do\n"
    "  local v = redis.call('GET', KEYS[i])\n"
    "  if v and string.sub(v, 1, 7) ~= 'pending' then return 0 end\n"
    "end\n"
    "if redis.call('GET', KEYS[2]) == 'pending:left' then return 2 end\n"
    "if redis.call('GET', KEYS[1]) == 'pending:left' then return 3 end\n"
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "redis.call('SET', KEYS[2], ARGV[1])\n"
    "redis.call('HSET', KEYS[3], 'a', ARGV[2], 'b', ARGV[3])\n"
    "return 1\n";

/* KEYS: m:chat:{user} m:chat:{partner} m:q:{partner} m:queue;
 * ARGV: partner partner_ticket. Undoes a pairing whose conversation could not
 * be created: drops both reservations and puts the partner back at the head
 * with its old ticket, unless it stopped searching meanwhile. Returns 1 when
 * the partner was requeued. */
static const char ABORT_SRC[] =
    "local function pending(v) return v and string.sub(v, 1, 7) == 'pending' end\n"
    "if pending(redis.call('GET', KEYS[1])) then redis.call('DEL', KEYS[1]) end\n"
    "local pv = redis.call('GET', KEYS[2])\n"
    "if not pending(pv) then return 0 end\n"
    "redis.call('DEL', KEYS[2])\n"
    "if pv ~= 'pending' or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end\n"
    "redis.call('SET', KEYS[3], ARGV[2])\n"
    "redis.call('LPUSH', KEYS[4], ARGV[2] .. ':' .. ARGV[1])\n"
    "local now = redis.call('TIME')\n"
    "redis.call('HSETNX', 'm:qsince', ARGV[2], now[1] * 1000 + math.floor(now[2] / 1000))\n"
    "return 1\n";

/* KEYS: m:q:{user} m:chat:{user}. Leaves the queue; the list entry becomes
 * stale. A user being paired right now is marked so a failed create does not
 * put it back. Returns the user's random chat when it is in one (the stop
 * came after the match), else nil. */
static const char LEAVE_SRC[] =
    "redis.call('DEL', KEYS[1])\n"
    "local chat = redis.call('GET', KEYS[2])\n"
    "if chat == 'pending' then\n"
    "  redis.call('SET', KEYS[2], 'pending:left', 'KEEPTTL')\n"
    "  return false\n"
    "end\n"
    "if chat and string.sub(chat, 1, 7) ~= 'pending' then return chat end\n"
    "return false\n";

/* No keys (it reads m:queue, m:q:* and m:qsince). Counts the live entries
 * of the queue (at most the first 100,000 are looked at) and returns
 * {count, the oldest live entry's queue time in unix ms or "", now in unix
 * ms}. */
static const char STATS_SRC[] =
    "local n, oldest = 0, false\n"
    "for _, e in ipairs(redis.call('LRANGE', 'm:queue', 0, 99999)) do\n"
    "  local sep = string.find(e, ':', 1, true)\n"
    "  if sep then\n"
    "    local t = string.sub(e, 1, sep - 1)\n"
    "    if redis.call('GET', 'm:q:' .. string.sub(e, sep + 1)) == t then\n"
    "      n = n + 1\n"
    "      if not oldest then oldest = redis.call('HGET', 'm:qsince', t) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local now = redis.call('TIME')\n"
    "return {n, oldest or '', tostring(now[1] * 1000 + math.floor(now[2] / 1000))}\n";

static chat_redis_script pair_script, commit_script, abort_script, leave_script, stats_script;

void match_queue_scripts_init(void)
{
    chat_redis_script_init(&pair_script, PAIR_SRC);
    chat_redis_script_init(&commit_script, COMMIT_SRC);
    chat_redis_script_init(&abort_script, ABORT_SRC);
    chat_redis_script_init(&leave_script, LEAVE_SRC);
    chat_redis_script_init(&stats_script, STATS_SRC);
}

static bool reply_is_str(const redisReply *r);

int match_queue_stats(chat_redis *r, uint64_t *waiting, int64_t *longest_ms)
{
    redisReply *rep = chat_redis_eval(r, &stats_script, 0, 0, NULL);
    int rv = -1;
    if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER && reply_is_str(rep->element[1]) &&
        reply_is_str(rep->element[2])) {
        *waiting = (uint64_t)rep->element[0]->integer;
        long long since = atoll(rep->element[1]->str), now = atoll(rep->element[2]->str);
        *longest_ms = since > 0 && now > since ? now - since : 0;
        rv = 0;
    }
    freeReplyObject(rep);
    return rv;
}

static bool reply_is_str(const redisReply *r)
{
    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

int match_parse_pair(const redisReply *rep, match_pair *out)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        !reply_is_str(rep->element[0]))
        return -1;
    const char *st = rep->element[0]->str;
    if (strcmp(st, "in_chat") == 0 || strcmp(st, "searching") == 0) {
        out->status = st[0] == 'i' ? MATCH_PAIR_IN_CHAT : MATCH_PAIR_SEARCHING;
        out->partner[0] = out->ticket[0] = '\0';
        return 0;
    }
    if (strcmp(st, "paired") != 0 || rep->elements != 3 || !reply_is_str(rep->element[1]) ||
        !reply_is_str(rep->element[2]))
        return -1;
    const redisReply *u = rep->element[1], *t = rep->element[2];
    if (u->len != CHAT_UUID_LEN || !chat_uuid_valid(u->str) || t->len == 0 ||
        t->len >= sizeof out->ticket)
        return -1;
    out->status = MATCH_PAIR_PAIRED;
    memcpy(out->partner, u->str, u->len + 1);
    memcpy(out->ticket, t->str, t->len + 1);
    return 0;
}

/* Puts things back after a failed create (best effort: Redis may be gone). */
static void pair_abort(chat_redis *r, const char *user, const match_pair *p)
{
    char kchat[64], kpchat[64], kpq[64];
    snprintf(kchat, sizeof kchat, "m:chat:%s", user);
    snprintf(kpchat, sizeof kpchat, "m:chat:%s", p->partner);
    snprintf(kpq, sizeof kpq, "m:q:%s", p->partner);
    const char *args[] = {kchat, kpchat, kpq, "m:queue", p->partner, p->ticket};
    redisReply *rep = chat_redis_eval(r, &abort_script, 4, 6, args);
    chat_info("match_pair_undone", "user=%s partner=%s requeued=%d", user, p->partner,
              rep != NULL && rep->type == REDIS_REPLY_INTEGER ? (int)rep->integer : -1);
    freeReplyObject(rep);
}

/* Returns 1 committed, 0 conflict, 2 partner left, 3 user left, -1 Redis
 * unreachable. */
static int pair_commit(chat_redis *r, const char *user, const match_pair *p, const char *conv)
{
    char kchat[64], kpchat[64], kconv[80];
    snprintf(kchat, sizeof kchat, "m:chat:%s", user);
    snprintf(kpchat, sizeof kpchat, "m:chat:%s", p->partner);
    snprintf(kconv, sizeof kconv, "m:conv:%s", conv);
    const char *args[] = {kchat, kpchat, kconv, conv, p->partner, user};
    redisReply *rep = chat_redis_eval(r, &commit_script, 3, 6, args);
    if (rep == NULL)
        return -1;
    int rv = rep->type == REDIS_REPLY_INTEGER && rep->integer >= 1 && rep->integer <= 3
                 ? (int)rep->integer
                 : 0;
    freeReplyObject(rep);
    return rv;
}

static void pair_publish(const match_env *env, const char *user, const char *partner,
                         const char *conv, const Chat__ConnRef *conn)
{
    Chat__MatchedEvt m = CHAT__MATCHED_EVT__INIT;
    m.conversation_id = (char *)conv;
    char *ids[2] = {(char *)partner, (char *)user};
    Chat__Event ev = CHAT__EVENT__INIT;
    ev.n_user_ids = 2;
    ev.user_ids = ids;
    ev.exclude = (Chat__ConnRef *)conn;
    ev.body_case = CHAT__EVENT__BODY_MATCHED;
    ev.matched = &m;
    env->publish(env->ctx, &ev);
}

/* Both users are reserved: make the conversation, then make it theirs.
 * Returns true when the user should search again (the partner left while the
 * conversation was being made: the next one in the queue may be there). */
static bool pair_finish(const match_env *env, chat_redis *r, const char *user,
                        const match_pair *p, const Chat__ConnRef *conn, match_out *out)
{
    char conv[MATCH_ID_MAX + 1];
    if (match_create_conversation(env, user, p->partner, conv) != 0) {
        pair_abort(r, user, p);
        match_out_err(out, CHAT__CODE__UNAVAILABLE, "cannot create the conversation");
        return false;
    }
    int c = pair_commit(r, user, p, conv);
    if (c == 2 || c == 3) {
        /* A left: the conversation is never used. pair_abort drops both
         * reservations and requeues the partner only if it is still
         * searching (c == 3: the user left, so it answers plain OK). */
        chat_info("match_pair_left", "user=%s partner=%s conv=%s left=%s", user, p->partner,
                  conv, c == 2 ? "partner" : "user");
        match_close_conversation(env, conv, user);
        pair_abort(r, user, p);
        return c == 2;
    }
    if (c != 1) {
        /* Nobody will ever use this conversation: close it, undo the rest. */
        chat_warn("match_commit_failed", "user=%s partner=%s conv=%s redis=%s", user,
                  p->partner, conv, c < 0 ? "unreachable" : "conflict");
        match_close_conversation(env, conv, user);
        pair_abort(r, user, p);
        match_out_err(out, CHAT__CODE__UNAVAILABLE, "cannot record the match");
        return false;
    }
    chat_info("match_paired", "conv=%s a=%s b=%s", conv, p->partner, user);
    snprintf(out->conv, sizeof out->conv, "%s", conv);
    snprintf(out->partner, sizeof out->partner, "%s", p->partner);
    out->reply.matched_conversation_id = out->conv;
    out->reply.partner_id = out->partner;
    pair_publish(env, user, p->partner, conv, conn);
    return false;
}

#define MATCH_PAIR_ATTEMPTS 3

static bool start_search_once(const match_env *env, chat_redis *r,
                              const Chat__StartSearchReq *q, const char **args, match_out *out);

void match_start_search(const match_env *env, chat_redis *r, const Chat__StartSearchReq *q,
                        match_out *out)
{
    const char *user = q->user_id;
    char kchat[64], kq[64], ttl[16];
    snprintf(kchat, sizeof kchat, "m:chat:%s", user);
    snprintf(kq, sizeof kq, "m:q:%s", user);
    snprintf(ttl, sizeof ttl, "%d", env->pending_ttl_s > 0 ? env->pending_ttl_s : 60);
    const char *args[] = {kchat, kq, "m:queue", "m:ticket", user, ttl, "0"};
    /* Bounded: each retry follows a partner that left mid-pairing (many
     * leave at once when a crowd stops searching); the last try queues the
     * user instead, so a search always ends searching, matched or refused. */
    for (int attempt = 0; attempt < MATCH_PAIR_ATTEMPTS; attempt++) {
        args[6] = attempt == MATCH_PAIR_ATTEMPTS - 1 ? "1" : "0";
        if (!start_search_once(env, r, q, args, out))
            return;
    }
}

static bool start_search_once(const match_env *env, chat_redis *r,
                              const Chat__StartSearchReq *q, const char **args, match_out *out)
{
    const char *user = q->user_id;
    redisReply *rep = chat_redis_eval(r, &pair_script, 4, 7, args);
    if (rep == NULL) {
        match_out_err(out, CHAT__CODE__UNAVAILABLE, "queue unavailable");
        return false;
    }
    match_pair p;
    int rv = match_parse_pair(rep, &p);
    freeReplyObject(rep);
    if (rv != 0) {
        chat_error("match_bad_script_reply", "script=pair user=%s", user);
        match_out_err(out, CHAT__CODE__INTERNAL, "unexpected queue state");
        return false;
    }
    switch (p.status) {
    case MATCH_PAIR_IN_CHAT:
        match_out_err(out, CHAT__CODE__ALREADY_IN_CHAT, "already in a random chat");
        return false;
    case MATCH_PAIR_SEARCHING: chat_debug("match_searching", "user=%s", user); return false;
    case MATCH_PAIR_PAIRED: return pair_finish(env, r, user, &p, q->conn, out);
    }
    return false;
}

void match_leave_queue(chat_redis *r, const char *user_id, match_out *out)
{
    char kq[64], kchat[64];
    snprintf(kq, sizeof kq, "m:q:%s", user_id);
    snprintf(kchat, sizeof kchat, "m:chat:%s", user_id);
    const char *args[] = {kq, kchat};
    redisReply *rep = chat_redis_eval(r, &leave_script, 2, 2, args);
    /* OK whether or not the user was searching; but a leave that did not
     * reach Redis is not done, and the caller must know. */
    if (rep == NULL) {
        match_out_err(out, CHAT__CODE__UNAVAILABLE, "queue unavailable");
        return;
    }
    /* Matched before the stop came: the match stands. The reply names the
     * chat because its `matched` event may still be on the way, and the
     * client must learn of the chat before it reads search_stopped. */
    if (rep->type == REDIS_REPLY_STRING && rep->len > 0 && rep->len <= MATCH_ID_MAX) {
        memcpy(out->conv, rep->str, rep->len + 1);
        out->reply.matched_conversation_id = out->conv;
    }
    freeReplyObject(rep);
}
