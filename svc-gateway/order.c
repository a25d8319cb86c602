/* The sequencer: each connection gets each conversation's messages in seq
 * order, without a gap and without a duplicate, whatever order the events
 * arrive in and whichever of them never arrive.
 *
 * Events come from every svc-message replica over pub/sub: two replicas'
 * events overtake each other, and pub/sub drops when a queue is full. Per
 * (connection, conversation) the gateway keeps `last`, the highest seq up to
 * which the connection has everything it is owed; a message at last + 1 goes
 * out (and releases what was held behind it), one at or below `last` is a
 * duplicate, one above last + 1 is held. A gap still open after
 * CHAT_ORDER_HOLD_MS is filled from storage (svc-message `fill`: the
 * conversation's messages above `last`, the user's own included), and so is
 * every conversation of every connection when the subscription learns that
 * batches were lost (the publishers number their batches).
 *
 * The user's own messages are not sent to its connections (PROTOCOL.md:
 * "every other member"), but they still move `last`: svc-message names the
 * sender among an event's recipients, and the sender's connection learns
 * its seq from the ack.
 *
 * Where `last` starts (a connection does not owe what came before it):
 *   - the replay of a resume: its first page lists the last seq of each of
 *     the user's conversations, and each replayed message moves `last`;
 *   - join_room and open_dm replies carry the user's delivered receipt
 *     there (a new room member's is the room's last seq: older messages are
 *     not owed), and a random chat starts at 0 (its `matched`);
 *   - otherwise (a conversation joined on another connection, say) it is
 *     unknown: a seq 1 goes out at once, a later one is held, and the fill
 *     then starts at the user's delivered receipt (at least once, as replay).
 * While a resume replays, messages are only held; the end of the replay
 * releases them. Holding is bounded (GW_ORDER_MAX_HELD per conversation):
 * beyond it the newest are dropped, which is safe because the fill reads
 * everything above `last` from storage. */
#include "gateway.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <utlist.h>

#include "chat/log.h"

#define GW_ORDER_MAX_HELD 256
#define GW_ORDER_MAX_CONVS 64  /* per connection; beyond, idle ones are forgotten */
#define GW_ORDER_FILL_PAGE 100 /* svc-message's largest */
#define GW_ORDER_RETRY_MS 1000 /* after a failed fill */
/* A catch-up reads from a little before the connection opened: the gateway's
 * clock and svc-message's (which stamps messages) may differ. */
#define GW_ORDER_CATCHUP_SKEW_MS 5000

/* A message held until its predecessors are out. f NULL: the user's own
 * (moves `last`, sends nothing). */
typedef struct order_held {
    struct order_held *next;
    uint64_t seq;
    gw_frame *f;
} order_held;

struct gw_order {
    UT_hash_handle hh;              /* gw_conn.order, by conv */
    struct gw_order *dnext, *dprev; /* gw_server.order_due while due_ms != 0 */
    gw_conn *c;
    char conv[GW_ID_MAX + 1];
    uint64_t last;      /* everything owed up to here went out (with known) */
    uint64_t fill_upto; /* the fill in flight answers for seqs up to here */
    order_held *held;   /* ascending seq, all > last + 1 */
    unsigned n_held;
    int64_t due_ms;  /* mono ms when a fill is due; 0: none */
    int64_t gap_ms;  /* mono ms when the open gap was first seen; 0: none */
    int64_t used_ms; /* mono ms of the last message: which entry to forget */
    bool known;      /* `last` is set */
    bool filling;    /* a fill is in flight */
    bool refill;     /* fill again when the one in flight is answered */
};

static void order_undue(gw_server *s, gw_order *o)
{
    if (o->due_ms != 0)
        DL_DELETE2(s->order_due, o, dprev, dnext);
    o->due_ms = 0;
}

static void order_due(gw_server *s, gw_order *o, int64_t at_ms)
{
    if (o->due_ms != 0 && o->due_ms <= at_ms)
        return; /* already due earlier */
    if (o->due_ms == 0)
        DL_APPEND2(s->order_due, o, dprev, dnext);
    o->due_ms = at_ms;
}

static void order_held_free(gw_order *o)
{
    while (o->held != NULL) {
        order_held *h = o->held;
        o->held = h->next;
        gw_frame_unref(h->f);
        free(h);
    }
    o->n_held = 0;
}

static void order_drop(gw_server *s, gw_order *o)
{
    order_undue(s, o);
    order_held_free(o);
    HASH_DEL(o->c->order, o);
    o->c->n_order--;
    free(o);
}

/* Forgets the least recently used entry that holds nothing and waits for
 * nothing (a conversation that comes back starts unknown). */
static void order_evict(gw_server *s, gw_conn *c)
{
    gw_order *victim = NULL;
    for (gw_order *o = c->order; o != NULL; o = o->hh.next)
        if (o->held == NULL && !o->filling && o->due_ms == 0 &&
            (victim == NULL || o->used_ms < victim->used_ms))
            victim = o;
    if (victim != NULL)
        order_drop(s, victim);
}

static gw_order *order_get(gw_server *s, gw_conn *c, const char *conv, bool create)
{
    gw_order *o = NULL;
    HASH_FIND_STR(c->order, conv, o);
    if (o != NULL || !create || strlen(conv) > GW_ID_MAX)
        return o;
    if (c->n_order >= GW_ORDER_MAX_CONVS)
        order_evict(s, c);
    o = calloc(1, sizeof *o);
    if (o == NULL)
        return NULL;
    o->c = c;
    snprintf(o->conv, sizeof o->conv, "%s", conv);
    o->used_ms = chat_mono_ms();
    HASH_ADD_STR(c->order, conv, o);
    c->n_order++;
    return o;
}

/* Sends one message that is next in line (f NULL: the user's own). */
static void order_emit(gw_server *s, gw_order *o, uint64_t seq, gw_frame *f)
{
    o->last = seq;
    o->known = true;
    if (f != NULL)
        gw_conn_send(s, o->c, f);
}

/* Sends what the held list has in line, drops what is now a duplicate,
 * and schedules a fill for a gap that is left. */
static void order_release(gw_server *s, gw_order *o)
{
    if (o->c->resume != NULL)
        return; /* the replay is still running: all waits for its end */
    while (o->held != NULL && o->known && o->held->seq <= o->last + 1) {
        order_held *h = o->held;
        o->held = h->next;
        o->n_held--;
        if (h->seq == o->last + 1)
            order_emit(s, o, h->seq, h->f);
        else
            gw_frame_unref(h->f); /* at or below last: a duplicate */
        free(h);
    }
    if (o->held == NULL) {
        if (o->gap_ms != 0 && !o->filling) {
            int64_t ms = chat_mono_ms() - o->gap_ms;
            s->m.order_gaps_closed++;
            s->m.order_gap_ms_sum += (uint64_t)ms;
            if ((uint64_t)ms > s->m.order_gap_ms_max)
                s->m.order_gap_ms_max = (uint64_t)ms;
            o->gap_ms = 0;
        }
        if (!o->filling)
            order_undue(s, o);
        return;
    }
    int64_t now = chat_mono_ms();
    if (o->gap_ms == 0)
        o->gap_ms = now;
    if (!o->filling)
        order_due(s, o, o->gap_ms + s->cfg->order_hold_ms);
}

/* Puts a message into the held list in seq order (a second copy of a seq
 * is dropped). Beyond the bound the newest is dropped: the fill reads it. */
static void order_hold(gw_server *s, gw_order *o, uint64_t seq, gw_frame *f)
{
    order_held **pp = &o->held;
    while (*pp != NULL && (*pp)->seq < seq)
        pp = &(*pp)->next;
    if ((*pp != NULL && (*pp)->seq == seq) || o->n_held >= GW_ORDER_MAX_HELD) {
        gw_frame_unref(f);
        return;
    }
    order_held *h = malloc(sizeof *h);
    if (h == NULL) {
        gw_frame_unref(f);
        return;
    }
    h->seq = seq;
    h->f = f;
    h->next = *pp;
    *pp = h;
    o->n_held++;
    s->m.order_held++;
}

void gw_order_message(gw_server *s, gw_conn *c, const char *conv, uint64_t seq, gw_frame *f)
{
    if (c->closing || seq == 0) {
        gw_frame_unref(f);
        return;
    }
    /* An own message tells where a conversation stands only as its first. */
    gw_order *o = order_get(s, c, conv, f != NULL || seq == 1);
    if (o == NULL) {
        /* An own message of a conversation this connection does not follow
         * says nothing; out of memory sends as it comes. */
        if (f != NULL)
            gw_conn_send(s, c, f);
        return;
    }
    o->used_ms = chat_mono_ms();
    if (o->known && seq <= o->last) {
        gw_frame_unref(f); /* a duplicate (replayed, filled, or twice published) */
        return;
    }
    if (c->resume == NULL && ((o->known && seq == o->last + 1) || (!o->known && seq == 1))) {
        order_emit(s, o, seq, f);
    } else if (f == NULL && !o->known) {
        return; /* nothing to learn from it */
    } else {
        order_hold(s, o, seq, f);
    }
    order_release(s, o);
}

void gw_order_known(gw_server *s, gw_conn *c, const char *conv, uint64_t last)
{
    gw_order *o = order_get(s, c, conv, true);
    if (o == NULL || o->known)
        return;
    o->known = true;
    o->last = last;
    order_release(s, o);
}

void gw_order_replayed(gw_server *s, gw_conn *c, const Chat__StoredMessage *m)
{
    /* Nothing else sends this connection messages while its replay runs
     * (fills wait for its end): a replayed one always goes out. Its seq
     * may be below the floor (the replay carries what came before it) or
     * jump (replay skips the user's own messages). */
    gw_order *o = order_get(s, c, m->conversation_id, true);
    if (o != NULL && (!o->known || m->seq > o->last)) {
        o->last = m->seq;
        o->known = true;
    }
    gw_conn_send_paced(s, c, gw_render_message(m));
}

static void order_fill(gw_server *s, gw_order *o);
static void order_catchup(gw_server *s, gw_conn *c);

void gw_order_resume_done(gw_server *s, gw_conn *c)
{
    bool resync = c->order_resync;
    c->order_resync = false;
    gw_order *o, *tmp;
    HASH_ITER (hh, c->order, o, tmp) {
        order_release(s, o);
        if (resync && o->known && !o->filling && o->due_ms == 0)
            order_fill(s, o);
    }
    if (resync)
        order_catchup(s, c);
}

void gw_order_forget(gw_server *s, gw_conn *c, const char *conv)
{
    gw_order *o = order_get(s, c, conv, false);
    if (o != NULL && !o->filling)
        order_drop(s, o);
}

/* ---- fills ---- */

static void order_fill(gw_server *s, gw_order *o)
{
    order_undue(s, o);
    if (o->filling) {
        o->refill = true;
        return;
    }
    Chat__FillReq req = CHAT__FILL_REQ__INIT;
    req.user_id = o->c->user->id;
    req.conversation_id = o->conv;
    req.after_seq = o->known ? o->last : 0;
    req.from_receipt = !o->known;
    req.limit = GW_ORDER_FILL_PAGE;
    Chat__MessageRequest mr = CHAT__MESSAGE_REQUEST__INIT;
    mr.body_case = CHAT__MESSAGE_REQUEST__BODY_FILL;
    mr.fill = &req;
    o->fill_upto = o->last;
    for (order_held *h = o->held; h != NULL; h = h->next)
        o->fill_upto = h->seq; /* the held ones were stored before we ask */
    o->filling = true;
    o->refill = false;
    s->m.order_fills++;
    s->m.be_requests[GW_SVC_MESSAGE]++;
    gw_backend_call(s->be, GW_OP_FILL, o->c->id, NULL, &mr.base);
}

void gw_order_sweep(gw_server *s, int64_t now_mono_ms)
{
    gw_order *o, *tmp;
    DL_FOREACH_SAFE2(s->order_due, o, tmp, dnext)
    if (o->due_ms <= now_mono_ms && o->c->resume == NULL && !o->c->closing)
        order_fill(s, o);
}

void gw_order_resync(gw_server *s)
{
    for (gw_conn *c = s->conns; c != NULL; c = c->hh.next) {
        if (c->closing || c->user == NULL)
            continue;
        if (c->resume != NULL) { /* its end fills (its fills would race the replay) */
            c->order_resync = true;
            continue;
        }
        gw_order *o, *tmp;
        HASH_ITER (hh, c->order, o, tmp)
            if (o->known || o->held != NULL)
                order_fill(s, o);
        order_catchup(s, c);
    }
}

/* The reply's messages: authoritative, ascending, contiguous above the
 * cursor asked for (the user's own included). */
static void order_take_fill(gw_server *s, gw_order *o, const Chat__MessageReply *r)
{
    for (size_t i = 0; i < r->n_messages; i++) {
        const Chat__StoredMessage *m = r->messages[i];
        if (m == NULL || (o->known && m->seq <= o->last))
            continue;
        gw_frame *f = strcmp(m->sender, o->c->user->id) == 0 ? NULL : gw_render_message(m);
        order_emit(s, o, m->seq, f);
        s->m.order_filled++;
    }
}

/* A fill that failed (no reply, or storage unavailable) is tried again
 * later. Without a reply there is no conversation id to tell which one
 * failed: every fill of the connection in flight is retried (a fill is
 * idempotent; a late answer to one of them is ignored). */
static void order_fill_failed(gw_server *s, gw_conn *c, gw_order *only, int err)
{
    s->m.order_fill_failed++;
    chat_warn("order_fill_failed", "conn=%" PRIu64 " conv=%s err=%d", c->id,
              only != NULL ? only->conv : "*", err);
    int64_t at = chat_mono_ms() + GW_ORDER_RETRY_MS;
    gw_order *o, *tmp;
    HASH_ITER (hh, c->order, o, tmp) {
        if (!o->filling || (only != NULL && o != only))
            continue;
        o->filling = false;
        order_due(s, o, at);
    }
}

void gw_order_fill_reply(gw_server *s, gw_conn *c, gw_item *it)
{
    const Chat__MessageReply *r = it->err == 0 ? it->r.msg : NULL;
    const char *conv = r != NULL && r->conversation_id != NULL ? r->conversation_id : "";
    if (r == NULL || (conv[0] == '\0' && (r->code == CHAT__CODE__UNAVAILABLE ||
                                          r->code == CHAT__CODE__INTERNAL))) {
        order_fill_failed(s, c, NULL, it->err != 0 ? it->err : (int)r->code);
        return;
    }
    if (conv[0] == '\0') { /* refused as invalid: asking again cannot help */
        chat_error("order_fill_refused", "conn=%" PRIu64 " code=%d", c->id, (int)r->code);
        gw_order *o, *tmp;
        HASH_ITER (hh, c->order, o, tmp)
            if (o->filling)
                order_drop(s, o);
        return;
    }
    gw_order *o = order_get(s, c, conv, false);
    if (o == NULL || !o->filling)
        return;
    if (r->code == CHAT__CODE__UNAVAILABLE || r->code == CHAT__CODE__INTERNAL) {
        order_fill_failed(s, c, o, (int)r->code);
        return;
    }
    o->filling = false;
    if (r->code != CHAT__CODE__OK) { /* not a member (left), or gone */
        order_drop(s, o);
        return;
    }
    order_take_fill(s, o, r);
    if (r->more || o->refill) {
        order_fill(s, o);
        return;
    }
    /* Everything stored up to fill_upto has been read: a held seq up to
     * there that did not come back is at or below the user's receipt. */
    if (!o->known || o->last < o->fill_upto) {
        o->known = true;
        o->last = o->fill_upto > o->last ? o->fill_upto : o->last;
    }
    order_release(s, o);
}

/* ---- catch-up: conversations the connection does not follow ---- */

/* A lost event may have been a conversation's first message here (a DM
 * the peer just opened): no entry knows of it. After lost events each
 * connection also asks for the messages of its user's other conversations
 * stored since it opened (those before were replayed, or not owed). */
struct gw_catchup {
    struct gw_catchup *dnext, *dprev; /* gw_server.catchup_due while due_ms != 0 */
    gw_conn *c;
    char after_conv[GW_ID_MAX + 1]; /* page cursor */
    uint64_t after_seq;
    int64_t due_ms; /* a retry after a failure; 0: none */
    bool inflight, again;
};

static void catchup_page(gw_server *s, gw_catchup *k)
{
    gw_conn *c = k->c;
    const char *skip[GW_ORDER_MAX_CONVS];
    size_t n = 0;
    /* Followed conversations have their own fills; the one the cursor is
     * in stays, or the rest of it would be skipped. */
    for (gw_order *o = c->order; o != NULL && n < GW_ORDER_MAX_CONVS; o = o->hh.next)
        if (strcmp(o->conv, k->after_conv) != 0)
            skip[n++] = o->conv;
    Chat__FillReq req = CHAT__FILL_REQ__INIT;
    req.user_id = c->user->id;
    req.conversation_id = "";
    req.after_conversation_id = k->after_conv;
    req.after_seq = k->after_seq;
    req.since_ts = c->opened_ms - GW_ORDER_CATCHUP_SKEW_MS;
    req.n_skip_conversation_ids = n;
    req.skip_conversation_ids = (char **)skip;
    req.limit = GW_ORDER_FILL_PAGE;
    Chat__MessageRequest mr = CHAT__MESSAGE_REQUEST__INIT;
    mr.body_case = CHAT__MESSAGE_REQUEST__BODY_FILL;
    mr.fill = &req;
    k->inflight = true;
    s->m.order_catchups++;
    s->m.be_requests[GW_SVC_MESSAGE]++;
    gw_backend_call(s->be, GW_OP_CATCHUP, c->id, NULL, &mr.base);
}

static void catchup_free(gw_server *s, gw_conn *c)
{
    gw_catchup *k = c->catchup;
    if (k == NULL)
        return;
    if (k->due_ms != 0)
        DL_DELETE2(s->catchup_due, k, dprev, dnext);
    free(k);
    c->catchup = NULL;
}

static void order_catchup(gw_server *s, gw_conn *c)
{
    gw_catchup *k = c->catchup;
    if (k != NULL) {
        k->again = k->inflight || k->due_ms != 0;
        return;
    }
    if ((k = calloc(1, sizeof *k)) == NULL)
        return;
    k->c = c;
    c->catchup = k;
    catchup_page(s, k);
}

void gw_order_catchup_reply(gw_server *s, gw_conn *c, gw_item *it)
{
    gw_catchup *k = c->catchup;
    if (k == NULL || !k->inflight)
        return;
    k->inflight = false;
    const Chat__MessageReply *r = it->err == 0 ? it->r.msg : NULL;
    if (r == NULL || r->code != CHAT__CODE__OK) {
        s->m.order_fill_failed++;
        chat_warn("order_catchup_failed", "conn=%" PRIu64 " err=%d", c->id,
                  r == NULL ? it->err : (int)r->code);
        if (r != NULL && r->code != CHAT__CODE__UNAVAILABLE &&
            r->code != CHAT__CODE__INTERNAL) {
            catchup_free(s, c); /* refused: asking again cannot help */
            return;
        }
        k->due_ms = chat_mono_ms() + GW_ORDER_RETRY_MS;
        DL_APPEND2(s->catchup_due, k, dprev, dnext);
        return;
    }
    for (size_t i = 0; i < r->n_messages; i++) {
        const Chat__StoredMessage *m = r->messages[i];
        if (m == NULL || m->conversation_id == NULL || strlen(m->conversation_id) > GW_ID_MAX)
            continue;
        snprintf(k->after_conv, sizeof k->after_conv, "%s", m->conversation_id);
        k->after_seq = m->seq;
        gw_frame *f = gw_render_message(m);
        gw_order *o = order_get(s, c, m->conversation_id, true);
        s->m.order_filled++;
        if (o != NULL && !o->known && o->held == NULL)
            order_emit(s, o, m->seq, f); /* above the receipt: where it starts */
        else
            gw_order_message(s, c, m->conversation_id, m->seq, f);
    }
    if (r->more && r->n_messages > 0) {
        catchup_page(s, k);
    } else if (k->again) {
        k->again = false;
        k->after_conv[0] = '\0';
        k->after_seq = 0;
        catchup_page(s, k);
    } else {
        catchup_free(s, c);
    }
}

void gw_order_free(gw_server *s, gw_conn *c)
{
    catchup_free(s, c);
    gw_order *o, *tmp;
    HASH_ITER (hh, c->order, o, tmp) {
        order_undue(s, o);
        order_held_free(o);
        HASH_DEL(c->order, o);
        free(o);
    }
    c->n_order = 0;
}
