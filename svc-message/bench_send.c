/* msg-bench: drives a running svc-message with sends from many threads and
 * prints throughput, latency and the reply codes. A tool, not a test.
 *
 *   msg-bench URL [threads=64] [seconds=5] [conversations=100]
 *
 * Each thread loops blocking sends (so `threads` requests are in flight)
 * into random conversations of fresh users. Use a service with
 * CHAT_RATE_PER_MIN=0 (or a high rate) to measure storage, not the limit. */
#include "message.h"

#include "chat/rpc.h"
#include "chat/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAT 4000000

static chat_rpc_client *cli;
static int nconv;
static char (*convs)[37];
static char (*users)[2][37];
static int64_t deadline;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long codes[16];
static int *lat_us;
static long nlat;

static void *sender(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u;
    char prefix[37];
    chat_uuid_new(prefix);
    for (long i = 0; chat_mono_ms() < deadline; i++) {
        int c = (int)(rand_r(&seed) % (unsigned)nconv);
        char cmid[64];
        snprintf(cmid, sizeof cmid, "%.8s-%ld", prefix, i);
        Chat__SendReq s = CHAT__SEND_REQ__INIT;
        s.conversation_id = convs[c];
        s.sender = users[c][i & 1];
        s.client_msg_id = cmid;
        s.text = "hello from the benchmark, a message of a typical length";
        Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
        req.body_case = CHAT__MESSAGE_REQUEST__BODY_SEND;
        req.send = &s;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        uint8_t *buf = NULL;
        size_t len = 0;
        int rv = chat_rpc_call(cli, &req.base, &buf, &len);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        Chat__MessageReply *r = rv == 0 ? chat__message_reply__unpack(NULL, len, buf) : NULL;
        free(buf);
        int code = r ? (int)r->code : 15; /* 15: transport failure */
        if (r)
            chat__message_reply__free_unpacked(r, NULL);
        int us = (int)((t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000);
        pthread_mutex_lock(&mu);
        codes[code < 0 || code > 15 ? 15 : code]++;
        if (nlat < MAX_LAT)
            lat_us[nlat++] = us;
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

static int create_conversations(void)
{
    for (int c = 0; c < nconv; c++) {
        chat_uuid_new(users[c][0]);
        chat_uuid_new(users[c][1]);
        char *ids[] = {users[c][0], users[c][1]};
        Chat__CreateConversationReq cr = CHAT__CREATE_CONVERSATION_REQ__INIT;
        cr.kind = CHAT__CONVERSATION_KIND__RANDOM;
        cr.n_member_ids = 2;
        cr.member_ids = ids;
        Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
        req.body_case = CHAT__MESSAGE_REQUEST__BODY_CREATE_CONVERSATION;
        req.create_conversation = &cr;
        uint8_t *buf = NULL;
        size_t len = 0;
        if (chat_rpc_call(cli, &req.base, &buf, &len) != 0)
            return -1;
        Chat__MessageReply *r = chat__message_reply__unpack(NULL, len, buf);
        free(buf);
        if (r == NULL || r->code != CHAT__CODE__OK) {
            fprintf(stderr, "create failed: code %d\n", r ? (int)r->code : -1);
            return -1;
        }
        snprintf(convs[c], 37, "%s", r->conversation_id);
        chat__message_reply__free_unpacked(r, NULL);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: %s URL [threads=64] [seconds=5] [conversations=100]\n",
                argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 64;
    int seconds = argc > 3 ? atoi(argv[3]) : 5;
    nconv = argc > 4 ? atoi(argv[4]) : 100;
    if (threads < 1 || seconds < 1 || nconv < 1)
        return 2;
    convs = calloc((size_t)nconv, sizeof *convs);
    users = calloc((size_t)nconv, sizeof *users);
    lat_us = malloc(MAX_LAT * sizeof *lat_us);
    if (convs == NULL || users == NULL || lat_us == NULL)
        return 1;
    if (chat_rpc_client_open(&cli, argv[1], 10000) != 0)
        return 1;
    for (int i = 0; i < 300 && chat_rpc_client_peers(cli) == 0; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    if (create_conversations() != 0)
        return 1;

    pthread_t *th = calloc((size_t)threads, sizeof *th);
    int64_t t0 = chat_mono_ms();
    deadline = t0 + seconds * 1000LL;
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, sender, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(chat_mono_ms() - t0) / 1000.0;

    qsort(lat_us, (size_t)nlat, sizeof *lat_us, cmp_int);
    printf("sends=%ld seconds=%.2f rate=%.0f/s threads=%d conversations=%d\n", nlat, secs,
           (double)nlat / secs, threads, nconv);
    if (nlat > 0)
        printf("latency_ms p50=%.2f p99=%.2f max=%.2f\n", lat_us[nlat / 2] / 1000.0,
               lat_us[(long)(nlat * 0.99)] / 1000.0, lat_us[nlat - 1] / 1000.0);
    printf("codes:");
    for (int i = 0; i < 16; i++)
        if (codes[i])
            printf(" %s=%ld",
                   i == 15
                       ? "transport"
                       : protobuf_c_enum_descriptor_get_value(&chat__code__descriptor, i)->name,
                   codes[i]);
    printf("\n");
    /* No chat_rpc_client_close(): nng_close() was seen to hang after the
     * server vanished mid-call, and the process ends here anyway. */
    free(th);
    free(lat_us);
    free(convs);
    free(users);
    return 0;
}
