/* Request/reply and pub/sub through the real nng sockets (inproc). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <nng/nng.h>
#include <pthread.h>
#include <stdio.h>
#include <semaphore.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>

#include "chat/rpc.h"
#include "chat/util.h"
#include "envelope.pb-c.h"
#include "events.pb-c.h"
#include <nng/protocol/reqrep0/req.h>
#include "match.pb-c.h"

/* Echo server: replies with detail = the request's user id; a user id of
 * "hold" is parked in `held` and answered by the test (to test timeouts);
 * held_ready is posted when it is there (the handler runs on an nng
 * thread: the semaphore orders the hand-over). */
static chat_rpc_job *held;
static sem_t held_ready;

static void echo_handler(chat_rpc_job *job, const uint8_t *data, size_t len, void *arg)
{
    Chat__MatchRequest *req = chat__match_request__unpack(NULL, len, data);
    Chat__MatchReply rep = CHAT__MATCH_REPLY__INIT;
    if (req == NULL || req->body_case != CHAT__MATCH_REQUEST__BODY_START_SEARCH) {
        rep.code = CHAT__CODE__BAD_REQUEST;
        chat_rpc_job_reply_pb(job, &rep.base);
    } else if (strcmp(req->start_search->user_id, "hold") == 0) {
        held = job;
        sem_post(&held_ready);
    } else {
        rep.detail = req->start_search->user_id;
        chat_rpc_job_reply_pb(job, &rep.base);
    }
    chat__match_request__free_unpacked(req, NULL);
}

static void make_req(Chat__MatchRequest *r, Chat__StartSearchReq *s, const char *user)
{
    chat__start_search_req__init(s);
    chat__match_request__init(r);
    s->user_id = (char *)user;
    r->body_case = CHAT__MATCH_REQUEST__BODY_START_SEARCH;
    r->start_search = s;
}

static void wait_peers(chat_rpc_client *c)
{
    for (int i = 0; i < 500 && chat_rpc_client_peers(c) == 0; i++) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    assert_true(chat_rpc_client_peers(c) > 0);
}

static void test_sync_call(void **st)
{
    chat_rpc_server *srv;
    chat_rpc_client *cli;
    assert_int_equal(chat_rpc_server_open(&srv, "inproc://sync", 4, echo_handler, NULL), 0);
    assert_int_equal(chat_rpc_client_open(&cli, "inproc://sync", 2000), 0);
    wait_peers(cli);
    Chat__MatchRequest r;
    Chat__StartSearchReq s;
    make_req(&r, &s, "alice");
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(chat_rpc_call(cli, &r.base, &buf, &len), 0);
    Chat__MatchReply *rep = chat__match_reply__unpack(NULL, len, buf);
    assert_non_null(rep);
    assert_string_equal(rep->detail, "alice");
    chat__match_reply__free_unpacked(rep, NULL);
    free(buf);
    ProtobufCMessage *m = NULL;
    assert_int_equal(chat_rpc_call_decode(cli, &r.base, &chat__match_reply__descriptor, &m), 0);
    assert_string_equal(((Chat__MatchReply *)m)->detail, "alice");
    protobuf_c_message_free_unpacked(m, NULL);
    chat_rpc_client_close(cli);
    chat_rpc_server_close(srv);
}

static void test_wait_peers(void **st)
{
    chat_rpc_client *cli;
    assert_int_equal(chat_rpc_client_open(&cli, "inproc://later", 2000), 0);
    assert_false(chat_rpc_client_wait_peers(cli, 60)); /* nobody there: bounded */
    chat_rpc_server *srv;
    assert_int_equal(chat_rpc_server_open(&srv, "inproc://later", 2, echo_handler, NULL), 0);
    assert_true(chat_rpc_client_wait_peers(cli, 5000));
    chat_rpc_client_close(cli);
    chat_rpc_server_close(srv);
}

struct async_result {
    sem_t done;
    int err;
    char detail[32];
};

static void on_done(int err, const uint8_t *data, size_t len, void *arg)
{
    struct async_result *res = arg;
    res->err = err;
    if (err == 0) {
        Chat__MatchReply *rep = chat__match_reply__unpack(NULL, len, data);
        if (rep) {
            strncpy(res->detail, rep->detail, sizeof res->detail - 1);
            chat__match_reply__free_unpacked(rep, NULL);
        }
    }
    sem_post(&res->done);
}

static void sem_wait_bounded(sem_t *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    assert_int_equal(sem_timedwait(s, &ts), 0);
}

static void test_many_async_calls(void **st)
{
    chat_rpc_server *srv;
    chat_rpc_client *cli;
    assert_int_equal(chat_rpc_server_open(&srv, "inproc://async", 8, echo_handler, NULL), 0);
    assert_int_equal(chat_rpc_client_open(&cli, "inproc://async", 2000), 0);
    wait_peers(cli);
    enum { N = 200 };
    static struct async_result res[N];
    char names[N][16];
    for (int i = 0; i < N; i++) {
        sem_init(&res[i].done, 0, 0);
        snprintf(names[i], sizeof names[i], "u%d", i);
        Chat__MatchRequest r;
        Chat__StartSearchReq s;
        make_req(&r, &s, names[i]);
        chat_rpc_call_async(cli, &r.base, on_done, &res[i]);
    }
    for (int i = 0; i < N; i++) {
        sem_wait_bounded(&res[i].done);
        assert_int_equal(res[i].err, 0);
        assert_string_equal(res[i].detail, names[i]);
        sem_destroy(&res[i].done);
    }
    chat_rpc_client_close(cli);
    chat_rpc_server_close(srv);
}

static void test_no_peer_fails_at_once(void **st)
{
    chat_rpc_client *cli;
    assert_int_equal(chat_rpc_client_open(&cli, "inproc://nobody", 2000), 0);
    assert_int_equal(chat_rpc_client_peers(cli), 0);
    Chat__MatchRequest r;
    Chat__StartSearchReq s;
    make_req(&r, &s, "x");
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(chat_rpc_call(cli, &r.base, &buf, &len), NNG_ECONNREFUSED);
    assert_null(buf);
    struct async_result res;
    sem_init(&res.done, 0, 0);
    chat_rpc_call_async(cli, &r.base, on_done, &res);
    sem_wait_bounded(&res.done);
    assert_int_equal(res.err, NNG_ECONNREFUSED);
    chat_rpc_client_close(cli);
}

static void test_timeout(void **st)
{
    chat_rpc_server *srv;
    chat_rpc_client *cli;
    assert_int_equal(chat_rpc_server_open(&srv, "inproc://slow", 2, echo_handler, NULL), 0);
    assert_int_equal(chat_rpc_client_open(&cli, "inproc://slow", 100), 0);
    wait_peers(cli);
    Chat__MatchRequest r;
    Chat__StartSearchReq s;
    make_req(&r, &s, "hold");
    struct async_result res;
    sem_init(&res.done, 0, 0);
    chat_rpc_call_async(cli, &r.base, on_done, &res);
    sem_wait_bounded(&res.done);
    assert_int_equal(res.err, NNG_ETIMEDOUT);
    sem_wait_bounded(&held_ready);
    assert_non_null(held);
    chat_rpc_job_reply(held, (const uint8_t *)"", 0); /* late reply is dropped */
    held = NULL;
    chat_rpc_client_close(cli);
    chat_rpc_server_close(srv);
}

/* Queued calls travel as one request: the server answers the batch only
 * when its last item is answered, and each caller gets its own item even
 * when the items are answered out of order. */
static void test_queued_calls_share_one_request(void **st)
{
    chat_rpc_server *srv;
    chat_rpc_client *cli;
    assert_int_equal(chat_rpc_server_open(&srv, "inproc://batch", 4, echo_handler, NULL), 0);
    assert_int_equal(chat_rpc_client_open(&cli, "inproc://batch", 5000), 0);
    wait_peers(cli);
    const char *names[3] = {"first", "hold", "third"};
    struct async_result res[3];
    for (int i = 0; i < 3; i++) {
        sem_init(&res[i].done, 0, 0);
        memset(res[i].detail, 0, sizeof res[i].detail);
        Chat__MatchRequest r;
        Chat__StartSearchReq s;
        make_req(&r, &s, names[i]);
        chat_rpc_call_queued(cli, &r.base, on_done, &res[i]);
    }
    chat_rpc_client_flush(cli);
    /* The held item keeps the whole batch: nobody is answered yet. */
    sem_wait_bounded(&held_ready);
    assert_non_null(held);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    assert_int_not_equal(sem_timedwait(&res[0].done, &ts), 0);
    Chat__MatchReply rep = CHAT__MATCH_REPLY__INIT;
    rep.detail = "late";
    chat_rpc_job_reply_pb(held, &rep.base);
    held = NULL;
    const char *want[3] = {"first", "late", "third"};
    for (int i = 0; i < 3; i++) {
        sem_wait_bounded(&res[i].done);
        assert_int_equal(res[i].err, 0);
        assert_string_equal(res[i].detail, want[i]);
        sem_destroy(&res[i].done);
    }
    chat_rpc_client_close(cli);
    chat_rpc_server_close(srv);
}

/* A request that is not a batch gets an empty batch back, and the server
 * keeps serving. */
static void test_server_answers_garbage_with_empty_batch(void **st)
{
    chat_rpc_server *srv;
    assert_int_equal(chat_rpc_server_open(&srv, "inproc://garbage", 2, echo_handler, NULL), 0);
    nng_socket raw;
    assert_int_equal(nng_req0_open(&raw), 0);
    nng_socket_set_ms(raw, NNG_OPT_RECVTIMEO, 5000);
    assert_int_equal(nng_dial(raw, "inproc://garbage", NULL, 0), 0);
    const char junk[] = "\xff\xff\xff not protobuf";
    assert_int_equal(nng_send(raw, (void *)junk, sizeof junk, 0), 0);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(nng_recv(raw, &buf, &len, NNG_FLAG_ALLOC), 0);
    Chat__Batch *b = chat__batch__unpack(NULL, len, (const uint8_t *)buf);
    assert_non_null(b);
    assert_int_equal(b->n_items, 0);
    chat__batch__free_unpacked(b, NULL);
    nng_free(buf, len);
    nng_close(raw);
    chat_rpc_client *cli;
    assert_int_equal(chat_rpc_client_open(&cli, "inproc://garbage", 2000), 0);
    wait_peers(cli);
    Chat__MatchRequest r;
    Chat__StartSearchReq s;
    make_req(&r, &s, "still-here");
    ProtobufCMessage *m = NULL;
    assert_int_equal(chat_rpc_call_decode(cli, &r.base, &chat__match_reply__descriptor, &m), 0);
    assert_string_equal(((Chat__MatchReply *)m)->detail, "still-here");
    protobuf_c_message_free_unpacked(m, NULL);
    chat_rpc_client_close(cli);
    chat_rpc_server_close(srv);
}

struct sub_seen {
    sem_t got;
    char conv[32];
    int n;             /* events seen */
    char order[8][32]; /* their conversation ids */
};

static void on_event(const uint8_t *data, size_t len, void *arg)
{
    struct sub_seen *seen = arg;
    Chat__Event *ev = chat__event__unpack(NULL, len, data);
    if (ev && ev->body_case == CHAT__EVENT__BODY_MATCHED) {
        strncpy(seen->conv, ev->matched->conversation_id, sizeof seen->conv - 1);
        if (seen->n < 8)
            strncpy(seen->order[seen->n], ev->matched->conversation_id, 31);
        seen->n++;
        sem_post(&seen->got);
    }
    chat__event__free_unpacked(ev, NULL);
}

static void test_pub_sub(void **st)
{
    chat_pub *pub;
    chat_sub *sub;
    struct sub_seen seen = {0};
    sem_init(&seen.got, 0, 0);
    assert_int_equal(chat_pub_open(&pub, "inproc://events"), 0);
    assert_int_equal(chat_sub_open(&sub, "inproc://events", on_event, NULL, &seen), 0);
    for (int i = 0; i < 500 && chat_sub_peers(sub) == 0; i++) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(chat_sub_peers(sub), 1);
    Chat__MatchedEvt m = CHAT__MATCHED_EVT__INIT;
    m.conversation_id = "conv-7";
    Chat__Event ev = CHAT__EVENT__INIT;
    ev.body_case = CHAT__EVENT__BODY_MATCHED;
    ev.matched = &m;
    /* The publisher learns of the subscriber a moment after the subscriber
     * sees the connection, and pub/sub drops what nobody is subscribed to:
     * publish until one arrives (bounded). */
    int got = -1;
    for (int i = 0; i < 500 && got != 0; i++) {
        assert_int_equal(chat_pub_send(pub, &ev.base), 0);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        got = sem_timedwait(&seen.got, &ts);
    }
    assert_int_equal(got, 0);
    assert_string_equal(seen.conv, "conv-7");
    /* Now connected both ways: a batch of three arrives whole, in order. */
    while (sem_trywait(&seen.got) == 0)
        ;
    int before = seen.n;
    Chat__MatchedEvt ms[3] = {CHAT__MATCHED_EVT__INIT, CHAT__MATCHED_EVT__INIT,
                              CHAT__MATCHED_EVT__INIT};
    Chat__Event evs[3] = {CHAT__EVENT__INIT, CHAT__EVENT__INIT, CHAT__EVENT__INIT};
    const ProtobufCMessage *many[3];
    const char *ids[3] = {"b-1", "b-2", "b-3"};
    for (int i = 0; i < 3; i++) {
        ms[i].conversation_id = (char *)ids[i];
        evs[i].body_case = CHAT__EVENT__BODY_MATCHED;
        evs[i].matched = &ms[i];
        many[i] = &evs[i].base;
    }
    assert_int_equal(chat_pub_send_many(pub, many, 3), 0);
    for (int i = 0; i < 3; i++)
        sem_wait_bounded(&seen.got);
    assert_true(before + 3 <= 8);
    for (int i = 0; i < 3; i++)
        assert_string_equal(seen.order[before + i], ids[i]);
    chat_sub_close(sub);
    chat_pub_close(pub);
}

/* A free loopback port: bound by the kernel, then released for the test. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Counts "big-N" events, which must come in order; "after" ends the run. */
struct big_seen {
    sem_t done;
    int n, out_of_order;
};

static void on_big(const uint8_t *data, size_t len, void *arg)
{
    struct big_seen *seen = arg;
    Chat__Event *ev = chat__event__unpack(NULL, len, data);
    if (ev && ev->body_case == CHAT__EVENT__BODY_MATCHED) {
        const char *id = ev->matched->conversation_id;
        if (strcmp(id, "after") == 0)
            sem_post(&seen->done);
        else if (atoi(id + 4) != seen->n++)
            seen->out_of_order++;
    }
    chat__event__free_unpacked(ev, NULL);
}

#define BIG_EVENTS 200
#define BIG_BYTES (100 * 1000)

/* Over TCP, where nng enforces the subscriber's size limit: 200 events of
 * 100 KB (20 MB, more than a subscriber takes in one message) published in
 * one call all arrive, in order, in several batches; an event larger than
 * the limit is refused alone, and the subscription survives it. */
static void test_pub_sub_large_batches(void **st)
{
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", free_port());
    chat_pub *pub;
    chat_sub *sub;
    struct big_seen seen = {0};
    sem_init(&seen.done, 0, 0);
    assert_int_equal(chat_pub_open(&pub, url), 0);
    assert_int_equal(chat_sub_open(&sub, url, on_big, NULL, &seen), 0);

    Chat__MatchedEvt ms[BIG_EVENTS];
    Chat__Event evs[BIG_EVENTS];
    const ProtobufCMessage *many[BIG_EVENTS];
    char *ids = malloc((size_t)BIG_EVENTS * BIG_BYTES);
    assert_non_null(ids);
    for (int i = 0; i < BIG_EVENTS; i++) {
        char *id = ids + (size_t)i * BIG_BYTES;
        memset(id, 'x', BIG_BYTES - 1);
        id[BIG_BYTES - 1] = '\0';
        snprintf(id, 16, "big-%03d", i);
        id[7] = 'x'; /* snprintf's NUL: the id goes on */
        chat__matched_evt__init(&ms[i]);
        ms[i].conversation_id = id;
        chat__event__init(&evs[i]);
        evs[i].body_case = CHAT__EVENT__BODY_MATCHED;
        evs[i].matched = &ms[i];
        many[i] = &evs[i].base;
    }
    /* Wait until a probe arrives: the publisher knows the subscriber. */
    Chat__MatchedEvt pm = CHAT__MATCHED_EVT__INIT;
    pm.conversation_id = "after";
    Chat__Event probe = CHAT__EVENT__INIT;
    probe.body_case = CHAT__EVENT__BODY_MATCHED;
    probe.matched = &pm;
    int got = -1;
    for (int i = 0; i < 500 && got != 0; i++) {
        assert_int_equal(chat_pub_send(pub, &probe.base), 0);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        got = sem_trywait(&seen.done);
    }
    assert_int_equal(got, 0);
    while (sem_trywait(&seen.done) == 0)
        ;

    uint64_t sent0, failed0, sent1, failed1;
    chat_pub_counts(pub, &sent0, &failed0);
    assert_int_equal(chat_pub_send_many(pub, many, BIG_EVENTS), 0);
    chat_pub_counts(pub, &sent1, &failed1);
    assert_true(sent1 - sent0 >= (uint64_t)BIG_EVENTS * BIG_BYTES / CHAT_PUB_BATCH_BYTES);
    assert_int_equal(failed1, failed0);

    /* One event over the subscriber's limit, between two small ones. */
    size_t huge_len = CHAT_SUB_MAX_BYTES + 1;
    char *huge = malloc(huge_len);
    assert_non_null(huge);
    memset(huge, 'y', huge_len - 1);
    huge[huge_len - 1] = '\0';
    Chat__MatchedEvt hm = CHAT__MATCHED_EVT__INIT;
    hm.conversation_id = huge;
    Chat__Event hev = CHAT__EVENT__INIT;
    hev.body_case = CHAT__EVENT__BODY_MATCHED;
    hev.matched = &hm;
    const ProtobufCMessage *mixed[] = {&hev.base, &probe.base};
    assert_int_equal(chat_pub_send_many(pub, mixed, 2), NNG_EMSGSIZE);
    chat_pub_counts(pub, &sent0, &failed0);
    assert_int_equal(failed0, failed1 + 1);

    sem_wait_bounded(&seen.done);
    assert_int_equal(seen.n, BIG_EVENTS);
    assert_int_equal(seen.out_of_order, 0);
    assert_int_equal(chat_sub_lost(sub), 0);
    free(huge);
    free(ids);
    chat_sub_close(sub);
    chat_pub_close(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_call),
        cmocka_unit_test(test_wait_peers),
        cmocka_unit_test(test_many_async_calls),
        cmocka_unit_test(test_no_peer_fails_at_once),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_queued_calls_share_one_request),
        cmocka_unit_test(test_server_answers_garbage_with_empty_batch),
        cmocka_unit_test(test_pub_sub),
        cmocka_unit_test(test_pub_sub_large_batches),
    };
    sem_init(&held_ready, 0, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
