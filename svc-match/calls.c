/* Calls svc-match makes to svc-message on behalf of its handlers. */
#include "match.h"

#include "chat/log.h"

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
