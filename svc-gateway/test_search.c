/* search.c: the random-chat frames of one connection come out in an order a
 * client can follow, whatever order their replies and events arrive in.
 * This test defines gw_conn_send and gw_conn_push itself (the linker then
 * takes them from here, not from conn.c) and records what would be sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway.h"

#define MAX_SENT 16

/* "matched X", "chat_ended X", "search_stopped"; a trailing "!" marks a
 * direct send (a reply), not a push. */
static char sent[MAX_SENT][GW_ID_MAX + 32];
static int n_sent;

static void record(gw_frame *f, bool direct)
{
    assert_non_null(f);
    assert_true(n_sent < MAX_SENT);
    cJSON *j = cJSON_Parse(gw_frame_data(f));
    assert_non_null(j);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(j, "conversation_id");
    snprintf(sent[n_sent++], sizeof sent[0], "%s%s%s%s", type->valuestring,
             cJSON_IsString(conv) ? " " : "", cJSON_IsString(conv) ? conv->valuestring : "",
             direct ? "!" : "");
    cJSON_Delete(j);
    gw_frame_unref(f);
}

void gw_conn_send(gw_server *s, gw_conn *c, gw_frame *f)
{
    record(f, true);
}

void gw_conn_push(gw_server *s, gw_conn *c, gw_frame *f)
{
    record(f, false);
}

/* The frames recorded since the last call, then forgets them. */
static void expect_sent(int n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *want = va_arg(ap, const char *);
        assert_true(i < n_sent);
        assert_string_equal(sent[i], want);
    }
    va_end(ap);
    assert_int_equal(n_sent, n);
    n_sent = 0;
}

static gw_server S;
static gw_conn C;

static int setup(void **state)
{
    memset(&S, 0, sizeof S);
    memset(&C, 0, sizeof C);
    n_sent = 0;
    return 0;
}

static int teardown(void **state)
{
    gw_search_free(&C);
    return 0;
}

static gw_frame *matched(const char *conv)
{
    return gw_render_matched(conv);
}

static gw_frame *ended(const char *conv)
{
    return gw_render_chat_ended(conv, "partner");
}

static void searching(void)
{
    gw_search_started(&C);
    gw_search_replied(&S, &C, true, NULL);
    expect_sent(0);
}

static void waiting_user_gets_its_match(void **state)
{
    searching();
    gw_search_push_matched(&S, &C, "X", matched("X"));
    expect_sent(1, "matched X");
    gw_search_push_end(&S, &C, "X", ended("X"));
    expect_sent(1, "chat_ended X");
}

static void paired_at_once_the_event_is_dropped(void **state)
{
    gw_search_started(&C);
    gw_search_replied(&S, &C, true, "X");
    expect_sent(1, "matched X!");
    gw_search_push_matched(&S, &C, "X", matched("X")); /* another tab's copy */
    expect_sent(0);
}

static void matched_waits_for_searching(void **state)
{
    /* The event overtook the start_search reply: held until it is answered. */
    gw_search_started(&C);
    gw_search_push_matched(&S, &C, "X", matched("X"));
    expect_sent(0);
    gw_search_replied(&S, &C, true, NULL);
    expect_sent(1, "matched X");
}

static void end_before_matched_while_searching(void **state)
{
    /* The partner's end (another replica) came before the match event. */
    searching();
    gw_search_push_end(&S, &C, "X", ended("X"));
    expect_sent(2, "matched X", "chat_ended X");
    gw_search_push_matched(&S, &C, "X", matched("X")); /* the late one */
    expect_sent(0);
    /* The next search is matched as usual. */
    searching();
    gw_search_push_matched(&S, &C, "Y", matched("Y"));
    expect_sent(1, "matched Y");
}

static void everything_held_during_the_start(void **state)
{
    gw_search_started(&C);
    gw_search_push_end(&S, &C, "X", ended("X"));
    gw_search_push_matched(&S, &C, "X", matched("X"));
    expect_sent(0);
    gw_search_replied(&S, &C, true, NULL);
    expect_sent(2, "matched X", "chat_ended X");
}

static void paired_at_once_end_held(void **state)
{
    gw_search_started(&C);
    gw_search_push_end(&S, &C, "X", ended("X"));
    gw_search_replied(&S, &C, true, "X");
    expect_sent(2, "matched X!", "chat_ended X");
}

static void stop_after_the_match(void **state)
{
    /* The stop reply names the chat; its event comes afterwards. */
    searching();
    gw_search_stopped(&S, &C, "X", "t1");
    expect_sent(2, "matched X!", "search_stopped!");
    gw_search_push_matched(&S, &C, "X", matched("X"));
    expect_sent(0);
}

static void stop_after_match_event(void **state)
{
    searching();
    gw_search_push_matched(&S, &C, "X", matched("X"));
    gw_search_stopped(&S, &C, "X", "t1");
    expect_sent(2, "matched X", "search_stopped!");
}

static void stop_that_won(void **state)
{
    searching();
    gw_search_stopped(&S, &C, NULL, "t1");
    expect_sent(1, "search_stopped!");
    assert_false(C.searching);
}

static void not_searching_gets_no_late_match(void **state)
{
    /* Another tab of the user, not searching itself: the end without a
     * `matched`, and no `matched` after it. */
    gw_search_push_end(&S, &C, "X", ended("X"));
    expect_sent(1, "chat_ended X");
    gw_search_push_matched(&S, &C, "X", matched("X"));
    expect_sent(0);
}

static void refused_search_releases_what_it_held(void **state)
{
    gw_search_started(&C);
    gw_search_push_matched(&S, &C, "X", matched("X"));
    gw_search_replied(&S, &C, false, NULL); /* e.g. unavailable */
    expect_sent(1, "matched X");
}

static void closing_frees_what_is_held(void **state)
{
    gw_search_started(&C);
    gw_search_push_matched(&S, &C, "X", matched("X"));
    gw_search_push_end(&S, &C, "X", ended("X"));
    gw_search_free(&C); /* the leak check of the ASan build watches this */
    assert_null(C.held);
    expect_sent(0);
}

/* A resume's notice and the live event of the same chat (the event slower
 * than the reconnect): chat_ended once, whichever comes first. */
static void resume_notice_and_live_end_once(void **state)
{
    gw_search_notice_ended(&S, &C, "X", "partner");
    expect_sent(1, "chat_ended X!");
    gw_search_push_ended(&S, &C, "X", ended("X"));
    expect_sent(0);
    gw_search_push_ended(&S, &C, "Y", ended("Y"));
    expect_sent(1, "chat_ended Y");
    gw_search_notice_ended(&S, &C, "Y", "timeout");
    expect_sent(0);
    /* partner_disconnected is no end: it does not use up the chat's one end. */
    searching();
    gw_search_push_matched(&S, &C, "Z", matched("Z"));
    gw_search_push_end(&S, &C, "Z", ended("Z"));
    gw_search_push_ended(&S, &C, "Z", ended("Z"));
    expect_sent(3, "matched Z", "chat_ended Z", "chat_ended Z");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(waiting_user_gets_its_match),
        T(paired_at_once_the_event_is_dropped),
        T(matched_waits_for_searching),
        T(end_before_matched_while_searching),
        T(everything_held_during_the_start),
        T(paired_at_once_end_held),
        T(stop_after_the_match),
        T(stop_after_match_event),
        T(stop_that_won),
        T(not_searching_gets_no_late_match),
        T(refused_search_releases_what_it_held),
        T(closing_frees_what_is_held),
        T(resume_notice_and_live_end_once),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
