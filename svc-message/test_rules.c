/* Unit tests of rules.c: validation, routing, mapping, small formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "message.h"

#include <stdlib.h>
#include <string.h>

#define U1 "0b7e6a2c-1f5e-4c3a-9a51-6f1d2c3b4a01"
#define U2 "5c2d9e8f-3a4b-4c5d-8e6f-7a8b9c0d1e02"
#define U1_UPPER "0B7E6A2C-1F5E-4C3A-9A51-6F1D2C3B4A01"

static void test_utf8(void **state)
{
    const char *ok[] = {
        "", "plain", "h\xc3\xa9llo", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_true(msg_utf8_valid(ok[i], strlen(ok[i])));
    const char *bad[] = {
        "\xff",             /* never valid */
        "\x80",             /* continuation first */
        "\xc3",             /* truncated */
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong */
        "\xed\xa0\x80",     /* UTF-16 surrogate */
        "\xf4\x90\x80\x80", /* past U+10FFFF */
        "\xe2\x82",         /* truncated 3-byte */
        "a\xe2(\xa1",       /* bad continuation */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(msg_utf8_valid(bad[i], strlen(bad[i])));
}

static Chat__Code validate_send(const char *conv, const char *sender, const char *cmid,
                                const char *text, long long max)
{
    Chat__SendReq s = CHAT__SEND_REQ__INIT;
    s.conversation_id = (char *)conv;
    s.sender = (char *)sender;
    s.client_msg_id = (char *)cmid;
    s.text = (char *)text;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_SEND;
    req.send = &s;
    const char *detail = NULL;
    Chat__Code c = msg_validate(&req, max, &detail);
    assert_non_null(detail);
    return c;
}

static void test_validate_send(void **state)
{
    assert_int_equal(validate_send(U1, U2, "c", "hi", 500), CHAT__CODE__OK);
    assert_int_equal(validate_send("nope", U2, "c", "hi", 500), CHAT__CODE__NOT_FOUND);
    assert_int_equal(validate_send(U1, "nope", "c", "hi", 500), CHAT__CODE__BAD_REQUEST);
    assert_int_equal(validate_send(U1, U2, "", "hi", 500), CHAT__CODE__BAD_REQUEST);
    assert_int_equal(validate_send(U1, U2, "c", "", 500), CHAT__CODE__BAD_REQUEST);
    assert_int_equal(validate_send(U1, U2, "c", "\xc3(", 500), CHAT__CODE__BAD_REQUEST);
    assert_int_equal(validate_send(U1, U2, "\xff", "hi", 500), CHAT__CODE__BAD_REQUEST);

    char id[66];
    memset(id, 'i', sizeof id);
    id[64] = '\0';
    assert_int_equal(validate_send(U1, U2, id, "hi", 500), CHAT__CODE__OK);
    id[64] = 'i';
    id[65] = '\0';
    assert_int_equal(validate_send(U1, U2, id, "hi", 500), CHAT__CODE__BAD_REQUEST);

    /* The byte bound is 4 * max: exactly there passes, one more is too long. */
    char text[42];
    memset(text, 'x', sizeof text);
    text[40] = '\0';
    assert_int_equal(validate_send(U1, U2, "c", text, 10), CHAT__CODE__OK);
    text[40] = 'x';
    text[41] = '\0';
    assert_int_equal(validate_send(U1, U2, "c", text, 10), CHAT__CODE__TOO_LONG);
}

static Chat__Code validate_create(Chat__ConversationKind kind, size_t n, char **ids)
{
    Chat__CreateConversationReq c = CHAT__CREATE_CONVERSATION_REQ__INIT;
    c.kind = kind;
    c.n_member_ids = n;
    c.member_ids = ids;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_CREATE_CONVERSATION;
    req.create_conversation = &c;
    const char *detail;
    return msg_validate(&req, 500, &detail);
}

static void test_validate_create(void **state)
{
    char *pair[] = {U1, U2};
    char *same[] = {U1, U1_UPPER};
    char *bad[] = {U1, "x"};
    assert_int_equal(validate_create(CHAT__CONVERSATION_KIND__RANDOM, 2, pair), CHAT__CODE__OK);
    assert_int_equal(validate_create(CHAT__CONVERSATION_KIND__DM, 2, pair), CHAT__CODE__OK);
    assert_int_equal(validate_create(CHAT__CONVERSATION_KIND__ROOM, 0, NULL), CHAT__CODE__OK);
    assert_int_equal(validate_create(CHAT__CONVERSATION_KIND__ROOM, 2, same), CHAT__CODE__OK);
    assert_int_equal(validate_create(CHAT__CONVERSATION_KIND__RANDOM, 1, pair),
                     CHAT__CODE__BAD_REQUEST);
    assert_int_equal(validate_create(CHAT__CONVERSATION_KIND__DM, 2, same),
                     CHAT__CODE__BAD_REQUEST);
    assert_int_equal(validate_create(CHAT__CONVERSATION_KIND__RANDOM, 2, bad),
                     CHAT__CODE__BAD_REQUEST);
    assert_int_equal(validate_create(CHAT__CONVERSATION_KIND__KIND_UNKNOWN, 2, pair),
                     CHAT__CODE__BAD_REQUEST);
    assert_int_equal(validate_create((Chat__ConversationKind)42, 2, pair),
                     CHAT__CODE__BAD_REQUEST);
    char **many = calloc(MSG_MAX_MEMBERS + 1, sizeof *many);
    for (int i = 0; i <= MSG_MAX_MEMBERS; i++)
        many[i] = U1;
    assert_int_equal(validate_create(CHAT__CONVERSATION_KIND__ROOM, MSG_MAX_MEMBERS + 1, many),
                     CHAT__CODE__BAD_REQUEST);
    free(many);
}

static void test_validate_others(void **state)
{
    const char *detail;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);

    Chat__ConversationInfoReq info = CHAT__CONVERSATION_INFO_REQ__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_CONVERSATION_INFO;
    req.conversation_info = &info;
    info.conversation_id = U1;
    info.user_id = U2;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    info.user_id = "";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);
    info.user_id = U2;
    info.conversation_id = "robert'); drop table";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__NOT_FOUND);

    /* close: the user is optional (svc-match may not name one). */
    Chat__CloseConversationReq cl = CHAT__CLOSE_CONVERSATION_REQ__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_CLOSE_CONVERSATION;
    req.close_conversation = &cl;
    cl.conversation_id = U1;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    cl.user_id = "bad";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);

    Chat__ReplayReq rp = CHAT__REPLAY_REQ__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_REPLAY;
    req.replay = &rp;
    rp.user_id = U1;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    rp.after_conversation_id = U2;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    rp.after_conversation_id = "zz";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);

    Chat__ReceiptReq rc = CHAT__RECEIPT_REQ__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_RECEIPT;
    req.receipt = &rc;
    rc.user_id = U1;
    rc.conversation_id = U2;
    rc.seq = 1;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    rc.seq = 0;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);
    rc.seq = (uint64_t)INT64_MAX + 1;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);
    rc.seq = 1;
    rc.conversation_id = "x";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__NOT_FOUND);

    /* A oneof case set with its pointer missing must not crash. */
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_SEND;
    req.send = NULL;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);
}

static void test_validate_conversations(void **state)
{
    const char *detail;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;

    Chat__RegisterUserReq ru = CHAT__REGISTER_USER_REQ__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_REGISTER_USER;
    req.register_user = &ru;
    ru.user_id = U1;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    ru.user_id = "x";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);

    Chat__OpenDmReq dm = CHAT__OPEN_DM_REQ__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_OPEN_DM;
    req.open_dm = &dm;
    dm.user_id = U1;
    dm.peer_id = U2;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    dm.peer_id = U1_UPPER; /* oneself, in another case */
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);
    dm.peer_id = "";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);
    dm.peer_id = U2;
    dm.user_id = "nope";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);

    Chat__JoinRoomReq jr = CHAT__JOIN_ROOM_REQ__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_JOIN_ROOM;
    req.join_room = &jr;
    jr.user_id = U1;
    const char *good[] = {"a", "lobby", "a-b_c-9",
                          "0123456789012345678901234567890123456789"
                          "012345678901234567890123"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        jr.room = (char *)good[i];
        assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
        assert_true(chat_room_valid(good[i]));
    }
    const char *bad[] = {"",
                         "Lobby",
                         "a b",
                         "a.b",
                         "caf\xc3\xa9",
                         "a/b",
                         "01234567890123456789012345678901234567890123456789012345678901234"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jr.room = (char *)bad[i];
        assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);
    }
    Chat__LeaveRoomReq lr = CHAT__LEAVE_ROOM_REQ__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_LEAVE_ROOM;
    req.leave_room = &lr;
    lr.user_id = U1;
    lr.room = "lobby";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    lr.room = "LOBBY";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);
    lr.room = "lobby";
    lr.user_id = "";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);

    Chat__HistoryReq h = CHAT__HISTORY_REQ__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_HISTORY;
    req.history = &h;
    h.user_id = U1;
    h.conversation_id = U2;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    h.limit = 100;
    h.before = UINT64_MAX; /* past everything: the newest */
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    h.limit = 101;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);
    h.limit = 1;
    h.conversation_id = "x";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__NOT_FOUND);
    assert_int_equal(msg_history_limit(0), MSG_HISTORY_DEFAULT);
    assert_int_equal(msg_history_limit(7), 7);
    assert_int_equal(msg_history_limit(1000), MSG_HISTORY_MAX);

    Chat__TypingReq t = CHAT__TYPING_REQ__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_TYPING;
    req.typing = &t;
    t.user_id = U1;
    t.conversation_id = U2;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    t.conversation_id = "c";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__NOT_FOUND);
    t.user_id = "u";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);

    Chat__ContactsReq ct = CHAT__CONTACTS_REQ__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_CONTACTS;
    req.contacts = &ct;
    ct.user_id = U2;
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__OK);
    ct.user_id = "";
    assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);

    /* Cases set with their pointer missing must not crash. */
    int cases[] = {
        CHAT__MESSAGE_REQUEST__BODY_REGISTER_USER, CHAT__MESSAGE_REQUEST__BODY_OPEN_DM,
        CHAT__MESSAGE_REQUEST__BODY_JOIN_ROOM,     CHAT__MESSAGE_REQUEST__BODY_LEAVE_ROOM,
        CHAT__MESSAGE_REQUEST__BODY_HISTORY,       CHAT__MESSAGE_REQUEST__BODY_TYPING,
        CHAT__MESSAGE_REQUEST__BODY_CONTACTS};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        req.body_case = (Chat__MessageRequest__BodyCase)cases[i];
        req.register_user = NULL;
        assert_int_equal(msg_validate(&req, 500, &detail), CHAT__CODE__BAD_REQUEST);
    }
}

static void test_route(void **state)
{
    assert_int_equal(msg_route(U1, 1), 0);
    assert_int_equal(msg_route(U1, 0), 0);
    /* Stable, case-insensitive, in range, and it spreads. */
    assert_int_equal(msg_route(U1, 7), msg_route(U1_UPPER, 7));
    assert_int_equal(msg_route(U1, 7), msg_route(U1, 7));
    int hits[4] = {0};
    for (int i = 0; i < 400; i++) {
        char id[40];
        snprintf(id, sizeof id, "00000000-0000-4000-8000-%012d", i);
        unsigned w = msg_route(id, 4);
        assert_true(w < 4);
        hits[w]++;
    }
    for (int w = 0; w < 4; w++)
        assert_true(hits[w] > 50);
}

static void test_status_code(void **state)
{
    assert_int_equal(msg_status_code(MSG_ST_STORED), CHAT__CODE__OK);
    assert_int_equal(msg_status_code(MSG_ST_DUPLICATE), CHAT__CODE__OK);
    assert_int_equal(msg_status_code(MSG_ST_NOT_FOUND), CHAT__CODE__NOT_FOUND);
    assert_int_equal(msg_status_code(MSG_ST_NOT_MEMBER), CHAT__CODE__NOT_MEMBER);
    assert_int_equal(msg_status_code(MSG_ST_CLOSED), CHAT__CODE__CONVERSATION_CLOSED);
    assert_int_equal(msg_status_code(MSG_ST_RATE_LIMITED), CHAT__CODE__RATE_LIMITED);
    assert_int_equal(msg_status_code(MSG_ST_UNAVAILABLE), CHAT__CODE__UNAVAILABLE);
    assert_int_equal(msg_status_code(MSG_ST_INTERNAL), CHAT__CODE__INTERNAL);
    assert_int_equal(msg_status_code((msg_status)99), CHAT__CODE__INTERNAL);
}

static void test_replay_limit(void **state)
{
    assert_int_equal(msg_replay_limit(0), MSG_REPLAY_DEFAULT);
    assert_int_equal(msg_replay_limit(1), 1);
    assert_int_equal(msg_replay_limit(500), 500);
    assert_int_equal(msg_replay_limit(501), MSG_REPLAY_MAX);
    assert_int_equal(msg_replay_limit(UINT32_MAX), MSG_REPLAY_MAX);
}

static void test_dm_key(void **state)
{
    char k1[80], k2[80];
    msg_dm_key(U2, U1_UPPER, k1);
    msg_dm_key(U1, U2, k2);
    assert_string_equal(k1, k2);
    assert_string_equal(k1, U1 ":" U2);
}

static void test_uuid_array(void **state)
{
    char *ids[] = {U1, U2, U1_UPPER, U2};
    size_t n = 0;
    char *a = msg_uuid_array(ids, 4, &n);
    assert_non_null(a);
    assert_int_equal(n, 2);
    assert_string_equal(a, "{" U1 "," U2 "}");
    free(a);
    a = msg_uuid_array(NULL, 0, &n);
    assert_string_equal(a, "{}");
    assert_int_equal(n, 0);
    free(a);
}

static void test_split_ids(void **state)
{
    char s[] = U1 "," U2;
    char *out[4];
    assert_int_equal(msg_split_ids(s, out, 4), 2);
    assert_string_equal(out[0], U1);
    assert_string_equal(out[1], U2);
    char empty[] = "";
    assert_int_equal(msg_split_ids(empty, out, 4), 0);
    char odd[] = ",a,,b,";
    assert_int_equal(msg_split_ids(odd, out, 4), 2);
    char many[] = "a,b,c";
    assert_int_equal(msg_split_ids(many, out, 2), 2);
}

static msg_job *send_job(const char *conv, const char *text)
{
    msg_job *j = calloc(1, sizeof *j);
    j->req = calloc(1, sizeof *j->req);
    chat__message_request__init(j->req);
    j->req->body_case = CHAT__MESSAGE_REQUEST__BODY_SEND;
    j->req->send = calloc(1, sizeof *j->req->send);
    chat__send_req__init(j->req->send);
    j->req->send->conversation_id = (char *)conv;
    j->req->send->text = (char *)text;
    return j;
}

static void test_sort_batch(void **state)
{
    /* Sorted by conversation (case-insensitively), stable within one. */
    msg_job *jobs[6] = {send_job(U2, "b1"),       send_job(U1, "a1"), send_job(U2, "b2"),
                        send_job(U1_UPPER, "a2"), send_job(U1, "a3"), send_job(U2, "b3")};
    msg_sort_batch(jobs, 6);
    const char *want[] = {"a1", "a2", "a3", "b1", "b2", "b3"};
    for (int i = 0; i < 6; i++) {
        assert_string_equal(jobs[i]->req->send->text, want[i]);
        free(jobs[i]->req->send);
        free(jobs[i]->req);
        free(jobs[i]);
    }
    msg_sort_batch(jobs, 0);
}

/* The purger deletes below the cutoff, readers keep from it on. */
static void test_retention_cutoff(void **state)
{
    const int64_t day = 86400000;
    const int64_t now = 1760000000000;                  /* 2025-10-09 */
    assert_int_equal(msg_retention_cutoff(now, 0), 0);  /* forever */
    assert_int_equal(msg_retention_cutoff(now, -3), 0); /* never negative days */
    assert_int_equal(msg_retention_cutoff(now, 1), now - day);
    assert_int_equal(msg_retention_cutoff(now, 30), now - 30 * day);
    /* Longer than the clock has run: nothing is old enough. */
    assert_int_equal(msg_retention_cutoff(5 * day, 36500), 0);
    assert_int_equal(msg_retention_cutoff(now, 36500), 0);
    /* One ms inside the window is kept, one ms past it goes. */
    int64_t cut = msg_retention_cutoff(now, 7);
    assert_true(now - 7 * day - 1 < cut && now - 7 * day >= cut);
}

static void test_kind_name(void **state)
{
    assert_string_equal(msg_kind_name(CHAT__CONVERSATION_KIND__RANDOM), "random");
    assert_string_equal(msg_kind_name(CHAT__CONVERSATION_KIND__DM), "dm");
    assert_string_equal(msg_kind_name(CHAT__CONVERSATION_KIND__ROOM), "room");
    assert_string_equal(msg_kind_name(0), "unknown");
    assert_string_equal(msg_kind_name(9), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_validate_send),
        cmocka_unit_test(test_validate_create),
        cmocka_unit_test(test_validate_others),
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_status_code),
        cmocka_unit_test(test_replay_limit),
        cmocka_unit_test(test_dm_key),
        cmocka_unit_test(test_uuid_array),
        cmocka_unit_test(test_split_ids),
        cmocka_unit_test(test_sort_batch),
        cmocka_unit_test(test_validate_conversations),
        cmocka_unit_test(test_retention_cutoff),
        cmocka_unit_test(test_kind_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
