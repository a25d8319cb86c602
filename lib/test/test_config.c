#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "chat/config.h"

static long long port, rate;
static const char *name;
static const chat_cfg_item items[] = {
    {"T_PORT", CHAT_CFG_INT, "8080", 1, 65535, "port", &port},
    {"T_RATE", CHAT_CFG_INT, "10", 0, 1000, "rate", &rate},
    {"T_NAME", CHAT_CFG_STR, "abc", 0, 0, "name", &name},
};

static void test_defaults(void **st)
{
    unsetenv("T_PORT");
    unsetenv("T_RATE");
    unsetenv("T_NAME");
    char err[128];
    assert_int_equal(chat_cfg_load(items, 3, err, sizeof err), 0);
    assert_int_equal(port, 8080);
    assert_int_equal(rate, 10);
    assert_string_equal(name, "abc");
}

static void test_env_overrides(void **st)
{
    setenv("T_PORT", "9000", 1);
    setenv("T_NAME", "xyz", 1);
    char err[128];
    assert_int_equal(chat_cfg_load(items, 3, err, sizeof err), 0);
    assert_int_equal(port, 9000);
    assert_string_equal(name, "xyz");
    unsetenv("T_PORT");
    unsetenv("T_NAME");
}

static void test_errors_name_the_variable(void **st)
{
    char err[128];
    setenv("T_PORT", "70000", 1);
    assert_int_equal(chat_cfg_load(items, 3, err, sizeof err), -1);
    assert_non_null(strstr(err, "T_PORT=70000 is out of range [1, 65535]"));
    setenv("T_PORT", "12x", 1);
    assert_int_equal(chat_cfg_load(items, 3, err, sizeof err), -1);
    assert_non_null(strstr(err, "T_PORT=\"12x\" is not an integer"));
    setenv("T_PORT", "", 1);
    assert_int_equal(chat_cfg_load(items, 3, err, sizeof err), -1);
    unsetenv("T_PORT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_errors_name_the_variable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
