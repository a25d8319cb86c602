/* Pure parts of svc-presence: set members, query reply parsing, request
 * validation. No Redis, no network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "presence.h"
#include "fake_reply.h"

#define UA "11111111-1111-4111-8111-111111111111"

static void members(void **state)
{
    char buf[64];
    assert_int_equal(pres_conn_member(buf, sizeof buf, "gw1", 42), 6);
    assert_string_equal(buf, "gw1/42");
    assert_int_equal(pres_user_member(buf, sizeof buf, UA, UINT64_MAX), 36 + 1 + 20);
    assert_string_equal(buf, UA "/18446744073709551615");
    assert_int_equal(pres_conn_member(buf, 6, "gw1", 42), -1); /* no room for the NUL */
}

static void parse_query(void **state)
{
    bool online[3];
    int64_t seen[3];
    redisReply *r = rep_arr(6, rep_int(2), rep_str(""), rep_int(0), rep_str("1700000000123"),
                            rep_int(0), rep_str(""));
    assert_int_equal(pres_parse_query(r, 3, online, seen), 0);
    assert_true(online[0]);
    assert_false(online[1]);
    assert_int_equal(seen[1], 1700000000123LL);
    assert_false(online[2]);
    assert_int_equal(seen[2], 0);
    rep_free(r);

    /* Garbage in p:seen reads as unknown. */
    r = rep_arr(2, rep_int(0), rep_str("12abc"));
    assert_int_equal(pres_parse_query(r, 1, online, seen), 0);
    assert_int_equal(seen[0], 0);
    rep_free(r);

    redisReply *bad[] = {
        rep_arr(1, rep_int(0)),
        rep_arr(2, rep_str("0"), rep_str("")),
        rep_arr(2, rep_int(0), rep_new(REDIS_REPLY_NIL)),
        rep_new(REDIS_REPLY_NIL),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(pres_parse_query(bad[i], 1, online, seen), -1);
        rep_free(bad[i]);
    }
}

static int never_call(void *ctx, const Chat__MatchRequest *req, Chat__MatchReply **reply)
{
    fail_msg("svc-match must not be called");
    return -1;
}

static const pres_env no_env = {never_call, NULL, 15000, 10000, NULL, NULL, 0, 0};

/* r is NULL: a request that reached Redis would crash the test. */
static Chat__Code handle_nullredis(const Chat__PresenceRequest *req)
{
    pres_out out;
    pres_out_init(&out);
    pres_handle(&no_env, NULL, req, 1000, &out);
    Chat__Code code = out.reply.code;
    if (code != CHAT__CODE__OK)
        assert_true(strlen(out.reply.detail) > 0);
    pres_out_free(&out);
    return code;
}

static void rejects_bad_input(void **state)
{
    Chat__PresenceRequest req = CHAT__PRESENCE_REQUEST__INIT;
    assert_int_equal(handle_nullredis(&req), CHAT__CODE__BAD_REQUEST);

    char longgw[PRES_GATEWAY_ID_MAX + 2];
    memset(longgw, 'g', sizeof longgw - 1);
    longgw[sizeof longgw - 1] = '\0';
    Chat__ConnRef cr = CHAT__CONN_REF__INIT;
    Chat__ConnectReq c = CHAT__CONNECT_REQ__INIT;
    req.body_case = CHAT__PRESENCE_REQUEST__BODY_CONNECT;
    req.connect = &c;
    c.user_id = "nope";
    c.conn = &cr;
    cr.gateway_id = "gw1";
    assert_int_equal(handle_nullredis(&req), CHAT__CODE__BAD_REQUEST);
    c.user_id = UA;
    c.conn = NULL;
    assert_int_equal(handle_nullredis(&req), CHAT__CODE__BAD_REQUEST);
    c.conn = &cr;
    cr.gateway_id = "";
    assert_int_equal(handle_nullredis(&req), CHAT__CODE__BAD_REQUEST);
    cr.gateway_id = longgw;
    assert_int_equal(handle_nullredis(&req), CHAT__CODE__BAD_REQUEST);

    Chat__DisconnectReq d = CHAT__DISCONNECT_REQ__INIT;
    req.body_case = CHAT__PRESENCE_REQUEST__BODY_DISCONNECT;
    req.disconnect = &d;
    d.user_id = UA;
    d.conn = NULL;
    assert_int_equal(handle_nullredis(&req), CHAT__CODE__BAD_REQUEST);

    Chat__HeartbeatReq h = CHAT__HEARTBEAT_REQ__INIT;
    req.body_case = CHAT__PRESENCE_REQUEST__BODY_HEARTBEAT;
    req.heartbeat = &h;
    h.gateway_id = "";
    assert_int_equal(handle_nullredis(&req), CHAT__CODE__BAD_REQUEST);
    h.gateway_id = longgw;
    assert_int_equal(handle_nullredis(&req), CHAT__CODE__BAD_REQUEST);

    Chat__QueryReq q = CHAT__QUERY_REQ__INIT;
    req.body_case = CHAT__PRESENCE_REQUEST__BODY_QUERY;
    req.query = &q;
    char *ids[PRES_QUERY_MAX + 1];
    for (int i = 0; i <= PRES_QUERY_MAX; i++)
        ids[i] = UA;
    q.user_ids = ids;
    q.n_user_ids = PRES_QUERY_MAX + 1;
    assert_int_equal(handle_nullredis(&req), CHAT__CODE__BAD_REQUEST);
    q.n_user_ids = 3;
    ids[2] = "11111111-1111-4111-8111-11111111111";
    assert_int_equal(handle_nullredis(&req), CHAT__CODE__BAD_REQUEST);
    /* No ids: nothing to look up, an empty answer. */
    q.n_user_ids = 0;
    assert_int_equal(handle_nullredis(&req), CHAT__CODE__OK);
}

static void out_lifecycle(void **state)
{
    pres_out out;
    pres_out_init(&out);
    assert_int_equal(out.reply.code, CHAT__CODE__OK);
    out.reply.first = 1;
    pres_out_err(&out, CHAT__CODE__UNAVAILABLE, "down %d", 1);
    assert_int_equal(out.reply.code, CHAT__CODE__UNAVAILABLE);
    assert_false(out.reply.first);
    assert_string_equal(out.reply.detail, "down 1");
    pres_out_free(&out);
    pres_out_free(&out);
    pres_out_free(NULL);
}

/* The urgent lane takes heartbeats, and only them. */
static void heartbeats_are_urgent(void **state)
{
    (void)state;
    Chat__HeartbeatReq hb = CHAT__HEARTBEAT_REQ__INIT;
    hb.gateway_id = "gw1";
    hb.connections = 5;
    Chat__ConnectReq cr = CHAT__CONNECT_REQ__INIT;
    cr.user_id = "u";
    Chat__QueryReq q = CHAT__QUERY_REQ__INIT;
    Chat__PresenceRequest reqs[3] = {CHAT__PRESENCE_REQUEST__INIT, CHAT__PRESENCE_REQUEST__INIT,
                                     CHAT__PRESENCE_REQUEST__INIT};
    reqs[0].body_case = CHAT__PRESENCE_REQUEST__BODY_HEARTBEAT;
    reqs[0].heartbeat = &hb;
    reqs[1].body_case = CHAT__PRESENCE_REQUEST__BODY_CONNECT;
    reqs[1].connect = &cr;
    reqs[2].body_case = CHAT__PRESENCE_REQUEST__BODY_QUERY;
    reqs[2].query = &q;
    for (int i = 0; i < 3; i++) {
        uint8_t buf[128];
        size_t n = chat__presence_request__pack(&reqs[i], buf);
        assert_int_equal(pres_server_urgent(buf, n), i == 0);
    }
    assert_false(pres_server_urgent(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(members),       cmocka_unit_test(heartbeats_are_urgent),
        cmocka_unit_test(parse_query),   cmocka_unit_test(rejects_bad_input),
        cmocka_unit_test(out_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
