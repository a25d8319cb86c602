/* The outside world of svc-match in production: svc-message over nng
 * request/reply and the event PUB socket (the match_env callbacks). */
#include "match.h"

#include <stdlib.h>
#include <time.h>

#include <nng/nng.h>

#include "chat/log.h"

int match_peers_message_call(void *ctx, const Chat__MessageRequest *req,
                             Chat__MessageReply **reply)
{
    match_peers *p = ctx;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv = chat_rpc_call(p->message, &req->base, &buf, &len);
    if (rv != 0) {
        chat_warn("match_message_call_failed", "req=%d err=\"%s\"", (int)req->body_case,
                  nng_strerror(rv));
        return -1;
    }
    Chat__MessageReply *rep = chat__message_reply__unpack(NULL, len, buf);
    free(buf);
    if (rep == NULL) {
        chat_error("match_message_bad_reply", "req=%d len=%zu", (int)req->body_case, len);
        return -1;
    }
    *reply = rep;
    return 0;
}

void match_peers_publish(void *ctx, const Chat__Event *ev)
{
    match_peers *p = ctx;
    int rv = chat_pub_send(p->pub, &ev->base);
    if (rv != 0)
        chat_warn("match_publish_failed", "event=%d err=\"%s\"", (int)ev->body_case,
                  nng_strerror(rv));
}

bool match_peers_wait(chat_rpc_client *c, const char *name, int max_ms)
{
    for (int waited = 0; chat_rpc_client_peers(c) == 0; waited += 20) {
        if (waited >= max_ms || chat_stopping()) {
            chat_warn("match_peer_missing", "peer=%s waited_ms=%d", name, waited);
            return false;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return true;
}
