/* front.c: the request line is made safe for lws's URL decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway.h"

static void expect(const char *in, const char *want)
{
    size_t len = strlen(in);
    char *out = malloc(3 * len + 1);
    size_t n = gw_front_sanitize(in, len, out);
    out[n] = '\0';
    assert_string_equal(out, want);
    free(out);
}

static void test_sanitize(void **state)
{
    /* the common case: untouched */
    expect("GET /ws?session=v1.abc.123.def HTTP/1.1\r\nHost: x\r\n\r\n",
           "GET /ws?session=v1.abc.123.def HTTP/1.1\r\nHost: x\r\n\r\n");
    expect("GET /ws?session=%ff%fe%20 HTTP/1.1\r\n", "GET /ws?session=%ff%fe%20 HTTP/1.1\r\n");
    /* NUL escapes and malformed escapes are escaped themselves */
    expect("GET /ws?session=%00 HTTP/1.1\r\n", "GET /ws?session=%2500 HTTP/1.1\r\n");
    expect("GET /ws?session=abc%00def HTTP/1.1\r\n",
           "GET /ws?session=abc%2500def HTTP/1.1\r\n");
    expect("GET /ws?session=%zz%4 HTTP/1.1\r\n", "GET /ws?session=%25zz%254 HTTP/1.1\r\n");
    expect("GET /%", "GET /%25");
    expect("GET /%4", "GET /%254");
    expect("GET /%41\r\n", "GET /%41\r\n");
    /* only the request line: headers are lws's business */
    expect("GET / HTTP/1.1\r\nX-A: %00\r\n", "GET / HTTP/1.1\r\nX-A: %00\r\n");
    expect("GET /%0\r\n", "GET /%250\r\n");
    expect("", "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sanitize)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
