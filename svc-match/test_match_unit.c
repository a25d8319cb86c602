/* Pure parts of svc-match: script reply parsing, validation, reply building.
 * No Redis, no network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "match.h"
#include "fake_reply.h"

#define UA "11111111-1111-4111-8111-111111111111"

/* ---- match_parse_pair ---- */

static void parse_pair_states(void **state)
{
    match_pair p;
    redisReply *r = rep_arr(1, rep_str("in_chat"));
    assert_int_equal(match_parse_pair(r, &p), 0);
    assert_int_equal(p.status, MATCH_PAIR_IN_CHAT);
    rep_free(r);

    r = rep_arr(1, rep_str("searching"));
    assert_int_equal(match_parse_pair(r, &p), 0);
    assert_int_equal(p.status, MATCH_PAIR_SEARCHING);
    rep_free(r);

    r = rep_arr(3, rep_str("paired"), rep_str(UA), rep_str("42"));
    assert_int_equal(match_parse_pair(r, &p), 0);
    assert_int_equal(p.status, MATCH_PAIR_PAIRED);
    assert_string_equal(p.partner, UA);
    assert_string_equal(p.ticket, "42");
    rep_free(r);
}

static void parse_pair_rejects_garbage(void **state)
{
    match_pair p;
    memset(&p, 0x5a, sizeof p);
    match_pair before = p;
    redisReply *bad[] = {
        rep_new(REDIS_REPLY_NIL),
        rep_arr(0),
        rep_arr(1, rep_str("paired")),
        rep_arr(3, rep_str("paired"), rep_str("not-a-uuid"), rep_str("1")),
        rep_arr(3, rep_str("paired"), rep_str(UA), rep_str("")),
        rep_arr(3, rep_str("paired"), rep_str(UA), rep_str("123456789012345678901234567890")),
        rep_arr(3, rep_str("paired"), rep_new(REDIS_REPLY_INTEGER), rep_str("1")),
        rep_arr(1, rep_str("what")),
        rep_arr(1, rep_new(REDIS_REPLY_INTEGER)),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(match_parse_pair(bad[i], &p), -1);
        assert_memory_equal(&p, &before, sizeof p); /* untouched on failure */
        rep_free(bad[i]);
    }
    assert_int_equal(match_parse_pair(NULL, &p), -1);
}

/* ---- match_parse_gone ---- */

static void parse_gone(void **state)
{
    match_gone g;
    redisReply *r = rep_new(REDIS_REPLY_NIL);
    assert_int_equal(match_parse_gone(r, &g), 0);
    rep_free(r);

    r = rep_arr(2, rep_str("conv-1"), rep_str(UA));
    assert_int_equal(match_parse_gone(r, &g), 1);
    assert_string_equal(g.conv, "conv-1");
    assert_string_equal(g.partner, UA);
    rep_free(r);

    r = rep_arr(2, rep_str("conv-1"), rep_str(""));
    assert_int_equal(match_parse_gone(r, &g), 1);
    assert_string_equal(g.partner, "");
    rep_free(r);

    char longid[MATCH_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    redisReply *bad[] = {
        rep_arr(1, rep_str("c")),
        rep_arr(2, rep_str(""), rep_str(UA)),
        rep_arr(2, rep_str(longid), rep_str(UA)),
        rep_arr(2, rep_str("c"), rep_str(UA "x")),
        rep_new(REDIS_REPLY_INTEGER),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(match_parse_gone(bad[i], &g), -1);
        rep_free(bad[i]);
    }
}

/* ---- validation before any backend is touched ---- */

static int never_call(void *ctx, const Chat__MessageRequest *req, Chat__MessageReply **reply)
{
    fail_msg("svc-message must not be called");
    return -1;
}

static void never_publish(void *ctx, const Chat__Event *ev)
{
    fail_msg("nothing must be published");
}

static const match_env no_env = {never_call, never_publish, NULL, 60, 0, 0};

/* r is NULL: a request that reached Redis would crash the test. */
static void handle_rejects_bad_input(void **state)
{
    match_out out;
    Chat__MatchRequest req = CHAT__MATCH_REQUEST__INIT;

    match_out_init(&out);
    match_handle(&no_env, NULL, &req, &out);
    assert_int_equal(out.reply.code, CHAT__CODE__BAD_REQUEST);
    match_out_free(&out);

    const char *bad_users[] = {"", "x", UA "0", "11111111-1111-4111-8111-11111111111g",
                               "11111111_1111-4111-8111-111111111111"};
    for (size_t i = 0; i < sizeof bad_users / sizeof bad_users[0]; i++) {
        Chat__StartSearchReq ss = CHAT__START_SEARCH_REQ__INIT;
        ss.user_id = (char *)bad_users[i];
        req.body_case = CHAT__MATCH_REQUEST__BODY_START_SEARCH;
        req.start_search = &ss;
        match_out_init(&out);
        match_handle(&no_env, NULL, &req, &out);
        assert_int_equal(out.reply.code, CHAT__CODE__BAD_REQUEST);
        assert_true(strlen(out.reply.detail) > 0);
        match_out_free(&out);
    }

    char longid[MATCH_ID_MAX + 2];
    memset(longid, 'c', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    const char *bad_convs[] = {"", longid};
    for (size_t i = 0; i < 2; i++) {
        Chat__EndChatReq ec = CHAT__END_CHAT_REQ__INIT;
        ec.user_id = UA;
        ec.conversation_id = (char *)bad_convs[i];
        req.body_case = CHAT__MATCH_REQUEST__BODY_END_CHAT;
        req.end_chat = &ec;
        match_out_init(&out);
        match_handle(&no_env, NULL, &req, &out);
        assert_int_equal(out.reply.code, CHAT__CODE__BAD_REQUEST);
        match_out_free(&out);
    }
}

static void conv_id_bounds(void **state)
{
    char id[MATCH_ID_MAX + 2];
    memset(id, 'a', sizeof id);
    id[MATCH_ID_MAX] = '\0';
    assert_true(match_conv_id_valid(id));
    id[MATCH_ID_MAX] = 'a';
    id[MATCH_ID_MAX + 1] = '\0';
    assert_false(match_conv_id_valid(id));
    assert_false(match_conv_id_valid(""));
    assert_false(match_conv_id_valid(NULL));
}

static void out_lifecycle(void **state)
{
    match_out out;
    match_out_init(&out);
    assert_int_equal(out.reply.code, CHAT__CODE__OK);
    match_out_err(&out, CHAT__CODE__NOT_FOUND, "no %s here, %d", "chat", 7);
    assert_int_equal(out.reply.code, CHAT__CODE__NOT_FOUND);
    assert_string_equal(out.reply.detail, "no chat here, 7");
    /* A reply with timeouts packs and frees cleanly. */
    out.timeouts = calloc(2, sizeof *out.timeouts);
    out.timeouts[0] = strdup("c1");
    out.timeouts[1] = strdup("c2");
    out.reply.n_timed_out_conversation_ids = 2;
    out.reply.timed_out_conversation_ids = out.timeouts;
    size_t len = chat__match_reply__get_packed_size(&out.reply);
    uint8_t *buf = malloc(len);
    chat__match_reply__pack(&out.reply, buf);
    Chat__MatchReply *back = chat__match_reply__unpack(NULL, len, buf);
    assert_non_null(back);
    assert_int_equal(back->n_timed_out_conversation_ids, 2);
    assert_string_equal(back->timed_out_conversation_ids[1], "c2");
    chat__match_reply__free_unpacked(back, NULL);
    free(buf);
    match_out_free(&out);
    match_out_free(&out); /* twice is fine */
    match_out_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_pair_states), cmocka_unit_test(parse_pair_rejects_garbage),
        cmocka_unit_test(parse_gone),        cmocka_unit_test(handle_rejects_bad_input),
        cmocka_unit_test(conv_id_bounds),    cmocka_unit_test(out_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
