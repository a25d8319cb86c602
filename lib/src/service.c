/* The service skeleton (see service.h): configuration, admin plane, the
 * health/metrics HTTP server (nng's), and the staged stop. */
#include "chat/service.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "chat/log.h"
#include "chat/redis.h"
#include "chat/rpc.h"
#include "chat/rpc_pool.h"
#include "chat/util.h"

#define SVC_COMMON 7
#define SVC_ENV_MAX 48
#define SVC_TOKEN_MAX 1024

typedef struct svc_state {
    const chat_svc_def *def;
    void *arg;
    char env[3][SVC_ENV_MAX]; /* CHAT_K_ADMIN_LISTEN, CHAT_K_HTTP_LISTEN, CHAT_K_ID */
    const char *admin_listen, *http_listen, *id, *token, *token_file, *log_level;
    long long restarts;
    char id_buf[128], metrics_url[160], token_buf[SVC_TOKEN_MAX];
    _Atomic bool started, stopping;
    nng_http_server *http;
    chat_admin *admin;
} svc_state;

static svc_state svc;

const char *chat_svc_id(void)
{
    return svc.id != NULL ? svc.id : "";
}

/* ---- configuration ---- */
static int svc_config(int argc, char **argv, const chat_svc_def *def)
{
    char up[16];
    size_t k = 0;
    for (; def->kind[k] && k < sizeof up - 1; k++)
        up[k] = (char)toupper((unsigned char)def->kind[k]);
    up[k] = '\0';
    snprintf(svc.env[0], SVC_ENV_MAX, "CHAT_%s_ADMIN_LISTEN", up);
    snprintf(svc.env[1], SVC_ENV_MAX, "CHAT_%s_HTTP_LISTEN", up);
    snprintf(svc.env[2], SVC_ENV_MAX, "CHAT_%s_ID", up);
    const chat_cfg_item common[SVC_COMMON] = {
        {svc.env[0], CHAT_CFG_STR, def->admin_default, 0, 0,
         "admin address (chatctl; needs the admin secret)", &svc.admin_listen},
        {svc.env[1], CHAT_CFG_STR, def->http_default, 0, 0,
         "host:port serving /metrics, /healthz and /readyz (empty: none)", &svc.http_listen},
        {svc.env[2], CHAT_CFG_STR, "", 0, 0, "this replica's id (empty: host:pid)", &svc.id},
        {"CHAT_ADMIN_TOKEN", CHAT_CFG_STR, "", 0, 0,
         "the admin secret (empty: every admin request is refused)", &svc.token},
        {"CHAT_ADMIN_TOKEN_FILE", CHAT_CFG_STR, "", 0, 0,
         "file holding the admin secret (instead of CHAT_ADMIN_TOKEN)", &svc.token_file},
        {"CHAT_RESTARTS", CHAT_CFG_INT, "0", 0, 1000000000,
         "set by a supervisor: how often it restarted this process (shown by status)",
         &svc.restarts},
        {"CHAT_LOG_LEVEL", CHAT_CFG_STR, "info", 0, 0, "debug, info, warn or error",
         &svc.log_level},
    };
    size_t n = def->n_items + SVC_COMMON;
    chat_cfg_item *items = malloc(n * sizeof *items);
    if (items == NULL)
        return -1;
    memcpy(items, def->items, def->n_items * sizeof *items);
    memcpy(items + def->n_items, common, sizeof common);
    int rv = chat_cfg_main(argc, argv, def->about, items, n);
    free(items);
    return rv;
}

/* The secret from CHAT_ADMIN_TOKEN_FILE (trailing whitespace dropped). */
static int svc_token_file(const char *prog)
{
    if (svc.token_file[0] == '\0')
        return 0;
    FILE *f = fopen(svc.token_file, "r");
    if (f == NULL) {
        fprintf(stderr, "%s: configuration error: CHAT_ADMIN_TOKEN_FILE=%s cannot be read\n",
                prog, svc.token_file);
        return -1;
    }
    size_t n = fread(svc.token_buf, 1, sizeof svc.token_buf - 1, f);
    fclose(f);
    while (n > 0 && isspace((unsigned char)svc.token_buf[n - 1]))
        n--;
    svc.token_buf[n] = '\0';
    svc.token = svc.token_buf;
    return 0;
}

/* ---- health and metrics over HTTP ---- */
static bool svc_ready(void *unused)
{
    return atomic_load(&svc.started) && !atomic_load(&svc.stopping) &&
           (svc.def->ready == NULL || svc.def->ready(svc.arg));
}

static uint64_t svc_load(void *unused)
{
    return svc.def->load != NULL && atomic_load(&svc.started) ? svc.def->load(svc.arg) : 0;
}

static void svc_metrics(chat_mbuf *b)
{
    chat_metric_family(b, "chat_build_info", "gauge", "Always 1; labels: the program.");
    chat_mbuf_printf(b, "chat_build_info{kind=\"%s\",version=\"%s\",id=\"%s\"} 1\n",
                     svc.def->kind, chat_version(), svc.id);
    chat_metric_gauge(b, "chat_ready", "1 when /readyz answers 200.", svc_ready(NULL));
    chat_metric_gauge(b, "chat_supervisor_restarts",
                      "Restarts of this process by its supervisor before this run.",
                      (double)svc.restarts);
    chat_metrics_process(b);
    if (svc.def->metrics != NULL && atomic_load(&svc.started))
        svc.def->metrics(b, svc.arg);
}

static void svc_http_answer(nng_aio *aio, uint16_t status, const char *ctype, const char *body,
                            size_t len)
{
    nng_http_res *res = NULL;
    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_http_res_set_status(res, status);
    nng_http_res_set_header(res, "Content-Type", ctype);
    nng_http_res_set_header(res, "Cache-Control", "no-store");
    nng_http_res_copy_data(res, body, len);
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

static void svc_http_healthz(nng_aio *aio)
{
    svc_http_answer(aio, 200, "text/plain", "ok\n", 3);
}

static void svc_http_readyz(nng_aio *aio)
{
    if (svc_ready(NULL))
        svc_http_answer(aio, 200, "text/plain", "ready\n", 6);
    else
        svc_http_answer(aio, 503, "text/plain", "not ready\n", 10);
}

static void svc_http_metrics(nng_aio *aio)
{
    chat_mbuf b;
    chat_mbuf_init(&b);
    svc_metrics(&b);
    size_t len = 0;
    char *text = chat_mbuf_take(&b, &len);
    if (text == NULL) {
        svc_http_answer(aio, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    svc_http_answer(aio, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static int svc_http_open(void)
{
    if (svc.http_listen[0] == '\0')
        return 0;
    char url_text[200];
    snprintf(url_text, sizeof url_text, "http://%s", svc.http_listen);
    nng_url *url = NULL;
    int rv = nng_url_parse(&url, url_text);
    if (rv == 0)
        rv = nng_http_server_hold(&svc.http, url);
    nng_url_free(url);
    static const struct {
        const char *path;
        void (*fn)(nng_aio *);
    } routes[] = {{"/healthz", svc_http_healthz},
                  {"/readyz", svc_http_readyz},
                  {"/metrics", svc_http_metrics}};
    for (size_t i = 0; rv == 0 && i < sizeof routes / sizeof routes[0]; i++) {
        nng_http_handler *h = NULL;
        if ((rv = nng_http_handler_alloc(&h, routes[i].path, routes[i].fn)) == 0 &&
            (rv = nng_http_server_add_handler(svc.http, h)) != 0)
            nng_http_handler_free(h);
    }
    if (rv == 0)
        rv = nng_http_server_start(svc.http);
    if (rv != 0) {
        chat_error("http_listen_failed", "listen=%s err=\"%s\"", svc.http_listen,
                   nng_strerror(rv));
        if (svc.http != NULL)
            nng_http_server_release(svc.http);
        svc.http = NULL;
        return -1;
    }
    snprintf(svc.metrics_url, sizeof svc.metrics_url, "http://%s/metrics", svc.http_listen);
    chat_info("http_listening", "listen=%s", svc.http_listen);
    return 0;
}

static void svc_http_close(void)
{
    if (svc.http == NULL)
        return;
    nng_http_server_stop(svc.http);
    nng_http_server_release(svc.http);
    svc.http = NULL;
}

void chat_svc_metrics_common(chat_mbuf *b, const char *prefix, chat_rpc_pool *pool,
                             chat_pub *pub)
{
    char name[96];
    if (pool != NULL) {
        unsigned queued, running;
        chat_rpc_pool_depth(pool, &queued, &running);
        snprintf(name, sizeof name, "%s_requests_queued", prefix);
        chat_metric_gauge(b, name, "Requests waiting for a worker.", queued);
        snprintf(name, sizeof name, "%s_requests_running", prefix);
        chat_metric_gauge(b, name, "Requests a worker is on now.", running);
    }
    snprintf(name, sizeof name, "%s_redis_errors_total", prefix);
    chat_metric_counter(b, name, "Redis commands that failed.", chat_redis_errors());
    if (pub != NULL) {
        uint64_t sent, failed;
        chat_pub_counts(pub, &sent, &failed);
        snprintf(name, sizeof name, "%s_event_batches_published_total", prefix);
        chat_metric_counter(b, name, "Event batches published.", sent);
        snprintf(name, sizeof name, "%s_event_batches_dropped_total", prefix);
        chat_metric_counter(b, name, "Event batches the publisher refused.", failed);
    }
}

/* ---- the run ---- */
static void *svc_watchdog(void *arg)
{
    int s = *(int *)arg;
    sleep((unsigned)s);
    chat_error("stop_timeout", "after_s=%d action=exit", s);
    _exit(1);
}

static int svc_open_admin(void)
{
    chat_admin_cfg acfg = {
        .kind = svc.def->kind,
        .id = svc.id,
        .listen = svc.admin_listen,
        .token = svc.token,
        .metrics_url = svc.metrics_url,
        .load_name = svc.def->load_name ? svc.def->load_name : "",
        .restarts = (unsigned)svc.restarts,
        .ready = svc_ready,
        .load = svc_load,
        .handler = svc.def->admin,
        .arg = svc.arg,
    };
    return chat_admin_open(&svc.admin, &acfg) == 0 ? 0 : -1;
}

int chat_svc_main(int argc, char **argv, const chat_svc_def *def, void *arg)
{
    svc.def = def;
    svc.arg = arg;
    int rv = svc_config(argc, argv, def);
    if (rv != 0)
        return rv > 0 ? 0 : 2;
    if (svc_token_file(argv[0]) != 0)
        return 2;
    if (svc.id[0] == '\0') {
        char host[64] = "";
        gethostname(host, sizeof host - 1);
        snprintf(svc.id_buf, sizeof svc.id_buf, "%s:%d", host, (int)getpid());
        svc.id = svc.id_buf;
    }
    chat_log_init(def->kind);
    chat_signals_install();

    int exit_code = 1;
    /* Health first: a probe during a slow start sees "alive, not ready". */
    if (svc_http_open() != 0)
        goto out;
    if (def->start(arg) != 0)
        goto out;
    atomic_store(&svc.started, true);
    if (svc_open_admin() != 0)
        goto out;
    chat_info("started", "kind=%s id=%s version=%s admin=%s http=%s", def->kind, svc.id,
              chat_version(), svc.admin_listen, svc.http_listen);
    chat_wait_for_stop();
    chat_info("stopping", "reason=signal");
    exit_code = 0;
out:
    atomic_store(&svc.stopping, true);
    if (def->stop_bound_s > 0) {
        static int bound;
        bound = def->stop_bound_s;
        pthread_t wd;
        if (pthread_create(&wd, NULL, svc_watchdog, &bound) == 0)
            pthread_detach(wd);
    }
    chat_admin_close(svc.admin);
    svc.admin = NULL;
    def->stop(arg);
    svc_http_close();
    if (exit_code == 0)
        chat_info("stopped", "exit=0");
    return exit_code;
}
