/* svc-match against a real Redis ($CHAT_TEST_REDIS_PORT, database 11, which
 * the test empties), with a fake svc-message and a recording publisher.
 * Exits 77 (ctest: skipped) when the variable is unset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "match.h"
#include "redis_fixture.h"

#define TEST_DB 11

static int redis_port;

/* ---- fake svc-message ---- */

#define FAKE_MAX_CONVS 4096
#define FAKE_MAX_EVENTS 4096

typedef struct fake_conv {
    char id[CHAT_UUID_LEN + 1];
    char a[CHAT_UUID_LEN + 1], b[CHAT_UUID_LEN + 1];
    Chat__ConversationKind kind;
    bool closed;
} fake_conv;

typedef struct fake_event {
    Chat__Event__BodyCase body;
    char conv[MATCH_ID_MAX + 1];
    char users[2][CHAT_UUID_LEN + 1];
    size_t n_users;
    bool has_exclude;
    uint64_t exclude_conn;
    char ended_by[CHAT_UUID_LEN + 1];
} fake_event;

typedef struct fake {
    pthread_mutex_t mu;
    bool down;                         /* every call fails (unreachable) */
    int fail_creates;                  /* that many creates fail with UNAVAILABLE */
    void (*on_create)(struct fake *f); /* runs inside create (a race made to order) */
    int n_creates, n_closes, n_infos;
    fake_conv convs[FAKE_MAX_CONVS];
    int n_convs;
    fake_event events[FAKE_MAX_EVENTS];
    int n_events;
} fake;

static fake *F;

static fake_conv *fake_find(fake *f, const char *id)
{
    for (int i = 0; i < f->n_convs; i++)
        if (strcmp(f->convs[i].id, id) == 0)
            return &f->convs[i];
    return NULL;
}

static int fake_call(void *ctx, const Chat__MessageRequest *req, Chat__MessageReply **reply)
{
    fake *f = ctx;
    if (req->body_case == CHAT__MESSAGE_REQUEST__BODY_CREATE_CONVERSATION && f->on_create) {
        void (*hook)(fake *) = f->on_create;
        f->on_create = NULL;
        hook(f);
    }
    pthread_mutex_lock(&f->mu);
    if (f->down) {
        pthread_mutex_unlock(&f->mu);
        return -1;
    }
    Chat__MessageReply *rep = calloc(1, sizeof *rep);
    chat__message_reply__init(rep);
    rep->code = CHAT__CODE__OK;
    switch (req->body_case) {
    case CHAT__MESSAGE_REQUEST__BODY_CREATE_CONVERSATION: {
        const Chat__CreateConversationReq *cc = req->create_conversation;
        f->n_creates++;
        assert_int_equal(cc->kind, CHAT__CONVERSATION_KIND__RANDOM);
        assert_int_equal(cc->n_member_ids, 2);
        if (f->fail_creates > 0) {
            f->fail_creates--;
            rep->code = CHAT__CODE__UNAVAILABLE;
            break;
        }
        assert_true(f->n_convs < FAKE_MAX_CONVS);
        fake_conv *c = &f->convs[f->n_convs++];
        chat_uuid_new(c->id);
        snprintf(c->a, sizeof c->a, "%s", cc->member_ids[0]);
        snprintf(c->b, sizeof c->b, "%s", cc->member_ids[1]);
        c->kind = CHAT__CONVERSATION_KIND__RANDOM;
        c->closed = false;
        rep->conversation_id = strdup(c->id);
        break;
    }
    case CHAT__MESSAGE_REQUEST__BODY_CLOSE_CONVERSATION: {
        f->n_closes++;
        fake_conv *c = fake_find(f, req->close_conversation->conversation_id);
        if (c == NULL)
            rep->code = CHAT__CODE__NOT_FOUND;
        else
            c->closed = true;
        break;
    }
    case CHAT__MESSAGE_REQUEST__BODY_CONVERSATION_INFO: {
        f->n_infos++;
        const Chat__ConversationInfoReq *ci = req->conversation_info;
        fake_conv *c = fake_find(f, ci->conversation_id);
        if (c == NULL) {
            rep->code = CHAT__CODE__NOT_FOUND;
            break;
        }
        rep->kind = c->kind;
        rep->closed = c->closed;
        rep->is_member = strcmp(c->a, ci->user_id) == 0 || strcmp(c->b, ci->user_id) == 0;
        break;
    }
    default: fail_msg("unexpected svc-message request %d", (int)req->body_case);
    }
    pthread_mutex_unlock(&f->mu);
    /* Hand back what a real client would: a decoded copy owned by the caller. */
    size_t len = chat__message_reply__get_packed_size(rep);
    uint8_t *buf = malloc(len ? len : 1);
    chat__message_reply__pack(rep, buf);
    if (rep->conversation_id != protobuf_c_empty_string)
        free(rep->conversation_id);
    free(rep);
    *reply = chat__message_reply__unpack(NULL, len, buf);
    free(buf);
    return *reply ? 0 : -1;
}

static void fake_publish(void *ctx, const Chat__Event *ev)
{
    fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    assert_true(f->n_events < FAKE_MAX_EVENTS);
    fake_event *e = &f->events[f->n_events++];
    memset(e, 0, sizeof *e);
    e->body = ev->body_case;
    e->n_users = ev->n_user_ids;
    assert_true(ev->n_user_ids <= 2);
    for (size_t i = 0; i < ev->n_user_ids; i++)
        snprintf(e->users[i], sizeof e->users[i], "%s", ev->user_ids[i]);
    if (ev->exclude) {
        e->has_exclude = true;
        e->exclude_conn = ev->exclude->conn_id;
    }
    const char *conv = "";
    if (ev->body_case == CHAT__EVENT__BODY_MATCHED)
        conv = ev->matched->conversation_id;
    else if (ev->body_case == CHAT__EVENT__BODY_CHAT_ENDED) {
        conv = ev->chat_ended->conversation_id;
        snprintf(e->ended_by, sizeof e->ended_by, "%s", ev->chat_ended->ended_by);
    } else if (ev->body_case == CHAT__EVENT__BODY_PARTNER_DISCONNECTED)
        conv = ev->partner_disconnected->conversation_id;
    snprintf(e->conv, sizeof e->conv, "%s", conv);
    pthread_mutex_unlock(&f->mu);
}

static match_env env;
static chat_redis *R;

/* ---- Redis helpers ---- */

static chat_redis *connect_db(int port)
{
    return redis_fixture_connect(port, TEST_DB);
}

static long long rint_cmd(const char *fmt, ...) /* integer reply, -1 for nil */
{
    va_list ap;
    va_start(ap, fmt);
    char cmd[256];
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    redisReply *rep = chat_redis_cmd(R, cmd);
    assert_non_null(rep);
    long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return v;
}

/* GET key into buf ("" for nil). */
static const char *rget(char *buf, size_t n, const char *key)
{
    redisReply *rep = chat_redis_cmd(R, "GET %s", key);
    assert_non_null(rep);
    snprintf(buf, n, "%s", rep->type == REDIS_REPLY_STRING ? rep->str : "");
    freeReplyObject(rep);
    return buf;
}

/* ---- request helpers ---- */

static char users[8][CHAT_UUID_LEN + 1];
#define A users[0]
#define B users[1]
#define C users[2]
#define D users[3]
#define E users[4]

/* Runs one request; copies the reply's matched conversation and partner
 * where asked. Returns the reply's code. */
static Chat__Code run(chat_redis *r, const Chat__MatchRequest *req, char *conv, char *partner)
{
    match_out out;
    match_out_init(&out);
    match_handle(&env, r, req, &out);
    const Chat__MatchReply *rep = &out.reply;
    if (conv)
        snprintf(conv, MATCH_ID_MAX + 1, "%s",
                 rep->matched_conversation_id ? rep->matched_conversation_id : "");
    if (partner)
        snprintf(partner, CHAT_UUID_LEN + 1, "%s", rep->partner_id ? rep->partner_id : "");
    Chat__Code code = rep->code;
    match_out_free(&out);
    return code;
}

static Chat__Code start(chat_redis *r, const char *user, uint64_t conn, char *conv,
                        char *partner)
{
    Chat__ConnRef cr = CHAT__CONN_REF__INIT;
    cr.gateway_id = "gw-test";
    cr.conn_id = conn;
    Chat__StartSearchReq ss = CHAT__START_SEARCH_REQ__INIT;
    ss.user_id = (char *)user;
    ss.conn = &cr;
    Chat__MatchRequest req = CHAT__MATCH_REQUEST__INIT;
    req.body_case = CHAT__MATCH_REQUEST__BODY_START_SEARCH;
    req.start_search = &ss;
    return run(r, &req, conv, partner);
}

/* Starts a search that must not pair at once. */
static void start_waits(const char *user)
{
    char conv[MATCH_ID_MAX + 1];
    assert_int_equal(start(R, user, 1, conv, NULL), CHAT__CODE__OK);
    assert_string_equal(conv, "");
}

/* Starts a search that must pair with want_partner; returns the conversation. */
static void start_pairs(const char *user, const char *want_partner, char *conv)
{
    char partner[CHAT_UUID_LEN + 1];
    assert_int_equal(start(R, user, 1, conv, partner), CHAT__CODE__OK);
    assert_string_equal(partner, want_partner);
    assert_true(strlen(conv) > 0);
}

static Chat__Code simple(chat_redis *r, Chat__MatchRequest__BodyCase kind, const char *user)
{
    Chat__StopSearchReq one = CHAT__STOP_SEARCH_REQ__INIT; /* same layout for each */
    Chat__UserOfflineReq off = CHAT__USER_OFFLINE_REQ__INIT;
    Chat__UserGoneReq gone = CHAT__USER_GONE_REQ__INIT;
    Chat__MatchRequest req = CHAT__MATCH_REQUEST__INIT;
    req.body_case = kind;
    one.user_id = off.user_id = gone.user_id = (char *)user;
    if (kind == CHAT__MATCH_REQUEST__BODY_STOP_SEARCH)
        req.stop_search = &one;
    else if (kind == CHAT__MATCH_REQUEST__BODY_USER_OFFLINE)
        req.user_offline = &off;
    else
        req.user_gone = &gone;
    return run(r, &req, NULL, NULL);
}

static Chat__Code end_chat(const char *user, const char *conv, uint64_t conn)
{
    Chat__ConnRef cr = CHAT__CONN_REF__INIT;
    cr.gateway_id = "gw-test";
    cr.conn_id = conn;
    Chat__EndChatReq ec = CHAT__END_CHAT_REQ__INIT;
    ec.user_id = (char *)user;
    ec.conversation_id = (char *)conv;
    ec.conn = &cr;
    Chat__MatchRequest req = CHAT__MATCH_REQUEST__INIT;
    req.body_case = CHAT__MATCH_REQUEST__BODY_END_CHAT;
    req.end_chat = &ec;
    return run(R, &req, NULL, NULL);
}

/* session: returns how many notices, copies the first into first. */
static size_t session(const char *user, char *first)
{
    Chat__SessionReq s = CHAT__SESSION_REQ__INIT;
    s.user_id = (char *)user;
    Chat__MatchRequest req = CHAT__MATCH_REQUEST__INIT;
    req.body_case = CHAT__MATCH_REQUEST__BODY_SESSION;
    req.session = &s;
    match_out out;
    match_out_init(&out);
    match_handle(&env, R, &req, &out);
    assert_int_equal(out.reply.code, CHAT__CODE__OK);
    size_t n = out.reply.n_timed_out_conversation_ids;
    if (n > 0 && first)
        strcpy(first, out.reply.timed_out_conversation_ids[0]);
    match_out_free(&out);
    return n;
}

static fake_event *last_event(void)
{
    assert_true(F->n_events > 0);
    return &F->events[F->n_events - 1];
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    memset(F, 0, sizeof *F);
    pthread_mutex_init(&F->mu, NULL);
    redisReply *rep = chat_redis_cmd(R, "FLUSHDB");
    assert_non_null(rep);
    freeReplyObject(rep);
    for (int i = 0; i < 8; i++)
        chat_uuid_new(users[i]);
    return 0;
}

static int teardown(void **state)
{
    pthread_mutex_destroy(&F->mu);
    return 0;
}

/* ---- tests ---- */

static void fifo_four_users(void **state)
{
    char c1[MATCH_ID_MAX + 1], c2[MATCH_ID_MAX + 1], buf[80], key[80];
    start_waits(A);
    start_pairs(B, A, c1);
    start_waits(C);
    start_pairs(D, C, c2);
    assert_string_not_equal(c1, c2);
    snprintf(key, sizeof key, "m:chat:%s", A);
    assert_string_equal(rget(buf, sizeof buf, key), c1);
    snprintf(key, sizeof key, "m:chat:%s", B);
    assert_string_equal(rget(buf, sizeof buf, key), c1);
    snprintf(key, sizeof key, "m:chat:%s", D);
    assert_string_equal(rget(buf, sizeof buf, key), c2);
    assert_int_equal(rint_cmd("LLEN m:queue"), 0);
    /* The event goes to both, partner first, skipping the searcher's connection. */
    assert_int_equal(F->n_events, 2);
    fake_event *e = &F->events[1];
    assert_int_equal(e->body, CHAT__EVENT__BODY_MATCHED);
    assert_string_equal(e->conv, c2);
    assert_int_equal(e->n_users, 2);
    assert_string_equal(e->users[0], C);
    assert_string_equal(e->users[1], D);
    assert_true(e->has_exclude);
    assert_int_equal(e->exclude_conn, 1);
    assert_int_equal(F->n_creates, 2);
}

static void start_search_is_idempotent(void **state)
{
    char key[80], t1[32], t2[32], c[MATCH_ID_MAX + 1];
    start_waits(A);
    snprintf(key, sizeof key, "m:q:%s", A);
    rget(t1, sizeof t1, key);
    start_waits(A);
    start_waits(A);
    rget(t2, sizeof t2, key);
    assert_string_equal(t1, t2); /* kept its place */
    assert_int_equal(rint_cmd("LLEN m:queue"), 1);
    start_pairs(B, A, c);
    assert_int_equal(start(R, A, 1, NULL, NULL), CHAT__CODE__ALREADY_IN_CHAT);
}

static void stop_then_start_goes_to_the_back(void **state)
{
    /* Pairing is immediate, so at most one user waits at a time; "the back"
     * shows as a fresh ticket at the tail. */
    char key[80], t1[32], t2[32], want[80], c[MATCH_ID_MAX + 1];
    snprintf(key, sizeof key, "m:q:%s", A);
    start_waits(A);
    rget(t1, sizeof t1, key);
    assert_int_equal(simple(R, CHAT__MATCH_REQUEST__BODY_STOP_SEARCH, A), CHAT__CODE__OK);
    assert_int_equal(rint_cmd("EXISTS %s", key), 0);
    /* Stopping twice, or without searching, is fine. */
    assert_int_equal(simple(R, CHAT__MATCH_REQUEST__BODY_STOP_SEARCH, A), CHAT__CODE__OK);
    assert_int_equal(simple(R, CHAT__MATCH_REQUEST__BODY_STOP_SEARCH, E), CHAT__CODE__OK);
    start_waits(A);
    rget(t2, sizeof t2, key);
    assert_string_not_equal(t1, t2);
    /* The stale entry was dropped on the way (searching pops stale entries
     * from the head); A's live entry is the last one. */
    redisReply *rep = chat_redis_cmd(R, "LRANGE m:queue -1 -1");
    assert_int_equal(rep->elements, 1);
    snprintf(want, sizeof want, "%s:%s", t2, A);
    assert_string_equal(rep->element[0]->str, want);
    freeReplyObject(rep);
    start_pairs(B, A, c);
    assert_int_equal(rint_cmd("LLEN m:queue"), 0);
}

static void queue_stats_count_live_entries(void **state)
{
    uint64_t waiting = 99;
    int64_t longest = -1;
    assert_int_equal(match_queue_stats(R, &waiting, &longest), 0);
    assert_int_equal(waiting, 0);
    assert_int_equal(longest, 0);
    start_waits(A);
    assert_int_equal(match_queue_stats(R, &waiting, &longest), 0);
    assert_int_equal(waiting, 1);
    assert_true(longest >= 0 && longest < 5000);
    /* A stale entry (A stopped) is not waiting. */
    assert_int_equal(simple(R, CHAT__MATCH_REQUEST__BODY_STOP_SEARCH, A), CHAT__CODE__OK);
    assert_int_equal(match_queue_stats(R, &waiting, &longest), 0);
    assert_int_equal(waiting, 0);
    start_waits(B); /* pops A's stale entry on the way */
    char c[MATCH_ID_MAX + 1];
    start_pairs(C, B, c);
    assert_int_equal(match_queue_stats(R, &waiting, &longest), 0);
    assert_int_equal(waiting, 0);
    /* Every popped entry took its queue time along. */
    assert_int_equal(rint_cmd("HLEN m:qsince"), 0);
}

/* stop_search: returns the code, copies the chat the reply names into conv. */
static Chat__Code stop(const char *user, char conv[MATCH_ID_MAX + 1])
{
    Chat__StopSearchReq ss = CHAT__STOP_SEARCH_REQ__INIT;
    ss.user_id = (char *)user;
    Chat__MatchRequest req = CHAT__MATCH_REQUEST__INIT;
    req.body_case = CHAT__MATCH_REQUEST__BODY_STOP_SEARCH;
    req.stop_search = &ss;
    return run(R, &req, conv, NULL);
}

static void stop_after_match_names_the_chat(void **state)
{
    /* A's stop comes after B paired with A (A's `matched` event may still
     * be on its way): the match stands and the reply names it, so the
     * gateway can tell A before search_stopped. */
    char c[MATCH_ID_MAX + 1], got[MATCH_ID_MAX + 1], key[80], buf[80];
    assert_int_equal(stop(A, got), CHAT__CODE__OK); /* not searching: nothing */
    assert_string_equal(got, "");
    start_waits(A);
    assert_int_equal(stop(A, got), CHAT__CODE__OK); /* only queued: nothing */
    assert_string_equal(got, "");
    start_waits(A);
    start_pairs(B, A, c);
    assert_int_equal(stop(A, got), CHAT__CODE__OK);
    assert_string_equal(got, c);
    snprintf(key, sizeof key, "m:chat:%s", A);
    assert_string_equal(rget(buf, sizeof buf, key), c); /* still in it */
    assert_int_equal(start(R, A, 1, NULL, NULL), CHAT__CODE__ALREADY_IN_CHAT);
    assert_int_equal(end_chat(B, c, 1), CHAT__CODE__OK);
    assert_int_equal(stop(A, got), CHAT__CODE__OK); /* ended: nothing */
    assert_string_equal(got, "");
}

static void stop_then_start_order(void **state)
{
    /* A waits, leaves, C waits, A returns: C is first, so A pairs with C
     * (A's stale entry in front is not A's partner). */
    char c[MATCH_ID_MAX + 1];
    start_waits(A);
    assert_int_equal(simple(R, CHAT__MATCH_REQUEST__BODY_STOP_SEARCH, A), CHAT__CODE__OK);
    start_waits(C);
    start_pairs(A, C, c);
    assert_int_equal(rint_cmd("LLEN m:queue"), 0);
}

static void already_in_chat(void **state)
{
    char c[MATCH_ID_MAX + 1];
    start_waits(A);
    start_pairs(B, A, c);
    assert_int_equal(start(R, A, 1, NULL, NULL), CHAT__CODE__ALREADY_IN_CHAT);
    assert_int_equal(start(R, B, 1, NULL, NULL), CHAT__CODE__ALREADY_IN_CHAT);
    /* Nobody is matched with a user in a chat. */
    start_waits(C);
    start_pairs(D, C, c);
}

static void end_chat_codes(void **state)
{
    char c[MATCH_ID_MAX + 1], key[80], buf[80];
    start_waits(A);
    start_pairs(B, A, c);
    assert_int_equal(end_chat(C, c, 5), CHAT__CODE__NOT_MEMBER);
    assert_int_equal(end_chat(A, "no-such-conversation", 5), CHAT__CODE__NOT_FOUND);
    int events = F->n_events;
    assert_int_equal(end_chat(A, c, 7), CHAT__CODE__OK);
    fake_event *e = last_event();
    assert_int_equal(F->n_events, events + 1);
    assert_int_equal(e->body, CHAT__EVENT__BODY_CHAT_ENDED);
    assert_string_equal(e->conv, c);
    assert_string_equal(e->ended_by, A);
    assert_int_equal(e->n_users, 2);
    assert_string_equal(e->users[0], A);
    assert_string_equal(e->users[1], B);
    assert_true(e->has_exclude);
    assert_int_equal(e->exclude_conn, 7);
    assert_true(fake_find(F, c)->closed);
    snprintf(key, sizeof key, "m:chat:%s", A);
    assert_string_equal(rget(buf, sizeof buf, key), "");
    snprintf(key, sizeof key, "m:chat:%s", B);
    assert_string_equal(rget(buf, sizeof buf, key), "");
    snprintf(key, sizeof key, "m:conv:%s", c);
    assert_int_equal(rint_cmd("EXISTS %s", key), 0);
    /* Ended: again, or by the partner → conversation_closed, no event. */
    assert_int_equal(end_chat(A, c, 7), CHAT__CODE__CONVERSATION_CLOSED);
    assert_int_equal(end_chat(B, c, 8), CHAT__CODE__CONVERSATION_CLOSED);
    assert_int_equal(F->n_events, events + 1);
    /* A dm or room → bad_request. */
    pthread_mutex_lock(&F->mu);
    fake_conv *dm = &F->convs[F->n_convs++];
    chat_uuid_new(dm->id);
    strcpy(dm->a, A);
    strcpy(dm->b, B);
    dm->kind = CHAT__CONVERSATION_KIND__DM;
    pthread_mutex_unlock(&F->mu);
    assert_int_equal(end_chat(A, dm->id, 7), CHAT__CODE__BAD_REQUEST);
    /* svc-message down and not the active chat → unavailable. */
    F->down = true;
    assert_int_equal(end_chat(A, c, 7), CHAT__CODE__UNAVAILABLE);
    F->down = false;
    /* Both may search again. */
    start_waits(A);
    start_pairs(B, A, c);
}

static void end_chat_heals_unclosed(void **state)
{
    /* A random chat that Redis forgot (e.g. lost data) but PostgreSQL still
     * has open: end_chat answers conversation_closed and closes it. */
    char c[MATCH_ID_MAX + 1];
    start_waits(A);
    start_pairs(B, A, c);
    redisReply *rep = chat_redis_cmd(R, "FLUSHDB");
    freeReplyObject(rep);
    assert_false(fake_find(F, c)->closed);
    assert_int_equal(end_chat(A, c, 1), CHAT__CODE__CONVERSATION_CLOSED);
    assert_true(fake_find(F, c)->closed);
}

static void user_offline_leaves_queue(void **state)
{
    start_waits(A);
    assert_int_equal(simple(R, CHAT__MATCH_REQUEST__BODY_USER_OFFLINE, A), CHAT__CODE__OK);
    start_waits(B); /* not paired with A, who is gone */
    assert_int_equal(F->n_creates, 0);
}

static void create_failure_requeues_partner_at_head(void **state)
{
    char c[MATCH_ID_MAX + 1], key[80], buf[80];
    start_waits(A);
    F->fail_creates = 1;
    assert_int_equal(start(R, B, 1, NULL, NULL), CHAT__CODE__UNAVAILABLE);
    snprintf(key, sizeof key, "m:chat:%s", B);
    assert_string_equal(rget(buf, sizeof buf, key), "");
    snprintf(key, sizeof key, "m:chat:%s", A);
    assert_string_equal(rget(buf, sizeof buf, key), "");
    /* A is first again: the next searcher gets A. */
    start_pairs(C, A, c);
    assert_int_equal(F->n_events, 1);
}

static void stop_partner(fake *f)
{
    /* The partner stops searching while its conversation is being created. */
    chat_redis *r2 = connect_db(redis_port);
    assert_int_equal(simple(r2, CHAT__MATCH_REQUEST__BODY_STOP_SEARCH, A), CHAT__CODE__OK);
    chat_redis_free(r2);
}

static void create_failure_respects_a_stop(void **state)
{
    start_waits(A);
    F->fail_creates = 1;
    F->on_create = stop_partner;
    assert_int_equal(start(R, B, 1, NULL, NULL), CHAT__CODE__UNAVAILABLE);
    start_waits(C); /* A stopped meanwhile: not put back */
}

static void stop_and_search_partner(fake *f)
{
    chat_redis *r2 = connect_db(redis_port);
    assert_int_equal(simple(r2, CHAT__MATCH_REQUEST__BODY_STOP_SEARCH, A), CHAT__CODE__OK);
    char conv[MATCH_ID_MAX + 1];
    assert_int_equal(start(r2, A, 2, conv, NULL), CHAT__CODE__OK); /* "searching" */
    assert_string_equal(conv, "");
    chat_redis_free(r2);
}

static void stop_while_pending_is_final(void **state)
{
    /* A stops while its conversation with B is being created: A's
     * search_stopped stands (no match, no event), the conversation is
     * given up, and B searches on: nobody else waits, so B is queued. */
    start_waits(A);
    F->on_create = stop_partner;
    start_waits(B);
    assert_int_equal(F->n_creates, 1);
    assert_true(F->convs[0].closed);
    assert_int_equal(F->n_events, 0);
    char key[80], buf[80];
    snprintf(key, sizeof key, "m:chat:%s", A);
    rget(buf, sizeof buf, key);
    assert_string_equal(buf, "");
    assert_int_equal(rint_cmd("EXISTS m:q:%s", A), 0);
    /* B waits in the queue: the next searcher gets B. */
    char c[MATCH_ID_MAX + 1];
    start_pairs(C, B, c);
    assert_int_equal(F->n_events, 1);
}

/* At the n-th create: users[n] (the partner) stops searching and
 * users[n + 1] starts (queued: nobody else waits), so each partner leaves
 * while its conversation is being made and another is there to try. */
static int stops_made;

static void stop_each_partner(fake *f)
{
    chat_redis *r2 = connect_db(redis_port);
    assert_int_equal(simple(r2, CHAT__MATCH_REQUEST__BODY_STOP_SEARCH, users[stops_made]),
                     CHAT__CODE__OK);
    char conv[MATCH_ID_MAX + 1];
    assert_int_equal(start(r2, users[stops_made + 1], 2, conv, NULL), CHAT__CODE__OK);
    assert_string_equal(conv, "");
    chat_redis_free(r2);
    stops_made++;
    f->on_create = stop_each_partner; /* again next time */
}

static void partners_keep_leaving_then_queued(void **state)
{
    /* A waits; E's partner leaves during each create (A, then B, who came
     * meanwhile). After the last try E is queued (searching), not refused,
     * behind C, who came during the second create and never left. */
    start_waits(A);
    stops_made = 0;
    F->on_create = stop_each_partner;
    char conv[MATCH_ID_MAX + 1];
    assert_int_equal(start(R, E, 1, conv, NULL), CHAT__CODE__OK);
    F->on_create = NULL;
    assert_string_equal(conv, "");
    assert_int_equal(stops_made, 2);
    assert_int_equal(F->n_creates, 2);
    assert_true(F->convs[0].closed);
    assert_true(F->convs[1].closed);
    assert_int_equal(F->n_events, 0);
    assert_int_equal(rint_cmd("EXISTS m:q:%s", E), 1);
    char c[MATCH_ID_MAX + 1];
    start_pairs(D, C, c);
    char c2[MATCH_ID_MAX + 1];
    start_pairs(users[5], E, c2);
}

static void searching_again_while_pending(void **state)
{
    /* Stop, then search again, both during the create: A wants to search,
     * so a failed create puts it back (once, at the head). */
    start_waits(A);
    F->fail_creates = 1;
    F->on_create = stop_and_search_partner;
    assert_int_equal(start(R, B, 1, NULL, NULL), CHAT__CODE__UNAVAILABLE);
    assert_int_equal(rint_cmd("LLEN m:queue"), 1);
    char c[MATCH_ID_MAX + 1];
    start_pairs(C, A, c);
}

static void user_gone_and_session(void **state)
{
    char c[MATCH_ID_MAX + 1], first[MATCH_ID_MAX + 1], key[80], buf[80];
    start_waits(A);
    start_pairs(B, A, c);
    int events = F->n_events;
    assert_int_equal(session(A, NULL), 0);
    assert_int_equal(simple(R, CHAT__MATCH_REQUEST__BODY_USER_GONE, A), CHAT__CODE__OK);
    assert_int_equal(F->n_events, events + 1);
    fake_event *e = last_event();
    assert_int_equal(e->body, CHAT__EVENT__BODY_PARTNER_DISCONNECTED);
    assert_string_equal(e->conv, c);
    assert_int_equal(e->n_users, 1);
    assert_string_equal(e->users[0], B);
    assert_false(e->has_exclude);
    assert_true(fake_find(F, c)->closed);
    snprintf(key, sizeof key, "m:chat:%s", B);
    assert_string_equal(rget(buf, sizeof buf, key), "");
    snprintf(key, sizeof key, "m:timeouts:%s", A);
    assert_true(rint_cmd("TTL %s", key) > 0);
    /* Handed over once. */
    assert_int_equal(session(A, first), 1);
    assert_string_equal(first, c);
    assert_int_equal(session(A, NULL), 0);
    assert_int_equal(session(B, NULL), 0);
    /* Gone without a chat (or again): OK, nothing happens. */
    assert_int_equal(simple(R, CHAT__MATCH_REQUEST__BODY_USER_GONE, A), CHAT__CODE__OK);
    assert_int_equal(simple(R, CHAT__MATCH_REQUEST__BODY_USER_GONE, C), CHAT__CODE__OK);
    assert_int_equal(F->n_events, events + 1);
    /* The partner's end_chat now says closed. */
    assert_int_equal(end_chat(B, c, 1), CHAT__CODE__CONVERSATION_CLOSED);
}

static void redis_down_is_unavailable(void **state)
{
    chat_redis *dead = chat_redis_new("127.0.0.1", 1, 200);
    assert_int_equal(start(dead, A, 1, NULL, NULL), CHAT__CODE__UNAVAILABLE);
    assert_int_equal(simple(dead, CHAT__MATCH_REQUEST__BODY_STOP_SEARCH, A),
                     CHAT__CODE__UNAVAILABLE);
    assert_int_equal(simple(dead, CHAT__MATCH_REQUEST__BODY_USER_GONE, A),
                     CHAT__CODE__UNAVAILABLE);
    chat_redis_free(dead);
}

static void redis_refusing_is_unavailable(void **state)
{
    /* Redis answers, but with an error (here the queue key holds the wrong
     * type, so the script fails): "try again later", and nothing changed. */
    freeReplyObject(chat_redis_cmd(R, "SET m:queue not-a-list"));
    assert_int_equal(start(R, A, 1, NULL, NULL), CHAT__CODE__UNAVAILABLE);
    assert_int_equal(rint_cmd("EXISTS m:q:%s", A), 0);
    freeReplyObject(chat_redis_cmd(R, "DEL m:queue"));
    start_waits(A);
}

/* ---- two threads, many users, never a double match ---- */

#define RACE_USERS 400

static char race_users[RACE_USERS][CHAT_UUID_LEN + 1];

typedef struct race_arg {
    int dir;
    unsigned seed;
    int paired;
} race_arg;

static void *race_thread(void *p)
{
    race_arg *a = p;
    chat_redis *r = connect_db(redis_port);
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < RACE_USERS; k++) {
            int i = a->dir > 0 ? k : RACE_USERS - 1 - k;
            char conv[MATCH_ID_MAX + 1];
            Chat__Code code = start(r, race_users[i], 1, conv, NULL);
            assert_true(code == CHAT__CODE__OK || code == CHAT__CODE__ALREADY_IN_CHAT);
            if (conv[0])
                a->paired++;
            if (rand_r(&a->seed) % 5 == 0)
                simple(r, CHAT__MATCH_REQUEST__BODY_STOP_SEARCH, race_users[i]);
        }
    }
    chat_redis_free(r);
    return NULL;
}

static void concurrent_searches_never_pair_twice(void **state)
{
    for (int i = 0; i < RACE_USERS; i++)
        chat_uuid_new(race_users[i]);
    race_arg args[2] = {{1, 1, 0}, {-1, 2, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race_thread, &args[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);

    /* Every user is in at most one conversation, and Redis agrees. A
     * conversation closed here was created for a partner who stopped
     * searching meanwhile and given up before anyone was told of it. */
    for (int e = 0; e < F->n_events; e++)
        if (F->events[e].body == CHAT__EVENT__BODY_MATCHED)
            assert_false(fake_find(F, F->events[e].conv)->closed);
    int seen[RACE_USERS] = {0};
    for (int c = 0; c < F->n_convs; c++) {
        if (F->convs[c].closed)
            continue;
        for (int i = 0; i < RACE_USERS; i++) {
            if (strcmp(F->convs[c].a, race_users[i]) == 0 ||
                strcmp(F->convs[c].b, race_users[i]) == 0)
                seen[i]++;
        }
        assert_string_not_equal(F->convs[c].a, F->convs[c].b);
    }
    int in_chat = 0;
    for (int i = 0; i < RACE_USERS; i++) {
        assert_true(seen[i] <= 1);
        char key[80], buf[80];
        snprintf(key, sizeof key, "m:chat:%.36s", race_users[i]);
        rget(buf, sizeof buf, key);
        if (seen[i]) {
            in_chat++;
            assert_non_null(fake_find(F, buf));
        } else {
            assert_string_equal(buf, "");
        }
    }
    int live = 0;
    for (int c = 0; c < F->n_convs; c++)
        live += !F->convs[c].closed;
    assert_int_equal(in_chat, 2 * live);
    assert_int_equal(args[0].paired + args[1].paired, live);
    assert_true(live > RACE_USERS / 4); /* the race did happen */
    print_message("race: %d conversations among %d users (%d given up)\n", live, RACE_USERS,
                  F->n_convs - live);
}

int main(void)
{
    redis_port = redis_fixture_port("test_match_redis", TEST_DB);
    match_scripts_init();
    F = calloc(1, sizeof *F);
    env = (match_env){fake_call, fake_publish, F, 60, 0, 0};
    R = connect_db(redis_port);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fifo_four_users, setup, teardown),
        cmocka_unit_test_setup_teardown(queue_stats_count_live_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(start_search_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_then_start_goes_to_the_back, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_then_start_order, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_after_match_names_the_chat, setup, teardown),
        cmocka_unit_test_setup_teardown(already_in_chat, setup, teardown),
        cmocka_unit_test_setup_teardown(end_chat_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(end_chat_heals_unclosed, setup, teardown),
        cmocka_unit_test_setup_teardown(user_offline_leaves_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(create_failure_requeues_partner_at_head, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(create_failure_respects_a_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_while_pending_is_final, setup, teardown),
        cmocka_unit_test_setup_teardown(searching_again_while_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(partners_keep_leaving_then_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(user_gone_and_session, setup, teardown),
        cmocka_unit_test_setup_teardown(redis_down_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(redis_refusing_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_searches_never_pair_twice, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    chat_redis_free(R);
    free(F);
    return failed;
}
