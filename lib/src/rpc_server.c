/* REP server: N contexts, each cycling RECV -> handler -> SEND (see rpc.h).
 * Modelled on nng's demo/async server. */
#include "chat/rpc.h"
#include "chat/log.h"
#include "pb.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum job_state { JOB_IDLE, JOB_RECV, JOB_WORK, JOB_SEND };

struct chat_rpc_job {
    chat_rpc_server *srv;
    nng_aio *aio;
    nng_ctx ctx;
    nng_msg *req;             /* the request being worked on */
    _Atomic int state;
};

struct chat_rpc_server {
    nng_socket sock;
    chat_rpc_handler handler;
    void *arg;
    int njobs;
    chat_rpc_job *jobs;
    atomic_bool closing;
};

static void job_recv(chat_rpc_job *job)
{
    if (atomic_load(&job->srv->closing)) {
        atomic_store(&job->state, JOB_IDLE);
        return;
    }
    atomic_store(&job->state, JOB_RECV);
    nng_ctx_recv(job->ctx, job->aio);
}

static void job_cb(void *arg)
{
    chat_rpc_job *job = arg;
    int rv = nng_aio_result(job->aio);

    if (atomic_load(&job->state) == JOB_SEND) {
        if (rv != 0)
            nng_msg_free(nng_aio_get_msg(job->aio));
        job_recv(job);
        return;
    }
    /* JOB_RECV */
    if (rv != 0) {
        if (rv == NNG_ECLOSED) {
            atomic_store(&job->state, JOB_IDLE);
            return;
        }
        job_recv(job);
        return;
    }
    job->req = nng_aio_get_msg(job->aio);
    atomic_store(&job->state, JOB_WORK);
    job->srv->handler(job, nng_msg_body(job->req), nng_msg_len(job->req), job->srv->arg);
}

static void job_send(chat_rpc_job *job, nng_msg *reply)
{
    nng_msg_free(job->req);
    job->req = NULL;
    if (reply == NULL) {
        /* Out of memory: no reply; the client times out. Keep serving. */
        job_recv(job);
        return;
    }
    atomic_store(&job->state, JOB_SEND);
    nng_aio_set_msg(job->aio, reply);
    nng_ctx_send(job->ctx, job->aio);
}

void chat_rpc_job_reply(chat_rpc_job *job, const uint8_t *data, size_t len)
{
    nng_msg *m = NULL;
    if (nng_msg_alloc(&m, len) == 0 && len > 0)
        memcpy(nng_msg_body(m), data, len);
    job_send(job, m);
}

void chat_rpc_job_reply_pb(chat_rpc_job *job, const ProtobufCMessage *msg)
{
    nng_msg *m = NULL;
    if (chat_pb_to_nng(msg, &m) != 0)
        m = NULL;
    job_send(job, m);
}

int chat_rpc_server_open(chat_rpc_server **out, const char *url, int contexts,
                         chat_rpc_handler handler, void *arg)
{
    chat_rpc_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return NNG_ENOMEM;
    srv->handler = handler;
    srv->arg = arg;
    int rv = nng_rep0_open(&srv->sock);
    if (rv != 0) {
        free(srv);
        return rv;
    }
    srv->jobs = calloc((size_t)contexts, sizeof *srv->jobs);
    if (srv->jobs == NULL) {
        nng_close(srv->sock);
        free(srv);
        return NNG_ENOMEM;
    }
    for (int i = 0; i < contexts; i++) {
        chat_rpc_job *job = &srv->jobs[i];
        job->srv = srv;
        if ((rv = nng_aio_alloc(&job->aio, job_cb, job)) != 0 ||
            (rv = nng_ctx_open(&job->ctx, srv->sock)) != 0) {
            srv->njobs = i + (job->aio != NULL);
            chat_rpc_server_close(srv);
            return rv;
        }
        srv->njobs = i + 1;
    }
    nng_socket_set_size(srv->sock, NNG_OPT_RECVMAXSZ, 1 << 20);
    if ((rv = nng_listen(srv->sock, url, NULL, 0)) != 0) {
        chat_log(CHAT_LOG_ERROR, "rpc_listen_failed", "url=%s err=\"%s\"", url,
                 nng_strerror(rv));
        chat_rpc_server_close(srv);
        return rv;
    }
    for (int i = 0; i < srv->njobs; i++)
        job_recv(&srv->jobs[i]);
    *out = srv;
    return 0;
}

static bool server_busy(chat_rpc_server *srv)
{
    for (int i = 0; i < srv->njobs; i++) {
        int st = atomic_load(&srv->jobs[i].state);
        if (st == JOB_WORK || st == JOB_SEND)
            return true;
    }
    return false;
}

void chat_rpc_server_close(chat_rpc_server *srv)
{
    if (srv == NULL)
        return;
    atomic_store(&srv->closing, true);
    /* Jobs handed to workers are still replied to (and their sends fail
     * once the socket is closed); wait a bounded time for them so nobody
     * touches a freed job. */
    for (int i = 0; i < 500 && server_busy(srv); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    bool leak = server_busy(srv);
    if (chat_nng_close_bounded(srv->sock, 2000) != 0)
        return; /* nng may still call into the jobs: leave them be */
    if (leak) {
        chat_log(CHAT_LOG_WARN, "rpc_close_busy", "jobs still at work; not freed");
        return;
    }
    for (int i = 0; i < srv->njobs; i++) {
        nng_aio_stop(srv->jobs[i].aio);
        nng_aio_free(srv->jobs[i].aio);
    }
    free(srv->jobs);
    free(srv);
}
