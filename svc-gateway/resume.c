/* Resume of a known session: timeout notices from svc-match, then every
 * unconfirmed message from svc-message, page by page. Live pushes for the
 * connection are held meanwhile and sent afterwards, without the messages
 * the replay already carried, so a conversation's replayed messages always
 * come before its live ones.
 *
 * Pages are requested one at a time, and only once the connection's output
 * has drained below a quarter of CHAT_MAX_OUTBUF: a slow reader slows the
 * replay down instead of growing the queue. */
#include "gateway.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

/* Per conversation, the range of seq this replay delivered. Replay returns
 * a conversation's messages from others above the user's delivered seq in
 * order, so a live message inside the range was already sent. */
struct gw_replayed {
    UT_hash_handle hh;
    char conv[GW_ID_MAX + 1];
    uint64_t lo, hi;
};
typedef gw_replayed resume_seen;

struct gw_resume {
    gw_queue held;     /* live pushes, in arrival order */
    resume_seen *seen; /* uthash by conv */
    char after_conv[GW_ID_MAX + 1];
    uint64_t after_seq; /* replay cursor: after (after_conv, after_seq) */
    bool waiting_drain; /* next page asked for once output drained */
};

static void resume_session(gw_server *s, gw_conn *c)
{
    Chat__SessionReq req = CHAT__SESSION_REQ__INIT;
    req.user_id = c->user->id;
    Chat__MatchRequest mr = CHAT__MATCH_REQUEST__INIT;
    mr.body_case = CHAT__MATCH_REQUEST__BODY_SESSION;
    mr.session = &req;
    s->m.be_requests[GW_SVC_MATCH]++;
    gw_backend_call(s->be, GW_OP_SESSION, c->id, NULL, &mr.base);
}

static void resume_page(gw_server *s, gw_conn *c)
{
    Chat__ReplayReq req = CHAT__REPLAY_REQ__INIT;
    req.user_id = c->user->id;
    req.after_conversation_id = c->resume->after_conv;
    req.after_seq = c->resume->after_seq;
    req.limit = GW_REPLAY_PAGE;
    Chat__MessageRequest mr = CHAT__MESSAGE_REQUEST__INIT;
    mr.body_case = CHAT__MESSAGE_REQUEST__BODY_REPLAY;
    mr.replay = &req;
    s->m.be_requests[GW_SVC_MESSAGE]++;
    gw_backend_call(s->be, GW_OP_REPLAY, c->id, NULL, &mr.base);
}

void gw_resume_start(gw_server *s, gw_conn *c)
{
    gw_resume *r = calloc(1, sizeof *r);
    if (r == NULL) {
        chat_error("resume_failed", "conn=%" PRIu64 " err=\"out of memory\"", c->id);
        return;
    }
    c->resume = r;
    resume_session(s, c);
}

static bool resume_was_replayed(gw_resume *r, const gw_frame *f)
{
    if (f->conv[0] == '\0')
        return false;
    resume_seen *e = NULL;
    HASH_FIND_STR(r->seen, f->conv, e);
    return e != NULL && f->seq >= e->lo && f->seq <= e->hi;
}

/* Ends the resume: the held pushes go out, minus the replayed ones. */
static void resume_finish(gw_server *s, gw_conn *c)
{
    gw_resume *r = c->resume;
    c->resume = NULL;
    gw_qnode *n = r->held.head;
    r->held.head = r->held.tail = NULL;
    r->held.bytes = 0;
    while (n != NULL) {
        gw_qnode *next = n->next;
        if (resume_was_replayed(r, n->f))
            gw_frame_unref(n->f);
        else
            gw_conn_send(s, c, n->f);
        free(n);
        n = next;
    }
    /* Events of messages the replay read may still be on their way. */
    gw_replayed_free(c);
    c->replayed = r->seen;
    r->seen = NULL;
    gw_resume_free(r);
}

bool gw_resume_was_replayed(gw_conn *c, const gw_frame *f)
{
    if (c->replayed == NULL || f->conv[0] == '\0')
        return false;
    gw_replayed *e = NULL;
    HASH_FIND_STR(c->replayed, f->conv, e);
    if (e == NULL)
        return false;
    if (f->seq >= e->lo && f->seq <= e->hi)
        return true;
    if (f->seq > e->hi) { /* live events have passed the replay: forget it */
        HASH_DEL(c->replayed, e);
        free(e);
    }
    return false;
}

void gw_replayed_free(gw_conn *c)
{
    gw_replayed *e, *tmp;
    HASH_ITER (hh, c->replayed, e, tmp) {
        HASH_DEL(c->replayed, e);
        free(e);
    }
    c->replayed = NULL;
}

static void resume_remember(gw_resume *r, const Chat__StoredMessage *m)
{
    resume_seen *e = NULL;
    HASH_FIND_STR(r->seen, m->conversation_id, e);
    if (e == NULL) {
        e = calloc(1, sizeof *e);
        if (e == NULL)
            return; /* at worst a live duplicate; clients drop those by seq */
        snprintf(e->conv, sizeof e->conv, "%s", m->conversation_id);
        e->lo = e->hi = m->seq;
        HASH_ADD_STR(r->seen, conv, e);
    }
    if (m->seq < e->lo)
        e->lo = m->seq;
    if (m->seq > e->hi)
        e->hi = m->seq;
}

static void resume_session_reply(gw_server *s, gw_conn *c, gw_item *it)
{
    if (it->err != 0 || it->r.match->code != CHAT__CODE__OK) {
        chat_warn("resume_session_failed", "conn=%" PRIu64 " err=%d", c->id, it->err);
    } else {
        const Chat__MatchReply *m = it->r.match;
        for (size_t i = 0; i < m->n_timed_out_conversation_ids; i++)
            gw_conn_send(s, c,
                         gw_render_chat_ended(m->timed_out_conversation_ids[i], "timeout"));
        for (size_t i = 0; i < m->n_partner_ended_conversation_ids; i++)
            gw_conn_send(s, c,
                         gw_render_chat_ended(m->partner_ended_conversation_ids[i], "partner"));
    }
    resume_page(s, c);
}

static void resume_replay_reply(gw_server *s, gw_conn *c, gw_item *it)
{
    gw_resume *r = c->resume;
    if (it->err != 0 || it->r.msg->code != CHAT__CODE__OK) {
        chat_warn("resume_replay_failed", "conn=%" PRIu64 " err=%d", c->id, it->err);
        resume_finish(s, c);
        return;
    }
    const Chat__MessageReply *rep = it->r.msg;
    for (size_t i = 0; i < rep->n_messages; i++) {
        const Chat__StoredMessage *m = rep->messages[i];
        if (m == NULL || strlen(m->conversation_id) > GW_ID_MAX)
            continue;
        gw_conn_send_paced(s, c, gw_render_message(m));
        resume_remember(r, m);
        snprintf(r->after_conv, sizeof r->after_conv, "%s", m->conversation_id);
        r->after_seq = m->seq;
    }
    /* An empty page that says "more" would loop forever: treat it as the end. */
    if (!rep->more || rep->n_messages == 0) {
        resume_finish(s, c);
        return;
    }
    r->waiting_drain = true;
    gw_resume_on_drain(s, c);
}

void gw_resume_reply(gw_server *s, gw_conn *c, gw_item *it)
{
    if (c->resume == NULL || c->closing)
        return; /* given up (closing, overflow): nothing more to send */
    if (it->op == GW_OP_SESSION)
        resume_session_reply(s, c, it);
    else
        resume_replay_reply(s, c, it);
}

void gw_resume_on_drain(gw_server *s, gw_conn *c)
{
    gw_resume *r = c->resume;
    if (r == NULL || !r->waiting_drain || c->out.bytes > (size_t)s->cfg->max_outbuf / 4)
        return;
    r->waiting_drain = false;
    resume_page(s, c);
}

void gw_resume_hold(gw_resume *r, gw_frame *f)
{
    gw_queue_push(&r->held, f);
}

size_t gw_resume_held_bytes(const gw_resume *r)
{
    return r->held.bytes;
}

void gw_resume_free(gw_resume *r)
{
    if (r == NULL)
        return;
    gw_queue_clear(&r->held);
    resume_seen *e, *tmp;
    HASH_ITER (hh, r->seen, e, tmp) {
        HASH_DEL(r->seen, e);
        free(e);
    }
    free(r);
}
