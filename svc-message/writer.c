/* Group commit of sends. Each writer thread owns a queue, a PostgreSQL
 * connection and a Redis connection; a conversation always maps to the
 * same writer, so its messages are numbered, acked and published in order.
 *
 * One batch = every queued send (up to CHAT_MSG_BATCH), ordered by
 * conversation id (a lock order shared by all replicas):
 *   1. one pipelined round trip to Redis takes a rate token per send;
 *   2. one pipelined transaction stores them (BEGIN, one statement per
 *      send, COMMIT); a refused send looks up its original instead;
 *   3. tokens of sends that were not stored go back;
 *   4. after the commit: reply to each in order, then publish the stored
 *      ones as one batch of events. */
#include "message.h"

#include "chat/batchq.h"
#include "chat/log.h"
#include "chat/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One writer per conversation hash: a batch queue (its own thread) whose
 * thread state is a writer_conn. */
struct msg_writers {
    int n;
    chat_batchq **q;
    const msg_config *cfg;
    chat_pub *pub;
};

typedef struct writer_conn {
    msg_writers *ws;
    msg_pg pg;
    chat_redis *redis; /* rate limits; NULL without them */
} writer_conn;

/* ---- step 1: rate limit ---- */

static void rate_step(const msg_config *cfg, chat_redis *redis, msg_job **jobs, int n,
                      int64_t now)
{
    const char *users[n];
    msg_rl rl[n];
    int64_t retry[n];
    for (int i = 0; i < n; i++)
        users[i] = jobs[i]->req->send->sender;
    if (msg_rate_take(redis, cfg->rate_per_min, users, n, now, rl, retry) != 0) {
        for (int i = 0; i < n; i++)
            rl[i] = MSG_RL_ERROR;
    }
    for (int i = 0; i < n; i++) {
        msg_job *j = jobs[i];
        switch (rl[i]) {
        case MSG_RL_OK: j->token_taken = true; break;
        case MSG_RL_LIMITED:
            /* Refused, unless it is a retry of a stored message. */
            j->op = MSG_OP_LOOKUP;
            j->res.status = MSG_ST_RATE_LIMITED;
            j->res.retry_after_ms = retry[i];
            break;
        default:
            j->op = MSG_OP_NONE;
            j->res.status = MSG_ST_UNAVAILABLE;
            break;
        }
    }
}

/* ---- step 2: store ---- */

/* Sends per MSG_SQL_SEND_MANY statement. Its joins between the batch's own
 * rows are nested loops (see msg_pg.point_lookups), so a statement costs
 * O(chunk^2) comparisons on top of its index lookups: a batch is stored by
 * as many statements as it has chunks, all in one transaction. */
#define WRITER_CHUNK 64

static void copy_col(char *dst, size_t n, const PGresult *r, int row, int col)
{
    snprintf(dst, n, "%s", PQgetvalue(r, row, col));
}

/* Columns of MSG_SQL_SEND, MSG_SQL_SEND_MANY (a row per send) and
 * MSG_SQL_LOOKUP: status, conversation_id, sender, msg_id, seq, ts, body
 * (duplicates), others (stored). */
static void parse_row(msg_job *j, const PGresult *r, int row)
{
    msg_send_result *res = &j->res;
    int st = atoi(PQgetvalue(r, row, 0));
    if (st < MSG_ST_STORED || st > MSG_ST_CLOSED) {
        res->status = MSG_ST_INTERNAL;
        return;
    }
    res->status = (msg_status)st;
    copy_col(res->conversation_id, sizeof res->conversation_id, r, row, 1);
    copy_col(res->sender, sizeof res->sender, r, row, 2);
    copy_col(res->msg_id, sizeof res->msg_id, r, row, 3);
    res->seq = strtoll(PQgetvalue(r, row, 4), NULL, 10);
    res->ts = strtoll(PQgetvalue(r, row, 5), NULL, 10);
    if (res->status == MSG_ST_DUPLICATE) {
        res->body = strdup(PQgetvalue(r, row, 6));
        if (res->body == NULL)
            res->status = MSG_ST_INTERNAL;
    }
    if ((res->status == MSG_ST_STORED || res->status == MSG_ST_DUPLICATE) &&
        !PQgetisnull(r, row, 7))
        res->others = strdup(PQgetvalue(r, row, 7)); /* NULL: no event, still stored */
}

/* Maps one statement's result onto its job. Returns false when the result
 * is not what the statement always returns (a bug: the job fails). */
static bool take_result(msg_job *j, const PGresult *r)
{
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQnfields(r) != 8)
        return false;
    if (j->op == MSG_OP_LOOKUP) {
        if (PQntuples(r) == 1)
            parse_row(j, r, 0); /* the original: status 1, a duplicate */
        return PQntuples(r) <= 1;
    }
    if (PQntuples(r) != 1)
        return false;
    parse_row(j, r, 0);
    return true;
}

static int queue_job(msg_pg *pg, msg_job *j, const char *ts)
{
    const Chat__SendReq *s = j->req->send;
    if (j->op == MSG_OP_LOOKUP) {
        const char *v[] = {s->sender, s->client_msg_id};
        return msg_pg_send(pg, MSG_SQL_LOOKUP, 2, v);
    }
    const char *v[] = {s->conversation_id, s->sender, s->client_msg_id, s->text, ts};
    return msg_pg_send(pg, MSG_SQL_SEND, 5, v);
}

/* A PostgreSQL array literal of n strings, each quoted (so NULL, commas,
 * braces and spaces are plain text). malloc'd; NULL when out of memory. */
static char *pg_array(msg_job **jobs, int n, const char *(*field)(const msg_job *))
{
    size_t cap = 3;
    for (int i = 0; i < n; i++) {
        cap += 3;
        for (const char *p = field(jobs[i]); *p; p++)
            cap += (*p == '"' || *p == '\\') ? 2 : 1;
    }
    char *out = malloc(cap), *o = out;
    if (out == NULL)
        return NULL;
    *o++ = '{';
    for (int i = 0; i < n; i++) {
        if (i > 0)
            *o++ = ',';
        *o++ = '"';
        for (const char *p = field(jobs[i]); *p; p++) {
            if (*p == '"' || *p == '\\')
                *o++ = '\\';
            *o++ = *p;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

static const char *f_conv(const msg_job *j)
{
    return j->req->send->conversation_id;
}
static const char *f_sender(const msg_job *j)
{
    return j->req->send->sender;
}
static const char *f_cmid(const msg_job *j)
{
    return j->req->send->client_msg_id;
}
static const char *f_text(const msg_job *j)
{
    return j->req->send->text;
}

/* Queues sends[0..n) as one MSG_SQL_SEND_MANY. */
static int queue_many(msg_pg *pg, msg_job **jobs, int n, const char *ts)
{
    const char *(*fields[4])(const msg_job *) = {f_conv, f_sender, f_cmid, f_text};
    char *arr[4] = {NULL, NULL, NULL, NULL};
    int rv = -1;
    for (int k = 0; k < 4; k++)
        if ((arr[k] = pg_array(jobs, n, fields[k])) == NULL)
            goto out;
    const char *v[] = {arr[0], arr[1], arr[2], arr[3], ts};
    rv = msg_pg_send(pg, MSG_SQL_SEND_MANY, 5, v);
out:
    for (int k = 0; k < 4; k++)
        free(arr[k]);
    return rv;
}

/* Marks each send whose sender and client_msg_id an earlier send of the
 * batch already has (the statement inserts each pair once). */
static void mark_copies(msg_job **jobs, int n)
{
    for (int i = 0; i < n; i++) {
        if (jobs[i]->op == MSG_OP_COPY)
            jobs[i]->op = MSG_OP_SEND; /* a retry regroups from scratch */
        jobs[i]->copy_of = NULL;
    }
    for (int i = 1; i < n; i++) {
        const Chat__SendReq *a = jobs[i]->req->send;
        for (int k = 0; k < i && jobs[i]->op == MSG_OP_SEND; k++) {
            const Chat__SendReq *b = jobs[k]->req->send;
            if (jobs[k]->op == MSG_OP_SEND && strcmp(a->client_msg_id, b->client_msg_id) == 0 &&
                strcasecmp(a->sender, b->sender) == 0) {
                jobs[i]->op = MSG_OP_COPY;
                jobs[i]->copy_of = jobs[k];
            }
        }
    }
}

/* A copy's outcome: the first send's, or a duplicate of it when stored. */
static void take_copy(msg_job *j)
{
    const msg_send_result *o = &j->copy_of->res;
    msg_send_result *res = &j->res;
    res->status = o->status;
    res->retry_after_ms = o->retry_after_ms;
    if (o->status != MSG_ST_STORED && o->status != MSG_ST_DUPLICATE)
        return;
    snprintf(res->conversation_id, sizeof res->conversation_id, "%s", o->conversation_id);
    snprintf(res->sender, sizeof res->sender, "%s", o->sender);
    snprintf(res->msg_id, sizeof res->msg_id, "%s", o->msg_id);
    res->seq = o->seq;
    res->ts = o->ts;
    res->status = MSG_ST_DUPLICATE;
    res->body = strdup(o->body != NULL ? o->body : j->copy_of->req->send->text);
    if (res->body == NULL)
        res->status = MSG_ST_INTERNAL;
}

/* Maps MSG_SQL_SEND_MANY's rows onto sends[0..n). */
static bool take_many(msg_job **sends, int n, const PGresult *r)
{
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQnfields(r) != 8 ||
        PQntuples(r) != n)
        return false;
    for (int i = 0; i < n; i++)
        parse_row(sends[i], r, i);
    return true;
}

static void reset_result(msg_job *j)
{
    free(j->res.body);
    free(j->res.others);
    j->res.body = j->res.others = NULL;
    j->res.status = j->op == MSG_OP_LOOKUP ? MSG_ST_RATE_LIMITED : MSG_ST_UNAVAILABLE;
}

/* Runs the jobs that have work (op != NONE) in one transaction: the sends
 * as one statement (MSG_SQL_SEND_MANY; a lone one as MSG_SQL_SEND), then a
 * lookup per rate-limited send. On anything but MSG_PG_OK no job is
 * considered stored. */
static msg_pg_err run_txn(msg_pg *pg, msg_job **jobs, int n, int64_t now)
{
    if (msg_pg_ensure(pg) != 0)
        return MSG_PG_DOWN;
    char ts[24];
    snprintf(ts, sizeof ts, "%lld", (long long)now);
    mark_copies(jobs, n);
    msg_job *sends[n];
    int nsend = 0;
    for (int i = 0; i < n; i++)
        if (jobs[i]->op == MSG_OP_SEND)
            sends[nsend++] = jobs[i];
    bool many = nsend >= 2;
    int nq = 0;
    if (msg_pg_send_sql(pg, "BEGIN") != 0)
        return MSG_PG_DOWN;
    nq++;
    /* The conversations' rows first, in id order: another replica's batch
     * takes them in the same order, so the two wait for each other instead
     * of deadlocking (the UPDATE of MSG_SQL_SEND_MANY locks in join order;
     * PostgreSQL found each deadlock only after deadlock_timeout, 1 s). */
    int locked = nsend > 0;
    if (locked) {
        char *convs = pg_array(sends, nsend, f_conv);
        const char *v[] = {convs};
        int rv = convs != NULL ? msg_pg_send(pg, MSG_SQL_LOCK, 1, v) : -1;
        free(convs);
        if (rv != 0)
            return MSG_PG_DOWN;
        nq++;
    }
    for (int k = 0; many && k < nsend; k += WRITER_CHUNK) {
        int c = nsend - k < WRITER_CHUNK ? nsend - k : WRITER_CHUNK;
        if (queue_many(pg, sends + k, c, ts) != 0)
            return MSG_PG_DOWN;
        nq++;
    }
    for (int i = 0; i < n; i++) {
        msg_op op = jobs[i]->op;
        if (op == MSG_OP_NONE || op == MSG_OP_COPY || (many && op == MSG_OP_SEND))
            continue;
        if (queue_job(pg, jobs[i], ts) != 0)
            return MSG_PG_DOWN;
        nq++;
    }
    if (msg_pg_send_sql(pg, "COMMIT") != 0)
        return MSG_PG_DOWN;
    nq++;

    PGresult *out[nq];
    msg_pg_err e = msg_pg_collect(pg, out, nq);
    if (e == MSG_PG_OK &&
        (out[nq - 1] == NULL || PQresultStatus(out[nq - 1]) != PGRES_COMMAND_OK))
        e = MSG_PG_RETRY; /* not committed: nothing counts */
    if (e == MSG_PG_OK) {
        /* Committed: never retry from here, or stored sends would come
         * back as duplicates without their event. */
        int q = 1 + locked;
        for (int k = 0; many && k < nsend; k += WRITER_CHUNK) {
            int c = nsend - k < WRITER_CHUNK ? nsend - k : WRITER_CHUNK;
            if (!take_many(sends + k, c, out[q++])) {
                for (int i = k; i < k + c; i++) {
                    chat_error("send_result_unexpected", "sends=%d conv=%s req_id=%s", c,
                               sends[i]->req->send->conversation_id, sends[i]->req->req_id);
                    sends[i]->res.status = MSG_ST_INTERNAL;
                }
            }
        }
        for (int i = 0; i < n; i++) {
            msg_op op = jobs[i]->op;
            if (op == MSG_OP_NONE || op == MSG_OP_COPY || (many && op == MSG_OP_SEND))
                continue;
            if (!take_result(jobs[i], out[q++])) {
                chat_error("send_result_unexpected", "conv=%s req_id=%s",
                           jobs[i]->req->send->conversation_id, jobs[i]->req->req_id);
                jobs[i]->res.status = MSG_ST_INTERNAL;
            }
        }
        for (int i = 0; i < n; i++)
            if (jobs[i]->op == MSG_OP_COPY)
                take_copy(jobs[i]);
    }
    for (int i = 0; i < nq; i++)
        PQclear(out[i]);
    if (e != MSG_PG_OK) {
        for (int i = 0; i < n; i++)
            if (jobs[i]->op != MSG_OP_NONE)
                reset_result(jobs[i]);
    }
    return e;
}

static void store_step(msg_pg *pg, msg_job **jobs, int n, int64_t now)
{
    int work = 0;
    for (int i = 0; i < n; i++)
        work += jobs[i]->op != MSG_OP_NONE;
    if (work == 0)
        return;
    msg_pg_err e = run_txn(pg, jobs, n, now);
    if (e == MSG_PG_RETRY) {
        /* Typically a concurrent duplicate committed by another replica
         * or a deadlock: the second run sees the committed row. */
        chat_info("send_batch_retry", "sends=%d", work);
        e = run_txn(pg, jobs, n, now);
    }
    if (e != MSG_PG_RETRY)
        return; /* stored, or every job already says UNAVAILABLE */
    chat_warn("send_batch_split", "sends=%d", work);
    for (int i = 0; i < n; i++) {
        if (jobs[i]->op == MSG_OP_NONE)
            continue;
        e = run_txn(pg, &jobs[i], 1, now);
        if (e == MSG_PG_RETRY) {
            chat_error("send_failed", "conv=%s req_id=%s", jobs[i]->req->send->conversation_id,
                       jobs[i]->req->req_id);
            jobs[i]->res.status = MSG_ST_INTERNAL;
        }
    }
}

/* ---- step 3: refunds ---- */

static void refund_step(const msg_config *cfg, chat_redis *redis, msg_job **jobs, int n)
{
    const char *users[n];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (jobs[i]->token_taken && jobs[i]->res.status != MSG_ST_STORED)
            users[k++] = jobs[i]->req->send->sender;
    if (k > 0)
        msg_rate_refund(redis, cfg->rate_per_min, users, k);
}

/* ---- step 4: reply and publish ---- */

/* The events of one batch, published together as one nng message. */
typedef struct batch_events {
    int n;
    Chat__Event *ev;         /* [batch size] */
    Chat__StoredMessage *sm; /* [batch size] */
    char **ids;              /* recipients of every event, one block */
    size_t ids_used, ids_cap;
} batch_events;

static size_t count_ids(const char *others)
{
    size_t n = 1;
    for (const char *p = others; *p; p++)
        n += *p == ',';
    return n;
}

/* Room for the events of the batch's stored sends. False: no memory (the
 * messages stay stored; recipients get them when they resume). */
static bool events_alloc(batch_events *be, msg_job **jobs, int n)
{
    for (int i = 0; i < n; i++)
        if (jobs[i]->res.others != NULL)
            be->ids_cap += count_ids(jobs[i]->res.others);
    be->ev = calloc((size_t)n, sizeof *be->ev);
    be->sm = calloc((size_t)n, sizeof *be->sm);
    be->ids = calloc(be->ids_cap + 1, sizeof *be->ids);
    if (be->ev != NULL && be->sm != NULL && be->ids != NULL)
        return true;
    free(be->ev);
    free(be->sm);
    free(be->ids);
    memset(be, 0, sizeof *be);
    chat_warn("publish_failed", "err=\"out of memory\" sends=%d", n);
    return false;
}

/* Adds the message event of a stored send (others: its recipients,
 * comma-separated, split in place). */
static void events_add(batch_events *be, const Chat__StoredMessage *sm, char *others)
{
    Chat__Event *ev = &be->ev[be->n];
    chat__event__init(ev);
    ev->user_ids = be->ids + be->ids_used;
    ev->n_user_ids = msg_split_ids(others, ev->user_ids, be->ids_cap - be->ids_used);
    if (ev->n_user_ids == 0)
        return;
    be->ids_used += ev->n_user_ids;
    be->sm[be->n] = *sm;
    ev->body_case = CHAT__EVENT__BODY_MESSAGE;
    ev->message = &be->sm[be->n];
    be->n++;
}

static void events_publish(chat_pub *pub, batch_events *be)
{
    if (be->n == 0)
        return;
    const ProtobufCMessage *msgs[be->n];
    for (int i = 0; i < be->n; i++)
        msgs[i] = &be->ev[i].base;
    msg_publish_many(pub, msgs, (size_t)be->n);
}

static void events_free(batch_events *be)
{
    free(be->ev);
    free(be->sm);
    free(be->ids);
}

/* Replies to j and adds its event. j stays alive (its text and others are
 * the event's) until the batch is published. */
static void finish(msg_job *j, batch_events *be)
{
    const msg_send_result *res = &j->res;
    Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
    Chat__StoredMessage sm = CHAT__STORED_MESSAGE__INIT;
    rep.code = msg_status_code(res->status);
    rep.detail = (char *)msg_status_detail(res->status);
    if (res->status == MSG_ST_STORED || res->status == MSG_ST_DUPLICATE) {
        sm.conversation_id = (char *)res->conversation_id;
        sm.msg_id = (char *)res->msg_id;
        sm.seq = (uint64_t)res->seq;
        sm.sender = (char *)res->sender;
        sm.text = res->status == MSG_ST_DUPLICATE ? res->body : j->req->send->text;
        sm.ts = res->ts;
        rep.message = &sm;
        rep.duplicate = res->status == MSG_ST_DUPLICATE;
    } else if (res->status == MSG_ST_RATE_LIMITED) {
        rep.retry_after_ms = res->retry_after_ms;
    }
    msg_job_reply(j, &rep);
    /* A duplicate's event goes out again: the first one may never have. */
    if ((res->status == MSG_ST_STORED || res->status == MSG_ST_DUPLICATE) &&
        res->others != NULL && be->ev != NULL)
        events_add(be, &sm, res->others);
}

void msg_writer_batch(const msg_config *cfg, chat_pub *pub, msg_pg *pg, chat_redis *redis,
                      msg_job **jobs, int n)
{
    int64_t t0 = chat_mono_ms();
    int64_t now = chat_now_ms();
    msg_sort_batch(jobs, n);
    for (int i = 0; i < n; i++) {
        jobs[i]->op = MSG_OP_SEND;
        jobs[i]->token_taken = false;
        jobs[i]->res.status = MSG_ST_UNAVAILABLE;
    }
    bool limit = cfg->rate_per_min > 0 && redis != NULL;
    if (limit)
        rate_step(cfg, redis, jobs, n, now);
    int64_t c0 = chat_mono_ns();
    store_step(pg, jobs, n, now);
    msg_stats *st = jobs[0]->svc != NULL ? &jobs[0]->svc->stats : NULL;
    if (st != NULL) {
        chat_size_hist_observe(&st->batch_size, (uint64_t)n);
        chat_hist_observe(&st->commit_s, (double)(chat_mono_ns() - c0) / 1e9);
    }
    if (limit)
        refund_step(cfg, redis, jobs, n);
    int stored = 0;
    batch_events be = {0};
    events_alloc(&be, jobs, n);
    for (int i = 0; i < n; i++) {
        stored += jobs[i]->res.status == MSG_ST_STORED;
        finish(jobs[i], &be);
    }
    /* Published after every reply of the batch, in the batch's order (per
     * conversation: seq order), as one message to every gateway. */
    events_publish(pub, &be);
    for (int i = 0; i < n; i++)
        msg_job_free(jobs[i]);
    events_free(&be);
    chat_debug("send_batch", "sends=%d stored=%d ms=%lld", n, stored,
               (long long)(chat_mono_ms() - t0));
}

/* ---- threads ---- */

static void *writer_init(void *arg)
{
    msg_writers *ws = arg;
    const msg_config *cfg = ws->cfg;
    writer_conn *wc = calloc(1, sizeof *wc);
    if (wc == NULL)
        return NULL; /* every batch is answered UNAVAILABLE */
    wc->ws = ws;
    msg_pg_init(&wc->pg, cfg->pg_dsn, (int)cfg->pg_timeout_ms);
    wc->pg.point_lookups = true;
    msg_pg_ensure(&wc->pg); /* connect early; failure is retried per batch */
    if (cfg->rate_per_min > 0)
        wc->redis = chat_redis_new(cfg->redis_host, (int)cfg->redis_port, 1000);
    return wc;
}

static void writer_fini(void *state)
{
    writer_conn *wc = state;
    if (wc == NULL)
        return;
    chat_redis_free(wc->redis);
    msg_pg_close(&wc->pg);
    free(wc);
}

static void writer_run(void **items, int n, void *state)
{
    writer_conn *wc = state;
    msg_job **jobs = (msg_job **)items;
    if (jobs[0]->svc != NULL)
        atomic_fetch_sub(&jobs[0]->svc->stats.writer_queued, n);
    if (wc == NULL || (wc->ws->cfg->rate_per_min > 0 && wc->redis == NULL)) {
        /* Could not even allocate a connection or a Redis handle. */
        for (int i = 0; i < n; i++)
            msg_job_fail(jobs[i], CHAT__CODE__UNAVAILABLE, "writer unavailable");
        return;
    }
    msg_writer_batch(wc->ws->cfg, wc->ws->pub, &wc->pg, wc->redis, jobs, n);
}

int msg_writers_open(msg_writers **out, const msg_config *cfg, chat_pub *pub)
{
    msg_writers *ws = calloc(1, sizeof *ws);
    if (ws == NULL)
        return -1;
    ws->cfg = cfg;
    ws->pub = pub;
    ws->q = calloc((size_t)cfg->writers, sizeof *ws->q);
    if (ws->q == NULL) {
        free(ws);
        return -1;
    }
    for (int i = 0; i < cfg->writers; i++) {
        if (chat_batchq_open(&ws->q[i], (int)cfg->batch, writer_init, writer_fini, writer_run,
                             ws) != 0) {
            msg_writers_close(ws);
            return -1;
        }
        ws->n = i + 1;
    }
    *out = ws;
    return 0;
}

int msg_writers_push(msg_writers *ws, msg_job *job)
{
    unsigned w = msg_route(job->req->send->conversation_id, (unsigned)ws->n);
    msg_stats *st = job->svc != NULL ? &job->svc->stats : NULL;
    if (st != NULL)
        atomic_fetch_add(&st->writer_queued, 1);
    int rv = chat_batchq_push(ws->q[w], job);
    if (rv != 0 && st != NULL)
        atomic_fetch_sub(&st->writer_queued, 1);
    return rv;
}

void msg_writers_close(msg_writers *ws)
{
    if (ws == NULL)
        return;
    for (int i = 0; i < ws->n; i++)
        chat_batchq_close(ws->q[i]);
    free(ws->q);
    free(ws);
}
