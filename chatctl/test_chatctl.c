/* Unit tests of chatctl's parsing: durations, env files, command lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "chatctl.h"

static void test_duration(void **st)
{
    int64_t ms = -1;
    assert_true(ctl_parse_duration("30s", &ms));
    assert_int_equal(ms, 30000);
    assert_true(ctl_parse_duration("10m", &ms));
    assert_int_equal(ms, 600000);
    assert_true(ctl_parse_duration("2h", &ms));
    assert_int_equal(ms, 7200000);
    assert_true(ctl_parse_duration("7d", &ms));
    assert_int_equal(ms, 7LL * 86400000);
    static const char *const bad[] = {"",     "s",    "0s",  "-1s",  "10",  "10x",
                                      "1.5h", "10 m", "m10", "10ms", "+5s", "99999999999d",
                                      NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        ms = -1;
        assert_false(ctl_parse_duration(bad[i], &ms));
        assert_int_equal(ms, -1); /* nothing written on failure */
    }
    assert_false(ctl_parse_duration(NULL, &ms));
}

static void test_parse_int(void **st)
{
    long v = -1;
    assert_true(ctl_parse_int("0", 0, 36500, &v));
    assert_int_equal(v, 0);
    assert_true(ctl_parse_int("36500", 0, 36500, &v));
    assert_false(ctl_parse_int("36501", 0, 36500, &v));
    assert_false(ctl_parse_int("-1", 0, 36500, &v));
    assert_false(ctl_parse_int("1x", 0, 36500, &v));
    assert_false(ctl_parse_int("", 0, 36500, &v));
    assert_int_equal(v, 36500);
}

static void test_env_line(void **st)
{
    char k[64], v[256];
    assert_int_equal(ctl_env_line("A=b", k, sizeof k, v, sizeof v), 1);
    assert_string_equal(k, "A");
    assert_string_equal(v, "b");
    assert_int_equal(
        ctl_env_line("  CHAT_X = \"tcp://a:1,tcp://b:2\"  \n", k, sizeof k, v, sizeof v), 1);
    assert_string_equal(k, "CHAT_X");
    assert_string_equal(v, "tcp://a:1,tcp://b:2");
    assert_int_equal(ctl_env_line("export T='x y'", k, sizeof k, v, sizeof v), 1);
    assert_string_equal(k, "T");
    assert_string_equal(v, "x y");
    assert_int_equal(ctl_env_line("E=", k, sizeof k, v, sizeof v), 1);
    assert_string_equal(v, "");
    assert_int_equal(ctl_env_line("Q=a=b", k, sizeof k, v, sizeof v), 1);
    assert_string_equal(v, "a=b");
    assert_int_equal(ctl_env_line("# comment=1", k, sizeof k, v, sizeof v), 0);
    assert_int_equal(ctl_env_line("   \n", k, sizeof k, v, sizeof v), 0);
    assert_int_equal(ctl_env_line("no equals", k, sizeof k, v, sizeof v), -1);
    assert_int_equal(ctl_env_line("1A=b", k, sizeof k, v, sizeof v), -1);
    assert_int_equal(ctl_env_line("A B=c", k, sizeof k, v, sizeof v), -1);
}

static void test_env_load(void **st)
{
    char path[] = "/tmp/chatctl-env-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "# written by run.sh\n"
                        "CTL_TEST_A=from-file\n"
                        "CTL_TEST_B=\"quoted\"\n"
                        "\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    setenv("CTL_TEST_A", "from-env", 1);
    unsetenv("CTL_TEST_B");
    char err[256];
    assert_int_equal(ctl_env_load(path, err, sizeof err), 0);
    assert_string_equal(getenv("CTL_TEST_A"), "from-env"); /* the environment wins */
    assert_string_equal(getenv("CTL_TEST_B"), "quoted");
    FILE *f = fopen(path, "a");
    fputs("oops\n", f);
    fclose(f);
    assert_int_equal(ctl_env_load(path, err, sizeof err), -1);
    assert_non_null(strstr(err, ":5:"));
    unlink(path);
    assert_int_equal(ctl_env_load("/nonexistent/chatctl.env", err, sizeof err), -1);
    /* An explicit env file that is missing is bad usage. */
    ctl_opts o;
    memset(&o, 0, sizeof o);
    o.env_file = "/nonexistent/chatctl.env";
    assert_int_equal(ctl_env_setup(&o, err, sizeof err), CTL_USAGE);
}

/* Parses and checks a command line as main() does. */
static ctl_rc parse(const char *line, ctl_opts *o)
{
    /* Static: o points into it after the call. */
    static char buf[512];
    char *argv[32];
    int argc = 0;
    snprintf(buf, sizeof buf, "chatctl %s", line);
    for (char *tok = strtok(buf, " "); tok && argc < 31; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc] = NULL;
    char err[256];
    ctl_rc rc = ctl_opts_parse(argc, argv, o, err, sizeof err);
    const ctl_command *cmd;
    if (rc == CTL_OK)
        rc = ctl_command_check(o, &cmd, err, sizeof err);
    return rc;
}

static void test_flags_ok(void **st)
{
    ctl_opts o;
    assert_int_equal(parse("--json status", &o), CTL_OK);
    assert_true(o.json);
    assert_int_equal(o.timeout_ms, 3000);
    assert_int_equal(parse("status --json --timeout 500 --gateways tcp://a:1", &o), CTL_OK);
    assert_true(o.json);
    assert_int_equal(o.timeout_ms, 500);
    assert_non_null(o.addrs[CTL_GATEWAY]);
    assert_int_equal(parse("kick 0f8fad5b-d9cb-469f-a165-70867728950e --reason=spam", &o),
                     CTL_OK);
    assert_string_equal(o.reason, "spam");
    assert_int_equal(parse("ban 0f8fad5b-d9cb-469f-a165-70867728950e --for 10m", &o), CTL_OK);
    assert_string_equal(o.for_text, "10m");
    assert_int_equal(parse("retention set 30", &o), CTL_OK);
    assert_int_equal(o.n_args, 2);
    assert_int_equal(parse("announce -- -hello", &o), CTL_OK);
    assert_string_equal(o.args[0], "-hello");
}

static void test_flags_bad(void **st)
{
    ctl_opts o;
    static const char *const bad[] = {
        "",                /* no command */
        "frobnicate",      /* unknown command */
        "status --bogus",  /* unknown flag */
        "--bogus status",  /* unknown flag before the command */
        "status extra",    /* extra argument */
        "user",            /* missing argument */
        "kick a b",        /* extra argument */
        "status --room x", /* another command's flag */
        "kick 0f8fad5b-d9cb-469f-a165-70867728950e --for 1m",
        "status --timeout",     /* missing value */
        "status --timeout abc", /* bad value */
        "status --timeout 0",
        "drain",
        "retention set 1 2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctl_rc rc = parse(bad[i], &o);
        if (rc != CTL_USAGE)
            fail_msg("\"%s\": %d, wanted 2", bad[i], (int)rc);
    }
}

static void test_rc_merge(void **st)
{
    assert_int_equal(ctl_rc_merge(CTL_OK, CTL_FAILED), CTL_FAILED);
    assert_int_equal(ctl_rc_merge(CTL_UNAUTHORIZED, CTL_FAILED), CTL_UNAUTHORIZED);
    assert_int_equal(ctl_rc_merge(CTL_NOT_FOUND, CTL_UNAUTHORIZED), CTL_UNAUTHORIZED);
    assert_int_equal(ctl_rc_merge(CTL_FAILED, CTL_NOT_FOUND), CTL_NOT_FOUND);
}

static void test_formats(void **st)
{
    char b[64];
    ctl_fmt_duration(3723000, b, sizeof b);
    assert_string_equal(b, "1h02m03s");
    ctl_fmt_duration(1500, b, sizeof b);
    assert_string_equal(b, "1.5s");
    ctl_fmt_duration(90061000, b, sizeof b);
    assert_string_equal(b, "1d01h01m01s");
    ctl_fmt_time(0, b, sizeof b);
    assert_string_equal(b, "-");
    ctl_fmt_time(1764654000000LL, b, sizeof b);
    assert_string_equal(b, "2025-12-02T05:40:00Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration), cmocka_unit_test(test_parse_int),
        cmocka_unit_test(test_env_line), cmocka_unit_test(test_env_load),
        cmocka_unit_test(test_flags_ok), cmocka_unit_test(test_flags_bad),
        cmocka_unit_test(test_rc_merge), cmocka_unit_test(test_formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
