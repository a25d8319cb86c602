/* One MatchRequest -> one MatchReply: validation, dispatch, and the helpers
 * the request handlers share. No nng here (see net.c). */
#include "match.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

void match_out_init(match_out *o)
{
    memset(o, 0, sizeof *o);
    Chat__MatchReply init = CHAT__MATCH_REPLY__INIT;
    o->reply = init;
    o->reply.code = CHAT__CODE__OK;
}

void match_out_free(match_out *o)
{
    if (o == NULL || o->timeouts == NULL)
        return;
    size_t n =
        o->reply.n_timed_out_conversation_ids + o->reply.n_partner_ended_conversation_ids;
    for (size_t i = 0; i < n; i++)
        free(o->timeouts[i]);
    free(o->timeouts);
    o->timeouts = NULL;
    o->reply.n_timed_out_conversation_ids = 0;
    o->reply.timed_out_conversation_ids = NULL;
    o->reply.n_partner_ended_conversation_ids = 0;
    o->reply.partner_ended_conversation_ids = NULL;
}

void match_out_err(match_out *o, Chat__Code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->detail, sizeof o->detail, fmt, ap);
    va_end(ap);
    o->reply.code = code;
    o->reply.detail = o->detail;
}

void match_scripts_init(void)
{
    match_queue_scripts_init();
    match_chats_scripts_init();
}

bool match_conv_id_valid(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    return n > 0 && n <= MATCH_ID_MAX;
}

int match_close_conversation(const match_env *env, const char *conv, const char *user)
{
    Chat__CloseConversationReq cc = CHAT__CLOSE_CONVERSATION_REQ__INIT;
    cc.conversation_id = (char *)conv;
    cc.user_id = (char *)user;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_CLOSE_CONVERSATION;
    req.close_conversation = &cc;
    Chat__MessageReply *rep = NULL;
    if (env->message_call(env->ctx, &req, &rep) != 0) {
        chat_warn("match_close_failed", "conv=%s err=unreachable", conv);
        return -1;
    }
    int rv = 0;
    if (rep->code != CHAT__CODE__OK && rep->code != CHAT__CODE__CONVERSATION_CLOSED) {
        chat_warn("match_close_failed", "conv=%s code=%d", conv, (int)rep->code);
        rv = -1;
    }
    chat__message_reply__free_unpacked(rep, NULL);
    return rv;
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
