/* Every call svc-match makes to svc-message (create, info and close of a
 * random chat's conversation), on behalf of its handlers. */
#include "match.h"

#include "chat/log.h"

#include <stdio.h>

int match_close_conversation(const match_env *env, const char *conv, const char *user)
{
    Chat__CloseConversationReq cc = CHAT__CLOSE_CONVERSATION_REQ__INIT;
    cc.conversation_id = (char *)conv;
    cc.user_id = (char *)user;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.req_id = (char *)chat_log_req_current(); /* the request this serves */
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

int match_create_conversation(const match_env *env, const char *user, const char *partner,
                              char conv[MATCH_ID_MAX + 1])
{
    Chat__CreateConversationReq cc = CHAT__CREATE_CONVERSATION_REQ__INIT;
    char *members[2] = {(char *)partner, (char *)user};
    cc.kind = CHAT__CONVERSATION_KIND__RANDOM;
    cc.n_member_ids = 2;
    cc.member_ids = members;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.req_id = (char *)chat_log_req_current(); /* the request this serves */
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_CREATE_CONVERSATION;
    req.create_conversation = &cc;

    Chat__MessageReply *rep = NULL;
    if (env->message_call(env->ctx, &req, &rep) != 0) {
        chat_warn("match_create_failed", "user=%s partner=%s err=unreachable", user, partner);
        return -1;
    }
    int rv = -1;
    if (rep->code != CHAT__CODE__OK || !match_conv_id_valid(rep->conversation_id))
        chat_warn("match_create_failed", "user=%s partner=%s code=%d", user, partner,
                  (int)rep->code);
    else {
        snprintf(conv, MATCH_ID_MAX + 1, "%s", rep->conversation_id);
        rv = 0;
    }
    chat__message_reply__free_unpacked(rep, NULL);
    return rv;
}

Chat__MessageReply *match_conversation_info(const match_env *env, const char *conv,
                                            const char *user)
{
    Chat__ConversationInfoReq ci = CHAT__CONVERSATION_INFO_REQ__INIT;
    ci.conversation_id = (char *)conv;
    ci.user_id = (char *)user;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.req_id = (char *)chat_log_req_current(); /* the request this serves */
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_CONVERSATION_INFO;
    req.conversation_info = &ci;
    Chat__MessageReply *rep = NULL;
    return env->message_call(env->ctx, &req, &rep) == 0 ? rep : NULL;
}
