/* The gateway's settings (config.c): the table every gateway prints with --help. */
#ifndef SVC_GATEWAY_GW_CONFIG_H
#define SVC_GATEWAY_GW_CONFIG_H

#include "gw_wire.h"

typedef struct gw_config {
    long long port, session_ttl_s, max_text, max_outbuf, rpc_timeout_ms, typing_timeout_ms;
    long long batch_linger_us, order_hold_ms, heartbeat_ms, restarts;
    long long conn_per_ip, conn_rate_per_s, handshake_timeout_ms, frame_rate_per_s;
    const char *bind, *gateway_id, *session_secret, *web_dir, *loop;
    const char *admin_listen, *admin_token, *admin_token_file;
    const char *match_addrs, *message_addrs, *presence_addrs, *events_addrs;
    const char *log_level;
    char id_buf[GW_GATEWAY_ID_MAX + 1]; /* generated gateway id, when none is set */
    char token_buf[GW_ADMIN_TOKEN_MAX]; /* the secret read from admin_token_file */
} gw_config;

/* Loads the table. Returns 0 to run, 1 to exit 0 (--help), 2 to exit 2
 * (bad configuration; the reason is printed). */
int gw_config_main(gw_config *cfg, int argc, char **argv);

#endif
