/* The gateway's side of nng: rpc clients for svc-match, svc-message and
 * svc-presence, the event subscription, and the queue that carries their
 * answers to the lws thread.
 *
 * Callbacks run on nng threads. They decode the protobuf there, append one
 * item under the lock and wake lws with lws_cancel_service() only when the
 * queue goes from empty to non-empty (one wake-up per batch); the lws thread
 * takes the whole list in LWS_CALLBACK_EVENT_WAIT_CANCELLED.
 *
 * Quick requests are queued in the rpc clients and flushed by a timer, which
 * lws runs once the current pass over the ready sockets is done: the
 * requests of one pass travel as one nng message per service (see
 * proto/envelope.proto), whatever the number of connections. Each nng
 * message costs several thread hand-offs in nng and the service, so under
 * load flushes are spaced CHAT_BATCH_LINGER_US apart and batches grow; a
 * request after a quiet spell still goes at the end of its pass. */
#include "gateway.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include <nng/nng.h>

#include "chat/log.h"

/* How long close waits for the answers to the last requests, and then for
 * the callbacks of the calls it aborted. */
#define BACKEND_DRAIN_WAIT_MS 2000
#define BACKEND_CLOSE_WAIT_MS 5000

struct gw_backend {
    chat_rpc_client *rpc[GW_SVC_EVENTS]; /* match, message, presence */
    chat_sub *sub;
    pthread_mutex_t mu;
    gw_item *head, *tail;             /* under mu */
    size_t qlen;                      /* under mu */
    struct lws_context *ctx;          /* under mu: woken on new items; NULL: nobody */
    atomic_int inflight;              /* calls whose callback has not run yet */
    lws_sorted_usec_list_t sul_flush; /* lws thread only */
    gw_flush_arm arm;                 /* set: arms the flush instead of sul_flush */
    void *arm_arg;
    bool flush_armed;      /* lws thread only */
    int64_t last_flush_us; /* lws thread only: lws_now_usecs() */
    int64_t linger_us;
};

static const char *const svc_names[GW_SVC_COUNT] = {"match", "message", "presence", "events"};

const char *gw_svc_name(gw_svc svc)
{
    return svc < GW_SVC_COUNT ? svc_names[svc] : "?";
}

static const char *const op_names[GW_OP_COUNT] = {
    [GW_OP_START_SEARCH] = "start_search",
    [GW_OP_STOP_SEARCH] = "stop_search",
    [GW_OP_END_CHAT] = "end_chat",
    [GW_OP_SEND] = "send",
    [GW_OP_RECEIPT] = "receipt",
    [GW_OP_QUERY] = "presence",
    [GW_OP_CONNECT] = "connect",
    [GW_OP_DISCONNECT] = "disconnect",
    [GW_OP_HEARTBEAT] = "heartbeat",
    [GW_OP_SESSION] = "session",
    [GW_OP_REPLAY] = "replay",
    [GW_OP_EVENT] = "event",
    [GW_OP_OPEN_DM] = "open_dm",
    [GW_OP_JOIN_ROOM] = "join_room",
    [GW_OP_LEAVE_ROOM] = "leave_room",
    [GW_OP_HISTORY] = "history",
    [GW_OP_TYPING] = "typing",
    [GW_OP_REGISTER] = "register_user",
    [GW_OP_API_HISTORY] = "api_history",
    [GW_OP_FILL] = "fill",
    [GW_OP_CATCHUP] = "catchup",
    [GW_OP_EVENTS_LOST] = "events_lost",
    [GW_OP_BANS] = "bans",
    [GW_OP_ADMIN] = "admin",
};

const char *gw_op_name(gw_op op)
{
    return op < GW_OP_COUNT && op_names[op] != NULL ? op_names[op] : "?";
}

gw_svc gw_op_service(gw_op op)
{
    switch (op) {
    case GW_OP_START_SEARCH:
    case GW_OP_STOP_SEARCH:
    case GW_OP_END_CHAT:
    case GW_OP_SESSION: return GW_SVC_MATCH;
    case GW_OP_SEND:
    case GW_OP_RECEIPT:
    case GW_OP_REPLAY:
    case GW_OP_OPEN_DM:
    case GW_OP_JOIN_ROOM:
    case GW_OP_LEAVE_ROOM:
    case GW_OP_HISTORY:
    case GW_OP_TYPING:
    case GW_OP_REGISTER:
    case GW_OP_API_HISTORY:
    case GW_OP_FILL:
    case GW_OP_CATCHUP: return GW_SVC_MESSAGE;
    case GW_OP_QUERY:
    case GW_OP_CONNECT:
    case GW_OP_DISCONNECT:
    case GW_OP_HEARTBEAT:
    case GW_OP_BANS: return GW_SVC_PRESENCE;
    case GW_OP_EVENT:
    case GW_OP_EVENTS_LOST:
    case GW_OP_ADMIN:
    case GW_OP_COUNT: break;
    }
    return GW_SVC_EVENTS;
}

/* Any thread. Takes it. */
void gw_backend_deliver(gw_backend *be, gw_item *it)
{
    it->next = NULL;
    pthread_mutex_lock(&be->mu);
    bool was_empty = be->head == NULL;
    if (be->tail != NULL)
        be->tail->next = it;
    else
        be->head = it;
    be->tail = it;
    be->qlen++;
    /* Under the lock, so the context cannot be destroyed meanwhile. */
    if (was_empty && be->ctx != NULL)
        lws_cancel_service(be->ctx);
    pthread_mutex_unlock(&be->mu);
}

/* nng thread (or the caller's, when the call fails at once). */
static void backend_done(int err, const uint8_t *data, size_t len, void *arg)
{
    gw_item *it = arg;
    gw_backend *be = it->be;
    it->err = err;
    if (err == 0) {
        switch (gw_op_service(it->op)) {
        case GW_SVC_MATCH: it->r.match = chat__match_reply__unpack(NULL, len, data); break;
        case GW_SVC_MESSAGE: it->r.msg = chat__message_reply__unpack(NULL, len, data); break;
        case GW_SVC_PRESENCE: it->r.pres = chat__presence_reply__unpack(NULL, len, data); break;
        default: break;
        }
        if (it->r.any == NULL)
            it->err = -1;
    }
    gw_backend_deliver(be, it);
    atomic_fetch_sub(&be->inflight, 1);
}

static void backend_event(const uint8_t *data, size_t len, void *arg)
{
    gw_backend *be = arg;
    gw_item *it = calloc(1, sizeof *it);
    if (it == NULL)
        return; /* events are best effort; the messages stay stored for resume */
    it->be = be;
    it->op = GW_OP_EVENT;
    it->r.ev = chat__event__unpack(NULL, len, data);
    if (it->r.ev == NULL)
        it->err = -1;
    gw_backend_deliver(be, it);
}

/* Before the batch that revealed the loss: the fills it starts see the
 * batch's events arrive as they read. */
static void backend_lost(uint64_t count, void *arg)
{
    gw_backend *be = arg;
    gw_item *it = calloc(1, sizeof *it);
    if (it == NULL)
        return;
    it->be = be;
    it->op = GW_OP_EVENTS_LOST;
    gw_backend_deliver(be, it);
}

int gw_backend_open(gw_backend **out, const gw_config *cfg)
{
    gw_backend *be = calloc(1, sizeof *be);
    if (be == NULL)
        return NNG_ENOMEM;
    pthread_mutex_init(&be->mu, NULL);
    atomic_init(&be->inflight, 0);
    be->linger_us = cfg->batch_linger_us;
    const char *addrs[GW_SVC_EVENTS] = {cfg->match_addrs, cfg->message_addrs,
                                        cfg->presence_addrs};
    int rv = 0;
    for (int i = 0; i < GW_SVC_EVENTS && rv == 0; i++) {
        rv = chat_rpc_client_open(&be->rpc[i], addrs[i], (int)cfg->rpc_timeout_ms);
        if (rv != 0)
            chat_error("backend_open_failed", "service=%s addrs=%s err=\"%s\"", svc_names[i],
                       addrs[i], nng_strerror(rv));
    }
    if (rv == 0 &&
        (rv = chat_sub_open(&be->sub, cfg->events_addrs, backend_event, backend_lost, be)) != 0)
        chat_error("backend_open_failed", "service=events addrs=%s err=\"%s\"",
                   cfg->events_addrs, nng_strerror(rv));
    if (rv != 0) {
        gw_backend_close(be);
        return rv;
    }
    *out = be;
    return 0;
}

void gw_backend_flush(gw_backend *be)
{
    be->flush_armed = false;
    be->last_flush_us = lws_now_usecs();
    for (int i = 0; i < GW_SVC_EVENTS; i++)
        chat_rpc_client_flush(be->rpc[i]);
}

static void backend_flush(lws_sorted_usec_list_t *sul)
{
    gw_backend_flush(lws_container_of(sul, gw_backend, sul_flush));
}

void gw_backend_set_flusher(gw_backend *be, gw_flush_arm arm, void *arg)
{
    be->arm = arm;
    be->arm_arg = arg;
}

/* Replays and history pages can be large and slow: they go alone, so they
 * neither hold back the quick requests of a batch nor make it huge. */
static bool backend_op_batched(gw_op op)
{
    return op != GW_OP_REPLAY && op != GW_OP_HISTORY && op != GW_OP_API_HISTORY;
}

void gw_backend_set_context(gw_backend *be, struct lws_context *ctx)
{
    if (ctx == NULL && be->flush_armed) {
        if (be->arm == NULL)
            lws_sul_cancel(&be->sul_flush);
        gw_backend_flush(be);
    }
    pthread_mutex_lock(&be->mu);
    be->ctx = ctx;
    if (ctx != NULL && be->head != NULL)
        lws_cancel_service(ctx);
    pthread_mutex_unlock(&be->mu);
}

void gw_backend_call(gw_backend *be, gw_op op, uint64_t conn_id, gw_request *rq,
                     const ProtobufCMessage *req)
{
    gw_svc svc = gw_op_service(op);
    gw_item *it = svc < GW_SVC_EVENTS ? calloc(1, sizeof *it) : NULL;
    if (it == NULL) {
        chat_error("backend_call_failed", "op=%d err=\"%s\"", (int)op,
                   svc < GW_SVC_EVENTS ? "out of memory" : "not a request");
        gw_request_free(rq);
        return;
    }
    it->be = be;
    it->op = op;
    it->conn_id = conn_id;
    it->rq = rq;
    it->t0_ns = chat_mono_ns();
    atomic_fetch_add(&be->inflight, 1);
    chat_rpc_client *rpc = be->rpc[svc];
    if (!backend_op_batched(op)) {
        chat_rpc_call_async(rpc, req, backend_done, it);
        return;
    }
    chat_rpc_call_queued(rpc, req, backend_done, it);
    /* be->ctx is only written on this (the lws) thread: no lock to read it.
     * Without a context (shutdown: lws closing every connection) calls go
     * out 128 at a time and gw_backend_close() flushes the rest. */
    if (be->ctx != NULL && !be->flush_armed) {
        be->flush_armed = true;
        int64_t wait = be->last_flush_us + be->linger_us - lws_now_usecs();
        if (be->arm != NULL)
            be->arm(be->arm_arg, wait);
        else
            lws_sul_schedule(be->ctx, 0, &be->sul_flush, backend_flush, wait > 1 ? wait : 1);
    }
}

gw_item *gw_backend_take(gw_backend *be)
{
    pthread_mutex_lock(&be->mu);
    gw_item *list = be->head;
    be->head = be->tail = NULL;
    be->qlen = 0;
    pthread_mutex_unlock(&be->mu);
    return list;
}

size_t gw_backend_queue_len(gw_backend *be)
{
    pthread_mutex_lock(&be->mu);
    size_t n = be->qlen;
    pthread_mutex_unlock(&be->mu);
    return n;
}

int gw_backend_peers(gw_backend *be, gw_svc svc)
{
    if (svc == GW_SVC_EVENTS)
        return be->sub != NULL ? chat_sub_peers(be->sub) : 0;
    return be->rpc[svc] != NULL ? chat_rpc_client_peers(be->rpc[svc]) : 0;
}

uint64_t gw_backend_lost(gw_backend *be)
{
    return be->sub != NULL ? chat_sub_lost(be->sub) : 0;
}

bool gw_backend_ready(gw_backend *be, gw_svc svc)
{
    /* Requests need one replica of each service. Events need every
     * publisher: one we are not connected to loses its events silently. */
    int pubs = be->sub != NULL ? chat_sub_publishers(be->sub) : 0;
    int need = svc == GW_SVC_EVENTS ? (pubs > 0 ? pubs : 1) : 1;
    return gw_backend_peers(be, svc) >= need;
}

void gw_item_free(gw_item *it)
{
    if (it == NULL)
        return;
    if (it->free_any != NULL)
        it->free_any(it->r.any);
    else if (it->r.any != NULL) {
        switch (gw_op_service(it->op)) {
        case GW_SVC_MATCH: chat__match_reply__free_unpacked(it->r.match, NULL); break;
        case GW_SVC_MESSAGE: chat__message_reply__free_unpacked(it->r.msg, NULL); break;
        case GW_SVC_PRESENCE: chat__presence_reply__free_unpacked(it->r.pres, NULL); break;
        case GW_SVC_EVENTS: chat__event__free_unpacked(it->r.ev, NULL); break;
        default: break;
        }
    }
    gw_request_free(it->rq);
    free(it);
}

/* Waits (bounded) until every call's callback has run. Returns the ms waited. */
static int64_t backend_wait_calls(gw_backend *be, int max_ms)
{
    struct timespec ms = {0, 1000000};
    int64_t t0 = chat_mono_ms();
    while (atomic_load(&be->inflight) > 0 && chat_mono_ms() - t0 < max_ms)
        nanosleep(&ms, NULL);
    return chat_mono_ms() - t0;
}

void gw_backend_close(gw_backend *be)
{
    if (be == NULL)
        return;
    gw_backend_set_context(be, NULL);
    /* The last requests (the presence disconnects of the connections lws
     * closed) are sent and get a moment to be answered before the sockets
     * close and abort whatever is left. */
    gw_backend_flush(be);
    int64_t waited = backend_wait_calls(be, BACKEND_DRAIN_WAIT_MS);
    chat_info("backend_drained", "unanswered=%d ms=%lld", atomic_load(&be->inflight),
              (long long)waited);
    for (int i = 0; i < GW_SVC_EVENTS; i++)
        chat_rpc_client_close(be->rpc[i]);
    /* Aborted calls still run their callback, which touches be. */
    backend_wait_calls(be, BACKEND_CLOSE_WAIT_MS);
    if (atomic_load(&be->inflight) > 0) {
        /* A late callback would touch freed memory: leave it (we exit). */
        chat_warn("backend_close_timeout", "calls=%d", atomic_load(&be->inflight));
        return;
    }
    chat_sub_close(be->sub);
    gw_item *it = gw_backend_take(be);
    while (it != NULL) {
        gw_item *next = it->next;
        gw_item_free(it);
        it = next;
    }
    pthread_mutex_destroy(&be->mu);
    free(be);
}
