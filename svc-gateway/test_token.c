/* session_token.c: sign/verify, tampering, expiry, secrets, garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gw_wire.h"

#define SECRET "test-secret"
#define USER "0f8c2a4e-9b1d-4c3a-8e7f-123456789abc"
#define NOW 1700000000LL

static void sign(char tok[GW_TOKEN_MAX], const char *secret, int64_t expiry)
{
    assert_int_equal(gw_token_sign(secret, USER, expiry, tok), 0);
}

static int verify(const char *tok)
{
    char user[CHAT_UUID_LEN + 1] = "";
    return gw_token_verify(SECRET, tok, NOW, user);
}

static void test_roundtrip(void **state)
{
    char tok[GW_TOKEN_MAX];
    sign(tok, SECRET, NOW + 3600);
    assert_true(strncmp(tok, "v1." USER ".", 4 + CHAT_UUID_LEN) == 0);
    /* URL-safe as it is: goes into ?session= without escaping */
    for (const char *p = tok; *p; p++)
        assert_non_null(strchr("0123456789abcdefghijklmnopqrstuvwxyz.-", *p));
    char user[CHAT_UUID_LEN + 1] = "";
    assert_int_equal(gw_token_verify(SECRET, tok, NOW, user), 0);
    assert_string_equal(user, USER);
}

static void test_tampered(void **state)
{
    char tok[GW_TOKEN_MAX], bad[GW_TOKEN_MAX];
    sign(tok, SECRET, NOW + 3600);
    size_t len = strlen(tok);

    /* another user id */
    strcpy(bad, tok);
    bad[3] = bad[3] == 'a' ? 'b' : 'a';
    assert_int_equal(verify(bad), -1);
    /* a later expiry */
    strcpy(bad, tok);
    char *exp = bad + 3 + CHAT_UUID_LEN + 1;
    exp[0] = exp[0] == '9' ? '8' : '9';
    assert_int_equal(verify(bad), -1);
    /* one MAC digit */
    strcpy(bad, tok);
    bad[len - 1] = bad[len - 1] == '0' ? '1' : '0';
    assert_int_equal(verify(bad), -1);
    /* the MAC in upper case */
    strcpy(bad, tok);
    for (size_t i = len - 64; i < len; i++)
        if (bad[i] >= 'a' && bad[i] <= 'f')
            bad[i] = (char)(bad[i] - 'a' + 'A');
    if (strcmp(bad, tok) != 0)
        assert_int_equal(verify(bad), -1);
    /* cut short / extended */
    strcpy(bad, tok);
    bad[len - 1] = '\0';
    assert_int_equal(verify(bad), -1);
    memcpy(bad, tok, len);
    bad[len] = '0';
    bad[len + 1] = '\0';
    assert_int_equal(verify(bad), -1);
    /* leading zero in the expiry changes the signed text */
    char user_part[64];
    snprintf(user_part, sizeof user_part, "v1.%s.0%lld", USER, NOW + 3600);
    strcpy(bad, user_part);
    strcat(bad, tok + strlen(user_part) - 1);
    assert_int_equal(verify(bad), -1);
}

static void test_expired(void **state)
{
    char tok[GW_TOKEN_MAX];
    sign(tok, SECRET, NOW - 1);
    assert_int_equal(verify(tok), -1);
    sign(tok, SECRET, NOW);
    assert_int_equal(verify(tok), -1);
    sign(tok, SECRET, NOW + 1);
    assert_int_equal(verify(tok), 0);
}

static void test_wrong_secret(void **state)
{
    char tok[GW_TOKEN_MAX];
    sign(tok, "another-secret", NOW + 3600);
    assert_int_equal(verify(tok), -1);
    sign(tok, SECRET "x", NOW + 3600);
    assert_int_equal(verify(tok), -1);
}

static void test_garbage(void **state)
{
    char user[CHAT_UUID_LEN + 1] = "untouched";
    assert_int_equal(gw_token_verify(SECRET, NULL, NOW, user), -1);
    assert_int_equal(verify(""), -1);
    assert_int_equal(verify("v1."), -1);
    assert_int_equal(verify("null"), -1);
    assert_int_equal(verify("v1." USER), -1);
    assert_int_equal(verify("v1." USER ".1800000000."), -1);
    assert_int_equal(verify("v1." USER ".-1800000000."
                            "0000000000000000000000000000000000000000000000000000000000000000"),
                     -1);
    assert_int_equal(verify("v2." USER ".1800000000."
                            "0000000000000000000000000000000000000000000000000000000000000000"),
                     -1);
    assert_int_equal(verify("v1.not-a-uuid-not-a-uuid-not-a-uuid-xx.1800000000."
                            "0000000000000000000000000000000000000000000000000000000000000000"),
                     -1);
    assert_int_equal(verify("v1." USER ".99999999999999999999999."
                            "0000000000000000000000000000000000000000000000000000000000000000"),
                     -1);
    char huge[1000];
    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_int_equal(verify(huge), -1);
    assert_string_equal(user, "untouched"); /* output only on success */
}

static void test_sign_rejects(void **state)
{
    char tok[GW_TOKEN_MAX];
    assert_int_equal(gw_token_sign(SECRET, "not-a-uuid", NOW, tok), -1);
    assert_int_equal(gw_token_sign(SECRET, USER, 0, tok), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_expired),   cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_garbage),   cmocka_unit_test(test_sign_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
