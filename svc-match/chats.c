/* Active random chats: ending them (by a user, or because a user's grace ran
 * out) and the timeout notices handed over at the user's next session. */
#include "match.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

/* Lua helper shared by END and GONE: removes the chat of `user` (whose
 * m:chat was just checked to be `id`), the partner's m:chat if it still
 * points at id, and m:conv:{id}. Returns the partner ("" if unknown). */
#define FINISH_FN                                                                         \
    "local function finish(id, user)\n"                                                   \
    "  local ck = 'm:conv:' .. id\n"                                                      \
    "  local a = redis.call('HGET', ck, 'a')\n"                                           \
    "  local b = redis.call('HGET', ck, 'b')\n"                                           \
    "  local partner = ''\n"                                                              \
    "  if a == user and b then partner = b elseif b == user and a then partner = a end\n" \
    "  redis.call('DEL', 'm:chat:' .. user)\n"                                            \
    "  if partner ~= '' and redis.call('GET', 'm:chat:' .. partner) == id then\n"         \
    "    redis.call('DEL', 'm:chat:' .. partner)\n"                                       \
    "  end\n"                                                                             \
    "  redis.call('DEL', ck)\n"                                                           \
    "  return partner\n"                                                                  \
    "end\n"

/* KEYS: m:chat:{user}; ARGV: id user ttl_s max. The partner, or nil when id
 * is not the user's active chat. The partner gets a notice for its next
 * session: if it had no connection, the live chat_ended never reached it. */
static const char END_SRC[] =
    FINISH_FN "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end\n"
              "local partner = finish(ARGV[1], ARGV[2])\n"
              "if partner ~= '' then\n"
              "  local nk = 'm:timeouts:' .. partner\n"
              "  redis.call('RPUSH', nk, 'p:' .. ARGV[1])\n"
              "  redis.call('LTRIM', nk, -tonumber(ARGV[4]), -1)\n"
              "  redis.call('EXPIRE', nk, ARGV[3])\n"
              "end\n"
              "return partner\n";

/* KEYS: m:chat:{user} m:timeouts:{user}; ARGV: user ttl_s max. Ends the
 * user's random chat (not a pending one) and keeps a notice for its return.
 * Returns {id, partner} or nil. */
static const char GONE_SRC[] =
    FINISH_FN "local id = redis.call('GET', KEYS[1])\n"
              "if not id or string.sub(id, 1, 7) == 'pending' then return false end\n"
              "local partner = finish(id, ARGV[1])\n"
              "redis.call('RPUSH', KEYS[2], id)\n"
              "redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)\n"
              "redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
              "return {id, partner}\n";

/* KEYS: m:timeouts:{user}. Hands the notices over exactly once. */
static const char SESSION_SRC[] = "local l = redis.call('LRANGE', KEYS[1], 0, -1)\n"
                                  "redis.call('DEL', KEYS[1])\n"
                                  "return l\n";

static chat_redis_script end_script, gone_script, session_script;

void match_chats_scripts_init(void)
{
    chat_redis_script_init(&end_script, END_SRC);
    chat_redis_script_init(&gone_script, GONE_SRC);
    chat_redis_script_init(&session_script, SESSION_SRC);
}

int match_parse_gone(const redisReply *rep, match_gone *out)
{
    if (rep == NULL)
        return -1;
    if (rep->type == REDIS_REPLY_NIL)
        return 0;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
        return -1;
    const redisReply *id = rep->element[0], *p = rep->element[1];
    if (id->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING || id->len == 0 ||
        id->len > MATCH_ID_MAX || p->len > CHAT_UUID_LEN)
        return -1;
    memcpy(out->conv, id->str, id->len + 1);
    memcpy(out->partner, p->str, p->len + 1);
    return 1;
}

static void publish_ended(const match_env *env, const char *user, const char *partner,
                          const char *conv, const Chat__ConnRef *conn)
{
    Chat__ChatEndedEvt e = CHAT__CHAT_ENDED_EVT__INIT;
    e.conversation_id = (char *)conv;
    e.ended_by = (char *)user;
    char *ids[2] = {(char *)user, (char *)partner};
    Chat__Event ev = CHAT__EVENT__INIT;
    ev.n_user_ids = partner[0] != '\0' ? 2 : 1;
    ev.user_ids = ids;
    ev.exclude = (Chat__ConnRef *)conn;
    ev.body_case = CHAT__EVENT__BODY_CHAT_ENDED;
    ev.chat_ended = &e;
    env->publish(env->ctx, &ev);
}

/* conv is not the user's active chat: tell why, from svc-message's records. */
static void end_inactive(const match_env *env, const char *user, const char *conv,
                         match_out *out)
{
    Chat__MessageReply *rep = match_conversation_info(env, conv, user);
    if (rep == NULL) {
        match_out_err(out, CHAT__CODE__UNAVAILABLE, "conversation service unavailable");
        return;
    }
    if (rep->code != CHAT__CODE__OK)
        match_out_err(out, rep->code, "%s",
                      rep->detail[0] ? rep->detail : "no such conversation");
    else if (rep->kind != CHAT__CONVERSATION_KIND__RANDOM)
        match_out_err(out, CHAT__CODE__BAD_REQUEST, "not a random chat");
    else if (!rep->is_member)
        match_out_err(out, CHAT__CODE__NOT_MEMBER, "not a member of this chat");
    else {
        /* Ours no longer, so it has ended; PostgreSQL may not know yet (a
         * close that failed earlier, or Redis lost its data). */
        if (!rep->closed)
            match_close_conversation(env, conv, user);
        match_out_err(out, CHAT__CODE__CONVERSATION_CLOSED, "this chat has ended");
    }
    chat__message_reply__free_unpacked(rep, NULL);
}

void match_end_chat(const match_env *env, chat_redis *r, const Chat__EndChatReq *q,
                    match_out *out)
{
    const char *user = q->user_id, *conv = q->conversation_id;
    if (!match_conv_id_valid(conv)) {
        match_out_err(out, CHAT__CODE__BAD_REQUEST, "bad conversation_id");
        return;
    }
    char kchat[64], ttl[16], max[16];
    snprintf(kchat, sizeof kchat, "m:chat:%s", user);
    snprintf(ttl, sizeof ttl, "%d", MATCH_TIMEOUTS_TTL_S);
    snprintf(max, sizeof max, "%d", MATCH_TIMEOUTS_MAX);
    const char *args[] = {kchat, conv, user, ttl, max};
    redisReply *rep = chat_redis_eval(r, &end_script, 1, 5, args);
    if (rep == NULL) {
        match_out_err(out, CHAT__CODE__UNAVAILABLE, "chat state unavailable");
        return;
    }
    if (rep->type == REDIS_REPLY_NIL) {
        freeReplyObject(rep);
        end_inactive(env, user, conv, out);
        return;
    }
    char partner[CHAT_UUID_LEN + 1] = "";
    if (rep->type == REDIS_REPLY_STRING && rep->len <= CHAT_UUID_LEN)
        memcpy(partner, rep->str, rep->len + 1);
    freeReplyObject(rep);
    chat_info("match_chat_ended", "conv=%s by=%s partner=%s", conv, user, partner);
    /* The chat is over for us either way; a failed close is healed by the
     * next end_chat on it (end_inactive). */
    match_close_conversation(env, conv, user);
    publish_ended(env, user, partner, conv, q->conn);
}

void match_user_gone(const match_env *env, chat_redis *r, const char *user_id, match_out *out)
{
    char kchat[64], kto[64], ttl[16], max[16];
    snprintf(kchat, sizeof kchat, "m:chat:%s", user_id);
    snprintf(kto, sizeof kto, "m:timeouts:%s", user_id);
    snprintf(ttl, sizeof ttl, "%d", MATCH_TIMEOUTS_TTL_S);
    snprintf(max, sizeof max, "%d", MATCH_TIMEOUTS_MAX);
    const char *args[] = {kchat, kto, user_id, ttl, max};
    redisReply *rep = chat_redis_eval(r, &gone_script, 2, 5, args);
    if (rep == NULL) {
        /* The caller (svc-presence) retries later. */
        match_out_err(out, CHAT__CODE__UNAVAILABLE, "chat state unavailable");
        return;
    }
    match_gone g;
    int rv = match_parse_gone(rep, &g);
    freeReplyObject(rep);
    if (rv < 0) {
        chat_error("match_bad_script_reply", "script=gone user=%s", user_id);
        match_out_err(out, CHAT__CODE__INTERNAL, "unexpected chat state");
        return;
    }
    if (rv == 0)
        return;
    chat_info("match_chat_timeout", "conv=%s user=%s partner=%s", g.conv, user_id, g.partner);
    match_close_conversation(env, g.conv, user_id);
    if (g.partner[0] == '\0')
        return;
    Chat__PartnerDisconnectedEvt pd = CHAT__PARTNER_DISCONNECTED_EVT__INIT;
    pd.conversation_id = g.conv;
    char *ids[1] = {g.partner};
    Chat__Event ev = CHAT__EVENT__INIT;
    ev.n_user_ids = 1;
    ev.user_ids = ids;
    ev.body_case = CHAT__EVENT__BODY_PARTNER_DISCONNECTED;
    ev.partner_disconnected = &pd;
    env->publish(env->ctx, &ev);
}

void match_session(chat_redis *r, const char *user_id, match_out *out)
{
    char kto[64];
    snprintf(kto, sizeof kto, "m:timeouts:%s", user_id);
    const char *args[] = {kto};
    redisReply *rep = chat_redis_eval(r, &session_script, 1, 1, args);
    if (rep == NULL) {
        match_out_err(out, CHAT__CODE__UNAVAILABLE, "chat state unavailable");
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        match_out_err(out, CHAT__CODE__INTERNAL, "unexpected chat state");
        return;
    }
    /* Timed-out ids first, then partner-ended ones ("p:" prefix stripped). */
    out->timeouts = calloc(rep->elements ? rep->elements : 1, sizeof *out->timeouts);
    size_t nt = 0, ne = 0;
    for (int pass = 0; pass < 2 && out->timeouts != NULL; pass++) {
        for (size_t i = 0; i < rep->elements; i++) {
            const redisReply *e = rep->element[i];
            if (e->type != REDIS_REPLY_STRING)
                continue;
            bool ended = e->len > 2 && strncmp(e->str, "p:", 2) == 0;
            const char *id = ended ? e->str + 2 : e->str;
            size_t len = ended ? e->len - 2 : e->len;
            if (ended != (pass == 1) || len == 0 || len > MATCH_ID_MAX)
                continue;
            char *dup = strdup(id);
            if (dup != NULL)
                out->timeouts[nt + ne] = dup, *(pass ? &ne : &nt) += 1;
        }
    }
    freeReplyObject(rep);
    if (out->timeouts == NULL) {
        match_out_err(out, CHAT__CODE__INTERNAL, "out of memory");
        return;
    }
    out->reply.n_timed_out_conversation_ids = nt;
    out->reply.timed_out_conversation_ids = out->timeouts;
    out->reply.n_partner_ended_conversation_ids = ne;
    out->reply.partner_ended_conversation_ids = out->timeouts + nt;
}
