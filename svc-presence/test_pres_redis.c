/* svc-presence against a real Redis ($CHAT_TEST_REDIS_PORT, database 12,
 * which the test empties), with a fake svc-match. The clock is passed in,
 * so grace and gateway TTLs are exact. Exits 77 (ctest: skipped) when the
 * variable is unset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "presence.h"

#define TEST_DB 12
#define GRACE 15000
#define TTL 10000
#define T0 1700000000000LL

static int redis_port;

/* ---- fake svc-match ---- */

#define FAKE_MAX_CALLS 8192

typedef struct fake_call {
    Chat__MatchRequest__BodyCase kind;
    char user[CHAT_UUID_LEN + 1];
} fake_call;

typedef struct fake {
    pthread_mutex_t mu;
    bool down;
    Chat__Code code; /* what svc-match answers */
    void (*on_call)(void); /* runs once inside the next call (a race made to order) */
    fake_call calls[FAKE_MAX_CALLS];
    int n_calls;
} fake;

static fake *F;
static pres_env env;
static chat_redis *R;

static int fake_match_call(void *ctx, const Chat__MatchRequest *req, Chat__MatchReply **reply)
{
    fake *f = ctx;
    if (f->on_call) {
        void (*hook)(void) = f->on_call;
        f->on_call = NULL;
        hook();
    }
    pthread_mutex_lock(&f->mu);
    if (f->down) {
        pthread_mutex_unlock(&f->mu);
        return -1;
    }
    assert_true(f->n_calls < FAKE_MAX_CALLS);
    fake_call *c = &f->calls[f->n_calls++];
    c->kind = req->body_case;
    const char *user = req->body_case == CHAT__MATCH_REQUEST__BODY_USER_OFFLINE
                           ? req->user_offline->user_id
                           : req->user_gone->user_id;
    snprintf(c->user, sizeof c->user, "%s", user);
    Chat__Code code = f->code;
    pthread_mutex_unlock(&f->mu);
    Chat__MatchReply *rep = calloc(1, sizeof *rep);
    chat__match_reply__init(rep);
    rep->code = code;
    *reply = rep; /* free_unpacked on an init'ed message frees just it */
    return 0;
}

static int calls_of(Chat__MatchRequest__BodyCase kind, const char *user)
{
    int n = 0;
    pthread_mutex_lock(&F->mu);
    for (int i = 0; i < F->n_calls; i++)
        if (F->calls[i].kind == kind && (user == NULL || strcmp(F->calls[i].user, user) == 0))
            n++;
    pthread_mutex_unlock(&F->mu);
    return n;
}
#define OFFLINE CHAT__MATCH_REQUEST__BODY_USER_OFFLINE
#define GONE CHAT__MATCH_REQUEST__BODY_USER_GONE

/* ---- Redis helpers ---- */

static chat_redis *connect_db(void)
{
    chat_redis *r = chat_redis_new("127.0.0.1", redis_port, 2000);
    assert_non_null(r);
    redisReply *rep = chat_redis_cmd(r, "SELECT %d", TEST_DB);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    return r;
}

/* Integer reply of a command, or the number in a string reply; -1 for nil. */
static long long rnum(const char *fmt, ...)
{
    char cmd[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    redisReply *rep = chat_redis_cmd(R, cmd);
    assert_non_null(rep);
    long long v = -1;
    if (rep->type == REDIS_REPLY_INTEGER)
        v = rep->integer;
    else if (rep->type == REDIS_REPLY_STRING)
        v = atoll(rep->str);
    freeReplyObject(rep);
    return v;
}

/* ---- request helpers ---- */

static char users[8][CHAT_UUID_LEN + 1];
#define A users[0]
#define B users[1]
#define C users[2]

/* Returns first (connect) or last (disconnect); fails the test on an error. */
static bool conn_op(chat_redis *r, bool connect, const char *user, const char *gw,
                    uint64_t conn, int64_t now)
{
    Chat__ConnRef cr = CHAT__CONN_REF__INIT;
    cr.gateway_id = (char *)gw;
    cr.conn_id = conn;
    Chat__ConnectReq c = CHAT__CONNECT_REQ__INIT;
    Chat__DisconnectReq d = CHAT__DISCONNECT_REQ__INIT;
    Chat__PresenceRequest req = CHAT__PRESENCE_REQUEST__INIT;
    if (connect) {
        c.user_id = (char *)user;
        c.conn = &cr;
        req.body_case = CHAT__PRESENCE_REQUEST__BODY_CONNECT;
        req.connect = &c;
    } else {
        d.user_id = (char *)user;
        d.conn = &cr;
        req.body_case = CHAT__PRESENCE_REQUEST__BODY_DISCONNECT;
        req.disconnect = &d;
    }
    pres_out out;
    pres_out_init(&out);
    pres_handle(&env, r, &req, now, &out);
    assert_int_equal(out.reply.code, CHAT__CODE__OK);
    bool flag = connect ? out.reply.first : out.reply.last;
    pres_out_free(&out);
    return flag;
}
#define CONNECT(u, gw, c, now) conn_op(R, true, u, gw, c, now)
#define DISCONNECT(u, gw, c, now) conn_op(R, false, u, gw, c, now)

static bool heartbeat(const char *gw, uint32_t conns, int64_t now)
{
    Chat__HeartbeatReq h = CHAT__HEARTBEAT_REQ__INIT;
    h.gateway_id = (char *)gw;
    h.connections = conns;
    Chat__PresenceRequest req = CHAT__PRESENCE_REQUEST__INIT;
    req.body_case = CHAT__PRESENCE_REQUEST__BODY_HEARTBEAT;
    req.heartbeat = &h;
    pres_out out;
    pres_out_init(&out);
    pres_handle(&env, R, &req, now, &out);
    assert_int_equal(out.reply.code, CHAT__CODE__OK);
    bool resync = out.reply.resync;
    pres_out_free(&out);
    return resync;
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    memset(F, 0, sizeof *F);
    pthread_mutex_init(&F->mu, NULL);
    F->code = CHAT__CODE__OK;
    freeReplyObject(chat_redis_cmd(R, "FLUSHDB"));
    for (int i = 0; i < 8; i++)
        chat_uuid_new(users[i]);
    return 0;
}

static int teardown(void **state)
{
    pthread_mutex_destroy(&F->mu);
    return 0;
}

/* ---- tests ---- */

static void first_and_last(void **state)
{
    assert_true(CONNECT(A, "gw1", 1, T0));
    assert_false(CONNECT(A, "gw2", 7, T0));     /* second connection, other gateway */
    assert_false(CONNECT(A, "gw1", 1, T0));     /* the same again (resync) */
    assert_false(DISCONNECT(A, "gw1", 1, T0 + 5));
    assert_int_equal(calls_of(OFFLINE, A), 0);
    assert_true(DISCONNECT(A, "gw2", 7, T0 + 10));
    /* The user left the queue before the reply. */
    assert_int_equal(calls_of(OFFLINE, A), 1);
    assert_int_equal(rnum("GET p:seen:%s", A), T0 + 10);
    assert_int_equal(rnum("ZSCORE p:grace %s", A), T0 + 10 + GRACE);
    assert_int_equal(rnum("EXISTS p:conns:%s", A), 0);
    assert_int_equal(rnum("EXISTS p:gw:gw1"), 0);
    /* A repeated disconnect still says "last" (and the user leaves the queue
     * again, harmless), but moves neither last-seen nor the grace. */
    assert_true(DISCONNECT(A, "gw2", 7, T0 + 20));
    assert_int_equal(calls_of(OFFLINE, A), 2);
    assert_int_equal(rnum("GET p:seen:%s", A), T0 + 10);
    assert_int_equal(rnum("ZSCORE p:grace %s", A), T0 + 10 + GRACE);
    /* Back within the grace: first again, grace cancelled. */
    assert_true(CONNECT(A, "gw1", 2, T0 + 30));
    assert_int_equal(rnum("ZSCORE p:grace %s", A), -1);
}

static void disconnect_without_connect(void **state)
{
    /* The connect never reached presence (it was down): the disconnect still
     * takes the user out of the queue and starts the grace. */
    assert_true(DISCONNECT(C, "gw1", 5, T0));
    assert_int_equal(calls_of(OFFLINE, C), 1);
    assert_int_equal(rnum("GET p:seen:%s", C), T0);
    assert_int_equal(rnum("ZSCORE p:grace %s", C), T0 + GRACE);
}

static void last_even_if_match_is_down(void **state)
{
    F->down = true;
    assert_true(CONNECT(A, "gw1", 1, T0));
    assert_true(DISCONNECT(A, "gw1", 1, T0 + 1));
}

static void query_statuses(void **state)
{
    CONNECT(A, "gw1", 1, T0);
    CONNECT(B, "gw1", 2, T0);
    DISCONNECT(B, "gw1", 2, T0 + 100);
    char *ids[PRES_QUERY_MAX];
    for (int i = 0; i < PRES_QUERY_MAX; i++)
        ids[i] = users[i % 3]; /* A online, B offline, C unknown, repeated */
    Chat__QueryReq q = CHAT__QUERY_REQ__INIT;
    q.user_ids = ids;
    q.n_user_ids = PRES_QUERY_MAX;
    Chat__PresenceRequest req = CHAT__PRESENCE_REQUEST__INIT;
    req.body_case = CHAT__PRESENCE_REQUEST__BODY_QUERY;
    req.query = &q;
    pres_out out;
    pres_out_init(&out);
    pres_handle(&env, R, &req, T0 + 500, &out);
    assert_int_equal(out.reply.code, CHAT__CODE__OK);
    assert_int_equal(out.reply.n_statuses, PRES_QUERY_MAX);
    for (int i = 0; i < PRES_QUERY_MAX; i++) {
        const Chat__UserStatus *st = out.reply.statuses[i];
        assert_string_equal(st->user_id, users[i % 3]);
        switch (i % 3) {
        case 0: assert_true(st->online); assert_int_equal(st->last_seen, T0 + 500); break;
        case 1: assert_false(st->online); assert_int_equal(st->last_seen, T0 + 100); break;
        case 2: assert_false(st->online); assert_int_equal(st->last_seen, 0); break;
        }
    }
    /* The reply packs (what the server sends). */
    size_t len = chat__presence_reply__get_packed_size(&out.reply);
    assert_true(len > 0);
    pres_out_free(&out);
}

static void heartbeat_resync(void **state)
{
    assert_true(heartbeat("gw1", 3, T0));      /* unknown gateway with connections */
    assert_false(heartbeat("gw1", 3, T0 + 2000));
    assert_false(heartbeat("gw2", 0, T0));     /* nothing to re-send */
    assert_false(heartbeat("gw2", 1, T0 + 2000));
    /* Redis lost its data: the next heartbeat asks for the connections. */
    freeReplyObject(chat_redis_cmd(R, "FLUSHDB"));
    assert_true(heartbeat("gw1", 3, T0 + 4000));
    assert_int_equal(rnum("ZSCORE p:gwalive gw1"), T0 + 4000);
}

static void grace_claimed_once(void **state)
{
    CONNECT(A, "gw1", 1, T0);
    DISCONNECT(A, "gw1", 1, T0);
    CONNECT(B, "gw1", 2, T0);
    DISCONNECT(B, "gw1", 2, T0);
    CONNECT(B, "gw1", 3, T0 + 1000);            /* B came back */
    assert_int_equal(pres_sweep_grace(&env, R, T0 + GRACE - 1), 0);
    assert_int_equal(calls_of(GONE, NULL), 0);
    assert_int_equal(pres_sweep_grace(&env, R, T0 + GRACE), 1);
    assert_int_equal(calls_of(GONE, A), 1);
    assert_int_equal(pres_sweep_grace(&env, R, T0 + GRACE + 100), 0);
    assert_int_equal(calls_of(GONE, NULL), 1);
    assert_int_equal(rnum("ZCARD p:grace"), 0);
}

static void reconnect_b(void)
{
    chat_redis *r2 = connect_db();
    assert_true(conn_op(r2, true, B, "gw2", 9, T0 + GRACE));
    chat_redis_free(r2);
}

static void grace_retried_when_match_fails(void **state)
{
    CONNECT(A, "gw1", 1, T0);
    DISCONNECT(A, "gw1", 1, T0);
    F->down = true;
    assert_int_equal(pres_sweep_grace(&env, R, T0 + GRACE), 1);
    assert_int_equal(rnum("ZSCORE p:grace %s", A), T0 + GRACE + PRES_GONE_RETRY_MS);
    F->down = false;
    F->code = CHAT__CODE__UNAVAILABLE; /* answered, but not done: retried too */
    assert_int_equal(pres_sweep_grace(&env, R, T0 + GRACE + PRES_GONE_RETRY_MS - 1), 0);
    assert_int_equal(pres_sweep_grace(&env, R, T0 + GRACE + PRES_GONE_RETRY_MS), 1);
    assert_int_equal(calls_of(GONE, A), 1);
    F->code = CHAT__CODE__OK;
    assert_int_equal(pres_sweep_grace(&env, R, T0 + GRACE + 2 * PRES_GONE_RETRY_MS), 1);
    assert_int_equal(calls_of(GONE, A), 2);
    assert_int_equal(rnum("ZCARD p:grace"), 0);
    /* A failure for a user who came back during the call is not retried. */
    CONNECT(B, "gw1", 2, T0);
    DISCONNECT(B, "gw1", 2, T0);
    F->code = CHAT__CODE__UNAVAILABLE;
    F->on_call = reconnect_b;
    assert_int_equal(pres_sweep_grace(&env, R, T0 + GRACE), 1);
    assert_int_equal(calls_of(GONE, B), 1);
    assert_int_equal(rnum("ZCARD p:grace"), 0);
}

/* Two sweepers (replicas) on the same due users: each user is gone once. */
#define RACE_USERS 300
static char race_users[RACE_USERS][CHAT_UUID_LEN + 1];

static void *race_sweeper(void *arg)
{
    chat_redis *r = connect_db();
    int total = 0;
    for (int i = 0; i < 20; i++) {
        int n = pres_sweep_grace(&env, r, T0 + GRACE);
        assert_true(n >= 0);
        total += n;
    }
    chat_redis_free(r);
    *(int *)arg = total;
    return NULL;
}

static void grace_race_between_replicas(void **state)
{
    for (int i = 0; i < RACE_USERS; i++) {
        chat_uuid_new(race_users[i]);
        CONNECT(race_users[i], "gw1", (uint64_t)i, T0);
        DISCONNECT(race_users[i], "gw1", (uint64_t)i, T0);
    }
    int got[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race_sweeper, &got[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(got[0] + got[1], RACE_USERS);
    for (int i = 0; i < RACE_USERS; i++)
        assert_int_equal(calls_of(GONE, race_users[i]), 1);
    print_message("grace race: %d + %d claims\n", got[0], got[1]);
}

static void dead_gateway_sweep(void **state)
{
    heartbeat("gw1", 3, T0);
    heartbeat("gw2", 1, T0);
    CONNECT(A, "gw1", 1, T0);
    CONNECT(A, "gw1", 2, T0);
    CONNECT(B, "gw1", 3, T0);
    CONNECT(B, "gw2", 4, T0);
    heartbeat("gw2", 1, T0 + TTL);
    /* Not yet silent for the TTL. */
    assert_int_equal(pres_sweep_gateways(&env, R, T0 + TTL - 1), 0);
    assert_int_equal(rnum("SCARD p:conns:%s", A), 2);
    /* gw1 is dead: A is offline (one user_offline), B keeps its gw2 connection. */
    assert_int_equal(pres_sweep_gateways(&env, R, T0 + TTL + 1), 1);
    assert_int_equal(calls_of(OFFLINE, A), 1);
    assert_int_equal(calls_of(OFFLINE, B), 0);
    assert_int_equal(rnum("SCARD p:conns:%s", A), 0);
    assert_int_equal(rnum("SCARD p:conns:%s", B), 1);
    assert_int_equal(rnum("GET p:seen:%s", A), T0 + TTL + 1);
    assert_int_equal(rnum("ZSCORE p:grace %s", A), T0 + TTL + 1 + GRACE);
    assert_int_equal(rnum("ZSCORE p:gwalive gw1"), -1);
    assert_int_equal(rnum("EXISTS p:gw:gw1"), 0);
    assert_int_equal(rnum("EXISTS p:dead:gw1"), 0);
    assert_int_equal(rnum("SCARD p:deadgws"), 0);
    /* Nothing twice. */
    assert_int_equal(pres_sweep_gateways(&env, R, T0 + TTL + 2), 0);
    assert_int_equal(calls_of(OFFLINE, NULL), 1);
    /* The gateway was only slow: its next heartbeat asks for a resync. */
    assert_true(heartbeat("gw1", 3, T0 + TTL + 3));
    assert_false(CONNECT(B, "gw1", 3, T0 + TTL + 3));
    assert_true(CONNECT(A, "gw1", 1, T0 + TTL + 3));
}

static void dead_gateway_keeps_resynced_connections(void **state)
{
    /* Claimed, and before its connections are closed the gateway re-registers
     * one of them: that one stays. (State set up by hand: claim and chunks
     * normally run in the same tick.) */
    CONNECT(A, "gw1", 1, T0);
    CONNECT(B, "gw1", 2, T0);
    freeReplyObject(chat_redis_cmd(R, "RENAME p:gw:gw1 p:dead:gw1"));
    freeReplyObject(chat_redis_cmd(R, "SADD p:deadgws gw1"));
    CONNECT(A, "gw1", 1, T0 + 1); /* resync */
    assert_int_equal(pres_sweep_gateways(&env, R, T0 + 2), 1);
    assert_int_equal(calls_of(OFFLINE, B), 1);
    assert_int_equal(calls_of(OFFLINE, A), 0);
    assert_int_equal(rnum("SCARD p:conns:%s", A), 1);
    assert_int_equal(rnum("SISMEMBER p:gw:gw1 %s/1", A), 1);
}

static void dead_gateway_bounded_per_tick(void **state)
{
    enum { N = PRES_GW_CHUNK * PRES_GW_CHUNKS_PER_TICK + 250 };
    heartbeat("gwbig", N, T0);
    char user[CHAT_UUID_LEN + 1];
    for (int i = 0; i < N; i++) {
        chat_uuid_new(user);
        CONNECT(user, "gwbig", (uint64_t)i, T0);
    }
    int first = pres_sweep_gateways(&env, R, T0 + TTL + 1);
    assert_int_equal(first, PRES_GW_CHUNK * PRES_GW_CHUNKS_PER_TICK);
    assert_int_equal(rnum("SCARD p:deadgws"), 1);
    int second = pres_sweep_gateways(&env, R, T0 + TTL + 101);
    assert_int_equal(second, 250);
    assert_int_equal(rnum("SCARD p:deadgws"), 0);
    assert_int_equal(rnum("EXISTS p:dead:gwbig"), 0);
    assert_int_equal(calls_of(OFFLINE, NULL), N);
    assert_int_equal(rnum("ZCARD p:grace"), N);
}

static void redis_down_is_unavailable(void **state)
{
    chat_redis *dead = chat_redis_new("127.0.0.1", 1, 200);
    Chat__ConnRef cr = CHAT__CONN_REF__INIT;
    cr.gateway_id = "gw1";
    Chat__ConnectReq c = CHAT__CONNECT_REQ__INIT;
    c.user_id = A;
    c.conn = &cr;
    Chat__PresenceRequest req = CHAT__PRESENCE_REQUEST__INIT;
    req.body_case = CHAT__PRESENCE_REQUEST__BODY_CONNECT;
    req.connect = &c;
    pres_out out;
    pres_out_init(&out);
    pres_handle(&env, dead, &req, T0, &out);
    assert_int_equal(out.reply.code, CHAT__CODE__UNAVAILABLE);
    pres_out_free(&out);
    assert_int_equal(pres_sweep_grace(&env, dead, T0), -1);
    assert_int_equal(pres_sweep_gateways(&env, dead, T0), -1);
    chat_redis_free(dead);
}

int main(void)
{
    const char *port = getenv("CHAT_TEST_REDIS_PORT");
    if (port == NULL || *port == '\0') {
        fprintf(stderr, "test_pres_redis: SKIPPED: set CHAT_TEST_REDIS_PORT to a Redis "
                        "on 127.0.0.1 (database %d is emptied)\n", TEST_DB);
        return 77;
    }
    redis_port = atoi(port);
    pres_scripts_init();
    F = calloc(1, sizeof *F);
    env = (pres_env){fake_match_call, F, GRACE, TTL};
    R = connect_db();

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(first_and_last, setup, teardown),
        cmocka_unit_test_setup_teardown(disconnect_without_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(last_even_if_match_is_down, setup, teardown),
        cmocka_unit_test_setup_teardown(query_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(heartbeat_resync, setup, teardown),
        cmocka_unit_test_setup_teardown(grace_claimed_once, setup, teardown),
        cmocka_unit_test_setup_teardown(grace_retried_when_match_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(grace_race_between_replicas, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_gateway_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_gateway_keeps_resynced_connections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(dead_gateway_bounded_per_tick, setup, teardown),
        cmocka_unit_test_setup_teardown(redis_down_is_unavailable, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    chat_redis_free(R);
    free(F);
    return failed;
}
