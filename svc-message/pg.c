/* One PostgreSQL connection per thread, always in pipeline mode and
 * non-blocking, so that every round trip has a deadline: a server that is
 * down or hung costs a request at most the timeout, never a thread. */
#include "message.h"

#include "chat/log.h"
#include "chat/util.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* Reconnect backoff after failed attempts, and the most one attempt may
 * take. */
#define PG_RETRY_MIN_MS 100
#define PG_RETRY_MAX_MS 2000
#define PG_CONNECT_MS 1000

/* For /metrics: every connection of the process counts here. */
static _Atomic uint64_t err_connect, err_down, err_statement;

void msg_pg_errors(uint64_t *connect, uint64_t *down, uint64_t *statement)
{
    *connect = atomic_load(&err_connect);
    *down = atomic_load(&err_down);
    *statement = atomic_load(&err_statement);
}

void msg_pg_init(msg_pg *pg, const char *dsn, int timeout_ms)
{
    memset(pg, 0, sizeof *pg);
    pg->dsn = dsn;
    pg->timeout_ms = timeout_ms;
}

/* First line of a libpq message, for a one-line log entry. */
static const char *first_line(const char *s, char *buf, size_t n)
{
    snprintf(buf, n, "%s", s && *s ? s : "timeout");
    buf[strcspn(buf, "\r\n")] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '"')
            *p = '\'';
    return buf;
}

static void pg_drop(msg_pg *pg)
{
    if (pg->conn != NULL) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
}

void msg_pg_close(msg_pg *pg)
{
    if (pg != NULL)
        pg_drop(pg);
}

/* Waits for the socket until the deadline. 0: go on; -1: give up. */
static int pg_wait(PGconn *c, short events, int64_t deadline)
{
    int64_t left = deadline - chat_mono_ms();
    if (left <= 0)
        return -1;
    struct pollfd p = {.fd = PQsocket(c), .events = events};
    int rv = poll(&p, 1, (int)left);
    if (rv < 0)
        return errno == EINTR ? 0 : -1;
    return rv == 0 ? -1 : 0;
}

/* Connects without blocking past the deadline (libpq's own connect_timeout
 * blocks the thread, in whole seconds). Returns a connected handle, or
 * NULL with the reason in err. */
static PGconn *pg_connect(const char *dsn, int64_t deadline, char *err, size_t errlen)
{
    /* Our defaults first, then the operator's conninfo (expanded from
     * dbname) overrides them; the encoding is ours to decide. */
    const char *kw[] = {"keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "application_name",
                        "dbname",
                        "client_encoding",
                        NULL};
    const char *val[] = {"10", "3", "3", "svc-message", dsn, "UTF8", NULL};
    PGconn *c = PQconnectStartParams(kw, val, 1);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (;;) {
        PostgresPollingStatusType st =
            PQstatus(c) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PQconnectPoll(c);
        if (st == PGRES_POLLING_OK)
            return c;
        if (st == PGRES_POLLING_FAILED) {
            first_line(PQerrorMessage(c), err, errlen);
            break;
        }
        if (pg_wait(c, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline) != 0) {
            snprintf(err, errlen, "connect timeout");
            break;
        }
    }
    PQfinish(c);
    return NULL;
}

/* Server notices ("relation already exists, skipping") are not ours to
 * print on stderr raw. */
static void pg_notice(void *arg, const char *msg)
{
    char buf[200];
    chat_debug("pg_notice", "msg=\"%s\"", first_line(msg, buf, sizeof buf));
}

/* Blocking setup of a fresh connection, before it goes non-blocking. */
static int pg_setup(msg_pg *pg, PGconn *c)
{
    PQsetNoticeProcessor(c, pg_notice, NULL);
    char sql[160];
    snprintf(sql, sizeof sql, "SET statement_timeout = %d%s", pg->timeout_ms,
             pg->point_lookups ? "; SET enable_seqscan = off; SET enable_hashjoin = off;"
                                 " SET enable_mergejoin = off"
                               : "");
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok || msg_schema_migrate(c) != 0 || msg_schema_prepare(c) != 0)
        return -1;
    if (PQsetnonblocking(c, 1) != 0 || PQenterPipelineMode(c) != 1)
        return -1;
    return 0;
}

/* An idle connection whose server went away (PostgreSQL restarted, a
 * backend terminated) still says CONNECTION_OK until something reads it, so
 * the first request after PostgreSQL came back would be answered
 * `unavailable` on every connection nobody used during the outage. Between
 * requests nothing is owed to us: a readable socket is a FATAL and an EOF (or
 * a harmless notice, which this consumes). */
static bool pg_idle_alive(PGconn *c)
{
    for (int i = 0; i < 4; i++) {
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
        if (p.fd < 0)
            return false;
        int rv = poll(&p, 1, 0);
        if (rv == 0 || (rv < 0 && errno == EINTR))
            return true;
        if (rv < 0 || (p.revents & (POLLERR | POLLNVAL)) || !PQconsumeInput(c) ||
            PQstatus(c) != CONNECTION_OK)
            return false;
    }
    return PQstatus(c) == CONNECTION_OK;
}

int msg_pg_ensure(msg_pg *pg)
{
    if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK && pg_idle_alive(pg->conn))
        return 0;
    if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK)
        chat_info("pg_idle_lost", "reconnecting=1"); /* found before a request met it */
    pg_drop(pg);
    int64_t now = chat_mono_ms();
    if (now < pg->next_try_ms)
        return -1;
    char err[200] = "setup failed";
    int budget = pg->timeout_ms < PG_CONNECT_MS ? pg->timeout_ms : PG_CONNECT_MS;
    PGconn *c = pg_connect(pg->dsn, now + budget, err, sizeof err);
    if (c == NULL || pg_setup(pg, c) != 0) {
        atomic_fetch_add(&err_connect, 1);
        if (!pg->warned)
            chat_warn("pg_unreachable", "err=\"%s\"", err);
        pg->warned = true;
        PQfinish(c);
        /* Back off (doubling) so an outage fails requests fast instead of
         * making each wait for a connect attempt. */
        pg->backoff_ms = pg->backoff_ms ? pg->backoff_ms * 2 : PG_RETRY_MIN_MS;
        if (pg->backoff_ms > PG_RETRY_MAX_MS)
            pg->backoff_ms = PG_RETRY_MAX_MS;
        pg->next_try_ms = chat_mono_ms() + pg->backoff_ms;
        return -1;
    }
    if (pg->warned)
        chat_info("pg_reconnected", "ok=1");
    pg->warned = false;
    pg->backoff_ms = 0;
    pg->conn = c;
    return 0;
}

int msg_pg_send(msg_pg *pg, const char *stmt, int nparams, const char *const *values)
{
    if (pg->conn != NULL &&
        PQsendQueryPrepared(pg->conn, stmt, nparams, values, NULL, NULL, 0) == 1)
        return 0;
    if (pg->conn != NULL)
        atomic_fetch_add(&err_down, 1);
    pg_drop(pg);
    return -1;
}

int msg_pg_send_sql(msg_pg *pg, const char *sql)
{
    if (pg->conn != NULL && PQsendQueryParams(pg->conn, sql, 0, NULL, NULL, NULL, NULL, 0) == 1)
        return 0;
    if (pg->conn != NULL)
        atomic_fetch_add(&err_down, 1);
    pg_drop(pg);
    return -1;
}

msg_pg_err msg_pg_classify(const PGresult *r)
{
    if (r == NULL)
        return MSG_PG_DOWN;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state == NULL)
        return MSG_PG_DOWN; /* raised by libpq itself: the link is gone */
    /* 08 connection, 53 resources, 57 canceled / shutting down, 58 system:
     * the database cannot take the work now. Anything else is about the
     * statements (unique violation, deadlock...) and worth a retry. */
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
        strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0)
        return MSG_PG_DOWN;
    return MSG_PG_RETRY;
}

static bool result_ok(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Flushes the pipeline and reads results until the sync. */
static msg_pg_err pg_read(PGconn *c, PGresult **out, int nq, int64_t deadline)
{
    for (;;) {
        int f = PQflush(c);
        if (f == 0)
            break;
        if (f < 0 || pg_wait(c, POLLIN | POLLOUT, deadline) != 0 || !PQconsumeInput(c))
            return MSG_PG_DOWN;
    }
    int idx = 0;
    for (;;) {
        if (!PQconsumeInput(c))
            return MSG_PG_DOWN;
        if (PQisBusy(c)) {
            if (pg_wait(c, POLLIN, deadline) != 0)
                return MSG_PG_DOWN;
            continue;
        }
        PGresult *r = PQgetResult(c);
        if (r == NULL) {
            /* End of one statement's results. Past the last one only the
             * sync is due: wait for it rather than spin. */
            if (idx++ >= nq && pg_wait(c, POLLIN, deadline) != 0)
                return MSG_PG_DOWN;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            return MSG_PG_OK;
        }
        if (st == PGRES_PIPELINE_ABORTED || idx >= nq || out[idx] != NULL)
            PQclear(r); /* skipped statement: its slot stays NULL */
        else
            out[idx] = r;
        if (PQstatus(c) == CONNECTION_BAD)
            return MSG_PG_DOWN;
    }
}

static msg_pg_err pg_sync_read(msg_pg *pg, PGresult **out, int nq)
{
    if (PQpipelineSync(pg->conn) != 1)
        return MSG_PG_DOWN;
    int64_t deadline = chat_mono_ms() + pg->timeout_ms + 500;
    return pg_read(pg->conn, out, nq, deadline);
}

static void clear_all(PGresult **out, int nq)
{
    for (int i = 0; i < nq; i++) {
        PQclear(out[i]);
        out[i] = NULL;
    }
}

/* A statement failed inside BEGIN ... COMMIT: the transaction stays
 * aborted until we say ROLLBACK. */
static msg_pg_err pg_rollback(msg_pg *pg)
{
    if (PQsendQueryParams(pg->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) != 1)
        return MSG_PG_DOWN;
    PGresult *r = NULL;
    msg_pg_err e = pg_sync_read(pg, &r, 1);
    if (e == MSG_PG_OK && (r == NULL || !result_ok(r)))
        e = MSG_PG_DOWN;
    PQclear(r);
    return e;
}

msg_pg_err msg_pg_collect(msg_pg *pg, PGresult **out, int nq)
{
    for (int i = 0; i < nq; i++)
        out[i] = NULL;
    msg_pg_err e = pg_sync_read(pg, out, nq);
    for (int i = 0; e == MSG_PG_OK && i < nq; i++) {
        if (out[i] != NULL && !result_ok(out[i]))
            e = msg_pg_classify(out[i]);
    }
    if (e == MSG_PG_RETRY)
        atomic_fetch_add(&err_statement, 1);
    if (e != MSG_PG_DOWN && PQtransactionStatus(pg->conn) != PQTRANS_IDLE &&
        pg_rollback(pg) != MSG_PG_OK)
        e = MSG_PG_DOWN;
    if (e == MSG_PG_DOWN) {
        atomic_fetch_add(&err_down, 1);
        const char *why = PQerrorMessage(pg->conn);
        for (int i = 0; i < nq; i++) {
            if (out[i] != NULL && !result_ok(out[i])) {
                why = PQresultErrorMessage(out[i]);
                break;
            }
        }
        char buf[200];
        chat_warn("pg_down", "err=\"%s\"", first_line(why, buf, sizeof buf));
        clear_all(out, nq);
        pg_drop(pg);
        /* Whatever queued up while we waited fails fast; the next attempt
         * comes after the first backoff step. */
        pg->backoff_ms = PG_RETRY_MIN_MS;
        pg->next_try_ms = chat_mono_ms() + PG_RETRY_MIN_MS;
    }
    return e;
}

PGresult *msg_pg_query(msg_pg *pg, const char *stmt, int nparams, const char *const *values)
{
    if (msg_pg_ensure(pg) != 0)
        return NULL;
    if (msg_pg_send(pg, stmt, nparams, values) != 0)
        return NULL;
    PGresult *r = NULL;
    msg_pg_collect(pg, &r, 1);
    return r; /* an error result is the caller's to map; NULL: down */
}
