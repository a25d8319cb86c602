/* The one send-and-wait path: resolve a kind's addresses, one rpc client
 * per address, send with token and req_id, wait, decode, judge. */
#include "chatctl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <nng/nng.h>

#include "chat/util.h"

/* Addresses one name may stand for. */
#define CTL_NAME_ADDRS 16

ctl_rc ctl_rc_merge(ctl_rc a, ctl_rc b)
{
    static const int rank[] = {[CTL_OK] = 0,
                               [CTL_FAILED] = 1,
                               [CTL_NOT_FOUND] = 2,
                               [CTL_USAGE] = 3,
                               [CTL_UNAUTHORIZED] = 4};
    return rank[a] >= rank[b] ? a : b;
}

/* 12 random hex digits: enough to find one invocation in the logs. */
static void req_id_new(char out[20])
{
    char u[CHAT_UUID_LEN + 1];
    chat_uuid_new(u);
    int n = snprintf(out, 20, "ctl-");
    for (const char *p = u; *p && n < 16; p++)
        if (*p != '-')
            out[n++] = *p;
    out[n] = '\0';
}

ctl_rc ctl_init(ctl *c, const ctl_opts *o)
{
    memset(c, 0, sizeof *c);
    c->opts = o;
    c->json = o->json;
    c->timeout_ms = o->timeout_ms;
    req_id_new(c->req_id);
    c->doc = cJSON_CreateObject();
    if (c->doc == NULL)
        return CTL_FAILED;
    return CTL_OK;
}

void ctl_fini(ctl *c)
{
    for (int k = 0; k < CTL_KINDS; k++) {
        for (int i = 0; i < c->n_targets[k]; i++)
            if (c->targets[k][i].client != NULL)
                chat_rpc_client_close(c->targets[k][i].client);
        free(c->targets[k]);
        c->targets[k] = NULL;
    }
    cJSON_Delete(c->doc);
    c->doc = NULL;
}

/* The targets being built for one kind. */
typedef struct target_list {
    ctl *c;
    ctl_kind kind;
    ctl_target *v;
    int n, cap;
} target_list;

static ctl_target *target_add(target_list *l, const char *url)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        ctl_target *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (v == NULL)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    ctl_target *t = &l->v[l->n++];
    memset(t, 0, sizeof *t);
    t->kind = l->kind;
    snprintf(t->url, sizeof t->url, "%s", url);
    int rv = chat_rpc_client_open(&t->client, t->url, l->c->timeout_ms);
    if (rv != 0) {
        t->client = NULL;
        snprintf(t->error, sizeof t->error, "bad address: %s", nng_strerror(rv));
    }
    return t;
}

/* Splits "tcp://HOST:PORT" or "tls+tcp://HOST:PORT" into its scheme's
 * length, host and port; false for other forms. */
static bool url_host_port(const char *url, size_t *scheme, char *host, size_t hostn,
                          const char **port)
{
    *scheme = strncmp(url, "tcp://", 6) == 0 ? 6 : strncmp(url, "tls+tcp://", 10) == 0 ? 10 : 0;
    if (*scheme == 0)
        return false;
    const char *h = url + *scheme, *colon = strrchr(h, ':');
    if (colon == NULL || h[0] == '[' || (size_t)(colon - h) >= hostn)
        return false;
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = '\0';
    *port = colon + 1;
    return true;
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* One item of an address list: a name becomes one target per address. */
static int target_item(const char *url, void *arg)
{
    target_list *l = arg;
    char host[256], addrs[CTL_NAME_ADDRS][CHAT_ADDR_TEXT];
    const char *port;
    size_t scheme;
    if (!url_host_port(url, &scheme, host, sizeof host, &port) || is_ip_literal(host))
        return target_add(l, url) ? 0 : -1;
    int n = chat_resolve(host, addrs, CTL_NAME_ADDRS);
    if (n <= 0) {
        ctl_target *t = target_add(l, url);
        if (t == NULL)
            return -1;
        chat_rpc_client_close(t->client);
        t->client = NULL;
        snprintf(t->error, sizeof t->error, "%s does not resolve", host);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        char one[CTL_URL_MAX];
        bool v6 = strchr(addrs[i], ':') != NULL;
        snprintf(one, sizeof one, v6 ? "%.*s[%s]:%s" : "%.*s%s:%s", (int)scheme, url, addrs[i],
                 port);
        if (target_add(l, one) == NULL)
            return -1;
    }
    return 0;
}

ctl_target *ctl_targets(ctl *c, ctl_kind k, int *n)
{
    if (!c->opened[k]) {
        target_list l = {.c = c, .kind = k};
        /* Out of memory midway: the targets made so far are still used. */
        (void)chat_split_list(ctl_addrs(c->opts, k), target_item, &l);
        c->targets[k] = l.v;
        c->n_targets[k] = l.n;
        c->opened[k] = true;
    }
    *n = c->n_targets[k];
    return c->targets[k];
}

/* One call; req is only read (several threads share it: ctl_call_all). */
static void call_one(ctl *c, ctl_target *t, const Chat__AdminRequest *req, ctl_result *res)
{
    memset(res, 0, sizeof *res);
    res->target = t;
    if (t->client == NULL) {
        res->err = NNG_EADDRINVAL;
        return;
    }
    /* A call fails at once while nothing is connected: give the dialer
     * the same time a request gets. */
    if (!chat_rpc_client_wait_peers(t->client, c->timeout_ms)) {
        res->err = NNG_ECONNREFUSED;
        return;
    }
    Chat__AdminReply *rep = NULL;
    res->err = chat_rpc_call_decode(t->client, &req->base, &chat__admin_reply__descriptor,
                                    (ProtobufCMessage **)&rep);
    if (res->err == 0)
        res->reply = rep;
}

void ctl_call(ctl *c, ctl_target *t, Chat__AdminRequest *req, ctl_result *res)
{
    req->token = c->token;
    req->req_id = c->req_id;
    call_one(c, t, req, res);
}

typedef struct call_job {
    ctl *c;
    ctl_target *t;
    Chat__AdminRequest *req;
    ctl_result *res;
    pthread_t thread;
    bool started;
} call_job;

static void *call_thread(void *arg)
{
    call_job *j = arg;
    call_one(j->c, j->t, j->req, j->res);
    return NULL;
}

int ctl_call_all(ctl *c, unsigned mask, Chat__AdminRequest *req, ctl_result **out)
{
    int total = 0, n;
    for (int k = 0; k < CTL_KINDS; k++)
        if (mask & (1u << k)) {
            ctl_targets(c, (ctl_kind)k, &n);
            total += n;
        }
    ctl_result *res = calloc((size_t)total + 1, sizeof *res);
    call_job *jobs = calloc((size_t)total + 1, sizeof *jobs);
    if (res == NULL || jobs == NULL) {
        free(res);
        free(jobs);
        *out = NULL;
        return 0;
    }
    /* Token and req_id are set once here: the threads only read req. */
    req->token = c->token;
    req->req_id = c->req_id;
    int j = 0;
    for (int k = 0; k < CTL_KINDS; k++) {
        if (!(mask & (1u << k)))
            continue;
        ctl_target *t = ctl_targets(c, (ctl_kind)k, &n);
        for (int i = 0; i < n; i++, j++) {
            jobs[j] = (call_job){.c = c, .t = &t[i], .req = req, .res = &res[j]};
            jobs[j].started = pthread_create(&jobs[j].thread, NULL, call_thread, &jobs[j]) == 0;
            if (!jobs[j].started)
                call_one(c, &t[i], req, &res[j]);
        }
    }
    for (j = 0; j < total; j++)
        if (jobs[j].started)
            pthread_join(jobs[j].thread, NULL);
    free(jobs);
    *out = res;
    return total;
}

ctl_rc ctl_call_first(ctl *c, ctl_kind k, Chat__AdminRequest *req, ctl_result *res)
{
    int n;
    ctl_target *t = ctl_targets(c, k, &n);
    memset(res, 0, sizeof *res);
    if (n == 0)
        return ctl_fail(c, CTL_FAILED, "no %s address (see chatctl --help)", ctl_kind_name(k));
    int *errs = calloc((size_t)n, sizeof *errs);
    for (int i = 0; i < n; i++) {
        ctl_call(c, &t[i], req, res);
        if (res->reply != NULL) {
            free(errs);
            return CTL_OK;
        }
        if (errs != NULL)
            errs[i] = res->err;
    }
    /* None answered: name each one. */
    for (int i = 0; i < n; i++) {
        ctl_result r = {.target = &t[i], .err = errs ? errs[i] : res->err};
        ctl_check(c, &r, false);
    }
    free(errs);
    return CTL_FAILED;
}

ctl_rc ctl_ask_first(ctl *c, ctl_kind k, Chat__AdminRequest *req, ctl_result *res,
                     bool not_found_ok)
{
    ctl_rc rc = ctl_call_first(c, k, req, res);
    return rc == CTL_OK ? ctl_check(c, res, not_found_ok) : rc;
}

ctl_rc ctl_gateways_affected(ctl *c, Chat__AdminRequest *req, uint64_t *sum)
{
    ctl_result *res;
    int n = ctl_call_all(c, 1u << CTL_GATEWAY, req, &res);
    ctl_rc rc = CTL_OK;
    *sum = 0;
    for (int i = 0; i < n; i++) {
        ctl_rc one = ctl_check(c, &res[i], true);
        if (one == CTL_OK)
            *sum += res[i].reply->affected;
        else if (one != CTL_NOT_FOUND)
            rc = ctl_rc_merge(rc, one);
    }
    ctl_results_free(res, n);
    return rc;
}

void ctl_result_clear(ctl_result *res)
{
    if (res->reply != NULL)
        chat__admin_reply__free_unpacked(res->reply, NULL);
    res->reply = NULL;
}

void ctl_results_free(ctl_result *r, int n)
{
    for (int i = 0; r != NULL && i < n; i++)
        ctl_result_clear(&r[i]);
    free(r);
}

static const char *code_name(Chat__AdminCode code)
{
    switch (code) {
    case CHAT__ADMIN_CODE__ADMIN_OK: return "ok";
    case CHAT__ADMIN_CODE__ADMIN_UNAUTHORIZED: return "unauthorized";
    case CHAT__ADMIN_CODE__ADMIN_BAD_REQUEST: return "bad request";
    case CHAT__ADMIN_CODE__ADMIN_NOT_FOUND: return "not found";
    case CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED: return "unsupported";
    case CHAT__ADMIN_CODE__ADMIN_FAILED: return "failed";
    default: return "unknown code";
    }
}

void ctl_result_error(const ctl_result *res, char *buf, size_t n)
{
    const ctl_target *t = res->target;
    if (res->reply == NULL) {
        if (t != NULL && t->client == NULL)
            snprintf(buf, n, "%s", t->error);
        else if (res->err == NNG_ECONNREFUSED)
            snprintf(buf, n, "unreachable");
        else if (res->err == NNG_ETIMEDOUT)
            snprintf(buf, n, "unreachable (no answer in time)");
        else
            snprintf(buf, n, "unreachable (%s)", nng_strerror(res->err));
        return;
    }
    const char *detail = res->reply->detail;
    if (detail != NULL && detail[0] != '\0' &&
        res->reply->code != CHAT__ADMIN_CODE__ADMIN_UNAUTHORIZED)
        snprintf(buf, n, "%s: %s", code_name(res->reply->code), detail);
    else
        snprintf(buf, n, "%s", code_name(res->reply->code));
}

ctl_rc ctl_check(ctl *c, const ctl_result *res, bool not_found_ok)
{
    ctl_rc rc = CTL_FAILED;
    if (res->reply != NULL) {
        switch (res->reply->code) {
        case CHAT__ADMIN_CODE__ADMIN_OK: return CTL_OK;
        case CHAT__ADMIN_CODE__ADMIN_NOT_FOUND:
            if (not_found_ok)
                return CTL_NOT_FOUND;
            break;
        case CHAT__ADMIN_CODE__ADMIN_UNAUTHORIZED: rc = CTL_UNAUTHORIZED; break;
        default: break; /* unsupported is a routing bug: a failure */
        }
    }
    char why[400];
    ctl_result_error(res, why, sizeof why);
    const ctl_target *t = res->target;
    ctl_report(c, t ? t->kind : CTL_KINDS, t ? t->url : "", why);
    return rc;
}
