/* Events to the gateways: the one way every handler publishes (a recipient
 * list split into the event's user ids), and the id form events carry. */
#include "message.h"

#include "chat/log.h"

#include <ctype.h>
#include <stdlib.h>

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
    int rv = ev->n_user_ids > 0 ? chat_pub_send(pub, &ev->base) : 0;
    if (rv != 0)
        chat_warn("publish_failed", "err=%d", rv);
    ev->n_user_ids = 0;
    ev->user_ids = NULL;
    free(ids);
}

void msg_lower_uuid(char out[CHAT_UUID_LEN + 1], const char *id)
{
    for (int i = 0; i <= CHAT_UUID_LEN; i++) /* ids are valid: 36 chars */
        out[i] = (char)tolower((unsigned char)id[i]);
}
