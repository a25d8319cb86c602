/* svc-message: conversations, members, messages and receipts in PostgreSQL.
 * Private header of the service (prefix msg_).
 *
 * Threads:
 *  - nng's threads run msg_service's handler: decode, validate, route.
 *  - writer threads (writer.c) own sends: rate limit, group commit, reply,
 *    publish. A conversation always goes to the same writer, so its commits
 *    and events are ordered.
 *  - reader threads (a chat_workq, store.c) run every other request.
 *  - the purger thread (retention.c) deletes expired messages.
 *  - the skeleton's admin thread runs admin.c (chatctl's requests).
 * Every thread owns its own PostgreSQL connection (pg.c) and, for writers,
 * its own Redis connection. */
#ifndef SVC_MESSAGE_MESSAGE_H
#define SVC_MESSAGE_MESSAGE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "chat/admin.h"
#include "chat/metrics.h"
#include "chat/redis.h"
#include "chat/rpc.h"
#include "chat/util.h"
#include "events.pb-c.h"
#include "message.pb-c.h"

/* ---- configuration (filled from the table in main.c) ---- */
typedef struct msg_config {
    const char *listen;
    const char *pub_listen;
    const char *pg_dsn;
    const char *redis_host;
    const char *log_level;
    long long redis_port;
    long long rate_per_min; /* 0: no rate limit, Redis is not used */
    long long ops_per_min;  /* open_dm, rooms, history, typing, receipt (0: no limit) */
    long long ops_burst;
    long long max_rooms;        /* rooms a user may be in at once */
    long long work_deadline_ms; /* readers: older requests are answered unworked */
    long long max_text;         /* code points; we only reject > 4 * max bytes */
    long long writers;
    long long batch;    /* max sends per transaction */
    long long contexts; /* nng contexts of the REP socket */
    long long readers;
    long long pg_timeout_ms;        /* statement_timeout; client gives up a bit later */
    long long test_drop_events;     /* tests only: lose every Nth published batch */
    long long retention_days;       /* seeds the shared setting when never set */
    long long retention_interval_s; /* between purges (0: only when asked) */
    long long retention_batch;      /* rows per DELETE (0: the default) */
    long long retention_pause_ms;   /* between two DELETEs */
} msg_config;

/* ---- rules.c: pure logic (no I/O), unit tested in test_rules.c ---- */

#define MSG_CLIENT_ID_MAX 64 /* bytes, as in the client protocol */
#define MSG_MAX_MEMBERS 1000 /* create_conversation */
#define MSG_REPLAY_DEFAULT 200
#define MSG_REPLAY_MAX 500
#define MSG_HISTORY_DEFAULT 50
#define MSG_HISTORY_MAX 100
#define MSG_FLOORS_MAX_S "500"   /* conversations a replay's first page places */
#define MSG_CATCHUP_SKIP_MAX 256 /* a catch-up's skip list */
#define MSG_CONTACTS_MAX 10000   /* recipients of one presence push */

/* Outcome of one send (the first five are the SQL status column). */
typedef enum msg_status {
    MSG_ST_STORED = 0,
    MSG_ST_DUPLICATE = 1,
    MSG_ST_NOT_FOUND = 2,
    MSG_ST_NOT_MEMBER = 3,
    MSG_ST_CLOSED = 4,
    MSG_ST_RATE_LIMITED,
    MSG_ST_UNAVAILABLE,
    MSG_ST_INTERNAL,
} msg_status;

bool msg_utf8_valid(const char *s, size_t len);
/* Checks a decoded request before any I/O. Returns CHAT__CODE__OK or the
 * error, with a static human text in *detail. */
Chat__Code msg_validate(const Chat__MessageRequest *req, long long max_text,
                        const char **detail);
/* Writer index for a conversation id (case-insensitive), in [0, writers). */
unsigned msg_route(const char *conversation_id, unsigned writers);
Chat__Code msg_status_code(msg_status st);
/* The human detail of a failed status ("" for stored/duplicate). */
const char *msg_status_detail(msg_status st);
/* Replay page size from the request's limit (0: default, clamped to max). */
int msg_replay_limit(uint32_t limit);
/* History page size: 0 is the default; validation refuses > max. */
int msg_history_limit(uint32_t limit);
/* dm_key of a two-member DM: the two ids, lower-cased and sorted, joined by
 * ':'. out must hold 2 * 36 + 2 bytes. */
void msg_dm_key(const char *a, const char *b, char *out);
/* PostgreSQL array literal "{id,id,...}" of the distinct ids (already valid
 * UUIDs). Returns a malloc'd string (caller frees) and the distinct count
 * in *distinct, or NULL when out of memory. */
char *msg_uuid_array(char *const *ids, size_t n, size_t *distinct);
/* Splits a comma-separated id list in place into at most max pointers into
 * s. Returns the count. */
size_t msg_split_ids(char *s, char **out, size_t max);

/* Retention: the oldest ts (unix ms) a message may have and still be
 * kept, days after now_ms; 0 (keep everything) when days is 0. */
int64_t msg_retention_cutoff(int64_t now_ms, long long days);
/* The name of a stored conversation kind (1 random, 2 dm, 3 room; else
 * "unknown"). */
const char *msg_kind_name(int kind);

struct msg_job;
/* Sorts a batch of sends by conversation id, keeping the arrival order
 * within each conversation. Every replica then locks conversation rows in
 * the same order, so concurrent batches cannot deadlock. */
void msg_sort_batch(struct msg_job **jobs, int n);

/* ---- pg.c: one PostgreSQL connection owned by one thread ---- */

/* Kinds of failure, deciding what the caller does next. */
typedef enum msg_pg_err {
    MSG_PG_OK = 0,
    MSG_PG_RETRY, /* a statement failed (unique violation, deadlock...):
                           rolled back; the connection is fine */
    MSG_PG_DOWN,  /* connection lost, timeout, server going away */
} msg_pg_err;

typedef struct msg_pg {
    const char *dsn;
    int timeout_ms;
    PGconn *conn;        /* NULL while disconnected */
    int64_t next_try_ms; /* no connect attempt before (monotonic) */
    int backoff_ms;      /* current reconnect backoff, 0 when connected */
    bool warned;         /* "unreachable" logged once per outage */
    /* Plan every join as index lookups in nested loops (writer connections;
     * set before the first msg_pg_ensure). Their tables are updated all the
     * time: a plan that scans one whole (costed from small or stale
     * statistics, e.g. a database that just started empty) visits every
     * dead row version on each batch. */
    bool point_lookups;
} msg_pg;

void msg_pg_init(msg_pg *pg, const char *dsn, int timeout_ms);
/* Connects (migrating the schema and preparing statements) unless already
 * connected. Returns 0 or -1 (PostgreSQL unreachable; tried again later). */
int msg_pg_ensure(msg_pg *pg);
void msg_pg_close(msg_pg *pg);
/* Queue a prepared statement / a parameterless SQL command (BEGIN, COMMIT)
 * in the connection's pipeline. Return 0, or -1 after dropping a broken
 * connection. */
int msg_pg_send(msg_pg *pg, const char *stmt, int nparams, const char *const *values);
int msg_pg_send_sql(msg_pg *pg, const char *sql);
/* Ends the pipeline with a sync and collects one result per queued
 * statement into out[0..nq) (caller PQclear()s each; a NULL slot means the
 * server skipped it). On MSG_PG_DOWN the connection is dropped and out is
 * all NULL. A failed transaction is rolled back before returning. */
msg_pg_err msg_pg_collect(msg_pg *pg, PGresult **out, int nq);
/* One prepared statement on its own: the result (caller PQclear()s, check
 * its status) or NULL when PostgreSQL is unavailable. */
PGresult *msg_pg_query(msg_pg *pg, const char *stmt, int nparams, const char *const *values);
/* Classifies a failed result. */
msg_pg_err msg_pg_classify(const PGresult *r);
/* Process-wide failure counts since start: connects that failed, round
 * trips that lost the connection, statements PostgreSQL refused. */
void msg_pg_errors(uint64_t *connect, uint64_t *down, uint64_t *statement);

/* ---- schema.c ---- */
/* Runs pending migrations under an advisory lock on a blocking connection
 * (once per process; later calls return at once). Returns 0 or -1. */
int msg_schema_migrate(PGconn *conn);
/* Prepares every statement of the service on a fresh connection. */
int msg_schema_prepare(PGconn *conn);

/* Prepared statement names (SQL in schema.c). */
#define MSG_SQL_SEND "msg_send"
#define MSG_SQL_LOOKUP "msg_lookup"
#define MSG_SQL_SEND_MANY "msg_send_many"
#define MSG_SQL_CREATE "msg_create"
#define MSG_SQL_CLOSE "msg_close"
#define MSG_SQL_INFO "msg_info"
#define MSG_SQL_REPLAY "msg_replay"
#define MSG_SQL_RECEIPT "msg_receipt"
#define MSG_SQL_REGISTER "msg_register"
#define MSG_SQL_OPEN_DM "msg_open_dm"
#define MSG_SQL_JOIN "msg_join"
#define MSG_SQL_LEAVE "msg_leave"
#define MSG_SQL_HISTORY "msg_history"
#define MSG_SQL_TYPING "msg_typing"
#define MSG_SQL_CONTACTS "msg_contacts"
#define MSG_SQL_FILL "msg_fill"
#define MSG_SQL_FLOORS "msg_floors"
#define MSG_SQL_CATCHUP "msg_catchup"
#define MSG_SQL_LOCK "msg_lock"
#define MSG_SQL_RET_SEED "msg_ret_seed"
#define MSG_SQL_RET_GET "msg_ret_get"
#define MSG_SQL_RET_SET "msg_ret_set"
#define MSG_SQL_PURGE "msg_purge"
#define MSG_SQL_PURGE_LOCK "msg_purge_lock"
#define MSG_SQL_PURGE_UNLOCK "msg_purge_unlock"
#define MSG_SQL_ADM_USER "msg_adm_user"
#define MSG_SQL_ADM_USER_CONVS "msg_adm_user_convs"
#define MSG_SQL_ADM_CONV "msg_adm_conv"
#define MSG_SQL_ADM_ROOM "msg_adm_room"
#define MSG_SQL_ADM_MEMBERS "msg_adm_members"

/* ---- ratelimit.c: token buckets in Redis ---- */
typedef enum msg_rl { MSG_RL_OK, MSG_RL_LIMITED, MSG_RL_ERROR } msg_rl;

/* Registers the Lua scripts; call once before any Redis connection. */
void msg_rate_init(void);
/* Takes one token for each of n users in one pipelined round trip. Fills
 * res[i] and, when limited, retry_ms[i]. Returns 0, or -1 when Redis is
 * unreachable (every res[i] is MSG_RL_ERROR). */
int msg_rate_take(chat_redis *r, long long per_min, const char *const *users, int n,
                  int64_t now_ms, msg_rl *res, int64_t *retry_ms);
/* Gives one token back to each of n users (best effort, one round trip). */
void msg_rate_refund(chat_redis *r, long long per_min, const char *const *users, int n);

/* ---- job.c: a request in flight ---- */

/* What a writer learnt about one send, copied out of the PGresult. */
typedef struct msg_send_result {
    msg_status status;
    char conversation_id[40];
    char sender[40];
    char msg_id[24];
    int64_t seq;
    int64_t ts;
    char *body;   /* original text of a duplicate (malloc'd), else NULL */
    char *others; /* stored or duplicate: every member, comma-separated (malloc'd) */
    int64_t retry_after_ms;
} msg_send_result;

/* MSG_OP_COPY: a second send with the same sender and client_msg_id in one
 * batch; it takes the first one's outcome (a duplicate of it when stored). */
typedef enum msg_op { MSG_OP_NONE, MSG_OP_SEND, MSG_OP_LOOKUP, MSG_OP_COPY } msg_op;

typedef struct msg_service msg_service;

/* One request from decoding to reply. Owned by whoever holds it: the
 * handler, then a writer queue or the reader pool, which replies and frees
 * it. */
typedef struct msg_job {
    chat_rpc_job *rpc;
    Chat__MessageRequest *req; /* owned; freed with the job */
    msg_service *svc;
    int64_t t0_ns;           /* arrival (chat_mono_ns), for the latency histogram */
    msg_op op;               /* send: planned work in the batch */
    struct msg_job *copy_of; /* MSG_OP_COPY: the first send */
    bool token_taken;
    msg_send_result res;
} msg_job;

/* Sends the reply (once; the job keeps its request for what follows,
 * e.g. publishing), counts it (type, outcome, latency) and logs it at
 * debug level (event=request_done ... req_id=...). */
void msg_job_reply(msg_job *job, const Chat__MessageReply *reply);
/* Replies with just a code and frees the job. */
void msg_job_fail(msg_job *job, Chat__Code code, const char *detail);
/* Frees the request and results. The job must have been replied to. NULL
 * is fine. */
void msg_job_free(msg_job *job);
/* For the handlers, which own the job they are given and answer it exactly
 * once. NULL r: unavailable; an error result: a bug or a constraint we did
 * not foresee. Either way the job is answered (and freed) here; returns true
 * only when r holds rows to use. */
bool msg_job_usable(msg_job *job, const PGresult *r, const char *what);
/* Replies with rep and frees the job. */
void msg_job_done(msg_job *job, Chat__MessageReply *rep);

/* ---- writer.c: group commit of sends ---- */
typedef struct msg_writers msg_writers;

int msg_writers_open(msg_writers **out, const msg_config *cfg, chat_pub *pub);
/* Queues a send to its conversation's writer. Returns 0 (the writer owns
 * the job) or -1 when stopping (the caller keeps it). */
int msg_writers_push(msg_writers *ws, msg_job *job);
/* Runs what is queued, then joins the threads. NULL is fine. */
void msg_writers_close(msg_writers *ws);
/* Runs one batch of sends on a writer's connections, replies to each in
 * order and publishes the stored ones. Frees the jobs. */
void msg_writer_batch(const msg_config *cfg, chat_pub *pub, msg_pg *pg, chat_redis *redis,
                      msg_job **jobs, int n);

/* ---- meta.c: group commit of conversation creates and closes ---- */
typedef struct chat_batchq msg_meta; /* one thread (chat/batchq.h) */

int msg_meta_open(msg_meta **out, const msg_config *cfg);
/* Queues a create_conversation or close_conversation. Returns 0 (the
 * writer owns the job) or -1 when stopping (the caller keeps it). */
int msg_meta_push(msg_meta *m, msg_job *job);
/* Runs what is queued, then joins the thread. NULL is fine. */
void msg_meta_close(msg_meta *m);
/* The parameters of MSG_SQL_CREATE for a create_conversation job. */
typedef struct msg_create_args {
    char kind[16];
    char dm_key[2 * CHAT_UUID_LEN + 2];
    char *members; /* malloc'd uuid[] literal; the caller frees it */
    const char *v[3];
} msg_create_args;
int msg_create_params(const msg_job *job, msg_create_args *a); /* 0 or -1 (memory) */
/* Answer (and free) the job from its statement's result (NULL: down). */
void msg_create_result(msg_job *job, PGresult *res);
void msg_close_result(msg_job *job, PGresult *res);
/* Each in its own transaction. */
void msg_create_one(msg_job *job, msg_pg *pg);
void msg_close_one(msg_job *job, msg_pg *pg);

/* ---- store.c: every request but send, on the reader pool ---- */
void *msg_store_thread_init(void *cfg); /* returns the thread's state */
void msg_store_thread_fini(void *state);
void msg_store_work(void *job, void *state);

/* ---- publish.c: events to the gateways ---- */
/* Publishes ev to the comma-separated recipients (split in place; nothing
 * is sent when there are none). Best effort: a failure is logged. */
void msg_publish(chat_pub *pub, Chat__Event *ev, char *recipients);
/* Publishes n events together (a group commit's), in order; one for more
 * than 1,000 recipients as several, each naming a slice of them. Best
 * effort. */
void msg_publish_many(chat_pub *pub, const ProtobufCMessage *const *evs, size_t n);
/* Events published and events whose batch nng refused, since start. */
void msg_publish_counts(uint64_t *published, uint64_t *failed);
/* Lower-cased copy of a valid UUID (events carry ids as PostgreSQL writes
 * them, so gateways match them byte for byte). */
void msg_lower_uuid(char out[CHAT_UUID_LEN + 1], const char *id);

/* ---- users.c: known users, presence contacts ---- */
void msg_users_register(msg_job *job, msg_pg *pg);
void msg_users_contacts(msg_job *job, msg_pg *pg);

/* ---- conversations.c: DMs and rooms ---- */
void msg_conv_open_dm(msg_job *job, msg_pg *pg);
void msg_conv_join_room(msg_job *job, msg_pg *pg);
void msg_conv_leave_room(msg_job *job, msg_pg *pg);

/* ---- history.c: pages of a conversation, for its members ---- */
/* Rows [0, n) of res as messages, in row order (reverse: backwards).
 * Columns: conversation_id (unless conv names it for all), msg_id, seq,
 * sender, body, ts; the strings point into res. One malloc'd block,
 * NULL-terminated; free() it. NULL when out of memory. */
Chat__StoredMessage **msg_messages_from_rows(const PGresult *res, int n, const char *conv,
                                             bool reverse);
void msg_history(msg_job *job, msg_pg *pg);
void msg_fill(msg_job *job, msg_pg *pg); /* a gateway's gap */

/* ---- typing.c: membership check and relay to the other members ---- */
void msg_typing(msg_job *job, msg_pg *pg);

/* ---- retention.c: the purger thread ---- */
typedef struct msg_retention msg_retention;

/* What `chatctl retention` shows of this replica's purger. */
typedef struct msg_retention_state {
    bool running;
    uint64_t deleted;    /* by the current run so far, or by the last one */
    int64_t last_run_at; /* unix ms the last run ended, 0: never */
    uint64_t runs;       /* runs started (periodic and asked for) */
    uint64_t deleted_total;
    double last_duration_s;
} msg_retention_state;

/* Starts the purger (its own PostgreSQL connection, opened lazily). 0 or
 * -1. */
int msg_retention_open(msg_retention **out, const msg_config *cfg);
/* Asks for a run now (counted at once) and returns the state after it. */
void msg_retention_request(msg_retention *r, msg_retention_state *st);
void msg_retention_get(msg_retention *r, msg_retention_state *st);
/* Ends a run in progress between two batches, joins the thread. NULL is
 * fine. */
void msg_retention_close(msg_retention *r);

/* ---- admin.c: chatctl's requests (the skeleton's admin thread) ---- */
typedef struct msg_admin msg_admin;
msg_admin *msg_admin_new(const msg_config *cfg); /* NULL: out of memory */
void msg_admin_free(msg_admin *a);               /* NULL is fine */
/* chat_admin_handler; arg is the msg_service. */
void msg_admin_handle(const Chat__AdminRequest *req, chat_admin_out *out, void *arg);

/* ---- service.c ---- */
/* Counters and histograms for /metrics, written from any thread. */
typedef struct msg_stats {
    chat_reqstats *reqs;           /* by MessageRequest type and outcome */
    _Atomic int64_t in_flight;     /* received, not yet answered */
    _Atomic int64_t writer_queued; /* sends waiting for a writer */
    _Atomic int64_t reader_queued; /* requests waiting for a reader */
    _Atomic int64_t meta_queued;   /* creates/closes waiting */
    chat_size_hist batch_size;     /* sends per writer batch */
    chat_hist commit_s;            /* a writer batch's store step */
    chat_hist meta_commit_s;       /* a create/close batch's transaction */
    _Atomic uint64_t fills;        /* fill requests answered OK */
    _Atomic uint64_t filled;       /* messages in them */
    _Atomic uint64_t expired;      /* reader requests answered unworked, past the deadline */
} msg_stats;

struct msg_service {
    const msg_config *cfg;
    chat_pub *pub;
    msg_writers *writers;
    msg_meta *meta;
    void *readers; /* chat_workq */
    chat_rpc_server *rpc;
    msg_retention *retention;
    msg_admin *admin;
    msg_stats stats;
    atomic_bool stopping; /* set first by msg_service_stop */
    /* Every part started. /metrics reads the parts only while up, under mu;
     * the stop clears it under mu before it closes them. */
    bool up;
    pthread_mutex_t mu;
};

/* Starts everything in order: schema (best effort), publisher, writers,
 * readers, purger, then the REP socket. Returns 0 or -1 (all undone). */
int msg_service_start(msg_service *svc, const msg_config *cfg);
/* Stops accepting, drains writers and readers, closes sockets. Safe to
 * call again, and after a failed start. */
void msg_service_stop(msg_service *svc);
/* The skeleton's callbacks (chat/service.h); arg is the msg_service. */
bool msg_service_ready(void *arg);
uint64_t msg_service_load(void *arg);

/* ---- metrics.c ---- */
/* The service's families for /metrics (chat_svc_def.metrics). */
void msg_service_metrics(chat_mbuf *b, void *arg);

#endif
