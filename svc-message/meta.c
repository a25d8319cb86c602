/* Group commit of conversation creates and closes. Random chat creates a
 * conversation per match and closes it per end: one synchronous commit
 * each, on the reader pool, made matching wait for the disk. One thread
 * here takes everything queued (up to CHAT_MSG_BATCH) and runs it as one
 * pipelined transaction (BEGIN, a statement per job, COMMIT), so one WAL
 * flush serves the whole batch; each job is answered after the commit.
 *
 * When the batch transaction fails as a whole (e.g. a deadlock with
 * another replica) every job runs again on its own; when PostgreSQL is down
 * every job is answered UNAVAILABLE. */
#include "message.h"

#include "chat/batchq.h"
#include "chat/log.h"

#include <stdio.h>
#include <stdlib.h>

int msg_create_params(const msg_job *job, msg_create_args *a)
{
    const Chat__CreateConversationReq *r = job->req->create_conversation;
    size_t distinct = 0;
    a->members = msg_uuid_array(r->member_ids, r->n_member_ids, &distinct);
    if (a->members == NULL)
        return -1;
    snprintf(a->kind, sizeof a->kind, "%d", (int)r->kind);
    a->v[0] = a->kind;
    a->v[1] = a->members;
    a->v[2] = NULL;
    if (r->kind == CHAT__CONVERSATION_KIND__DM) {
        msg_dm_key(r->member_ids[0], r->member_ids[1], a->dm_key);
        a->v[2] = a->dm_key;
    }
    return 0;
}

void msg_create_result(msg_job *job, PGresult *res)
{
    if (!msg_job_usable(job, res, "create"))
        return;
    if (PQntuples(res) == 1) {
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        rep.conversation_id = PQgetvalue(res, 0, 0);
        msg_job_done(job, &rep);
    } else {
        msg_job_fail(job, CHAT__CODE__INTERNAL, "no conversation created");
    }
}

void msg_close_result(msg_job *job, PGresult *res)
{
    if (!msg_job_usable(job, res, "close"))
        return;
    if (PQntuples(res) == 0) {
        msg_job_fail(job, CHAT__CODE__NOT_FOUND, "unknown conversation");
    } else {
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        msg_job_done(job, &rep);
    }
}

void msg_create_one(msg_job *job, msg_pg *pg)
{
    msg_create_args a;
    if (msg_create_params(job, &a) != 0) {
        msg_job_fail(job, CHAT__CODE__INTERNAL, "out of memory");
        return;
    }
    PGresult *res = msg_pg_query(pg, MSG_SQL_CREATE, 3, a.v);
    free(a.members);
    msg_create_result(job, res);
    PQclear(res);
}

void msg_close_one(msg_job *job, msg_pg *pg)
{
    const char *v[] = {job->req->close_conversation->conversation_id};
    PGresult *res = msg_pg_query(pg, MSG_SQL_CLOSE, 1, v);
    msg_close_result(job, res);
    PQclear(res);
}

static bool is_create(const msg_job *j)
{
    return j->req->body_case == CHAT__MESSAGE_REQUEST__BODY_CREATE_CONVERSATION;
}

/* Queues job's statement. -1: the connection failed. */
static int meta_queue(msg_pg *pg, msg_job *j)
{
    if (!is_create(j)) {
        const char *v[] = {j->req->close_conversation->conversation_id};
        return msg_pg_send(pg, MSG_SQL_CLOSE, 1, v);
    }
    msg_create_args a;
    if (msg_create_params(j, &a) != 0)
        return -1;
    int rv = msg_pg_send(pg, MSG_SQL_CREATE, 3, a.v);
    free(a.members);
    return rv;
}

/* One transaction for all n jobs. On MSG_PG_OK every job was answered. */
static msg_pg_err meta_txn(msg_pg *pg, msg_job **jobs, int n)
{
    if (msg_pg_ensure(pg) != 0)
        return MSG_PG_DOWN;
    int nq = n + 2;
    if (msg_pg_send_sql(pg, "BEGIN") != 0)
        return MSG_PG_DOWN;
    for (int i = 0; i < n; i++)
        if (meta_queue(pg, jobs[i]) != 0)
            return MSG_PG_DOWN;
    if (msg_pg_send_sql(pg, "COMMIT") != 0)
        return MSG_PG_DOWN;
    PGresult *out[nq];
    msg_pg_err e = msg_pg_collect(pg, out, nq);
    if (e == MSG_PG_OK &&
        (out[nq - 1] == NULL || PQresultStatus(out[nq - 1]) != PGRES_COMMAND_OK))
        e = MSG_PG_RETRY; /* not committed */
    for (int i = 0; e == MSG_PG_OK && i < n; i++) {
        if (is_create(jobs[i]))
            msg_create_result(jobs[i], out[i + 1]);
        else
            msg_close_result(jobs[i], out[i + 1]);
    }
    for (int i = 0; i < nq; i++)
        PQclear(out[i]);
    return e;
}

static void meta_batch(msg_pg *pg, msg_job **jobs, int n)
{
    msg_stats *st = jobs[0]->svc != NULL ? &jobs[0]->svc->stats : NULL;
    int64_t t0 = chat_mono_ns();
    msg_pg_err e = meta_txn(pg, jobs, n);
    if (st != NULL)
        chat_hist_observe(&st->meta_commit_s, (double)(chat_mono_ns() - t0) / 1e9);
    if (e == MSG_PG_OK)
        return;
    if (e == MSG_PG_DOWN) {
        for (int i = 0; i < n; i++)
            msg_job_fail(jobs[i], CHAT__CODE__UNAVAILABLE, "storage unavailable");
        return;
    }
    chat_warn("meta_batch_split", "jobs=%d", n);
    for (int i = 0; i < n; i++) {
        if (is_create(jobs[i]))
            msg_create_one(jobs[i], pg);
        else
            msg_close_one(jobs[i], pg);
    }
}

static void *meta_init(void *arg)
{
    const msg_config *cfg = arg;
    msg_pg *pg = malloc(sizeof *pg);
    if (pg == NULL)
        return NULL; /* every batch is answered UNAVAILABLE */
    msg_pg_init(pg, cfg->pg_dsn, (int)cfg->pg_timeout_ms);
    msg_pg_ensure(pg); /* connect early; failure is retried per batch */
    return pg;
}

static void meta_fini(void *state)
{
    if (state == NULL)
        return;
    msg_pg_close(state);
    free(state);
}

static void meta_run(void **items, int n, void *state)
{
    msg_job **jobs = (msg_job **)items;
    if (jobs[0]->svc != NULL)
        atomic_fetch_sub(&jobs[0]->svc->stats.meta_queued, n);
    if (state == NULL) {
        for (int i = 0; i < n; i++)
            msg_job_fail(jobs[i], CHAT__CODE__UNAVAILABLE, "storage unavailable");
        return;
    }
    meta_batch(state, jobs, n);
}

int msg_meta_open(msg_meta **out, const msg_config *cfg)
{
    return chat_batchq_open(out, (int)cfg->batch, meta_init, meta_fini, meta_run, (void *)cfg);
}

int msg_meta_push(msg_meta *m, msg_job *job)
{
    msg_stats *st = job->svc != NULL ? &job->svc->stats : NULL;
    if (st != NULL)
        atomic_fetch_add(&st->meta_queued, 1);
    int rv = chat_batchq_push(m, job);
    if (rv != 0 && st != NULL)
        atomic_fetch_sub(&st->meta_queued, 1);
    return rv;
}

void msg_meta_close(msg_meta *m)
{
    chat_batchq_close(m);
}
