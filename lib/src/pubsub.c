/* Event publishing and subscription (see rpc.h). */
#include "chat/log.h"
#include "chat/rpc.h"
#include "chat/util.h"
#include "pb.h"
#include "envelope.pb-c.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* nng's upper bound for socket buffers, in messages: a gateway that falls
 * behind this far misses live events (they stay stored for resume). */
#define PUBSUB_BUFFER 8192

struct chat_pub {
    nng_socket sock;
};

int chat_pub_open(chat_pub **out, const char *url)
{
    chat_pub *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NNG_ENOMEM;
    int rv = nng_pub0_open(&p->sock);
    if (rv != 0) {
        free(p);
        return rv;
    }
    nng_socket_set_int(p->sock, NNG_OPT_SENDBUF, PUBSUB_BUFFER);
    if ((rv = nng_listen(p->sock, url, NULL, 0)) != 0) {
        chat_log(CHAT_LOG_ERROR, "pub_listen_failed", "url=%s err=\"%s\"", url,
                 nng_strerror(rv));
        nng_close(p->sock);
        free(p);
        return rv;
    }
    *out = p;
    return 0;
}

int chat_pub_send_many(chat_pub *p, const ProtobufCMessage *const *msgs, size_t n)
{
    if (n == 0)
        return 0;
    ProtobufCBinaryData items[n];
    size_t packed = 0;
    int rv = 0;
    nng_msg *m = NULL;
    for (; packed < n && rv == 0; packed++)
        if ((rv = chat_pb_pack(msgs[packed], &items[packed].data, &items[packed].len)) != 0)
            break;
    if (rv == 0 && (rv = chat_batch_to_nng(items, n, &m)) == 0 &&
        (rv = nng_sendmsg(p->sock, m, 0)) != 0)
        nng_msg_free(m);
    for (size_t i = 0; i < packed; i++)
        free(items[i].data);
    return rv;
}

int chat_pub_send(chat_pub *p, const ProtobufCMessage *msg)
{
    return chat_pub_send_many(p, &msg, 1);
}

void chat_pub_close(chat_pub *p)
{
    if (p == NULL)
        return;
    if (chat_nng_close_bounded(p->sock, 2000) != 0)
        return;
    free(p);
}

struct chat_sub {
    nng_socket sock;
    nng_aio *aio;
    chat_sub_cb cb;
    void *arg;
    atomic_int peers;
};

static void sub_recv_cb(void *arg)
{
    chat_sub *s = arg;
    int rv = nng_aio_result(s->aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    if (rv == 0) {
        nng_msg *m = nng_aio_get_msg(s->aio);
        Chat__Batch *b = chat__batch__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
        nng_msg_free(m);
        if (b == NULL)
            chat_log(CHAT_LOG_WARN, "sub_bad_batch", "dropped an event that is not a batch");
        for (size_t i = 0; b != NULL && i < b->n_items; i++)
            s->cb(b->items[i].data, b->items[i].len, s->arg);
        chat__batch__free_unpacked(b, NULL);
    }
    nng_recv_aio(s->sock, s->aio);
}

static void sub_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    chat_sub *s = arg;
    if (ev == NNG_PIPE_EV_ADD_POST)
        atomic_fetch_add(&s->peers, 1);
    else if (ev == NNG_PIPE_EV_REM_POST)
        atomic_fetch_sub(&s->peers, 1);
}

static int sub_dial(const char *url, void *arg)
{
    chat_sub *s = arg;
    return nng_dial(s->sock, url, NULL, NNG_FLAG_NONBLOCK);
}

int chat_sub_open(chat_sub **out, const char *urls, chat_sub_cb cb, void *arg)
{
    chat_sub *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NNG_ENOMEM;
    s->cb = cb;
    s->arg = arg;
    int rv = nng_sub0_open(&s->sock);
    if (rv != 0) {
        free(s);
        return rv;
    }
    nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    nng_socket_set_int(s->sock, NNG_OPT_RECVBUF, PUBSUB_BUFFER);
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, 16 << 20);
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, 1000);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, sub_pipe_cb, s);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, sub_pipe_cb, s);
    if ((rv = nng_aio_alloc(&s->aio, sub_recv_cb, s)) != 0 ||
        (rv = chat_split_list(urls, sub_dial, s)) != 0) {
        nng_close(s->sock);
        nng_aio_free(s->aio);
        free(s);
        return rv;
    }
    nng_recv_aio(s->sock, s->aio);
    *out = s;
    return 0;
}

int chat_sub_peers(chat_sub *s)
{
    return atomic_load(&s->peers);
}

void chat_sub_close(chat_sub *s)
{
    if (s == NULL)
        return;
    if (chat_nng_close_bounded(s->sock, 2000) != 0)
        return; /* the receive callback may still run: keep s */
    nng_aio_stop(s->aio);
    nng_aio_free(s->aio);
    free(s);
}
