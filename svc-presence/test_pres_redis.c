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
#include <time.h>

#include "presence.h"
#include "redis_fixture.h"

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
    Chat__Code code;       /* what svc-match answers */
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
    return redis_fixture_connect(redis_port, TEST_DB);
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
    assert_false(CONNECT(A, "gw2", 7, T0)); /* second connection, other gateway */
    assert_false(CONNECT(A, "gw1", 1, T0)); /* the same again (resync) */
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

/* The bans as a gateway reads them: BansReq's list and version. */
static uint64_t bans_list(int64_t now, size_t want_n, pres_out *out)
{
    Chat__BansReq b = CHAT__BANS_REQ__INIT;
    Chat__PresenceRequest req = CHAT__PRESENCE_REQUEST__INIT;
    req.body_case = CHAT__PRESENCE_REQUEST__BODY_BANS;
    req.bans = &b;
    pres_out_init(out);
    pres_handle(&env, R, &req, now, out);
    assert_int_equal(out->reply.code, CHAT__CODE__OK);
    assert_int_equal(out->reply.n_bans, want_n);
    return out->reply.bans_version;
}

static void bans_versioned_and_pruned(void **state)
{
    pres_out out;
    assert_int_equal(bans_list(T0, 0, &out), 0); /* none ever */
    pres_out_free(&out);
    assert_int_equal(pres_ban_set(R, A, 0, T0), 0);         /* until unbanned */
    assert_int_equal(pres_ban_set(R, B, T0 + 1000, T0), 0); /* for a second */
    uint64_t v1 = bans_list(T0 + 1, 2, &out);
    assert_true(v1 > (uint64_t)T0); /* two changes in the same ms still differ */
    pres_out_free(&out);
    int64_t until = 0;
    assert_int_equal(pres_ban_of(R, B, T0 + 999, &until), 0);
    assert_int_equal(until, T0 + 1000);
    assert_int_equal(pres_ban_of(R, B, T0 + 1000, &until), 0);
    assert_int_equal(until, -1); /* over */
    assert_int_equal(pres_ban_of(R, A, T0 + 5000, &until), 0);
    assert_int_equal(until, 0);
    /* B's ban is over: pruned from the list, which keeps its version. */
    assert_int_equal(bans_list(T0 + 2000, 1, &out), v1);
    assert_string_equal(out.reply.bans[0]->user_id, A);
    assert_int_equal(out.reply.bans[0]->until_ms, 0);
    pres_out_free(&out);
    /* A heartbeat answer carries the version. */
    Chat__HeartbeatReq hb = CHAT__HEARTBEAT_REQ__INIT;
    hb.gateway_id = "gw1";
    Chat__PresenceRequest req = CHAT__PRESENCE_REQUEST__INIT;
    req.body_case = CHAT__PRESENCE_REQUEST__BODY_HEARTBEAT;
    req.heartbeat = &hb;
    pres_out_init(&out);
    pres_handle(&env, R, &req, T0 + 2000, &out);
    assert_int_equal(out.reply.bans_version, v1);
    pres_out_free(&out);
    bool lifted = false;
    assert_int_equal(pres_ban_lift(R, A, T0 + 3000, &lifted), 0);
    assert_true(lifted);
    assert_int_equal(pres_ban_lift(R, A, T0 + 3000, &lifted), 0);
    assert_false(lifted); /* nothing left: the version stays */
    uint64_t v2 = bans_list(T0 + 3000, 0, &out);
    assert_true(v2 > v1);
    pres_out_free(&out);
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
        case 0:
            assert_true(st->online);
            assert_int_equal(st->last_seen, T0 + 500);
            break;
        case 1:
            assert_false(st->online);
            assert_int_equal(st->last_seen, T0 + 100);
            break;
        case 2:
            assert_false(st->online);
            assert_int_equal(st->last_seen, 0);
            break;
        }
    }
    /* The reply packs (what the server sends). */
    size_t len = chat__presence_reply__get_packed_size(&out.reply);
    assert_true(len > 0);
    pres_out_free(&out);
}

static void heartbeat_resync(void **state)
{
    assert_true(heartbeat("gw1", 3, T0)); /* unknown gateway with connections */
    assert_false(heartbeat("gw1", 3, T0 + 2000));
    assert_false(heartbeat("gw2", 0, T0)); /* nothing to re-send */
    /* ... but not heard either: the count may be old, so the first one
     * with connections asks for them, once. */
    assert_true(heartbeat("gw2", 1, T0 + 2000));
    assert_false(heartbeat("gw2", 1, T0 + 4000));
    assert_false(heartbeat("gw2", 0, T0 + 6000));
    assert_false(heartbeat("gw2", 2, T0 + 8000));
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
    CONNECT(B, "gw1", 3, T0 + 1000); /* B came back */
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

static void gateway_watched_from_first_connect(void **state)
{
    /* A gateway killed before its first heartbeat: its connection alone
     * makes it watched, so its users still go offline after the TTL. */
    int64_t now = chat_now_ms();
    CONNECT(A, "gw9", 1, now);
    assert_true(rnum("ZSCORE p:gwalive gw9") > 0);
    assert_int_equal(pres_sweep_gateways(&env, R, now + TTL + 5000), 1);
    assert_int_equal(calls_of(OFFLINE, A), 1);
    assert_int_equal(rnum("SCARD p:conns:%s", A), 0);
    /* Its first heartbeat after that asks for a resync. */
    pres_out out;
    pres_out_init(&out);
    Chat__HeartbeatReq hb = CHAT__HEARTBEAT_REQ__INIT;
    hb.gateway_id = "gw9";
    hb.connections = 1;
    pres_heartbeat(R, &hb, now + TTL + 6000, &out);
    assert_true(out.reply.resync);
    pres_out_free(&out);
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

/* ---- presence pushes ---- */

typedef struct notified {
    char user[CHAT_UUID_LEN + 1];
    bool online;
    int64_t at;
} notified;

static pthread_mutex_t nmu = PTHREAD_MUTEX_INITIALIZER;
static notified nlist[64];
static int n_notified;

static void record_notify(void *nctx, const char *user, bool online, int64_t at)
{
    pthread_mutex_lock(&nmu);
    if (n_notified < 64) {
        snprintf(nlist[n_notified].user, sizeof nlist[0].user, "%s", user);
        nlist[n_notified].online = online;
        nlist[n_notified].at = at;
        n_notified++;
    }
    pthread_mutex_unlock(&nmu);
}

static void notify_hooks(void **state)
{
    n_notified = 0;
    env.notify = record_notify;
    CONNECT(A, "gw1", 1, T0);        /* first: online */
    CONNECT(A, "gw2", 2, T0 + 1);    /* second: nothing */
    DISCONNECT(A, "gw1", 1, T0 + 2); /* not the last: nothing */
    DISCONNECT(A, "gw2", 2, T0 + 3); /* last: offline */
    heartbeat("gw3", 1, T0);
    CONNECT(B, "gw3", 3, T0);                   /* online */
    pres_sweep_gateways(&env, R, T0 + TTL + 1); /* gw3 dead: B offline */
    env.notify = NULL;
    assert_int_equal(n_notified, 4);
    const notified want[] = {
        {"", true, T0}, {"", false, T0 + 3}, {"", true, T0}, {"", false, T0 + TTL + 1}};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(nlist[i].user, i < 2 ? A : B);
        assert_int_equal(nlist[i].online, want[i].online);
        assert_int_equal(nlist[i].at, want[i].at);
    }
}

/* A fake svc-message (contacts) and publisher. */
typedef struct fake_deps {
    pthread_mutex_t mu;
    bool contacts_down, publish_down;
    int n_contacts; /* contacts handed out per call */
    int calls;
    int published;
    Chat__PresenceEvt last; /* strings not kept */
    char last_user[CHAT_UUID_LEN + 1];
    size_t last_n;
    char last_to0[CHAT_UUID_LEN + 1];
    int64_t last_at; /* contacts: joined before */
} fake_deps;

static fake_deps FD = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int fake_contacts(void *ctx, const char *user, int64_t at, char ***ids, size_t *n)
{
    fake_deps *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->calls++;
    f->last_at = at;
    bool down = f->contacts_down;
    int k = f->n_contacts;
    pthread_mutex_unlock(&f->mu);
    if (down)
        return -1;
    char **out = calloc((size_t)k + 1, sizeof *out);
    for (int i = 0; i < k; i++) {
        out[i] = malloc(CHAT_UUID_LEN + 1);
        snprintf(out[i], CHAT_UUID_LEN + 1, "%s", users[3 + i % 4]);
    }
    *ids = out;
    *n = (size_t)k;
    return 0;
}

static int fake_publish(void *ctx, const Chat__Event *ev)
{
    fake_deps *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rv = -1;
    if (!f->publish_down && ev->body_case == CHAT__EVENT__BODY_PRESENCE) {
        f->published++;
        f->last = *ev->presence;
        snprintf(f->last_user, sizeof f->last_user, "%s", ev->presence->user_id);
        f->last_n = ev->n_user_ids;
        snprintf(f->last_to0, sizeof f->last_to0, "%s", ev->n_user_ids ? ev->user_ids[0] : "");
        rv = 0;
    }
    pthread_mutex_unlock(&f->mu);
    return rv;
}

static void fake_deps_reset(int n_contacts)
{
    pthread_mutex_lock(&FD.mu);
    FD.contacts_down = FD.publish_down = false;
    FD.n_contacts = n_contacts;
    FD.calls = FD.published = 0;
    FD.last_n = 0;
    pthread_mutex_unlock(&FD.mu);
}

static const pres_notify_deps fdeps = {fake_contacts, fake_publish, &FD};

static void notify_run_rechecks_state(void **state)
{
    fake_deps_reset(2);
    CONNECT(A, "gw1", 1, T0);
    /* Online and still online: published with last_seen = now, to both. */
    assert_int_equal(pres_notify_run(&fdeps, R, A, true, T0, T0 + 50), 1);
    assert_string_equal(FD.last_user, A);
    assert_true(FD.last.online);
    assert_int_equal(FD.last.last_seen, T0 + 50);
    assert_int_equal(FD.last_n, 2);
    assert_string_equal(FD.last_to0, users[3]);
    assert_int_equal(FD.last_at, T0); /* contacts as of when it happened */
    /* An offline push while the user is online again: dropped (the online
     * one is the truth and comes, or came, by itself). */
    assert_int_equal(pres_notify_run(&fdeps, R, A, false, T0, T0 + 60), 0);
    DISCONNECT(A, "gw1", 1, T0 + 100);
    /* And the other way round; the offline push carries the close time. */
    assert_int_equal(pres_notify_run(&fdeps, R, A, true, T0, T0 + 150), 0);
    assert_int_equal(pres_notify_run(&fdeps, R, A, false, T0 + 100, T0 + 200), 1);
    assert_false(FD.last.online);
    assert_int_equal(FD.last.last_seen, T0 + 100);
    assert_int_equal(FD.published, 2);
    /* No contacts: nothing published (and nothing read). */
    fake_deps_reset(0);
    assert_int_equal(pres_notify_run(&fdeps, R, A, false, T0 + 100, T0 + 200), 0);
    assert_int_equal(FD.published, 0);
    /* svc-message or the publisher down: failed, nothing published. */
    fake_deps_reset(1);
    FD.contacts_down = true;
    assert_int_equal(pres_notify_run(&fdeps, R, A, false, T0 + 100, T0 + 200), -1);
    FD.contacts_down = false;
    FD.publish_down = true;
    assert_int_equal(pres_notify_run(&fdeps, R, A, false, T0 + 100, T0 + 200), -1);
    assert_int_equal(FD.published, 0);
    /* Redis down: the push is published as it came. */
    FD.publish_down = false;
    chat_redis *dead = chat_redis_new("127.0.0.1", 1, 200);
    assert_int_equal(pres_notify_run(&fdeps, dead, B, true, T0, T0 + 7), 1);
    assert_true(FD.last.online);
    assert_int_equal(FD.last.last_seen, T0 + 7);
    assert_int_equal(pres_notify_run(&fdeps, dead, B, false, T0 + 3, T0 + 7), 1);
    assert_int_equal(FD.last.last_seen, T0 + 3);
    chat_redis_free(dead);
}

static void notifier_threads(void **state)
{
    fake_deps_reset(1);
    pres_notifier *nt = NULL;
    /* Database 0 of the test Redis: nobody is connected there, so offline
     * pushes pass the re-check and online ones are dropped. */
    assert_int_equal(pres_notifier_start(&nt, &fdeps, "127.0.0.1", redis_port, 1000, 2, 4), 0);
    char u[10][CHAT_UUID_LEN + 1];
    for (int i = 0; i < 10; i++) {
        chat_uuid_new(u[i]);
        pres_notifier_push(nt, u[i], false, T0 + i);
    }
    pres_notifier_push(nt, u[0], true, T0);
    pres_notifier_push(nt, "not-a-user", false, T0); /* ignored */
    int calls = 0;
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&FD.mu);
        calls = FD.calls;
        pthread_mutex_unlock(&FD.mu);
        if (calls >= 11)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    pres_notifier_stop(nt);
    /* Queues of 4 on 2 threads: some pushes may have been dropped when
     * they came faster than the fake answered, never more than that. */
    assert_true(FD.calls >= 1 && FD.calls <= 11);
    assert_true(FD.published <= FD.calls);
    assert_true(FD.published >= 1);
    print_message("notifier: %d contacts calls, %d published\n", FD.calls, FD.published);
    pres_notifier_stop(NULL);
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
    redis_port = redis_fixture_port("test_pres_redis", TEST_DB);
    pres_scripts_init();
    F = calloc(1, sizeof *F);
    env = (pres_env){fake_match_call, F, GRACE, TTL, NULL, NULL, 0, 0};
    R = connect_db();

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(first_and_last, setup, teardown),
        cmocka_unit_test_setup_teardown(disconnect_without_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(last_even_if_match_is_down, setup, teardown),
        cmocka_unit_test_setup_teardown(query_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(bans_versioned_and_pruned, setup, teardown),
        cmocka_unit_test_setup_teardown(heartbeat_resync, setup, teardown),
        cmocka_unit_test_setup_teardown(grace_claimed_once, setup, teardown),
        cmocka_unit_test_setup_teardown(grace_retried_when_match_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(grace_race_between_replicas, setup, teardown),
        cmocka_unit_test_setup_teardown(gateway_watched_from_first_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_gateway_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_gateway_keeps_resynced_connections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(dead_gateway_bounded_per_tick, setup, teardown),
        cmocka_unit_test_setup_teardown(notify_hooks, setup, teardown),
        cmocka_unit_test_setup_teardown(notify_run_rechecks_state, setup, teardown),
        cmocka_unit_test_setup_teardown(notifier_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(redis_down_is_unavailable, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    chat_redis_free(R);
    free(F);
    return failed;
}
