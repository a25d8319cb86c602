/* svc-gateway: configuration, backends, lws server, run, tear down in
 * reverse. */
#include "gateway.h"

#include <stdlib.h>

#include "chat/log.h"

int main(int argc, char **argv)
{
    gw_config cfg = {0};
    int rv = gw_config_main(&cfg, argc, argv);
    if (rv != 0)
        return rv == 1 ? 0 : 2;
    chat_log_init("gateway");
    chat_signals_install();

    gw_backend *be = NULL;
    if (gw_backend_open(&be, &cfg) != 0)
        return 1;
    gw_server s;
    if (gw_server_init(&s, &cfg, be) != 0) {
        gw_backend_close(be);
        return 1;
    }
    gw_server_run(&s);
    gw_server_fini(&s);
    gw_backend_close(be);
    chat_info("stopped", "gateway=%s", cfg.gateway_id);
    return 0;
}
