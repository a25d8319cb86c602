#include "pb.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "chat/log.h"
#include "chat/rpc.h"
#include "envelope.pb-c.h"

int chat_pb_to_nng(const ProtobufCMessage *msg, nng_msg **out)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    nng_msg *m;
    int rv = nng_msg_alloc(&m, len);
    if (rv != 0)
        return rv;
    protobuf_c_message_pack(msg, nng_msg_body(m));
    *out = m;
    return 0;
}

int chat_pb_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL)
        return NNG_ENOMEM;
    protobuf_c_message_pack(msg, buf);
    *out = buf;
    *len = n;
    return 0;
}

/* The budget of one chat_pb_unpack (protobuf-c calls back on the
 * unpacking thread only). */
typedef struct pb_budget {
    size_t left;
} pb_budget;

static void *pb_budget_alloc(void *data, size_t size)
{
    pb_budget *b = data;
    if (size + 16 > b->left)
        return NULL; /* protobuf-c frees what it built and returns NULL */
    b->left -= size + 16;
    return malloc(size);
}

static void pb_budget_free(void *data, void *p)
{
    free(p);
}

ProtobufCMessage *chat_pb_unpack(const ProtobufCMessageDescriptor *d, size_t len,
                                 const uint8_t *data)
{
    pb_budget b = {CHAT_PB_UNPACK_FACTOR * len + CHAT_PB_UNPACK_SLACK};
    ProtobufCAllocator a = {pb_budget_alloc, pb_budget_free, &b};
    /* malloc'd: protobuf_c_message_free_unpacked(m, NULL) frees it. */
    return protobuf_c_message_unpack(d, &a, len, data);
}

int chat_batch_to_nng(const ProtobufCBinaryData *items, size_t n, nng_msg **out)
{
    Chat__Batch b = CHAT__BATCH__INIT;
    b.n_items = n;
    b.items = (ProtobufCBinaryData *)items; /* only read by pack */
    return chat_pb_to_nng(&b.base, out);
}

struct close_job {
    nng_socket sock;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, abandoned;
};

static void close_job_free(struct close_job *j)
{
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void *close_thread(void *arg)
{
    struct close_job *j = arg;
    nng_close(j->sock);
    pthread_mutex_lock(&j->mu);
    j->done = true;
    bool abandoned = j->abandoned;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (abandoned)
        close_job_free(j);
    return NULL;
}

int chat_nng_close_bounded(nng_socket s, int ms)
{
    struct close_job *j = calloc(1, sizeof *j);
    pthread_t th;
    if (j == NULL)
        goto inline_close;
    j->sock = s;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    if (pthread_create(&th, NULL, close_thread, j) != 0) {
        close_job_free(j);
        goto inline_close;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&j->mu);
    while (!j->done)
        if (pthread_cond_timedwait(&j->cv, &j->mu, &deadline) != 0)
            break;
    bool done = j->done;
    if (!done)
        j->abandoned = true; /* the close thread frees j when nng returns */
    pthread_mutex_unlock(&j->mu);
    if (done) {
        pthread_join(th, NULL);
        close_job_free(j);
        return 0;
    }
    pthread_detach(th);
    chat_log(CHAT_LOG_WARN, "nng_close_stuck", "waited_ms=%d (nng 1.5.2); going on without it",
             ms);
    return -1;
inline_close:
    nng_close(s);
    return 0;
}
