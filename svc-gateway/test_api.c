/* api.c: the pure parts of the REST history endpoint (path, integers,
 * bearer token, status codes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gateway.h"

static void test_path(void **state)
{
    char conv[GW_ID_MAX + 1];
    assert_true(gw_api_history_path("/api/conversations/abc/messages", conv));
    assert_string_equal(conv, "abc");
    assert_true(gw_api_history_path(
        "/api/conversations/0f8c2a4e-9b1d-4c3a-8e7f-123456789abc/messages", conv));
    assert_string_equal(conv, "0f8c2a4e-9b1d-4c3a-8e7f-123456789abc");
    char p64[128], p65[128];
    snprintf(p64, sizeof p64, "/api/conversations/%064d/messages", 0);
    snprintf(p65, sizeof p65, "/api/conversations/%065d/messages", 0);
    assert_true(gw_api_history_path(p64, conv));
    assert_int_equal(strlen(conv), 64);
    assert_false(gw_api_history_path(p65, conv));
    const char *bad[] = {"/api/conversations//messages",
                         "/api/conversations/messages",
                         "/api/conversations/a/b/messages",
                         "/api/conversations/a/messages/",
                         "/api/conversations/a/message",
                         "/api/conversation/a/messages",
                         "/api/conversations/a",
                         "/api/",
                         "/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(gw_api_history_path(bad[i], conv));
}

static void test_uint(void **state)
{
    uint64_t v = 7;
    assert_true(gw_api_uint("1", 1, 100, &v));
    assert_int_equal(v, 1);
    assert_true(gw_api_uint("100", 1, 100, &v));
    assert_int_equal(v, 100);
    assert_true(gw_api_uint("007", 1, 100, &v));
    assert_int_equal(v, 7);
    const char *bad[] = {"",   "0",   "101", "-1", "+1",   " 1",
                         "1 ", "1.0", "1e2", "x",  "0x10", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 5;
        assert_false(gw_api_uint(bad[i], 1, 100, &v));
        assert_int_equal(v, 5); /* untouched */
    }
    assert_true(gw_api_uint("9007199254740992", 1, 9007199254740992ULL, &v));
    assert_false(gw_api_uint("9007199254740993", 1, 9007199254740992ULL, &v));
}

static void test_bearer(void **state)
{
    assert_string_equal(gw_api_bearer("Bearer v1.abc"), "v1.abc");
    assert_string_equal(gw_api_bearer("bearer   v1.abc"), "v1.abc");
    assert_string_equal(gw_api_bearer("BEARER\tt"), "t");
    assert_null(gw_api_bearer("Bearer"));
    assert_null(gw_api_bearer("Bearer "));
    assert_null(gw_api_bearer("Bearerx t"));
    assert_null(gw_api_bearer("Basic dXNlcjpwYXNz"));
    assert_null(gw_api_bearer(""));
    assert_null(gw_api_bearer("v1.abc"));
}

static void test_status(void **state)
{
    assert_int_equal(gw_api_status(GW_E_BAD_REQUEST), 400);
    assert_int_equal(gw_api_status(GW_E_UNAUTHORIZED), 401);
    assert_int_equal(gw_api_status(GW_E_NOT_MEMBER), 403);
    assert_int_equal(gw_api_status(GW_E_NOT_FOUND), 404);
    assert_int_equal(gw_api_status(GW_E_UNAVAILABLE), 503);
    assert_int_equal(gw_api_status(GW_E_RATE_LIMITED), 429);
    assert_int_equal(gw_api_status(GW_E_CONVERSATION_CLOSED), 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_uint),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
