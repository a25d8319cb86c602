/* The admin plane (see admin.h): token check and `status` on the nng
 * thread, everything else on one admin thread. */
#include "chat/admin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "chat/log.h"
#include "chat/rpc.h"
#include "chat/util.h"
#include "chat/workq.h"

#ifndef CHAT_VERSION
#define CHAT_VERSION "dev"
#endif

#define ADMIN_CONTEXTS 8

struct admin_block {
    struct admin_block *next;
    max_align_t align[];
};

struct chat_admin {
    chat_admin_cfg cfg;
    chat_rpc_server *srv;
    chat_workq *work;
    int64_t started_ms;
};

typedef struct admin_job {
    chat_admin *a;
    chat_rpc_job *job;
    Chat__AdminRequest *req;
} admin_job;

const char *chat_version(void)
{
    return CHAT_VERSION;
}

void *chat_admin_alloc(chat_admin_out *o, size_t n)
{
    struct admin_block *b = calloc(1, sizeof *b + n);
    if (b == NULL)
        return NULL;
    b->next = o->blocks;
    o->blocks = b;
    return b->align;
}

char *chat_admin_strdup(chat_admin_out *o, const char *s)
{
    size_t n = strlen(s ? s : "");
    char *p = chat_admin_alloc(o, n + 1);
    if (p != NULL && n > 0)
        memcpy(p, s, n);
    return p != NULL ? p : "";
}

void chat_admin_fail(chat_admin_out *o, Chat__AdminCode code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->detail, sizeof o->detail, fmt, ap);
    va_end(ap);
    o->reply.code = code;
    o->reply.detail = o->detail;
}

static void admin_out_init(chat_admin_out *o)
{
    Chat__AdminReply init = CHAT__ADMIN_REPLY__INIT;
    o->reply = init;
    o->blocks = NULL;
    o->detail[0] = '\0';
}

static void admin_out_free(chat_admin_out *o)
{
    for (struct admin_block *b = o->blocks, *n; b != NULL; b = n) {
        n = b->next;
        free(b);
    }
    o->blocks = NULL;
}

/* Both sides hashed first: the comparison then takes the same time whatever
 * the token's length and contents. */
bool chat_admin_token_ok(const char *secret, const char *token)
{
    if (secret == NULL || secret[0] == '\0' || token == NULL)
        return false;
    unsigned char a[32], b[32];
    unsigned la = 0, lb = 0;
    if (!EVP_Digest(secret, strlen(secret), a, &la, EVP_sha256(), NULL) ||
        !EVP_Digest(token, strlen(token), b, &lb, EVP_sha256(), NULL) || la != 32 || lb != 32)
        return false;
    return CRYPTO_memcmp(a, b, 32) == 0;
}

static void admin_status(chat_admin *a, chat_admin_out *o)
{
    const chat_admin_cfg *c = &a->cfg;
    Chat__AdminProcStatus *st = chat_admin_alloc(o, sizeof *st);
    if (st == NULL) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    chat__admin_proc_status__init(st);
    st->kind = (char *)c->kind;
    st->id = (char *)c->id;
    st->address = (char *)c->listen;
    st->metrics_url = (char *)c->metrics_url;
    st->version = (char *)chat_version();
    st->uptime_ms = (uint64_t)(chat_mono_ms() - a->started_ms);
    st->ready = c->ready ? c->ready(c->arg) : true;
    st->restarts = c->restarts;
    st->load_name = (char *)c->load_name;
    st->load = c->load ? c->load(c->arg) : 0;
    o->reply.status = st;
}

static void admin_answer(chat_rpc_job *job, chat_admin_out *o)
{
    chat_rpc_job_reply_pb(job, &o->reply.base);
    admin_out_free(o);
}

static const char *admin_req_name(const Chat__AdminRequest *req)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
        &chat__admin_request__descriptor, (unsigned)req->body_case);
    return f != NULL ? f->name : "none";
}

static void admin_work(void *arg, void *state)
{
    admin_job *j = arg;
    chat_admin *a = j->a;
    chat_admin_out o;
    admin_out_init(&o);
    chat_log_req(j->req->req_id);
    chat_info("admin_request", "type=%s", admin_req_name(j->req));
    if (a->cfg.handler != NULL)
        a->cfg.handler(j->req, &o, a->cfg.arg);
    else
        chat_admin_fail(&o, CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED, "not served by %s",
                        a->cfg.kind);
    if (o.reply.code != CHAT__ADMIN_CODE__ADMIN_OK &&
        o.reply.code != CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED)
        chat_info("admin_failed", "type=%s code=%d detail=\"%s\"", admin_req_name(j->req),
                  (int)o.reply.code, o.detail);
    chat_log_req(NULL);
    admin_answer(j->job, &o);
    chat__admin_request__free_unpacked(j->req, NULL);
    free(j);
}

static void admin_on_request(chat_rpc_job *job, const uint8_t *data, size_t len, void *arg)
{
    chat_admin *a = arg;
    chat_admin_out o;
    admin_out_init(&o);
    Chat__AdminRequest *req =
        (Chat__AdminRequest *)chat_pb_unpack(&chat__admin_request__descriptor, len, data);
    if (req == NULL) {
        chat_admin_fail(&o, CHAT__ADMIN_CODE__ADMIN_BAD_REQUEST, "undecodable request");
        admin_answer(job, &o);
        return;
    }
    if (!chat_admin_token_ok(a->cfg.token, req->token)) {
        /* The token itself is never logged. */
        chat_warn("admin_refused", "type=%s req_id=%s reason=%s", admin_req_name(req),
                  req->req_id, req->token[0] ? "wrong_token" : "no_token");
        chat_admin_fail(&o, CHAT__ADMIN_CODE__ADMIN_UNAUTHORIZED, "unauthorized");
        chat__admin_request__free_unpacked(req, NULL);
        admin_answer(job, &o);
        return;
    }
    if (req->body_case == CHAT__ADMIN_REQUEST__BODY_STATUS ||
        req->body_case == CHAT__ADMIN_REQUEST__BODY__NOT_SET) {
        if (req->body_case == CHAT__ADMIN_REQUEST__BODY_STATUS)
            admin_status(a, &o);
        else
            chat_admin_fail(&o, CHAT__ADMIN_CODE__ADMIN_BAD_REQUEST, "empty request");
        chat__admin_request__free_unpacked(req, NULL);
        admin_answer(job, &o);
        return;
    }
    /* Filled before it is queued: the admin thread may run it at once. */
    admin_job *j = malloc(sizeof *j);
    if (j != NULL) {
        j->a = a;
        j->job = job;
        j->req = req;
    }
    if (j == NULL || chat_workq_push(a->work, admin_work, j) != 0) {
        free(j);
        chat_admin_fail(&o, CHAT__ADMIN_CODE__ADMIN_FAILED, "not accepting requests");
        chat__admin_request__free_unpacked(req, NULL);
        admin_answer(job, &o);
        return;
    }
}

int chat_admin_open(chat_admin **out, const chat_admin_cfg *cfg)
{
    chat_admin *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NNG_ENOMEM;
    a->cfg = *cfg;
    a->started_ms = chat_mono_ms();
    int rv;
    if (chat_workq_open(&a->work, 1, NULL, NULL, NULL) != 0) {
        free(a);
        return NNG_ENOMEM;
    }
    if ((rv = chat_rpc_server_open(&a->srv, cfg->listen, ADMIN_CONTEXTS, admin_on_request,
                                   a)) != 0) {
        chat_error("admin_listen_failed", "url=%s err=\"%s\"", cfg->listen, nng_strerror(rv));
        chat_workq_close(a->work);
        free(a);
        return rv;
    }
    if (cfg->token == NULL || cfg->token[0] == '\0')
        chat_warn("admin_no_token",
                  "listen=%s every admin request is refused (set "
                  "CHAT_ADMIN_TOKEN or CHAT_ADMIN_TOKEN_FILE)",
                  cfg->listen);
    chat_info("admin_listening", "listen=%s", cfg->listen);
    *out = a;
    return 0;
}

void chat_admin_close(chat_admin *a)
{
    if (a == NULL)
        return;
    /* Queued requests are answered before the socket goes. */
    chat_workq_close(a->work);
    chat_rpc_server_close(a->srv);
    free(a);
}
