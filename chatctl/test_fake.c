/* The real chatctl binary (argv[1]) against fake processes: chat_admin
 * servers on free loopback ports answering canned replies, two gateways,
 * one of each service, and one address where nothing listens. Checks exit
 * statuses, stdout (--json parsed) and stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>

#include "chat/admin.h"
#include "chat/log.h"
#include "chat/util.h"

#define TOKEN "fake-admin-token"
#define KNOWN_USER "0f8fad5b-d9cb-469f-a165-70867728950e"
#define OTHER_USER "1f8fad5b-d9cb-469f-a165-70867728950e"
#define UNKNOWN_USER "2f8fad5b-d9cb-469f-a165-70867728950e"
#define KNOWN_CONV "3f8fad5b-d9cb-469f-a165-70867728950e"
#define RUN_MS 30000 /* the bound of one chatctl run */

typedef struct fake {
    char kind[16], id[16], url[64];
    chat_admin *admin;
    pthread_mutex_t mu;
    uint32_t affected; /* kick, ban, announce answer this */
    /* recorded (under mu) */
    int64_t ban_until;
    int bans, kicks;
    bool ann_filtered;
    int n_only;
    char only[4][40];
    /* retention (message) */
    bool running;
    int polls_left;
    uint64_t runs, deleted;
    /* drain (gateway) */
    bool draining;
    uint32_t left;
    uint64_t closed;
} fake;

static fake gw1, gw2, msg, match, pres;
static char dead_url[64];
static const char *chatctl_bin;

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &len) != 0)
        abort();
    close(s);
    return ntohs(a.sin_port);
}

/* ---- the fake processes' answers ---- */

static void gw_answer(fake *f, const Chat__AdminRequest *req, chat_admin_out *o)
{
    Chat__AdminReply *r = &o->reply;
    switch (req->body_case) {
    case CHAT__ADMIN_REQUEST__BODY_USERS: {
        Chat__AdminGatewayUsers *g = chat_admin_alloc(o, sizeof *g);
        chat__admin_gateway_users__init(g);
        g->gateway_id = f->id;
        g->connections = f == &gw1 ? 4 : 3;
        g->users = 2;
        r->gateway_users = g;
        break;
    }
    case CHAT__ADMIN_REQUEST__BODY_USER: {
        Chat__AdminUserInfo *u = chat_admin_alloc(o, sizeof *u);
        Chat__AdminConn *cn = chat_admin_alloc(o, sizeof *cn);
        Chat__AdminConn **v = chat_admin_alloc(o, sizeof *v);
        chat__admin_user_info__init(u);
        chat__admin_conn__init(cn);
        cn->gateway_id = f->id;
        cn->conn_id = f == &gw1 ? 11 : 22;
        cn->opened_at = 1764654000000LL;
        cn->remote = "127.0.0.1:5555";
        v[0] = cn;
        u->user_id = req->user->user_id;
        u->n_conns = 1;
        u->conns = v;
        r->user = u;
        break;
    }
    case CHAT__ADMIN_REQUEST__BODY_KICK:
        f->kicks++;
        r->affected = f->affected;
        break;
    case CHAT__ADMIN_REQUEST__BODY_BAN:
        f->bans++;
        f->ban_until = req->ban->until_ms;
        r->affected = f->affected;
        break;
    case CHAT__ADMIN_REQUEST__BODY_UNBAN: break;
    case CHAT__ADMIN_REQUEST__BODY_ANNOUNCE:
        f->ann_filtered = req->announce->filtered;
        f->n_only = (int)req->announce->n_only_users;
        for (int i = 0; i < f->n_only && i < 4; i++)
            snprintf(f->only[i], sizeof f->only[i], "%s", req->announce->only_users[i]);
        r->affected = f->affected;
        break;
    case CHAT__ADMIN_REQUEST__BODY_DRAIN: {
        Chat__AdminDrainInfo *d = chat_admin_alloc(o, sizeof *d);
        chat__admin_drain_info__init(d);
        if (req->drain->start && !f->draining) {
            f->draining = true;
            f->left = 3;
        } else if (!req->drain->start && f->left > 0) {
            f->left--;
            f->closed++;
        }
        d->draining = f->draining;
        d->connections = f->left;
        d->closed = f->closed;
        d->over_ms = req->drain->over_ms;
        r->drain = d;
        break;
    }
    default: chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED, "not a gateway's");
    }
}

static void msg_conversation(chat_admin_out *o, bool room, bool members)
{
    Chat__AdminConversationInfo *ci = chat_admin_alloc(o, sizeof *ci);
    char **m = chat_admin_alloc(o, 2 * sizeof *m);
    chat__admin_conversation_info__init(ci);
    ci->conversation_id = KNOWN_CONV;
    ci->kind = room ? "room" : "dm";
    ci->room = room ? "lobby" : "";
    m[0] = KNOWN_USER;
    m[1] = OTHER_USER;
    ci->n_members = members ? 2 : 0;
    ci->members = m;
    ci->member_count = 2;
    ci->last_seq = 7;
    ci->created_at = 1764654000000LL;
    o->reply.conversation = ci;
}

static void msg_retention(fake *f, const Chat__AdminRetentionReq *rq, chat_admin_out *o)
{
    Chat__AdminRetentionInfo *ri = chat_admin_alloc(o, sizeof *ri);
    chat__admin_retention_info__init(ri);
    if (rq->op == CHAT__RETENTION_OP__RETENTION_RUN) {
        f->running = true;
        f->runs++;
        f->deleted = 0;
        f->polls_left = 3;
    } else if (rq->op == CHAT__RETENTION_OP__RETENTION_GET && f->running) {
        f->deleted += 14;
        f->running = --f->polls_left > 0;
    }
    ri->days = rq->op == CHAT__RETENTION_OP__RETENTION_SET ? rq->days : 30;
    ri->running = f->running;
    ri->deleted = f->deleted;
    ri->runs = f->runs;
    o->reply.retention = ri;
}

static void msg_answer(fake *f, const Chat__AdminRequest *req, chat_admin_out *o)
{
    switch (req->body_case) {
    case CHAT__ADMIN_REQUEST__BODY_USER: {
        if (strcmp(req->user->user_id, KNOWN_USER) != 0) {
            chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_NOT_FOUND, "unknown user");
            return;
        }
        Chat__AdminUserInfo *u = chat_admin_alloc(o, sizeof *u);
        Chat__AdminConvRef *cr = chat_admin_alloc(o, sizeof *cr);
        Chat__AdminConvRef **v = chat_admin_alloc(o, sizeof *v);
        chat__admin_user_info__init(u);
        chat__admin_conv_ref__init(cr);
        cr->conversation_id = KNOWN_CONV;
        cr->kind = "room";
        cr->room = "lobby";
        v[0] = cr;
        u->n_conversations = 1;
        u->conversations = v;
        o->reply.user = u;
        return;
    }
    case CHAT__ADMIN_REQUEST__BODY_ROOM:
        if (strcmp(req->room->name, "lobby") != 0)
            chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_NOT_FOUND, "unknown room");
        else
            msg_conversation(o, true, req->room->with_members);
        return;
    case CHAT__ADMIN_REQUEST__BODY_CONVERSATION:
        if (strcmp(req->conversation->conversation_id, KNOWN_CONV) != 0)
            chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_NOT_FOUND, "unknown conversation");
        else
            msg_conversation(o, false, true);
        return;
    case CHAT__ADMIN_REQUEST__BODY_RETENTION: msg_retention(f, req->retention, o); return;
    default: chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED, "not message's");
    }
}

static void pres_answer(fake *f, const Chat__AdminRequest *req, chat_admin_out *o)
{
    switch (req->body_case) {
    case CHAT__ADMIN_REQUEST__BODY_USERS: o->reply.online_users = 3; break;
    case CHAT__ADMIN_REQUEST__BODY_USER: {
        Chat__AdminUserInfo *u = chat_admin_alloc(o, sizeof *u);
        chat__admin_user_info__init(u);
        u->online = true;
        u->last_seen = 1764654000000LL;
        u->banned_until = -1;
        o->reply.user = u;
        break;
    }
    case CHAT__ADMIN_REQUEST__BODY_BAN: {
        Chat__AdminBan *b = chat_admin_alloc(o, sizeof *b);
        chat__admin_ban__init(b);
        f->bans++;
        f->ban_until = req->ban->until_ms;
        b->user_id = req->ban->user_id;
        b->until_ms = req->ban->until_ms;
        o->reply.ban = b;
        break;
    }
    case CHAT__ADMIN_REQUEST__BODY_UNBAN: break;
    default: chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED, "not presence's");
    }
}

static void match_answer(fake *f, const Chat__AdminRequest *req, chat_admin_out *o)
{
    if (req->body_case != CHAT__ADMIN_REQUEST__BODY_QUEUE) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED, "not match's");
        return;
    }
    Chat__AdminQueueInfo *q = chat_admin_alloc(o, sizeof *q);
    chat__admin_queue_info__init(q);
    q->waiting = 2;
    q->longest_wait_ms = 1500;
    o->reply.queue = q;
}

static void fake_handler(const Chat__AdminRequest *req, chat_admin_out *o, void *arg)
{
    fake *f = arg;
    pthread_mutex_lock(&f->mu);
    if (strcmp(f->kind, "gateway") == 0)
        gw_answer(f, req, o);
    else if (strcmp(f->kind, "message") == 0)
        msg_answer(f, req, o);
    else if (strcmp(f->kind, "presence") == 0)
        pres_answer(f, req, o);
    else
        match_answer(f, req, o);
    pthread_mutex_unlock(&f->mu);
}

static uint64_t fake_load(void *arg)
{
    return 5;
}

static void fake_open(fake *f, const char *kind, const char *id)
{
    snprintf(f->kind, sizeof f->kind, "%s", kind);
    snprintf(f->id, sizeof f->id, "%s", id);
    pthread_mutex_init(&f->mu, NULL);
    f->affected = 1;
    for (int tries = 0; tries < 20; tries++) {
        snprintf(f->url, sizeof f->url, "tcp://127.0.0.1:%d", free_port());
        chat_admin_cfg cfg = {.kind = f->kind,
                              .id = f->id,
                              .listen = f->url,
                              .token = TOKEN,
                              .metrics_url = "http://127.0.0.1:1/metrics",
                              .load_name = "connections",
                              .load = fake_load,
                              .handler = fake_handler,
                              .arg = f};
        if (chat_admin_open(&f->admin, &cfg) == 0)
            return;
    }
    abort();
}

/* ---- running chatctl ---- */

typedef struct run {
    int rc;
    char out[65536], err[16384];
    cJSON *json; /* stdout parsed when it is JSON */
} run;

/* Reads both pipes until they close (true) or the deadline passes. */
static bool run_read(int fo, int fe, run *r, int64_t deadline)
{
    size_t no = 0, ne = 0;
    struct pollfd p[2] = {{.fd = fo, .events = POLLIN}, {.fd = fe, .events = POLLIN}};
    while ((p[0].fd >= 0 || p[1].fd >= 0) && chat_mono_ms() < deadline) {
        if (poll(p, 2, (int)(deadline - chat_mono_ms())) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char *buf = i == 0 ? r->out + no : r->err + ne;
            size_t room = i == 0 ? sizeof r->out - 1 - no : sizeof r->err - 1 - ne;
            ssize_t n = read(p[i].fd, buf, room > 0 ? room : 1);
            if (n <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
            } else if (i == 0) {
                no += room > 0 ? (size_t)n : 0;
            } else {
                ne += room > 0 ? (size_t)n : 0;
            }
        }
    }
    r->out[no] = r->err[ne] = '\0';
    bool closed = p[0].fd < 0 && p[1].fd < 0;
    for (int i = 0; i < 2; i++)
        if (p[i].fd >= 0)
            close(p[i].fd);
    return closed;
}

/* Runs chatctl with the fakes' addresses, token tok, then args. */
static void run_ctl(run *r, const char *tok, const char *gateways, const char *const *args)
{
    char token_env[128];
    snprintf(token_env, sizeof token_env, "CHAT_ADMIN_TOKEN=%s", tok);
    char *envp[] = {"CHAT_ENV_FILE=/dev/null", token_env, "PATH=/usr/bin:/bin", NULL};
    const char *argv[40] = {chatctl_bin, "--gateways", gateways,  "--message",
                            msg.url,     "--match",    match.url, "--presence",
                            pres.url,    "--timeout",  "1000"};
    int n = 11;
    for (int i = 0; args[i] != NULL && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int po[2], pe[2];
    assert_int_equal(pipe(po), 0);
    assert_int_equal(pipe(pe), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        execve(chatctl_bin, (char **)argv, envp);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    memset(r, 0, sizeof *r);
    int status;
    if (!run_read(po[0], pe[0], r, chat_mono_ms() + RUN_MS)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("chatctl did not end within %d ms", RUN_MS);
    }
    /* Its output closed: it is exiting. */
    waitpid(pid, &status, 0);
    r->rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    r->json = cJSON_Parse(r->out);
}

static char gateways[200];

static void ctl_ok(run *r, int want, const char *const *args)
{
    run_ctl(r, TOKEN, gateways, args);
    if (r->rc != want)
        fail_msg("exit %d, wanted %d\nstdout:\n%s\nstderr:\n%s", r->rc, want, r->out, r->err);
}

static double jnum(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(it))
        fail_msg("no number %s", name);
    return it->valuedouble;
}

/* ---- the tests ---- */

static void test_status_unreachable(void **st)
{
    run r;
    char gws[300];
    snprintf(gws, sizeof gws, "%s,%s", gateways, dead_url);
    run_ctl(&r, TOKEN, gws, (const char *const[]){"--json", "status", NULL});
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, dead_url));
    const cJSON *procs = cJSON_GetObjectItem(r.json, "processes");
    assert_int_equal(cJSON_GetArraySize(procs), 6);
    int unreachable = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, procs)
    {
        bool ok = cJSON_IsTrue(cJSON_GetObjectItem(p, "reachable"));
        if (!ok) {
            unreachable++;
            assert_string_equal(cJSON_GetObjectItem(p, "address")->valuestring, dead_url);
            assert_string_equal(cJSON_GetObjectItem(p, "kind")->valuestring, "gateway");
        } else {
            assert_true(cJSON_IsString(cJSON_GetObjectItem(p, "id")));
            assert_int_equal((int)jnum(p, "load"), 5);
        }
    }
    assert_int_equal(unreachable, 1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "errors")), 1);
    cJSON_Delete(r.json);
    /* The table names it too. */
    run_ctl(&r, TOKEN, gws, (const char *const[]){"status", NULL});
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.out, "KIND"));
    assert_non_null(strstr(r.out, "unreachable"));
    assert_non_null(strstr(r.out, "gw2"));
    cJSON_Delete(r.json);
}

static void test_wrong_token(void **st)
{
    run r;
    run_ctl(&r, "not-the-token", gateways, (const char *const[]){"status", NULL});
    assert_int_equal(r.rc, 3);
    assert_non_null(strstr(r.err, "unauthorized"));
    run_ctl(&r, "", gateways, (const char *const[]){"--json", "user", KNOWN_USER, NULL});
    assert_int_equal(r.rc, 3);
    assert_non_null(strstr(r.err, "unauthorized"));
    assert_non_null(r.json);
    cJSON_Delete(r.json);
}

static void test_unknown_user(void **st)
{
    run r;
    ctl_ok(&r, 4, (const char *const[]){"user", UNKNOWN_USER, NULL});
    assert_non_null(strstr(r.err, "unknown user " UNKNOWN_USER));
    ctl_ok(&r, 4, (const char *const[]){"kick", UNKNOWN_USER, NULL});
    ctl_ok(&r, 4, (const char *const[]){"room", "nowhere", NULL});
    ctl_ok(&r, 4, (const char *const[]){"drain", "gw9", NULL});
    assert_non_null(strstr(r.err, "unknown gateway gw9"));
}

static void test_bad_usage(void **st)
{
    static const char *const cases[][5] = {
        {"status", "--bogus", NULL},
        {"frobnicate", NULL},
        {"user", "not-a-uuid", NULL},
        {"ban", KNOWN_USER, "--for", "10x", NULL},
        {"ban", KNOWN_USER, "--for", "0s", NULL},
        {"announce", "", NULL},
        {"retention", "set", "40000", NULL},
        {"drain", "gw1", "--over", "3601", NULL},
        {"queue", "extra", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run r;
        run_ctl(&r, TOKEN, gateways, cases[i]);
        if (r.rc != 2 || strstr(r.err, "see chatctl --help") == NULL)
            fail_msg("case %zu (%s %s): exit %d\n%s", i, cases[i][0], cases[i][1], r.rc, r.err);
        cJSON_Delete(r.json);
    }
}

static void test_users_and_user(void **st)
{
    run r;
    ctl_ok(&r, 0, (const char *const[]){"--json", "users", NULL});
    assert_int_equal((int)jnum(r.json, "online_users"), 3);
    assert_int_equal((int)jnum(r.json, "connections"), 7);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "gateways")), 2);
    cJSON_Delete(r.json);
    ctl_ok(&r, 0, (const char *const[]){"user", KNOWN_USER, "--json", NULL});
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "online")));
    assert_int_equal((int)jnum(r.json, "banned_until"), -1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "connections")), 2);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "conversations")), 1);
    cJSON_Delete(r.json);
    ctl_ok(&r, 0, (const char *const[]){"user", KNOWN_USER, NULL});
    assert_non_null(strstr(r.out, "2025-12-02T05:40:00Z"));
    assert_non_null(strstr(r.out, "lobby"));
}

/* What a fake answers to kick, ban and announce (its admin thread reads it). */
static void set_affected(fake *f, uint32_t n)
{
    pthread_mutex_lock(&f->mu);
    f->affected = n;
    pthread_mutex_unlock(&f->mu);
}

static void test_kick_sum(void **st)
{
    set_affected(&gw1, 2);
    set_affected(&gw2, 1);
    run r;
    ctl_ok(&r, 0,
           (const char *const[]){"--json", "kick", KNOWN_USER, "--reason", "spam", NULL});
    assert_int_equal((int)jnum(r.json, "closed"), 3);
    cJSON_Delete(r.json);
    ctl_ok(&r, 0, (const char *const[]){"kick", KNOWN_USER, NULL});
    assert_non_null(strstr(r.out, "3 connections closed"));
}

static void test_ban_for(void **st)
{
    set_affected(&gw1, 2);
    set_affected(&gw2, 1);
    run r;
    int64_t before = chat_now_ms();
    ctl_ok(&r, 0, (const char *const[]){"--json", "ban", KNOWN_USER, "--for", "10m", NULL});
    int64_t after = chat_now_ms();
    int64_t until = (int64_t)jnum(r.json, "until_ms");
    assert_true(until >= before + 600000 && until <= after + 600000);
    assert_int_equal((int)jnum(r.json, "closed"), 3);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(r.json, "until")));
    pthread_mutex_lock(&pres.mu);
    assert_int_equal(pres.ban_until, until);
    pthread_mutex_unlock(&pres.mu);
    pthread_mutex_lock(&gw2.mu);
    assert_int_equal(gw2.ban_until, until);
    pthread_mutex_unlock(&gw2.mu);
    cJSON_Delete(r.json);
    ctl_ok(&r, 0, (const char *const[]){"ban", KNOWN_USER, NULL});
    assert_non_null(strstr(r.out, "until unbanned"));
    pthread_mutex_lock(&pres.mu);
    assert_int_equal(pres.ban_until, 0);
    pthread_mutex_unlock(&pres.mu);
    ctl_ok(&r, 0, (const char *const[]){"--json", "unban", KNOWN_USER, NULL});
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "unbanned")));
    cJSON_Delete(r.json);
}

static void test_announce_room(void **st)
{
    set_affected(&gw1, 1);
    set_affected(&gw2, 1);
    run r;
    ctl_ok(&r, 0,
           (const char *const[]){"--json", "announce", "hello room", "--room", "lobby", NULL});
    assert_int_equal((int)jnum(r.json, "reached"), 2);
    assert_string_equal(cJSON_GetObjectItem(r.json, "room")->valuestring, "lobby");
    fake *gws[] = {&gw1, &gw2};
    for (int i = 0; i < 2; i++) {
        pthread_mutex_lock(&gws[i]->mu);
        assert_true(gws[i]->ann_filtered);
        assert_int_equal(gws[i]->n_only, 2);
        assert_string_equal(gws[i]->only[0], KNOWN_USER);
        assert_string_equal(gws[i]->only[1], OTHER_USER);
        pthread_mutex_unlock(&gws[i]->mu);
    }
    cJSON_Delete(r.json);
    ctl_ok(&r, 0, (const char *const[]){"announce", "hello all", NULL});
    assert_non_null(strstr(r.out, "2 connections reached"));
    pthread_mutex_lock(&gw1.mu);
    bool filtered = gw1.ann_filtered;
    pthread_mutex_unlock(&gw1.mu);
    assert_false(filtered);
    ctl_ok(&r, 4, (const char *const[]){"announce", "x", "--room", "nowhere", NULL});
    assert_non_null(strstr(r.err, "unknown room nowhere"));
}

static void test_read_commands(void **st)
{
    run r;
    ctl_ok(&r, 0, (const char *const[]){"--json", "queue", NULL});
    assert_int_equal((int)jnum(r.json, "waiting"), 2);
    assert_int_equal((int)jnum(r.json, "longest_wait_ms"), 1500);
    cJSON_Delete(r.json);
    ctl_ok(&r, 0, (const char *const[]){"--json", "conversation", KNOWN_CONV, NULL});
    assert_int_equal((int)jnum(r.json, "last_seq"), 7);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "members")), 2);
    cJSON_Delete(r.json);
    ctl_ok(&r, 0, (const char *const[]){"--json", "room", "lobby", NULL});
    assert_string_equal(cJSON_GetObjectItem(r.json, "conversation_id")->valuestring,
                        KNOWN_CONV);
    assert_int_equal((int)jnum(r.json, "member_count"), 2);
    cJSON_Delete(r.json);
    ctl_ok(&r, 0, (const char *const[]){"--json", "retention", "set", "7", NULL});
    assert_int_equal((int)jnum(r.json, "days"), 7);
    cJSON_Delete(r.json);
}

static void test_retention_run(void **st)
{
    run r;
    ctl_ok(&r, 0, (const char *const[]){"retention", "run", NULL});
    assert_non_null(strstr(r.out, "deleted 42 messages"));
    assert_non_null(strstr(r.out, "so far"));
    ctl_ok(&r, 0, (const char *const[]){"--json", "retention", "run", NULL});
    assert_int_equal((int)jnum(r.json, "deleted"), 42);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "running")));
    assert_int_equal((int)jnum(r.json, "runs"), 2);
    cJSON_Delete(r.json);
}

static void test_drain(void **st)
{
    run r;
    ctl_ok(&r, 0, (const char *const[]){"drain", "gw2", "--over", "1", NULL});
    assert_non_null(strstr(r.out, "gw2: 3 connections left, 0 closed"));
    assert_non_null(strstr(r.out, "gw2: 0 connections left, 3 closed"));
    pthread_mutex_lock(&gw1.mu);
    bool draining = gw1.draining;
    pthread_mutex_unlock(&gw1.mu);
    assert_false(draining);
    ctl_ok(&r, 0, (const char *const[]){"--json", "drain", "gw2", NULL});
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "done")));
    assert_int_equal((int)jnum(r.json, "connections"), 0);
    cJSON_Delete(r.json);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH_TO_CHATCTL\n", argv[0]);
        return 2;
    }
    chatctl_bin = argv[1];
    setenv("CHAT_LOG_LEVEL", "error", 1);
    chat_log_init("fake");
    fake_open(&gw1, "gateway", "gw1");
    fake_open(&gw2, "gateway", "gw2");
    fake_open(&msg, "message", "message-1");
    fake_open(&match, "match", "match-1");
    fake_open(&pres, "presence", "presence-1");
    snprintf(gateways, sizeof gateways, "%s,%s", gw1.url, gw2.url);
    snprintf(dead_url, sizeof dead_url, "tcp://127.0.0.1:%d", free_port());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_unreachable),
        cmocka_unit_test(test_wrong_token),
        cmocka_unit_test(test_unknown_user),
        cmocka_unit_test(test_bad_usage),
        cmocka_unit_test(test_users_and_user),
        cmocka_unit_test(test_kick_sum),
        cmocka_unit_test(test_ban_for),
        cmocka_unit_test(test_announce_room),
        cmocka_unit_test(test_read_commands),
        cmocka_unit_test(test_retention_run),
        cmocka_unit_test(test_drain),
    };
    int rv = cmocka_run_group_tests(tests, NULL, NULL);
    fake *all[] = {&gw1, &gw2, &msg, &match, &pres};
    for (int i = 0; i < 5; i++) {
        chat_admin_close(all[i]->admin);
        pthread_mutex_destroy(&all[i]->mu);
    }
    return rv;
}
