/* The random-chat frames of one connection in an order a client can follow
 * (gateway.h, search.c section). svc-match's replies and its events take
 * different sockets, and its replicas publish independently, so `matched`
 * can come before `searching`, after `search_stopped` or after the chat's
 * `chat_ended`. Each connection keeps a 64-bit hash of the random chat it
 * knows (8 bytes instead of a copy of the id; two chats colliding in 64 bits
 * is not a practical concern) and, while its start_search is asked, holds
 * the random-chat pushes that arrive. Runs on the lws thread only. */
#include "gateway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A push that waits for the start_search reply. */
struct gw_search_held {
    gw_search_held *next;
    gw_frame *f;
    bool end; /* chat_ended / partner_disconnected; else matched */
    char conv[GW_ID_MAX + 1];
};

/* FNV-1a, never 0 (0: no chat known). */
static uint64_t search_key(const char *conversation_id)
{
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)conversation_id; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h != 0 ? h : 1;
}

/* Delivers `matched` (f, or rendered here when NULL) unless c knows the
 * chat already. direct: a reply (not held by a resume). */
static void search_matched(gw_server *s, gw_conn *c, const char *conv, gw_frame *f, bool direct)
{
    uint64_t k = search_key(conv);
    if (k == c->chat_key) {
        gw_frame_unref(f);
        return;
    }
    c->chat_key = k;
    c->searching = false;
    if (f == NULL)
        f = gw_render_matched(conv);
    if (direct)
        gw_conn_send(s, c, f);
    else
        gw_conn_push(s, c, f);
}

/* Delivers the end of a chat, after its `matched` if c was still waiting
 * for one: the end overtook it, and that `matched` will be dropped. */
static void search_end(gw_server *s, gw_conn *c, const char *conv, gw_frame *f)
{
    uint64_t k = search_key(conv);
    if (k != c->chat_key) {
        if (c->searching)
            search_matched(s, c, conv, NULL, false);
        c->chat_key = k; /* a late `matched` of it is stale */
    }
    gw_conn_push(s, c, f);
}

/* Holds f until the start_search reply (keeps arrival order). */
static void search_hold(gw_conn *c, const char *conv, gw_frame *f, bool end)
{
    gw_search_held *h = calloc(1, sizeof *h);
    if (h == NULL) {
        gw_frame_unref(f); /* out of memory: as if the push were lost */
        return;
    }
    h->f = f;
    h->end = end;
    snprintf(h->conv, sizeof h->conv, "%s", conv);
    gw_search_held **tail = &c->held;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = h;
}

void gw_search_started(gw_conn *c)
{
    c->search_inflight = true;
}

void gw_search_replied(gw_server *s, gw_conn *c, bool ok, const char *matched_id)
{
    c->search_inflight = false;
    c->searching = ok;
    if (matched_id != NULL)
        search_matched(s, c, matched_id, NULL, true);
    gw_search_held *h = c->held;
    c->held = NULL;
    while (h != NULL) {
        gw_search_held *next = h->next;
        if (h->end)
            search_end(s, c, h->conv, h->f);
        else
            search_matched(s, c, h->conv, h->f, false);
        free(h);
        h = next;
    }
}

void gw_search_stopped(gw_server *s, gw_conn *c, const char *matched_id, const char *req)
{
    if (matched_id != NULL)
        search_matched(s, c, matched_id, NULL, true);
    c->searching = false;
    gw_conn_send(s, c, gw_render_simple("search_stopped", req));
}

void gw_search_push_matched(gw_server *s, gw_conn *c, const char *conversation_id, gw_frame *f)
{
    if (c->search_inflight)
        search_hold(c, conversation_id, f, false);
    else
        search_matched(s, c, conversation_id, f, false);
}

void gw_search_push_end(gw_server *s, gw_conn *c, const char *conversation_id, gw_frame *f)
{
    if (c->search_inflight)
        search_hold(c, conversation_id, f, true);
    else
        search_end(s, c, conversation_id, f);
}

/* True the first time c is told conv ended (one chat remembered: a
 * connection has one random chat at a time). */
static bool search_end_once(gw_conn *c, const char *conv)
{
    uint64_t k = search_key(conv);
    if (k == c->ended_key)
        return false;
    c->ended_key = k;
    return true;
}

void gw_search_push_ended(gw_server *s, gw_conn *c, const char *conversation_id, gw_frame *f)
{
    if (search_end_once(c, conversation_id))
        gw_search_push_end(s, c, conversation_id, f);
    else
        gw_frame_unref(f);
}

void gw_search_notice_ended(gw_server *s, gw_conn *c, const char *conversation_id,
                            const char *by)
{
    if (search_end_once(c, conversation_id))
        gw_conn_send(s, c, gw_render_chat_ended(conversation_id, by));
}

void gw_search_free(gw_conn *c)
{
    while (c->held != NULL) {
        gw_search_held *next = c->held->next;
        gw_frame_unref(c->held->f);
        free(c->held);
        c->held = next;
    }
}
