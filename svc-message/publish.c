/* Events to the gateways: the one way every handler publishes (a recipient
 * list split into the event's user ids, or a group commit's batch), the
 * counts /metrics shows, and the id form events carry. */
#include "message.h"

#include "chat/log.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>

static _Atomic uint64_t events_published, events_failed;

void msg_publish_counts(uint64_t *published, uint64_t *failed)
{
    *published = atomic_load(&events_published);
    *failed = atomic_load(&events_failed);
}

void msg_publish_many(chat_pub *pub, const ProtobufCMessage *const *evs, size_t n)
{
    if (n == 0)
        return;
    int rv = n == 1 ? chat_pub_send(pub, evs[0]) : chat_pub_send_many(pub, evs, n);
    if (rv != 0) {
        atomic_fetch_add(&events_failed, n);
        chat_warn("publish_failed", "err=%d events=%zu", rv, n);
        return;
    }
    atomic_fetch_add(&events_published, n);
}

void msg_publish(chat_pub *pub, Chat__Event *ev, char *recipients)
{
    size_t cap = 1;
    for (const char *p = recipients; *p; p++)
        cap += *p == ',';
    char **ids = malloc(cap * sizeof *ids);
    if (ids == NULL)
        return;
    ev->n_user_ids = msg_split_ids(recipients, ids, cap);
    ev->user_ids = ids;
    const ProtobufCMessage *one = &ev->base;
    if (ev->n_user_ids > 0)
        msg_publish_many(pub, &one, 1);
    ev->n_user_ids = 0;
    ev->user_ids = NULL;
    free(ids);
}

void msg_lower_uuid(char out[CHAT_UUID_LEN + 1], const char *id)
{
    for (int i = 0; i <= CHAT_UUID_LEN; i++) /* ids are valid: 36 chars */
        out[i] = (char)tolower((unsigned char)id[i]);
}
