/* The service as a whole: the request handler (on nng's threads: decode,
 * validate, hand over), the ordered start and staged stop, and what the
 * skeleton asks of it (readiness, load, /metrics). */
#include "message.h"

#include "chat/log.h"
#include "chat/workq.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An answer before there is a job (stopping, out of memory). */
static void reply_code(msg_service *svc, chat_rpc_job *rpc, Chat__Code code, const char *detail,
                       int64_t t0)
{
    Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
    rep.code = code;
    rep.detail = (char *)detail;
    chat_rpc_job_reply_pb(rpc, &rep.base);
    chat_reqstats_observe(svc->stats.reqs, 0, (int)code, (double)(chat_mono_ns() - t0) / 1e9);
    atomic_fetch_sub(&svc->stats.in_flight, 1);
}

/* Hands a valid request to the thread that runs it. 0, or -1 when that
 * part is stopping (the caller keeps the job). */
static int dispatch(msg_service *svc, msg_job *job)
{
    switch (job->req->body_case) {
    case CHAT__MESSAGE_REQUEST__BODY_SEND: return msg_writers_push(svc->writers, job);
    case CHAT__MESSAGE_REQUEST__BODY_CREATE_CONVERSATION:
    case CHAT__MESSAGE_REQUEST__BODY_CLOSE_CONVERSATION: return msg_meta_push(svc->meta, job);
    default: break;
    }
    atomic_fetch_add(&svc->stats.reader_queued, 1);
    int rv = chat_workq_push(svc->readers, msg_store_work, job);
    if (rv != 0)
        atomic_fetch_sub(&svc->stats.reader_queued, 1);
    return rv;
}

/* Runs on an nng thread: nothing here blocks on a backend. */
static void on_request(chat_rpc_job *rpc, const uint8_t *data, size_t len, void *arg)
{
    msg_service *svc = arg;
    int64_t t0 = chat_mono_ns();
    atomic_fetch_add(&svc->stats.in_flight, 1);
    if (atomic_load(&svc->stopping)) {
        reply_code(svc, rpc, CHAT__CODE__UNAVAILABLE, "shutting down", t0);
        return;
    }
    msg_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        reply_code(svc, rpc, CHAT__CODE__INTERNAL, "out of memory", t0);
        return;
    }
    job->rpc = rpc;
    job->svc = svc;
    job->t0_ns = t0;
    job->req =
        (Chat__MessageRequest *)chat_pb_unpack(&chat__message_request__descriptor, len, data);
    if (job->req == NULL) {
        msg_job_fail(job, CHAT__CODE__BAD_REQUEST, "undecodable request");
        return;
    }
    chat_log_req(job->req->req_id);
    const char *detail = "";
    Chat__Code code = msg_validate(job->req, svc->cfg->max_text, &detail);
    if (code != CHAT__CODE__OK)
        msg_job_fail(job, code, detail);
    else if (dispatch(svc, job) != 0)
        msg_job_fail(job, CHAT__CODE__UNAVAILABLE, "shutting down");
    chat_log_req(NULL);
}

static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

/* Migrates a fresh database before the first request and seeds the
 * retention setting (if never set). Not fatal: every new connection
 * migrates if this did not happen, and every purge seeds. */
static void schema_at_start(const msg_config *cfg)
{
    msg_pg pg;
    msg_pg_init(&pg, cfg->pg_dsn, (int)cfg->pg_timeout_ms);
    if (msg_pg_ensure(&pg) != 0) {
        chat_warn("schema_deferred", "reason=\"postgresql unreachable; will retry\"");
    } else {
        char days[24];
        snprintf(days, sizeof days, "%lld", cfg->retention_days);
        const char *v[] = {days};
        PQclear(msg_pg_query(&pg, MSG_SQL_RET_SEED, 1, v));
    }
    msg_pg_close(&pg);
}

/* Opens the parts in order; on failure the caller stops what is open. */
static int start_parts(msg_service *svc, const msg_config *cfg)
{
    int rv = chat_pub_open(&svc->pub, cfg->pub_listen);
    if (rv != 0) {
        chat_error("start_failed", "step=pub url=%s err=%d", cfg->pub_listen, rv);
        return -1;
    }
    if (cfg->test_drop_events > 0) {
        chat_warn("test_drop_events", "every=%lld", cfg->test_drop_events);
        chat_pub_test_drop(svc->pub, (unsigned)cfg->test_drop_events);
    }
    if (msg_writers_open(&svc->writers, cfg, svc->pub) != 0) {
        chat_error("start_failed", "step=writers");
        return -1;
    }
    if (msg_meta_open(&svc->meta, cfg) != 0) {
        chat_error("start_failed", "step=meta");
        return -1;
    }
    chat_workq *readers = NULL;
    if (chat_workq_open(&readers, (int)cfg->readers, msg_store_thread_init,
                        msg_store_thread_fini, (void *)cfg) != 0) {
        chat_error("start_failed", "step=readers");
        return -1;
    }
    svc->readers = readers;
    if (msg_retention_open(&svc->retention, cfg) != 0 ||
        (svc->admin = msg_admin_new(cfg)) == NULL) {
        chat_error("start_failed", "step=retention");
        return -1;
    }
    rv = chat_rpc_server_open(&svc->rpc, cfg->listen, (int)cfg->contexts, on_request, svc);
    if (rv != 0) {
        chat_error("start_failed", "step=rpc url=%s err=%d", cfg->listen, rv);
        return -1;
    }
    return 0;
}

int msg_service_start(msg_service *svc, const msg_config *cfg)
{
    memset(svc, 0, sizeof *svc);
    svc->cfg = cfg;
    atomic_init(&svc->stopping, false);
    pthread_mutex_init(&svc->mu, NULL);
    pthread_once(&scripts_once, msg_rate_init);
    svc->stats.reqs = chat_reqstats_new(&chat__message_request__descriptor);
    if (svc->stats.reqs == NULL) {
        chat_error("start_failed", "step=stats");
        return -1;
    }
    schema_at_start(cfg);
    if (start_parts(svc, cfg) != 0) {
        msg_service_stop(svc);
        return -1;
    }
    pthread_mutex_lock(&svc->mu);
    svc->up = true;
    pthread_mutex_unlock(&svc->mu);
    chat_info("listening",
              "rpc=%s pub=%s writers=%lld readers=%lld batch=%lld rate_per_min=%lld "
              "retention_interval_s=%lld",
              cfg->listen, cfg->pub_listen, cfg->writers, cfg->readers, cfg->batch,
              cfg->rate_per_min, cfg->retention_interval_s);
    return 0;
}

void msg_service_stop(msg_service *svc)
{
    pthread_mutex_lock(&svc->mu); /* waits for a /metrics in progress */
    bool was_up = svc->up;
    svc->up = false;
    pthread_mutex_unlock(&svc->mu);
    /* 1. New requests are refused at once (a gateway retries elsewhere). */
    atomic_store(&svc->stopping, true);
    /* 2. The REP socket waits for requests already handed over, which the
     *    still running writers and readers answer; after it returns the
     *    handler never runs again. */
    chat_rpc_server_close(svc->rpc);
    svc->rpc = NULL;
    /* 3. Nothing is queued any more; stop the threads and their backends
     *    (a purge in progress ends after its current batch). */
    msg_retention_close(svc->retention);
    svc->retention = NULL;
    msg_admin_free(svc->admin);
    svc->admin = NULL;
    msg_writers_close(svc->writers);
    svc->writers = NULL;
    msg_meta_close(svc->meta);
    svc->meta = NULL;
    chat_workq_close(svc->readers);
    svc->readers = NULL;
    chat_pub_close(svc->pub);
    svc->pub = NULL;
    chat_reqstats_free(svc->stats.reqs);
    svc->stats.reqs = NULL;
    if (was_up)
        chat_info("stopped", "ok=1");
}

bool msg_service_ready(void *arg)
{
    msg_service *svc = arg;
    return !atomic_load(&svc->stopping); /* the skeleton asks only once started */
}

uint64_t msg_service_load(void *arg)
{
    msg_service *svc = arg;
    int64_t n = atomic_load(&svc->stats.in_flight);
    return n > 0 ? (uint64_t)n : 0;
}
