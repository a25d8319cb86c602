/* The gateway's admin plane: lib/src/admin.c's server on
 * CHAT_GATEWAY_ADMIN_LISTEN, answering chatctl.
 *
 * Threads. `status` is answered on an nng thread from atomics: readiness,
 * which the lws thread refreshes every tick (gw_admin_mirror), and the
 * connections open (gw_server.conns_open, kept by conn.c). Every other request comes
 * on the lib's admin thread, but the state it reads and changes is the lws
 * thread's alone: the request travels there as a GW_OP_ADMIN item (the
 * backend queue, which wakes lws), and the admin thread waits for it,
 * at most ADMIN_WAIT_MS, then answers "gateway busy".
 *
 * The job is shared by both threads (two references). The lws thread runs
 * it holding the job's lock, and only if the admin thread has not given
 * up: so the reply (chat_admin_out, the admin thread's) is either written
 * whole before the admin thread answers, or not touched at all. */
#include "gateway.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "chat/admin.h"
#include "chat/log.h"

#define ADMIN_WAIT_MS 2000

struct gw_admin {
    chat_admin *srv;
    gw_server *s;
    atomic_bool ready;
    char metrics_url[96];
};

typedef struct admin_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                      /* under mu */
    bool done, abandoned;          /* under mu */
    const Chat__AdminRequest *req; /* the admin thread's */
    chat_admin_out *out;           /* the admin thread's */
} admin_job;

static bool admin_ready(void *arg)
{
    gw_admin *a = arg;
    return atomic_load(&a->ready);
}

static uint64_t admin_load(void *arg)
{
    gw_admin *a = arg;
    return atomic_load(&a->s->conns_open);
}

void gw_admin_mirror(gw_admin *a, bool ready)
{
    if (a != NULL)
        atomic_store(&a->ready, ready);
}

/* Drops one reference; the last frees. */
static void admin_job_release(admin_job *j)
{
    pthread_mutex_lock(&j->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last)
        return;
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* The item's free (also when it is freed unrun, at shutdown). */
static void admin_job_drop(void *any)
{
    admin_job *j = any;
    pthread_mutex_lock(&j->mu);
    if (!j->done && !j->abandoned) {
        chat_admin_fail(j->out, CHAT__ADMIN_CODE__ADMIN_FAILED, "gateway stopping");
        j->done = true;
        pthread_cond_signal(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
    admin_job_release(j);
}

void gw_admin_run(gw_server *s, gw_item *it)
{
    admin_job *j = it->r.any;
    pthread_mutex_lock(&j->mu);
    if (!j->done && !j->abandoned) {
        chat_log_req(j->req->req_id);
        gw_ops_handle(s, j->req, j->out);
        chat_log_req(NULL);
        j->done = true;
        pthread_cond_signal(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
}

static admin_job *admin_job_new(const Chat__AdminRequest *req, chat_admin_out *out)
{
    admin_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 2; /* this thread's and the item's */
    j->req = req;
    j->out = out;
    return j;
}

/* Admin thread: hands the request to the lws thread and waits (bounded). */
static void admin_handler(const Chat__AdminRequest *req, chat_admin_out *out, void *arg)
{
    gw_admin *a = arg;
    admin_job *j = admin_job_new(req, out);
    gw_item *it = j != NULL ? calloc(1, sizeof *it) : NULL;
    if (it == NULL) {
        free(j);
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    it->be = a->s->be;
    it->op = GW_OP_ADMIN;
    it->r.any = j;
    it->free_any = admin_job_drop;
    gw_backend_deliver(a->s->be, it);

    struct timespec until = chat_deadline_ms(ADMIN_WAIT_MS);
    pthread_mutex_lock(&j->mu);
    while (!j->done && pthread_cond_timedwait(&j->cv, &j->mu, &until) != ETIMEDOUT)
        ;
    if (!j->done) {
        j->abandoned = true;
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "gateway busy");
    }
    pthread_mutex_unlock(&j->mu);
    admin_job_release(j);
}

int gw_admin_open(gw_admin **out, gw_server *s)
{
    const gw_config *cfg = s->cfg;
    gw_admin *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -1;
    a->s = s;
    atomic_init(&a->ready, false);
    snprintf(a->metrics_url, sizeof a->metrics_url, "http://%s:%lld/metrics",
             cfg->bind[0] != '\0' ? cfg->bind : "127.0.0.1", cfg->port);
    chat_admin_cfg ac = {
        .kind = "gateway",
        .id = s->gateway_id,
        .listen = cfg->admin_listen,
        .token = cfg->admin_token,
        .metrics_url = a->metrics_url,
        .load_name = "connections",
        .restarts = (unsigned)cfg->restarts,
        .ready = admin_ready,
        .load = admin_load,
        .handler = admin_handler,
        .arg = a,
    };
    if (chat_admin_open(&a->srv, &ac) != 0) {
        free(a);
        return -1;
    }
    *out = a;
    return 0;
}

void gw_admin_close(gw_admin *a)
{
    if (a == NULL)
        return;
    chat_admin_close(a->srv);
    free(a);
}
