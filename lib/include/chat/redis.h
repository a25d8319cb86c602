/* A blocking hiredis connection that reconnects by itself, and Lua scripts
 * run with EVALSHA (loading them again after a Redis restart). One
 * connection belongs to one thread. A Redis with a password: every
 * connection sends AUTH with CHAT_REDIS_PASSWORD, or the first line of the
 * file CHAT_REDIS_PASSWORD_FILE. */
#ifndef CHAT_REDIS_H
#define CHAT_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis.h>

typedef struct chat_redis chat_redis;

/* The password settings, for a program's configuration table (--help). */
#define CHAT_REDIS_CFG_AUTH                                                                 \
    {                                                                                       \
        "CHAT_REDIS_PASSWORD",                                                              \
        CHAT_CFG_STR,                                                                       \
        "",                                                                                 \
        0,                                                                                  \
        0,                                                                                  \
        "Redis password (AUTH; empty: none)",                                               \
        NULL},                                                                              \
    {                                                                                       \
        "CHAT_REDIS_PASSWORD_FILE", CHAT_CFG_STR, "", 0, 0,                                 \
            "file whose first line is the Redis password (instead of CHAT_REDIS_PASSWORD)", \
            NULL                                                                            \
    }

chat_redis *chat_redis_new(const char *host, int port, int timeout_ms);
void chat_redis_free(chat_redis *r);
/* Commands that failed so far, over every connection of the process. */
uint64_t chat_redis_errors(void);

/* One connection for a few threads that use it now and then (an admin
 * thread, a metrics reader): taken and given back under a lock. */
typedef struct chat_redis_shared chat_redis_shared;
chat_redis_shared *chat_redis_shared_new(const char *host, int port, int timeout_ms);
void chat_redis_shared_free(chat_redis_shared *s);        /* NULL is fine */
chat_redis *chat_redis_shared_take(chat_redis_shared *s); /* blocks while another has it */
void chat_redis_shared_give(chat_redis_shared *s);

/* Like redisCommand; reconnects and retries once when the link is broken.
 * Returns the reply (caller frees with freeReplyObject) or NULL when Redis
 * is unreachable. A Redis error reply is returned as REDIS_REPLY_ERROR. */
redisReply *chat_redis_cmd(chat_redis *r, const char *fmt, ...);
redisReply *chat_redis_argv(chat_redis *r, int argc, const char **argv, const size_t *lens);

/* Pipelining: append n commands, then read n replies in order. Returns 0 or
 * -1 (link broken: every reply of the batch is lost; the caller retries). */
int chat_redis_append_argv(chat_redis *r, int argc, const char **argv, const size_t *lens);
int chat_redis_get_reply(chat_redis *r, redisReply **reply);

typedef struct chat_redis_script {
    const char *src;
    char sha[41]; /* filled in by chat_redis_script_init */
} chat_redis_script;

void chat_redis_script_init(chat_redis_script *s, const char *src);
/* EVALSHA with nkeys keys followed by arguments (all C strings; nargs in
 * all), loading the script when Redis lost it. Returns the reply (the
 * caller frees it) or NULL when Redis is unreachable or answers with an
 * error (logged as redis_script_error). */
redisReply *chat_redis_eval(chat_redis *r, const chat_redis_script *s, int nkeys, int nargs,
                            const char **args);
/* Same, appended to the pipeline (replies read with chat_redis_get_reply;
 * the caller must have run the script once, or uses EVAL if unsure). */
int chat_redis_append_eval(chat_redis *r, const chat_redis_script *s, int nkeys, int nargs,
                           const char **args);

#endif
