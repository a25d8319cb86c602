/* Known users (so open_dm can tell an unknown user) and the contacts who
 * see a user's presence. Reader pool. */
#include "message.h"

#include "chat/log.h"

#include <stdio.h>
#include <stdlib.h>

void msg_users_register(msg_job *job, msg_pg *pg)
{
    const char *v[] = {job->req->register_user->user_id};
    PGresult *res = msg_pg_query(pg, MSG_SQL_REGISTER, 1, v);
    if (msg_job_usable(job, res, "register")) {
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        msg_job_done(job, &rep);
    }
    PQclear(res);
}

void msg_users_contacts(msg_job *job, msg_pg *pg)
{
    const Chat__ContactsReq *r = job->req->contacts;
    char cap[16], before[24];
    snprintf(cap, sizeof cap, "%d", MSG_CONTACTS_MAX);
    snprintf(before, sizeof before, "%lld",
             r->joined_before > 0 ? (long long)r->joined_before : 0LL);
    const char *v[] = {r->user_id, cap, before};
    PGresult *res = msg_pg_query(pg, MSG_SQL_CONTACTS, 3, v);
    if (!msg_job_usable(job, res, "contacts")) {
        PQclear(res);
        return;
    }
    int n = PQntuples(res);
    char **ids = calloc((size_t)n + 1, sizeof *ids);
    if (ids == NULL) {
        msg_job_fail(job, CHAT__CODE__INTERNAL, "out of memory");
    } else {
        for (int i = 0; i < n; i++)
            ids[i] = PQgetvalue(res, i, 0); /* valid until PQclear */
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        rep.n_contact_ids = (size_t)n;
        rep.contact_ids = ids;
        msg_job_done(job, &rep);
    }
    free(ids);
    PQclear(res);
}
