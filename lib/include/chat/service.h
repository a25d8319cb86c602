/* The skeleton every back-end service runs in (svc-match, svc-message,
 * svc-presence): one configuration table with --help (the service's own
 * settings plus the common ones below), logging, signals, the admin plane
 * (chat/admin.h), /metrics, /healthz and /readyz over HTTP, and a staged
 * stop with a bound. main() fills a chat_svc_def and calls chat_svc_main().
 *
 * Common settings, for a service of kind K ("match" -> CHAT_MATCH_...):
 *   CHAT_K_ADMIN_LISTEN   admin REP address
 *   CHAT_K_HTTP_LISTEN    host:port of /metrics, /healthz, /readyz ("": none)
 *   CHAT_K_ID             this replica's id in `chatctl status` and logs
 *   CHAT_ADMIN_TOKEN, CHAT_ADMIN_TOKEN_FILE   the admin secret
 *   CHAT_RESTARTS         how often a supervisor restarted it (shown only)
 *   CHAT_LOG_LEVEL */
#ifndef CHAT_SERVICE_H
#define CHAT_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/admin.h"
#include "chat/config.h"
#include "chat/metrics.h"

typedef struct chat_svc_def {
    const char *kind;  /* log name and env prefix: "match" */
    const char *about; /* --help's first lines */
    const chat_cfg_item *items;
    size_t n_items;
    const char *admin_default; /* e.g. "tcp://127.0.0.1:7303" */
    const char *http_default;  /* e.g. "127.0.0.1:7304" */
    const char *load_name;     /* status's key figure, e.g. "queue_length" */
    /* Opens everything (after configuration, logging and signals): 0, or -1
     * after logging why (the process exits 1; stop is still called). */
    int (*start)(void *arg);
    /* Staged stop, in reverse order of start; also after a failed start. */
    void (*stop)(void *arg);
    /* Quick and thread-safe (HTTP and admin threads call them). */
    bool (*ready)(void *arg);
    uint64_t (*load)(void *arg);
    void (*metrics)(chat_mbuf *b, void *arg); /* the service's own families */
    chat_admin_handler admin;                 /* requests other than status */
    int stop_bound_s; /* the stop takes at most this long, then exit(1) (0: no bound) */
} chat_svc_def;

/* The families every service reports alike, named PREFIX_...: requests
 * waiting for and running on the workers of pool (NULL: none), Redis
 * commands that failed, event batches pub published and refused (NULL:
 * none). */
struct chat_rpc_pool;
struct chat_pub;
void chat_svc_metrics_common(chat_mbuf *b, const char *prefix, struct chat_rpc_pool *pool,
                             struct chat_pub *pub);

/* Runs the service until SIGINT/SIGTERM. Returns main()'s exit status. */
int chat_svc_main(int argc, char **argv, const chat_svc_def *def, void *arg);
/* This process's id (CHAT_K_ID, or host:pid), once chat_svc_main() started. */
const char *chat_svc_id(void);

#endif
