/* svc-presence: connections, last seen, reconnect grace, presence pushes,
 * bans. Wires things up on libchat's service skeleton (chat/service.h): its
 * settings, then at start the event publisher, the svc-match and
 * svc-message clients, notifier, server and sweeper; the stop tears them
 * down in reverse. */
#include <stdlib.h>

#include <nng/nng.h>

#include "chat/log.h"
#include "chat/ratelimit.h"
#include "chat/service.h"
#include "presence.h"

#define PRES_REDIS_TIMEOUT_MS 1000
#define PRES_SWEEP_INTERVAL_MS 100
#define PRES_PEER_WAIT_MS 5000

static const char *cfg_listen, *cfg_pub_listen, *cfg_match_addrs, *cfg_message_addrs;
static const char *cfg_redis_host;
static long long cfg_redis_port, cfg_grace_ms, cfg_gw_ttl_ms, cfg_rpc_timeout_ms;
static long long cfg_threads, cfg_contexts, cfg_notifiers, cfg_notify_queue;
static long long cfg_ops_per_min, cfg_ops_burst, cfg_deadline_ms;

static const chat_cfg_item cfg_items[] = {
    {"CHAT_PRESENCE_LISTEN", CHAT_CFG_STR, "tcp://127.0.0.1:7401", 0, 0,
     "request/reply address to listen on", &cfg_listen},
    {"CHAT_PRESENCE_PUB_LISTEN", CHAT_CFG_STR, "tcp://127.0.0.1:7402", 0, 0,
     "event publisher address to listen on (presence pushes)", &cfg_pub_listen},
    {"CHAT_MATCH_ADDRS", CHAT_CFG_STR, "tcp://127.0.0.1:7301", 0, 0,
     "svc-match replicas (comma-separated)", &cfg_match_addrs},
    {"CHAT_MESSAGE_ADDRS", CHAT_CFG_STR, "tcp://127.0.0.1:7201", 0, 0,
     "svc-message replicas (comma-separated; contacts for presence pushes)",
     &cfg_message_addrs},
    {"CHAT_REDIS_HOST", CHAT_CFG_STR, "127.0.0.1", 0, 0, "Redis host", &cfg_redis_host},
    {"CHAT_REDIS_PORT", CHAT_CFG_INT, "6379", 1, 65535, "Redis port", &cfg_redis_port},
    CHAT_REDIS_CFG_AUTH,
    CHAT_RATE_CFG_OPS(&cfg_ops_per_min, &cfg_ops_burst),
    CHAT_CFG_WORK_DEADLINE(&cfg_deadline_ms),
    {"CHAT_RECONNECT_GRACE_MS", CHAT_CFG_INT, "15000", 0, 86400000,
     "a user without connections keeps its random chat this long (ms)", &cfg_grace_ms},
    {"CHAT_GATEWAY_TTL_MS", CHAT_CFG_INT, "10000", 500, 3600000,
     "a gateway silent this long is dead, its connections closed (ms)", &cfg_gw_ttl_ms},
    {"CHAT_RPC_TIMEOUT_MS", CHAT_CFG_INT, "3000", 10, 60000,
     "timeout of a call to another service (ms)", &cfg_rpc_timeout_ms},
    {"CHAT_PRESENCE_THREADS", CHAT_CFG_INT, "4", 1, 256,
     "worker threads (one Redis connection each)", &cfg_threads},
    {"CHAT_PRESENCE_CONTEXTS", CHAT_CFG_INT, "256", 1, 65536, "requests accepted at once",
     &cfg_contexts},
    {"CHAT_PRESENCE_NOTIFIERS", CHAT_CFG_INT, "2", 1, 64,
     "threads sending presence pushes to contacts (one Redis connection each)", &cfg_notifiers},
    {"CHAT_PRESENCE_NOTIFY_QUEUE", CHAT_CFG_INT, "10000", 1, 10000000,
     "presence pushes waiting per notifier thread before new ones are dropped",
     &cfg_notify_queue},
};

/* Everything the running service owns; made by app_start, freed by app_stop. */
typedef struct pres_app {
    chat_pub *pub;
    chat_rpc_client *match, *message;
    pres_peers peers;
    pres_notify_deps deps;
    pres_notifier *notifier;
    pres_env env;
    chat_rpc_pool *srv;
    pres_sweeper *sweeper;
    chat_redis_shared *admin; /* the admin side's Redis */
} pres_app;

static int app_clients(pres_app *a)
{
    int rv;
    if ((rv = chat_pub_open(&a->pub, cfg_pub_listen)) != 0) {
        chat_error("pres_pub_failed", "url=%s err=\"%s\"", cfg_pub_listen, nng_strerror(rv));
        return -1;
    }
    if ((rv = chat_rpc_client_open(&a->match, cfg_match_addrs, (int)cfg_rpc_timeout_ms)) != 0) {
        chat_error("pres_match_client_failed", "urls=%s err=\"%s\"", cfg_match_addrs,
                   nng_strerror(rv));
        return -1;
    }
    /* Listen only once svc-match answers (bounded): the gateway's readiness
     * follows ours, and a disconnect before could not take users out of the
     * queue. */
    chat_rpc_client_await(a->match, "svc-match", PRES_PEER_WAIT_MS);
    if ((rv = chat_rpc_client_open(&a->message, cfg_message_addrs, (int)cfg_rpc_timeout_ms)) !=
        0) {
        chat_error("pres_message_client_failed", "urls=%s err=\"%s\"", cfg_message_addrs,
                   nng_strerror(rv));
        return -1;
    }
    return 0;
}

static int app_start(void *arg)
{
    pres_app *a = arg;
    pres_scripts_init();
    if (app_clients(a) != 0)
        return -1;
    a->peers = (pres_peers){a->message, a->pub};
    a->deps = (pres_notify_deps){pres_peers_contacts, pres_peers_publish, &a->peers};
    if (pres_notifier_start(&a->notifier, &a->deps, cfg_redis_host, (int)cfg_redis_port,
                            PRES_REDIS_TIMEOUT_MS, (int)cfg_notifiers,
                            (int)cfg_notify_queue) != 0)
        return -1;
    a->env = (pres_env){pres_peers_match_call, a->match,    cfg_grace_ms,    cfg_gw_ttl_ms,
                        pres_notifier_push,    a->notifier, cfg_ops_per_min, cfg_ops_burst};
    a->admin =
        chat_redis_shared_new(cfg_redis_host, (int)cfg_redis_port, PRES_REDIS_TIMEOUT_MS);
    if (a->admin == NULL)
        return -1;
    chat_rpc_pool_cfg scfg = {
        "presence",          cfg_listen,          (int)cfg_contexts,     (int)cfg_threads,
        cfg_redis_host,      (int)cfg_redis_port, PRES_REDIS_TIMEOUT_MS, NULL,
        (int)cfg_deadline_ms};
    if (pres_server_open(&a->srv, &scfg, &a->env) != 0)
        return -1;
    if (pres_sweeper_start(&a->sweeper, &a->env, cfg_redis_host, (int)cfg_redis_port,
                           PRES_REDIS_TIMEOUT_MS, PRES_SWEEP_INTERVAL_MS) != 0)
        return -1;
    chat_info("pres_started",
              "listen=%s pub=%s match=%s redis=%s:%lld grace_ms=%lld gateway_ttl_ms=%lld",
              cfg_listen, cfg_pub_listen, cfg_match_addrs, cfg_redis_host, cfg_redis_port,
              cfg_grace_ms, cfg_gw_ttl_ms);
    return 0;
}

static void app_stop(void *arg)
{
    pres_app *a = arg;
    pres_sweeper_stop(a->sweeper);
    pres_server_close(a->srv);
    pres_notifier_stop(a->notifier); /* after the last one that could push */
    chat_redis_shared_free(a->admin);
    chat_rpc_client_close(a->message);
    chat_rpc_client_close(a->match);
    chat_pub_close(a->pub);
}

static bool app_ready(void *arg)
{
    const pres_app *a = arg;
    return a->sweeper != NULL && chat_rpc_client_peers(a->match) > 0;
}

static uint64_t app_load(void *arg)
{
    pres_app *a = arg;
    return pres_admin_online(a->admin);
}

static void app_metrics(chat_mbuf *b, void *arg)
{
    pres_app *a = arg;
    pres_server_metrics(b);
    chat_svc_metrics_common(b, "chat_presence", a->srv, a->pub);
}

static void app_admin(const Chat__AdminRequest *req, chat_admin_out *out, void *arg)
{
    pres_app *a = arg;
    pres_admin_handle(req, out, a->admin);
}

int main(int argc, char **argv)
{
    static pres_app app;
    const chat_svc_def def = {
        .kind = "presence",
        .about = "svc-presence: connections, last seen, reconnect grace, bans",
        .items = cfg_items,
        .n_items = sizeof cfg_items / sizeof cfg_items[0],
        .admin_default = "tcp://127.0.0.1:7403",
        .http_default = "127.0.0.1:7404",
        .load_name = "users_online",
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
