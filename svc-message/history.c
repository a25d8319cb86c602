/* History: the newest `limit` messages below `before`, ascending, for
 * members only (also of ended random chats). One statement fetches one
 * row more than the page to learn whether older messages exist.
 * Fill: the gateways' gap filler, the same the other way: the oldest
 * `limit` above a cursor.
 * Both skip messages past the retention (schema.c's KEPT_FROM), whether or
 * not the purger deleted them yet: a history page has a next_before only
 * when a kept older message exists (paging ends at the oldest kept one,
 * never in purged space), and a fill whose cursor is in purged space
 * answers with what is kept above it, so the gateway's sequencer jumps
 * over the expired seqs. */
#include "message.h"

#include "chat/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

Chat__StoredMessage **msg_messages_from_rows(const PGresult *res, int n, const char *conv,
                                             bool reverse)
{
    /* One block: the pointers, then the messages they point to. */
    Chat__StoredMessage **ptrs = malloc((size_t)(n + 1) * (sizeof *ptrs + sizeof **ptrs));
    if (ptrs == NULL)
        return NULL;
    Chat__StoredMessage *msgs = (Chat__StoredMessage *)(ptrs + n + 1);
    for (int i = 0; i < n; i++) {
        int row = reverse ? n - 1 - i : i;
        Chat__StoredMessage *m = &msgs[i];
        chat__stored_message__init(m);
        m->conversation_id = conv != NULL ? (char *)conv : PQgetvalue(res, row, 0);
        m->msg_id = PQgetvalue(res, row, 1);
        m->seq = strtoull(PQgetvalue(res, row, 2), NULL, 10);
        m->sender = PQgetvalue(res, row, 3);
        m->text = PQgetvalue(res, row, 4);
        m->ts = strtoll(PQgetvalue(res, row, 5), NULL, 10);
        ptrs[i] = m;
    }
    ptrs[n] = NULL;
    return ptrs;
}

/* A fill answered with n messages (the gateways' gap repairs). */
static void fill_count(msg_job *job, int n)
{
    atomic_fetch_add(&job->svc->stats.fills, 1);
    atomic_fetch_add(&job->svc->stats.filled, (uint64_t)n);
}

/* A refusal that names its conversation (the gateway's gap filler finds
 * its gap by it). */
static void page_refuse(msg_job *job, const char *conv, Chat__Code code, const char *detail)
{
    Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
    rep.code = code;
    rep.detail = (char *)detail;
    rep.conversation_id = (char *)conv;
    msg_job_done(job, &rep);
}

/* Answers a page of MSG_SQL_HISTORY or MSG_SQL_FILL (status column first;
 * limit + 1 rows fetched, so more exist when that many came). History's
 * rows are newest first and its page says where the next one ends. Takes
 * res. */
static void page_answer(msg_job *job, PGresult *res, const char *what, const char *conv,
                        int limit, bool history)
{
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res != NULL) {
            const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
            chat_error("store_query_failed", "req=%s err=\"%s\"", what, m ? m : "?");
        }
        page_refuse(job, conv, res == NULL ? CHAT__CODE__UNAVAILABLE : CHAT__CODE__INTERNAL,
                    res == NULL ? "storage unavailable" : "internal error");
        PQclear(res);
        return;
    }
    int rows = PQntuples(res);
    int st = rows >= 1 ? atoi(PQgetvalue(res, 0, 0)) : -1;
    if (st == MSG_ST_NOT_FOUND) {
        page_refuse(job, conv, CHAT__CODE__NOT_FOUND, "unknown conversation");
    } else if (st == MSG_ST_NOT_MEMBER) {
        page_refuse(job, conv, CHAT__CODE__NOT_MEMBER, "not a member");
    } else if (st != 0) {
        page_refuse(job, conv, CHAT__CODE__INTERNAL, "internal error");
    } else {
        if (rows == 1 && PQgetisnull(res, 0, 1))
            rows = 0; /* no messages: the one row of NULLs */
        int n = rows > limit ? limit : rows;
        Chat__StoredMessage **msgs = msg_messages_from_rows(res, n, conv, history);
        if (msgs == NULL) {
            page_refuse(job, conv, CHAT__CODE__INTERNAL, "out of memory");
        } else {
            Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
            rep.conversation_id = (char *)conv;
            rep.n_messages = (size_t)n;
            rep.messages = msgs;
            rep.more = rows > limit;
            /* History: the page's lowest seq is where the next page ends. */
            if (history)
                rep.next_before = rep.more ? msgs[0]->seq : 0;
            else
                fill_count(job, n);
            msg_job_done(job, &rep);
            free(msgs);
        }
    }
    PQclear(res);
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
    page_answer(job, msg_pg_query(pg, MSG_SQL_HISTORY, 4, v), "history", r->conversation_id,
                limit, true);
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
    Chat__StoredMessage **msgs = msg_messages_from_rows(res, rows, NULL, false);
    if (msgs == NULL) {
        msg_job_fail(job, CHAT__CODE__INTERNAL, "out of memory");
    } else {
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        rep.n_messages = (size_t)rows;
        rep.messages = msgs;
        rep.more = rows == limit;
        fill_count(job, rows);
        msg_job_done(job, &rep);
        free(msgs);
    }
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
    page_answer(job, msg_pg_query(pg, MSG_SQL_FILL, 5, v), "fill", r->conversation_id, limit,
                false);
}
