/* Reconnecting blocking hiredis connection and Lua scripts (see redis.h). */
#include "chat/redis.h"
#include "chat/log.h"

#include <stdatomic.h>

#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REDIS_MAX_SCRIPTS 64

/* Every script ever initialised, so a fresh connection (e.g. after a Redis
 * restart emptied its script cache) can load them all before use. */
static pthread_mutex_t scripts_mu = PTHREAD_MUTEX_INITIALIZER;
static const chat_redis_script *scripts[REDIS_MAX_SCRIPTS];
static int nscripts;

struct chat_redis {
    char *host;
    int port;
    int timeout_ms;
    redisContext *c;
    bool warned;
};

void chat_redis_script_init(chat_redis_script *s, const char *src)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    s->src = src;
    EVP_Digest(src, strlen(src), md, &mdlen, EVP_sha1(), NULL);
    for (unsigned int i = 0; i < mdlen && i < 20; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
    pthread_mutex_lock(&scripts_mu);
    if (nscripts < REDIS_MAX_SCRIPTS)
        scripts[nscripts++] = s;
    pthread_mutex_unlock(&scripts_mu);
}

chat_redis *chat_redis_new(const char *host, int port, int timeout_ms)
{
    chat_redis *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->host = strdup(host);
    if (r->host == NULL) {
        free(r);
        return NULL;
    }
    r->port = port;
    r->timeout_ms = timeout_ms;
    return r;
}

void chat_redis_free(chat_redis *r)
{
    if (r == NULL)
        return;
    if (r->c)
        redisFree(r->c);
    free(r->host);
    free(r);
}

static void redis_drop(chat_redis *r)
{
    if (r->c) {
        redisFree(r->c);
        r->c = NULL;
    }
}

static int redis_load_scripts(chat_redis *r)
{
    pthread_mutex_lock(&scripts_mu);
    int n = nscripts;
    pthread_mutex_unlock(&scripts_mu);
    for (int i = 0; i < n; i++) {
        redisReply *rep = redisCommand(r->c, "SCRIPT LOAD %s", scripts[i]->src);
        if (rep == NULL)
            return -1;
        if (rep->type == REDIS_REPLY_ERROR)
            chat_log(CHAT_LOG_ERROR, "redis_script_error", "err=\"%s\"", rep->str);
        freeReplyObject(rep);
    }
    return 0;
}

/* The password of every connection (Redis AUTH): CHAT_REDIS_PASSWORD, or
 * the first line of the file CHAT_REDIS_PASSWORD_FILE (a Kubernetes Secret
 * mounted as a file). Read once; NULL when neither is set. */
static pthread_once_t password_once = PTHREAD_ONCE_INIT;
static char *redis_password;

static void password_load(void)
{
    const char *env = getenv("CHAT_REDIS_PASSWORD");
    const char *path = getenv("CHAT_REDIS_PASSWORD_FILE");
    if (env != NULL && env[0] != '\0') {
        redis_password = strdup(env);
        return;
    }
    if (path == NULL || path[0] == '\0')
        return;
    FILE *f = fopen(path, "r");
    char line[1024];
    if (f == NULL || fgets(line, sizeof line, f) == NULL) {
        chat_log(CHAT_LOG_ERROR, "redis_password_unreadable", "path=%s", path);
        redis_password = strdup(""); /* AUTH fails: Redis refuses, loudly */
    } else {
        line[strcspn(line, "\r\n")] = '\0';
        redis_password = strdup(line);
    }
    if (f != NULL)
        fclose(f);
}

/* 0, or -1 when Redis refused the password (logged; never the password). */
static int redis_auth(chat_redis *r)
{
    pthread_once(&password_once, password_load);
    if (redis_password == NULL)
        return 0;
    redisReply *rep = redisCommand(r->c, "AUTH %s", redis_password);
    int ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
    if (!ok && !r->warned)
        chat_log(CHAT_LOG_ERROR, "redis_auth_failed", "host=%s port=%d err=\"%s\"", r->host,
                 r->port, rep != NULL ? rep->str : r->c->errstr);
    if (rep != NULL)
        freeReplyObject(rep);
    return ok ? 0 : -1;
}

static int redis_ensure(chat_redis *r)
{
    if (r->c != NULL)
        return 0;
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    r->c = redisConnectWithTimeout(r->host, r->port, tv);
    if (r->c == NULL || r->c->err) {
        if (!r->warned)
            chat_log(CHAT_LOG_WARN, "redis_unreachable", "host=%s port=%d err=\"%s\"", r->host,
                     r->port, r->c ? r->c->errstr : "oom");
        r->warned = true;
        redis_drop(r);
        return -1;
    }
    redisSetTimeout(r->c, tv);
    if (redis_auth(r) != 0) {
        r->warned = true;
        redis_drop(r);
        return -1;
    }
    if (redis_load_scripts(r) != 0) {
        redis_drop(r);
        return -1;
    }
    if (r->warned)
        chat_log(CHAT_LOG_INFO, "redis_reconnected", "host=%s port=%d", r->host, r->port);
    r->warned = false;
    return 0;
}

struct chat_redis_shared {
    pthread_mutex_t mu;
    chat_redis *r;
};

chat_redis_shared *chat_redis_shared_new(const char *host, int port, int timeout_ms)
{
    chat_redis_shared *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    if ((s->r = chat_redis_new(host, port, timeout_ms)) == NULL) {
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

void chat_redis_shared_free(chat_redis_shared *s)
{
    if (s == NULL)
        return;
    chat_redis_free(s->r);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

chat_redis *chat_redis_shared_take(chat_redis_shared *s)
{
    pthread_mutex_lock(&s->mu);
    return s->r;
}

void chat_redis_shared_give(chat_redis_shared *s)
{
    pthread_mutex_unlock(&s->mu);
}

/* Commands that failed (no connection, timeout, an error reply to a
 * script), over every connection of the process: /metrics shows it. */
static _Atomic uint64_t redis_errors;

uint64_t chat_redis_errors(void)
{
    return atomic_load(&redis_errors);
}

redisReply *chat_redis_argv(chat_redis *r, int argc, const char **argv, const size_t *lens)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (redis_ensure(r) != 0)
            return NULL;
        redisReply *rep = redisCommandArgv(r->c, argc, argv, lens);
        if (rep != NULL)
            return rep;
        redis_drop(r);
    }
    atomic_fetch_add(&redis_errors, 1);
    return NULL;
}

redisReply *chat_redis_cmd(chat_redis *r, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (redis_ensure(r) != 0)
            return NULL;
        va_list ap;
        va_start(ap, fmt);
        redisReply *rep = redisvCommand(r->c, fmt, ap);
        va_end(ap);
        if (rep != NULL)
            return rep;
        redis_drop(r);
    }
    atomic_fetch_add(&redis_errors, 1);
    return NULL;
}

int chat_redis_append_argv(chat_redis *r, int argc, const char **argv, const size_t *lens)
{
    if (redis_ensure(r) != 0)
        return -1;
    if (redisAppendCommandArgv(r->c, argc, argv, lens) != REDIS_OK) {
        redis_drop(r);
        return -1;
    }
    return 0;
}

int chat_redis_get_reply(chat_redis *r, redisReply **reply)
{
    void *rep = NULL;
    if (r->c == NULL || redisGetReply(r->c, &rep) != REDIS_OK || rep == NULL) {
        redis_drop(r);
        return -1;
    }
    *reply = rep;
    return 0;
}

/* Builds EVALSHA/EVAL argv: cmd, sha-or-src, nkeys, args... */
static int eval_argv(const char **argv, size_t *lens, char *nkeys_buf, size_t bufsz,
                     const char *cmd, const char *body, int nkeys, int nargs, const char **args)
{
    snprintf(nkeys_buf, bufsz, "%d", nkeys);
    argv[0] = cmd;
    argv[1] = body;
    argv[2] = nkeys_buf;
    for (int i = 0; i < nargs; i++)
        argv[3 + i] = args[i];
    for (int i = 0; i < nargs + 3; i++)
        lens[i] = strlen(argv[i]);
    return nargs + 3;
}

#define REDIS_MAX_EVAL_ARGS 64

redisReply *chat_redis_eval(chat_redis *r, const chat_redis_script *s, int nkeys, int nargs,
                            const char **args)
{
    if (nargs > REDIS_MAX_EVAL_ARGS)
        return NULL;
    const char *argv[REDIS_MAX_EVAL_ARGS + 3];
    size_t lens[REDIS_MAX_EVAL_ARGS + 3];
    char nk[16];
    int argc = eval_argv(argv, lens, nk, sizeof nk, "EVALSHA", s->sha, nkeys, nargs, args);
    redisReply *rep = chat_redis_argv(r, argc, argv, lens);
    if (rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(rep);
        argc = eval_argv(argv, lens, nk, sizeof nk, "EVAL", s->src, nkeys, nargs, args);
        rep = chat_redis_argv(r, argc, argv, lens);
    }
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
        /* Redis is there but refuses (loading, out of memory, a script
         * bug): for every caller that is "try again later". */
        chat_log(CHAT_LOG_ERROR, "redis_script_error", "err=\"%.200s\"", rep->str);
        atomic_fetch_add(&redis_errors, 1);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

int chat_redis_append_eval(chat_redis *r, const chat_redis_script *s, int nkeys, int nargs,
                           const char **args)
{
    if (nargs > REDIS_MAX_EVAL_ARGS)
        return -1;
    const char *argv[REDIS_MAX_EVAL_ARGS + 3];
    size_t lens[REDIS_MAX_EVAL_ARGS + 3];
    char nk[16];
    int argc = eval_argv(argv, lens, nk, sizeof nk, "EVALSHA", s->sha, nkeys, nargs, args);
    return chat_redis_append_argv(r, argc, argv, lens);
}
