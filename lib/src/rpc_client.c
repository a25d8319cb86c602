/* REQ client: one context per batch of calls, fast failure without peers
 * (see rpc.h). */
#include "chat/rpc.h"
#include "chat/log.h"
#include "dialers.h"
#include "pb.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/util.h"
#include "envelope.pb-c.h"

/* Calls queued by chat_rpc_call_queued() are sent together by
 * chat_rpc_client_flush(), or at once when this many are waiting. */
#define RPC_BATCH_MAX 128

/* One call inside a batch: its packed request and who gets the reply. */
struct rpc_item {
    chat_rpc_done cb;
    void *arg;
    ProtobufCBinaryData req;
};

struct chat_rpc_client {
    nng_socket sock;
    chat_dialers *dialers;
    int timeout_ms;
    atomic_int peers;
    pthread_mutex_t mu;
    struct rpc_item queue[RPC_BATCH_MAX]; /* under mu */
    size_t queued;                        /* under mu */
};

/* One nng request (a context and an aio) carrying n calls. */
struct rpc_call {
    chat_rpc_client *client;
    nng_aio *aio;
    nng_ctx ctx;
    bool sent;
    size_t n;
    struct rpc_item items[];
};

static void client_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    chat_rpc_client *c = arg;
    if (ev == NNG_PIPE_EV_ADD_POST)
        atomic_fetch_add(&c->peers, 1);
    else if (ev == NNG_PIPE_EV_REM_POST)
        atomic_fetch_sub(&c->peers, 1);
}

int chat_rpc_client_open(chat_rpc_client **out, const char *urls, int timeout_ms)
{
    chat_rpc_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NNG_ENOMEM;
    c->timeout_ms = timeout_ms;
    int rv = nng_req0_open(&c->sock);
    if (rv != 0) {
        free(c);
        return rv;
    }
    pthread_mutex_init(&c->mu, NULL);
    /* A request is resent only when its server goes away, never because it
     * is slow: a resend of a slow request would only add load. */
    nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, 3600 * 1000);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 1000);
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, 64 << 20);
    nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_POST, client_pipe_cb, c);
    nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, client_pipe_cb, c);
    if ((rv = chat_dialers_open(&c->dialers, c->sock, urls)) != 0) {
        nng_close(c->sock);
        pthread_mutex_destroy(&c->mu);
        free(c);
        return rv;
    }
    *out = c;
    return 0;
}

int chat_rpc_client_peers(chat_rpc_client *c)
{
    return atomic_load(&c->peers);
}

/* Answers every call of items[0..n) with err, or with its reply item. */
static void items_finish(struct rpc_item *items, size_t n, int err, const Chat__Batch *rep)
{
    if (err == 0 && (rep == NULL || rep->n_items != n))
        err = NNG_EPROTO;
    for (size_t i = 0; i < n; i++) {
        if (err == 0)
            items[i].cb(0, rep->items[i].data, rep->items[i].len, items[i].arg);
        else
            items[i].cb(err, NULL, 0, items[i].arg);
        free(items[i].req.data);
    }
}

static void call_finish(struct rpc_call *call, int err, nng_msg *reply)
{
    Chat__Batch *rep = NULL;
    if (reply != NULL)
        rep = chat__batch__unpack(NULL, nng_msg_len(reply), nng_msg_body(reply));
    items_finish(call->items, call->n, err, rep);
    chat__batch__free_unpacked(rep, NULL);
    nng_msg_free(reply);
    nng_ctx_close(call->ctx);
    /* We are inside the aio's own callback: it must be freed elsewhere. */
    nng_aio_reap(call->aio);
    free(call);
}

static void call_cb(void *arg)
{
    struct rpc_call *call = arg;
    int rv = nng_aio_result(call->aio);
    if (!call->sent) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(call->aio));
            call_finish(call, rv, NULL);
            return;
        }
        call->sent = true;
        nng_ctx_recv(call->ctx, call->aio);
        return;
    }
    if (rv != 0) {
        call_finish(call, rv, NULL);
        return;
    }
    call_finish(call, 0, nng_aio_get_msg(call->aio));
}

/* Sends items[0..n) (taken: copied into the call) as one request. */
static void batch_send(chat_rpc_client *c, struct rpc_item *items, size_t n)
{
    if (atomic_load(&c->peers) == 0) {
        items_finish(items, n, NNG_ECONNREFUSED, NULL);
        return;
    }
    struct rpc_call *call = calloc(1, sizeof *call + n * sizeof call->items[0]);
    ProtobufCBinaryData reqs[n];
    nng_msg *m = NULL;
    int rv = NNG_ENOMEM;
    for (size_t i = 0; i < n; i++)
        reqs[i] = items[i].req;
    if (call == NULL || (rv = chat_batch_to_nng(reqs, n, &m)) != 0)
        goto fail;
    call->client = c;
    call->n = n;
    memcpy(call->items, items, n * sizeof items[0]);
    if ((rv = nng_aio_alloc(&call->aio, call_cb, call)) != 0)
        goto fail;
    if ((rv = nng_ctx_open(&call->ctx, c->sock)) != 0) {
        nng_aio_free(call->aio);
        goto fail;
    }
    nng_ctx_set_ms(call->ctx, NNG_OPT_REQ_RESENDTIME, 3600 * 1000);
    nng_aio_set_timeout(call->aio, c->timeout_ms);
    nng_aio_set_msg(call->aio, m);
    nng_ctx_send(call->ctx, call->aio);
    return;
fail:
    nng_msg_free(m);
    free(call);
    items_finish(items, n, rv, NULL);
}

/* Packs req into an item; on failure answers cb at once and returns false. */
static bool item_make(struct rpc_item *it, const ProtobufCMessage *req, chat_rpc_done cb,
                      void *arg)
{
    it->cb = cb;
    it->arg = arg;
    if (chat_pb_pack(req, &it->req.data, &it->req.len) != 0) {
        cb(NNG_ENOMEM, NULL, 0, arg);
        return false;
    }
    return true;
}

void chat_rpc_call_async(chat_rpc_client *c, const ProtobufCMessage *req, chat_rpc_done cb,
                         void *arg)
{
    if (atomic_load(&c->peers) == 0) {
        cb(NNG_ECONNREFUSED, NULL, 0, arg);
        return;
    }
    struct rpc_item it;
    if (item_make(&it, req, cb, arg))
        batch_send(c, &it, 1);
}

void chat_rpc_call_queued(chat_rpc_client *c, const ProtobufCMessage *req, chat_rpc_done cb,
                          void *arg)
{
    if (atomic_load(&c->peers) == 0) {
        cb(NNG_ECONNREFUSED, NULL, 0, arg);
        return;
    }
    struct rpc_item it;
    if (!item_make(&it, req, cb, arg))
        return;
    struct rpc_item full[RPC_BATCH_MAX];
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
    c->queue[c->queued++] = it;
    if (c->queued == RPC_BATCH_MAX) {
        n = c->queued;
        memcpy(full, c->queue, n * sizeof full[0]);
        c->queued = 0;
    }
    pthread_mutex_unlock(&c->mu);
    if (n > 0)
        batch_send(c, full, n);
}

void chat_rpc_client_flush(chat_rpc_client *c)
{
    struct rpc_item items[RPC_BATCH_MAX];
    pthread_mutex_lock(&c->mu);
    size_t n = c->queued;
    memcpy(items, c->queue, n * sizeof items[0]);
    c->queued = 0;
    pthread_mutex_unlock(&c->mu);
    if (n > 0)
        batch_send(c, items, n);
}

/* Blocking round trip of one packed request; the reply item is copied. */
static int call_sync(chat_rpc_client *c, nng_msg *m, uint8_t **reply, size_t *reply_len)
{
    nng_ctx ctx;
    nng_aio *aio;
    int rv;
    if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
        nng_msg_free(m);
        return rv;
    }
    if ((rv = nng_ctx_open(&ctx, c->sock)) != 0) {
        nng_msg_free(m);
        nng_aio_free(aio);
        return rv;
    }
    nng_ctx_set_ms(ctx, NNG_OPT_REQ_RESENDTIME, 3600 * 1000);
    nng_aio_set_timeout(aio, c->timeout_ms);
    nng_aio_set_msg(aio, m);
    nng_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    if ((rv = nng_aio_result(aio)) != 0) {
        nng_msg_free(nng_aio_get_msg(aio));
        goto out;
    }
    nng_ctx_recv(ctx, aio);
    nng_aio_wait(aio);
    if ((rv = nng_aio_result(aio)) != 0)
        goto out;
    m = nng_aio_get_msg(aio);
    Chat__Batch *rep = chat__batch__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    if (rep == NULL || rep->n_items != 1) {
        rv = NNG_EPROTO;
    } else {
        size_t len = rep->items[0].len;
        uint8_t *buf = malloc(len > 0 ? len : 1);
        if (buf == NULL) {
            rv = NNG_ENOMEM;
        } else {
            if (len > 0)
                memcpy(buf, rep->items[0].data, len);
            *reply = buf;
            *reply_len = len;
        }
    }
    chat__batch__free_unpacked(rep, NULL);
    nng_msg_free(m);
out:
    nng_ctx_close(ctx);
    nng_aio_free(aio);
    return rv;
}

int chat_rpc_call(chat_rpc_client *c, const ProtobufCMessage *req, uint8_t **reply,
                  size_t *reply_len)
{
    if (atomic_load(&c->peers) == 0)
        return NNG_ECONNREFUSED;
    ProtobufCBinaryData item;
    nng_msg *m;
    int rv = chat_pb_pack(req, &item.data, &item.len);
    if (rv != 0)
        return rv;
    rv = chat_batch_to_nng(&item, 1, &m);
    free(item.data);
    if (rv != 0)
        return rv;
    return call_sync(c, m, reply, reply_len);
}

int chat_rpc_call_decode(chat_rpc_client *c, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv = chat_rpc_call(c, req, &buf, &len);
    if (rv != 0)
        return rv;
    ProtobufCMessage *m = protobuf_c_message_unpack(reply_desc, NULL, len, buf);
    free(buf);
    if (m == NULL)
        return NNG_EPROTO;
    *reply = m;
    return 0;
}

bool chat_rpc_client_wait_peers(chat_rpc_client *c, int max_ms)
{
    for (int waited = 0; chat_rpc_client_peers(c) == 0; waited += 20) {
        if (waited >= max_ms || chat_stopping())
            return false;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return true;
}

bool chat_rpc_client_await(chat_rpc_client *c, const char *name, int max_ms)
{
    if (chat_rpc_client_wait_peers(c, max_ms))
        return true;
    chat_log(CHAT_LOG_WARN, "peer_missing", "peer=%s waited_ms=%d", name, max_ms);
    return false;
}

void chat_rpc_client_close(chat_rpc_client *c)
{
    if (c == NULL)
        return;
    chat_rpc_client_flush(c); /* nobody should queue now; answer what did */
    chat_dialers_close(c->dialers);
    c->dialers = NULL;
    /* Stuck: the pipe callbacks may still touch c, so it stays allocated. */
    if (chat_nng_close_bounded(c->sock, 2000) != 0)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c);
}
