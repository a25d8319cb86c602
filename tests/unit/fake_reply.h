/* Test support: hand-built hiredis replies, for unit tests of code that
 * parses Redis script results without a Redis. Header-only; include it
 * after <hiredis.h> (the services' private headers bring it). */
#ifndef TESTS_UNIT_FAKE_REPLY_H
#define TESTS_UNIT_FAKE_REPLY_H

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static inline redisReply *rep_new(int type)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = type;
    return r;
}

static inline redisReply *rep_str(const char *s)
{
    redisReply *r = rep_new(REDIS_REPLY_STRING);
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}

static inline redisReply *rep_int(long long v)
{
    redisReply *r = rep_new(REDIS_REPLY_INTEGER);
    r->integer = v;
    return r;
}

/* An array of n replies (taken). */
static inline redisReply *rep_arr(size_t n, ...)
{
    redisReply *r = rep_new(REDIS_REPLY_ARRAY);
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof *r->element);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

/* Frees a reply built here, with its elements. NULL is fine. */
static inline void rep_free(redisReply *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->elements; i++)
        rep_free(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

#endif
