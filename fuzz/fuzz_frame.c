/* libFuzzer target: a client's WebSocket text message, taken through what
 * conn.c does with it (gw_utf8_valid, then gw_frame_parse) plus the other
 * UTF-8 helpers, with the product's default CHAT_MAX_TEXT. Besides the
 * sanitizers, an accepted frame must satisfy the rules PROTOCOL.md states,
 * so a validator that lets a bad frame through is found too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_wire.h"

/* CHAT_MAX_TEXT's default (svc-gateway/config.c). */
#define FRAME_MAX_TEXT 500

static void frame_check_id(const char *s)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > GW_ID_MAX)
        abort();
}

/* The promises of a frame that parsed without error. */
static void frame_check_ok(const gw_request *rq)
{
    switch (rq->type) {
    case GW_REQ_START_SEARCH:
    case GW_REQ_STOP_SEARCH: break;
    case GW_REQ_END_CHAT:
    case GW_REQ_RECEIPT:
    case GW_REQ_HISTORY:
    case GW_REQ_TYPING: frame_check_id(rq->conversation_id); break;
    case GW_REQ_SEND: {
        frame_check_id(rq->conversation_id);
        frame_check_id(rq->client_msg_id);
        size_t n = strlen(rq->text), points = gw_utf8_count(rq->text, n);
        if (points == 0 || points > FRAME_MAX_TEXT || gw_utf8_only_space(rq->text, n))
            abort();
        break;
    }
    case GW_REQ_PRESENCE:
        if (rq->n_user_ids > GW_MAX_PRESENCE_IDS)
            abort();
        for (size_t i = 0; i < rq->n_user_ids; i++)
            if (!chat_uuid_valid(rq->user_ids[i]))
                abort();
        break;
    case GW_REQ_OPEN_DM:
        if (!chat_uuid_valid(rq->user_id))
            abort();
        break;
    case GW_REQ_JOIN_ROOM:
    case GW_REQ_LEAVE_ROOM:
        if (!chat_room_valid(rq->room))
            abort();
        break;
    }
    if (rq->type == GW_REQ_RECEIPT && rq->seq == 0)
        abort();
    if (rq->type == GW_REQ_HISTORY && rq->limit > GW_HISTORY_MAX)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    /* Memory safety on any bytes; the count only means something for text. */
    size_t points = gw_utf8_count(buf, size);
    bool space = gw_utf8_only_space(buf, size);
    if (!gw_utf8_valid(data, size))
        return 0; /* conn.c closes with 1007 before parsing */
    if (points > size || (space && size > 0 && points == 0))
        abort();

    gw_request *rq = gw_frame_parse(buf, size, FRAME_MAX_TEXT);
    if (rq == NULL)
        return 0; /* out of memory: allowed */
    if (rq->req != NULL && strlen(rq->req) > GW_ID_MAX)
        abort();
    if (rq->err == GW_E_NONE)
        frame_check_ok(rq);
    else if (rq->err_msg == NULL || gw_err_name(rq->err)[0] == '\0')
        abort();
    if (strcmp(gw_req_type_name(rq->type), "?") == 0)
        abort();
    gw_request_free(rq);
    return 0;
}
