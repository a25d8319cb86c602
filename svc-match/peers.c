/* The outside world of svc-match in production: svc-message over nng
 * request/reply and the event PUB socket (the match_env callbacks). */
#include "match.h"

#include <nng/nng.h>

#include "chat/log.h"

int match_peers_message_call(void *ctx, const Chat__MessageRequest *req,
                             Chat__MessageReply **reply)
{
    match_peers *p = ctx;
    ProtobufCMessage *rep = NULL;
    int rv =
        chat_rpc_call_decode(p->message, &req->base, &chat__message_reply__descriptor, &rep);
    if (rv != 0) {
        chat_warn("match_message_call_failed", "req=%d err=\"%s\"", (int)req->body_case,
                  nng_strerror(rv));
        return -1;
    }
    *reply = (Chat__MessageReply *)rep;
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
