/* svc-presence: connections, last seen, reconnect grace, presence pushes.
 * Wires things up: configuration, event publisher, svc-match and
 * svc-message clients, notifier, server, sweeper; runs until
 * SIGINT/SIGTERM; tears down in reverse. */
#include <stdlib.h>
#include <time.h>

#include <nng/nng.h>

#include "chat/config.h"
#include "chat/log.h"
#include "chat/rpc.h"
#include "chat/util.h"
#include "presence.h"

#define PRES_REDIS_TIMEOUT_MS 1000
#define PRES_SWEEP_INTERVAL_MS 100
#define PRES_PEER_WAIT_MS 5000

static const char *cfg_listen, *cfg_pub_listen, *cfg_match_addrs, *cfg_message_addrs;
static const char *cfg_redis_host;
static long long cfg_redis_port, cfg_grace_ms, cfg_gw_ttl_ms, cfg_rpc_timeout_ms;
static long long cfg_threads, cfg_contexts, cfg_notifiers, cfg_notify_queue;
static const char *cfg_log_level;

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
    {"CHAT_LOG_LEVEL", CHAT_CFG_STR, "info", 0, 0, "debug, info, warn or error",
     &cfg_log_level},
};

int main(int argc, char **argv)
{
    int rc = chat_cfg_main(argc, argv, "svc-presence: connections, last seen, reconnect grace",
                           cfg_items, sizeof cfg_items / sizeof cfg_items[0]);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    chat_log_init("presence");
    chat_signals_install();
    pres_scripts_init();

    chat_pub *pub = NULL;
    chat_rpc_client *match = NULL, *message = NULL;
    pres_notifier *notifier = NULL;
    chat_rpc_pool *srv = NULL;
    pres_sweeper *sweeper = NULL;
    int exit_code = 1;
    int rv;
    if ((rv = chat_pub_open(&pub, cfg_pub_listen)) != 0) {
        chat_error("pres_pub_failed", "url=%s err=\"%s\"", cfg_pub_listen, nng_strerror(rv));
        goto out;
    }
    if ((rv = chat_rpc_client_open(&match, cfg_match_addrs, (int)cfg_rpc_timeout_ms)) != 0) {
        chat_error("pres_match_client_failed", "urls=%s err=\"%s\"", cfg_match_addrs,
                   nng_strerror(rv));
        goto out;
    }
    /* Listen only once svc-match answers (bounded): the gateway's readiness
     * follows ours, and a disconnect before could not take users out of the
     * queue. */
    pres_peers_wait(match, "svc-match", PRES_PEER_WAIT_MS);
    if ((rv = chat_rpc_client_open(&message, cfg_message_addrs, (int)cfg_rpc_timeout_ms)) !=
        0) {
        chat_error("pres_message_client_failed", "urls=%s err=\"%s\"", cfg_message_addrs,
                   nng_strerror(rv));
        goto out;
    }
    pres_peers peers = {message, pub};
    pres_notify_deps deps = {pres_peers_contacts, pres_peers_publish, &peers};
    if (pres_notifier_start(&notifier, &deps, cfg_redis_host, (int)cfg_redis_port,
                            PRES_REDIS_TIMEOUT_MS, (int)cfg_notifiers,
                            (int)cfg_notify_queue) != 0)
        goto out;
    pres_env env = {pres_peers_match_call, match,   cfg_grace_ms, cfg_gw_ttl_ms,
                    pres_notifier_push,    notifier};
    chat_rpc_pool_cfg scfg = {
        "presence",     cfg_listen,          (int)cfg_contexts,     (int)cfg_threads,
        cfg_redis_host, (int)cfg_redis_port, PRES_REDIS_TIMEOUT_MS, NULL};
    if (pres_server_open(&srv, &scfg, &env) != 0)
        goto out;
    if (pres_sweeper_start(&sweeper, &env, cfg_redis_host, (int)cfg_redis_port,
                           PRES_REDIS_TIMEOUT_MS, PRES_SWEEP_INTERVAL_MS) != 0)
        goto out;

    chat_info("pres_started",
              "listen=%s pub=%s match=%s redis=%s:%lld grace_ms=%lld "
              "gateway_ttl_ms=%lld",
              cfg_listen, cfg_pub_listen, cfg_match_addrs, cfg_redis_host, cfg_redis_port,
              cfg_grace_ms, cfg_gw_ttl_ms);
    chat_wait_for_stop();
    chat_info("pres_stopping", "reason=signal");
    exit_code = 0;
out:
    pres_sweeper_stop(sweeper);
    pres_server_close(srv);
    pres_notifier_stop(notifier); /* after the last one that could push */
    chat_rpc_client_close(message);
    chat_rpc_client_close(match);
    chat_pub_close(pub);
    if (exit_code == 0)
        chat_info("pres_stopped", "exit=0");
    return exit_code;
}
