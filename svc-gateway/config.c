/* The gateway's configuration table (environment variables; --help). */
#include "gw_config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "chat/config.h"

#ifndef GW_WEB_DIR_DEFAULT
#define GW_WEB_DIR_DEFAULT "svc-gateway/web"
#endif

static const char gw_about[] =
    "svc-gateway: the chat's WebSocket/HTTP front (ws://HOST:PORT/ws, /healthz, /readyz,\n"
    "/metrics, static web client). CHAT_SESSION_SECRET must be set.";

/* A gateway id becomes part of Redis keys ("gateway/conn"): keep it plain. */
static bool config_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > GW_GATEWAY_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

/* The secret from CHAT_ADMIN_TOKEN_FILE (trailing whitespace dropped), as
 * every service reads it (lib/src/service.c). 0 or -1 (printed). */
static int config_token_file(gw_config *cfg, const char *prog)
{
    if (cfg->admin_token_file[0] == '\0')
        return 0;
    FILE *f = fopen(cfg->admin_token_file, "r");
    if (f == NULL) {
        fprintf(stderr, "%s: configuration error: CHAT_ADMIN_TOKEN_FILE=%s cannot be read\n",
                prog, cfg->admin_token_file);
        return -1;
    }
    size_t n = fread(cfg->token_buf, 1, sizeof cfg->token_buf - 1, f);
    fclose(f);
    while (n > 0 && isspace((unsigned char)cfg->token_buf[n - 1]))
        n--;
    cfg->token_buf[n] = '\0';
    cfg->admin_token = cfg->token_buf;
    return 0;
}

int gw_config_main(gw_config *cfg, int argc, char **argv)
{
    const chat_cfg_item items[] = {
        {"CHAT_GATEWAY_PORT", CHAT_CFG_INT, "8080", 1, 65535, "HTTP/WebSocket port",
         &cfg->port},
        {"CHAT_GATEWAY_BIND", CHAT_CFG_STR, "", 0, 0,
         "address to listen on (empty: all interfaces)", &cfg->bind},
        {"CHAT_GATEWAY_ID", CHAT_CFG_STR, "", 0, 0,
         "this gateway's id, [A-Za-z0-9_-]{1,32} (empty: random at start)", &cfg->gateway_id},
        {"CHAT_SESSION_SECRET", CHAT_CFG_STR, "", 0, 0,
         "HMAC secret for session tokens, shared by all gateways (required)",
         &cfg->session_secret},
        {"CHAT_SESSION_TTL_S", CHAT_CFG_INT, "604800", 60, 10LL * 365 * 86400,
         "lifetime of a session token, seconds", &cfg->session_ttl_s},
        {"CHAT_MAX_TEXT", CHAT_CFG_INT, "500", 1, 16000,
         "longest message text, Unicode code points", &cfg->max_text},
        {"CHAT_MAX_OUTBUF", CHAT_CFG_INT, "1048576", 65536, 1LL << 30,
         "unsent output per connection before it is closed (1008), bytes", &cfg->max_outbuf},
        {"CHAT_CONN_RATE_PER_S", CHAT_CFG_INT, "1000", 0, 1000000,
         "new connections per second this gateway takes, a second's worth at once; "
         "beyond, HTTP 503 with Retry-After (0: no limit)",
         &cfg->conn_rate_per_s},
        {"CHAT_CONN_PER_IP", CHAT_CFG_INT, "0", 0, 1000000,
         "open connections per client address; beyond, HTTP 503 (0: no limit; behind a "
         "load balancer every client has its address)",
         &cfg->conn_per_ip},
        {"CHAT_FRAME_RATE_PER_S", CHAT_CFG_INT, "50", 0, 1000000,
         "frames a connection may send per second, two seconds' worth at once; beyond, "
         "each gets error rate_limited unread (0: no limit)",
         &cfg->frame_rate_per_s},
        {"CHAT_HANDSHAKE_TIMEOUT_MS", CHAT_CFG_INT, "10000", 100, 600000,
         "a new socket that has not sent its request line by then is closed, ms",
         &cfg->handshake_timeout_ms},
        {"CHAT_WEB_DIR", CHAT_CFG_STR, GW_WEB_DIR_DEFAULT, 0, 0,
         "directory of the web client's files", &cfg->web_dir},
        {"CHAT_GATEWAY_LOOP", CHAT_CFG_STR, "libev", 0, 0,
         "event loop: libev (epoll; falls back to poll without lws's evlib plugin) or poll",
         &cfg->loop},
        {"CHAT_MATCH_ADDRS", CHAT_CFG_STR, "tcp://127.0.0.1:7301", 0, 0,
         "svc-match replicas (comma-separated)", &cfg->match_addrs},
        {"CHAT_MESSAGE_ADDRS", CHAT_CFG_STR, "tcp://127.0.0.1:7201", 0, 0,
         "svc-message replicas (comma-separated)", &cfg->message_addrs},
        {"CHAT_PRESENCE_ADDRS", CHAT_CFG_STR, "tcp://127.0.0.1:7401", 0, 0,
         "svc-presence replicas (comma-separated)", &cfg->presence_addrs},
        {"CHAT_EVENTS_ADDRS", CHAT_CFG_STR,
         "tcp://127.0.0.1:7202,tcp://127.0.0.1:7302,tcp://127.0.0.1:7402", 0, 0,
         "event publishers to subscribe to (comma-separated)", &cfg->events_addrs},
        {"CHAT_RPC_TIMEOUT_MS", CHAT_CFG_INT, "3000", 10, 600000,
         "timeout of a request to a service, ms", &cfg->rpc_timeout_ms},
        {"CHAT_BATCH_LINGER_US", CHAT_CFG_INT, "0", 0, 100000,
         "requests to a service are sent together at most this often, us (0: every "
         "event-loop pass); a request after a quiet spell goes at once",
         &cfg->batch_linger_us},
        {"CHAT_TYPING_TIMEOUT_MS", CHAT_CFG_INT, "6000", 100, 600000,
         "a typing start not refreshed this long becomes a stop, ms", &cfg->typing_timeout_ms},
        {"CHAT_HEARTBEAT_MS", CHAT_CFG_INT, "2000", 50, 600000,
         "heartbeat to svc-presence every this long, ms (keep well under its "
         "CHAT_GATEWAY_TTL_MS)",
         &cfg->heartbeat_ms},
        {"CHAT_ORDER_HOLD_MS", CHAT_CFG_INT, "200", 1, 10000,
         "a message that arrives before its predecessor waits this long for it, ms; then "
         "the gap is filled from storage",
         &cfg->order_hold_ms},
        {"CHAT_GATEWAY_ADMIN_LISTEN", CHAT_CFG_STR, "tcp://127.0.0.1:7103", 0, 0,
         "admin address (nng URL) that chatctl talks to", &cfg->admin_listen},
        {"CHAT_ADMIN_TOKEN", CHAT_CFG_STR, "", 0, 0,
         "the admin secret chatctl must present (empty: every admin request is refused)",
         &cfg->admin_token},
        {"CHAT_ADMIN_TOKEN_FILE", CHAT_CFG_STR, "", 0, 0,
         "file holding the admin secret (instead of CHAT_ADMIN_TOKEN)", &cfg->admin_token_file},
        {"CHAT_RESTARTS", CHAT_CFG_INT, "0", 0, 1000000000,
         "times the supervisor restarted this gateway (shown by chatctl status)",
         &cfg->restarts},
        {"CHAT_LOG_LEVEL", CHAT_CFG_STR, "info", 0, 0, "debug, info, warn or error",
         &cfg->log_level},
    };
    int rv = chat_cfg_main(argc, argv, gw_about, items, sizeof items / sizeof items[0]);
    if (rv > 0)
        return 1;
    if (rv < 0)
        return 2;

    if (cfg->session_secret[0] == '\0') {
        fprintf(stderr,
                "%s: configuration error: CHAT_SESSION_SECRET is required (a "
                "non-empty secret shared by all gateways)\n",
                argv[0]);
        return 2;
    }
    if (config_token_file(cfg, argv[0]) != 0)
        return 2;
    if (strcmp(cfg->loop, "libev") != 0 && strcmp(cfg->loop, "poll") != 0) {
        fprintf(stderr,
                "%s: configuration error: CHAT_GATEWAY_LOOP=\"%s\" must be libev or poll\n",
                argv[0], cfg->loop);
        return 2;
    }
    if (cfg->gateway_id[0] == '\0') {
        /* Random, so two gateways started without ids never share one. */
        char uuid[CHAT_UUID_LEN + 1];
        chat_uuid_new(uuid);
        snprintf(cfg->id_buf, sizeof cfg->id_buf, "gw-%.8s", uuid);
        cfg->gateway_id = cfg->id_buf;
    } else if (!config_id_ok(cfg->gateway_id)) {
        fprintf(stderr,
                "%s: configuration error: CHAT_GATEWAY_ID=\"%s\" must match "
                "[A-Za-z0-9_-]{1,32}\n",
                argv[0], cfg->gateway_id);
        return 2;
    }
    return 0;
}
