/* frames.c and render.c: every validation rule of the client frames, the
 * error codes, req echo, integer rules, and the exact rendered JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gw_wire.h"

#define UA "0f8c2a4e-9b1d-4c3a-8e7f-123456789abc"
#define UB "11111111-2222-4333-8444-555555555555"

static gw_request *parse_n(const char *buf, size_t len)
{
    gw_request *rq = gw_frame_parse(buf, len, 500);
    assert_non_null(rq);
    return rq;
}

static gw_request *parse(const char *json)
{
    return parse_n(json, strlen(json));
}

/* Parses json, checks the error code and the echoed req (NULL: none). */
static void expect(const char *json, gw_err err, const char *req)
{
    gw_request *rq = parse(json);
    if (rq->err != err)
        fail_msg("%s: got %s, want %s", json, gw_err_name(rq->err), gw_err_name(err));
    if (req == NULL)
        assert_null(rq->req);
    else
        assert_string_equal(rq->req, req);
    if (err != GW_E_NONE)
        assert_non_null(rq->err_msg);
    gw_request_free(rq);
}

static char *repeat(const char *unit, int n)
{
    size_t u = strlen(unit);
    char *s = malloc(u * (size_t)n + 1);
    for (int i = 0; i < n; i++)
        memcpy(s + u * (size_t)i, unit, u);
    s[u * (size_t)n] = '\0';
    return s;
}

static void test_bad_json(void **state)
{
    const char *cases[] = {"",
                           " ",
                           "nope",
                           "[]",
                           "[{\"type\":\"start_search\"}]",
                           "\"start_search\"",
                           "123",
                           "null",
                           "true",
                           "{",
                           "{\"type\":\"start_search\"",
                           "{} x",
                           "{}{}",
                           "{\"a\":1,}",
                           "{'type':'start_search'}",
                           "{\"type\":\"start_search\"}]"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect(cases[i], GW_E_BAD_JSON, NULL);
    /* a raw NUL inside or after the object */
    gw_request *rq = parse_n("{\"type\":\"stop_search\"}\0x", 24);
    assert_int_equal(rq->err, GW_E_BAD_JSON);
    gw_request_free(rq);
    /* surrounding JSON white space is fine */
    expect(" \r\n\t{\"type\":\"stop_search\"} \n", GW_E_NONE, NULL);
    /* only the given length counts */
    rq = parse_n("{\"type\":\"stop_search\"}garbage", 22);
    assert_int_equal(rq->err, GW_E_NONE);
    gw_request_free(rq);
}

static void test_unknown_type(void **state)
{
    expect("{}", GW_E_UNKNOWN_TYPE, NULL);
    expect("{\"type\":1}", GW_E_UNKNOWN_TYPE, NULL);
    expect("{\"type\":null}", GW_E_UNKNOWN_TYPE, NULL);
    expect("{\"type\":[\"send\"]}", GW_E_UNKNOWN_TYPE, NULL);
    expect("{\"type\":\"nope\"}", GW_E_UNKNOWN_TYPE, NULL);
    expect("{\"type\":\"connected\"}", GW_E_UNKNOWN_TYPE, NULL); /* a server type */
    expect("{\"type\":\"START_SEARCH\"}", GW_E_UNKNOWN_TYPE, NULL);
    expect("{\"Type\":\"start_search\"}", GW_E_UNKNOWN_TYPE, NULL);
    /* a valid req is echoed, an invalid one is not (type is checked first) */
    expect("{\"type\":\"nope\",\"req\":\"r1\"}", GW_E_UNKNOWN_TYPE, "r1");
    expect("{\"type\":\"nope\",\"req\":5}", GW_E_UNKNOWN_TYPE, NULL);
    expect("{\"req\":\"r2\"}", GW_E_UNKNOWN_TYPE, "r2");
}

static void test_req(void **state)
{
    expect("{\"type\":\"start_search\",\"req\":\"abc\"}", GW_E_NONE, "abc");
    expect("{\"type\":\"start_search\",\"req\":\"\"}", GW_E_NONE, "");
    expect("{\"type\":\"start_search\"}", GW_E_NONE, NULL);
    expect("{\"type\":\"start_search\",\"req\":5}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"start_search\",\"req\":null}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"start_search\",\"req\":{\"a\":1}}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"start_search\",\"req\":true}", GW_E_BAD_REQUEST, NULL);

    char json[256], *r64 = repeat("x", 64), *r65 = repeat("x", 65);
    snprintf(json, sizeof json, "{\"type\":\"stop_search\",\"req\":\"%s\"}", r64);
    expect(json, GW_E_NONE, r64);
    snprintf(json, sizeof json, "{\"type\":\"stop_search\",\"req\":\"%s\"}", r65);
    expect(json, GW_E_BAD_REQUEST, NULL);
    /* 64 bytes, not 64 code points: 22 x 3-byte = 66 bytes */
    char *r66 = repeat("\xE2\x82\xAC", 22);
    snprintf(json, sizeof json, "{\"type\":\"stop_search\",\"req\":\"%s\"}", r66);
    expect(json, GW_E_BAD_REQUEST, NULL);
    /* a bad req wins over the type's own field errors */
    expect("{\"type\":\"end_chat\",\"req\":1}", GW_E_BAD_REQUEST, NULL);
    /* a valid req is echoed on field errors */
    expect("{\"type\":\"end_chat\",\"req\":\"q\"}", GW_E_BAD_REQUEST, "q");
    free(r64);
    free(r65);
    free(r66);
}

static void test_search(void **state)
{
    gw_request *rq = parse("{\"type\":\"start_search\",\"req\":\"1\",\"extra\":[1,2]}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->type, GW_REQ_START_SEARCH);
    gw_request_free(rq);
    rq = parse("{\"type\":\"stop_search\"}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->type, GW_REQ_STOP_SEARCH);
    gw_request_free(rq);
}

static void test_end_chat(void **state)
{
    gw_request *rq = parse("{\"type\":\"end_chat\",\"conversation_id\":\"c-1\"}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->type, GW_REQ_END_CHAT);
    assert_string_equal(rq->conversation_id, "c-1");
    gw_request_free(rq);

    expect("{\"type\":\"end_chat\"}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"end_chat\",\"conversation_id\":\"\"}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"end_chat\",\"conversation_id\":7}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"end_chat\",\"conversation_id\":null}", GW_E_BAD_REQUEST, NULL);
    char json[256], *c64 = repeat("c", 64), *c65 = repeat("c", 65);
    snprintf(json, sizeof json, "{\"type\":\"end_chat\",\"conversation_id\":\"%s\"}", c64);
    expect(json, GW_E_NONE, NULL);
    snprintf(json, sizeof json, "{\"type\":\"end_chat\",\"conversation_id\":\"%s\"}", c65);
    expect(json, GW_E_BAD_REQUEST, NULL);
    free(c64);
    free(c65);
}

static void send_json(char *out, size_t n, const char *conv, const char *text, const char *cmid)
{
    snprintf(out, n,
             "{\"type\":\"send\",\"req\":\"s\",\"conversation_id\":%s,\"text\":%s,"
             "\"client_msg_id\":%s}",
             conv, text, cmid);
}

static void test_send(void **state)
{
    char json[8192];
    send_json(json, sizeof json, "\"c1\"", "\"hello\"", "\"m1\"");
    gw_request *rq = parse(json);
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->type, GW_REQ_SEND);
    assert_string_equal(rq->conversation_id, "c1");
    assert_string_equal(rq->text, "hello");
    assert_string_equal(rq->client_msg_id, "m1");
    assert_string_equal(rq->req, "s");
    gw_request_free(rq);

    /* escapes are decoded before counting */
    send_json(json, sizeof json, "\"c1\"", "\"\\u00e9\\n\\\"x\\\"\"", "\"m1\"");
    rq = parse(json);
    assert_int_equal(rq->err, GW_E_NONE);
    assert_string_equal(rq->text, "\xC3\xA9\n\"x\"");
    gw_request_free(rq);

    send_json(json, sizeof json, "\"c1\"", "\"\"", "\"m1\"");
    expect(json, GW_E_BAD_REQUEST, "s");
    send_json(json, sizeof json, "\"c1\"", "\"   \"", "\"m1\"");
    expect(json, GW_E_BAD_REQUEST, "s");
    send_json(json, sizeof json, "\"c1\"", "\" \\n\\t\\u00a0\\u3000 \"", "\"m1\"");
    expect(json, GW_E_BAD_REQUEST, "s");
    send_json(json, sizeof json, "\"c1\"", "5", "\"m1\"");
    expect(json, GW_E_BAD_REQUEST, "s");
    send_json(json, sizeof json, "\"c1\"", "null", "\"m1\"");
    expect(json, GW_E_BAD_REQUEST, "s");
    expect("{\"type\":\"send\",\"conversation_id\":\"c\",\"client_msg_id\":\"m\"}",
           GW_E_BAD_REQUEST, NULL);
    /* conversation_id and client_msg_id: strings of 1-64 bytes */
    send_json(json, sizeof json, "\"\"", "\"hi\"", "\"m1\"");
    expect(json, GW_E_BAD_REQUEST, "s");
    send_json(json, sizeof json, "1", "\"hi\"", "\"m1\"");
    expect(json, GW_E_BAD_REQUEST, "s");
    send_json(json, sizeof json, "\"c1\"", "\"hi\"", "\"\"");
    expect(json, GW_E_BAD_REQUEST, "s");
    send_json(json, sizeof json, "\"c1\"", "\"hi\"", "12");
    expect(json, GW_E_BAD_REQUEST, "s");
    expect("{\"type\":\"send\",\"conversation_id\":\"c\",\"text\":\"hi\"}", GW_E_BAD_REQUEST,
           NULL);
    char *m64 = repeat("m", 64), *m65 = repeat("m", 65), q[80];
    snprintf(q, sizeof q, "\"%s\"", m64);
    send_json(json, sizeof json, "\"c1\"", "\"hi\"", q);
    expect(json, GW_E_NONE, "s");
    snprintf(q, sizeof q, "\"%s\"", m65);
    send_json(json, sizeof json, "\"c1\"", "\"hi\"", q);
    expect(json, GW_E_BAD_REQUEST, "s");
    free(m64);
    free(m65);
}

static void test_send_length(void **state)
{
    char json[8192], text[4096];
    char *a500 = repeat("a", 500), *a501 = repeat("a", 501);
    char *e500 = repeat("\xF0\x9F\x98\x80", 500), *e501 = repeat("\xF0\x9F\x98\x80", 501);
    const struct {
        const char *t;
        gw_err want;
    } cases[] = {
        {a500, GW_E_NONE}, {a501, GW_E_TOO_LONG}, {e500, GW_E_NONE}, {e501, GW_E_TOO_LONG}};
    for (size_t i = 0; i < 4; i++) {
        snprintf(text, sizeof text, "\"%s\"", cases[i].t);
        send_json(json, sizeof json, "\"c1\"", text, "\"m1\"");
        expect(json, cases[i].want, "s");
    }
    /* 500 code points written as \u escapes (surrogate pairs): still 500 */
    char *esc = repeat("\\ud83d\\ude00", 500);
    char *big = malloc(strlen(esc) + 200);
    sprintf(big,
            "{\"type\":\"send\",\"conversation_id\":\"c\",\"client_msg_id\":\"m\","
            "\"text\":\"%s\"}",
            esc);
    expect(big, GW_E_NONE, NULL);
    free(big);
    free(esc);
    /* the limit is a parameter (CHAT_MAX_TEXT) */
    const char *four = "{\"type\":\"send\",\"conversation_id\":\"c\","
                       "\"client_msg_id\":\"m\",\"text\":\"abcd\"}";
    gw_request *rq = gw_frame_parse(four, strlen(four), 3);
    assert_int_equal(rq->err, GW_E_TOO_LONG);
    gw_request_free(rq);
    free(a500);
    free(a501);
    free(e500);
    free(e501);
}

static void receipt_expect(const char *seq, const char *status, gw_err want)
{
    char json[256];
    snprintf(json, sizeof json,
             "{\"type\":\"receipt\",\"conversation_id\":\"c1\",\"seq\":%s,\"status\":%s}", seq,
             status);
    expect(json, want, NULL);
}

static void test_receipt(void **state)
{
    gw_request *rq = parse(
        "{\"type\":\"receipt\",\"conversation_id\":\"c1\",\"seq\":42,\"status\":\"read\"}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->type, GW_REQ_RECEIPT);
    assert_int_equal(rq->seq, 42);
    assert_true(rq->read);
    gw_request_free(rq);
    rq = parse("{\"type\":\"receipt\",\"conversation_id\":\"c1\",\"seq\":1,"
               "\"status\":\"delivered\"}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_false(rq->read);
    gw_request_free(rq);

    receipt_expect("1", "\"read\"", GW_E_NONE);
    receipt_expect("1.0", "\"read\"", GW_E_NONE); /* integral */
    receipt_expect("1e2", "\"read\"", GW_E_NONE);
    receipt_expect("9007199254740992", "\"read\"", GW_E_NONE); /* 2^53 */
    receipt_expect("9007199254740994", "\"read\"", GW_E_BAD_REQUEST);
    receipt_expect("1e300", "\"read\"", GW_E_BAD_REQUEST);
    receipt_expect("0", "\"read\"", GW_E_BAD_REQUEST);
    receipt_expect("-1", "\"read\"", GW_E_BAD_REQUEST);
    receipt_expect("1.5", "\"read\"", GW_E_BAD_REQUEST);
    receipt_expect("\"1\"", "\"read\"", GW_E_BAD_REQUEST);
    receipt_expect("null", "\"read\"", GW_E_BAD_REQUEST);
    receipt_expect("true", "\"read\"", GW_E_BAD_REQUEST);
    receipt_expect("1", "\"seen\"", GW_E_BAD_REQUEST);
    receipt_expect("1", "\"READ\"", GW_E_BAD_REQUEST);
    receipt_expect("1", "1", GW_E_BAD_REQUEST);
    expect("{\"type\":\"receipt\",\"seq\":1,\"status\":\"read\"}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"receipt\",\"conversation_id\":\"c\",\"status\":\"read\"}",
           GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"receipt\",\"conversation_id\":\"c\",\"seq\":1}", GW_E_BAD_REQUEST,
           NULL);
}

static void test_presence(void **state)
{
    gw_request *rq = parse("{\"type\":\"presence\",\"user_ids\":[],\"req\":\"p\"}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->type, GW_REQ_PRESENCE);
    assert_int_equal(rq->n_user_ids, 0);
    gw_request_free(rq);
    rq = parse("{\"type\":\"presence\",\"user_ids\":[\"" UA "\",\"" UB "\"]}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->n_user_ids, 2);
    assert_string_equal(rq->user_ids[0], UA);
    assert_string_equal(rq->user_ids[1], UB);
    gw_request_free(rq);

    char *ids100 = repeat("\"" UA "\",", 100), *ids101 = repeat("\"" UA "\",", 101);
    ids100[strlen(ids100) - 1] = '\0';
    ids101[strlen(ids101) - 1] = '\0';
    char *json = malloc(strlen(ids101) + 64);
    sprintf(json, "{\"type\":\"presence\",\"user_ids\":[%s]}", ids100);
    expect(json, GW_E_NONE, NULL);
    sprintf(json, "{\"type\":\"presence\",\"user_ids\":[%s]}", ids101);
    expect(json, GW_E_BAD_REQUEST, NULL);
    free(json);
    free(ids100);
    free(ids101);

    expect("{\"type\":\"presence\"}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"presence\",\"user_ids\":\"" UA "\"}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"presence\",\"user_ids\":{}}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"presence\",\"user_ids\":[\"nope\"]}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"presence\",\"user_ids\":[\"" UA "\",1]}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"presence\",\"user_ids\":[null]}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"presence\",\"user_ids\":[\"" UA "x\"]}", GW_E_BAD_REQUEST, NULL);
}

/* The shape limits: checked before parsing, strings do not count. */
static void test_frame_shape(void **state)
{
    /* Depth 8 is allowed (then it is only an unknown field), 9 is not. */
    char *open8 = repeat("[", 7), *close8 = repeat("]", 7);
    char json[256];
    snprintf(json, sizeof json, "{\"type\":\"start_search\",\"x\":%s%s}", open8, close8);
    expect(json, GW_E_NONE, NULL);
    snprintf(json, sizeof json, "{\"type\":\"start_search\",\"x\":[%s%s]}", open8, close8);
    expect(json, GW_E_BAD_REQUEST, NULL);
    free(open8);
    free(close8);

    /* 64 KiB of brackets or of one array's elements: refused unparsed. */
    char *deep = repeat("[", GW_MAX_MESSAGE);
    gw_request *rq = parse_n(deep, GW_MAX_MESSAGE);
    assert_int_equal(rq->err, GW_E_BAD_REQUEST);
    assert_non_null(strstr(rq->err_msg, "too complex"));
    assert_null(rq->root);
    gw_request_free(rq);
    free(deep);
    char *zeros = repeat("0,", GW_MAX_MESSAGE / 2 - 16);
    char *big = malloc(GW_MAX_MESSAGE);
    int n = snprintf(big, GW_MAX_MESSAGE, "{\"type\":\"presence\",\"x\":[%s0]}", zeros);
    assert_true(n > 0 && n < GW_MAX_MESSAGE);
    rq = parse_n(big, (size_t)n);
    assert_int_equal(rq->err, GW_E_BAD_REQUEST);
    assert_null(rq->root);
    gw_request_free(rq);

    /* Exactly at the value limit: parsed (1 object + the members). */
    char *ones = repeat("1,", GW_FRAME_MAX_VALUES - 3);
    n = snprintf(big, GW_MAX_MESSAGE, "{\"type\":\"start_search\",\"x\":[%s1]}", ones);
    rq = parse_n(big, (size_t)n);
    assert_int_equal(rq->err, GW_E_NONE);
    gw_request_free(rq);
    n = snprintf(big, GW_MAX_MESSAGE, "{\"type\":\"start_search\",\"x\":[%s1,1]}", ones);
    rq = parse_n(big, (size_t)n);
    assert_int_equal(rq->err, GW_E_BAD_REQUEST);
    gw_request_free(rq);
    free(ones);
    free(zeros);

    /* Brackets, commas and escaped quotes inside strings are text. */
    char *text = repeat("[{,\\\"", 2000);
    n = snprintf(big, GW_MAX_MESSAGE,
                 "{\"type\":\"send\",\"conversation_id\":\"c\",\"client_msg_id\":\"m\","
                 "\"text\":\"%s\"}",
                 text);
    rq = parse_n(big, (size_t)n);
    assert_int_equal(rq->err, GW_E_TOO_LONG); /* 8,000 code points, over 500 */
    gw_request_free(rq);
    free(text);
    free(big);
}

static void test_open_dm(void **state)
{
    gw_request *rq = parse("{\"type\":\"open_dm\",\"req\":\"d\",\"user_id\":\"" UA "\"}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->type, GW_REQ_OPEN_DM);
    assert_string_equal(rq->user_id, UA);
    assert_string_equal(rq->req, "d");
    gw_request_free(rq);
    expect("{\"type\":\"open_dm\"}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"open_dm\",\"user_id\":\"\",\"req\":\"d\"}", GW_E_BAD_REQUEST, "d");
    expect("{\"type\":\"open_dm\",\"user_id\":\"bob\"}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"open_dm\",\"user_id\":5}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"open_dm\",\"user_id\":null}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"open_dm\",\"user_id\":[\"" UA "\"]}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"open_dm\",\"user_id\":\"" UA "0\"}", GW_E_BAD_REQUEST, NULL);
}

static void room_expect(const char *type, const char *room_json, gw_err want)
{
    char json[256];
    snprintf(json, sizeof json, "{\"type\":\"%s\",\"room\":%s,\"req\":\"q\"}", type, room_json);
    expect(json, want, "q");
}

static void test_rooms(void **state)
{
    gw_request *rq = parse("{\"type\":\"join_room\",\"room\":\"lobby-1_a\"}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->type, GW_REQ_JOIN_ROOM);
    assert_string_equal(rq->room, "lobby-1_a");
    gw_request_free(rq);
    rq = parse("{\"type\":\"leave_room\",\"room\":\"x\"}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->type, GW_REQ_LEAVE_ROOM);
    gw_request_free(rq);
    char *r64 = repeat("r", 64), *r65 = repeat("r", 65), q[80];
    const char *types[] = {"join_room", "leave_room"};
    for (int t = 0; t < 2; t++) {
        snprintf(q, sizeof q, "\"%s\"", r64);
        room_expect(types[t], q, GW_E_NONE);
        snprintf(q, sizeof q, "\"%s\"", r65);
        room_expect(types[t], q, GW_E_BAD_REQUEST);
        const char *bad[] = {"\"\"",    "\"Bad Name\"", "\"Lobby\"",     "\"a b\"",
                             "\"a.b\"", "\"a/b\"",      "\"caf\u00e9\"", "\"\\u0000\"",
                             "5",       "null",         "[\"a\"]",       "{}"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
            room_expect(types[t], bad[i], GW_E_BAD_REQUEST);
    }
    expect("{\"type\":\"join_room\"}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"leave_room\",\"req\":\"u\"}", GW_E_BAD_REQUEST, "u");
    assert_true(chat_room_valid("0-9_az"));
    assert_false(chat_room_valid(""));
    free(r64);
    free(r65);
}

static void history_expect(const char *extra, gw_err want)
{
    char json[256];
    snprintf(json, sizeof json, "{\"type\":\"history\",\"conversation_id\":\"c1\"%s}", extra);
    expect(json, want, NULL);
}

static void test_history(void **state)
{
    gw_request *rq = parse("{\"type\":\"history\",\"conversation_id\":\"c1\"}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->type, GW_REQ_HISTORY);
    assert_string_equal(rq->conversation_id, "c1");
    assert_int_equal(rq->before, 0);
    assert_int_equal(rq->limit, 0);
    gw_request_free(rq);
    rq = parse("{\"type\":\"history\",\"conversation_id\":\"c1\",\"before\":42,"
               "\"limit\":100}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->before, 42);
    assert_int_equal(rq->limit, 100);
    gw_request_free(rq);
    history_expect(",\"limit\":1", GW_E_NONE);
    history_expect(",\"limit\":1.0", GW_E_NONE);
    history_expect(",\"before\":1", GW_E_NONE);
    history_expect(",\"before\":9007199254740992", GW_E_NONE);
    const char *bad[] = {",\"limit\":0",     ",\"limit\":101",  ",\"limit\":\"5\"",
                         ",\"limit\":null",  ",\"limit\":2.5",  ",\"limit\":-1",
                         ",\"before\":0",    ",\"before\":-1",  ",\"before\":\"4\"",
                         ",\"before\":null", ",\"before\":1.5", ",\"before\":1e300",
                         ",\"before\":true"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        history_expect(bad[i], GW_E_BAD_REQUEST);
    expect("{\"type\":\"history\"}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"history\",\"conversation_id\":5,\"req\":\"h\"}", GW_E_BAD_REQUEST, "h");
    expect("{\"type\":\"history\",\"conversation_id\":\"\"}", GW_E_BAD_REQUEST, NULL);
}

static void test_typing(void **state)
{
    gw_request *rq = parse("{\"type\":\"typing\",\"conversation_id\":\"c1\","
                           "\"state\":\"start\"}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_int_equal(rq->type, GW_REQ_TYPING);
    assert_string_equal(rq->conversation_id, "c1");
    assert_true(rq->start);
    gw_request_free(rq);
    rq = parse("{\"type\":\"typing\",\"conversation_id\":\"c1\",\"state\":\"stop\"}");
    assert_int_equal(rq->err, GW_E_NONE);
    assert_false(rq->start);
    gw_request_free(rq);
    expect("{\"type\":\"typing\",\"conversation_id\":\"c1\",\"state\":\"maybe\","
           "\"req\":\"t\"}",
           GW_E_BAD_REQUEST, "t");
    expect("{\"type\":\"typing\",\"conversation_id\":\"c1\",\"state\":\"START\"}",
           GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"typing\",\"conversation_id\":\"c1\",\"state\":true}", GW_E_BAD_REQUEST,
           NULL);
    expect("{\"type\":\"typing\",\"conversation_id\":\"c1\"}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"typing\",\"state\":\"start\"}", GW_E_BAD_REQUEST, NULL);
    expect("{\"type\":\"typing\",\"conversation_id\":1,\"state\":\"start\"}", GW_E_BAD_REQUEST,
           NULL);
}

/* ---- render ---- */

static void expect_frame(gw_frame *f, const char *want)
{
    assert_non_null(f);
    assert_string_equal(gw_frame_data(f), want);
    assert_int_equal(f->len, strlen(want));
    gw_frame_unref(f);
}

static void test_render_basic(void **state)
{
    expect_frame(gw_render_connected(UA, "v1.tok", false),
                 "{\"type\":\"connected\",\"user_id\":\"" UA "\",\"session\":\"v1.tok\","
                 "\"resumed\":false}");
    expect_frame(gw_render_connected(UA, "t", true),
                 "{\"type\":\"connected\",\"user_id\":\"" UA "\",\"session\":\"t\","
                 "\"resumed\":true}");
    expect_frame(gw_render_simple("searching", NULL), "{\"type\":\"searching\"}");
    expect_frame(gw_render_simple("searching", "r\"1"),
                 "{\"type\":\"searching\",\"req\":\"r\\\"1\"}");
    expect_frame(gw_render_simple("search_stopped", "x"),
                 "{\"type\":\"search_stopped\",\"req\":\"x\"}");
    expect_frame(gw_render_matched("c1"),
                 "{\"type\":\"matched\",\"conversation_id\":\"c1\",\"kind\":\"random\"}");
    expect_frame(gw_render_chat_ended("c1", "timeout"),
                 "{\"type\":\"chat_ended\",\"conversation_id\":\"c1\",\"by\":\"timeout\"}");
    expect_frame(gw_render_partner_disconnected("c1"),
                 "{\"type\":\"partner_disconnected\",\"conversation_id\":\"c1\"}");
    expect_frame(gw_render_receipt("c1", 3, true, UB),
                 "{\"type\":\"receipt\",\"conversation_id\":\"c1\",\"seq\":3,"
                 "\"status\":\"read\",\"user_id\":\"" UB "\"}");
    expect_frame(gw_render_receipt("c1", 4, false, UB),
                 "{\"type\":\"receipt\",\"conversation_id\":\"c1\",\"seq\":4,"
                 "\"status\":\"delivered\",\"user_id\":\"" UB "\"}");
}

static void test_render_error(void **state)
{
    expect_frame(gw_render_error(GW_E_BAD_JSON, NULL, NULL, -1),
                 "{\"type\":\"error\",\"code\":\"bad_json\","
                 "\"message\":\"the frame is not a JSON object\"}");
    expect_frame(gw_render_error(GW_E_NOT_MEMBER, "no", "r9", -1),
                 "{\"type\":\"error\",\"code\":\"not_member\",\"message\":\"no\","
                 "\"req\":\"r9\"}");
    expect_frame(gw_render_error(GW_E_RATE_LIMITED, "slow down", "r", 1500),
                 "{\"type\":\"error\",\"code\":\"rate_limited\",\"message\":\"slow down\","
                 "\"retry_after_ms\":1500,\"req\":\"r\"}");
    expect_frame(gw_render_error(GW_E_UNAUTHORIZED, "", NULL, -1),
                 "{\"type\":\"error\",\"code\":\"unauthorized\","
                 "\"message\":\"invalid or expired session\"}");
    /* every code has a name and a text */
    for (int e = 1; e < GW_E_COUNT; e++) {
        assert_true(strlen(gw_err_name((gw_err)e)) > 0);
        assert_true(strlen(gw_err_text((gw_err)e)) > 0);
    }
    assert_int_equal(gw_err_from_code(CHAT__CODE__INTERNAL), GW_E_UNAVAILABLE);
    assert_int_equal(gw_err_from_code(CHAT__CODE__CONVERSATION_CLOSED),
                     GW_E_CONVERSATION_CLOSED);
    assert_int_equal(gw_err_from_code(99), GW_E_UNAVAILABLE);
}

static void test_render_messages(void **state)
{
    Chat__StoredMessage m = CHAT__STORED_MESSAGE__INIT;
    m.conversation_id = "c1";
    m.msg_id = "42";
    m.seq = 7;
    m.sender = UA;
    m.text = "hi \"there\"\n\x01\\ </script> \xC3\xA9";
    m.ts = 1732540000123;
    expect_frame(gw_render_ack("m-1", &m, "r"),
                 "{\"type\":\"ack\",\"client_msg_id\":\"m-1\",\"conversation_id\":\"c1\","
                 "\"msg_id\":\"42\",\"seq\":7,\"ts\":1732540000123,\"req\":\"r\"}");
    gw_frame *f = gw_render_message(&m);
    assert_non_null(f);
    assert_string_equal(f->conv, "c1");
    assert_int_equal(f->seq, 7);
    expect_frame(f, "{\"type\":\"message\",\"conversation_id\":\"c1\",\"msg_id\":\"42\","
                    "\"seq\":7,\"from\":\"" UA "\","
                    "\"text\":\"hi \\\"there\\\"\\n\\u0001\\\\ </script> \xC3\xA9\","
                    "\"ts\":1732540000123}");
    /* integers stay integers at the top of the exact range */
    m.seq = 9007199254740993ULL;
    m.ts = 4102444800000;
    f = gw_render_message(&m);
    assert_non_null(strstr(gw_frame_data(f), "\"seq\":9007199254740993,"));
    assert_non_null(strstr(gw_frame_data(f), "\"ts\":4102444800000}"));
    gw_frame_unref(f);
}

static void test_render_presence(void **state)
{
    Chat__UserStatus b = CHAT__USER_STATUS__INIT, a = CHAT__USER_STATUS__INIT;
    b.user_id = UB;
    b.online = 1;
    b.last_seen = 1732540000000;
    a.user_id = UA;
    a.online = 0;
    a.last_seen = 0;
    Chat__UserStatus *st[] = {&b, &a};
    const char *ids[] = {UA, UB, "22222222-2222-4222-8222-222222222222"};
    expect_frame(gw_render_presence(ids, 3, st, 2, "p"),
                 "{\"type\":\"presence\",\"statuses\":["
                 "{\"user_id\":\"" UA "\",\"status\":\"offline\",\"last_seen\":null},"
                 "{\"user_id\":\"" UB "\",\"status\":\"online\",\"last_seen\":1732540000000},"
                 "{\"user_id\":\"22222222-2222-4222-8222-222222222222\","
                 "\"status\":\"offline\",\"last_seen\":null}],\"req\":\"p\"}");
    expect_frame(gw_render_presence(NULL, 0, NULL, 0, NULL),
                 "{\"type\":\"presence\",\"statuses\":[]}");
}

static void test_render_conversations(void **state)
{
    const char *members[] = {UA, UB};
    expect_frame(gw_render_conversation_dm("c1", members, "r"),
                 "{\"type\":\"conversation\",\"conversation_id\":\"c1\",\"kind\":\"dm\","
                 "\"members\":[\"" UA "\",\"" UB "\"],\"req\":\"r\"}");
    expect_frame(gw_render_conversation_room("c2", "lobby", NULL),
                 "{\"type\":\"conversation\",\"conversation_id\":\"c2\",\"kind\":\"room\","
                 "\"room\":\"lobby\"}");
    expect_frame(gw_render_left("c2", "x"),
                 "{\"type\":\"left\",\"conversation_id\":\"c2\",\"req\":\"x\"}");
    expect_frame(gw_render_typing("c1", UA, true),
                 "{\"type\":\"typing\",\"conversation_id\":\"c1\",\"user_id\":\"" UA "\","
                 "\"state\":\"start\"}");
    expect_frame(gw_render_typing("c1", UA, false),
                 "{\"type\":\"typing\",\"conversation_id\":\"c1\",\"user_id\":\"" UA "\","
                 "\"state\":\"stop\"}");
    expect_frame(gw_render_presence_push(UB, true, 1732540000000),
                 "{\"type\":\"presence\",\"user_id\":\"" UB "\",\"status\":\"online\","
                 "\"last_seen\":1732540000000}");
    expect_frame(gw_render_presence_push(UB, false, 0),
                 "{\"type\":\"presence\",\"user_id\":\"" UB "\",\"status\":\"offline\","
                 "\"last_seen\":null}");
}

static void test_render_history(void **state)
{
    Chat__StoredMessage m1 = CHAT__STORED_MESSAGE__INIT, m2 = CHAT__STORED_MESSAGE__INIT;
    m1.msg_id = "10";
    m1.seq = 4;
    m1.sender = UA;
    m1.text = "a \"b\"";
    m1.ts = 1732540000001;
    m2.msg_id = "11";
    m2.seq = 5;
    m2.sender = UB;
    m2.text = "c";
    m2.ts = 1732540000002;
    Chat__StoredMessage *msgs[] = {&m1, &m2};
    expect_frame(gw_render_history("c1", msgs, 2, 4, "h"),
                 "{\"type\":\"history\",\"conversation_id\":\"c1\",\"messages\":["
                 "{\"msg_id\":\"10\",\"seq\":4,\"from\":\"" UA "\",\"text\":\"a \\\"b\\\"\","
                 "\"ts\":1732540000001},"
                 "{\"msg_id\":\"11\",\"seq\":5,\"from\":\"" UB "\",\"text\":\"c\","
                 "\"ts\":1732540000002}],\"next_before\":4,\"req\":\"h\"}");
    expect_frame(gw_render_history("c1", NULL, 0, 0, NULL),
                 "{\"type\":\"history\",\"conversation_id\":\"c1\",\"messages\":[],"
                 "\"next_before\":null}");
    expect_frame(gw_render_history_rest(msgs + 1, 1, 0),
                 "{\"messages\":[{\"msg_id\":\"11\",\"seq\":5,\"from\":\"" UB "\","
                 "\"text\":\"c\",\"ts\":1732540000002}],\"next_before\":null}");
    expect_frame(gw_render_rest_error(GW_E_NOT_MEMBER, -1), "{\"error\":\"not_member\"}");
    expect_frame(gw_render_rest_error(GW_E_UNAUTHORIZED, -1), "{\"error\":\"unauthorized\"}");
    expect_frame(gw_render_rest_error(GW_E_RATE_LIMITED, 250),
                 "{\"error\":\"rate_limited\",\"retry_after_ms\":250}");
}

static void test_frame_refs(void **state)
{
    gw_frame *f = gw_frame_new("{}", 2);
    assert_int_equal(f->refs, 1);
    assert_ptr_equal(gw_frame_ref(f), f);
    assert_int_equal(f->refs, 2);
    gw_frame_unref(f);
    assert_int_equal(f->refs, 1);
    assert_string_equal(gw_frame_data(f), "{}");
    gw_frame_unref(f);
    gw_frame_unref(NULL);
    assert_null(gw_frame_ref(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_req),
        cmocka_unit_test(test_search),
        cmocka_unit_test(test_end_chat),
        cmocka_unit_test(test_send),
        cmocka_unit_test(test_send_length),
        cmocka_unit_test(test_receipt),
        cmocka_unit_test(test_presence),
        cmocka_unit_test(test_frame_shape),
        cmocka_unit_test(test_open_dm),
        cmocka_unit_test(test_rooms),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_typing),
        cmocka_unit_test(test_render_conversations),
        cmocka_unit_test(test_render_history),
        cmocka_unit_test(test_render_basic),
        cmocka_unit_test(test_render_error),
        cmocka_unit_test(test_render_messages),
        cmocka_unit_test(test_render_presence),
        cmocka_unit_test(test_frame_refs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
