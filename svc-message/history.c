/* History: the newest `limit` messages below `before`, ascending, for
 * members only (also of ended random chats). One statement fetches one
 * row more than the page to learn whether older messages exist.
 * Fill: the gateways' gap filler, the same the other way: the oldest
 * `limit` above a cursor. */
#include "message.h"

#include "chat/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Fills rep with rows [0, n) of res in ascending order (the rows are
 * newest first unless ascending). */
static int history_fill(Chat__MessageReply *rep, const PGresult *res, int n, const char *conv,
                        bool ascending, Chat__StoredMessage **msgs_out)
{
    Chat__StoredMessage *msgs = calloc((size_t)n + 1, sizeof *msgs);
    Chat__StoredMessage **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
    if (msgs == NULL || ptrs == NULL) {
        free(msgs);
        free(ptrs);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int row = ascending ? i : n - 1 - i;
        Chat__StoredMessage *m = &msgs[i];
        chat__stored_message__init(m);
        m->conversation_id = (char *)conv;
        m->msg_id = PQgetvalue(res, row, 1);
        m->seq = strtoull(PQgetvalue(res, row, 2), NULL, 10);
        m->sender = PQgetvalue(res, row, 3);
        m->text = PQgetvalue(res, row, 4);
        m->ts = strtoll(PQgetvalue(res, row, 5), NULL, 10);
        ptrs[i] = m;
    }
    rep->n_messages = (size_t)n;
    rep->messages = ptrs;
    *msgs_out = msgs;
    return 0;
}

void msg_history(msg_job *job, msg_pg *pg)
{
    const Chat__HistoryReq *r = job->req->history;
    int limit = msg_history_limit(r->limit);
    char before[24], fetch[16];
    uint64_t b = r->before == 0 || r->before > INT64_MAX ? (uint64_t)INT64_MAX : r->before;
    snprintf(before, sizeof before, "%" PRIu64, b);
    snprintf(fetch, sizeof fetch, "%d", limit + 1);
    const char *v[] = {r->user_id, r->conversation_id, before, fetch};
    PGresult *res = msg_pg_query(pg, MSG_SQL_HISTORY, 4, v);
    if (!msg_job_usable(job, res, "history")) {
        PQclear(res);
        return;
    }
    int rows = PQntuples(res);
    int st = rows >= 1 ? atoi(PQgetvalue(res, 0, 0)) : -1;
    if (st == MSG_ST_NOT_FOUND) {
        msg_job_fail(job, CHAT__CODE__NOT_FOUND, "unknown conversation");
    } else if (st == MSG_ST_NOT_MEMBER) {
        msg_job_fail(job, CHAT__CODE__NOT_MEMBER, "not a member");
    } else if (st != 0) {
        msg_job_fail(job, CHAT__CODE__INTERNAL, "internal error");
    } else {
        if (rows == 1 && PQgetisnull(res, 0, 1))
            rows = 0; /* no messages: the one row of NULLs */
        int n = rows > limit ? limit : rows;
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        Chat__StoredMessage *msgs = NULL;
        if (history_fill(&rep, res, n, r->conversation_id, false, &msgs) != 0) {
            msg_job_fail(job, CHAT__CODE__INTERNAL, "out of memory");
        } else {
            /* Older ones exist: the page's lowest seq is where the next
             * page ends. */
            rep.next_before = rows > limit ? rep.messages[0]->seq : 0;
            rep.more = rep.next_before != 0;
            Chat__StoredMessage **ptrs = rep.messages;
            msg_job_done(job, &rep);
            free(ptrs);
            free(msgs);
        }
    }
    PQclear(res);
}

/* A refusal that names its conversation: the gateway finds the gap by it. */
static void fill_refuse(msg_job *job, Chat__Code code, const char *detail)
{
    Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
    rep.code = code;
    rep.detail = (char *)detail;
    rep.conversation_id = job->req->fill->conversation_id;
    msg_job_done(job, &rep);
}

/* The catch-up of FillReq (no conversation): rows of sql_catchup, which
 * carry their conversation. */
static void fill_catchup(msg_job *job, msg_pg *pg)
{
    const Chat__FillReq *r = job->req->fill;
    int limit = r->limit == 0 || r->limit > MSG_HISTORY_MAX ? MSG_HISTORY_MAX : (int)r->limit;
    /* "{id,id}": the ids are checked uuids (rules.c), nothing to quote. */
    size_t n = r->n_skip_conversation_ids;
    char *skip = malloc(n * (CHAT_UUID_LEN + 1) + 3);
    if (skip == NULL) {
        msg_job_fail(job, CHAT__CODE__INTERNAL, "out of memory");
        return;
    }
    char *p = skip;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%s", i ? "," : "", r->skip_conversation_ids[i]);
    *p++ = '}';
    *p = '\0';
    char since[24], seq[24], lim[16];
    snprintf(since, sizeof since, "%" PRId64, r->since_ts);
    snprintf(seq, sizeof seq, "%" PRIu64,
             r->after_seq > INT64_MAX ? (uint64_t)INT64_MAX : r->after_seq);
    snprintf(lim, sizeof lim, "%d", limit);
    const char *after = r->after_conversation_id[0] ? r->after_conversation_id
                                                    : "00000000-0000-0000-0000-000000000000";
    const char *v[] = {r->user_id, since, skip, after, seq, lim};
    PGresult *res = msg_pg_query(pg, MSG_SQL_CATCHUP, 6, v);
    free(skip);
    if (!msg_job_usable(job, res, "fill_catchup")) {
        PQclear(res);
        return;
    }
    int rows = PQntuples(res);
    Chat__StoredMessage *msgs = calloc((size_t)rows + 1, sizeof *msgs);
    Chat__StoredMessage **ptrs = calloc((size_t)rows + 1, sizeof *ptrs);
    if (msgs == NULL || ptrs == NULL) {
        msg_job_fail(job, CHAT__CODE__INTERNAL, "out of memory");
    } else {
        for (int i = 0; i < rows; i++) {
            Chat__StoredMessage *m = &msgs[i];
            chat__stored_message__init(m);
            m->conversation_id = PQgetvalue(res, i, 0);
            m->msg_id = PQgetvalue(res, i, 1);
            m->seq = strtoull(PQgetvalue(res, i, 2), NULL, 10);
            m->sender = PQgetvalue(res, i, 3);
            m->text = PQgetvalue(res, i, 4);
            m->ts = strtoll(PQgetvalue(res, i, 5), NULL, 10);
            ptrs[i] = m;
        }
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        rep.n_messages = (size_t)rows;
        rep.messages = ptrs;
        rep.more = rows == limit;
        msg_job_done(job, &rep);
    }
    free(msgs);
    free(ptrs);
    PQclear(res);
}

void msg_fill(msg_job *job, msg_pg *pg)
{
    const Chat__FillReq *r = job->req->fill;
    if (r->conversation_id[0] == '\0') {
        fill_catchup(job, pg);
        return;
    }
    int limit = r->limit == 0 || r->limit > MSG_HISTORY_MAX ? MSG_HISTORY_MAX : (int)r->limit;
    char after[24], fetch[16];
    uint64_t a = r->after_seq > INT64_MAX ? (uint64_t)INT64_MAX : r->after_seq;
    snprintf(after, sizeof after, "%" PRIu64, a);
    snprintf(fetch, sizeof fetch, "%d", limit + 1);
    const char *v[] = {r->user_id, r->conversation_id, after, r->from_receipt ? "t" : "f",
                       fetch};
    PGresult *res = msg_pg_query(pg, MSG_SQL_FILL, 5, v);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res != NULL)
            chat_error("store_query_failed", "req=fill err=\"%s\"",
                       PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                           ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                           : "?");
        fill_refuse(job, res == NULL ? CHAT__CODE__UNAVAILABLE : CHAT__CODE__INTERNAL,
                    res == NULL ? "storage unavailable" : "internal error");
        PQclear(res);
        return;
    }
    int rows = PQntuples(res);
    int st = rows >= 1 ? atoi(PQgetvalue(res, 0, 0)) : -1;
    if (st == MSG_ST_NOT_FOUND) {
        fill_refuse(job, CHAT__CODE__NOT_FOUND, "unknown conversation");
    } else if (st == MSG_ST_NOT_MEMBER) {
        fill_refuse(job, CHAT__CODE__NOT_MEMBER, "not a member");
    } else if (st != 0) {
        fill_refuse(job, CHAT__CODE__INTERNAL, "internal error");
    } else {
        if (rows == 1 && PQgetisnull(res, 0, 1))
            rows = 0; /* no messages: the one row of NULLs */
        int n = rows > limit ? limit : rows;
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        Chat__StoredMessage *msgs = NULL;
        if (history_fill(&rep, res, n, r->conversation_id, true, &msgs) != 0) {
            fill_refuse(job, CHAT__CODE__INTERNAL, "out of memory");
        } else {
            rep.conversation_id = r->conversation_id;
            rep.more = rows > limit;
            Chat__StoredMessage **ptrs = rep.messages;
            msg_job_done(job, &rep);
            free(ptrs);
            free(msgs);
        }
    }
    PQclear(res);
}
