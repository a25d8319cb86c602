/* Client requests: a valid frame becomes a request to svc-match,
 * svc-message or svc-presence; the reply becomes the direct answer frames
 * (which echo req). */
#include "gateway.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "chat/log.h"

void gw_req_id_new(gw_server *s, char out[GW_REQ_ID_MAX])
{
    /* The counter starts at the start time in its upper bits, so a
     * restarted gateway with a fixed id does not reuse its old ids. */
    if (s->next_req_id == 0)
        s->next_req_id = (uint64_t)chat_now_ms() << 16;
    snprintf(out, GW_REQ_ID_MAX, "%s-%016" PRIx64, s->gateway_id, s->next_req_id++);
}

void gw_req_id_attach(ProtobufCMessage *msg, const char *id)
{
    if (msg->descriptor == &chat__message_request__descriptor)
        ((Chat__MessageRequest *)msg)->req_id = (char *)id;
    else if (msg->descriptor == &chat__match_request__descriptor)
        ((Chat__MatchRequest *)msg)->req_id = (char *)id;
    else if (msg->descriptor == &chat__presence_request__descriptor)
        ((Chat__PresenceRequest *)msg)->req_id = (char *)id;
}

/* The client's req for a log line (req=REQ): bytes that would end the
 * value or forge another key=value pair (space, '=', quotes, backslashes,
 * control bytes) become '_'; "-" when there is none. */
static const char *request_req_text(const gw_request *rq, char buf[GW_ID_MAX + 1])
{
    const char *r = rq->req != NULL && rq->req[0] != '\0' ? rq->req : "-";
    size_t n = 0;
    for (; r[n] != '\0' && n < GW_ID_MAX; n++) {
        unsigned char ch = (unsigned char)r[n];
        buf[n] =
            (ch <= 0x20 || ch == 0x7f || ch == '=' || ch == '"' || ch == '\\') ? '_' : r[n];
    }
    buf[n] = '\0';
    return buf;
}

/* Every client request gets an id that travels with it to the service
 * (req_id) and ends each log line about it here and there, so a client's
 * frame can be followed across the processes. */
static void request_call(gw_server *s, gw_conn *c, gw_op op, gw_request *rq,
                         ProtobufCMessage *msg)
{
    char req[GW_ID_MAX + 1];
    gw_req_id_new(s, rq->req_id);
    gw_req_id_attach(msg, rq->req_id);
    chat_log_req(rq->req_id);
    chat_debug("request", "type=%s req=%s conn=%" PRIu64, gw_req_type_name(rq->type),
               request_req_text(rq, req), c->id);
    s->m.be_requests[gw_op_service(op)]++;
    gw_conn_request_started(s, c);
    gw_backend_call(s->be, op, c->id, rq, msg);
    chat_log_req(NULL);
}

static void request_match(gw_server *s, gw_conn *c, gw_request *rq)
{
    Chat__ConnRef conn = CHAT__CONN_REF__INIT;
    conn.gateway_id = (char *)s->gateway_id;
    conn.conn_id = c->id;
    Chat__MatchRequest mr = CHAT__MATCH_REQUEST__INIT;
    Chat__StartSearchReq start = CHAT__START_SEARCH_REQ__INIT;
    Chat__StopSearchReq stop = CHAT__STOP_SEARCH_REQ__INIT;
    Chat__EndChatReq end = CHAT__END_CHAT_REQ__INIT;
    gw_op op;
    switch (rq->type) {
    case GW_REQ_START_SEARCH:
        start.user_id = c->user->id;
        start.conn = &conn;
        gw_search_started(c);
        mr.body_case = CHAT__MATCH_REQUEST__BODY_START_SEARCH;
        mr.start_search = &start;
        op = GW_OP_START_SEARCH;
        break;
    case GW_REQ_STOP_SEARCH:
        stop.user_id = c->user->id;
        mr.body_case = CHAT__MATCH_REQUEST__BODY_STOP_SEARCH;
        mr.stop_search = &stop;
        op = GW_OP_STOP_SEARCH;
        break;
    default: /* GW_REQ_END_CHAT */
        end.user_id = c->user->id;
        end.conversation_id = (char *)rq->conversation_id;
        end.conn = &conn;
        mr.body_case = CHAT__MATCH_REQUEST__BODY_END_CHAT;
        mr.end_chat = &end;
        op = GW_OP_END_CHAT;
        break;
    }
    request_call(s, c, op, rq, &mr.base);
}

static void request_send(gw_server *s, gw_conn *c, gw_request *rq)
{
    Chat__SendReq send = CHAT__SEND_REQ__INIT;
    send.conversation_id = (char *)rq->conversation_id;
    send.sender = c->user->id;
    send.client_msg_id = (char *)rq->client_msg_id;
    send.text = (char *)rq->text;
    Chat__MessageRequest mr = CHAT__MESSAGE_REQUEST__INIT;
    mr.body_case = CHAT__MESSAGE_REQUEST__BODY_SEND;
    mr.send = &send;
    request_call(s, c, GW_OP_SEND, rq, &mr.base);
}

static void request_receipt(gw_server *s, gw_conn *c, gw_request *rq)
{
    Chat__ReceiptReq r = CHAT__RECEIPT_REQ__INIT;
    r.user_id = c->user->id;
    r.conversation_id = (char *)rq->conversation_id;
    r.seq = rq->seq;
    r.read = rq->read;
    Chat__MessageRequest mr = CHAT__MESSAGE_REQUEST__INIT;
    mr.body_case = CHAT__MESSAGE_REQUEST__BODY_RECEIPT;
    mr.receipt = &r;
    request_call(s, c, GW_OP_RECEIPT, rq, &mr.base);
}

static void request_open_dm(gw_server *s, gw_conn *c, gw_request *rq)
{
    Chat__OpenDmReq r = CHAT__OPEN_DM_REQ__INIT;
    r.user_id = c->user->id;
    r.peer_id = (char *)rq->user_id;
    Chat__MessageRequest mr = CHAT__MESSAGE_REQUEST__INIT;
    mr.body_case = CHAT__MESSAGE_REQUEST__BODY_OPEN_DM;
    mr.open_dm = &r;
    request_call(s, c, GW_OP_OPEN_DM, rq, &mr.base);
}

static void request_room(gw_server *s, gw_conn *c, gw_request *rq)
{
    Chat__JoinRoomReq join = CHAT__JOIN_ROOM_REQ__INIT;
    Chat__LeaveRoomReq leave = CHAT__LEAVE_ROOM_REQ__INIT;
    Chat__MessageRequest mr = CHAT__MESSAGE_REQUEST__INIT;
    join.user_id = leave.user_id = c->user->id;
    join.room = leave.room = (char *)rq->room;
    if (rq->type == GW_REQ_JOIN_ROOM) {
        mr.body_case = CHAT__MESSAGE_REQUEST__BODY_JOIN_ROOM;
        mr.join_room = &join;
    } else {
        mr.body_case = CHAT__MESSAGE_REQUEST__BODY_LEAVE_ROOM;
        mr.leave_room = &leave;
    }
    request_call(s, c, rq->type == GW_REQ_JOIN_ROOM ? GW_OP_JOIN_ROOM : GW_OP_LEAVE_ROOM, rq,
                 &mr.base);
}

static void request_history(gw_server *s, gw_conn *c, gw_request *rq)
{
    Chat__HistoryReq r = CHAT__HISTORY_REQ__INIT;
    r.user_id = c->user->id;
    r.conversation_id = (char *)rq->conversation_id;
    r.before = rq->before;
    r.limit = rq->limit;
    Chat__MessageRequest mr = CHAT__MESSAGE_REQUEST__INIT;
    mr.body_case = CHAT__MESSAGE_REQUEST__BODY_HISTORY;
    mr.history = &r;
    request_call(s, c, GW_OP_HISTORY, rq, &mr.base);
}

static void request_typing(gw_server *s, gw_conn *c, gw_request *rq)
{
    Chat__TypingReq r = CHAT__TYPING_REQ__INIT;
    r.user_id = c->user->id;
    r.conversation_id = (char *)rq->conversation_id;
    r.start = rq->start;
    Chat__MessageRequest mr = CHAT__MESSAGE_REQUEST__INIT;
    mr.body_case = CHAT__MESSAGE_REQUEST__BODY_TYPING;
    mr.typing = &r;
    request_call(s, c, GW_OP_TYPING, rq, &mr.base);
}

static void request_query(gw_server *s, gw_conn *c, gw_request *rq)
{
    Chat__QueryReq q = CHAT__QUERY_REQ__INIT;
    q.n_user_ids = rq->n_user_ids;
    q.user_ids = (char **)rq->user_ids;
    q.user_id = c->user != NULL ? c->user->id : ""; /* the asker's request limit */
    Chat__PresenceRequest pr = CHAT__PRESENCE_REQUEST__INIT;
    pr.body_case = CHAT__PRESENCE_REQUEST__BODY_QUERY;
    pr.query = &q;
    request_call(s, c, GW_OP_QUERY, rq, &pr.base);
}

/* Starts rq's backend call (taking rq), or answers it here and returns
 * false (rq freed): then nothing is in flight for the connection. */
static bool request_start(gw_server *s, gw_conn *c, gw_request *rq)
{
    switch (rq->type) {
    case GW_REQ_START_SEARCH:
    case GW_REQ_STOP_SEARCH:
    case GW_REQ_END_CHAT: request_match(s, c, rq); return true;
    case GW_REQ_SEND: request_send(s, c, rq); return true;
    case GW_REQ_RECEIPT: request_receipt(s, c, rq); return true;
    case GW_REQ_PRESENCE: request_query(s, c, rq); return true;
    case GW_REQ_OPEN_DM:
        if (strcasecmp(rq->user_id, c->user->id) != 0) {
            request_open_dm(s, c, rq);
            return true;
        }
        gw_conn_send_error(s, c, GW_E_BAD_REQUEST, "a DM needs another user", rq->req);
        break;
    case GW_REQ_JOIN_ROOM:
    case GW_REQ_LEAVE_ROOM: request_room(s, c, rq); return true;
    case GW_REQ_HISTORY: request_history(s, c, rq); return true;
    case GW_REQ_TYPING: request_typing(s, c, rq); return true;
    }
    gw_request_free(rq);
    return false;
}

void gw_request_dispatch(gw_server *s, gw_conn *c, gw_request *rq)
{
    if (gw_conn_request_wait(s, c, rq))
        return;
    /* A request answered here leaves nothing in flight: the next waiting
     * one (if any) goes at once. */
    while (rq != NULL && !request_start(s, c, rq))
        rq = gw_conn_request_done(s, c);
}

/* The reply's error (code != OK) as an error frame; RATE_LIMITED with the
 * wait the service named. */
static void reply_error(gw_server *s, gw_conn *c, int code, const char *detail, const char *req,
                        int64_t retry_after_ms)
{
    if (code != CHAT__CODE__RATE_LIMITED) {
        gw_conn_send_error(s, c, gw_err_from_code(code), detail, req);
        return;
    }
    s->m.errors[GW_E_RATE_LIMITED]++;
    gw_conn_send(s, c,
                 gw_render_error(GW_E_RATE_LIMITED, detail, req,
                                 retry_after_ms > 0 ? retry_after_ms : 0));
}

/* The chat a match reply names, or NULL. */
static const char *reply_matched_id(const Chat__MatchReply *r)
{
    const char *id = r->matched_conversation_id;
    return id != NULL && id[0] != '\0' ? id : NULL;
}

static void reply_match(gw_server *s, gw_conn *c, const gw_request *rq,
                        const Chat__MatchReply *r)
{
    if (r->code != CHAT__CODE__OK) {
        reply_error(s, c, r->code, r->detail, rq->req, r->retry_after_ms);
        return;
    }
    switch (rq->type) {
    case GW_REQ_START_SEARCH:
        /* `matched`, when paired at once, follows in gw_search_replied. */
        gw_conn_send(s, c, gw_render_simple("searching", rq->req));
        break;
    case GW_REQ_STOP_SEARCH:
        if (reply_matched_id(r) != NULL)
            gw_order_known(s, c, reply_matched_id(r), 0); /* a new chat */
        gw_search_stopped(s, c, reply_matched_id(r), rq->req);
        break;
    default: gw_conn_send(s, c, gw_render_chat_ended(rq->conversation_id, "you")); break;
    }
}

/* A conversation id the client can take: 1-64 bytes. */
static bool reply_conv_ok(const Chat__MessageReply *r)
{
    size_t n = r->conversation_id != NULL ? strlen(r->conversation_id) : 0;
    return n > 0 && n <= GW_ID_MAX;
}

static void reply_message(gw_server *s, gw_conn *c, const gw_request *rq,
                          const Chat__MessageReply *r)
{
    if (r->code != CHAT__CODE__OK) {
        reply_error(s, c, r->code, r->detail, rq->req, r->retry_after_ms);
        return;
    }
    switch (rq->type) {
    case GW_REQ_SEND:
        if (r->message == NULL)
            break;
        gw_conn_send(s, c, gw_render_ack(rq->client_msg_id, r->message, rq->req));
        /* Its own message: the connection's cursor passes it. */
        gw_order_message(s, c, r->message->conversation_id, r->message->seq, NULL);
        return;
    case GW_REQ_OPEN_DM:
        if (!reply_conv_ok(r) || r->n_member_ids != 2)
            break;
        gw_conn_send(s, c,
                     gw_render_conversation_dm(r->conversation_id,
                                               (const char *const *)r->member_ids, rq->req));
        gw_order_known(s, c, r->conversation_id, r->floor_seq);
        return;
    case GW_REQ_JOIN_ROOM:
        if (!reply_conv_ok(r))
            break;
        gw_conn_send(s, c, gw_render_conversation_room(r->conversation_id, rq->room, rq->req));
        gw_order_known(s, c, r->conversation_id, r->floor_seq);
        return;
    case GW_REQ_LEAVE_ROOM:
        if (!reply_conv_ok(r))
            break;
        gw_conn_send(s, c, gw_render_left(r->conversation_id, rq->req));
        gw_order_forget(s, c, r->conversation_id);
        return;
    case GW_REQ_HISTORY:
        gw_conn_send(s, c,
                     gw_render_history(rq->conversation_id, r->messages, r->n_messages,
                                       r->next_before, rq->req));
        return;
    default: return; /* receipt, typing: no answer frame */
    }
    chat_warn("reply_bad", "conn=%" PRIu64 " type=%d err=\"ok without its fields\"", c->id,
              (int)rq->type);
    gw_conn_send_error(s, c, GW_E_UNAVAILABLE, NULL, rq->req);
}

static void reply_query(gw_server *s, gw_conn *c, const gw_request *rq,
                        const Chat__PresenceReply *r)
{
    if (r->code != CHAT__CODE__OK) {
        reply_error(s, c, r->code, r->detail, rq->req, r->retry_after_ms);
        return;
    }
    gw_conn_send(
        s, c,
        gw_render_presence(rq->user_ids, rq->n_user_ids, r->statuses, r->n_statuses, rq->req));
}

static void request_reply_frames(gw_server *s, gw_conn *c, gw_item *it);

void gw_request_reply(gw_server *s, gw_conn *c, gw_item *it)
{
    request_reply_frames(s, c, it);
    if (it->op == GW_OP_START_SEARCH) {
        const Chat__MatchReply *r = it->err == 0 ? it->r.match : NULL;
        bool ok = r != NULL && r->code == CHAT__CODE__OK;
        if (ok && reply_matched_id(r) != NULL)
            gw_order_known(s, c, reply_matched_id(r), 0); /* a new chat */
        gw_search_replied(s, c, ok, ok ? reply_matched_id(r) : NULL);
    }
}

static void request_reply_frames(gw_server *s, gw_conn *c, gw_item *it)
{
    const gw_request *rq = it->rq;
    if (rq == NULL)
        return;
    if (it->err != 0) {
        chat_debug("request_failed", "conn=%" PRIu64 " service=%s err=%d", c->id,
                   gw_svc_name(gw_op_service(it->op)), it->err);
        gw_conn_send_error(s, c, GW_E_UNAVAILABLE, NULL, rq->req);
        return;
    }
    switch (gw_op_service(it->op)) {
    case GW_SVC_MATCH: reply_match(s, c, rq, it->r.match); break;
    case GW_SVC_MESSAGE: reply_message(s, c, rq, it->r.msg); break;
    case GW_SVC_PRESENCE: reply_query(s, c, rq, it->r.pres); break;
    default: break;
    }
}
