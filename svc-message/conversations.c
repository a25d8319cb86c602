/* DMs (one conversation per pair of known users, created on first use)
 * and rooms (by name, created on first join, membership until leave).
 * Reader pool; each request is one statement (schema.c). */
#include "message.h"

#include "chat/log.h"

#include <stdio.h>
#include <stdlib.h>

void msg_conv_open_dm(msg_job *job, msg_pg *pg)
{
    const Chat__OpenDmReq *r = job->req->open_dm;
    char key[2 * CHAT_UUID_LEN + 2];
    msg_dm_key(r->user_id, r->peer_id, key);
    const char *v[] = {r->user_id, r->peer_id, key};
    PGresult *res = msg_pg_query(pg, MSG_SQL_OPEN_DM, 3, v);
    if (!msg_job_usable(job, res, "open_dm")) {
        PQclear(res);
        return;
    }
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        msg_job_fail(job, CHAT__CODE__NOT_FOUND, "unknown user");
    } else {
        /* The key holds both ids lower-cased: the members as stored. */
        key[CHAT_UUID_LEN] = '\0';
        char *members[] = {key, key + CHAT_UUID_LEN + 1};
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        rep.conversation_id = PQgetvalue(res, 0, 0);
        rep.floor_seq = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
        rep.n_member_ids = 2;
        rep.member_ids = members;
        msg_job_done(job, &rep);
    }
    PQclear(res);
}

void msg_conv_join_room(msg_job *job, msg_pg *pg)
{
    const Chat__JoinRoomReq *r = job->req->join_room;
    char cap[24];
    snprintf(cap, sizeof cap, "%lld", job->svc->cfg->max_rooms);
    const char *v[] = {r->user_id, r->room, cap};
    PGresult *res = msg_pg_query(pg, MSG_SQL_JOIN, 3, v);
    if (!msg_job_usable(job, res, "join_room")) {
        PQclear(res);
        return;
    }
    if (PQntuples(res) == 0) {
        msg_job_fail(job, CHAT__CODE__BAD_REQUEST, "in too many rooms: leave one first");
    } else if (PQntuples(res) != 1) {
        msg_job_fail(job, CHAT__CODE__INTERNAL, "room not created");
    } else {
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        rep.conversation_id = PQgetvalue(res, 0, 0);
        rep.floor_seq = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
        msg_job_done(job, &rep);
    }
    PQclear(res);
}

void msg_conv_leave_room(msg_job *job, msg_pg *pg)
{
    const Chat__LeaveRoomReq *r = job->req->leave_room;
    const char *v[] = {r->user_id, r->room};
    PGresult *res = msg_pg_query(pg, MSG_SQL_LEAVE, 2, v);
    if (!msg_job_usable(job, res, "leave_room")) {
        PQclear(res);
        return;
    }
    if (PQntuples(res) != 1) {
        msg_job_fail(job, CHAT__CODE__INTERNAL, "internal error");
    } else if (PQgetisnull(res, 0, 0)) {
        msg_job_fail(job, CHAT__CODE__NOT_FOUND, "no such room");
    } else if (atoi(PQgetvalue(res, 0, 1)) == 0) {
        msg_job_fail(job, CHAT__CODE__NOT_MEMBER, "not in that room");
    } else {
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        rep.conversation_id = PQgetvalue(res, 0, 0);
        msg_job_done(job, &rep);
    }
    PQclear(res);
}
