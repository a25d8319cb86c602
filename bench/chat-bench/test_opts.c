/* Command-line parsing: defaults, values, and clear refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "bench.h"

static cb_opts o;

#define PARSE(...)                                                        \
    ({                                                                    \
        char *argv[] = {"chat-bench", __VA_ARGS__, NULL};                 \
        cb_opts_parse(&o, (int)(sizeof argv / sizeof argv[0]) - 1, argv); \
    })

static void test_defaults(void **state)
{
    assert_int_equal(PARSE("idle"), 0);
    assert_int_equal(o.mode, CB_MODE_IDLE);
    assert_int_equal(o.n_urls, 1);
    assert_string_equal(o.urls[0].text, "ws://127.0.0.1:8080/ws");
    assert_int_equal(o.procs, 1);
    assert_int_equal(o.conns, 1000);
    assert_true(o.setup_timeout_s > 0);
}

static void test_values(void **state)
{
    assert_int_equal(PARSE("chat", "--pairs", "50", "-r", "2.5", "--url",
                           "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws", "--bind",
                           "127.0.0.2,127.0.0.3", "--conv", "dm", "--one-sender", "--json",
                           "-q", "-p", "2", "-t", "2"),
                     0);
    assert_int_equal(o.mode, CB_MODE_CHAT);
    assert_int_equal(o.pairs, 50);
    assert_true(o.rate == 2.5);
    assert_int_equal(o.n_urls, 2);
    assert_int_equal(o.n_binds, 2);
    assert_true(o.dm && o.one_sender && o.json && o.quiet);
    assert_int_equal(o.procs * o.threads, 4);
    assert_int_equal(PARSE("--mode", "storm", "--drop", "rst", "--gateway-pid", "1,2"), 0);
    assert_int_equal(o.mode, CB_MODE_STORM);
    assert_true(o.drop_rst);
    assert_int_equal(o.n_gw_pids, 2);
}

static void test_refusals(void **state)
{
    assert_int_equal(PARSE("--help"), 1);
    assert_int_equal(PARSE("--conns", "5"), 2); /* no mode */
    assert_int_equal(PARSE("dance"), 2);        /* unknown mode */
    assert_int_equal(PARSE("idle", "chat"), 2); /* two modes */
    assert_int_equal(PARSE("idle", "--conns", "abc"), 2);
    assert_int_equal(PARSE("idle", "--conns", "0"), 2);
    assert_int_equal(PARSE("idle", "--conns", "12x"), 2);
    assert_int_equal(PARSE("idle", "--frobnicate"), 2);
    assert_int_equal(PARSE("idle", "--conns"), 2); /* missing value */
    assert_int_equal(PARSE("idle", "--url", "http://x/"), 2);
    assert_int_equal(PARSE("idle", "--bind", "127.0.0.300"), 2);
    assert_int_equal(PARSE("chat", "--conv", "group"), 2);
    assert_int_equal(PARSE("idle", "--conns", "100000"), 2); /* over the open-files cap */
    assert_int_equal(PARSE("idle", "--conns", "100000", "--procs", "8"), 0);
    assert_int_equal(PARSE("idle", "--conns", "3", "--threads", "4"),
                     2); /* fewer than workers */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
