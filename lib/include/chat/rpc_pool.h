/* A REP server whose requests run on a pool of worker threads, each with a
 * Redis connection of its own: the shape of every service whose work blocks
 * on Redis or on calls to other services. A request is taken on an nng
 * thread and queued; a worker runs it and replies. */
#ifndef CHAT_RPC_POOL_H
#define CHAT_RPC_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/redis.h"
#include "chat/rpc.h"

typedef struct chat_rpc_pool chat_rpc_pool;

/* On the nng thread, per request: true sends it to the urgent lane, a
 * worker of its own, so it never waits behind a backlog (heartbeats). Must
 * be quick: it sees the packed bytes only. */
typedef bool (*chat_rpc_pool_urgent)(const uint8_t *data, size_t len);

/* The setting behind cfg.deadline_ms, for a service's configuration table
 * (svc-message applies it to its own queues). */
#define CHAT_CFG_WORK_DEADLINE(dst)                                                          \
    {                                                                                        \
        "CHAT_WORK_DEADLINE_MS", CHAT_CFG_INT, "3000", 0, 600000,                            \
            "a request that waited this long for a worker is answered unavailable unworked " \
            "(the gateway gave up on it: its CHAT_RPC_TIMEOUT_MS); 0: never",                \
            dst                                                                              \
    }

typedef struct chat_rpc_pool_cfg {
    const char *name;   /* for log events, e.g. "match" */
    const char *listen; /* REP url */
    int contexts;       /* requests in flight on the socket */
    int threads;        /* worker threads (one Redis connection each) */
    const char *redis_host;
    int redis_port;
    int redis_timeout_ms;
    chat_rpc_pool_urgent urgent; /* NULL: one lane */
    /* A request that waited longer than this for a worker is refused
     * (chat_rpc_pool_refuse) instead of worked on: its caller has given up
     * by then, and working on it would only make the queue longer for the
     * requests behind it. 0: none. */
    int deadline_ms;
} chat_rpc_pool_cfg;

/* Runs on a worker with its Redis connection (NULL if it could not even be
 * allocated); must reply to job exactly once. data is valid until then. */
typedef void (*chat_rpc_pool_work)(chat_rpc_job *job, const uint8_t *data, size_t len,
                                   chat_redis *r, void *arg);
/* In a work callback: seconds since its request arrived (queue wait
 * included), for latency histograms. */
double chat_rpc_pool_age_s(void);

/* Runs on the nng thread when the pool takes no more work (stopping, out of
 * memory); must reply to job at once (typically UNAVAILABLE). */
typedef void (*chat_rpc_pool_refuse)(chat_rpc_job *job, void *arg);

/* Starts serving. cfg's strings and arg must outlive the pool. On success
 * *out is the caller's, freed by chat_rpc_pool_close(). Returns 0 or -1
 * (logged). */
int chat_rpc_pool_open(chat_rpc_pool **out, const chat_rpc_pool_cfg *cfg,
                       chat_rpc_pool_work work, chat_rpc_pool_refuse refuse, void *arg);
/* Requests waiting for a worker and being worked on now (thread-safe;
 * NULL: 0). */
void chat_rpc_pool_depth(chat_rpc_pool *p, unsigned *queued, unsigned *running);
/* Requests refused so far for having waited past cfg.deadline_ms. */
uint64_t chat_rpc_pool_expired(chat_rpc_pool *p);
/* Staged stop: refuse new requests, finish the queued ones (each gets its
 * reply), close the socket, free everything. NULL is fine. */
void chat_rpc_pool_close(chat_rpc_pool *p);

#endif
