/* bans.c: the gateway's ban table, as the admin plane and svc-presence's
 * list write it. The interesting part is the swap: a list svc-presence sent
 * before an operator's ban or unban reached this gateway must not undo it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gateway.h"

#define A "0f8fad5b-d9cb-469f-a165-70867728950e"
#define B "1f8fad5b-d9cb-469f-a165-70867728950e"
#define C "2f8fad5b-d9cb-469f-a165-70867728950e"

static gw_server S;

static int setup(void **state)
{
    memset(&S, 0, sizeof S);
    return 0;
}

static int teardown(void **state)
{
    gw_bans_free(&S);
    return 0;
}

/* svc-presence's answer to a BansReq with n entries. */
static void reply_with(const Chat__BanEntry *entries, size_t n, uint64_t version)
{
    Chat__BanEntry copies[4], *ptrs[4];
    for (size_t i = 0; i < n; i++) {
        copies[i] = entries[i];
        ptrs[i] = &copies[i];
    }
    Chat__PresenceReply r = CHAT__PRESENCE_REPLY__INIT;
    r.bans = ptrs;
    r.n_bans = n;
    r.bans_version = version;
    gw_item it = {.op = GW_OP_BANS};
    it.r.pres = &r;
    S.bans_asking = true;
    gw_bans_reply(&S, &it);
}

static Chat__BanEntry entry(const char *user, int64_t until_ms)
{
    Chat__BanEntry e = CHAT__BAN_ENTRY__INIT;
    e.user_id = (char *)user;
    e.until_ms = until_ms;
    return e;
}

static void test_set_lift_expire(void **state)
{
    int64_t now = chat_now_ms();
    assert_int_equal(gw_bans_until(&S, A), -1);
    assert_int_equal(gw_bans_set(&S, A, 0), 0);
    assert_int_equal(gw_bans_set(&S, B, now + 60000), 0);
    assert_int_equal(gw_bans_set(&S, C, now - 1), 0); /* over already */
    assert_true(gw_banned(&S, A));
    assert_int_equal(gw_bans_until(&S, A), 0);
    assert_int_equal(gw_bans_until(&S, B), now + 60000);
    assert_false(gw_banned(&S, C));
    /* Upper-case ids are the same user; a non-UUID is refused. */
    assert_true(gw_banned(&S, "0F8FAD5B-D9CB-469F-A165-70867728950E"));
    assert_int_equal(gw_bans_set(&S, "not-a-user", 0), -1);
    gw_bans_lift(&S, A);
    assert_false(gw_banned(&S, A));
    assert_int_equal(gw_bans_count(&S), 1); /* B; A's lift is no ban */
}

static void test_list_replaces_the_table(void **state)
{
    int64_t now = chat_now_ms();
    S.bans_asked_ms = chat_mono_ms();
    const Chat__BanEntry list[] = {entry(A, 0), entry(B, now + 60000), entry(C, now - 1),
                                   entry("garbage", 0)};
    reply_with(list, 4, 7);
    assert_true(S.bans_synced);
    assert_int_equal(S.bans_version, 7);
    assert_true(gw_banned(&S, A));
    assert_true(gw_banned(&S, B));
    assert_false(gw_banned(&S, C)); /* expired on arrival */
    assert_int_equal(gw_bans_count(&S), 2);
    /* The next list is the whole truth: A lifted elsewhere, B still there. */
    S.bans_asked_ms = chat_mono_ms();
    reply_with(list + 1, 1, 8);
    assert_false(gw_banned(&S, A));
    assert_true(gw_banned(&S, B));
    assert_int_equal(S.bans_version, 8);
}

static void test_operator_wins_over_an_older_list(void **state)
{
    /* The list was asked for, then the operator's ban of B and unban of A
     * reached this gateway, then the (older) list arrives with A and
     * without B: both of the operator's changes stand. */
    S.bans_asked_ms = chat_mono_ms() - 1000;
    assert_int_equal(gw_bans_set(&S, A, 0), 0);
    gw_bans_lift(&S, A);
    assert_int_equal(gw_bans_set(&S, B, 0), 0);
    const Chat__BanEntry older[] = {entry(A, 0)};
    reply_with(older, 1, 9);
    assert_false(gw_banned(&S, A));
    assert_true(gw_banned(&S, B));
    /* A list asked for after them is the truth again (the tombstone is gone). */
    S.bans_asked_ms = chat_mono_ms() + 1000;
    reply_with(older, 1, 10);
    assert_true(gw_banned(&S, A));
    assert_false(gw_banned(&S, B));
}

static void test_failed_fetch_keeps_the_table(void **state)
{
    assert_int_equal(gw_bans_set(&S, A, 0), 0);
    Chat__PresenceReply r = CHAT__PRESENCE_REPLY__INIT;
    r.code = CHAT__CODE__UNAVAILABLE;
    gw_item it = {.op = GW_OP_BANS};
    it.r.pres = &r;
    gw_bans_reply(&S, &it);
    assert_true(gw_banned(&S, A));
    assert_false(S.bans_synced);
    gw_item lost = {.op = GW_OP_BANS, .err = -1};
    gw_bans_reply(&S, &lost);
    assert_true(gw_banned(&S, A));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_lift_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_replaces_the_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_wins_over_an_older_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_fetch_keeps_the_table, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
