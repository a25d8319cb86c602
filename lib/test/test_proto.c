/* Protobuf round trips of the service contracts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "chat/rpc.h"
#include "events.pb-c.h"
#include "match.pb-c.h"
#include "message.pb-c.h"
#include "presence.pb-c.h"

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

static void test_send_request_round_trip(void **st)
{
    Chat__SendReq send = CHAT__SEND_REQ__INIT;
    send.conversation_id = "c1";
    send.sender = "0f8fad5b-d9cb-469f-a165-70867728950e";
    send.client_msg_id = "m-1";
    send.text = "héllo 👋";
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_SEND;
    req.send = &send;
    size_t len;
    uint8_t *buf = pack(&req.base, &len);
    Chat__MessageRequest *out = chat__message_request__unpack(NULL, len, buf);
    assert_non_null(out);
    assert_int_equal(out->body_case, CHAT__MESSAGE_REQUEST__BODY_SEND);
    assert_string_equal(out->send->text, "héllo 👋");
    assert_string_equal(out->send->client_msg_id, "m-1");
    assert_string_equal(out->send->sender, send.sender);
    chat__message_request__free_unpacked(out, NULL);
    free(buf);
}

static void test_reply_with_message_round_trip(void **st)
{
    Chat__StoredMessage m = CHAT__STORED_MESSAGE__INIT;
    m.conversation_id = "c1";
    m.msg_id = "42";
    m.seq = 7;
    m.sender = "u";
    m.text = "t";
    m.ts = 1764079200123LL;
    Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
    rep.code = CHAT__CODE__RATE_LIMITED;
    rep.retry_after_ms = 5999;
    rep.message = &m;
    size_t len;
    uint8_t *buf = pack(&rep.base, &len);
    Chat__MessageReply *out = chat__message_reply__unpack(NULL, len, buf);
    assert_non_null(out);
    assert_int_equal(out->code, CHAT__CODE__RATE_LIMITED);
    assert_int_equal(out->retry_after_ms, 5999);
    assert_int_equal(out->message->seq, 7);
    assert_int_equal(out->message->ts, 1764079200123LL);
    assert_string_equal(out->message->msg_id, "42");
    chat__message_reply__free_unpacked(out, NULL);
    free(buf);
}

static void test_event_round_trip(void **st)
{
    char *users[] = {"a", "b"};
    Chat__ConnRef ex = CHAT__CONN_REF__INIT;
    ex.gateway_id = "gw1";
    ex.conn_id = 99;
    Chat__ChatEndedEvt end = CHAT__CHAT_ENDED_EVT__INIT;
    end.conversation_id = "c";
    end.ended_by = "a";
    Chat__Event ev = CHAT__EVENT__INIT;
    ev.n_user_ids = 2;
    ev.user_ids = users;
    ev.exclude = &ex;
    ev.body_case = CHAT__EVENT__BODY_CHAT_ENDED;
    ev.chat_ended = &end;
    size_t len;
    uint8_t *buf = pack(&ev.base, &len);
    Chat__Event *out = chat__event__unpack(NULL, len, buf);
    assert_non_null(out);
    assert_int_equal(out->n_user_ids, 2);
    assert_string_equal(out->user_ids[1], "b");
    assert_int_equal(out->exclude->conn_id, 99);
    assert_int_equal(out->body_case, CHAT__EVENT__BODY_CHAT_ENDED);
    assert_string_equal(out->chat_ended->ended_by, "a");
    assert_false(out->chat_ended->timeout);
    chat__event__free_unpacked(out, NULL);
    free(buf);
}

static void test_match_and_presence_round_trip(void **st)
{
    Chat__StartSearchReq s = CHAT__START_SEARCH_REQ__INIT;
    s.user_id = "u1";
    Chat__MatchRequest mr = CHAT__MATCH_REQUEST__INIT;
    mr.body_case = CHAT__MATCH_REQUEST__BODY_START_SEARCH;
    mr.start_search = &s;
    size_t len;
    uint8_t *buf = pack(&mr.base, &len);
    Chat__MatchRequest *o = chat__match_request__unpack(NULL, len, buf);
    assert_non_null(o);
    assert_int_equal(o->body_case, CHAT__MATCH_REQUEST__BODY_START_SEARCH);
    assert_null(o->start_search->conn);
    chat__match_request__free_unpacked(o, NULL);
    free(buf);

    Chat__UserStatus us = CHAT__USER_STATUS__INIT;
    us.user_id = "u";
    us.online = 1;
    us.last_seen = 5;
    Chat__UserStatus *list[] = {&us};
    Chat__PresenceReply pr = CHAT__PRESENCE_REPLY__INIT;
    pr.n_statuses = 1;
    pr.statuses = list;
    buf = pack(&pr.base, &len);
    Chat__PresenceReply *p = chat__presence_reply__unpack(NULL, len, buf);
    assert_non_null(p);
    assert_int_equal(p->n_statuses, 1);
    assert_true(p->statuses[0]->online);
    assert_int_equal(p->statuses[0]->last_seen, 5);
    chat__presence_reply__free_unpacked(p, NULL);
    free(buf);
}

static void test_garbage_does_not_unpack(void **st)
{
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12};
    assert_null(chat__message_request__unpack(NULL, sizeof junk, junk));
    assert_null(chat__event__unpack(NULL, sizeof junk, junk));
}

/* chat_pb_unpack bounds what unpacking allocates: a request is unpacked as
 * protobuf-c would, but a megabyte of empty repeated strings (500,000
 * allocations, which protobuf-c alone accepts) is refused. */
static void test_bounded_unpack(void **st)
{
    Chat__SendReq s = CHAT__SEND_REQ__INIT;
    s.conversation_id = "c-1";
    s.sender = "u-1";
    s.client_msg_id = "m-1";
    s.text = "hello";
    Chat__MessageRequest r = CHAT__MESSAGE_REQUEST__INIT;
    r.body_case = CHAT__MESSAGE_REQUEST__BODY_SEND;
    r.send = &s;
    uint8_t buf[256];
    size_t n = chat__message_request__pack(&r, buf);
    Chat__MessageRequest *got =
        (Chat__MessageRequest *)chat_pb_unpack(&chat__message_request__descriptor, n, buf);
    assert_non_null(got);
    assert_string_equal(got->send->text, "hello");
    protobuf_c_message_free_unpacked(&got->base, NULL);

    enum { IDS = 500000 };
    char **ids = calloc(IDS, sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < IDS; i++)
        ids[i] = "";
    Chat__QueryReq q = CHAT__QUERY_REQ__INIT;
    q.n_user_ids = IDS;
    q.user_ids = ids;
    Chat__PresenceRequest pr = CHAT__PRESENCE_REQUEST__INIT;
    pr.body_case = CHAT__PRESENCE_REQUEST__BODY_QUERY;
    pr.query = &q;
    size_t len = chat__presence_request__get_packed_size(&pr);
    assert_true(len > 1000000 && len < 1100000);
    uint8_t *big = malloc(len);
    chat__presence_request__pack(&pr, big);
    Chat__PresenceRequest *plain = chat__presence_request__unpack(NULL, len, big);
    assert_non_null(plain); /* what protobuf-c alone would build */
    assert_int_equal(plain->query->n_user_ids, IDS);
    chat__presence_request__free_unpacked(plain, NULL);
    assert_null(chat_pb_unpack(&chat__presence_request__descriptor, len, big));
    free(big);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_request_round_trip),
        cmocka_unit_test(test_reply_with_message_round_trip),
        cmocka_unit_test(test_event_round_trip),
        cmocka_unit_test(test_match_and_presence_round_trip),
        cmocka_unit_test(test_garbage_does_not_unpack),
        cmocka_unit_test(test_bounded_unpack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
