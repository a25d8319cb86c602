/* Calls svc-presence makes to svc-match on behalf of its handlers. */
#include "presence.h"

#include "chat/log.h"

int pres_tell_match(const pres_env *env, Chat__MatchRequest__BodyCase kind, const char *user)
{
    Chat__UserOfflineReq off = CHAT__USER_OFFLINE_REQ__INIT;
    Chat__UserGoneReq gone = CHAT__USER_GONE_REQ__INIT;
    Chat__MatchRequest req = CHAT__MATCH_REQUEST__INIT;
    req.req_id = (char *)chat_log_req_current(); /* the request this serves */
    req.body_case = kind;
    if (kind == CHAT__MATCH_REQUEST__BODY_USER_OFFLINE) {
        off.user_id = (char *)user;
        req.user_offline = &off;
    } else {
        gone.user_id = (char *)user;
        req.user_gone = &gone;
    }
    const char *what =
        kind == CHAT__MATCH_REQUEST__BODY_USER_OFFLINE ? "user_offline" : "user_gone";
    Chat__MatchReply *rep = NULL;
    if (env->match_call(env->ctx, &req, &rep) != 0) {
        chat_warn("pres_match_call_failed", "call=%s user=%s err=unreachable", what, user);
        return -1;
    }
    int rv = 0;
    if (rep->code != CHAT__CODE__OK) {
        chat_warn("pres_match_call_failed", "call=%s user=%s code=%d", what, user,
                  (int)rep->code);
        rv = -1;
    }
    chat__match_reply__free_unpacked(rep, NULL);
    return rv;
}
