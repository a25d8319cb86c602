/* svc-presence: live connections per user and gateway, last seen, the
 * reconnect grace, and dead-gateway cleanup.
 *
 * Private header of the service. The request -> reply logic and the sweeper
 * tick need only a chat_redis connection, a clock value and a pres_env, so
 * tests drive them directly with a fake svc-match; the nng glue (server.c,
 * peers.c), the sweeper thread (sweeper.c) and main.c wire them up.
 *
 * Redis keys (docs/ARCHITECTURE.md):
 *   p:conns:{user}   set of "gateway/conn"
 *   p:gw:{gateway}   set of "user/conn"
 *   p:gwalive        zset gateway -> last heartbeat (unix ms)
 *   p:seen:{user}    unix ms when the user's last connection closed
 *   p:grace          zset user -> grace deadline (unix ms)
 *   p:deadgws        set of gateways declared dead whose connections are
 *                    still being closed, a chunk per sweeper tick
 *   p:dead:{gateway} the "user/conn" entries still to close
 *   p:bans, p:bans:ver  bans and their version (bans.c)
 * Every decision is one Lua script, so replicas never double-process. */
#ifndef SVC_PRESENCE_PRESENCE_H
#define SVC_PRESENCE_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis.h>

#include "chat/admin.h"
#include "chat/metrics.h"
#include "chat/redis.h"
#include "chat/rpc_pool.h"
#include "chat/rpc.h"
#include "chat/util.h"
#include "events.pb-c.h"
#include "match.pb-c.h"
#include "presence.pb-c.h"

#define PRES_GATEWAY_ID_MAX 128
#define PRES_QUERY_MAX 100
/* Last-seen times are kept this long after the last connection closed. */
#define PRES_SEEN_TTL_S (30 * 24 * 3600)
/* Sweeper bounds per tick. */
#define PRES_GRACE_BATCH 100
#define PRES_GW_CLAIM_BATCH 10
#define PRES_GW_CHUNK 100
#define PRES_GW_CHUNKS_PER_TICK 10
/* A user_gone that svc-match did not take is retried this much later. */
#define PRES_GONE_RETRY_MS 1000

/* ---- dependencies, injectable ---- */

typedef struct pres_env {
    /* Sends req to svc-match and waits. Returns 0 with *reply (the caller
     * frees it with chat__match_reply__free_unpacked(*reply, NULL)), or -1
     * when svc-match is unreachable, timed out or answered garbage. May be
     * called from several threads at once. */
    int (*match_call)(void *ctx, const Chat__MatchRequest *req, Chat__MatchReply **reply);
    void *ctx;
    int64_t grace_ms;  /* CHAT_RECONNECT_GRACE_MS */
    int64_t gw_ttl_ms; /* CHAT_GATEWAY_TTL_MS */
    /* A user came online (first connection; `at` is when the gateway
     * opened it) or went offline (last one closed, also by a dead gateway;
     * `at` is now) at unix ms `at`: its contacts are to be told. Must not
     * block (it queues). NULL: nobody is told. */
    void (*notify)(void *nctx, const char *user, bool online, int64_t at);
    void *nctx;
    /* Presence queries per asking user (chat/ratelimit.h; 0: none). */
    long long ops_per_min, ops_burst;
} pres_env;

/* ---- out.c: the reply ---- */

/* A PresenceReply plus the storage it points into. Status user ids point
 * into the request, which must outlive the reply's packing. Owned by whoever
 * declared it: pres_out_init() before use, pres_out_free() after. */
typedef struct pres_out {
    Chat__PresenceReply reply;
    char detail[128];
    Chat__UserStatus *statuses;     /* malloc'd */
    Chat__UserStatus **status_ptrs; /* malloc'd */
    void *bans_mem;                 /* malloc'd: the bans list (bans.c) */
} pres_out;

void pres_out_init(pres_out *o);
void pres_out_free(pres_out *o);
void pres_out_err(pres_out *o, Chat__Code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- service.c ---- */

/* Loads the Lua scripts' hashes; call once before any thread starts. */
void pres_scripts_init(void);
/* Handles one request completely at time now (unix ms). Fills out always.
 * r belongs to the calling thread. */
void pres_handle(const pres_env *env, chat_redis *r, const Chat__PresenceRequest *req,
                 int64_t now, pres_out *out);

/* ---- calls.c: requests to svc-match ---- */

/* Tells svc-match about a user (user_offline or user_gone). Returns 0 when
 * svc-match answered OK, -1 otherwise (logged). */
int pres_tell_match(const pres_env *env, Chat__MatchRequest__BodyCase kind, const char *user);

/* ---- conns.c: connect / disconnect ---- */

/* Set members: "gateway/conn" (in p:conns) and "user/conn" (in p:gw).
 * Return the length written, or -1 if it does not fit. */
int pres_conn_member(char *buf, size_t n, const char *gateway, uint64_t conn);
int pres_user_member(char *buf, size_t n, const char *user, uint64_t conn);

void pres_conns_scripts_init(void);
void pres_connect(chat_redis *r, const Chat__ConnectReq *q, pres_out *out);
void pres_disconnect(const pres_env *env, chat_redis *r, const Chat__DisconnectReq *q,
                     int64_t now, pres_out *out);

/* ---- gateways.c: heartbeats and dead gateways ---- */

void pres_gateways_scripts_init(void);
void pres_heartbeat(chat_redis *r, const Chat__HeartbeatReq *q, int64_t now, pres_out *out);
/* One sweeper step: declares silent gateways dead and closes up to a bounded
 * number of their connections. Returns how many users went offline, or -1
 * when Redis is unreachable. */
int pres_sweep_gateways(const pres_env *env, chat_redis *r, int64_t now);

/* ---- grace.c: the reconnect grace ---- */

void pres_grace_scripts_init(void);
/* One sweeper step: claims up to PRES_GRACE_BATCH users whose grace ran out
 * and tells svc-match they are gone. Returns how many were claimed, or -1
 * when Redis is unreachable. */
int pres_sweep_grace(const pres_env *env, chat_redis *r, int64_t now);

/* ---- query.c ---- */

void pres_query_scripts_init(void);
void pres_query(chat_redis *r, const Chat__QueryReq *q, int64_t now, pres_out *out);
/* Parses the query script's reply for n users into online[] / seen[]
 * (0 when unknown). Returns 0, or -1 when the reply has another shape. */
int pres_parse_query(const redisReply *rep, size_t n, bool *online, int64_t *seen);

/* Users with a connection on a live gateway, and those connections (one
 * script over every gateway's set: for operators, not for hot paths).
 * 0, or -1 when Redis failed. */
int pres_online_count(chat_redis *r, uint64_t *users, uint64_t *conns);
/* Online state and last seen (0: unknown) of one user. Returns 0, or -1
 * when Redis is unreachable. */
int pres_status_of(chat_redis *r, const char *user, bool *online, int64_t *seen);

/* ---- bans.c: bans (chatctl ban / unban), read by every gateway ---- */

void pres_bans_scripts_init(void);
/* until_ms: unix ms, 0 = until unbanned. 0, or -1 when Redis failed. */
int pres_ban_set(chat_redis *r, const char *user, int64_t until_ms, int64_t now);
/* *lifted: there was one. 0, or -1 when Redis failed. */
int pres_ban_lift(chat_redis *r, const char *user, int64_t now, bool *lifted);
/* *until_ms: -1 not banned (or expired), 0 until unbanned, else unix ms. */
int pres_ban_of(chat_redis *r, const char *user, int64_t now, int64_t *until_ms);
/* The version gateways compare (0: no ban ever set). 0 or -1. */
int pres_bans_version(chat_redis *r, uint64_t *version);
/* BansReq: every ban in force (expired ones pruned) and the version. */
void pres_bans_list(chat_redis *r, int64_t now, pres_out *out);

/* ---- notify.c: presence pushes to a user's contacts ---- */

/* The notifier's outside world, injectable for tests. */
typedef struct pres_notify_deps {
    /* The user's contacts (other members of its DMs and open random chat
     * that it was in by unix ms `at`), from svc-message. Returns 0 with
     * *ids (malloc'd array of malloc'd strings, freed with pres_ids_free)
     * and *n, or -1 (nothing written). */
    int (*contacts)(void *ctx, const char *user, int64_t at, char ***ids, size_t *n);
    /* Publishes an event; returns 0 or -1. */
    int (*publish)(void *ctx, const Chat__Event *ev);
    void *ctx;
} pres_notify_deps;

void pres_ids_free(char **ids, size_t n);
/* One push, on a notifier thread at unix ms now: asks for the contacts,
 * then reads the user's state again and publishes only if it still is the
 * one this push is about (a user who left a moment after coming online is
 * not announced online after its offline). `at` is when it happened.
 * Returns 1 published, 0 nothing to do (no contacts, state moved on), -1
 * failed (svc-message or the publisher unavailable). */
int pres_notify_run(const pres_notify_deps *d, chat_redis *r, const char *user, bool online,
                    int64_t at, int64_t now);

typedef struct pres_notifier pres_notifier;
/* Starts `threads` threads (a user always goes to the same one, so its
 * pushes keep their order), each with its own Redis connection and a queue
 * of at most queue_max pushes (more are dropped, logged). deps must
 * outlive the notifier. Returns 0 (*out is the caller's) or -1. */
int pres_notifier_start(pres_notifier **out, const pres_notify_deps *deps,
                        const char *redis_host, int redis_port, int redis_timeout_ms,
                        int threads, int queue_max);
/* pres_env.notify: queues a push (nctx: the notifier). Never blocks. */
void pres_notifier_push(void *nctx, const char *user, bool online, int64_t at);
/* Drops what is queued, joins the threads, frees everything. NULL is fine. */
void pres_notifier_stop(pres_notifier *n);

/* ---- sweeper.c: the sweeper thread ---- */

typedef struct pres_sweeper pres_sweeper;
/* Starts a thread that runs both sweeps every interval_ms with its own Redis
 * connection. env must outlive it. Returns 0 (*out is the caller's, freed by
 * pres_sweeper_stop) or -1. */
int pres_sweeper_start(pres_sweeper **out, const pres_env *env, const char *redis_host,
                       int redis_port, int redis_timeout_ms, int interval_ms);
/* Stops and joins the thread, frees everything. NULL is fine. */
void pres_sweeper_stop(pres_sweeper *s);

/* ---- peers.c: the real svc-match client ---- */

/* pres_env.match_call over a chat_rpc_client (ctx). */
int pres_peers_match_call(void *ctx, const Chat__MatchRequest *req, Chat__MatchReply **reply);
/* The production notifier: contacts from svc-message and the event
 * publisher. */
typedef struct pres_peers {
    chat_rpc_client *message;
    chat_pub *pub;
} pres_peers;
/* pres_notify_deps.contacts over pres_peers.message (ctx: the pres_peers). */
int pres_peers_contacts(void *ctx, const char *user, int64_t at, char ***ids, size_t *n);
/* pres_notify_deps.publish over pres_peers.pub. */
int pres_peers_publish(void *ctx, const Chat__Event *ev);

/* ---- admin.c: the operators' requests (users, user, ban, unban) ---- */

/* The admin side has a Redis connection of its own, shared by the admin
 * thread and status's load figure. Users online (0 when Redis fails). */
uint64_t pres_admin_online(chat_redis_shared *rs);
/* A chat_admin_handler (arg: the admin side's chat_redis_shared). */
void pres_admin_handle(const Chat__AdminRequest *req, chat_admin_out *out, void *arg);

/* ---- server.c: REP socket + worker threads, each with its own Redis ---- */

/* Starts serving. env must outlive the server. Returns 0 (*out is the
 * caller's, freed by pres_server_close) or -1 (logged). */
/* True for a heartbeat: served on the pool's urgent lane. */
bool pres_server_urgent(const uint8_t *data, size_t len);
int pres_server_open(chat_rpc_pool **out, const chat_rpc_pool_cfg *cfg, const pres_env *env);
/* Staged stop: refuse new requests (UNAVAILABLE), finish the queued ones,
 * close the socket, free everything. NULL is fine. */
void pres_server_close(chat_rpc_pool *s);
/* chat_requests_total and chat_request_duration_seconds of the requests served. */
void pres_server_metrics(chat_mbuf *b);

#endif
