/* The service as a whole: the request handler (on nng's threads: decode,
 * validate, hand over) and the ordered start and staged stop. */
#include "message.h"

#include "chat/log.h"
#include "chat/workq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void reply_code(chat_rpc_job *rpc, Chat__Code code, const char *detail)
{
    Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
    rep.code = code;
    rep.detail = (char *)detail;
    chat_rpc_job_reply_pb(rpc, &rep.base);
}

/* Runs on an nng thread: nothing here blocks on a backend. */
static void on_request(chat_rpc_job *rpc, const uint8_t *data, size_t len, void *arg)
{
    msg_service *svc = arg;
    if (atomic_load(&svc->stopping)) {
        reply_code(rpc, CHAT__CODE__UNAVAILABLE, "shutting down");
        return;
    }
    msg_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        reply_code(rpc, CHAT__CODE__INTERNAL, "out of memory");
        return;
    }
    job->rpc = rpc;
    job->svc = svc;
    job->req = chat__message_request__unpack(NULL, len, data);
    if (job->req == NULL) {
        msg_job_fail(job, CHAT__CODE__BAD_REQUEST, "undecodable request");
        return;
    }
    const char *detail = "";
    Chat__Code code = msg_validate(job->req, svc->cfg->max_text, &detail);
    if (code != CHAT__CODE__OK) {
        msg_job_fail(job, code, detail);
        return;
    }
    int rv;
    switch (job->req->body_case) {
    case CHAT__MESSAGE_REQUEST__BODY_SEND: rv = msg_writers_push(svc->writers, job); break;
    case CHAT__MESSAGE_REQUEST__BODY_CREATE_CONVERSATION:
    case CHAT__MESSAGE_REQUEST__BODY_CLOSE_CONVERSATION:
        rv = msg_meta_push(svc->meta, job);
        break;
    default: rv = chat_workq_push(svc->readers, msg_store_work, job); break;
    }
    if (rv != 0)
        msg_job_fail(job, CHAT__CODE__UNAVAILABLE, "shutting down");
}

static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

/* Migrates a fresh database before the first request. Not fatal: every
 * new connection migrates if this did not happen. */
static void schema_at_start(const msg_config *cfg)
{
    msg_pg pg;
    msg_pg_init(&pg, cfg->pg_dsn, (int)cfg->pg_timeout_ms);
    if (msg_pg_ensure(&pg) != 0)
        chat_warn("schema_deferred", "reason=\"postgresql unreachable; will retry\"");
    msg_pg_close(&pg);
}

int msg_service_start(msg_service *svc, const msg_config *cfg)
{
    memset(svc, 0, sizeof *svc);
    svc->cfg = cfg;
    atomic_init(&svc->stopping, false);
    pthread_once(&scripts_once, msg_rate_init);
    schema_at_start(cfg);
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
        chat_pub_close(svc->pub);
        return -1;
    }
    if (msg_meta_open(&svc->meta, cfg) != 0) {
        chat_error("start_failed", "step=meta");
        msg_writers_close(svc->writers);
        chat_pub_close(svc->pub);
        return -1;
    }
    chat_workq *readers = NULL;
    if (chat_workq_open(&readers, (int)cfg->readers, msg_store_thread_init,
                        msg_store_thread_fini, (void *)cfg) != 0) {
        chat_error("start_failed", "step=readers");
        msg_meta_close(svc->meta);
        msg_writers_close(svc->writers);
        chat_pub_close(svc->pub);
        return -1;
    }
    svc->readers = readers;
    rv = chat_rpc_server_open(&svc->rpc, cfg->listen, (int)cfg->contexts, on_request, svc);
    if (rv != 0) {
        chat_error("start_failed", "step=rpc url=%s err=%d", cfg->listen, rv);
        chat_workq_close(readers);
        msg_meta_close(svc->meta);
        msg_writers_close(svc->writers);
        chat_pub_close(svc->pub);
        return -1;
    }
    chat_info("listening",
              "rpc=%s pub=%s writers=%lld readers=%lld batch=%lld rate_per_min=%lld",
              cfg->listen, cfg->pub_listen, cfg->writers, cfg->readers, cfg->batch,
              cfg->rate_per_min);
    return 0;
}

void msg_service_stop(msg_service *svc)
{
    /* 1. New requests are refused at once (a gateway retries elsewhere). */
    atomic_store(&svc->stopping, true);
    /* 2. The REP socket waits for requests already handed over, which the
     *    still running writers and readers answer; after it returns the
     *    handler never runs again. */
    chat_rpc_server_close(svc->rpc);
    svc->rpc = NULL;
    /* 3. Nothing is queued any more; stop the threads and their backends. */
    msg_writers_close(svc->writers);
    svc->writers = NULL;
    msg_meta_close(svc->meta);
    svc->meta = NULL;
    chat_workq_close(svc->readers);
    svc->readers = NULL;
    chat_pub_close(svc->pub);
    svc->pub = NULL;
    chat_info("stopped", "ok=1");
}
