/* REP server: N contexts, each cycling RECV -> handler per batch item ->
 * SEND (see rpc.h). Modelled on nng's demo/async server. */
#include "chat/rpc.h"
#include "chat/log.h"
#include "pb.h"
#include "tls.h"
#include "envelope.pb-c.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum ctx_state { CTX_IDLE, CTX_RECV, CTX_WORK, CTX_SEND };

/* One nng context: receives a batch, runs the handler on each item, sends
 * the reply batch once every item is answered. */
struct rpc_ctx {
    chat_rpc_server *srv;
    nng_aio *aio;
    nng_ctx ctx;
    _Atomic int state;
    /* CTX_WORK: the batch being answered */
    Chat__Batch *req;
    chat_rpc_job *jobs;           /* one per item */
    ProtobufCBinaryData *replies; /* one per item, malloc'd bytes */
    atomic_size_t left;           /* items not answered yet */
    atomic_bool failed;           /* an answer could not be kept */
};

struct chat_rpc_job {
    struct rpc_ctx *rc;
    size_t index;
};

struct chat_rpc_server {
    nng_socket sock;
    chat_rpc_handler handler;
    void *arg;
    int nctx;
    struct rpc_ctx *ctxs;
    atomic_bool closing;
};

static void ctx_recv(struct rpc_ctx *rc)
{
    if (atomic_load(&rc->srv->closing)) {
        atomic_store(&rc->state, CTX_IDLE);
        return;
    }
    atomic_store(&rc->state, CTX_RECV);
    nng_ctx_recv(rc->ctx, rc->aio);
}

static void ctx_send(struct rpc_ctx *rc, nng_msg *reply)
{
    if (reply == NULL) {
        /* Out of memory: no reply; the client times out. Keep serving. */
        ctx_recv(rc);
        return;
    }
    atomic_store(&rc->state, CTX_SEND);
    nng_aio_set_msg(rc->aio, reply);
    nng_ctx_send(rc->ctx, rc->aio);
}

/* The last item was answered: free the batch, send the replies. */
static void ctx_complete(struct rpc_ctx *rc)
{
    size_t n = rc->req->n_items;
    nng_msg *m = NULL;
    if (atomic_load(&rc->failed) || chat_batch_to_nng(rc->replies, n, &m) != 0)
        m = NULL;
    for (size_t i = 0; i < n; i++)
        free(rc->replies[i].data);
    free(rc->replies);
    free(rc->jobs);
    chat__batch__free_unpacked(rc->req, NULL);
    rc->req = NULL;
    rc->replies = NULL;
    rc->jobs = NULL;
    ctx_send(rc, m);
}

/* Runs the handler on every item of a received batch. */
static void ctx_dispatch(struct rpc_ctx *rc, nng_msg *msg)
{
    Chat__Batch *req = (Chat__Batch *)chat_pb_unpack(&chat__batch__descriptor, nng_msg_len(msg),
                                                     nng_msg_body(msg));
    nng_msg_free(msg);
    size_t n = req != NULL ? req->n_items : 0;
    rc->jobs = n > 0 ? calloc(n, sizeof *rc->jobs) : NULL;
    rc->replies = n > 0 ? calloc(n, sizeof *rc->replies) : NULL;
    if (n == 0 || rc->jobs == NULL || rc->replies == NULL) {
        /* Not a batch (or no memory): an empty reply, which the client
         * reports as a protocol error. */
        free(rc->jobs);
        free(rc->replies);
        rc->jobs = NULL;
        rc->replies = NULL;
        chat__batch__free_unpacked(req, NULL);
        nng_msg *m = NULL;
        if (chat_batch_to_nng(NULL, 0, &m) != 0)
            m = NULL;
        ctx_send(rc, m);
        return;
    }
    rc->req = req;
    atomic_store(&rc->left, n);
    atomic_store(&rc->failed, false);
    chat_rpc_job *jobs = rc->jobs;
    chat_rpc_handler handler = rc->srv->handler;
    void *arg = rc->srv->arg;
    /* Once the last handler has been called the batch may already be
     * answered and rc reused: only locals are read in the loop's test. */
    for (size_t i = 0; i < n; i++) {
        jobs[i].rc = rc;
        jobs[i].index = i;
        handler(&jobs[i], req->items[i].data, req->items[i].len, arg);
    }
}

static void ctx_cb(void *arg)
{
    struct rpc_ctx *rc = arg;
    int rv = nng_aio_result(rc->aio);

    if (atomic_load(&rc->state) == CTX_SEND) {
        if (rv != 0)
            nng_msg_free(nng_aio_get_msg(rc->aio));
        ctx_recv(rc);
        return;
    }
    /* CTX_RECV */
    if (rv != 0) {
        if (rv == NNG_ECLOSED) {
            atomic_store(&rc->state, CTX_IDLE);
            return;
        }
        ctx_recv(rc);
        return;
    }
    atomic_store(&rc->state, CTX_WORK);
    ctx_dispatch(rc, nng_aio_get_msg(rc->aio));
}

/* Keeps buf (malloc'd, or NULL when it could not be made) as the job's answer. */
static void job_answer(chat_rpc_job *job, uint8_t *buf, size_t len)
{
    struct rpc_ctx *rc = job->rc;
    if (buf == NULL)
        atomic_store(&rc->failed, true);
    rc->replies[job->index].data = buf;
    rc->replies[job->index].len = buf != NULL ? len : 0;
    if (atomic_fetch_sub(&rc->left, 1) == 1)
        ctx_complete(rc);
}

void chat_rpc_job_reply(chat_rpc_job *job, const uint8_t *data, size_t len)
{
    uint8_t *buf = malloc(len > 0 ? len : 1);
    if (buf != NULL && len > 0)
        memcpy(buf, data, len);
    job_answer(job, buf, len);
}

void chat_rpc_job_reply_pb(chat_rpc_job *job, const ProtobufCMessage *msg)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (chat_pb_pack(msg, &buf, &len) != 0)
        buf = NULL;
    job_answer(job, buf, len);
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
    srv->ctxs = calloc((size_t)contexts, sizeof *srv->ctxs);
    if (srv->ctxs == NULL) {
        nng_close(srv->sock);
        free(srv);
        return NNG_ENOMEM;
    }
    for (int i = 0; i < contexts; i++) {
        struct rpc_ctx *rc = &srv->ctxs[i];
        rc->srv = srv;
        if ((rv = nng_aio_alloc(&rc->aio, ctx_cb, rc)) != 0 ||
            (rv = nng_ctx_open(&rc->ctx, srv->sock)) != 0) {
            srv->nctx = i + (rc->aio != NULL);
            chat_rpc_server_close(srv);
            return rv;
        }
        srv->nctx = i + 1;
    }
    nng_socket_set_size(srv->sock, NNG_OPT_RECVMAXSZ, 1 << 20);
    if ((rv = chat_tls_listen(srv->sock, url)) != 0) {
        chat_log(CHAT_LOG_ERROR, "rpc_listen_failed", "url=%s err=\"%s\"", url,
                 nng_strerror(rv));
        chat_rpc_server_close(srv);
        return rv;
    }
    for (int i = 0; i < srv->nctx; i++)
        ctx_recv(&srv->ctxs[i]);
    *out = srv;
    return 0;
}

static bool server_busy(chat_rpc_server *srv)
{
    for (int i = 0; i < srv->nctx; i++) {
        int st = atomic_load(&srv->ctxs[i].state);
        if (st == CTX_WORK || st == CTX_SEND)
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
    for (int i = 0; i < srv->nctx; i++) {
        nng_aio_stop(srv->ctxs[i].aio);
        nng_aio_free(srv->ctxs[i].aio);
    }
    free(srv->ctxs);
    free(srv);
}
