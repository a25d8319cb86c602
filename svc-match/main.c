/* svc-match: the random-chat queue. Wires things up on libchat's service
 * skeleton (chat/service.h): its settings, then at start the event
 * publisher, the svc-message client and the server; the stop tears them
 * down in reverse. */
#include <stdlib.h>

#include <nng/nng.h>

#include "chat/log.h"
#include "chat/ratelimit.h"
#include "chat/service.h"
#include "match.h"

#define MATCH_REDIS_TIMEOUT_MS 1000
#define MATCH_PEER_WAIT_MS 5000

static const char *cfg_listen, *cfg_pub_listen, *cfg_message_addrs, *cfg_redis_host;
static long long cfg_redis_port, cfg_rpc_timeout_ms, cfg_threads, cfg_contexts;
static long long cfg_ops_per_min, cfg_ops_burst, cfg_deadline_ms;

static const chat_cfg_item cfg_items[] = {
    {"CHAT_MATCH_LISTEN", CHAT_CFG_STR, "tcp://127.0.0.1:7301", 0, 0,
     "request/reply address to listen on", &cfg_listen},
    {"CHAT_MATCH_PUB_LISTEN", CHAT_CFG_STR, "tcp://127.0.0.1:7302", 0, 0,
     "event publisher address to listen on", &cfg_pub_listen},
    {"CHAT_MESSAGE_ADDRS", CHAT_CFG_STR, "tcp://127.0.0.1:7201", 0, 0,
     "svc-message replicas (comma-separated)", &cfg_message_addrs},
    {"CHAT_REDIS_HOST", CHAT_CFG_STR, "127.0.0.1", 0, 0, "Redis host", &cfg_redis_host},
    {"CHAT_REDIS_PORT", CHAT_CFG_INT, "6379", 1, 65535, "Redis port", &cfg_redis_port},
    CHAT_REDIS_CFG_AUTH,
    CHAT_RATE_CFG_OPS(&cfg_ops_per_min, &cfg_ops_burst),
    CHAT_CFG_WORK_DEADLINE(&cfg_deadline_ms),
    {"CHAT_RPC_TIMEOUT_MS", CHAT_CFG_INT, "3000", 10, 60000,
     "timeout of a call to another service (ms)", &cfg_rpc_timeout_ms},
    /* Many: a worker waits for svc-message while a pairing's conversation
     * is created (a commit), and those commits are grouped only when many
     * arrive together. */
    {"CHAT_MATCH_THREADS", CHAT_CFG_INT, "32", 1, 256,
     "worker threads (one Redis connection each)", &cfg_threads},
    {"CHAT_MATCH_CONTEXTS", CHAT_CFG_INT, "256", 1, 65536, "requests accepted at once",
     &cfg_contexts},
};

/* Everything the running service owns; made by app_start, freed by app_stop. */
typedef struct match_app {
    chat_pub *pub;
    chat_rpc_client *message;
    match_peers peers;
    match_env env;
    chat_rpc_pool *srv;
    chat_redis_shared *admin; /* the admin side's Redis */
} match_app;

static int app_start(void *arg)
{
    match_app *a = arg;
    match_scripts_init();
    int rv;
    if ((rv = chat_pub_open(&a->pub, cfg_pub_listen)) != 0) {
        chat_error("match_pub_failed", "url=%s err=\"%s\"", cfg_pub_listen, nng_strerror(rv));
        return -1;
    }
    if ((rv = chat_rpc_client_open(&a->message, cfg_message_addrs, (int)cfg_rpc_timeout_ms)) !=
        0) {
        chat_error("match_message_client_failed", "urls=%s err=\"%s\"", cfg_message_addrs,
                   nng_strerror(rv));
        return -1;
    }
    /* Listen only once svc-message answers (bounded): the gateway's readiness
     * follows ours, and a match made before would fail with UNAVAILABLE. */
    chat_rpc_client_await(a->message, "svc-message", MATCH_PEER_WAIT_MS);
    a->peers = (match_peers){a->message, a->pub};
    /* A reservation must outlive the slowest create (bounded by the RPC
     * timeout) by a wide margin; it only matters if this process dies. */
    a->env = (match_env){match_peers_message_call,
                         match_peers_publish,
                         &a->peers,
                         (int)(2 * cfg_rpc_timeout_ms / 1000) + 30,
                         cfg_ops_per_min,
                         cfg_ops_burst};
    a->admin =
        chat_redis_shared_new(cfg_redis_host, (int)cfg_redis_port, MATCH_REDIS_TIMEOUT_MS);
    if (a->admin == NULL)
        return -1;
    chat_rpc_pool_cfg scfg = {"match",
                              cfg_listen,
                              (int)cfg_contexts,
                              (int)cfg_threads,
                              cfg_redis_host,
                              (int)cfg_redis_port,
                              MATCH_REDIS_TIMEOUT_MS,
                              NULL,
                              (int)cfg_deadline_ms};
    if (match_server_open(&a->srv, &scfg, &a->env) != 0)
        return -1;
    chat_info("match_started", "listen=%s pub=%s message=%s redis=%s:%lld", cfg_listen,
              cfg_pub_listen, cfg_message_addrs, cfg_redis_host, cfg_redis_port);
    return 0;
}

static void app_stop(void *arg)
{
    match_app *a = arg;
    match_server_close(a->srv);
    chat_redis_shared_free(a->admin);
    chat_rpc_client_close(a->message);
    chat_pub_close(a->pub);
}

static bool app_ready(void *arg)
{
    const match_app *a = arg;
    return a->srv != NULL && chat_rpc_client_peers(a->message) > 0;
}

static uint64_t app_load(void *arg)
{
    match_app *a = arg;
    return match_admin_waiting(a->admin);
}

static void app_metrics(chat_mbuf *b, void *arg)
{
    match_app *a = arg;
    match_server_metrics(b);
    chat_svc_metrics_common(b, "chat_match", a->srv, a->pub);
}

static void app_admin(const Chat__AdminRequest *req, chat_admin_out *out, void *arg)
{
    match_app *a = arg;
    match_admin_handle(req, out, a->admin);
}

int main(int argc, char **argv)
{
    static match_app app;
    const chat_svc_def def = {
        .kind = "match",
        .about = "svc-match: random-chat matchmaking (queue, chats)",
        .items = cfg_items,
        .n_items = sizeof cfg_items / sizeof cfg_items[0],
        .admin_default = "tcp://127.0.0.1:7303",
        .http_default = "127.0.0.1:7304",
        .load_name = "queue_length",
        .start = app_start,
        .stop = app_stop,
        .ready = app_ready,
        .load = app_load,
        .metrics = app_metrics,
        .admin = app_admin,
        .stop_bound_s = 10,
    };
    return chat_svc_main(argc, argv, &def, &app);
}
