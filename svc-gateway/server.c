/* The lws context: one vhost, one protocol (protocols[0], so clients that
 * name no subprotocol get it) for both HTTP and WebSocket, the callback that
 * routes lws events to conn.c / http.c, the drain of the backend queue, and
 * the timers (shutdown check, presence heartbeat). */
#include "gateway.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

#define SERVER_TICK_MS 100
#define SERVER_STOP_WAIT_MS 3000 /* for clients to take their 1001 close */

/* WebSocket keepalive: ping after 30 s of silence, drop after 60 s. */
static const lws_retry_bo_t server_keepalive = {
    .secs_since_valid_ping = 30,
    .secs_since_valid_hangup = 60,
};

/* A backend request's outcome and latency, by op. */
static void server_observe(gw_server *s, const gw_item *it)
{
    if (it->t0_ns == 0 || it->op >= GW_OP_COUNT)
        return;
    int code = GW_OUTCOME_TRANSPORT;
    if (it->err == 0) {
        switch (gw_op_service(it->op)) {
        case GW_SVC_MATCH: code = it->r.match->code; break;
        case GW_SVC_MESSAGE: code = it->r.msg->code; break;
        case GW_SVC_PRESENCE: code = it->r.pres->code; break;
        default: break;
        }
    }
    if (code < 0 || code >= GW_OUTCOMES)
        code = CHAT__CODE__INTERNAL;
    s->m.be_outcomes[it->op][code]++;
    chat_hist_observe(&s->m.be_latency[it->op], (double)(chat_mono_ns() - it->t0_ns) / 1e9);
}

/* One answer from nng, on the lws thread. */
static void server_dispatch(gw_server *s, gw_item *it)
{
    gw_svc svc = gw_op_service(it->op);
    if (it->err != 0 && svc != GW_SVC_EVENTS)
        s->m.be_failures[svc]++;
    server_observe(s, it);
    switch (it->op) {
    case GW_OP_EVENT:
        s->m.events_in++;
        if (it->err != 0)
            s->m.events_bad++;
        else
            gw_event_deliver(s, it->r.ev);
        return;
    case GW_OP_CONNECT:
    case GW_OP_DISCONNECT:
    case GW_OP_HEARTBEAT: gw_presence_reply(s, it); return;
    case GW_OP_API_HISTORY: gw_api_reply(s, it); return;
    case GW_OP_BANS: gw_bans_reply(s, it); return;
    case GW_OP_ADMIN: gw_admin_run(s, it); return;
    case GW_OP_EVENTS_LOST:
        s->m.events_lost_signals++;
        gw_order_resync(s);
        return;
    default: break;
    }
    gw_conn *c = gw_conn_find(s, it->conn_id);
    if (c == NULL)
        return; /* the connection closed meanwhile: nobody to tell */
    if (it->op == GW_OP_SESSION || it->op == GW_OP_REPLAY) {
        gw_resume_reply(s, c, it);
        return;
    }
    if (it->op == GW_OP_FILL || it->op == GW_OP_CATCHUP) {
        if (it->op == GW_OP_FILL)
            gw_order_fill_reply(s, c, it);
        else
            gw_order_catchup_reply(s, c, it);
        return;
    }
    if (it->op == GW_OP_REGISTER)
        gw_conn_registered(s, c, it);
    else
        gw_request_reply(s, c, it);
    gw_request *next = gw_conn_request_done(s, c);
    if (next != NULL)
        gw_request_dispatch(s, c, next);
}

/* New sockets from the front thread become lws connections. */
static void server_adopt(gw_server *s)
{
    gw_accepted *a = s->front != NULL ? gw_front_take(s->front) : NULL;
    while (a != NULL) {
        gw_accepted *next = a->next;
        /* NULL: failed, or already served and closed (a refused upgrade);
         * either way lws closed the socket itself. Otherwise the wsi holds
         * the admission until LWS_CALLBACK_WSI_DESTROY. */
        struct lws *wsi = lws_adopt_socket_vhost_readbuf(s->vhost, a->fd, a->data, a->len);
        if (wsi == NULL) {
            chat_debug("adopt_closed", "fd=%d", a->fd);
            gw_admit_release(s->admit, a->held);
        } else {
            lws_set_opaque_user_data(wsi, a->held);
        }
        free(a);
        a = next;
    }
}

static void server_drain(gw_server *s)
{
    server_adopt(s);
    gw_item *it = gw_backend_take(s->be);
    while (it != NULL) {
        gw_item *next = it->next;
        /* Lines about a client's request carry its id. */
        chat_log_req(it->rq != NULL ? it->rq->req_id : NULL);
        server_dispatch(s, it);
        chat_log_req(NULL);
        gw_item_free(it);
        it = next;
    }
}

/* Answers a refused upgrade with a complete HTTP/1.1 response. Written
 * raw: at this stage lws does not know the request's HTTP version yet and
 * its helpers would answer "HTTP/1.0", which WebSocket clients reject. */
static int server_refuse_upgrade(struct lws *wsi, const char *status, const char *body)
{
    char buf[LWS_PRE + 320];
    /* 426 names the version we speak (RFC 6455, 4.4). */
    const char *extra = strncmp(status, "426", 3) == 0 ? "sec-websocket-version: 13\r\n" : "";
    int n = snprintf(buf + LWS_PRE, sizeof buf - LWS_PRE,
                     "HTTP/1.1 %s\r\n%scontent-type: text/plain; charset=utf-8\r\n"
                     "content-length: %zu\r\nconnection: close\r\n\r\n%s",
                     status, extra, strlen(body), body);
    if (n < 0 || (size_t)n >= sizeof buf - LWS_PRE)
        return -1;
    if (lws_write(wsi, (unsigned char *)buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_HEADERS) != n)
        return -1;
    return 1; /* lws ends the transaction (and, with HTTP/1.0 state, the connection) */
}

/* Accept the upgrade on /ws only (and not while stopping). */
static int server_confirm_upgrade(gw_server *s, struct lws *wsi, const char *what)
{
    if (what == NULL || strcmp(what, "websocket") != 0)
        return 0;
    if (s->stopping)
        return server_refuse_upgrade(wsi, "503 Service Unavailable", "stopping\n");
    /* Draining (drain.c): the client's connect fails and it retries,
     * reaching another gateway; nothing of it was registered here. */
    if (s->drain.on)
        return server_refuse_upgrade(wsi, "503 Service Unavailable", "draining\n");
    char uri[16];
    int n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    if (n <= 0 || strcmp(uri, "/ws") != 0)
        return server_refuse_upgrade(wsi, "404 Not Found", "not found\n");
    /* lws would upgrade whatever version a client names. */
    char version[8];
    n = lws_hdr_copy(wsi, version, sizeof version, WSI_TOKEN_VERSION);
    if (n <= 0 || strcmp(version, "13") != 0)
        return server_refuse_upgrade(wsi, "426 Upgrade Required",
                                     "Sec-WebSocket-Version must be 13\n");
    return 0;
}

static int server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                           void *in, size_t len)
{
    gw_server *s = lws_context_user(lws_get_context(wsi));
    gw_conn *c = user; /* only for the per-connection reasons below */

    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: return server_confirm_upgrade(s, wsi, in);
    case LWS_CALLBACK_ESTABLISHED: return gw_conn_open(s, c, wsi);
    case LWS_CALLBACK_RECEIVE: return gw_conn_receive(s, c, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE: return gw_conn_writeable(s, c);
    case LWS_CALLBACK_CLOSED: gw_conn_closed(s, c); return 0;
    case LWS_CALLBACK_HTTP:
        if (c == NULL)
            return -1;
        return gw_http_request(s, c, wsi, in);
    case LWS_CALLBACK_HTTP_WRITEABLE: return gw_http_writeable(s, c, wsi);
    case LWS_CALLBACK_HTTP_FILE_COMPLETION: return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        gw_api_closed(s, c);
        gw_http_free(c);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: server_drain(s); return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        gw_admit_release(s->admit, lws_get_opaque_user_data(wsi));
        lws_set_opaque_user_data(wsi, NULL);
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    default: return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static struct lws_protocols server_protocols[] = {
    /* name, callback, per-session size, rx buffer (large messages come in
     * pieces), id, user, tx packet size (a whole frame per send) */
    /* rx buffer: lws allocates it per connection, so it is most of an idle
     * connection's memory; bigger messages arrive in pieces and are
     * reassembled (conn.c). 1 KiB holds a typical chat frame whole. */
    {"chat", server_callback, sizeof(gw_conn), 1024, 0, NULL, GW_MAX_MESSAGE + 64},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void server_begin_stop(gw_server *s)
{
    s->stopping = true;
    /* Heartbeats go on while the connections close (that can take longer
     * than presence's TTL with many); fini stops them, then says "stopping". */
    gw_front_close(s->front); /* stop accepting */
    s->front = NULL;
    s->stop_deadline_ms = chat_mono_ms() + SERVER_STOP_WAIT_MS;
    chat_info("stopping", "connections=%u", s->n_conns);
    /* Presence hears of all of them at once when we are done (fini). */
    s->closing_all = true;
    for (gw_conn *c = s->conns; c != NULL; c = c->hh.next)
        gw_conn_close(s, c, 1001);
}

static void server_tick(lws_sorted_usec_list_t *sul)
{
    gw_server *s = lws_container_of(sul, gw_server, sul_tick);
    if (!s->stopping && chat_stopping())
        server_begin_stop(s);
    gw_heartbeat_connections(s->hb, s->n_conns);
    gw_admin_mirror(s->admin, !s->stopping && gw_http_ready(s));
    gw_drain_tick(s);
    gw_typing_sweep(s, chat_mono_ms());
    gw_order_sweep(s, chat_mono_ms());
    if (s->stopping && (s->n_conns == 0 || chat_mono_ms() >= s->stop_deadline_ms)) {
        s->done = true;
        if (s->loop != NULL) {
            ev_break(s->loop, EVBREAK_ALL);
            return;
        }
        /* Timers run before lws polls: without a wake-up, this same
         * lws_service() would sleep until the next timer. */
        lws_cancel_service(s->ctx);
        return;
    }
    lws_sul_schedule(s->ctx, 0, &s->sul_tick, server_tick, SERVER_TICK_MS * LWS_US_PER_MS);
}

/* lws's own log lines, into ours. */
static void server_lws_log(int level, const char *line)
{
    /* lws 4.1 logs every adoption with data at error level: not an error. */
    if (strncmp(line, "adopt_socket_readbuf:", 21) == 0 ||
        strstr(line, "] E: adopt_socket_readbuf:") != NULL)
        return;
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (level & LLL_ERR)
        chat_error("lws", "msg=\"%.*s\"", (int)n, line);
    else
        chat_warn("lws", "msg=\"%.*s\"", (int)n, line);
}

/* One lws context and vhost. loop: a libev loop for lws to run on (lws
 * then waits with epoll, whose cost does not grow with the number of
 * idle connections the way poll()'s does), or NULL for lws's own poll(). */
static int server_try_context(gw_server *s, struct ev_loop *loop)
{
    /* lws does not listen itself: the front thread hands it the sockets. */
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *loops[1] = {loop};
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (loop != NULL) {
        /* Our own loop ("foreign"), so lws installs no signal handler. */
        info.options |= LWS_SERVER_OPTION_LIBEV;
        info.foreign_loops = loops;
    }
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = server_protocols;
    info.user = s;
    info.retry_and_idle_policy = &server_keepalive;
    info.max_http_header_data = 4096;
    /* lws's handshake and header timeouts: its 10 s, whatever
     * CHAT_HANDSHAKE_TIMEOUT_MS (the wait for the request line) says. */
    info.timeout_secs = 10;
    info.timeout_secs_ah_idle = 10;
    s->ctx = lws_create_context(&info);
    if (s->ctx != NULL)
        s->vhost = lws_create_vhost(s->ctx, &info);
    if (s->vhost != NULL)
        return 0;
    if (s->ctx != NULL)
        lws_context_destroy(s->ctx);
    s->ctx = NULL;
    return -1;
}

/* Backend flushes on libev. lws 4.1's libev timer cannot move a timer
 * that is already armed to an earlier time (it ev_timer_set()s an active
 * watcher), so a lws timer due sooner than the one armed fires late (up to
 * the 100 ms tick): flushes use watchers of our own. */
typedef struct server_flush_w {
    ev_idle idle;   /* end of the current pass */
    ev_timer timer; /* linger */
    gw_server *s;
} server_flush_w;

static void server_flush_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    server_flush_w *f = lws_container_of(w, server_flush_w, idle);
    ev_idle_stop(loop, w);
    gw_backend_flush(f->s->be);
}

static void server_flush_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    server_flush_w *f = lws_container_of(w, server_flush_w, timer);
    gw_backend_flush(f->s->be);
}

static void server_flush_arm(void *arg, int64_t wait_us)
{
    server_flush_w *f = arg;
    if (wait_us <= 1) {
        ev_idle_start(f->s->loop, &f->idle);
        return;
    }
    ev_timer_stop(f->s->loop, &f->timer);
    ev_timer_set(&f->timer, (double)wait_us / 1e6, 0.);
    ev_timer_start(f->s->loop, &f->timer);
}

static int server_create_context(gw_server *s)
{
    if (strcmp(s->cfg->loop, "poll") == 0)
        return server_try_context(s, NULL);
    /* EVFLAG_AUTO: epoll on Linux. */
    s->loop = ev_loop_new(EVFLAG_AUTO);
    if (s->loop != NULL && server_try_context(s, s->loop) == 0)
        return 0;
    /* No libev plugin (package libwebsockets-evlib-ev): poll() still works. */
    chat_warn("lws_libev_unavailable", "fallback=poll");
    if (s->loop != NULL)
        ev_loop_destroy(s->loop);
    s->loop = NULL;
    return server_try_context(s, NULL);
}

int gw_server_init(gw_server *s, const gw_config *cfg, gw_backend *be)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->gateway_id = cfg->gateway_id;
    s->be = be;
    /* Ids grow from the start time, so a restarted gateway with a fixed id
     * never reuses the id of a connection presence may still remember. */
    s->next_conn_id = (uint64_t)chat_now_ms() * 1000;
    lws_set_log_level(LLL_ERR | LLL_WARN, server_lws_log);
    s->admit = gw_admit_new((unsigned)cfg->conn_per_ip, (unsigned)cfg->conn_rate_per_s);
    if (s->admit == NULL || gw_front_open(&s->front, cfg, s->admit) != 0)
        return -1;

    if (server_create_context(s) != 0) {
        chat_error("lws_init_failed", "port=%lld", cfg->port);
        gw_front_close(s->front);
        s->front = NULL;
        return -1;
    }
    if (s->loop != NULL) {
        server_flush_w *f = calloc(1, sizeof *f);
        if (f != NULL) {
            f->s = s;
            ev_idle_init(&f->idle, server_flush_idle);
            ev_timer_init(&f->timer, server_flush_timer, 0., 0.);
            s->flush_w = f;
            gw_backend_set_flusher(be, server_flush_arm, f);
        }
    }
    gw_backend_set_context(be, s->ctx);
    gw_front_set_context(s->front, s->ctx);
    lws_sul_schedule(s->ctx, 0, &s->sul_tick, server_tick, SERVER_TICK_MS * LWS_US_PER_MS);
    /* The first one after a period, when presence had time to connect. */
    if (gw_heartbeat_start(&s->hb, be, cfg, s->gateway_id) != 0)
        return -1;
    if (gw_admin_open(&s->admin, s) != 0)
        return -1;
    gw_bans_fetch(s); /* again at each heartbeat until it succeeds */
    chat_info("listening", "port=%lld bind=\"%s\" gateway=%s web=%s loop=%s", cfg->port,
              cfg->bind, s->gateway_id, cfg->web_dir, s->loop != NULL ? "libev" : "poll");
    return 0;
}

void gw_server_run(gw_server *s)
{
    if (s->loop != NULL) {
        /* libev runs lws's timers only after some I/O: the first one. */
        lws_cancel_service(s->ctx);
        ev_run(s->loop, 0); /* until server_tick breaks it */
        return;
    }
    while (!s->done)
        if (lws_service(s->ctx, 0) < 0)
            break;
}

void gw_server_fini(gw_server *s)
{
    /* First: its requests wait for this thread, which serves no more. */
    gw_admin_close(s->admin);
    s->admin = NULL;
    if (s->ctx == NULL) {
        gw_front_close(s->front);
        s->front = NULL;
        gw_admit_free(s->admit);
        s->admit = NULL;
        return;
    }
    /* From here on nng callbacks only queue; nobody wakes a dying context. */
    gw_front_close(s->front);
    s->front = NULL;
    gw_backend_set_context(s->be, NULL); /* flushes what is queued */
    if (s->flush_w != NULL) {
        server_flush_w *f = s->flush_w;
        ev_idle_stop(s->loop, &f->idle);
        ev_timer_stop(s->loop, &f->timer);
        gw_backend_set_flusher(s->be, NULL, NULL);
        free(f);
        s->flush_w = NULL;
    }
    lws_sul_cancel(&s->sul_tick);
    gw_heartbeat_stop(s->hb); /* none may come after the stopping one */
    s->hb = NULL;
    unsigned left = s->n_conns;
    int64_t t0 = chat_mono_ms();
    /* One message to presence for every connection, not one disconnect
     * each (thousands would keep the stop waiting on presence). */
    s->closing_all = true;
    lws_context_destroy(s->ctx); /* closes what is left (LWS_CALLBACK_CLOSED) */
    s->ctx = NULL;
    gw_presence_stopping(s);
    chat_info("connections_closed", "left_open=%u ms=%lld", left,
              (long long)(chat_mono_ms() - t0));
    if (s->loop != NULL)
        ev_loop_destroy(s->loop);
    s->loop = NULL;
    gw_typing_free_all(s);
    gw_bans_free(s);
    gw_presence_free(s);
    gw_admit_free(s->admit); /* after the context: its connections released theirs */
    s->admit = NULL;
    gw_user *u, *tmp;
    HASH_ITER (hh, s->users, u, tmp) {
        HASH_DEL(s->users, u);
        free(u);
    }
}
