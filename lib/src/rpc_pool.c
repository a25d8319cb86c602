/* REP server + worker pool with a Redis connection per worker (see rpc_pool.h). */
#include "chat/rpc_pool.h"

#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "chat/log.h"
#include "chat/metrics.h"
#include "chat/workq.h"

struct chat_rpc_pool {
    chat_rpc_pool_cfg cfg;
    chat_rpc_pool_work work;
    chat_rpc_pool_refuse refuse;
    void *arg;
    chat_rpc_server *rpc;
    /* The gate: requests are queued only while wq is set; close clears it
     * under mu before draining, so nobody pushes into a closed pool. */
    pthread_mutex_t mu;
    chat_workq *wq;
    chat_workq *urgent; /* with cfg.urgent: one worker, its own Redis connection */
    _Atomic unsigned queued, running; /* requests waiting for a worker, being worked on */
    _Atomic uint64_t expired;         /* refused past the deadline */
    _Atomic int64_t expired_logged_ns;
};

/* One request on its way through a worker; owned by the worker once queued. */
typedef struct pool_item {
    chat_rpc_pool *pool;
    chat_rpc_job *job;
    const uint8_t *data; /* valid until the job is replied to */
    size_t len;
    int64_t arrived_ns; /* chat_mono_ns() when the request came */
} pool_item;

/* The arrival of the request this worker runs now (chat_rpc_pool_age_s). */
static _Thread_local int64_t pool_arrived_ns;

double chat_rpc_pool_age_s(void)
{
    return pool_arrived_ns > 0 ? (double)(chat_mono_ns() - pool_arrived_ns) / 1e9 : 0;
}

static void *pool_worker_init(void *ctx)
{
    const chat_rpc_pool *p = ctx;
    /* Connects lazily and reconnects by itself: a Redis that is down now
     * only makes requests fail until it is back. */
    return chat_redis_new(p->cfg.redis_host, p->cfg.redis_port, p->cfg.redis_timeout_ms);
}

static void pool_worker_fini(void *state)
{
    chat_redis_free(state);
}

/* A request past its deadline: refused (logged at most once a second,
 * with the count so far: under overload there are many). */
static void pool_expire(chat_rpc_pool *p, pool_item *it, int64_t now)
{
    uint64_t n = atomic_fetch_add(&p->expired, 1) + 1;
    int64_t last = atomic_load(&p->expired_logged_ns);
    if (now - last >= 1000000000 &&
        atomic_compare_exchange_strong(&p->expired_logged_ns, &last, now))
        chat_warn("work_expired", "pool=%s waited_ms=%lld deadline_ms=%d expired=%llu",
                  p->cfg.name, (long long)((now - it->arrived_ns) / 1000000),
                  p->cfg.deadline_ms, (unsigned long long)n);
    p->refuse(it->job, p->arg);
    free(it);
}

static void pool_run(void *arg, void *state)
{
    pool_item *it = arg;
    chat_rpc_pool *p = it->pool;
    atomic_fetch_sub(&p->queued, 1);
    int64_t now = chat_mono_ns();
    if (p->cfg.deadline_ms > 0 &&
        now - it->arrived_ns > (int64_t)p->cfg.deadline_ms * 1000000) {
        pool_expire(p, it, now);
        return;
    }
    atomic_fetch_add(&p->running, 1);
    pool_arrived_ns = it->arrived_ns;
    p->work(it->job, it->data, it->len, state, p->arg);
    pool_arrived_ns = 0;
    atomic_fetch_sub(&p->running, 1);
    free(it);
}

static void pool_on_request(chat_rpc_job *job, const uint8_t *data, size_t len, void *arg)
{
    chat_rpc_pool *p = arg;
    pool_item *it = malloc(sizeof *it);
    int rv = -1;
    if (it != NULL) {
        *it = (pool_item){p, job, data, len, chat_mono_ns()};
        bool urgent = p->cfg.urgent != NULL && p->cfg.urgent(data, len);
        pthread_mutex_lock(&p->mu);
        chat_workq *q = urgent && p->urgent != NULL ? p->urgent : p->wq;
        atomic_fetch_add(&p->queued, 1);
        rv = q != NULL ? chat_workq_push(q, pool_run, it) : -1;
        if (rv != 0)
            atomic_fetch_sub(&p->queued, 1);
        pthread_mutex_unlock(&p->mu);
    }
    if (rv != 0) {
        free(it);
        p->refuse(job, p->arg);
    }
}

int chat_rpc_pool_open(chat_rpc_pool **out, const chat_rpc_pool_cfg *cfg,
                       chat_rpc_pool_work work, chat_rpc_pool_refuse refuse, void *arg)
{
    chat_rpc_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    p->cfg = *cfg;
    p->work = work;
    p->refuse = refuse;
    p->arg = arg;
    pthread_mutex_init(&p->mu, NULL);
    if (chat_workq_open(&p->wq, cfg->threads, pool_worker_init, pool_worker_fini, p) != 0 ||
        (cfg->urgent != NULL &&
         chat_workq_open(&p->urgent, 1, pool_worker_init, pool_worker_fini, p) != 0)) {
        chat_error("rpc_pool_workers_failed", "svc=%s threads=%d", cfg->name, cfg->threads);
        chat_workq_close(p->wq);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return -1;
    }
    int rv = chat_rpc_server_open(&p->rpc, cfg->listen, cfg->contexts, pool_on_request, p);
    if (rv != 0) {
        chat_error("rpc_pool_listen_failed", "svc=%s url=%s err=\"%s\"", cfg->name, cfg->listen,
                   nng_strerror(rv));
        chat_workq_close(p->wq);
        chat_workq_close(p->urgent);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return -1;
    }
    chat_info("rpc_pool_listening", "svc=%s url=%s contexts=%d threads=%d", cfg->name,
              cfg->listen, cfg->contexts, cfg->threads);
    *out = p;
    return 0;
}

uint64_t chat_rpc_pool_expired(chat_rpc_pool *p)
{
    return p != NULL ? atomic_load(&p->expired) : 0;
}

void chat_rpc_pool_depth(chat_rpc_pool *p, unsigned *queued, unsigned *running)
{
    *queued = p != NULL ? atomic_load(&p->queued) : 0;
    *running = p != NULL ? atomic_load(&p->running) : 0;
}

void chat_rpc_pool_close(chat_rpc_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    chat_workq *wq = p->wq, *urgent = p->urgent;
    p->wq = p->urgent = NULL;
    pthread_mutex_unlock(&p->mu);
    chat_workq_close(wq); /* runs what was queued: every job gets its reply */
    chat_workq_close(urgent);
    chat_rpc_server_close(p->rpc);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
