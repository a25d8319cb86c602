/* The worker pool's deadline: a request that waited past it is refused,
 * not worked on (inproc; no Redis needed: workers connect lazily). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <time.h>

#include "chat/rpc.h"
#include "chat/rpc_pool.h"
#include "chat/util.h"
#include "match.pb-c.h"

static atomic_int worked, refused;

/* Each request holds the only worker for 300 ms, then answers "worked". */
static void slow_work(chat_rpc_job *job, const uint8_t *data, size_t len, chat_redis *r,
                      void *arg)
{
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_fetch_add(&worked, 1);
    Chat__MatchReply rep = CHAT__MATCH_REPLY__INIT;
    rep.detail = "worked";
    chat_rpc_job_reply_pb(job, &rep.base);
}

static void refuse(chat_rpc_job *job, void *arg)
{
    atomic_fetch_add(&refused, 1);
    Chat__MatchReply rep = CHAT__MATCH_REPLY__INIT;
    rep.code = CHAT__CODE__UNAVAILABLE;
    rep.detail = "refused";
    chat_rpc_job_reply_pb(job, &rep.base);
}

struct result {
    sem_t done;
    int err;
    char detail[16];
};

static void on_done(int err, const uint8_t *data, size_t len, void *arg)
{
    struct result *res = arg;
    res->err = err;
    Chat__MatchReply *rep = err == 0 ? chat__match_reply__unpack(NULL, len, data) : NULL;
    if (rep != NULL) {
        strncpy(res->detail, rep->detail, sizeof res->detail - 1);
        chat__match_reply__free_unpacked(rep, NULL);
    }
    sem_post(&res->done);
}

/* One worker, a deadline of 100 ms: of three requests sent together the
 * first is worked on; the others waited 300 ms and more, and are refused
 * without being worked on. */
static void test_deadline_refuses_stale_requests(void **st)
{
    chat_rpc_pool_cfg cfg = {"test", "inproc://pool", 8, 1, "127.0.0.1", 1, 100, NULL, 100};
    chat_rpc_pool *pool;
    assert_int_equal(chat_rpc_pool_open(&pool, &cfg, slow_work, refuse, NULL), 0);
    chat_rpc_client *cli;
    assert_int_equal(chat_rpc_client_open(&cli, "inproc://pool", 5000), 0);
    assert_true(chat_rpc_client_wait_peers(cli, 5000));
    Chat__MatchRequest req = CHAT__MATCH_REQUEST__INIT;
    struct result res[3];
    for (int i = 0; i < 3; i++) {
        memset(&res[i], 0, sizeof res[i]);
        sem_init(&res[i].done, 0, 0);
        chat_rpc_call_async(cli, &req.base, on_done, &res[i]);
    }
    for (int i = 0; i < 3; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 5;
        assert_int_equal(sem_timedwait(&res[i].done, &ts), 0);
        assert_int_equal(res[i].err, 0);
    }
    int n_worked = 0;
    for (int i = 0; i < 3; i++)
        n_worked += strcmp(res[i].detail, "worked") == 0;
    assert_int_equal(n_worked, 1);
    assert_int_equal(atomic_load(&worked), 1);
    assert_int_equal(atomic_load(&refused), 2);
    assert_int_equal(chat_rpc_pool_expired(pool), 2);
    chat_rpc_client_close(cli);
    chat_rpc_pool_close(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_refuses_stale_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
