/* The outside world of svc-presence in production: svc-match over nng
 * request/reply (the pres_env callback), svc-message's contacts and the
 * event publisher (the notifier's). */
#include "presence.h"

#include <stdlib.h>
#include <string.h>

#include "message.pb-c.h"

#include <nng/nng.h>

#include "chat/log.h"

int pres_peers_match_call(void *ctx, const Chat__MatchRequest *req, Chat__MatchReply **reply)
{
    chat_rpc_client *match = ctx;
    ProtobufCMessage *rep = NULL;
    int rv = chat_rpc_call_decode(match, &req->base, &chat__match_reply__descriptor, &rep);
    if (rv != 0) {
        chat_debug("pres_match_rpc_failed", "req=%d err=\"%s\"", (int)req->body_case,
                   nng_strerror(rv));
        return -1;
    }
    *reply = (Chat__MatchReply *)rep;
    return 0;
}

int pres_peers_contacts(void *ctx, const char *user, int64_t at, char ***ids, size_t *n)
{
    const pres_peers *p = ctx;
    Chat__ContactsReq q = CHAT__CONTACTS_REQ__INIT;
    q.user_id = (char *)user;
    q.joined_before = at;
    Chat__MessageRequest req = CHAT__MESSAGE_REQUEST__INIT;
    req.body_case = CHAT__MESSAGE_REQUEST__BODY_CONTACTS;
    req.contacts = &q;
    ProtobufCMessage *m = NULL;
    int rv = chat_rpc_call_decode(p->message, &req.base, &chat__message_reply__descriptor, &m);
    if (rv != 0) {
        chat_debug("pres_message_rpc_failed", "req=contacts err=\"%s\"", nng_strerror(rv));
        return -1;
    }
    Chat__MessageReply *rep = (Chat__MessageReply *)m;
    if (rep->code != CHAT__CODE__OK) {
        chat_debug("pres_contacts_failed", "user=%s code=%d", user, (int)rep->code);
        chat__message_reply__free_unpacked(rep, NULL);
        return -1;
    }
    size_t k = rep->n_contact_ids;
    char **out = calloc(k + 1, sizeof *out);
    for (size_t i = 0; out != NULL && i < k; i++) {
        if ((out[i] = strdup(rep->contact_ids[i])) == NULL) {
            pres_ids_free(out, i);
            out = NULL;
        }
    }
    chat__message_reply__free_unpacked(rep, NULL);
    if (out == NULL)
        return -1;
    *ids = out;
    *n = k;
    return 0;
}

int pres_peers_publish(void *ctx, const Chat__Event *ev)
{
    const pres_peers *p = ctx;
    return chat_pub_send(p->pub, &ev->base) == 0 ? 0 : -1;
}
