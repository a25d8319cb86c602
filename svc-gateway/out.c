/* Talking to a connection: its outgoing queue (direct frames, pushes held
 * while a resume runs, the CHAT_MAX_OUTBUF bound), closing it with a code,
 * and its queue of client requests (one in flight, the rest in order). The
 * layer every part of the gateway that sends to a client calls; it calls
 * nothing of theirs. Runs on the lws thread only. */
#include "gateway.h"

#include <inttypes.h>
#include <stdlib.h>

#include "chat/log.h"

/* Pending client requests per connection before lws stops reading from it:
 * a client that floods requests is slowed down, not buffered. */
#define CONN_MAX_WAITING 32
/* Seconds a closing connection gets to take its last frames. */
#define CONN_CLOSE_GRACE_S 5

void gw_queue_push(gw_queue *q, gw_frame *f)
{
    if (f == NULL)
        return;
    gw_qnode *n = malloc(sizeof *n);
    if (n == NULL) {
        gw_frame_unref(f);
        return;
    }
    n->next = NULL;
    n->f = f;
    if (q->tail != NULL)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    q->bytes += f->len;
}

void gw_queue_clear(gw_queue *q)
{
    gw_qnode *n = q->head;
    while (n != NULL) {
        gw_qnode *next = n->next;
        gw_frame_unref(n->f);
        free(n);
        n = next;
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
}

/* The client does not read fast enough: drop what it has not taken and
 * close with 1008, or kill it if it does not even take the close frame. */
static void conn_overflow(gw_server *s, gw_conn *c)
{
    chat_warn("conn_overflow", "conn=%" PRIu64 " queued=%zu", c->id, c->out.bytes);
    gw_queue_clear(&c->out);
    gw_queue_clear(&c->resume_held);
    gw_conn_close(s, c, 1008); /* a resume running sees closing and stops */
}

static void conn_enqueue(gw_server *s, gw_conn *c, gw_frame *f, bool limited)
{
    if (f == NULL)
        return;
    if (c->closing) {
        gw_frame_unref(f);
        return;
    }
    if (limited && c->out.bytes + f->len > (size_t)s->cfg->max_outbuf) {
        gw_frame_unref(f);
        conn_overflow(s, c);
        return;
    }
    gw_queue_push(&c->out, f);
    lws_callback_on_writable(c->wsi);
}

void gw_conn_send(gw_server *s, gw_conn *c, gw_frame *f)
{
    conn_enqueue(s, c, f, true);
}

void gw_conn_send_paced(gw_server *s, gw_conn *c, gw_frame *f)
{
    conn_enqueue(s, c, f, false);
}

void gw_conn_push(gw_server *s, gw_conn *c, gw_frame *f)
{
    if (f == NULL)
        return;
    if (c->resume == NULL || c->closing) {
        gw_conn_send(s, c, f);
        return;
    }
    gw_queue_push(&c->resume_held, f);
    if (c->resume_held.bytes > (size_t)s->cfg->max_outbuf)
        conn_overflow(s, c);
}

void gw_conn_release_held(gw_server *s, gw_conn *c)
{
    gw_qnode *n = c->resume_held.head;
    c->resume_held.head = c->resume_held.tail = NULL;
    c->resume_held.bytes = 0;
    while (n != NULL) {
        gw_qnode *next = n->next;
        gw_conn_send(s, c, n->f);
        free(n);
        n = next;
    }
}

void gw_conn_send_error(gw_server *s, gw_conn *c, gw_err code, const char *message,
                        const char *req)
{
    s->m.errors[code < GW_E_COUNT ? code : GW_E_UNAVAILABLE]++;
    gw_conn_send(s, c, gw_render_error(code, message, req, -1));
}

void gw_conn_close(gw_server *s, gw_conn *c, uint16_t code)
{
    if (c->closing)
        return;
    c->closing = true;
    c->close_code = code;
    /* Input is discarded from now on, but it must still be read (see
     * conn_close_now in conn.c), also from a client whose reading was paused. */
    lws_rx_flow_control(c->wsi, 1);
    lws_callback_on_writable(c->wsi);
    /* A stopping server bounds every close by its own deadline. lws keeps
     * timeouts in a sorted list with linear inserts: one per connection of
     * a stopping gateway made the stop quadratic (80 % of a 12,000
     * connection stop in lws_dll2_add_sorted). */
    if (!s->stopping)
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, CONN_CLOSE_GRACE_S);
}

bool gw_conn_request_wait(gw_server *s, gw_conn *c, gw_request *rq)
{
    /* Only while one is in flight: the reply dispatches the next at once,
     * so a waiting list never outlives it. */
    if (c->inflight == 0)
        return false;
    rq->next = NULL;
    if (c->wait_tail != NULL)
        c->wait_tail->next = rq;
    else
        c->wait_head = rq;
    c->wait_tail = rq;
    /* Stop reading the socket rather than queueing without bound. */
    if (++c->n_waiting == CONN_MAX_WAITING)
        lws_rx_flow_control(c->wsi, 0);
    return true;
}

void gw_conn_request_started(gw_server *s, gw_conn *c)
{
    c->inflight++;
}

gw_request *gw_conn_request_done(gw_server *s, gw_conn *c)
{
    if (c->inflight > 0)
        c->inflight--;
    gw_request *rq = c->wait_head;
    if (rq == NULL)
        return NULL;
    c->wait_head = rq->next;
    if (c->wait_head == NULL)
        c->wait_tail = NULL;
    rq->next = NULL;
    if (c->n_waiting-- == CONN_MAX_WAITING)
        lws_rx_flow_control(c->wsi, 1);
    return rq;
}

void gw_conn_waiting_free(gw_conn *c)
{
    while (c->wait_head != NULL) {
        gw_request *next = c->wait_head->next;
        gw_request_free(c->wait_head);
        c->wait_head = next;
    }
    c->wait_tail = NULL;
    c->n_waiting = 0;
}
