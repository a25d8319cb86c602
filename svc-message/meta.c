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

#include "chat/log.h"

#include <pthread.h>
#include <stdlib.h>

struct msg_meta {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    msg_job *head, *tail; /* under mu */
    bool stopping;        /* under mu */
    pthread_t thread;
    const msg_config *cfg;
};

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
    msg_pg_err e = meta_txn(pg, jobs, n);
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

static void *meta_main(void *arg)
{
    msg_meta *m = arg;
    msg_pg pg;
    msg_pg_init(&pg, m->cfg->pg_dsn, (int)m->cfg->pg_timeout_ms);
    msg_pg_ensure(&pg); /* connect early; failure is retried per batch */
    int max = (int)m->cfg->batch;
    msg_job *one[1];
    msg_job **batch = calloc((size_t)max, sizeof *batch);
    if (batch == NULL) { /* no memory for batches: one at a time */
        batch = one;
        max = 1;
    }
    for (;;) {
        pthread_mutex_lock(&m->mu);
        while (m->head == NULL && !m->stopping)
            pthread_cond_wait(&m->cv, &m->mu);
        int n = 0;
        while (m->head != NULL && n < max) {
            batch[n++] = m->head;
            m->head = m->head->next;
        }
        if (m->head == NULL)
            m->tail = NULL;
        pthread_mutex_unlock(&m->mu);
        if (n == 0)
            break; /* stopping and drained */
        meta_batch(&pg, batch, n);
    }
    if (batch != one)
        free(batch);
    msg_pg_close(&pg);
    return NULL;
}

int msg_meta_open(msg_meta **out, const msg_config *cfg)
{
    msg_meta *m = calloc(1, sizeof *m);
    if (m == NULL)
        return -1;
    m->cfg = cfg;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    if (pthread_create(&m->thread, NULL, meta_main, m) != 0) {
        pthread_mutex_destroy(&m->mu);
        pthread_cond_destroy(&m->cv);
        free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int msg_meta_push(msg_meta *m, msg_job *job)
{
    pthread_mutex_lock(&m->mu);
    if (m->stopping) {
        pthread_mutex_unlock(&m->mu);
        return -1;
    }
    job->next = NULL;
    if (m->tail != NULL)
        m->tail->next = job;
    else
        m->head = job;
    m->tail = job;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    return 0;
}

void msg_meta_close(msg_meta *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    m->stopping = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m);
}
