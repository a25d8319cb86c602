/* Test support for unit tests against a real Redis: the port from
 * $CHAT_TEST_REDIS_PORT (the test is skipped, exit 77, without one) and a
 * connection to the test's own database. Header-only; include it after
 * <cmocka.h> and chat/redis.h. */
#ifndef TESTS_UNIT_REDIS_FIXTURE_H
#define TESTS_UNIT_REDIS_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

/* The Redis port, or exits 77 (ctest's SKIP_RETURN_CODE) naming prog. */
static inline int redis_fixture_port(const char *prog, int db)
{
    const char *port = getenv("CHAT_TEST_REDIS_PORT");
    if (port == NULL || *port == '\0') {
        fprintf(stderr,
                "%s: SKIPPED: set CHAT_TEST_REDIS_PORT to a Redis on 127.0.0.1 (database %d "
                "is emptied)\n",
                prog, db);
        exit(77);
    }
    return atoi(port);
}

/* A connection to database db (asserts it works). */
static inline chat_redis *redis_fixture_connect(int port, int db)
{
    chat_redis *r = chat_redis_new("127.0.0.1", port, 2000);
    assert_non_null(r);
    redisReply *rep = chat_redis_cmd(r, "SELECT %d", db);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    return r;
}

#endif
