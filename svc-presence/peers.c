/* The outside world of svc-presence in production: svc-match over nng
 * request/reply (the pres_env callback). */
#include "presence.h"

#include <stdlib.h>
#include <time.h>

#include <nng/nng.h>

#include "chat/log.h"

int pres_peers_match_call(void *ctx, const Chat__MatchRequest *req, Chat__MatchReply **reply)
{
    chat_rpc_client *match = ctx;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv = chat_rpc_call(match, &req->base, &buf, &len);
    if (rv != 0) {
        chat_debug("pres_match_rpc_failed", "req=%d err=\"%s\"", (int)req->body_case,
                   nng_strerror(rv));
        return -1;
    }
    Chat__MatchReply *rep = chat__match_reply__unpack(NULL, len, buf);
    free(buf);
    if (rep == NULL) {
        chat_error("pres_match_bad_reply", "req=%d len=%zu", (int)req->body_case, len);
        return -1;
    }
    *reply = rep;
    return 0;
}

bool pres_peers_wait(chat_rpc_client *c, const char *name, int max_ms)
{
    for (int waited = 0; chat_rpc_client_peers(c) == 0; waited += 20) {
        if (waited >= max_ms || chat_stopping()) {
            chat_warn("pres_peer_missing", "peer=%s waited_ms=%d", name, waited);
            return false;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return true;
}
