/* svc-message against a real PostgreSQL and Redis: the whole service runs
 * in this process (REP and PUB on ipc:// addresses) and is driven through
 * chat_rpc_call like a gateway would.
 *
 *   CHAT_TEST_PG_DSN      libpq conninfo of a database we may write to
 *   CHAT_TEST_REDIS_PORT  Redis on 127.0.0.1
 * Without them the test is skipped (exit 77). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "message.h"

#include "chat/log.h"
#include "chat/rpc.h"
#include "chat/util.h"
#include "envelope.pb-c.h"

#include <hiredis.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RATE 5      /* per minute, for the rate-limited instance */
#define OPS_BURST 4 /* its ops limit: 60 a minute, 4 at once */
#define MAX_ROOMS 3 /* rooms a user may be in */

static const char *pg_dsn;
static int redis_port;

/* One service instance with its client. */
typedef struct inst {
    msg_config cfg;
    msg_service svc;
    chat_rpc_client *cli;
    char listen[128], pub[128];
    bool up;
} inst;

static inst free_i; /* no rate limit */
static inst rl_i;   /* RATE per minute */

/* ---- events seen by our subscriber ---- */
typedef struct seen_evt {
    int body_case;
    char conv[40];
    uint64_t seq;
    bool read;
    char user[40]; /* receipt: whose; message: sender */
    char to[1024]; /* recipients, comma-separated (the first ones) */
    size_t n_to;   /* how many */
} seen_evt;

#define MAX_EVTS 20000
static pthread_mutex_t evt_mu = PTHREAD_MUTEX_INITIALIZER;
static seen_evt evts[MAX_EVTS];
static int nevts;
static chat_sub *sub;

static void on_event(const uint8_t *data, size_t len, void *arg)
{
    Chat__Event *ev = chat__event__unpack(NULL, len, data);
    if (ev == NULL)
        return;
    seen_evt e = {.body_case = ev->body_case, .n_to = ev->n_user_ids};
    for (size_t i = 0; i < ev->n_user_ids; i++) {
        size_t l = strlen(e.to);
        snprintf(e.to + l, sizeof e.to - l, "%s%s", i ? "," : "", ev->user_ids[i]);
    }
    if (ev->body_case == CHAT__EVENT__BODY_MESSAGE) {
        snprintf(e.conv, sizeof e.conv, "%s", ev->message->conversation_id);
        snprintf(e.user, sizeof e.user, "%s", ev->message->sender);
        e.seq = ev->message->seq;
    } else if (ev->body_case == CHAT__EVENT__BODY_TYPING) {
        snprintf(e.conv, sizeof e.conv, "%s", ev->typing->conversation_id);
        snprintf(e.user, sizeof e.user, "%s", ev->typing->user_id);
        e.read = ev->typing->start; /* start, for typing events */
    } else if (ev->body_case == CHAT__EVENT__BODY_RECEIPT) {
        snprintf(e.conv, sizeof e.conv, "%s", ev->receipt->conversation_id);
        snprintf(e.user, sizeof e.user, "%s", ev->receipt->user_id);
        e.seq = ev->receipt->seq;
        e.read = ev->receipt->read;
    }
    pthread_mutex_lock(&evt_mu);
    if (nevts < MAX_EVTS)
        evts[nevts++] = e;
    pthread_mutex_unlock(&evt_mu);
    chat__event__free_unpacked(ev, NULL);
}

/* Events of one kind for one conversation, in arrival order. */
static int events_for(int body_case, const char *conv, seen_evt *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&evt_mu);
    for (int i = 0; i < nevts; i++)
        if (evts[i].body_case == body_case && strcmp(evts[i].conv, conv) == 0 && n < max)
            out[n++] = evts[i];
    pthread_mutex_unlock(&evt_mu);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits until at least want events arrived (or 5 s passed: a busy machine
 * can hold an event back for more than a second). */
static int wait_events(int body_case, const char *conv, int want, seen_evt *out, int max)
{
    int n = 0;
    for (int i = 0; i < 500; i++) {
        n = events_for(body_case, conv, out, max);
        if (n >= want)
            break;
        sleep_ms(10);
    }
    return n;
}

/* ---- instances ---- */

static void cfg_defaults(inst *in, const char *tag, long long rate, const char *dsn, int rport)
{
    snprintf(in->listen, sizeof in->listen, "ipc:///tmp/test_msg_%d_%s_rep", (int)getpid(),
             tag);
    snprintf(in->pub, sizeof in->pub, "ipc:///tmp/test_msg_%d_%s_pub", (int)getpid(), tag);
    msg_config c = {
        .listen = in->listen,
        .pub_listen = in->pub,
        .pg_dsn = dsn,
        .redis_host = "127.0.0.1",
        .log_level = "info",
        .redis_port = rport,
        .rate_per_min = rate,
        /* The ops limit with the send limit: loose enough for the tests
         * that use them, tight enough for test_ops_limit. */
        .ops_per_min = rate > 0 ? 60 : 0,
        .ops_burst = OPS_BURST,
        .max_rooms = MAX_ROOMS,
        .max_text = 500,
        .writers = 2,
        .batch = 256,
        .contexts = 256,
        .readers = 2,
        .pg_timeout_ms = 3000,
    };
    in->cfg = c;
}

static int inst_start(inst *in)
{
    if (msg_service_start(&in->svc, &in->cfg) != 0)
        return -1;
    if (chat_rpc_client_open(&in->cli, in->listen, 5000) != 0)
        return -1;
    for (int i = 0; i < 200 && chat_rpc_client_peers(in->cli) == 0; i++)
        sleep_ms(10);
    in->up = true;
    return chat_rpc_client_peers(in->cli) > 0 ? 0 : -1;
}

static void inst_stop(inst *in)
{
    if (!in->up)
        return;
    chat_rpc_client_close(in->cli);
    msg_service_stop(&in->svc);
    in->up = false;
}

/* ---- calls ---- */

static Chat__MessageReply *call(inst *in, Chat__MessageRequest *req)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv = chat_rpc_call(in->cli, &req->base, &buf, &len);
    assert_int_equal(rv, 0);
    Chat__MessageReply *rep = chat__message_reply__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(rep);
    return rep;
}

static void done(Chat__MessageReply *rep)
{
    chat__message_reply__free_unpacked(rep, NULL);
}

static Chat__MessageReply *do_send(inst *in, const char *conv, const char *sender,
                                   const char *cmid, const char *text)
{
    Chat__SendReq s = CHAT__SEND_REQ__INIT;
    s.conversation_id = (char *)conv;
    s.sender = (char *)sender;
    s.client_msg_id = (char *)cmid;
    s.text = (char *)text;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_SEND;
    req.send = &s;
    return call(in, &req);
}

static int send_code(inst *in, const char *conv, const char *sender, const char *cmid,
                     const char *text)
{
    Chat__MessageReply *r = do_send(in, conv, sender, cmid, text);
    int code = r->code;
    done(r);
    return code;
}

static Chat__MessageReply *do_create(inst *in, Chat__ConversationKind kind, int n, ...)
{
    char *ids[8];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        ids[i] = va_arg(ap, char *);
    va_end(ap);
    Chat__CreateConversationReq c = CHAT__CREATE_CONVERSATION_REQ__INIT;
    c.kind = kind;
    c.n_member_ids = (size_t)n;
    c.member_ids = ids;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_CREATE_CONVERSATION;
    req.create_conversation = &c;
    return call(in, &req);
}

/* Creates a random chat of a and b; writes its id into out[37]. */
static void new_chat(inst *in, const char *a, const char *b, char *out)
{
    Chat__MessageReply *r = do_create(in, CHAT__CONVERSATION_KIND__RANDOM, 2, a, b);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_true(chat_uuid_valid(r->conversation_id));
    snprintf(out, CHAT_UUID_LEN + 1, "%s", r->conversation_id);
    done(r);
}

static Chat__MessageReply *do_info(inst *in, const char *conv, const char *user)
{
    Chat__ConversationInfoReq q = CHAT__CONVERSATION_INFO_REQ__INIT;
    q.conversation_id = (char *)conv;
    q.user_id = (char *)user;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_CONVERSATION_INFO;
    req.conversation_info = &q;
    return call(in, &req);
}

static int close_code(inst *in, const char *conv, const char *user)
{
    Chat__CloseConversationReq q = CHAT__CLOSE_CONVERSATION_REQ__INIT;
    q.conversation_id = (char *)conv;
    q.user_id = (char *)user;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_CLOSE_CONVERSATION;
    req.close_conversation = &q;
    Chat__MessageReply *r = call(in, &req);
    int code = r->code;
    done(r);
    return code;
}

static int receipt_code(inst *in, const char *user, const char *conv, uint64_t seq, bool read)
{
    Chat__ReceiptReq q = CHAT__RECEIPT_REQ__INIT;
    q.user_id = (char *)user;
    q.conversation_id = (char *)conv;
    q.seq = seq;
    q.read = read;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_RECEIPT;
    req.receipt = &q;
    Chat__MessageReply *r = call(in, &req);
    int code = r->code;
    done(r);
    return code;
}

static Chat__MessageReply *do_replay(inst *in, const char *user, const char *after_conv,
                                     uint64_t after_seq, uint32_t limit)
{
    Chat__ReplayReq q = CHAT__REPLAY_REQ__INIT;
    q.user_id = (char *)user;
    q.after_conversation_id = (char *)after_conv;
    q.after_seq = after_seq;
    q.limit = limit;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_REPLAY;
    req.replay = &q;
    return call(in, &req);
}

static void uid(char *out)
{
    chat_uuid_new(out);
}

static Chat__MessageReply *call_body(inst *in, Chat__MessageRequest__BodyCase body, void *sub)
{
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = body;
    req.register_user = sub; /* one union: any member carries the pointer */
    return call(in, &req);
}

static int register_code(inst *in, const char *user)
{
    Chat__RegisterUserReq q = CHAT__REGISTER_USER_REQ__INIT;
    q.user_id = (char *)user;
    Chat__MessageReply *r = call_body(in, CHAT__MESSAGE_REQUEST__BODY_REGISTER_USER, &q);
    int code = r->code;
    done(r);
    return code;
}

static Chat__MessageReply *do_open_dm(inst *in, const char *user, const char *peer)
{
    Chat__OpenDmReq q = CHAT__OPEN_DM_REQ__INIT;
    q.user_id = (char *)user;
    q.peer_id = (char *)peer;
    return call_body(in, CHAT__MESSAGE_REQUEST__BODY_OPEN_DM, &q);
}

static Chat__MessageReply *do_room(inst *in, bool join, const char *user, const char *room)
{
    Chat__JoinRoomReq j = CHAT__JOIN_ROOM_REQ__INIT;
    Chat__LeaveRoomReq l = CHAT__LEAVE_ROOM_REQ__INIT;
    j.user_id = l.user_id = (char *)user;
    j.room = l.room = (char *)room;
    return join ? call_body(in, CHAT__MESSAGE_REQUEST__BODY_JOIN_ROOM, &j)
                : call_body(in, CHAT__MESSAGE_REQUEST__BODY_LEAVE_ROOM, &l);
}

static Chat__MessageReply *do_history(inst *in, const char *user, const char *conv,
                                      uint64_t before, uint32_t limit)
{
    Chat__HistoryReq q = CHAT__HISTORY_REQ__INIT;
    q.user_id = (char *)user;
    q.conversation_id = (char *)conv;
    q.before = before;
    q.limit = limit;
    return call_body(in, CHAT__MESSAGE_REQUEST__BODY_HISTORY, &q);
}

static int typing_code(inst *in, const char *user, const char *conv, bool start)
{
    Chat__TypingReq q = CHAT__TYPING_REQ__INIT;
    q.user_id = (char *)user;
    q.conversation_id = (char *)conv;
    q.start = start;
    Chat__MessageReply *r = call_body(in, CHAT__MESSAGE_REQUEST__BODY_TYPING, &q);
    int code = r->code;
    done(r);
    return code;
}

static Chat__MessageReply *do_contacts_before(inst *in, const char *user, int64_t before)
{
    Chat__ContactsReq q = CHAT__CONTACTS_REQ__INIT;
    q.user_id = (char *)user;
    q.joined_before = before;
    return call_body(in, CHAT__MESSAGE_REQUEST__BODY_CONTACTS, &q);
}

static Chat__MessageReply *do_contacts(inst *in, const char *user)
{
    return do_contacts_before(in, user, 0);
}

static void upper(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
}

/* ---- tests ---- */

static void test_create_info_close(void **state)
{
    char a[37], b[37], c[37], stranger[37], conv[37], other[37];
    uid(a), uid(b), uid(c), uid(stranger), uid(other);
    new_chat(&free_i, a, b, conv);

    Chat__MessageReply *r = do_info(&free_i, conv, a);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_int_equal(r->kind, CHAT__CONVERSATION_KIND__RANDOM);
    assert_false(r->closed);
    assert_true(r->is_member);
    done(r);
    r = do_info(&free_i, conv, stranger);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_false(r->is_member);
    done(r);
    r = do_info(&free_i, other, a); /* valid uuid, no such conversation */
    assert_int_equal(r->code, CHAT__CODE__NOT_FOUND);
    done(r);
    r = do_info(&free_i, "not-a-uuid'; drop table messages; --", a);
    assert_int_equal(r->code, CHAT__CODE__NOT_FOUND);
    done(r);
    r = do_info(&free_i, conv, "nope");
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);

    assert_int_equal(close_code(&free_i, conv, a), CHAT__CODE__OK);
    assert_int_equal(close_code(&free_i, conv, a), CHAT__CODE__OK); /* already closed */
    assert_int_equal(close_code(&free_i, other, a), CHAT__CODE__NOT_FOUND);
    assert_int_equal(close_code(&free_i, "x", a), CHAT__CODE__NOT_FOUND);
    r = do_info(&free_i, conv, b);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_true(r->closed);
    done(r);

    /* Shapes create refuses. */
    r = do_create(&free_i, CHAT__CONVERSATION_KIND__RANDOM, 1, a);
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
    r = do_create(&free_i, CHAT__CONVERSATION_KIND__RANDOM, 2, a, a);
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
    r = do_create(&free_i, CHAT__CONVERSATION_KIND__KIND_UNKNOWN, 2, a, b);
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
    r = do_create(&free_i, CHAT__CONVERSATION_KIND__RANDOM, 2, a, "bad");
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);

    /* A DM pair always gets the same conversation, in either order. */
    char dm1[37];
    r = do_create(&free_i, CHAT__CONVERSATION_KIND__DM, 2, a, b);
    assert_int_equal(r->code, CHAT__CODE__OK);
    snprintf(dm1, sizeof dm1, "%s", r->conversation_id);
    done(r);
    r = do_create(&free_i, CHAT__CONVERSATION_KIND__DM, 2, b, a);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_string_equal(r->conversation_id, dm1);
    done(r);
    r = do_info(&free_i, dm1, b);
    assert_int_equal(r->kind, CHAT__CONVERSATION_KIND__DM);
    assert_true(r->is_member);
    done(r);

    /* Rooms: any number of members, duplicates collapse. */
    r = do_create(&free_i, CHAT__CONVERSATION_KIND__ROOM, 4, a, b, c, a);
    assert_int_equal(r->code, CHAT__CODE__OK);
    char room[37];
    snprintf(room, sizeof room, "%s", r->conversation_id);
    done(r);
    r = do_info(&free_i, room, c);
    assert_int_equal(r->kind, CHAT__CONVERSATION_KIND__ROOM);
    assert_true(r->is_member);
    done(r);
}

static void test_send_codes(void **state)
{
    char a[37], b[37], stranger[37], conv[37], nowhere[37];
    uid(a), uid(b), uid(stranger), uid(nowhere);
    new_chat(&free_i, a, b, conv);

    assert_int_equal(send_code(&free_i, nowhere, a, "c1", "hi"), CHAT__CODE__NOT_FOUND);
    assert_int_equal(send_code(&free_i, "zzz", a, "c1", "hi"), CHAT__CODE__NOT_FOUND);
    assert_int_equal(send_code(&free_i, conv, stranger, "c1", "hi"), CHAT__CODE__NOT_MEMBER);
    assert_int_equal(send_code(&free_i, conv, "bad", "c1", "hi"), CHAT__CODE__BAD_REQUEST);
    assert_int_equal(send_code(&free_i, conv, a, "", "hi"), CHAT__CODE__BAD_REQUEST);
    char longid[66];
    memset(longid, 'x', 65);
    longid[65] = '\0';
    assert_int_equal(send_code(&free_i, conv, a, longid, "hi"), CHAT__CODE__BAD_REQUEST);
    assert_int_equal(send_code(&free_i, conv, a, "c1", ""), CHAT__CODE__BAD_REQUEST);
    assert_int_equal(send_code(&free_i, conv, a, "c1", "bad \xff utf8"),
                     CHAT__CODE__BAD_REQUEST);
    char *big = malloc(2002);
    memset(big, 'a', 2001);
    big[2001] = '\0';
    assert_int_equal(send_code(&free_i, conv, a, "c1", big), CHAT__CODE__TOO_LONG);
    big[2000] = '\0'; /* exactly 4 * 500 bytes: the gateway's call */
    assert_int_equal(send_code(&free_i, conv, a, "big", big), CHAT__CODE__OK);
    free(big);

    /* None of the refused sends used a seq. */
    Chat__MessageReply *r = do_send(&free_i, conv, a, "c1", "hi");
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_int_equal(r->message->seq, 2);
    done(r);

    assert_int_equal(close_code(&free_i, conv, b), CHAT__CODE__OK);
    assert_int_equal(send_code(&free_i, conv, a, "c2", "hi"), CHAT__CODE__CONVERSATION_CLOSED);
    /* A retry of a message stored before the close still gets its ack. */
    r = do_send(&free_i, conv, a, "c1", "hi");
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_true(r->duplicate);
    assert_int_equal(r->message->seq, 2);
    done(r);
}

static void test_dedupe(void **state)
{
    char a[37], b[37], conv[37], conv2[37];
    uid(a), uid(b);
    new_chat(&free_i, a, b, conv);
    new_chat(&free_i, a, b, conv2);

    Chat__MessageReply *r = do_send(&free_i, conv, a, "m-1", "hello");
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_false(r->duplicate);
    Chat__StoredMessage *m = r->message;
    assert_non_null(m);
    assert_string_equal(m->conversation_id, conv);
    assert_string_equal(m->sender, a);
    assert_string_equal(m->text, "hello");
    assert_int_equal(m->seq, 1);
    assert_true(m->msg_id[0] != '\0');
    int64_t now = chat_now_ms();
    assert_true(m->ts > now - 10000 && m->ts <= now + 1000);
    char msg_id[32];
    snprintf(msg_id, sizeof msg_id, "%s", m->msg_id);
    int64_t ts = m->ts;
    done(r);

    /* Retry with other text, and even naming another conversation: the
     * original comes back, nothing new is stored. */
    for (int i = 0; i < 2; i++) {
        r = do_send(&free_i, i ? conv2 : conv, a, "m-1", "changed");
        assert_int_equal(r->code, CHAT__CODE__OK);
        assert_true(r->duplicate);
        assert_string_equal(r->message->msg_id, msg_id);
        assert_string_equal(r->message->conversation_id, conv);
        assert_string_equal(r->message->text, "hello");
        assert_int_equal(r->message->seq, 1);
        assert_int_equal(r->message->ts, ts);
        done(r);
    }
    /* Same client_msg_id from the other user is another message. */
    r = do_send(&free_i, conv, b, "m-1", "from b");
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_false(r->duplicate);
    assert_int_equal(r->message->seq, 2);
    done(r);
    r = do_send(&free_i, conv2, a, "m-2", "x");
    assert_int_equal(r->message->seq, 1); /* conv2 untouched by the retry */
    done(r);

    /* One event per stored message and one per retry (the first may have
     * been lost with a replica), to every member (the sender's other
     * connections follow the seqs). */
    seen_evt ev[8];
    int n = wait_events(CHAT__EVENT__BODY_MESSAGE, conv, 4, ev, 8);
    sleep_ms(100);
    n = events_for(CHAT__EVENT__BODY_MESSAGE, conv, ev, 8);
    assert_int_equal(n, 4);
    char ab[80];
    snprintf(ab, sizeof ab, "%s,%s", strcmp(a, b) < 0 ? a : b, strcmp(a, b) < 0 ? b : a);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ev[i].seq, 1);
        assert_string_equal(ev[i].to, ab);
        assert_string_equal(ev[i].user, a);
    }
    assert_int_equal(ev[3].seq, 2);
    assert_string_equal(ev[3].to, ab);
    assert_string_equal(ev[3].user, b);
}

/* ---- many sends in one request (one writer batch, MSG_SQL_SEND_MANY) ---- */

typedef struct batch_res {
    sem_t done;
    Chat__MessageReply *rep;
    int err;
} batch_res;

static void on_batch_reply(int err, const uint8_t *data, size_t len, void *arg)
{
    batch_res *b = arg;
    b->err = err;
    b->rep = err == 0 ? chat__message_reply__unpack(NULL, len, data) : NULL;
    sem_post(&b->done);
}

/* One send of a batch and the reply it must get. */
typedef struct batch_send {
    const char *conv, *sender, *cmid, *text;
    Chat__Code code;
    bool dup;
    uint64_t seq;
    const char *ack_text; /* OK: the text the ack carries (a duplicate: the original's) */
} batch_send;

/* Sends want[0..n) as one request (so one writer batch, as a gateway's
 * event-loop pass would) and checks every reply. */
static void send_batch_and_check(inst *in, const batch_send *want, int n)
{
    batch_res res[n];
    for (int i = 0; i < n; i++) {
        sem_init(&res[i].done, 0, 0);
        Chat__SendReq sr = CHAT__SEND_REQ__INIT;
        sr.conversation_id = (char *)want[i].conv;
        sr.sender = (char *)want[i].sender;
        sr.client_msg_id = (char *)want[i].cmid;
        sr.text = (char *)want[i].text;
        Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
        req.body_case = CHAT__MESSAGE_REQUEST__BODY_SEND;
        req.send = &sr;
        chat_rpc_call_queued(in->cli, &req.base, on_batch_reply, &res[i]);
    }
    chat_rpc_client_flush(in->cli);
    for (int i = 0; i < n; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 10;
        assert_int_equal(sem_timedwait(&res[i].done, &ts), 0);
        assert_int_equal(res[i].err, 0);
        Chat__MessageReply *r = res[i].rep;
        assert_non_null(r);
        assert_int_equal(r->code, want[i].code);
        if (want[i].code == CHAT__CODE__OK) {
            assert_non_null(r->message);
            assert_int_equal(r->duplicate, want[i].dup);
            assert_int_equal(r->message->seq, want[i].seq);
            assert_string_equal(r->message->conversation_id, want[i].conv);
            assert_string_equal(r->message->text, want[i].ack_text);
        } else if (want[i].code == CHAT__CODE__RATE_LIMITED) {
            assert_true(r->retry_after_ms > 0);
        }
        done(r);
        sem_destroy(&res[i].done);
    }
}

static void test_batch_mixed(void **state)
{
    char a[37], b[37], stranger[37], conv[37], closed[37], nowhere[37];
    uid(a), uid(b), uid(stranger), uid(nowhere);
    new_chat(&free_i, a, b, conv);
    new_chat(&free_i, a, b, closed);
    assert_int_equal(close_code(&free_i, closed, b), CHAT__CODE__OK);
    const char *tricky = "he said \"hi\", {a\\b} NULL \xc3\xa9";
    const batch_send want[] = {
        {conv, a, "x1", "one", CHAT__CODE__OK, false, 1, "one"},
        {conv, b, "x2", "two", CHAT__CODE__OK, false, 2, "two"},
        {conv, stranger, "x3", "no", CHAT__CODE__NOT_MEMBER, false, 0, NULL},
        {conv, a, "x1", "again", CHAT__CODE__OK, true, 1, "one"},
        {closed, a, "x4", "late", CHAT__CODE__CONVERSATION_CLOSED, false, 0, NULL},
        {nowhere, a, "x5", "void", CHAT__CODE__NOT_FOUND, false, 0, NULL},
        {conv, a, "x6", tricky, CHAT__CODE__OK, false, 3, tricky},
        {conv, b, "x2", "two again", CHAT__CODE__OK, true, 2, "two"},
    };
    send_batch_and_check(&free_i, want, (int)(sizeof want / sizeof want[0]));
    /* Stored exactly once each, text intact (b's replay: a's messages). */
    Chat__MessageReply *r = do_replay(&free_i, b, "", 0, 0);
    assert_int_equal(r->code, CHAT__CODE__OK);
    int found = 0;
    for (size_t i = 0; i < r->n_messages; i++) {
        if (strcmp(r->messages[i]->conversation_id, conv) != 0)
            continue;
        found++;
        assert_int_equal(r->messages[i]->seq, found == 1 ? 1 : 3);
        assert_string_equal(r->messages[i]->text, found == 1 ? "one" : tricky);
    }
    assert_int_equal(found, 2);
    done(r);
    /* An event for each stored message, and again for a retry answered
     * from storage; a second copy inside the batch shares its first's. */
    seen_evt ev[8];
    wait_events(CHAT__EVENT__BODY_MESSAGE, conv, 3, ev, 8);
    sleep_ms(100);
    int n = events_for(CHAT__EVENT__BODY_MESSAGE, conv, ev, 8);
    bool seen[4] = {false};
    for (int i = 0; i < n; i++) {
        assert_true(ev[i].seq >= 1 && ev[i].seq <= 3);
        if (seen[ev[i].seq])
            assert_true(ev[i].seq <= 2); /* only x1 and x2 were retried */
        seen[ev[i].seq] = true;
    }
    assert_true(seen[1] && seen[2] && seen[3]);
    assert_in_range(n, 3, 5);
    assert_int_equal(events_for(CHAT__EVENT__BODY_MESSAGE, closed, ev, 8), 0);
}

/* Rate limits inside one batch: tokens go in arrival order; a refused send
 * that repeats a stored one of the same batch still gets its ack. */
static void test_batch_rate_limited(void **state)
{
    char c[37], d[37], conv[37];
    uid(c), uid(d);
    new_chat(&rl_i, c, d, conv);
    const batch_send want[] = {
        {conv, c, "r1", "r1", CHAT__CODE__OK, false, 1, "r1"},
        {conv, c, "r2", "r2", CHAT__CODE__OK, false, 2, "r2"},
        {conv, c, "r3", "r3", CHAT__CODE__OK, false, 3, "r3"},
        {conv, c, "r4", "r4", CHAT__CODE__OK, false, 4, "r4"},
        {conv, c, "r5", "r5", CHAT__CODE__OK, false, 5, "r5"},
        {conv, c, "r6", "r6", CHAT__CODE__RATE_LIMITED, false, 0, NULL},
        {conv, c, "r2", "r2", CHAT__CODE__OK, true, 2, "r2"},
        {conv, d, "d1", "d1", CHAT__CODE__OK, false, 6, "d1"},
    };
    send_batch_and_check(&rl_i, want, (int)(sizeof want / sizeof want[0]));
}

/* ---- concurrency ---- */

#define CONC_THREADS 8
#define CONC_PER_THREAD 60
#define CONC_CONVS 3

static char conc_users[CONC_CONVS][2][37];
static char conc_convs[CONC_CONVS][37];
static pthread_mutex_t conc_mu = PTHREAD_MUTEX_INITIALIZER;
static int conc_seen[CONC_CONVS][CONC_THREADS * CONC_PER_THREAD + 2];
static int conc_errors;

static void *conc_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < CONC_PER_THREAD; i++) {
        int c = (t + i) % CONC_CONVS;
        char cmid[32];
        snprintf(cmid, sizeof cmid, "t%d-%d", t, i);
        uint8_t *buf = NULL;
        size_t len = 0;
        Chat__SendReq s = CHAT__SEND_REQ__INIT;
        s.conversation_id = conc_convs[c];
        s.sender = conc_users[c][i % 2];
        s.client_msg_id = cmid;
        s.text = cmid;
        Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
        req.body_case = CHAT__MESSAGE_REQUEST__BODY_SEND;
        req.send = &s;
        int rv = chat_rpc_call(free_i.cli, &req.base, &buf, &len);
        Chat__MessageReply *r = rv == 0 ? chat__message_reply__unpack(NULL, len, buf) : NULL;
        free(buf);
        pthread_mutex_lock(&conc_mu);
        if (r == NULL || r->code != CHAT__CODE__OK || r->duplicate ||
            r->message->seq > CONC_THREADS * CONC_PER_THREAD)
            conc_errors++;
        else
            conc_seen[c][r->message->seq]++;
        pthread_mutex_unlock(&conc_mu);
        if (r)
            chat__message_reply__free_unpacked(r, NULL);
    }
    return NULL;
}

static void test_concurrent_gapless(void **state)
{
    for (int c = 0; c < CONC_CONVS; c++) {
        uid(conc_users[c][0]);
        uid(conc_users[c][1]);
        new_chat(&free_i, conc_users[c][0], conc_users[c][1], conc_convs[c]);
    }
    pthread_t th[CONC_THREADS];
    for (int t = 0; t < CONC_THREADS; t++)
        pthread_create(&th[t], NULL, conc_thread, (void *)(intptr_t)t);
    for (int t = 0; t < CONC_THREADS; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(conc_errors, 0);
    int total = 0;
    for (int c = 0; c < CONC_CONVS; c++) {
        /* seq 1..n each exactly once: no gap, no repeat. */
        int n = 0;
        while (conc_seen[c][n + 1] == 1)
            n++;
        for (int s = n + 1; s < CONC_THREADS * CONC_PER_THREAD + 2; s++)
            assert_int_equal(conc_seen[c][s], 0);
        assert_int_equal(conc_seen[c][0], 0);
        total += n;
        /* Events of one conversation arrive in seq order. */
        static seen_evt ev[CONC_THREADS * CONC_PER_THREAD];
        int ne = wait_events(CHAT__EVENT__BODY_MESSAGE, conc_convs[c], n, ev,
                             CONC_THREADS * CONC_PER_THREAD);
        assert_int_equal(ne, n);
        for (int i = 0; i < ne; i++)
            assert_int_equal(ev[i].seq, (uint64_t)i + 1);
    }
    assert_int_equal(total, CONC_THREADS * CONC_PER_THREAD);
}

/* The same (sender, client_msg_id) raced into two conversations that live
 * on different writers: exactly one is stored, every reply is that one,
 * and no seq is lost (the loser's transaction is rolled back and retried). */
#define RACE_THREADS 6
#define RACE_ROUNDS 15

static char race_conv[2][37];
static char race_sender[37];
static pthread_barrier_t race_barrier;
static char race_ids[RACE_ROUNDS][RACE_THREADS][32];
static uint64_t race_seq[RACE_ROUNDS][RACE_THREADS];
static char race_conv_got[RACE_ROUNDS][RACE_THREADS][40];
static int race_dups[RACE_ROUNDS];
static int race_errors;

static void *race_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int round = 0; round < RACE_ROUNDS; round++) {
        char cmid[32];
        snprintf(cmid, sizeof cmid, "race-%d", round);
        pthread_barrier_wait(&race_barrier);
        Chat__SendReq s = CHAT__SEND_REQ__INIT;
        s.conversation_id = race_conv[t % 2];
        s.sender = race_sender;
        s.client_msg_id = cmid;
        s.text = "race";
        Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
        req.body_case = CHAT__MESSAGE_REQUEST__BODY_SEND;
        req.send = &s;
        uint8_t *buf = NULL;
        size_t len = 0;
        int rv = chat_rpc_call(free_i.cli, &req.base, &buf, &len);
        Chat__MessageReply *r = rv == 0 ? chat__message_reply__unpack(NULL, len, buf) : NULL;
        free(buf);
        pthread_mutex_lock(&conc_mu);
        if (r == NULL || r->code != CHAT__CODE__OK || r->message == NULL) {
            race_errors++;
        } else {
            snprintf(race_ids[round][t], 32, "%s", r->message->msg_id);
            snprintf(race_conv_got[round][t], 40, "%s", r->message->conversation_id);
            race_seq[round][t] = r->message->seq;
            race_dups[round] += r->duplicate;
        }
        pthread_mutex_unlock(&conc_mu);
        if (r)
            chat__message_reply__free_unpacked(r, NULL);
    }
    return NULL;
}

static void test_duplicate_race(void **state)
{
    char b[37];
    uid(race_sender), uid(b);
    /* Two conversations on different writers (2 writers). */
    new_chat(&free_i, race_sender, b, race_conv[0]);
    do
        new_chat(&free_i, race_sender, b, race_conv[1]);
    while (msg_route(race_conv[1], 2) == msg_route(race_conv[0], 2));

    pthread_barrier_init(&race_barrier, NULL, RACE_THREADS);
    pthread_t th[RACE_THREADS];
    for (int t = 0; t < RACE_THREADS; t++)
        pthread_create(&th[t], NULL, race_thread, (void *)(intptr_t)t);
    for (int t = 0; t < RACE_THREADS; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&race_barrier);
    assert_int_equal(race_errors, 0);

    int stored_in[2] = {0, 0};
    for (int round = 0; round < RACE_ROUNDS; round++) {
        assert_int_equal(race_dups[round], RACE_THREADS - 1);
        for (int t = 1; t < RACE_THREADS; t++) {
            assert_string_equal(race_ids[round][t], race_ids[round][0]);
            assert_string_equal(race_conv_got[round][t], race_conv_got[round][0]);
            assert_int_equal(race_seq[round][t], race_seq[round][0]);
        }
        stored_in[strcmp(race_conv_got[round][0], race_conv[1]) == 0]++;
    }
    /* No seq was burnt by a rolled-back attempt. */
    for (int c = 0; c < 2; c++) {
        Chat__MessageReply *r =
            do_send(&free_i, race_conv[c], race_sender, c ? "after-1" : "after-0", "x");
        assert_int_equal(r->code, CHAT__CODE__OK);
        assert_int_equal(r->message->seq, (uint64_t)stored_in[c] + 1);
        done(r);
    }
}

static void test_receipts(void **state)
{
    char a[37], b[37], stranger[37], conv[37], nowhere[37];
    uid(a), uid(b), uid(stranger), uid(nowhere);
    new_chat(&free_i, a, b, conv);
    for (int i = 0; i < 3; i++) {
        char cmid[8];
        snprintf(cmid, sizeof cmid, "r%d", i);
        assert_int_equal(send_code(&free_i, conv, a, cmid, "x"), CHAT__CODE__OK);
    }
    assert_int_equal(receipt_code(&free_i, b, conv, 0, false), CHAT__CODE__BAD_REQUEST);
    assert_int_equal(receipt_code(&free_i, b, conv, 4, false), CHAT__CODE__BAD_REQUEST);
    assert_int_equal(receipt_code(&free_i, stranger, conv, 1, false), CHAT__CODE__NOT_MEMBER);
    assert_int_equal(receipt_code(&free_i, b, nowhere, 1, false), CHAT__CODE__NOT_FOUND);
    assert_int_equal(receipt_code(&free_i, b, "bad", 1, false), CHAT__CODE__NOT_FOUND);
    assert_int_equal(receipt_code(&free_i, "bad", conv, 1, false), CHAT__CODE__BAD_REQUEST);

    assert_int_equal(receipt_code(&free_i, b, conv, 2, false), CHAT__CODE__OK);
    seen_evt ev[8];
    int n = wait_events(CHAT__EVENT__BODY_RECEIPT, conv, 1, ev, 8);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].seq, 2);
    assert_false(ev[0].read);
    assert_string_equal(ev[0].user, b);
    assert_string_equal(ev[0].to, a);

    Chat__MessageReply *r = do_replay(&free_i, b, "", 0, 0);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_int_equal(r->n_messages, 1);
    assert_int_equal(r->messages[0]->seq, 3);
    done(r);
    /* Cumulative: a lower receipt lowers nothing. */
    assert_int_equal(receipt_code(&free_i, b, conv, 1, false), CHAT__CODE__OK);
    r = do_replay(&free_i, b, "", 0, 0);
    assert_int_equal(r->n_messages, 1);
    done(r);
    /* A read confirms delivery too. */
    assert_int_equal(receipt_code(&free_i, b, conv, 3, true), CHAT__CODE__OK);
    r = do_replay(&free_i, b, "", 0, 0);
    assert_int_equal(r->n_messages, 0);
    assert_false(r->more);
    done(r);
    n = wait_events(CHAT__EVENT__BODY_RECEIPT, conv, 3, ev, 8);
    assert_int_equal(n, 3);
    assert_true(ev[2].read);
    assert_int_equal(ev[2].seq, 3);

    /* Rooms store receipts without relaying them. */
    r = do_create(&free_i, CHAT__CONVERSATION_KIND__ROOM, 2, a, b);
    char room[37];
    snprintf(room, sizeof room, "%s", r->conversation_id);
    done(r);
    assert_int_equal(send_code(&free_i, room, a, "room-1", "x"), CHAT__CODE__OK);
    assert_int_equal(receipt_code(&free_i, b, room, 1, true), CHAT__CODE__OK);
    sleep_ms(200);
    assert_int_equal(events_for(CHAT__EVENT__BODY_RECEIPT, room, ev, 8), 0);
}

static void test_replay_paging(void **state)
{
    char u[37], p[3][37], conv[3][37];
    uid(u);
    for (int c = 0; c < 3; c++) {
        uid(p[c]);
        new_chat(&free_i, u, p[c], conv[c]);
        for (int i = 0; i < 3; i++) {
            char cmid[16];
            snprintf(cmid, sizeof cmid, "p%d", i);
            assert_int_equal(send_code(&free_i, conv[c], p[c], cmid, "to u"), CHAT__CODE__OK);
        }
        /* u's own messages are never replayed to u. */
        assert_int_equal(send_code(&free_i, conv[c], u, "own", "mine"), CHAT__CODE__OK);
    }
    /* The expected order: by conversation id, then seq. */
    char sorted[3][37];
    memcpy(sorted, conv, sizeof sorted);
    for (int i = 0; i < 3; i++)
        for (int k = i + 1; k < 3; k++)
            if (strcmp(sorted[k], sorted[i]) < 0) {
                char t[37];
                memcpy(t, sorted[i], 37);
                memcpy(sorted[i], sorted[k], 37);
                memcpy(sorted[k], t, 37);
            }

    char cur_conv[37] = "";
    uint64_t cur_seq = 0;
    int got = 0, pages = 0;
    for (;;) {
        Chat__MessageReply *r = do_replay(&free_i, u, cur_conv, cur_seq, 2);
        assert_int_equal(r->code, CHAT__CODE__OK);
        assert_true(r->n_messages <= 2);
        pages++;
        for (size_t i = 0; i < r->n_messages; i++, got++) {
            Chat__StoredMessage *m = r->messages[i];
            assert_string_equal(m->conversation_id, sorted[got / 3]);
            assert_int_equal(m->seq, (uint64_t)(got % 3) + 1);
            assert_string_not_equal(m->sender, u);
            assert_string_equal(m->text, "to u");
            snprintf(cur_conv, sizeof cur_conv, "%s", m->conversation_id);
            cur_seq = m->seq;
        }
        bool more = r->more;
        assert_int_equal(more, r->n_messages == 2);
        done(r);
        if (!more)
            break;
        assert_true(pages < 10);
    }
    assert_int_equal(got, 9);
    assert_int_equal(pages, 5); /* 2+2+2+2+1 */

    Chat__MessageReply *r = do_replay(&free_i, u, "", 0, 0); /* default limit */
    assert_int_equal(r->n_messages, 9);
    assert_false(r->more);
    done(r);
    r = do_replay(&free_i, u, "not-a-uuid", 0, 0);
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
    r = do_replay(&free_i, "bad", "", 0, 0);
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
}

static long long redis_pttl(const char *user)
{
    redisContext *c = redisConnect("127.0.0.1", redis_port);
    assert_true(c != NULL && c->err == 0);
    redisReply *rep = redisCommand(c, "PTTL rl:%s", user);
    assert_non_null(rep);
    long long v = rep->integer;
    freeReplyObject(rep);
    redisFree(c);
    return v;
}

static void test_open_dm(void **state)
{
    char a[37], b[37], ghost[37], conv[37];
    uid(a), uid(b), uid(ghost);
    /* b is unknown until registered; a registers itself by asking. */
    Chat__MessageReply *r = do_open_dm(&free_i, a, b);
    assert_int_equal(r->code, CHAT__CODE__NOT_FOUND);
    done(r);
    assert_int_equal(register_code(&free_i, b), CHAT__CODE__OK);
    assert_int_equal(register_code(&free_i, b), CHAT__CODE__OK); /* idempotent */
    assert_int_equal(register_code(&free_i, "nope"), CHAT__CODE__BAD_REQUEST);
    r = do_open_dm(&free_i, a, b);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_true(chat_uuid_valid(r->conversation_id));
    snprintf(conv, sizeof conv, "%s", r->conversation_id);
    assert_int_equal(r->n_member_ids, 2);
    assert_true((strcmp(r->member_ids[0], a) == 0 && strcmp(r->member_ids[1], b) == 0) ||
                (strcmp(r->member_ids[0], b) == 0 && strcmp(r->member_ids[1], a) == 0));
    done(r);
    /* The same pair, either way round and in any case: the same DM. a was
     * registered by its own open_dm. */
    char bu[37];
    memcpy(bu, b, sizeof bu);
    upper(bu);
    r = do_open_dm(&free_i, bu, a);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_string_equal(r->conversation_id, conv);
    assert_true(strcmp(r->member_ids[0], b) == 0 || strcmp(r->member_ids[1], b) == 0);
    done(r);
    r = do_info(&free_i, conv, b);
    assert_int_equal(r->kind, CHAT__CONVERSATION_KIND__DM);
    assert_true(r->is_member);
    done(r);
    r = do_open_dm(&free_i, a, a);
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
    r = do_open_dm(&free_i, a, ghost);
    assert_int_equal(r->code, CHAT__CODE__NOT_FOUND);
    done(r);
    r = do_open_dm(&free_i, a, "ghost");
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
    /* The DM works both ways; nobody else is in it. */
    assert_int_equal(send_code(&free_i, conv, b, "dm-1", "hi a"), CHAT__CODE__OK);
    assert_int_equal(send_code(&free_i, conv, ghost, "dm-2", "hi"), CHAT__CODE__NOT_MEMBER);
}

static void test_rooms(void **state)
{
    char a[37], b[37], c[37], room[40], conv[37];
    uid(a), uid(b), uid(c);
    snprintf(room, sizeof room, "r-%.8s", a);
    Chat__MessageReply *r = do_room(&free_i, true, a, room);
    assert_int_equal(r->code, CHAT__CODE__OK);
    snprintf(conv, sizeof conv, "%s", r->conversation_id);
    done(r);
    r = do_room(&free_i, true, b, room);
    assert_string_equal(r->conversation_id, conv);
    done(r);
    assert_int_equal(send_code(&free_i, conv, a, "room-a1", "one"), CHAT__CODE__OK);
    assert_int_equal(send_code(&free_i, conv, b, "room-b1", "two"), CHAT__CODE__OK);
    /* c joins at seq 2: nothing older is replayed, all of it is history. */
    r = do_room(&free_i, true, c, room);
    assert_string_equal(r->conversation_id, conv);
    done(r);
    r = do_replay(&free_i, c, "", 0, 0);
    assert_int_equal(r->n_messages, 0);
    done(r);
    r = do_history(&free_i, c, conv, 0, 0);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_int_equal(r->n_messages, 2);
    done(r);
    /* Joining again changes nothing (no reset of c's position). */
    assert_int_equal(send_code(&free_i, conv, a, "room-a2", "three"), CHAT__CODE__OK);
    r = do_room(&free_i, true, c, room);
    assert_int_equal(r->code, CHAT__CODE__OK);
    done(r);
    r = do_replay(&free_i, c, "", 0, 0);
    assert_int_equal(r->n_messages, 1);
    assert_int_equal(r->messages[0]->seq, 3);
    done(r);
    /* The message went to every member, its sender too. */
    seen_evt ev[8];
    int n = wait_events(CHAT__EVENT__BODY_MESSAGE, conv, 3, ev, 8);
    assert_int_equal(n, 3);
    const char *ids[3] = {a, b, c};
    for (int i = 0; i < 3; i++) /* sorted, as the event lists them */
        for (int j = i + 1; j < 3; j++)
            if (strcmp(ids[j], ids[i]) < 0) {
                const char *t = ids[i];
                ids[i] = ids[j];
                ids[j] = t;
            }
    char abc[120];
    snprintf(abc, sizeof abc, "%s,%s,%s", ids[0], ids[1], ids[2]);
    assert_string_equal(ev[2].to, abc);

    /* Leave: then not a member (send, history, leave again). */
    r = do_room(&free_i, false, c, room);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_string_equal(r->conversation_id, conv);
    done(r);
    r = do_room(&free_i, false, c, room);
    assert_int_equal(r->code, CHAT__CODE__NOT_MEMBER);
    done(r);
    assert_int_equal(send_code(&free_i, conv, c, "room-c1", "x"), CHAT__CODE__NOT_MEMBER);
    r = do_history(&free_i, c, conv, 0, 0);
    assert_int_equal(r->code, CHAT__CODE__NOT_MEMBER);
    done(r);
    r = do_room(&free_i, false, c, "no-such-room-here");
    assert_int_equal(r->code, CHAT__CODE__NOT_FOUND);
    done(r);
    r = do_room(&free_i, true, c, "Bad Name");
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
    /* Back in: starts at the current seq again. */
    r = do_room(&free_i, true, c, room);
    assert_int_equal(r->code, CHAT__CODE__OK);
    done(r);
    r = do_replay(&free_i, c, "", 0, 0);
    assert_int_equal(r->n_messages, 0);
    done(r);
    /* Rooms are not DMs: a room member is no presence contact. */
    r = do_contacts(&free_i, c);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_int_equal(r->n_contact_ids, 0);
    done(r);
}

/* A room's fan-out: one message to 2,500 members goes out as events naming
 * at most 1,000 of them each, every member in exactly one, so that no event
 * or batch outgrows what a gateway's subscription takes. */
static void test_large_room_fanout(void **state)
{
    enum { MEMBERS = 2500 };
    static char users[MEMBERS][37];
    char room[40], conv[37] = "";
    uid(users[0]);
    snprintf(room, sizeof room, "big-%.8s", users[0]);
    for (int i = 0; i < MEMBERS; i++) {
        if (i > 0)
            uid(users[i]);
        Chat__MessageReply *r = do_room(&free_i, true, users[i], room);
        assert_int_equal(r->code, CHAT__CODE__OK);
        snprintf(conv, sizeof conv, "%s", r->conversation_id);
        done(r);
    }
    assert_int_equal(send_code(&free_i, conv, users[7], "big-1", "to everyone"),
                     CHAT__CODE__OK);
    seen_evt ev[8];
    int n = wait_events(CHAT__EVENT__BODY_MESSAGE, conv, 3, ev, 8);
    assert_int_equal(n, 3);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(ev[i].seq, 1);
        assert_true(ev[i].n_to <= 1000);
        total += ev[i].n_to;
    }
    assert_int_equal(total, MEMBERS);
    /* Typing goes the same way (all but the typist). */
    assert_int_equal(typing_code(&free_i, users[7], conv, true), CHAT__CODE__OK);
    n = wait_events(CHAT__EVENT__BODY_TYPING, conv, 3, ev, 8);
    assert_int_equal(n, 3);
    total = 0;
    for (int i = 0; i < n; i++)
        total += ev[i].n_to;
    assert_int_equal(total, MEMBERS - 1);
}

/* A user is in at most MAX_ROOMS rooms; a refused join makes no room. */
static void test_room_cap(void **state)
{
    char a[37], rooms[MAX_ROOMS + 1][40];
    uid(a);
    for (int i = 0; i <= MAX_ROOMS; i++)
        snprintf(rooms[i], sizeof rooms[i], "cap%d-%.8s", i, a);
    for (int i = 0; i < MAX_ROOMS; i++) {
        Chat__MessageReply *r = do_room(&free_i, true, a, rooms[i]);
        assert_int_equal(r->code, CHAT__CODE__OK);
        done(r);
    }
    Chat__MessageReply *r = do_room(&free_i, true, a, rooms[MAX_ROOMS]);
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    assert_string_equal(r->detail, "in too many rooms: leave one first");
    done(r);
    r = do_room(&free_i, false, a, rooms[MAX_ROOMS]); /* it was never made */
    assert_int_equal(r->code, CHAT__CODE__NOT_FOUND);
    done(r);
    r = do_room(&free_i, true, a, rooms[0]); /* joining one again is fine */
    assert_int_equal(r->code, CHAT__CODE__OK);
    done(r);
    r = do_room(&free_i, false, a, rooms[1]);
    assert_int_equal(r->code, CHAT__CODE__OK);
    done(r);
    r = do_room(&free_i, true, a, rooms[MAX_ROOMS]);
    assert_int_equal(r->code, CHAT__CODE__OK);
    done(r);
}

static void test_history(void **state)
{
    char a[37], b[37], stranger[37], conv[37], nowhere[37];
    uid(a), uid(b), uid(stranger), uid(nowhere);
    new_chat(&free_i, a, b, conv);
    Chat__MessageReply *r = do_history(&free_i, a, conv, 0, 0);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_int_equal(r->n_messages, 0);
    assert_int_equal(r->next_before, 0);
    done(r);
    for (int i = 1; i <= 5; i++) {
        char cmid[16], text[16];
        snprintf(cmid, sizeof cmid, "h%d", i);
        snprintf(text, sizeof text, "text %d", i);
        assert_int_equal(send_code(&free_i, conv, i % 2 ? a : b, cmid, text), CHAT__CODE__OK);
    }
    r = do_history(&free_i, b, conv, 0, 0);
    assert_int_equal(r->n_messages, 5);
    for (size_t i = 0; i < 5; i++) {
        char text[16];
        snprintf(text, sizeof text, "text %zu", i + 1);
        assert_int_equal(r->messages[i]->seq, i + 1);
        assert_string_equal(r->messages[i]->text, text);
        assert_string_equal(r->messages[i]->sender, (i + 1) % 2 ? a : b);
        assert_true(r->messages[i]->msg_id[0] != '\0');
        assert_true(r->messages[i]->ts > 0);
    }
    assert_int_equal(r->next_before, 0);
    done(r);
    /* Pages of 2 from the newest: [4,5] -> [2,3] -> [1]. */
    uint64_t before = 0;
    const uint64_t firsts[] = {4, 2, 1}, nexts[] = {4, 2, 0};
    for (int p = 0; p < 3; p++) {
        r = do_history(&free_i, a, conv, before, 2);
        assert_int_equal(r->code, CHAT__CODE__OK);
        assert_int_equal(r->n_messages, p < 2 ? 2 : 1);
        assert_int_equal(r->messages[0]->seq, firsts[p]);
        assert_int_equal(r->next_before, nexts[p]);
        before = r->next_before;
        done(r);
    }
    r = do_history(&free_i, a, conv, 1, 10); /* nothing below seq 1 */
    assert_int_equal(r->n_messages, 0);
    assert_int_equal(r->next_before, 0);
    done(r);
    r = do_history(&free_i, a, conv, 4, 3); /* exactly the rest */
    assert_int_equal(r->n_messages, 3);
    assert_int_equal(r->next_before, 0);
    done(r);
    r = do_history(&free_i, a, conv, UINT64_MAX, 100);
    assert_int_equal(r->n_messages, 5);
    done(r);
    /* Errors. */
    r = do_history(&free_i, stranger, conv, 0, 0);
    assert_int_equal(r->code, CHAT__CODE__NOT_MEMBER);
    done(r);
    r = do_history(&free_i, a, nowhere, 0, 0);
    assert_int_equal(r->code, CHAT__CODE__NOT_FOUND);
    done(r);
    r = do_history(&free_i, a, conv, 0, 101);
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
    /* An ended random chat stays readable for its members. */
    assert_int_equal(close_code(&free_i, conv, a), CHAT__CODE__OK);
    r = do_history(&free_i, b, conv, 0, 1);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_int_equal(r->n_messages, 1);
    assert_int_equal(r->messages[0]->seq, 5);
    assert_int_equal(r->next_before, 5);
    done(r);
}

static void test_typing(void **state)
{
    char a[37], b[37], stranger[37], conv[37], nowhere[37];
    uid(a), uid(b), uid(stranger), uid(nowhere);
    new_chat(&free_i, a, b, conv);
    char au[37];
    memcpy(au, a, sizeof au);
    upper(au);
    assert_int_equal(typing_code(&free_i, au, conv, true), CHAT__CODE__OK);
    assert_int_equal(typing_code(&free_i, a, conv, false), CHAT__CODE__OK);
    seen_evt ev[8];
    int n = wait_events(CHAT__EVENT__BODY_TYPING, conv, 2, ev, 8);
    assert_int_equal(n, 2);
    assert_string_equal(ev[0].to, b);
    assert_string_equal(ev[0].user, a); /* lower-cased */
    assert_true(ev[0].read);
    assert_false(ev[1].read);
    assert_int_equal(typing_code(&free_i, stranger, conv, true), CHAT__CODE__NOT_MEMBER);
    assert_int_equal(typing_code(&free_i, a, nowhere, true), CHAT__CODE__NOT_FOUND);
    assert_int_equal(typing_code(&free_i, a, "x", true), CHAT__CODE__NOT_FOUND);
    assert_int_equal(close_code(&free_i, conv, a), CHAT__CODE__OK);
    assert_int_equal(typing_code(&free_i, b, conv, true), CHAT__CODE__CONVERSATION_CLOSED);
    sleep_ms(100);
    assert_int_equal(events_for(CHAT__EVENT__BODY_TYPING, conv, ev, 8), 2);
}

static bool has_id(const Chat__MessageReply *r, const char *id)
{
    for (size_t i = 0; i < r->n_contact_ids; i++)
        if (strcmp(r->contact_ids[i], id) == 0)
            return true;
    return false;
}

static void test_contacts(void **state)
{
    char u[37], dm_peer[37], rnd[37], ended[37], conv[37], conv2[37];
    uid(u), uid(dm_peer), uid(rnd), uid(ended);
    assert_int_equal(register_code(&free_i, dm_peer), CHAT__CODE__OK);
    Chat__MessageReply *r = do_open_dm(&free_i, u, dm_peer);
    assert_int_equal(r->code, CHAT__CODE__OK);
    done(r);
    r = do_open_dm(&free_i, dm_peer, u); /* the same DM: one contact */
    done(r);
    new_chat(&free_i, u, rnd, conv);
    new_chat(&free_i, u, ended, conv2);
    assert_int_equal(close_code(&free_i, conv2, u), CHAT__CODE__OK);
    r = do_contacts(&free_i, u);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_int_equal(r->n_contact_ids, 2);
    assert_true(has_id(r, dm_peer));
    assert_true(has_id(r, rnd));
    done(r);
    r = do_contacts(&free_i, dm_peer);
    assert_int_equal(r->n_contact_ids, 1);
    assert_true(has_id(r, u));
    done(r);
    char nobody[37];
    uid(nobody);
    r = do_contacts(&free_i, nobody);
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_int_equal(r->n_contact_ids, 0);
    done(r);
    r = do_contacts(&free_i, "x");
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);

    /* As of a time: a DM opened later is left out. */
    char late[37];
    uid(late);
    assert_int_equal(register_code(&free_i, late), CHAT__CODE__OK);
    int64_t t0 = chat_now_ms() - 1;
    sleep_ms(5);
    r = do_open_dm(&free_i, late, u);
    assert_int_equal(r->code, CHAT__CODE__OK);
    done(r);
    r = do_contacts_before(&free_i, u, t0);
    assert_int_equal(r->n_contact_ids, 2);
    assert_false(has_id(r, late));
    done(r);
    r = do_contacts_before(&free_i, u, chat_now_ms() + 1000);
    assert_int_equal(r->n_contact_ids, 3);
    assert_true(has_id(r, late));
    done(r);
    r = do_contacts(&free_i, u);
    assert_int_equal(r->n_contact_ids, 3);
    done(r);
}

static void test_rate_limit(void **state)
{
    char a[37], b[37], conv[37], nowhere[37];
    uid(a), uid(b), uid(nowhere);
    new_chat(&rl_i, a, b, conv);

    assert_int_equal(send_code(&rl_i, conv, a, "m1", "x"), CHAT__CODE__OK);
    /* Duplicates and refused sends give their token back. */
    for (int i = 0; i < 3; i++) {
        Chat__MessageReply *r = do_send(&rl_i, conv, a, "m1", "x");
        assert_int_equal(r->code, CHAT__CODE__OK);
        assert_true(r->duplicate);
        done(r);
    }
    assert_int_equal(send_code(&rl_i, nowhere, a, "n1", "x"), CHAT__CODE__NOT_FOUND);
    for (int i = 2; i <= RATE; i++) {
        char cmid[8];
        snprintf(cmid, sizeof cmid, "m%d", i);
        assert_int_equal(send_code(&rl_i, conv, a, cmid, "x"), CHAT__CODE__OK);
    }
    /* The bucket is empty now. */
    Chat__MessageReply *r = do_send(&rl_i, conv, a, "over", "x");
    assert_int_equal(r->code, CHAT__CODE__RATE_LIMITED);
    assert_true(r->retry_after_ms > 0);
    assert_true(r->retry_after_ms <= 60000 / RATE);
    assert_null(r->message);
    done(r);
    /* A retry of a stored message still gets its original ack. */
    r = do_send(&rl_i, conv, a, "m3", "x");
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_true(r->duplicate);
    assert_int_equal(r->message->seq, 3);
    done(r);
    assert_int_equal(send_code(&rl_i, conv, a, "over", "x"), CHAT__CODE__RATE_LIMITED);
    /* Another user has a bucket of their own. */
    assert_int_equal(send_code(&rl_i, conv, b, "b1", "x"), CHAT__CODE__OK);
    /* Nothing of the refused sends was stored. */
    r = do_replay(&rl_i, b, "", 0, 0);
    assert_int_equal(r->n_messages, RATE);
    done(r);
    /* Idle buckets expire. */
    long long ttl = redis_pttl(a);
    assert_true(ttl > 0 && ttl <= 61000);
}

/* The per-user limit of other requests: one bucket per user for typing,
 * history, receipts and rooms, shared by replicas (it is in Redis). */
static void test_ops_limit(void **state)
{
    char a[37], b[37], conv[37];
    uid(a), uid(b);
    new_chat(&rl_i, a, b, conv);
    for (int i = 0; i < OPS_BURST - 1; i++)
        assert_int_equal(typing_code(&rl_i, a, conv, true), CHAT__CODE__OK);
    Chat__MessageReply *r = do_history(&rl_i, a, conv, 0, 0);
    assert_int_equal(r->code, CHAT__CODE__OK); /* the last of the burst */
    done(r);
    r = do_history(&rl_i, a, conv, 0, 0);
    assert_int_equal(r->code, CHAT__CODE__RATE_LIMITED);
    assert_true(r->retry_after_ms > 0 && r->retry_after_ms <= 1000); /* 60 a minute */
    done(r);
    assert_int_equal(typing_code(&rl_i, a, conv, false), CHAT__CODE__RATE_LIMITED);
    /* Another user, and the same user's sends, have their own buckets. */
    assert_int_equal(typing_code(&rl_i, b, conv, true), CHAT__CODE__OK);
    assert_int_equal(send_code(&rl_i, conv, a, "ops-1", "still sends"), CHAT__CODE__OK);
    /* A second replica on the same Redis sees the same bucket. */
    inst other;
    memset(&other, 0, sizeof other);
    cfg_defaults(&other, "ops2", RATE, pg_dsn, redis_port);
    assert_int_equal(inst_start(&other), 0);
    assert_int_equal(typing_code(&other, a, conv, true), CHAT__CODE__RATE_LIMITED);
    inst_stop(&other);
}

static void test_redis_down(void **state)
{
    /* Nothing listens on port 1: Redis is unreachable. */
    inst down;
    memset(&down, 0, sizeof down);
    cfg_defaults(&down, "rdown", RATE, pg_dsn, 1);
    assert_int_equal(inst_start(&down), 0);
    char a[37], b[37], conv[37];
    uid(a), uid(b);
    new_chat(&down, a, b, conv);
    int64_t t0 = chat_mono_ms();
    assert_int_equal(send_code(&down, conv, a, "k1", "x"), CHAT__CODE__UNAVAILABLE);
    assert_true(chat_mono_ms() - t0 < 2000);
    /* Other requests are not refused for want of their counter. */
    for (int i = 0; i < OPS_BURST + 2; i++)
        assert_int_equal(typing_code(&down, a, conv, true), CHAT__CODE__OK);
    inst_stop(&down);
    /* Nothing was stored: the same id is new to a working instance. */
    Chat__MessageReply *r = do_send(&free_i, conv, a, "k1", "x");
    assert_int_equal(r->code, CHAT__CODE__OK);
    assert_false(r->duplicate);
    assert_int_equal(r->message->seq, 1);
    done(r);
}

static void test_pg_down(void **state)
{
    inst down;
    memset(&down, 0, sizeof down);
    cfg_defaults(&down, "pdown", 0, "host=127.0.0.1 port=1 dbname=chat user=postgres",
                 redis_port);
    assert_int_equal(inst_start(&down), 0);
    char a[37], b[37], conv[37];
    uid(a), uid(b), uid(conv);
    int64_t t0 = chat_mono_ms();
    assert_int_equal(send_code(&down, conv, a, "k1", "x"), CHAT__CODE__UNAVAILABLE);
    Chat__MessageReply *r = do_create(&down, CHAT__CONVERSATION_KIND__RANDOM, 2, a, b);
    assert_int_equal(r->code, CHAT__CODE__UNAVAILABLE);
    done(r);
    r = do_replay(&down, a, "", 0, 0);
    assert_int_equal(r->code, CHAT__CODE__UNAVAILABLE);
    done(r);
    assert_true(chat_mono_ms() - t0 < 3000);
    inst_stop(&down);
}

/* Raw bytes as the one item of a batch (proto/envelope.proto), through a
 * plain REQ socket: the service must answer, not die. */
static Chat__MessageReply *raw_call(const uint8_t *data, size_t len)
{
    nng_socket s;
    assert_int_equal(nng_req0_open(&s), 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000);
    assert_int_equal(nng_dial(s, free_i.listen, NULL, 0), 0);
    Chat__Batch b = CHAT__BATCH__INIT;
    ProtobufCBinaryData item = {len, (uint8_t *)data};
    b.n_items = 1;
    b.items = &item;
    uint8_t packed[256];
    assert_true(protobuf_c_message_get_packed_size(&b.base) <= sizeof packed);
    size_t plen = protobuf_c_message_pack(&b.base, packed);
    assert_int_equal(nng_send(s, packed, plen, 0), 0);
    char *buf = NULL;
    size_t n = 0;
    assert_int_equal(nng_recv(s, &buf, &n, NNG_FLAG_ALLOC), 0);
    Chat__Batch *rb = chat__batch__unpack(NULL, n, (uint8_t *)buf);
    nng_free(buf, n);
    nng_close(s);
    assert_non_null(rb);
    assert_int_equal(rb->n_items, 1);
    Chat__MessageReply *r =
        chat__message_reply__unpack(NULL, rb->items[0].len, rb->items[0].data);
    chat__batch__free_unpacked(rb, NULL);
    assert_non_null(r);
    return r;
}

static void test_garbage(void **state)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01, 0x02};
    Chat__MessageReply *r = raw_call(junk, sizeof junk);
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
    r = raw_call(junk, 0); /* empty: a request with no body */
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
    /* A send whose sub-message is cut short. */
    static const uint8_t cut[] = {0x22, 0x10, 0x0a, 0x03, 'a', 'b'};
    r = raw_call(cut, sizeof cut);
    assert_int_equal(r->code, CHAT__CODE__BAD_REQUEST);
    done(r);
}

static int group_setup(void **state)
{
    chat_log_init("message-test");
    cfg_defaults(&free_i, "free", 0, pg_dsn, redis_port);
    cfg_defaults(&rl_i, "rl", RATE, pg_dsn, redis_port);
    if (inst_start(&free_i) != 0 || inst_start(&rl_i) != 0)
        return -1;
    char urls[300];
    snprintf(urls, sizeof urls, "%s,%s", free_i.pub, rl_i.pub);
    if (chat_sub_open(&sub, urls, on_event, NULL, NULL) != 0)
        return -1;
    for (int i = 0; i < 300 && chat_sub_peers(sub) < 2; i++)
        sleep_ms(10);
    sleep_ms(100); /* subscriptions settle before the first publish */
    return chat_sub_peers(sub) == 2 ? 0 : -1;
}

static int group_teardown(void **state)
{
    chat_sub_close(sub);
    inst_stop(&rl_i);
    inst_stop(&free_i);
    return 0;
}

int main(void)
{
    pg_dsn = getenv("CHAT_TEST_PG_DSN");
    const char *rp = getenv("CHAT_TEST_REDIS_PORT");
    if (pg_dsn == NULL || *pg_dsn == '\0' || rp == NULL || atoi(rp) <= 0) {
        fprintf(stderr, "SKIP: set CHAT_TEST_PG_DSN and CHAT_TEST_REDIS_PORT to run "
                        "svc-message against a real PostgreSQL and Redis\n");
        return 77;
    }
    redis_port = atoi(rp);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_info_close),
        cmocka_unit_test(test_send_codes),
        cmocka_unit_test(test_dedupe),
        cmocka_unit_test(test_batch_mixed),
        cmocka_unit_test(test_batch_rate_limited),
        cmocka_unit_test(test_concurrent_gapless),
        cmocka_unit_test(test_duplicate_race),
        cmocka_unit_test(test_receipts),
        cmocka_unit_test(test_replay_paging),
        cmocka_unit_test(test_open_dm),
        cmocka_unit_test(test_rooms),
        cmocka_unit_test(test_large_room_fanout),
        cmocka_unit_test(test_room_cap),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_typing),
        cmocka_unit_test(test_contacts),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_ops_limit),
        cmocka_unit_test(test_redis_down),
        cmocka_unit_test(test_pg_down),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
