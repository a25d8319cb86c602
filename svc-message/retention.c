/* Retention: every replica runs a purger thread that deletes messages older
 * than the shared setting (msg_settings.retention_days, 0 = forever; see
 * docs/OPERATIONS.md "Retention") every CHAT_RETENTION_INTERVAL_S and when
 * an operator asks (`chatctl retention run`).
 *
 * A run deletes in bounded batches (CHAT_RETENTION_BATCH rows per DELETE,
 * each its own transaction, found through the ts index) with a pause
 * between them, so the writers' row locks and WAL flushes are never queued
 * behind one long statement: sends keep being acked while it runs. One
 * replica purges at a time (an advisory lock); an asked run on another
 * replica waits for it, a periodic one is skipped. Readers filter expired
 * messages themselves (schema.c), so what the purge has not reached yet is
 * never handed out either. */
#include "message.h"

#include "chat/log.h"
#include "chat/util.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define RET_BATCH_DEFAULT 5000
#define RET_LOCK_POLL_MS 250 /* an asked run waiting for another replica's */

struct msg_retention {
    const msg_config *cfg;
    msg_pg pg; /* the purger thread's */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu; /* guards what follows */
    pthread_cond_t cv;
    bool stop;
    bool asked; /* a run was asked for (already counted in st.runs) */
    msg_retention_state st;
};

/* Waits up to ms (or until stopped or asked; mu held). True when stopping. */
static bool ret_wait_locked(msg_retention *r, int64_t ms, bool until_asked)
{
    struct timespec dl = chat_deadline_ms(ms);
    while (!r->stop && !(until_asked && r->asked))
        if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) != 0)
            break;
    return r->stop;
}

static bool ret_pause(msg_retention *r, int64_t ms)
{
    pthread_mutex_lock(&r->mu);
    bool stop = ret_wait_locked(r, ms, false);
    pthread_mutex_unlock(&r->mu);
    return stop;
}

/* One statement returning one bigint, or -1 (unavailable or refused). */
static long long ret_scalar(msg_pg *pg, const char *stmt, int n, const char *const *v)
{
    PGresult *res = msg_pg_query(pg, stmt, n, v);
    long long out = -1;
    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        out = PQgetvalue(res, 0, 0)[0] == 't' ? 1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return out;
}

/* The shared setting, seeded from CHAT_RETENTION_DAYS when never set. -1:
 * PostgreSQL unavailable. */
static long long ret_days(msg_retention *r)
{
    char seed[24];
    snprintf(seed, sizeof seed, "%lld", r->cfg->retention_days);
    const char *v[] = {seed};
    PGresult *res = msg_pg_query(&r->pg, MSG_SQL_RET_SEED, 1, v);
    bool ok = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok ? ret_scalar(&r->pg, MSG_SQL_RET_GET, 0, NULL) : -1;
}

/* Takes the advisory lock; an asked run waits for it. False: not taken. */
static bool ret_lock(msg_retention *r, bool asked)
{
    for (;;) {
        long long got = ret_scalar(&r->pg, MSG_SQL_PURGE_LOCK, 0, NULL);
        if (got == 1)
            return true;
        if (got < 0 || !asked || ret_pause(r, RET_LOCK_POLL_MS))
            return false;
    }
}

/* Deletes in batches until none is full. Returns the rows deleted. */
static uint64_t ret_purge(msg_retention *r, long long days)
{
    int batch = r->cfg->retention_batch > 0 ? (int)r->cfg->retention_batch : RET_BATCH_DEFAULT;
    char cut[24], lim[16];
    snprintf(cut, sizeof cut, "%" PRId64, msg_retention_cutoff(chat_now_ms(), days));
    snprintf(lim, sizeof lim, "%d", batch);
    const char *v[] = {cut, lim};
    uint64_t total = 0;
    for (;;) {
        PGresult *res = msg_pg_query(&r->pg, MSG_SQL_PURGE, 2, v);
        if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
            const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
            chat_warn("retention_batch_failed", "deleted=%" PRIu64 " err=\"%s\"", total,
                      m ? m : "storage unavailable");
            PQclear(res);
            break;
        }
        long long k = strtoll(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        total += (uint64_t)k;
        pthread_mutex_lock(&r->mu);
        r->st.deleted += (uint64_t)k;
        r->st.deleted_total += (uint64_t)k;
        pthread_mutex_unlock(&r->mu);
        if (k < batch || ret_pause(r, r->cfg->retention_pause_ms))
            break;
    }
    return total;
}

/* Marks a run as started (a periodic one is counted here, an asked one
 * was counted when asked). */
static void ret_begin(msg_retention *r, bool asked)
{
    pthread_mutex_lock(&r->mu);
    if (!asked)
        r->st.runs++;
    r->st.running = true;
    r->st.deleted = 0;
    pthread_mutex_unlock(&r->mu);
}

static void ret_end(msg_retention *r, int64_t t0)
{
    pthread_mutex_lock(&r->mu);
    r->st.running = r->asked; /* another was asked for meanwhile */
    r->st.last_run_at = chat_now_ms();
    r->st.last_duration_s = (double)(chat_mono_ns() - t0) / 1e9;
    pthread_mutex_unlock(&r->mu);
}

static void ret_run(msg_retention *r, bool asked)
{
    int64_t t0 = chat_mono_ns();
    long long days = ret_days(r);
    if (days < 0 && asked)
        chat_warn("retention_run_failed", "reason=\"postgresql unavailable\"");
    if (days <= 0 || !ret_lock(r, asked)) {
        if (asked) /* counted: it ends now, having deleted nothing */
            ret_end(r, t0);
        return;
    }
    ret_begin(r, asked);
    uint64_t n = ret_purge(r, days);
    ret_scalar(&r->pg, MSG_SQL_PURGE_UNLOCK, 0, NULL); /* or it went with the connection */
    ret_end(r, t0);
    chat_info("retention_run", "days=%lld deleted=%" PRIu64 " ms=%lld asked=%d", days, n,
              (long long)((chat_mono_ns() - t0) / 1000000), asked);
}

static void *ret_thread(void *arg)
{
    msg_retention *r = arg;
    int64_t interval_ms = r->cfg->retention_interval_s * 1000;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        /* Without an interval only an asked run wakes it (a day at a time). */
        ret_wait_locked(r, interval_ms > 0 ? interval_ms : 86400000, true);
        bool stop = r->stop, asked = r->asked;
        r->asked = false;
        pthread_mutex_unlock(&r->mu);
        if (stop)
            break;
        if (asked || interval_ms > 0)
            ret_run(r, asked);
    }
    msg_pg_close(&r->pg);
    return NULL;
}

int msg_retention_open(msg_retention **out, const msg_config *cfg)
{
    msg_retention *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -1;
    r->cfg = cfg;
    msg_pg_init(&r->pg, cfg->pg_dsn, (int)cfg->pg_timeout_ms);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, ret_thread, r) != 0) {
        msg_retention_close(r);
        return -1;
    }
    r->started = true;
    *out = r;
    return 0;
}

void msg_retention_request(msg_retention *r, msg_retention_state *st)
{
    pthread_mutex_lock(&r->mu);
    r->st.runs++;
    if (!r->st.running)
        r->st.deleted = 0;
    r->st.running = true;
    r->asked = true;
    pthread_cond_signal(&r->cv);
    *st = r->st;
    pthread_mutex_unlock(&r->mu);
}

void msg_retention_get(msg_retention *r, msg_retention_state *st)
{
    pthread_mutex_lock(&r->mu);
    *st = r->st;
    pthread_mutex_unlock(&r->mu);
}

void msg_retention_close(msg_retention *r)
{
    if (r == NULL)
        return;
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
    }
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}
