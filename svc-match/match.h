/* svc-match: the random-chat queue and who is in which random chat.
 *
 * Private header of the service. The request -> reply logic (queue.c,
 * chats.c, service.c) needs only a chat_redis connection and a match_env,
 * so tests drive it directly with a fake svc-message and publisher; the
 * nng glue (net.c) and main.c wire it to the real ones.
 *
 * Redis keys (docs/ARCHITECTURE.md):
 *   m:queue            list of "ticket:user", oldest at the head
 *   m:ticket           ticket counter
 *   m:q:{user}         the user's live ticket; an entry whose ticket differs is stale
 *   m:chat:{user}      conversation id, or "pending" / "pending:left" while the
 *                      conversation is being created ("left": the user stopped
 *                      searching meanwhile, so a failed create does not requeue it)
 *   m:conv:{id}        hash a = partner (who waited), b = searcher
 *   m:timeouts:{user}  notices for the user's next session: chats that ended by
 *                      timeout ("id") or by the partner ("p:id") while away
 * Every decision that touches two users is one Lua script, so any number of
 * replicas never match a user twice. */
#ifndef SVC_MATCH_MATCH_H
#define SVC_MATCH_MATCH_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis.h>

#include "chat/admin.h"
#include "chat/metrics.h"
#include "chat/redis.h"
#include "chat/rpc_pool.h"
#include "chat/rpc.h"
#include "chat/util.h"
#include "events.pb-c.h"
#include "match.pb-c.h"
#include "message.pb-c.h"

/* Conversation ids are opaque to us (svc-message makes them); the client
 * protocol bounds them to 64 bytes. */
#define MATCH_ID_MAX 64
/* Random chats ended by timeout are kept for the user's return this long. */
#define MATCH_TIMEOUTS_TTL_S (7 * 24 * 3600)
/* At most this many timeout notices are kept per user (oldest dropped). */
#define MATCH_TIMEOUTS_MAX 100

/* ---- dependencies, injectable ---- */

/* What the logic needs from the outside world. Production: net.c; tests:
 * fakes. Both functions may be called from several threads at once. */
typedef struct match_env {
    /* Sends req to svc-message and waits. Returns 0 with *reply (the
     * caller frees it with chat__message_reply__free_unpacked(*reply,
     * NULL)), or -1 when svc-message is unreachable, timed out or answered
     * garbage (nothing written then). */
    int (*message_call)(void *ctx, const Chat__MessageRequest *req, Chat__MessageReply **reply);
    /* Publishes an event to every gateway; best effort, never blocks long. */
    void (*publish)(void *ctx, const Chat__Event *ev);
    void *ctx;
    /* How long a "pending" reservation may live if this process dies while
     * creating the conversation (must exceed the svc-message timeout). */
    int pending_ttl_s;
    /* start_search and stop_search per user (chat/ratelimit.h; 0: none). */
    long long ops_per_min, ops_burst;
} match_env;

/* ---- out.c: the reply ---- */

/* A MatchReply plus the storage its strings point into. Owned by whoever
 * declared it; match_out_init() before use, match_out_free() after. */
typedef struct match_out {
    Chat__MatchReply reply;
    char conv[MATCH_ID_MAX + 1];
    char partner[MATCH_ID_MAX + 1];
    char detail[128];
    /* malloc'd array of malloc'd strings: the reply's timed-out ids, then its
     * partner-ended ids (both arrays point into it). */
    char **timeouts;
} match_out;

void match_out_init(match_out *o);
void match_out_free(match_out *o);
/* Sets the code and a human detail (printf-style, truncated). */
void match_out_err(match_out *o, Chat__Code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- service.c: one request -> one reply ---- */

/* Loads the Lua scripts' hashes; call once before any thread starts. */
void match_scripts_init(void);

/* Handles one request completely: Redis, svc-message calls, events. Fills
 * out (always, also on errors). r belongs to the calling thread. */
void match_handle(const match_env *env, chat_redis *r, const Chat__MatchRequest *req,
                  match_out *out);

/* ---- queue.c: searching ---- */

typedef enum {
    MATCH_PAIR_IN_CHAT,   /* the user is in a random chat */
    MATCH_PAIR_SEARCHING, /* queued (newly or still) */
    MATCH_PAIR_PAIRED,    /* partner reserved, both "pending" */
} match_pair_status;

typedef struct match_pair {
    match_pair_status status;
    char partner[CHAT_UUID_LEN + 1]; /* PAIRED only */
    char ticket[24];                 /* PAIRED only: the partner's ticket */
} match_pair;

/* Parses the pairing script's reply. Returns 0 and fills *out, or -1 when
 * the reply is not what the script returns (nothing written then). */
int match_parse_pair(const redisReply *rep, match_pair *out);

void match_queue_scripts_init(void);
void match_start_search(const match_env *env, chat_redis *r, const Chat__StartSearchReq *q,
                        match_out *out);
/* stop_search and user_offline: leave the queue (OK unless Redis is
 * unreachable). A user already matched stays in its chat, named in
 * reply.matched_conversation_id. */
void match_leave_queue(chat_redis *r, const char *user_id, match_out *out);
/* chatctl queue: users waiting and the longest wait (ms). 0, or -1 when
 * Redis did not answer. */
int match_queue_stats(chat_redis *r, uint64_t *waiting, int64_t *longest_ms);

/* ---- chats.c: ending chats, timeout notices ---- */

typedef struct match_gone {
    char conv[MATCH_ID_MAX + 1];
    char partner[CHAT_UUID_LEN + 1]; /* "" when unknown */
} match_gone;

/* Parses the user_gone script's reply: 1 and *out for an ended chat, 0 for
 * "nothing to do" (nil), -1 for anything else. */
int match_parse_gone(const redisReply *rep, match_gone *out);

void match_chats_scripts_init(void);
void match_end_chat(const match_env *env, chat_redis *r, const Chat__EndChatReq *q,
                    match_out *out);
void match_user_gone(const match_env *env, chat_redis *r, const char *user_id, match_out *out);
void match_session(chat_redis *r, const char *user_id, match_out *out);

/* ---- out.c, calls.c: helpers every handler shares ---- */

/* True when s is a usable conversation id (1..MATCH_ID_MAX bytes). */
bool match_conv_id_valid(const char *s);
/* calls.c: asks svc-message to close a conversation; logs a failure. Returns 0/-1. */
int match_close_conversation(const match_env *env, const char *conv, const char *user);
/* calls.c: asks svc-message for the random chat of user and partner.
 * Returns 0 and its id in conv, or -1 (logged). */
int match_create_conversation(const match_env *env, const char *user, const char *partner,
                              char conv[MATCH_ID_MAX + 1]);
/* calls.c: svc-message's record of conv as user sees it; NULL when
 * unreachable. The caller frees it (chat__message_reply__free_unpacked). */
Chat__MessageReply *match_conversation_info(const match_env *env, const char *conv,
                                            const char *user);

/* ---- peers.c: the real svc-message client and event publisher ---- */

typedef struct match_peers {
    chat_rpc_client *message; /* owned by main */
    chat_pub *pub;            /* owned by main */
} match_peers;

/* match_env callbacks over match_peers (ctx = match_peers *). */
int match_peers_message_call(void *ctx, const Chat__MessageRequest *req,
                             Chat__MessageReply **reply);
void match_peers_publish(void *ctx, const Chat__Event *ev);

/* ---- admin.c: the operators' requests (chatctl queue) ---- */

/* The admin side has a Redis connection of its own, shared by the admin
 * thread and status's load figure. Users waiting now (0 when Redis does
 * not answer). */
uint64_t match_admin_waiting(chat_redis_shared *rs);
/* chat_admin_handler (arg: the admin side's chat_redis_shared). */
void match_admin_handle(const Chat__AdminRequest *req, chat_admin_out *out, void *arg);

/* ---- server.c: REP socket + worker threads, each with its own Redis ---- */

/* Starts serving. env must outlive the server. On success *out is the
 * caller's, freed by match_server_close(). Returns 0 or -1 (logged). */
int match_server_open(chat_rpc_pool **out, const chat_rpc_pool_cfg *cfg, const match_env *env);
/* chat_requests_total and chat_request_duration_seconds of the requests served. */
void match_server_metrics(chat_mbuf *b);
/* Staged stop: refuse new requests (UNAVAILABLE), finish the queued ones,
 * close the socket, free everything. NULL is fine. */
void match_server_close(chat_rpc_pool *s);

#endif
