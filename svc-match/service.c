/* One MatchRequest -> one MatchReply: validation and dispatch to the
 * handlers (queue.c, chats.c); their shared helpers are below them, in
 * out.c and calls.c. No nng here (see server.c). */
#include "match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"
#include "chat/ratelimit.h"
#include "chat/util.h"

void match_scripts_init(void)
{
    match_queue_scripts_init();
    match_chats_scripts_init();
}

/* The user id of any request, or NULL when the body is missing. */
static const char *request_user(const Chat__MatchRequest *req)
{
    switch (req->body_case) {
    case CHAT__MATCH_REQUEST__BODY_START_SEARCH: return req->start_search->user_id;
    case CHAT__MATCH_REQUEST__BODY_STOP_SEARCH: return req->stop_search->user_id;
    case CHAT__MATCH_REQUEST__BODY_END_CHAT: return req->end_chat->user_id;
    case CHAT__MATCH_REQUEST__BODY_USER_OFFLINE: return req->user_offline->user_id;
    case CHAT__MATCH_REQUEST__BODY_USER_GONE: return req->user_gone->user_id;
    case CHAT__MATCH_REQUEST__BODY_SESSION: return req->session->user_id;
    default: return NULL;
    }
}

/* A client's start_search and stop_search take from the user's bucket
 * (shared by every replica through Redis); false: answered RATE_LIMITED.
 * The gateway's own requests (end of a chat, offline, session) are not
 * limited, and Redis unreachable lets the request through (the queue
 * itself then fails with UNAVAILABLE anyway). */
static bool match_within_limit(const match_env *env, chat_redis *r,
                               const Chat__MatchRequest *req, const char *user, match_out *out)
{
    if (env->ops_per_min <= 0 || (req->body_case != CHAT__MATCH_REQUEST__BODY_START_SEARCH &&
                                  req->body_case != CHAT__MATCH_REQUEST__BODY_STOP_SEARCH))
        return true;
    char key[96];
    chat_rate_key(key, sizeof key, "rl:match", user);
    int64_t retry = 0;
    if (chat_rate_take(r, key, env->ops_burst, env->ops_per_min, chat_now_ms(), &retry) !=
        CHAT_RATE_LIMITED)
        return true;
    match_out_err(out, CHAT__CODE__RATE_LIMITED, "too many requests");
    out->reply.retry_after_ms = retry;
    return false;
}

void match_handle(const match_env *env, chat_redis *r, const Chat__MatchRequest *req,
                  match_out *out)
{
    const char *user = request_user(req);
    if (user == NULL) {
        match_out_err(out, CHAT__CODE__BAD_REQUEST, "empty request");
        return;
    }
    /* Every key we build embeds the user id: only canonical UUIDs go in. */
    if (!chat_uuid_valid(user)) {
        match_out_err(out, CHAT__CODE__BAD_REQUEST, "user_id is not a uuid");
        return;
    }
    if (!match_within_limit(env, r, req, user, out))
        return;
    switch (req->body_case) {
    case CHAT__MATCH_REQUEST__BODY_START_SEARCH:
        match_start_search(env, r, req->start_search, out);
        break;
    case CHAT__MATCH_REQUEST__BODY_STOP_SEARCH:
    case CHAT__MATCH_REQUEST__BODY_USER_OFFLINE: match_leave_queue(r, user, out); break;
    case CHAT__MATCH_REQUEST__BODY_END_CHAT: match_end_chat(env, r, req->end_chat, out); break;
    case CHAT__MATCH_REQUEST__BODY_USER_GONE: match_user_gone(env, r, user, out); break;
    case CHAT__MATCH_REQUEST__BODY_SESSION: match_session(r, user, out); break;
    default: break;
    }
}
