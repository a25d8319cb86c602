/* svc-gateway: the WebSocket/HTTP front of the chat (prefix gw_).
 *
 * Threads: one lws service thread owns every connection, table and counter
 * below. nng threads only decode replies/events and hand them over through
 * the backend queue (backend.c); nothing else here is thread-safe.
 *
 * Client protocol: ../../shared/PROTOCOL.md. Internal contract:
 * docs/ARCHITECTURE.md. */
#ifndef SVC_GATEWAY_GATEWAY_H
#define SVC_GATEWAY_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <libwebsockets.h>

struct ev_loop;
#include <uthash.h>

#include "admin.pb-c.h"
#include "chat/metrics.h"
#include "chat/rpc.h"
#include "chat/util.h"
#include "events.pb-c.h"
#include "match.pb-c.h"
#include "message.pb-c.h"
#include "presence.pb-c.h"

#include "gw_config.h"
#include "gw_wire.h"

_Static_assert(GW_FRAME_PRE == LWS_PRE, "gw_frame headroom must be what lws_write wants");

/* ------------------------------------------------------------------ backend.c */
typedef enum {
    GW_SVC_MATCH,
    GW_SVC_MESSAGE,
    GW_SVC_PRESENCE,
    GW_SVC_EVENTS,
    GW_SVC_COUNT
} gw_svc;
const char *gw_svc_name(gw_svc svc);

/* What an item coming back from nng is the answer to. */
typedef enum {
    GW_OP_START_SEARCH,
    GW_OP_STOP_SEARCH,
    GW_OP_END_CHAT,
    GW_OP_SEND,
    GW_OP_RECEIPT,
    GW_OP_QUERY,      /* presence query frame */
    GW_OP_CONNECT,    /* presence connect */
    GW_OP_DISCONNECT, /* presence disconnect */
    GW_OP_HEARTBEAT,
    GW_OP_SESSION, /* resume: match session */
    GW_OP_REPLAY,  /* resume: one replay page */
    GW_OP_EVENT,   /* a published Event */
    GW_OP_OPEN_DM,
    GW_OP_JOIN_ROOM,
    GW_OP_LEAVE_ROOM,
    GW_OP_HISTORY,
    GW_OP_TYPING,
    GW_OP_REGISTER,    /* register_user of a new connection's user */
    GW_OP_API_HISTORY, /* GET /api/conversations/{id}/messages (conn_id: the HTTP one) */
    GW_OP_FILL,        /* order.c: messages a connection missed */
    GW_OP_CATCHUP,     /* order.c: the same over the conversations it does not follow */
    GW_OP_EVENTS_LOST, /* the subscription saw batches go missing (no reply) */
    GW_OP_BANS,        /* bans.c: the bans in force, from svc-presence */
    GW_OP_ADMIN,       /* admin.c: an admin request to run on the lws thread (no reply) */
    GW_OP_COUNT
} gw_op;
const char *gw_op_name(gw_op op); /* "send", "heartbeat", ... (metrics labels) */

/* Crosses from an nng thread to the lws thread; freed by gw_item_free(). */
typedef struct gw_backend gw_backend;

typedef struct gw_item {
    struct gw_item *next;
    gw_backend *be;
    gw_op op;
    uint64_t conn_id; /* the connection this answers (0: none) */
    int err;          /* 0, an nng error, or -1 (reply could not be decoded) */
    int64_t t0_ns;    /* chat_mono_ns() when the request went out (0: not a request) */
    gw_request *rq;   /* owned: the client frame this answers, or NULL */
    /* Set: frees r.any instead of the protobuf free of the op's service. */
    void (*free_any)(void *any);
    union { /* decoded on the nng thread; NULL when err != 0 */
        void *any;
        Chat__MatchReply *match;
        Chat__MessageReply *msg;
        Chat__PresenceReply *pres;
        Chat__Event *ev;
    } r;
} gw_item;

/* Opens the three rpc clients and the event subscription (peers connect in
 * the background). Returns 0 or an nng error. */
int gw_backend_open(gw_backend **out, const gw_config *cfg);
/* Sets (or, with NULL, clears) the lws context woken by new items. */
void gw_backend_set_context(gw_backend *be, struct lws_context *ctx);
/* Starts a request; the answer (or the failure) always comes back as one
 * item with op/conn_id/rq. Takes rq (may be NULL). */
void gw_backend_call(gw_backend *be, gw_op op, uint64_t conn_id, gw_request *rq,
                     const ProtobufCMessage *req);
/* Arms a flush of the queued requests wait_us from now (<= 0: when the
 * current event-loop pass is done); the arming side then calls
 * gw_backend_flush(). lws thread. */
typedef void (*gw_flush_arm)(void *arg, int64_t wait_us);
/* Without a flusher, lws timers arm it. */
void gw_backend_set_flusher(gw_backend *be, gw_flush_arm arm, void *arg);
/* Sends the queued quick requests (one nng message per service). */
void gw_backend_flush(gw_backend *be);
/* Takes every queued item, oldest first (a list linked by next). */
gw_item *gw_backend_take(gw_backend *be);
size_t gw_backend_queue_len(gw_backend *be);
int gw_backend_peers(gw_backend *be, gw_svc svc);
uint64_t gw_backend_lost(gw_backend *be); /* event batches lost so far */
/* Enough peers to serve: >= 1 replica of a service; for events, every
 * publisher of CHAT_EVENTS_ADDRS. */
bool gw_backend_ready(gw_backend *be, gw_svc svc);
gw_svc gw_op_service(gw_op op);
void gw_item_free(gw_item *it); /* NULL is fine */
/* Closes clients and subscription, waits for their callbacks, frees what
 * is still queued. NULL is fine. */
void gw_backend_close(gw_backend *be);

/* Hands an item to the lws thread as if nng had answered (takes it). */
void gw_backend_deliver(gw_backend *be, gw_item *it);

/* ------------------------------------------------------------------ heartbeat.c */
typedef struct gw_heartbeat gw_heartbeat;
/* Starts the thread that heartbeats every cfg->heartbeat_ms on a socket of
 * its own; the replies come back as GW_OP_HEARTBEAT items. 0 or -1. */
int gw_heartbeat_start(gw_heartbeat **out, gw_backend *be, const gw_config *cfg,
                       const char *gateway_id);
void gw_heartbeat_connections(gw_heartbeat *h, unsigned n); /* reported from now on */

/* Halts, waits for a heartbeat in flight, frees. NULL is fine. */
void gw_heartbeat_stop(gw_heartbeat *h);

/* ------------------------------------------------------------------ admit.c */
typedef struct gw_admit gw_admit;
typedef struct gw_admit_ip gw_admit_ip; /* one client address's count */
typedef enum gw_admit_verdict { GW_ADMIT_OK, GW_ADMIT_RATE, GW_ADMIT_IP } gw_admit_verdict;

/* per_ip: open connections per client address; rate_per_s: new connections
 * per second (a burst of one second's worth). 0: no limit. */
gw_admit *gw_admit_new(unsigned per_ip, unsigned rate_per_s);
/* The front thread, for each accepted socket. OK: admitted, and *held (may
 * be NULL) is what gw_admit_release must be given when it closes. */
gw_admit_verdict gw_admit_take(gw_admit *a, const struct sockaddr_storage *peer,
                               gw_admit_ip **held);
/* Any thread; NULL is fine. */
void gw_admit_release(gw_admit *a, gw_admit_ip *held);
/* Refused so far by each limit, and the client addresses counted now. */
void gw_admit_counts(gw_admit *a, uint64_t *refused_rate, uint64_t *refused_ip,
                     unsigned *addresses);
void gw_admit_free(gw_admit *a); /* NULL is fine */

/* ------------------------------------------------------------------ front.c */
/* An accepted socket and the first bytes read from it (request line made
 * safe for lws), waiting for the lws thread to adopt it. */
typedef struct gw_accepted {
    struct gw_accepted *next;
    int fd;
    gw_admit_ip *held; /* its admission (gw_admit_release once closed) */
    size_t len;
    char data[];
} gw_accepted;

typedef struct gw_front gw_front;

/* Listens on cfg->bind:cfg->port and starts the accepting thread, which
 * admits sockets through admit (outlives the front: connections it handed
 * over release their admission later). 0 or -1 (logged). */
int gw_front_open(gw_front **out, const gw_config *cfg, gw_admit *admit);
/* Accept errors (descriptors ran out) so far: accepting pauses after each. */
uint64_t gw_front_accept_errors(gw_front *f);
void gw_front_set_context(gw_front *f, struct lws_context *ctx);
/* Takes every socket ready for adoption (a list; the caller owns them). */
gw_accepted *gw_front_take(gw_front *f);
/* Closes the sockets of a list, releases their admissions, frees it. */
void gw_accepted_free(gw_accepted *a, gw_admit *admit);
/* Stops accepting: joins the thread, closes the listener and every socket
 * not handed over yet. NULL is fine. */
void gw_front_close(gw_front *f);
/* Escapes, in the first line of in[0..len), every '%' that does not start
 * a valid escape of a non-NUL byte ("%00" -> "%2500", "%zz" -> "%25zz").
 * out needs 3 * len bytes. Returns the length written. */
size_t gw_front_sanitize(const char *in, size_t len, char *out);

/* ------------------------------------------------------------------ server state */
#define GW_OUTCOME_TRANSPORT (CHAT__CODE__INTERNAL + 1) /* no reply (nng error, undecodable) */
#define GW_OUTCOMES (GW_OUTCOME_TRANSPORT + 1)
#define GW_ADMIN_TYPES 8 /* ops.c: users, user, kick, ban, unban, announce, drain, other */
typedef struct gw_metrics {
    uint64_t conns_total, frames_in, frames_out, events_in, events_bad;
    uint64_t frames_over_budget; /* conn.c: refused unread (CHAT_FRAME_RATE_PER_S) */
    uint64_t errors[GW_E_COUNT];
    uint64_t be_requests[GW_SVC_COUNT], be_failures[GW_SVC_COUNT];
    /* order.c: messages held out of order, fills asked, fills failed,
     * messages sent from fills, gaps closed and how long they were open */
    uint64_t order_held, order_fills, order_catchups, order_fill_failed, order_filled;
    uint64_t events_lost_signals;
    uint64_t order_gaps_closed, order_gap_ms_sum, order_gap_ms_max;
    /* operators: connections kicked (kick and ban), connects and resumes
     * refused for a ban (also REST calls), announcement frames queued,
     * connections closed by a drain, admin requests by type */
    uint64_t kicked, ban_refused, announced, drain_closed;
    uint64_t admin_requests[GW_ADMIN_TYPES];
    /* backend requests by op: outcome (chat.Code, or GW_OUTCOME_TRANSPORT)
     * and latency */
    uint64_t be_outcomes[GW_OP_COUNT][GW_OUTCOMES];
    chat_hist be_latency[GW_OP_COUNT];
} gw_metrics;

typedef struct gw_conn gw_conn;
typedef struct gw_user gw_user;
typedef struct gw_typing gw_typing;
typedef struct gw_order gw_order;
typedef struct gw_catchup gw_catchup;
typedef struct gw_ban gw_ban;
typedef struct gw_admin gw_admin;
typedef struct gw_pres_retry gw_pres_retry;

/* drain.c: a drain asked by an operator. */
typedef struct gw_drain {
    bool on;
    int64_t t0_ms;    /* chat_mono_ms() at the start */
    uint32_t over_ms; /* the closes are spread over this long */
    unsigned total;   /* connections open at the start */
    uint64_t closed;  /* closed by the drain so far */
} gw_drain;

typedef struct gw_server {
    const gw_config *cfg;
    const char *gateway_id;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    gw_front *front; /* NULL once we stopped accepting */
    gw_admit *admit; /* outlives front and every connection */
    gw_backend *be;
    gw_conn *conns;          /* uthash: open WebSocket connections by id */
    gw_user *users;          /* uthash: users with >= 1 connection, by id */
    gw_conn *api_waiting;    /* uthash: HTTP connections awaiting a backend reply */
    gw_typing *typing;       /* uthash: typing starts delivered here (typing.c) */
    gw_order *order_due;     /* order.c: entries with a fill due (utlist DL) */
    gw_catchup *catchup_due; /* order.c: catch-ups to retry (utlist DL) */
    size_t n_typing;
    bool typing_full_logged;
    unsigned n_conns;
    /* n_conns for other threads (admin status): set as connections open and
     * close, so a status right after a connect counts it. */
    _Atomic unsigned conns_open;
    uint64_t next_conn_id;
    gw_metrics m;
    lws_sorted_usec_list_t sul_tick;
    gw_heartbeat *hb;
    struct ev_loop *loop; /* the libev loop lws runs on; NULL: lws's poll() */
    void *flush_w;        /* with loop: our libev watchers for backend flushes */
    bool stopping, done, heartbeat_failing;
    bool closing_all; /* fini: lws closes what is left; no disconnect each */
    int64_t stop_deadline_ms;
    gw_admin *admin;       /* admin.c: the admin plane (NULL: none) */
    gw_ban *bans;          /* bans.c: uthash by user id */
    uint64_t bans_version; /* of the table, as svc-presence numbered it */
    bool bans_synced;      /* the table came from svc-presence at least once */
    bool bans_asking;      /* a BansReq is on its way */
    int64_t bans_asked_ms; /* chat_mono_ms() when it went */
    uint32_t admin_mark;   /* ops.c: marks connections reached by one request */
    uint64_t next_req_id;  /* requests.c: the counter of request ids */
    gw_drain drain;
    gw_pres_retry *pres_retry; /* presence.c: connects/disconnects not confirmed yet */
    size_t n_pres_retry;
    bool pres_retry_full_logged;
} gw_server;

/* ------------------------------------------------------------------ conn.c, out.c */
typedef struct gw_qnode {
    struct gw_qnode *next;
    gw_frame *f;
} gw_qnode;

/* A queue of frames (owns one reference to each). */
typedef struct gw_queue {
    gw_qnode *head, *tail;
    size_t bytes;
} gw_queue;

typedef struct gw_resume gw_resume;
typedef struct gw_search_held gw_search_held;
typedef struct gw_http_resp gw_http_resp;

/* lws per-session data of protocols[0]: lws allocates it zeroed and frees
 * it after LWS_CALLBACK_CLOSED / CLOSED_HTTP. Everything it points to is
 * owned here and freed by gw_conn_closed() / gw_http_free(). */
struct gw_conn {
    UT_hash_handle hh;      /* gw_server.conns */
    gw_conn *unext, *uprev; /* the user's connections */
    gw_user *user;
    struct lws *wsi;
    uint64_t id;
    gw_queue out;         /* frames to write */
    gw_queue resume_held; /* out.c: pushes held while a resume runs */
    char *rx;             /* reassembly, only while a message is split */
    size_t rx_len, rx_cap;
    gw_resume *resume;    /* non-NULL while a resume runs */
    gw_order *order;      /* order.c: uthash by conversation */
    gw_catchup *catchup;  /* order.c: while a catch-up runs */
    gw_http_resp *http;   /* plain HTTP: the response being written */
    int64_t opened_ms;    /* unix ms when accepted (presence pushes' reference) */
    int64_t frames_ms;    /* conn.c: the frame budget's last refill, mono ms */
    float frames_left;    /* conn.c: frames the client may still send now */
    uint64_t chat_key;    /* search.c: hash of the random chat this connection knows */
    uint64_t ended_key;   /* search.c: hash of the last chat whose chat_ended it got */
    gw_search_held *held; /* search.c: random-chat pushes held while a search is asked */
    uint16_t close_code;  /* with closing */
    uint16_t inflight;    /* client requests awaiting a backend reply (0 or 1) */
    uint16_t n_waiting;   /* requests queued behind the one in flight */
    uint16_t n_order;     /* entries in order */
    uint32_t admin_mark;  /* ops.c: == gw_server.admin_mark when reached already */
    gw_request *wait_head, *wait_tail;
    bool ws, closing, announced;
    bool close_sent;      /* the close frame is lws's: it awaits the client's */
    bool search_inflight; /* a start_search awaits its reply */
    bool searching;    /* told `searching`, and neither `matched` nor `search_stopped` since */
    bool registering;  /* a new user: `connected` waits for register_user */
    bool order_resync; /* events were lost during the resume: fill at its end */
    bool api_waiting;  /* HTTP: in gw_server.api_waiting for a backend reply */
};

struct gw_user {
    UT_hash_handle hh; /* gw_server.users */
    char id[CHAT_UUID_LEN + 1];
    gw_conn *conns; /* utlist DL through unext/uprev */
};

/* LWS_CALLBACK_ESTABLISHED / RECEIVE / SERVER_WRITEABLE / CLOSED. The int
 * ones return -1 when lws must close the connection. */
int gw_conn_open(gw_server *s, gw_conn *c, struct lws *wsi);
int gw_conn_receive(gw_server *s, gw_conn *c, const void *in, size_t len);
/* The register_user reply of a new connection: sends `connected`. */
void gw_conn_registered(gw_server *s, gw_conn *c, const gw_item *it);
int gw_conn_writeable(gw_server *s, gw_conn *c);
void gw_conn_closed(gw_server *s, gw_conn *c);

gw_conn *gw_conn_find(gw_server *s, uint64_t id);
gw_user *gw_user_find(gw_server *s, const char *user_id);
/* Queues a direct frame; takes the reference f (NULL: out of memory, ignored). */
void gw_conn_send(gw_server *s, gw_conn *c, gw_frame *f);
/* Queues a push: held while a resume runs. Takes the reference f. */
void gw_conn_push(gw_server *s, gw_conn *c, gw_frame *f);
/* The resume is over: the held pushes go out, in their order. */
void gw_conn_release_held(gw_server *s, gw_conn *c);
/* Queues without the CHAT_MAX_OUTBUF check: for replay, which paces itself. */
void gw_conn_send_paced(gw_server *s, gw_conn *c, gw_frame *f);
void gw_conn_send_error(gw_server *s, gw_conn *c, gw_err code, const char *message,
                        const char *req);
/* Closes with code after what is queued has been written. */
void gw_conn_close(gw_server *s, gw_conn *c, uint16_t code);
/* A connection's requests run one at a time, in the order received, so
 * what a user does first happens first (sends get rising seqs in send
 * order, end_chat is done before the next start_search). */
/* True when rq had to wait behind the request in flight (then it is taken). */
bool gw_conn_request_wait(gw_server *s, gw_conn *c, gw_request *rq);
void gw_conn_request_started(gw_server *s, gw_conn *c);
/* The reply came: the next waiting request (or NULL) to dispatch. */
gw_request *gw_conn_request_done(gw_server *s, gw_conn *c);
void gw_conn_waiting_free(gw_conn *c); /* the requests still waiting */
void gw_queue_clear(gw_queue *q);
void gw_queue_push(gw_queue *q, gw_frame *f); /* takes f; returns without if NULL */

/* ------------------------------------------------------------------ search.c */
/* The random-chat frames of one connection, in an order a client can follow.
 * They come by different sockets (replies by req/rep, `matched` and
 * `chat_ended` events by pub/sub from any svc-match replica), so they can
 * overtake each other; per connection the gateway restores:
 *   - `searching` before the `matched` of that search;
 *   - one `matched` per chat, never after that chat's end;
 *   - `matched` before the `chat_ended` / `partner_disconnected` of the
 *     chat (a searching connection whose end came first gets `matched`
 *     then the end; another just the end, and no late `matched`).
 * conversation_id: the chat's id; the frames' references are taken. */
void gw_search_started(gw_conn *c); /* its start_search goes out */
/* The start_search reply: `searching` (OK), then `matched` when paired at
 * once (matched_id, or NULL), then what was held meanwhile. */
void gw_search_replied(gw_server *s, gw_conn *c, bool ok, const char *matched_id);
/* The stop_search reply: `matched` first when the user had been matched
 * before the stop came (matched_id, or NULL), then `search_stopped`. */
void gw_search_stopped(gw_server *s, gw_conn *c, const char *matched_id, const char *req);
void gw_search_push_matched(gw_server *s, gw_conn *c, const char *conversation_id, gw_frame *f);
/* chat_ended or partner_disconnected. */
void gw_search_push_end(gw_server *s, gw_conn *c, const char *conversation_id, gw_frame *f);
/* A chat's `chat_ended` reaches a connection once: the live event (f, from
 * gw_search_push_ended) and the notice a resume hands over (sent at once,
 * by "timeout" or "partner") can both arrive for the same chat when the
 * event was slower than the user's reconnect. */
void gw_search_push_ended(gw_server *s, gw_conn *c, const char *conversation_id, gw_frame *f);
void gw_search_notice_ended(gw_server *s, gw_conn *c, const char *conversation_id,
                            const char *by);
void gw_search_free(gw_conn *c); /* what is still held */

/* ------------------------------------------------------------------ requests.c */
/* A new request id ("<gateway id>-<16 hex>", unique across gateways and
 * restarts) into out. */
void gw_req_id_new(gw_server *s, char out[GW_REQ_ID_MAX]);
/* Puts id (not copied) into the req_id of a Match/Message/PresenceRequest. */
void gw_req_id_attach(ProtobufCMessage *msg, const char *id);
/* Handles one valid client request (takes rq). */
void gw_request_dispatch(gw_server *s, gw_conn *c, gw_request *rq);
/* Turns the reply to a client request into frames (does not free it). */
void gw_request_reply(gw_server *s, gw_conn *c, gw_item *it);

/* ------------------------------------------------------------------ presence.c */
void gw_presence_connect(gw_server *s, gw_conn *c);
void gw_presence_disconnect(gw_server *s, gw_conn *c);
/* The last word at shutdown: presence closes every connection still
 * registered for this gateway (with reconnect grace), as for a dead one. */
void gw_presence_stopping(gw_server *s);
void gw_presence_reply(gw_server *s, gw_item *it);
void gw_presence_free(gw_server *s); /* the retry table, at the end */

/* ------------------------------------------------------------------ bans.c */
/* The users an operator banned (chatctl ban): their connects, resumes and
 * REST calls are refused as unauthorized until the ban ends. Set here by
 * the admin plane at once, and replaced by svc-presence's list whenever a
 * heartbeat's answer shows that list changed (so every gateway learns of
 * a ban within a heartbeat, also one chatctl missed). */
/* until_ms: unix ms, 0 = until lifted. 0, or -1 when out of memory. */
int gw_bans_set(gw_server *s, const char *user_id, int64_t until_ms);
void gw_bans_lift(gw_server *s, const char *user_id);
/* -1 not banned, 0 until lifted, else the end (unix ms); an expired ban
 * is forgotten. */
int64_t gw_bans_until(gw_server *s, const char *user_id);
bool gw_banned(gw_server *s, const char *user_id);
/* A heartbeat's answer said the bans are at version: fetch them when that
 * is not the table's (or the table never came). */
void gw_bans_heard(gw_server *s, uint64_t version);
void gw_bans_fetch(gw_server *s);
void gw_bans_reply(gw_server *s, gw_item *it);
unsigned gw_bans_count(gw_server *s);
void gw_bans_free(gw_server *s);

/* ------------------------------------------------------------------ drain.c */
/* Draining: /readyz 503, upgrades refused, the connections closed with
 * 1001 spread over over_ms (0: at once). Again: no effect. */
void gw_drain_start(gw_server *s, uint32_t over_ms);
void gw_drain_tick(gw_server *s); /* closes the ones due */
void gw_drain_info(gw_server *s, Chat__AdminDrainInfo *out);

/* ------------------------------------------------------------------ ops.c */
/* Runs one admin request (not status) on the lws thread; out is the admin
 * thread's (chat_admin_out), its memory lives as long as the reply. */
struct chat_admin_out;
void gw_ops_handle(gw_server *s, const Chat__AdminRequest *req, struct chat_admin_out *out);
const char *gw_ops_type_name(int type); /* of gw_metrics.admin_requests' index */

/* ------------------------------------------------------------------ admin.c */
/* The admin plane (lib/include/chat/admin.h) on cfg->admin_listen: status
 * on an nng thread from what gw_admin_mirror() last set, every other
 * request handed to the lws thread (GW_OP_ADMIN) and waited for, bounded. */
int gw_admin_open(gw_admin **out, gw_server *s);
/* lws thread: what status reports from now on. */
void gw_admin_mirror(gw_admin *a, bool ready);
/* Runs the request an item carries (GW_OP_ADMIN). */
void gw_admin_run(gw_server *s, gw_item *it);
void gw_admin_close(gw_admin *a); /* NULL is fine */

/* ------------------------------------------------------------------ resume.c */
/* Starts a resume for a connection whose session was valid. */
void gw_resume_start(gw_server *s, gw_conn *c);
void gw_resume_reply(gw_server *s, gw_conn *c, gw_item *it);
/* Called after each write: asks for the next page once the output drained. */
void gw_resume_on_drain(gw_server *s, gw_conn *c);
void gw_resume_free(gw_resume *r); /* NULL is fine */

/* ------------------------------------------------------------------ order.c */
/* Per connection and conversation: messages in seq order, no gap, no
 * duplicate (the design is at the top of order.c). */
/* A message for c (f: its frame, taken; NULL: the user's own, which only
 * moves the cursor). */
void gw_order_message(gw_server *s, gw_conn *c, const char *conv, uint64_t seq, gw_frame *f);
/* c's live messages of conv start after last (join, open_dm, a new random
 * chat, a replay's floors); ignored when the cursor is already set. */
void gw_order_known(gw_server *s, gw_conn *c, const char *conv, uint64_t last);
/* A replayed message: sent, and the cursor moves past it. */
void gw_order_replayed(gw_server *s, gw_conn *c, const Chat__StoredMessage *m);
/* The resume is over: what was held goes out (and gaps get fills). */
void gw_order_resume_done(gw_server *s, gw_conn *c);
/* c no longer follows conv (it left the room). */
void gw_order_forget(gw_server *s, gw_conn *c, const char *conv);
/* Asks for the fills that are due. */
void gw_order_sweep(gw_server *s, int64_t now_mono_ms);
/* Events were lost: every followed conversation of every connection is
 * filled. */
void gw_order_resync(gw_server *s);
void gw_order_fill_reply(gw_server *s, gw_conn *c, gw_item *it);
void gw_order_catchup_reply(gw_server *s, gw_conn *c, gw_item *it);
void gw_order_free(gw_server *s, gw_conn *c);

/* ------------------------------------------------------------------ events.c */
/* Delivers a published Event to the connections held here. */
void gw_event_deliver(gw_server *s, const Chat__Event *ev);

/* ------------------------------------------------------------------ typing.c */
/* Delivers a TypingEvt and remembers a start for its automatic stop. */
void gw_typing_deliver(gw_server *s, const Chat__Event *ev);
/* Sends the automatic stop of every start older than the timeout. */
void gw_typing_sweep(gw_server *s, int64_t now_mono_ms);
void gw_typing_free_all(gw_server *s);

/* ------------------------------------------------------------------ http.c */
/* LWS_CALLBACK_HTTP: answers /healthz, /readyz, /metrics, /api/... and
 * static files. */
int gw_http_request(gw_server *s, gw_conn *c, struct lws *wsi, const char *path);
/* What /readyz says: every backend reachable and not draining. */
bool gw_http_ready(gw_server *s);

/* ------------------------------------------------------------------ http_out.c */
int gw_http_writeable(gw_server *s, gw_conn *c, struct lws *wsi);
void gw_http_free(gw_conn *c); /* frees a response not (fully) written */
/* Queues a response (body copied). now: the headers go out at once (only
 * inside LWS_CALLBACK_HTTP); otherwise they too wait for the writeable
 * callback (an answer that arrives later). Returns what the lws callback
 * should return (0, or -1 to close). */
int gw_http_respond(gw_conn *c, struct lws *wsi, unsigned status, const char *ctype,
                    const char *body, size_t len, bool now);

/* ------------------------------------------------------------------ api.c */
/* "/api/conversations/{id}/messages" -> id (1-64 bytes, no '/'). */
bool gw_api_history_path(const char *path, char conv[GW_ID_MAX + 1]);
/* Decimal digits only, value in [min, max]. */
bool gw_api_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out);
/* The token of an "Authorization: Bearer TOKEN" value (a pointer into
 * header), or NULL. */
const char *gw_api_bearer(const char *header);
/* HTTP status of a client error code. */
unsigned gw_api_status(gw_err e);
/* A GET under /api/: answers at once or starts the backend call. */
int gw_api_request(gw_server *s, gw_conn *c, struct lws *wsi, const char *path);
/* svc-message's answer to GW_OP_API_HISTORY. */
void gw_api_reply(gw_server *s, gw_item *it);
/* The HTTP connection closed (or answers now): stop waiting. NULL is fine. */
void gw_api_closed(gw_server *s, gw_conn *c);

/* ------------------------------------------------------------------ metrics.c */
/* Prometheus text; malloc'd, caller frees. NULL when out of memory. */
char *gw_metrics_render(gw_server *s, size_t *len);

/* ------------------------------------------------------------------ server.c */
int gw_server_init(gw_server *s, const gw_config *cfg, gw_backend *be);
/* Runs until a signal asked to stop and the connections are closed. */
void gw_server_run(gw_server *s);
void gw_server_fini(gw_server *s);

#endif
