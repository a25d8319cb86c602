/* The REP socket and the worker threads. A request is received on an nng
 * thread and handed to a worker (Redis and svc-message calls block); the
 * worker decodes it, runs match_handle() with its own Redis connection and
 * replies. */
#include "match.h"

#include <pthread.h>
#include <stdlib.h>

#include <nng/nng.h>

#include "chat/log.h"
#include "chat/workq.h"

struct match_server {
    const match_env *env;
    match_server_cfg cfg;
    chat_rpc_server *rpc;
    /* The gate: on_request pushes only while wq is set; close clears it
     * under mu before draining, so nobody pushes into a closed pool. */
    pthread_mutex_t mu;
    chat_workq *wq;
};

/* One request on its way through a worker; owned by the worker once pushed. */
typedef struct match_work {
    match_server *srv;
    chat_rpc_job *job;
    const uint8_t *data; /* valid until the job is replied to */
    size_t len;
} match_work;

static void reply_code(chat_rpc_job *job, Chat__Code code, const char *detail)
{
    Chat__MatchReply rep = CHAT__MATCH_REPLY__INIT;
    rep.code = code;
    rep.detail = (char *)detail;
    chat_rpc_job_reply_pb(job, &rep.base);
}

static void *worker_init(void *ctx)
{
    const match_server *s = ctx;
    /* Connects lazily and reconnects by itself: a Redis that is down now
     * only makes requests fail with UNAVAILABLE until it is back. */
    return chat_redis_new(s->cfg.redis_host, s->cfg.redis_port, s->cfg.redis_timeout_ms);
}

static void worker_fini(void *state)
{
    chat_redis_free(state);
}

static void work_run(void *arg, void *state)
{
    match_work *w = arg;
    chat_redis *r = state;
    Chat__MatchRequest *req = chat__match_request__unpack(NULL, w->len, w->data);
    match_out out;
    match_out_init(&out);
    if (req == NULL)
        match_out_err(&out, CHAT__CODE__BAD_REQUEST, "undecodable request");
    else if (r == NULL)
        match_out_err(&out, CHAT__CODE__UNAVAILABLE, "out of memory");
    else
        match_handle(w->srv->env, r, req, &out);
    if (out.reply.code != CHAT__CODE__OK)
        chat_debug("match_request_failed", "req=%d code=%d detail=\"%s\"",
                   req ? (int)req->body_case : -1, (int)out.reply.code, out.detail);
    chat_rpc_job_reply_pb(w->job, &out.reply.base);
    match_out_free(&out);
    chat__match_request__free_unpacked(req, NULL);
    free(w);
}

static void on_request(chat_rpc_job *job, const uint8_t *data, size_t len, void *arg)
{
    match_server *s = arg;
    match_work *w = malloc(sizeof *w);
    int rv = -1;
    if (w != NULL) {
        *w = (match_work){s, job, data, len};
        pthread_mutex_lock(&s->mu);
        rv = s->wq != NULL ? chat_workq_push(s->wq, work_run, w) : -1;
        pthread_mutex_unlock(&s->mu);
    }
    if (rv != 0) {
        free(w);
        reply_code(job, CHAT__CODE__UNAVAILABLE, "not accepting requests");
    }
}

int match_server_open(match_server **out, const match_server_cfg *cfg, const match_env *env)
{
    match_server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    s->env = env;
    s->cfg = *cfg;
    pthread_mutex_init(&s->mu, NULL);
    if (chat_workq_open(&s->wq, cfg->threads, worker_init, worker_fini, s) != 0) {
        chat_error("match_workers_failed", "threads=%d", cfg->threads);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return -1;
    }
    int rv = chat_rpc_server_open(&s->rpc, cfg->listen, cfg->contexts, on_request, s);
    if (rv != 0) {
        chat_error("match_listen_failed", "url=%s err=\"%s\"", cfg->listen, nng_strerror(rv));
        chat_workq_close(s->wq);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return -1;
    }
    chat_info("match_listening", "url=%s contexts=%d threads=%d", cfg->listen, cfg->contexts,
              cfg->threads);
    *out = s;
    return 0;
}

void match_server_close(match_server *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    chat_workq *wq = s->wq;
    s->wq = NULL;
    pthread_mutex_unlock(&s->mu);
    chat_workq_close(wq); /* runs what was queued: every job gets its reply */
    chat_rpc_server_close(s->rpc);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
