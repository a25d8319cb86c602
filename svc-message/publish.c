/* Events to the gateways: the one way every handler publishes (a recipient
 * list split into the event's user ids, or a group commit's batch), the
 * counts /metrics shows, and the id form events carry. */
#include "message.h"

#include "chat/log.h"

#include <nng/nng.h>

#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>

static _Atomic uint64_t events_published, events_failed;

void msg_publish_counts(uint64_t *published, uint64_t *failed)
{
    *published = atomic_load(&events_published);
    *failed = atomic_load(&events_failed);
}

/* An event for more recipients goes out as several copies, each naming a
 * slice of them: a room's fan-out then never makes one event, or one group
 * commit's batch, too large for a subscriber (see CHAT_SUB_MAX_BYTES). A
 * slice of 1,000 ids packs to about 40 KB. */
#define MSG_EVENT_MAX_IDS 1000

static size_t slices_of(const Chat__Event *ev)
{
    return ev->n_user_ids <= MSG_EVENT_MAX_IDS
               ? 1
               : (ev->n_user_ids + MSG_EVENT_MAX_IDS - 1) / MSG_EVENT_MAX_IDS;
}

/* Fills out with the events, the large ones as shallow copies (in copies)
 * that differ only in their slice of user_ids. Returns the count. */
static size_t slice_events(const ProtobufCMessage *const *evs, size_t n, Chat__Event *copies,
                           const ProtobufCMessage **out)
{
    size_t k = 0, c = 0;
    for (size_t i = 0; i < n; i++) {
        const Chat__Event *ev = (const Chat__Event *)evs[i];
        if (ev->n_user_ids <= MSG_EVENT_MAX_IDS) {
            out[k++] = evs[i];
            continue;
        }
        for (size_t off = 0; off < ev->n_user_ids; off += MSG_EVENT_MAX_IDS) {
            copies[c] = *ev;
            copies[c].user_ids = ev->user_ids + off;
            copies[c].n_user_ids = ev->n_user_ids - off < MSG_EVENT_MAX_IDS
                                       ? ev->n_user_ids - off
                                       : MSG_EVENT_MAX_IDS;
            out[k++] = &copies[c++].base;
        }
    }
    return k;
}

void msg_publish_many(chat_pub *pub, const ProtobufCMessage *const *evs, size_t n)
{
    if (n == 0)
        return;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += slices_of((const Chat__Event *)evs[i]);
    Chat__Event *copies = total > n ? calloc(total, sizeof *copies) : NULL;
    const ProtobufCMessage **all = total > n ? calloc(total, sizeof *all) : NULL;
    int rv = NNG_ENOMEM;
    if (total == n)
        rv = n == 1 ? chat_pub_send(pub, evs[0]) : chat_pub_send_many(pub, evs, n);
    else if (copies != NULL && all != NULL)
        rv = chat_pub_send_many(pub, all, slice_events(evs, n, copies, all));
    free(copies);
    free(all);
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
