/* svc-match: the random-chat queue. Wires things up: configuration, event
 * publisher, svc-message client, server; runs until SIGINT/SIGTERM; tears
 * down in reverse. */
#include <stdlib.h>
#include <time.h>

#include <nng/nng.h>

#include "chat/config.h"
#include "chat/log.h"
#include "chat/rpc.h"
#include "chat/util.h"
#include "match.h"

#define MATCH_REDIS_TIMEOUT_MS 1000
#define MATCH_PEER_WAIT_MS 5000

static const char *cfg_listen, *cfg_pub_listen, *cfg_message_addrs, *cfg_redis_host;
static long long cfg_redis_port, cfg_rpc_timeout_ms, cfg_threads, cfg_contexts;
static const char *cfg_log_level;

static const chat_cfg_item cfg_items[] = {
    {"CHAT_MATCH_LISTEN", CHAT_CFG_STR, "tcp://127.0.0.1:7301", 0, 0,
     "request/reply address to listen on", &cfg_listen},
    {"CHAT_MATCH_PUB_LISTEN", CHAT_CFG_STR, "tcp://127.0.0.1:7302", 0, 0,
     "event publisher address to listen on", &cfg_pub_listen},
    {"CHAT_MESSAGE_ADDRS", CHAT_CFG_STR, "tcp://127.0.0.1:7201", 0, 0,
     "svc-message replicas (comma-separated)", &cfg_message_addrs},
    {"CHAT_REDIS_HOST", CHAT_CFG_STR, "127.0.0.1", 0, 0, "Redis host", &cfg_redis_host},
    {"CHAT_REDIS_PORT", CHAT_CFG_INT, "6379", 1, 65535, "Redis port", &cfg_redis_port},
    {"CHAT_RPC_TIMEOUT_MS", CHAT_CFG_INT, "3000", 10, 60000,
     "timeout of a call to another service (ms)", &cfg_rpc_timeout_ms},
    /* Many: a worker waits for svc-message while a pairing's conversation
     * is created (a commit), and those commits are grouped only when many
     * arrive together. */
    {"CHAT_MATCH_THREADS", CHAT_CFG_INT, "32", 1, 256,
     "worker threads (one Redis connection each)", &cfg_threads},
    {"CHAT_MATCH_CONTEXTS", CHAT_CFG_INT, "256", 1, 65536, "requests accepted at once",
     &cfg_contexts},
    {"CHAT_LOG_LEVEL", CHAT_CFG_STR, "info", 0, 0, "debug, info, warn or error",
     &cfg_log_level},
};

int main(int argc, char **argv)
{
    int rc = chat_cfg_main(argc, argv, "svc-match: random-chat matchmaking (queue, chats)",
                           cfg_items, sizeof cfg_items / sizeof cfg_items[0]);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    chat_log_init("match");
    chat_signals_install();
    match_scripts_init();

    chat_pub *pub = NULL;
    chat_rpc_client *message = NULL;
    chat_rpc_pool *srv = NULL;
    int exit_code = 1;
    int rv;
    if ((rv = chat_pub_open(&pub, cfg_pub_listen)) != 0) {
        chat_error("match_pub_failed", "url=%s err=\"%s\"", cfg_pub_listen, nng_strerror(rv));
        goto out;
    }
    if ((rv = chat_rpc_client_open(&message, cfg_message_addrs, (int)cfg_rpc_timeout_ms)) !=
        0) {
        chat_error("match_message_client_failed", "urls=%s err=\"%s\"", cfg_message_addrs,
                   nng_strerror(rv));
        goto out;
    }
    /* Listen only once svc-message answers (bounded): the gateway's readiness
     * follows ours, and a match made before would fail with UNAVAILABLE. */
    match_peers_wait(message, "svc-message", MATCH_PEER_WAIT_MS);
    match_peers peers = {message, pub};
    /* A reservation must outlive the slowest create (bounded by the RPC
     * timeout) by a wide margin; it only matters if this process dies. */
    match_env env = {match_peers_message_call, match_peers_publish, &peers,
                     (int)(2 * cfg_rpc_timeout_ms / 1000) + 30};
    chat_rpc_pool_cfg scfg = {
        "match",        cfg_listen,          (int)cfg_contexts,      (int)cfg_threads,
        cfg_redis_host, (int)cfg_redis_port, MATCH_REDIS_TIMEOUT_MS, NULL};
    if (match_server_open(&srv, &scfg, &env) != 0)
        goto out;

    chat_info("match_started", "listen=%s pub=%s message=%s redis=%s:%lld", cfg_listen,
              cfg_pub_listen, cfg_message_addrs, cfg_redis_host, cfg_redis_port);
    chat_wait_for_stop();
    chat_info("match_stopping", "reason=signal");
    exit_code = 0;
out:
    match_server_close(srv);
    chat_rpc_client_close(message);
    chat_pub_close(pub);
    if (exit_code == 0)
        chat_info("match_stopped", "exit=0");
    return exit_code;
}
