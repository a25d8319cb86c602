/* REQ client: one context per call, fast failure without peers (see rpc.h). */
#include "chat/rpc.h"
#include "pb.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/util.h"

struct chat_rpc_client {
    nng_socket sock;
    int timeout_ms;
    atomic_int peers;
};

struct rpc_call {
    chat_rpc_client *client;
    nng_aio *aio;
    nng_ctx ctx;
    chat_rpc_done cb;
    void *arg;
    bool sent;
};

static void client_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    chat_rpc_client *c = arg;
    if (ev == NNG_PIPE_EV_ADD_POST)
        atomic_fetch_add(&c->peers, 1);
    else if (ev == NNG_PIPE_EV_REM_POST)
        atomic_fetch_sub(&c->peers, 1);
}

static int client_dial(const char *url, void *arg)
{
    chat_rpc_client *c = arg;
    /* Non-blocking: a server that is not up yet is retried in the background. */
    return nng_dial(c->sock, url, NULL, NNG_FLAG_NONBLOCK);
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
    /* A request is resent only when its server goes away, never because it
     * is slow: a resend of a slow request would only add load. */
    nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, 3600 * 1000);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 1000);
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, 16 << 20);
    nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_POST, client_pipe_cb, c);
    nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, client_pipe_cb, c);
    if ((rv = chat_split_list(urls, client_dial, c)) != 0) {
        nng_close(c->sock);
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

static void call_finish(struct rpc_call *call, int err, nng_msg *reply)
{
    if (reply != NULL)
        call->cb(0, nng_msg_body(reply), nng_msg_len(reply), call->arg);
    else
        call->cb(err, NULL, 0, call->arg);
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

void chat_rpc_call_async(chat_rpc_client *c, const ProtobufCMessage *req, chat_rpc_done cb,
                         void *arg)
{
    if (atomic_load(&c->peers) == 0) {
        cb(NNG_ECONNREFUSED, NULL, 0, arg);
        return;
    }
    struct rpc_call *call = calloc(1, sizeof *call);
    nng_msg *m = NULL;
    int rv = NNG_ENOMEM;
    if (call == NULL || (rv = chat_pb_to_nng(req, &m)) != 0)
        goto fail;
    call->client = c;
    call->cb = cb;
    call->arg = arg;
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
    cb(rv, NULL, 0, arg);
}

int chat_rpc_call(chat_rpc_client *c, const ProtobufCMessage *req, uint8_t **reply,
                  size_t *reply_len)
{
    if (atomic_load(&c->peers) == 0)
        return NNG_ECONNREFUSED;
    nng_ctx ctx;
    nng_aio *aio;
    nng_msg *m;
    int rv;
    if ((rv = chat_pb_to_nng(req, &m)) != 0)
        return rv;
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
    size_t len = nng_msg_len(m);
    uint8_t *buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        rv = NNG_ENOMEM;
    } else {
        memcpy(buf, nng_msg_body(m), len);
        *reply = buf;
        *reply_len = len;
    }
    nng_msg_free(m);
out:
    nng_ctx_close(ctx);
    nng_aio_free(aio);
    return rv;
}

int chat_rpc_call_decode(chat_rpc_client *c, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *reply_desc,
                         ProtobufCMessage **reply)
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

void chat_rpc_client_close(chat_rpc_client *c)
{
    if (c == NULL)
        return;
    /* Stuck: the pipe callbacks may still touch c, so it stays allocated. */
    if (chat_nng_close_bounded(c->sock, 2000) != 0)
        return;
    free(c);
}
