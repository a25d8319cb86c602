/* Discovery: names resolved through CHAT_HOSTS_FILE (the name source tests
 * can change) and a socket's dialers following them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "dialers.h"

static char hosts[64];

static void write_hosts(const char *text)
{
    char tmp[80];
    snprintf(tmp, sizeof tmp, "%s.tmp", hosts);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, hosts), 0); /* readers see all or nothing */
}

static void test_resolve(void **state)
{
    (void)state;
    char a[8][INET6_ADDRSTRLEN];
    write_hosts("# replicas\nmsg.chat.test 127.0.0.2 127.0.0.3\nnone.chat.test\n");
    assert_int_equal(chat_resolve("msg.chat.test", a, 8), 2);
    assert_string_equal(a[0], "127.0.0.2");
    assert_string_equal(a[1], "127.0.0.3");
    assert_int_equal(chat_resolve("msg.chat.test", a, 1), 1);  /* bounded */
    assert_int_equal(chat_resolve("none.chat.test", a, 8), 0); /* listed, no address */
    /* Not in the file: the system resolver. */
    int n = chat_resolve("localhost", a, 8);
    assert_true(n >= 1);
    bool loop = false;
    for (int i = 0; i < n; i++)
        loop |= strcmp(a[i], "127.0.0.1") == 0 || strcmp(a[i], "::1") == 0;
    assert_true(loop);
    assert_int_equal(chat_resolve("no-such-name.invalid", a, 8), -1);
}

/* Waits (bounded: 5 s) for the dialer count to become want. */
static int wait_count(chat_dialers *d, int want)
{
    for (int i = 0; i < 500 && chat_dialers_count(d) != want; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return chat_dialers_count(d);
}

static void test_dialers_follow_the_name(void **state)
{
    (void)state;
    nng_socket s;
    assert_int_equal(nng_req0_open(&s), 0);
    write_hosts("msg.chat.test 127.0.0.2\n");
    chat_dialers *d = NULL;
    /* A name plus a literal address: the literal is dialed as written. */
    assert_int_equal(chat_dialers_open(&d, s, "tcp://msg.chat.test:1,tcp://127.0.0.1:1"), 0);
    assert_int_equal(chat_dialers_count(d), 2);
    write_hosts("msg.chat.test 127.0.0.2 127.0.0.3 127.0.0.4\n");
    assert_int_equal(wait_count(d, 4), 4);
    write_hosts("msg.chat.test 127.0.0.4\n");
    assert_int_equal(wait_count(d, 2), 2);
    /* The file no longer names it and DNS does not know it: the dialers
     * stay (a lookup failure is no reason to drop every replica). */
    write_hosts("# nothing\n");
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_int_equal(chat_dialers_count(d), 2);
    write_hosts("msg.chat.test\n"); /* named, without addresses: gone */
    assert_int_equal(wait_count(d, 1), 1);
    chat_dialers_close(d);
    nng_close(s);
}

static void test_bad_lists(void **state)
{
    (void)state;
    nng_socket s;
    assert_int_equal(nng_req0_open(&s), 0);
    chat_dialers *d = NULL;
    assert_int_not_equal(chat_dialers_open(&d, s, ""), 0);
    assert_int_not_equal(chat_dialers_open(&d, s, "nonsense://x"), 0);
    nng_close(s);
}

int main(void)
{
    snprintf(hosts, sizeof hosts, "/tmp/test_dialers_%d.hosts", (int)getpid());
    setenv("CHAT_HOSTS_FILE", hosts, 1);
    setenv("CHAT_RESOLVE_MS", "50", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_dialers_follow_the_name),
        cmocka_unit_test(test_bad_lists),
    };
    int rv = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(hosts);
    return rv;
}
