/* utf8.c: strict validation (RFC 3629), code point counting, white space. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "gw_wire.h"

#define VALID(lit) assert_true(gw_utf8_valid(lit, sizeof(lit) - 1))
#define INVALID(lit) assert_false(gw_utf8_valid(lit, sizeof(lit) - 1))

static void test_valid(void **state)
{
    VALID("");
    VALID("hello, world");
    VALID("\x00");             /* NUL is a code point like any other */
    VALID("\xC3\xA9");         /* U+00E9 */
    VALID("\xC2\x80");         /* U+0080, smallest 2-byte */
    VALID("\xDF\xBF");         /* U+07FF */
    VALID("\xE0\xA0\x80");     /* U+0800, smallest 3-byte */
    VALID("\xE2\x82\xAC");     /* U+20AC */
    VALID("\xED\x9F\xBF");     /* U+D7FF, just below the surrogates */
    VALID("\xEE\x80\x80");     /* U+E000, just above them */
    VALID("\xEF\xBF\xBF");     /* U+FFFF */
    VALID("\xF0\x90\x80\x80"); /* U+10000, smallest 4-byte */
    VALID("\xF0\x9F\x98\x80"); /* U+1F600 */
    VALID("\xF4\x8F\xBF\xBF"); /* U+10FFFF, the last code point */
    VALID("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z");
}

static void test_overlong(void **state)
{
    INVALID("\xC0\xAF"); /* '/' in 2 bytes */
    INVALID("\xC1\xBF");
    INVALID("\xC0\x80");         /* "modified UTF-8" NUL */
    INVALID("\xE0\x80\xAF");     /* '/' in 3 bytes */
    INVALID("\xE0\x9F\xBF");     /* U+07FF in 3 bytes */
    INVALID("\xF0\x80\x80\xAF"); /* '/' in 4 bytes */
    INVALID("\xF0\x8F\xBF\xBF"); /* U+FFFF in 4 bytes */
}

static void test_surrogates_and_range(void **state)
{
    INVALID("\xED\xA0\x80");             /* U+D800 */
    INVALID("\xED\xAD\xBF");             /* U+DB7F */
    INVALID("\xED\xBF\xBF");             /* U+DFFF */
    INVALID("\xED\xA0\xBD\xED\xB8\x80"); /* CESU-8 pair */
    INVALID("\xF4\x90\x80\x80");         /* U+110000 */
    INVALID("\xF5\x80\x80\x80");
    INVALID("\xF8\x88\x80\x80\x80");
    INVALID("\xFE");
    INVALID("\xFF");
}

static void test_truncated_and_stray(void **state)
{
    INVALID("\xC3");
    INVALID("\xE2\x82");
    INVALID("\xF0\x9F\x98");
    INVALID("abc\xF0\x9F\x98"); /* cut at the end of a message */
    INVALID("\x80");            /* lone continuation byte */
    INVALID("a\xBF"
            "b");
    INVALID("\xC3\x28"); /* lead byte, then ASCII */
    INVALID("\xE2\x28\xA1");
    INVALID("\xF0\x9F\x28\x80");
    INVALID("\xC3\xA9\xA9"); /* one continuation too many */
}

static void test_count(void **state)
{
    assert_int_equal(gw_utf8_count("", 0), 0);
    assert_int_equal(gw_utf8_count("abc", 3), 3);
    assert_int_equal(gw_utf8_count("\xC3\xA9", 2), 1);
    assert_int_equal(gw_utf8_count("\xE2\x82\xAC", 3), 1);
    assert_int_equal(gw_utf8_count("\xF0\x9F\x98\x80", 4), 1);
    const char *mix = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";
    assert_int_equal(gw_utf8_count(mix, strlen(mix)), 5);
    /* 500 emoji: 2000 bytes, 500 code points */
    char many[2001];
    for (int i = 0; i < 500; i++)
        memcpy(many + 4 * i, "\xF0\x9F\x98\x80", 4);
    many[2000] = '\0';
    assert_int_equal(gw_utf8_count(many, 2000), 500);
}

static void test_only_space(void **state)
{
    assert_true(gw_utf8_only_space("", 0));
    assert_true(gw_utf8_only_space(" ", 1));
    assert_true(gw_utf8_only_space(" \t\r\n\v\f", 6));
    assert_true(gw_utf8_only_space("\xC2\xA0", 2));     /* NO-BREAK SPACE */
    assert_true(gw_utf8_only_space("\xE3\x80\x80", 3)); /* IDEOGRAPHIC SPACE */
    assert_true(gw_utf8_only_space("\xE2\x80\xA8 \xE2\x80\x83", 7));
    assert_false(gw_utf8_only_space(" a ", 3));
    assert_false(gw_utf8_only_space(".", 1));
    assert_false(gw_utf8_only_space("\xE2\x80\x8B", 3)); /* ZERO WIDTH SPACE: not White_Space */
    assert_false(gw_utf8_only_space(" \xF0\x9F\x98\x80", 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_overlong),
        cmocka_unit_test(test_surrogates_and_range),
        cmocka_unit_test(test_truncated_and_stray),
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_only_space),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
