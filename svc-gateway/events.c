/* Published events -> pushes to the connections this gateway holds. Every
 * gateway receives every event; most recipients are elsewhere, so the user
 * lookup comes first and the frame is rendered once, on first need. */
#include "gateway.h"

#include <string.h>

#include "chat/log.h"

/* The frames one event can turn into; chat_ended differs per recipient. */
typedef struct event_frames {
    const Chat__Event *ev;
    gw_frame *main; /* every body; chat_ended: "timeout" or "partner" */
    gw_frame *you;  /* chat_ended to the user who ended it */
} event_frames;

static gw_frame *event_render(const Chat__Event *ev, const char *by)
{
    /* Every body member is a pointer in one union: any of them tells
     * whether the sub-message is there. */
    if (ev->message == NULL)
        return NULL;
    switch (ev->body_case) {
    case CHAT__EVENT__BODY_MESSAGE: return gw_render_message(ev->message);
    case CHAT__EVENT__BODY_MATCHED: return gw_render_matched(ev->matched->conversation_id);
    case CHAT__EVENT__BODY_CHAT_ENDED:
        return gw_render_chat_ended(ev->chat_ended->conversation_id, by);
    case CHAT__EVENT__BODY_PARTNER_DISCONNECTED:
        return gw_render_partner_disconnected(ev->partner_disconnected->conversation_id);
    case CHAT__EVENT__BODY_RECEIPT:
        return gw_render_receipt(ev->receipt->conversation_id, ev->receipt->seq,
                                 ev->receipt->read, ev->receipt->user_id);
    case CHAT__EVENT__BODY_PRESENCE:
        return gw_render_presence_push(ev->presence->user_id, ev->presence->online,
                                       ev->presence->last_seen);
    default: return NULL;
    }
}

/* The frame for recipient user_id (borrowed), rendered on first use. */
static gw_frame *event_frame_for(event_frames *ef, const char *user_id)
{
    const Chat__Event *ev = ef->ev;
    if (ev->body_case == CHAT__EVENT__BODY_CHAT_ENDED && ev->chat_ended != NULL &&
        !ev->chat_ended->timeout && strcmp(ev->chat_ended->ended_by, user_id) == 0) {
        if (ef->you == NULL)
            ef->you = event_render(ev, "you");
        return ef->you;
    }
    if (ef->main == NULL) {
        const char *by = ev->body_case == CHAT__EVENT__BODY_CHAT_ENDED &&
                                 ev->chat_ended != NULL && ev->chat_ended->timeout
                             ? "timeout"
                             : "partner";
        ef->main = event_render(ev, by);
    }
    return ef->main;
}

static bool event_excluded(gw_server *s, const Chat__Event *ev, const gw_conn *c)
{
    return ev->exclude != NULL && ev->exclude->conn_id == c->id &&
           ev->exclude->gateway_id != NULL &&
           strcmp(ev->exclude->gateway_id, s->gateway_id) == 0;
}

/* A stored message: to the sequencer of each connection of its recipients;
 * the sender is among them, so its other connections' cursors move too. */
static void event_message(gw_server *s, const Chat__Event *ev)
{
    const Chat__StoredMessage *m = ev->message;
    if (m == NULL || m->conversation_id == NULL || m->sender == NULL)
        return;
    gw_frame *f = NULL; /* rendered once, on first need */
    for (size_t i = 0; i < ev->n_user_ids; i++) {
        gw_user *u = gw_user_find(s, ev->user_ids[i]);
        if (u == NULL)
            continue;
        bool own = strcmp(u->id, m->sender) == 0;
        if (!own && f == NULL && (f = gw_render_message(m)) == NULL)
            return; /* out of memory: a fill brings it */
        for (gw_conn *c = u->conns; c != NULL; c = c->unext)
            gw_order_message(s, c, m->conversation_id, m->seq, own ? NULL : gw_frame_ref(f));
    }
    gw_frame_unref(f);
}

void gw_event_deliver(gw_server *s, const Chat__Event *ev)
{
    if (ev->body_case == CHAT__EVENT__BODY__NOT_SET)
        return; /* unknown body (a newer publisher): nothing to render */
    if (ev->body_case == CHAT__EVENT__BODY_TYPING) {
        gw_typing_deliver(s, ev); /* with its timeout */
        return;
    }
    if (ev->body_case == CHAT__EVENT__BODY_MESSAGE) {
        event_message(s, ev);
        return;
    }
    event_frames ef = {ev, NULL, NULL};
    for (size_t i = 0; i < ev->n_user_ids; i++) {
        gw_user *u = gw_user_find(s, ev->user_ids[i]);
        if (u == NULL)
            continue;
        for (gw_conn *c = u->conns; c != NULL; c = c->unext) {
            if (event_excluded(s, ev, c))
                continue;
            gw_frame *f = gw_frame_ref(event_frame_for(&ef, u->id));
            if (f == NULL)
                continue; /* no body, or out of memory */
            switch (ev->body_case) {
            case CHAT__EVENT__BODY_MATCHED:
                gw_order_known(s, c, ev->matched->conversation_id, 0); /* a new chat */
                gw_search_push_matched(s, c, ev->matched->conversation_id, f);
                break;
            case CHAT__EVENT__BODY_CHAT_ENDED:
                gw_search_push_ended(s, c, ev->chat_ended->conversation_id, f);
                break;
            case CHAT__EVENT__BODY_PARTNER_DISCONNECTED:
                gw_search_push_end(s, c, ev->partner_disconnected->conversation_id, f);
                break;
            default: gw_conn_push(s, c, f); break;
            }
        }
    }
    gw_frame_unref(ef.main);
    gw_frame_unref(ef.you);
}
