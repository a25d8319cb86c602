/* The sweeper thread: every interval, expired graces and dead gateways.
 * It has its own Redis connection; its svc-match calls block it, never the
 * request workers. */
#include "presence.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "chat/log.h"

struct pres_sweeper {
    const pres_env *env;
    chat_redis *redis; /* owned */
    int interval_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled by stop, so it does not wait out a tick */
    bool stop;
};

static void tick(pres_sweeper *s)
{
    int64_t now = chat_now_ms();
    int gone = pres_sweep_grace(s->env, s->redis, now);
    int offline = pres_sweep_gateways(s->env, s->redis, now);
    if (gone > 0 || offline > 0)
        chat_debug("pres_sweep", "gone=%d offline=%d", gone, offline);
    /* Unreachable Redis is logged once by the connection itself. */
}

static void *sweeper_main(void *arg)
{
    pres_sweeper *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        pthread_mutex_unlock(&s->mu);
        tick(s);
        pthread_mutex_lock(&s->mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)(s->interval_ms % 1000) * 1000000L;
        until.tv_sec += s->interval_ms / 1000 + until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &until) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int pres_sweeper_start(pres_sweeper **out, const pres_env *env, const char *redis_host,
                       int redis_port, int redis_timeout_ms, int interval_ms)
{
    pres_sweeper *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    s->env = env;
    s->interval_ms = interval_ms;
    s->redis = chat_redis_new(redis_host, redis_port, redis_timeout_ms);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    if (s->redis == NULL || pthread_create(&s->thread, NULL, sweeper_main, s) != 0) {
        chat_error("pres_sweeper_failed", "err=%s", s->redis ? "thread" : "oom");
        chat_redis_free(s->redis);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void pres_sweeper_stop(pres_sweeper *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    chat_redis_free(s->redis);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
