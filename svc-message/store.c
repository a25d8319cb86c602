/* Every request but send, run on the reader pool: one PostgreSQL
 * connection per reader thread, one statement per request. */
#include "message.h"

#include "chat/log.h"
#include "chat/ratelimit.h"
#include "chat/rpc.h"
#include "chat/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Status of MSG_SQL_RECEIPT beyond the shared ones (see schema.c). */
#define RECEIPT_SEQ_RANGE 5

/* The limit's Redis may be hung, not just down: each try would then cost
 * the whole timeout. After a failure the limit is skipped this long. */
#define STORE_LIMIT_TIMEOUT_MS 250
#define STORE_LIMIT_BACKOFF_MS 1000

/* A reader thread's own connections. */
typedef struct store_reader {
    msg_pg pg;
    chat_redis *redis; /* the per-user limit of ops; NULL without one */
    int64_t limit_skip_until_ms;
    const msg_config *cfg;
} store_reader;

void *msg_store_thread_init(void *ctx)
{
    const msg_config *cfg = ctx;
    store_reader *rd = calloc(1, sizeof *rd);
    if (rd == NULL)
        return NULL; /* the thread answers UNAVAILABLE */
    rd->cfg = cfg;
    msg_pg_init(&rd->pg, cfg->pg_dsn, (int)cfg->pg_timeout_ms);
    msg_pg_ensure(&rd->pg); /* connect early; retried per request */
    if (cfg->ops_per_min > 0)
        rd->redis =
            chat_redis_new(cfg->redis_host, (int)cfg->redis_port, STORE_LIMIT_TIMEOUT_MS);
    return rd;
}

void msg_store_thread_fini(void *state)
{
    store_reader *rd = state;
    msg_pg_close(&rd->pg);
    chat_redis_free(rd->redis);
    free(rd);
}

/* The user a client-facing request is limited as, or NULL for the requests
 * the gateway makes by itself (replay, fill, register, contacts, info) and
 * the services' own (create, close): those are not the client's to spend. */
static const char *store_limited_user(const Chat__MessageRequest *req)
{
    switch (req->body_case) {
    case CHAT__MESSAGE_REQUEST__BODY_OPEN_DM: return req->open_dm->user_id;
    case CHAT__MESSAGE_REQUEST__BODY_JOIN_ROOM: return req->join_room->user_id;
    case CHAT__MESSAGE_REQUEST__BODY_LEAVE_ROOM: return req->leave_room->user_id;
    case CHAT__MESSAGE_REQUEST__BODY_HISTORY: return req->history->user_id;
    case CHAT__MESSAGE_REQUEST__BODY_TYPING: return req->typing->user_id;
    case CHAT__MESSAGE_REQUEST__BODY_RECEIPT: return req->receipt->user_id;
    default: return NULL;
    }
}

/* True when the request may go on; otherwise it was answered RATE_LIMITED.
 * Redis unreachable lets it through: reads must not fail for want of a
 * counter (sends, which it protects more, are refused instead). */
static bool store_within_limit(store_reader *rd, msg_job *job)
{
    const char *user = store_limited_user(job->req);
    if (rd->redis == NULL || user == NULL || user[0] == '\0' ||
        chat_mono_ms() < rd->limit_skip_until_ms)
        return true;
    char key[96];
    chat_rate_key(key, sizeof key, "rl:ops", user);
    int64_t retry = 0;
    chat_rate_result r = chat_rate_take(rd->redis, key, rd->cfg->ops_burst,
                                        rd->cfg->ops_per_min, chat_now_ms(), &retry);
    if (r == CHAT_RATE_ERROR)
        rd->limit_skip_until_ms = chat_mono_ms() + STORE_LIMIT_BACKOFF_MS;
    if (r != CHAT_RATE_LIMITED)
        return true;
    Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
    rep.code = CHAT__CODE__RATE_LIMITED;
    rep.detail = "too many requests";
    rep.retry_after_ms = retry;
    msg_job_done(job, &rep);
    return false;
}

static void do_info(msg_job *job, msg_pg *pg)
{
    const Chat__ConversationInfoReq *r = job->req->conversation_info;
    const char *v[] = {r->conversation_id, r->user_id};
    PGresult *res = msg_pg_query(pg, MSG_SQL_INFO, 2, v);
    if (msg_job_usable(job, res, "info")) {
        if (PQntuples(res) == 0) {
            msg_job_fail(job, CHAT__CODE__NOT_FOUND, "unknown conversation");
        } else {
            Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
            rep.kind = (Chat__ConversationKind)atoi(PQgetvalue(res, 0, 0));
            rep.closed = PQgetvalue(res, 0, 1)[0] == 't';
            rep.is_member = PQgetvalue(res, 0, 2)[0] == 't';
            msg_job_done(job, &rep);
        }
    }
    PQclear(res);
}

static void do_replay(msg_job *job, msg_pg *pg)
{
    const Chat__ReplayReq *r = job->req->replay;
    int limit = msg_replay_limit(r->limit);
    char seq[24], lim[16];
    /* A cursor past any bigint is past everything in its conversation. */
    snprintf(seq, sizeof seq, "%" PRIu64,
             r->after_seq > INT64_MAX ? (uint64_t)INT64_MAX : r->after_seq);
    snprintf(lim, sizeof lim, "%d", limit);
    /* No cursor: start before every conversation id. */
    const char *after = r->after_conversation_id[0] ? r->after_conversation_id
                                                    : "00000000-0000-0000-0000-000000000000";
    /* The first page: where each conversation stands, read before the page
     * (anything committed later is above these and comes live or in a page). */
    PGresult *floors = NULL;
    if (r->after_conversation_id[0] == '\0') {
        const char *fv[] = {r->user_id, MSG_FLOORS_MAX_S};
        floors = msg_pg_query(pg, MSG_SQL_FLOORS, 2, fv);
        if (!msg_job_usable(job, floors, "replay_floors")) {
            PQclear(floors);
            return;
        }
    }
    const char *v[] = {r->user_id, after, seq, lim};
    PGresult *res = msg_pg_query(pg, MSG_SQL_REPLAY, 4, v);
    if (!msg_job_usable(job, res, "replay")) {
        PQclear(res);
        PQclear(floors);
        return;
    }
    int n = PQntuples(res);
    int nf = floors != NULL ? PQntuples(floors) : 0;
    Chat__StoredMessage **msgs = msg_messages_from_rows(res, n, NULL, false);
    Chat__ConvSeq *fl = calloc((size_t)nf + 1, sizeof *fl);
    Chat__ConvSeq **flp = calloc((size_t)nf + 1, sizeof *flp);
    if (msgs == NULL || fl == NULL || flp == NULL) {
        msg_job_fail(job, CHAT__CODE__INTERNAL, "out of memory");
    } else {
        for (int i = 0; i < nf; i++) {
            chat__conv_seq__init(&fl[i]);
            fl[i].conversation_id = PQgetvalue(floors, i, 0);
            fl[i].seq = strtoull(PQgetvalue(floors, i, 1), NULL, 10);
            flp[i] = &fl[i];
        }
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        rep.n_messages = (size_t)n;
        rep.messages = msgs;
        rep.more = n == limit;
        rep.n_floors = (size_t)nf;
        rep.floors = flp;
        msg_job_done(job, &rep);
    }
    free(msgs);
    free(fl);
    free(flp);
    PQclear(res);
    PQclear(floors);
}

/* In DM and random chats the other member learns of the receipt. */
static void publish_receipt(chat_pub *pub, const Chat__ReceiptReq *r, char *others)
{
    char conv[CHAT_UUID_LEN + 1], user[CHAT_UUID_LEN + 1];
    msg_lower_uuid(conv, r->conversation_id);
    msg_lower_uuid(user, r->user_id);
    Chat__ReceiptEvt re = CHAT__RECEIPT_EVT__INIT;
    re.conversation_id = conv;
    re.seq = r->seq;
    re.read = r->read;
    re.user_id = user;
    Chat__Event ev = CHAT__EVENT__INIT;
    ev.body_case = CHAT__EVENT__BODY_RECEIPT;
    ev.receipt = &re;
    msg_publish(pub, &ev, others);
}

static void do_receipt(msg_job *job, msg_pg *pg)
{
    const Chat__ReceiptReq *r = job->req->receipt;
    char seq[24];
    snprintf(seq, sizeof seq, "%" PRIu64, r->seq);
    const char *v[] = {r->user_id, r->conversation_id, seq, r->read ? "true" : "false"};
    PGresult *res = msg_pg_query(pg, MSG_SQL_RECEIPT, 4, v);
    if (!msg_job_usable(job, res, "receipt")) {
        PQclear(res);
        return;
    }
    int st = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : -1;
    switch (st) {
    case 0: {
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        msg_job_reply(job, &rep);
        int kind = atoi(PQgetvalue(res, 0, 1));
        if (kind == CHAT__CONVERSATION_KIND__DM || kind == CHAT__CONVERSATION_KIND__RANDOM)
            publish_receipt(job->svc->pub, r, PQgetvalue(res, 0, 2));
        msg_job_free(job);
        break;
    }
    case RECEIPT_SEQ_RANGE:
        msg_job_fail(job, CHAT__CODE__BAD_REQUEST, "seq beyond the last message");
        break;
    default: msg_job_fail(job, msg_status_code(st), msg_status_detail(st)); break;
    }
    PQclear(res);
}

void msg_store_work(void *arg, void *state)
{
    msg_job *job = arg;
    store_reader *rd = state;
    atomic_fetch_sub(&job->svc->stats.reader_queued, 1);
    /* Every line this thread logs until the answer names the request. */
    chat_log_req(job->req->req_id);
    if (rd == NULL) {
        msg_job_fail(job, CHAT__CODE__UNAVAILABLE, "storage unavailable");
        chat_log_req(NULL);
        return;
    }
    /* Its caller gave up already: answering at once keeps the queue short
     * for the requests behind it (a few slow users cannot starve the
     * `connected` and replays of everyone). */
    long long deadline = rd->cfg->work_deadline_ms;
    if (deadline > 0 && chat_mono_ns() - job->t0_ns > deadline * 1000000) {
        atomic_fetch_add(&job->svc->stats.expired, 1);
        msg_job_fail(job, CHAT__CODE__UNAVAILABLE, "waited past its deadline");
        chat_log_req(NULL);
        return;
    }
    if (!store_within_limit(rd, job)) {
        chat_log_req(NULL);
        return;
    }
    msg_pg *pg = &rd->pg;
    switch (job->req->body_case) {
    case CHAT__MESSAGE_REQUEST__BODY_CREATE_CONVERSATION: msg_create_one(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_CLOSE_CONVERSATION: msg_close_one(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_CONVERSATION_INFO: do_info(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_REPLAY: do_replay(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_RECEIPT: do_receipt(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_REGISTER_USER: msg_users_register(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_CONTACTS: msg_users_contacts(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_OPEN_DM: msg_conv_open_dm(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_JOIN_ROOM: msg_conv_join_room(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_LEAVE_ROOM: msg_conv_leave_room(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_HISTORY: msg_history(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_FILL: msg_fill(job, pg); break;
    case CHAT__MESSAGE_REQUEST__BODY_TYPING: msg_typing(job, pg); break;
    default: msg_job_fail(job, CHAT__CODE__BAD_REQUEST, "not a reader request"); break;
    }
    chat_log_req(NULL); /* the job is gone: only its id was copied */
}
