/* libFuzzer target: the gateway's parsing of HTTP input before lws or the
 * REST handler act on it. The same bytes are a request line for
 * gw_front_sanitize (front.c) and, as a C string, a path, a number and an
 * Authorization value for the REST parsers (api.c). Linked from gw_core as
 * the gateway links them; only these pure functions are called. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

/* The documented bound (out needs 3 * len bytes), allocated exactly so ASan
 * sees a write past it; then the promises: the first line's escapes are all
 * valid afterwards (a second pass changes nothing), the rest is untouched. */
static void http_sanitize(const char *in, size_t len)
{
    char *out = malloc(3 * len + 1), *again = malloc(9 * len + 1);
    if (out == NULL || again == NULL)
        goto done;
    size_t n = gw_front_sanitize(in, len, out);
    if (n < len || n > 3 * len)
        abort();
    const char *eol = memchr(in, '\n', len);
    size_t rest = eol != NULL ? len - (size_t)(eol - in) : 0;
    if (memcmp(out + n - rest, in + len - rest, rest) != 0)
        abort();
    if (gw_front_sanitize(out, n, again) != n || memcmp(out, again, n) != 0)
        abort();
done:
    free(out);
    free(again);
}

static void http_history_path(const char *s)
{
    char conv[GW_ID_MAX + 1];
    if (!gw_api_history_path(s, conv))
        return;
    const char *id = s + strlen("/api/conversations/");
    size_t n = strlen(conv);
    if (n == 0 || n > GW_ID_MAX || strchr(conv, '/') != NULL || memcmp(id, conv, n) != 0 ||
        strcmp(id + n, "/messages") != 0)
        abort();
}

/* An accepted number is exactly what strtoull reads, within the bounds. */
static void http_uint(const char *s, uint64_t min, uint64_t max)
{
    uint64_t v = 0;
    if (!gw_api_uint(s, min, max, &v))
        return;
    errno = 0;
    char *end = NULL;
    unsigned long long want = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || want != v || v < min ||
        v > max)
        abort();
}

static void http_bearer(const char *s, size_t n)
{
    const char *tok = gw_api_bearer(s);
    if (tok != NULL && (tok < s + 7 || tok >= s + n || *tok == ' ' || *tok == '\t'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    http_sanitize((const char *)data, size);

    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    size_t n = strlen(s);
    http_history_path(s);
    http_uint(s, 1, 9007199254740992ULL); /* ?before= */
    http_uint(s, 1, GW_HISTORY_MAX);      /* ?limit= */
    http_uint(s, 0, UINT64_MAX);
    http_bearer(s, n);
    free(s);
    return 0;
}
