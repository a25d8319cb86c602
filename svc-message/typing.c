/* Typing: checked against membership and relayed to the other members as a
 * TypingEvt; nothing is stored. The timeout of a start that is not
 * refreshed lives in the receiving gateways (see svc-gateway/typing.c). */
#include "message.h"

#include "chat/log.h"

#include <stdlib.h>

void msg_typing(msg_job *job, msg_pg *pg)
{
    const Chat__TypingReq *r = job->req->typing;
    const char *v[] = {r->user_id, r->conversation_id};
    PGresult *res = msg_pg_query(pg, MSG_SQL_TYPING, 2, v);
    if (!msg_job_usable(job, res, "typing")) {
        PQclear(res);
        return;
    }
    int st = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : -1;
    switch (st) {
    case MSG_ST_STORED: {
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        msg_job_reply(job, &rep);
        char conv[CHAT_UUID_LEN + 1], user[CHAT_UUID_LEN + 1];
        msg_lower_uuid(conv, r->conversation_id);
        msg_lower_uuid(user, r->user_id);
        Chat__TypingEvt te = CHAT__TYPING_EVT__INIT;
        te.conversation_id = conv;
        te.user_id = user;
        te.start = r->start;
        Chat__Event ev = CHAT__EVENT__INIT;
        ev.body_case = CHAT__EVENT__BODY_TYPING;
        ev.typing = &te;
        msg_publish(job->svc->pub, &ev, PQgetvalue(res, 0, 1));
        msg_job_free(job);
        break;
    }
    default: msg_job_fail(job, msg_status_code(st), msg_status_detail(st)); break;
    }
    PQclear(res);
}
