/* Resume of a known session: timeout notices from svc-match, then every
 * unconfirmed message from svc-message, page by page. Live pushes for the
 * connection are held meanwhile and sent afterwards; live messages wait in
 * the sequencer (order.c), which the replay's first page tells where each
 * conversation stood and each replayed message moves on, so a
 * conversation's replayed messages come before its live ones and none
 * comes twice.
 *
 * Pages are requested one at a time, and only once the connection's output
 * has drained below a quarter of CHAT_MAX_OUTBUF: a slow reader slows the
 * replay down instead of growing the queue. */
#include "gateway.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

struct gw_resume {
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

/* Ends the resume: the held pushes go out, then the held messages. */
static void resume_finish(gw_server *s, gw_conn *c)
{
    gw_resume_free(c->resume);
    c->resume = NULL;
    gw_conn_release_held(s, c);
    gw_order_resume_done(s, c);
}

static void resume_session_reply(gw_server *s, gw_conn *c, gw_item *it)
{
    if (it->err != 0 || it->r.match->code != CHAT__CODE__OK) {
        chat_warn("resume_session_failed", "conn=%" PRIu64 " err=%d", c->id, it->err);
    } else {
        const Chat__MatchReply *m = it->r.match;
        for (size_t i = 0; i < m->n_timed_out_conversation_ids; i++)
            gw_search_notice_ended(s, c, m->timed_out_conversation_ids[i], "timeout");
        for (size_t i = 0; i < m->n_partner_ended_conversation_ids; i++)
            gw_search_notice_ended(s, c, m->partner_ended_conversation_ids[i], "partner");
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
    /* The first page: where each conversation stood when the replay began
     * (what the replay does not carry, the connection does not owe). */
    for (size_t i = 0; i < rep->n_floors; i++)
        if (rep->floors[i] != NULL && rep->floors[i]->conversation_id != NULL)
            gw_order_known(s, c, rep->floors[i]->conversation_id, rep->floors[i]->seq);
    for (size_t i = 0; i < rep->n_messages; i++) {
        const Chat__StoredMessage *m = rep->messages[i];
        if (m == NULL || strlen(m->conversation_id) > GW_ID_MAX)
            continue;
        gw_order_replayed(s, c, m);
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

void gw_resume_free(gw_resume *r)
{
    if (r == NULL)
        return;
    free(r);
}
