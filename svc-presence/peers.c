/* The outside world of svc-presence in production: svc-match over nng
 * request/reply (the pres_env callback). */
#include "presence.h"

#include <stdlib.h>

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
