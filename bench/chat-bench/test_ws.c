/* The WebSocket client codec and URL parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "bench.h"

static void test_url(void **state)
{
    cb_url u;
    char err[300];
    assert_int_equal(cb_url_parse("ws://127.0.0.1:19080/ws", &u, err, sizeof err), 0);
    assert_string_equal(u.hostport, "127.0.0.1:19080");
    assert_string_equal(u.path, "/ws");
    assert_int_equal(ntohs(u.addr.sin_port), 19080);
    assert_int_equal(cb_url_parse("ws://127.0.0.2", &u, err, sizeof err), 0);
    assert_string_equal(u.path, "/ws");
    assert_int_equal(ntohs(u.addr.sin_port), 80);
    assert_int_equal(cb_url_parse("http://127.0.0.1:1/ws", &u, err, sizeof err), -1);
    assert_int_equal(cb_url_parse("ws://127.0.0.1:0/ws", &u, err, sizeof err), -1);
    assert_int_equal(cb_url_parse("ws://127.0.0.1:70000/ws", &u, err, sizeof err), -1);
    assert_int_equal(cb_url_parse("ws://127.0.0.1:12x/ws", &u, err, sizeof err), -1);
    assert_int_equal(cb_url_parse("ws:///ws", &u, err, sizeof err), -1);
}

/* RFC 6455 section 1.3's example key and accept value. */
static void test_handshake(void **state)
{
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    const char ok[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nsec-websocket-accept:  "
                      "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02{}";
    int status = -1;
    size_t hl = 0;
    assert_int_equal(cb_ws_response(ok, 20, key, &status, &hl), CB_WS_MORE);
    assert_int_equal(cb_ws_response(ok, sizeof ok - 1, key, &status, &hl), CB_WS_OK);
    assert_int_equal(hl, sizeof ok - 1 - 4);
    const char wrong[] = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: "
                         "AAAALMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    assert_int_equal(cb_ws_response(wrong, sizeof wrong - 1, key, &status, &hl), CB_WS_BAD);
    const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(cb_ws_response(busy, sizeof busy - 1, key, &status, &hl), CB_WS_BAD);
    assert_int_equal(status, 503);

    cb_url u;
    char err[100], req[2048];
    assert_int_equal(cb_url_parse("ws://127.0.0.1:8080/ws", &u, err, sizeof err), 0);
    int n = cb_ws_request(req, sizeof req, &u, "a+b/c=", key);
    assert_true(n > 0);
    assert_non_null(strstr(req, "GET /ws?session=a%2Bb%2Fc%3D HTTP/1.1\r\n"));
    assert_non_null(strstr(req, "Host: 127.0.0.1:8080\r\n"));
    assert_non_null(strstr(req, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    assert_int_equal(cb_ws_request(req, 20, &u, NULL, key), -1);

    uint64_t rng = 42;
    char k1[25], k2[25];
    cb_ws_key(&rng, k1);
    cb_ws_key(&rng, k2);
    assert_int_equal(strlen(k1), 24);
    assert_string_not_equal(k1, k2);
}

static void unmask(uint8_t *p, size_t n, const uint8_t *mk)
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mk[i & 3];
}

static void test_encode(void **state)
{
    static uint8_t payload[70000], out[70100];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7);
    size_t lens[] = {0, 1, 7, 8, 9, 125, 126, 65535, 65536, 70000};
    for (size_t t = 0; t < sizeof lens / sizeof lens[0]; t++) {
        size_t len = lens[t];
        size_t n = cb_ws_encode(out, CB_OP_TEXT, payload, len, 0x11223344u);
        assert_int_equal(out[0], 0x81);
        assert_true(out[1] & 0x80);
        size_t hl = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
        assert_int_equal(n, hl + 4 + len);
        uint8_t mk[4];
        memcpy(mk, out + hl, 4);
        unmask(out + hl + 4, len, mk);
        assert_memory_equal(out + hl + 4, payload, len);
    }
}

static void test_parse(void **state)
{
    cb_ws_frame f;
    const uint8_t small[] = {0x81, 0x03, 'a', 'b', 'c'};
    assert_int_equal(cb_ws_parse(small, 1, 1000, &f), 0);
    assert_int_equal(cb_ws_parse(small, 4, 1000, &f), 0);
    assert_int_equal(cb_ws_parse(small, 5, 1000, &f), 1);
    assert_true(f.fin);
    assert_int_equal(f.opcode, CB_OP_TEXT);
    assert_int_equal(f.hdr_len, 2);
    assert_int_equal(f.len, 3);

    uint8_t mid[4 + 300] = {0x01, 126, 0x01, 0x2c};
    assert_int_equal(cb_ws_parse(mid, 3, 1000, &f), 0);
    assert_int_equal(cb_ws_parse(mid, sizeof mid, 1000, &f), 1);
    assert_false(f.fin);
    assert_int_equal(f.len, 300);
    assert_int_equal(cb_ws_parse(mid, sizeof mid, 299, &f), -1); /* over max */

    const uint8_t big[10] = {0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0};
    assert_int_equal(cb_ws_parse(big, sizeof big, 1u << 20, &f), 0); /* 65536 bytes follow */
    const uint8_t masked[] = {0x81, 0x81, 1, 2, 3, 4, 'x'};
    assert_int_equal(cb_ws_parse(masked, sizeof masked, 1000, &f), -1);
    const uint8_t rsv[] = {0xc1, 0x00};
    assert_int_equal(cb_ws_parse(rsv, sizeof rsv, 1000, &f), -1);
    const uint8_t badop[] = {0x83, 0x00};
    assert_int_equal(cb_ws_parse(badop, sizeof badop, 1000, &f), -1);
    const uint8_t longping[] = {0x89, 126, 0, 200};
    assert_int_equal(cb_ws_parse(longping, sizeof longping, 1000, &f), -1);
    const uint8_t close_[] = {0x88, 0x02, 0x03, 0xe9};
    assert_int_equal(cb_ws_parse(close_, sizeof close_, 1000, &f), 1);
    assert_int_equal(f.opcode, CB_OP_CLOSE);
}

static void test_json_escape(void **state)
{
    char buf[64];
    assert_int_equal(cb_json_escape(buf, sizeof buf, "a\"b\\c\n"), 13);
    assert_string_equal(buf, "a\\\"b\\\\c\\u000a");
    assert_int_equal(cb_json_escape(buf, 4, "abcdef"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url),         cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_encode),      cmocka_unit_test(test_parse),
        cmocka_unit_test(test_json_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
