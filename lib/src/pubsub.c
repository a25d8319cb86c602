/* Event publishing and subscription (see rpc.h). */
#include "chat/log.h"
#include "chat/rpc.h"
#include "chat/util.h"
#include "dialers.h"
#include "pb.h"
#include "tls.h"
#include "envelope.pb-c.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* nng's upper bound for socket buffers, in messages: a gateway that falls
 * behind this far loses live events; the batch numbers tell it so. */
#define PUBSUB_BUFFER 8192

struct chat_pub {
    nng_socket sock;
    nng_aio *beat; /* the idle heartbeat's timer */
    /* Numbers batches in the order nng takes them: held around the send so
     * that two threads' batches never go out with their numbers swapped. */
    pthread_mutex_t mu;
    uint64_t id, seq;
    int64_t last_ms; /* monotonic ms of the last batch or heartbeat */
    atomic_bool closing;
    unsigned drop_every; /* chat_pub_test_drop; under mu */
    /* Batches handed to nng, and batches it refused (pub/sub never waits
     * for a subscriber: a batch the network loses is counted by them). */
    atomic_uint_fast64_t sent, failed;
};

/* Sends a batch of the packed items (n == 0: a heartbeat, repeating the
 * last number). Under p->mu. */
static int pub_send_locked(chat_pub *p, const ProtobufCBinaryData *items, size_t n)
{
    Chat__Batch b = CHAT__BATCH__INIT;
    b.n_items = n;
    b.items = (ProtobufCBinaryData *)items; /* only read by pack */
    b.publisher = p->id;
    b.pub_seq = n > 0 ? p->seq + 1 : p->seq;
    nng_msg *m = NULL;
    int rv = chat_pb_to_nng(&b.base, &m);
    if (rv != 0)
        return rv;
    p->seq = b.pub_seq;
    p->last_ms = chat_mono_ms();
    if (n > 0 && p->drop_every > 0 && p->seq % p->drop_every == 0) {
        chat_log(CHAT_LOG_WARN, "pub_test_drop", "pub_seq=%llu", (unsigned long long)p->seq);
        nng_msg_free(m);
        return 0;
    }
    if ((rv = nng_sendmsg(p->sock, m, 0)) != 0) {
        nng_msg_free(m);
        if (n > 0)
            atomic_fetch_add(&p->failed, 1);
    } else if (n > 0) {
        atomic_fetch_add(&p->sent, 1);
    }
    return rv;
}

static void pub_beat_cb(void *arg)
{
    chat_pub *p = arg;
    if (nng_aio_result(p->beat) != 0 || atomic_load(&p->closing))
        return;
    pthread_mutex_lock(&p->mu);
    if (chat_mono_ms() - p->last_ms >= CHAT_PUB_HEARTBEAT_MS)
        pub_send_locked(p, NULL, 0);
    pthread_mutex_unlock(&p->mu);
    nng_sleep_aio(CHAT_PUB_HEARTBEAT_MS / 2, p->beat);
}

static void pub_free(chat_pub *p)
{
    nng_aio_free(p->beat);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int chat_pub_open(chat_pub **out, const char *url)
{
    chat_pub *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NNG_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    while (p->id == 0) /* 0 means "no publisher" on the wire */
        if (getrandom(&p->id, sizeof p->id, 0) != sizeof p->id)
            p->id = (uint64_t)chat_now_ms() ^ (uint64_t)(uintptr_t)p;
    int rv = nng_pub0_open(&p->sock);
    if (rv != 0) {
        pub_free(p);
        return rv;
    }
    nng_socket_set_int(p->sock, NNG_OPT_SENDBUF, PUBSUB_BUFFER);
    if ((rv = chat_tls_listen(p->sock, url)) != 0 ||
        (rv = nng_aio_alloc(&p->beat, pub_beat_cb, p)) != 0) {
        chat_log(CHAT_LOG_ERROR, "pub_listen_failed", "url=%s err=\"%s\"", url,
                 nng_strerror(rv));
        nng_close(p->sock);
        pub_free(p);
        return rv;
    }
    nng_sleep_aio(CHAT_PUB_HEARTBEAT_MS / 2, p->beat);
    *out = p;
    return 0;
}

/* Room the Batch envelope takes around its items (publisher, pub_seq,
 * and a tag and length per item), with margin. */
#define PUB_ENVELOPE_BYTES 64
#define PUB_ITEM_OVERHEAD 16

/* Sends items [0, n) as consecutive batches of at most CHAT_PUB_BATCH_BYTES
 * each (one item alone may be larger, up to what a subscriber takes). */
static int pub_send_split(chat_pub *p, const ProtobufCBinaryData *items, size_t n)
{
    int rv = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t from = 0; from < n;) {
        size_t to = from, bytes = PUB_ENVELOPE_BYTES;
        while (to < n && (to == from ||
                          bytes + items[to].len + PUB_ITEM_OVERHEAD <= CHAT_PUB_BATCH_BYTES))
            bytes += items[to++].len + PUB_ITEM_OVERHEAD;
        int r = pub_send_locked(p, items + from, to - from);
        rv = rv != 0 ? rv : r;
        from = to;
    }
    pthread_mutex_unlock(&p->mu);
    return rv;
}

int chat_pub_send_many(chat_pub *p, const ProtobufCMessage *const *msgs, size_t n)
{
    if (n == 0)
        return 0;
    ProtobufCBinaryData *items = calloc(n, sizeof *items);
    if (items == NULL)
        return NNG_ENOMEM;
    size_t kept = 0;
    int rv = 0, too_big = 0;
    for (size_t i = 0; i < n && rv == 0; i++) {
        ProtobufCBinaryData *it = &items[kept];
        if ((rv = chat_pb_pack(msgs[i], &it->data, &it->len)) != 0)
            break;
        if (it->len + PUB_ENVELOPE_BYTES + PUB_ITEM_OVERHEAD > CHAT_SUB_MAX_BYTES) {
            chat_log(CHAT_LOG_ERROR, "pub_event_too_large", "bytes=%zu max=%u", it->len,
                     CHAT_SUB_MAX_BYTES);
            free(it->data);
            atomic_fetch_add(&p->failed, 1);
            too_big = NNG_EMSGSIZE;
            continue;
        }
        kept++;
    }
    if (rv == 0 && kept > 0)
        rv = pub_send_split(p, items, kept);
    for (size_t i = 0; i < kept; i++)
        free(items[i].data);
    free(items);
    return rv != 0 ? rv : too_big;
}

int chat_pub_send(chat_pub *p, const ProtobufCMessage *msg)
{
    return chat_pub_send_many(p, &msg, 1);
}

void chat_pub_test_drop(chat_pub *p, unsigned every)
{
    pthread_mutex_lock(&p->mu);
    p->drop_every = every;
    pthread_mutex_unlock(&p->mu);
}

void chat_pub_counts(chat_pub *p, uint64_t *sent, uint64_t *failed)
{
    *sent = p != NULL ? atomic_load(&p->sent) : 0;
    *failed = p != NULL ? atomic_load(&p->failed) : 0;
}

void chat_pub_close(chat_pub *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->closing, true);
    nng_aio_stop(p->beat); /* waits for a heartbeat in progress */
    if (chat_nng_close_bounded(p->sock, 2000) != 0)
        return;
    pub_free(p);
}

/* The last batch number seen from one publisher. */
typedef struct sub_source {
    uint64_t id, seq;
    int64_t seen_ms;
} sub_source;

#define SUB_SOURCES 64
/* A subscriber's first moments: publishers found then are not missed ones. */
#define SUB_START_GRACE_MS 3000

struct chat_sub {
    nng_socket sock;
    chat_dialers *dialers;
    nng_aio *aio;
    chat_sub_cb cb;
    chat_sub_lost_cb lost;
    void *arg;
    atomic_int peers;
    atomic_uint_fast64_t lost_total;
    int64_t opened_ms; /* monotonic */
    /* Only the receive callback touches these (nng runs it serially). */
    sub_source src[SUB_SOURCES];
};

/* How many batches publisher b->publisher sent that we never saw before b.
 * A publisher first seen after our first SUB_START_GRACE_MS (a replica that
 * started or restarted: a new id) lost us everything it sent before our pipe
 * to it came up; one seen at our own start did not. */
static uint64_t sub_count_lost(chat_sub *s, const Chat__Batch *b)
{
    if (b->publisher == 0)
        return 0; /* an older publisher: no numbers */
    int64_t now = chat_mono_ms();
    sub_source *e = NULL, *oldest = &s->src[0];
    for (int i = 0; i < SUB_SOURCES && e == NULL; i++) {
        if (s->src[i].id == b->publisher)
            e = &s->src[i];
        else if (s->src[i].seen_ms < oldest->seen_ms)
            oldest = &s->src[i];
    }
    uint64_t lost = 0;
    if (e == NULL) {
        e = oldest; /* forgets the publisher heard from least recently */
        e->id = b->publisher;
        e->seq = 0;
        /* A publisher first heard once we have been listening a while
         * started (or restarted) meanwhile: what it sent before our pipe to
         * it came up was lost to us. At our own start, it was not. */
        if (now - s->opened_ms < SUB_START_GRACE_MS)
            e->seq = b->n_items > 0 ? b->pub_seq - 1 : b->pub_seq;
    }
    uint64_t expect = b->n_items > 0 ? e->seq + 1 : e->seq;
    if (b->pub_seq > expect)
        lost = b->pub_seq - expect;
    if (b->pub_seq > e->seq || lost == 0)
        e->seq = b->pub_seq;
    e->seen_ms = now;
    return lost;
}

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
        uint64_t lost = b != NULL ? sub_count_lost(s, b) : 0;
        if (lost > 0) {
            atomic_fetch_add(&s->lost_total, lost);
            chat_log(CHAT_LOG_WARN, "events_lost", "publisher=%016llx batches=%llu",
                     (unsigned long long)b->publisher, (unsigned long long)lost);
            if (s->lost != NULL)
                s->lost(lost, s->arg);
        }
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

int chat_sub_open(chat_sub **out, const char *urls, chat_sub_cb cb, chat_sub_lost_cb lost,
                  void *arg)
{
    chat_sub *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NNG_ENOMEM;
    s->cb = cb;
    s->lost = lost;
    s->opened_ms = chat_mono_ms();
    s->arg = arg;
    int rv = nng_sub0_open(&s->sock);
    if (rv != 0) {
        free(s);
        return rv;
    }
    nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    nng_socket_set_int(s->sock, NNG_OPT_RECVBUF, PUBSUB_BUFFER);
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, CHAT_SUB_MAX_BYTES);
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, 1000);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, sub_pipe_cb, s);
    nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, sub_pipe_cb, s);
    if ((rv = nng_aio_alloc(&s->aio, sub_recv_cb, s)) != 0 ||
        (rv = chat_dialers_open(&s->dialers, s->sock, urls)) != 0) {
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

int chat_sub_publishers(chat_sub *s)
{
    return chat_dialers_count(s->dialers);
}

uint64_t chat_sub_lost(chat_sub *s)
{
    return atomic_load(&s->lost_total);
}

void chat_sub_close(chat_sub *s)
{
    if (s == NULL)
        return;
    chat_dialers_close(s->dialers);
    s->dialers = NULL;
    if (chat_nng_close_bounded(s->sock, 2000) != 0)
        return; /* the receive callback may still run: keep s */
    nng_aio_stop(s->aio);
    nng_aio_free(s->aio);
    free(s);
}
