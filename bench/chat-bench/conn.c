/* One client connection's life: non-blocking connect (optionally from a
 * chosen 127.x source address), the upgrade, WebSocket frames in and out,
 * the "connected" frame, and failures. Modes see only on_ready, on_frame,
 * on_fail and on_timer (bench.h).
 *
 * Buffers: a connection allocates `in` only while an incomplete frame is
 * pending and `out` only while bytes are unsent; both are freed as soon as
 * they are empty, so an idle connection costs its struct and nothing else. */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define CONN_HEAD_MAX 16384 /* an upgrade response longer than this is not one */

static const cb_counter fail_counter[] = {
    [CB_FAIL_REFUSED] = CB_C_FAIL_REFUSED,
    [CB_FAIL_RESET] = CB_C_FAIL_RESET,
    [CB_FAIL_TIMEOUT] = CB_C_FAIL_TIMEOUT,
    [CB_FAIL_HTTP] = CB_C_FAIL_HTTP,
    [CB_FAIL_UNAUTHORIZED] = CB_C_FAIL_UNAUTHORIZED,
    [CB_FAIL_PROTOCOL] = CB_C_FAIL_PROTOCOL,
    [CB_FAIL_ADDR] = CB_C_FAIL_ADDR,
    [CB_FAIL_FILES] = CB_C_FAIL_FILES,
    [CB_FAIL_OTHER] = CB_C_FAIL_OTHER,
    [CB_FAIL_CLOSED] = CB_C_DROPPED,
};

static cb_fail fail_of_errno(int e)
{
    switch (e) {
    case ECONNREFUSED: return CB_FAIL_REFUSED;
    case ECONNRESET:
    case ECONNABORTED:
    case EPIPE: return CB_FAIL_RESET;
    case ETIMEDOUT: return CB_FAIL_TIMEOUT;
    case EADDRNOTAVAIL:
    case EADDRINUSE: return CB_FAIL_ADDR;
    case EMFILE:
    case ENFILE: return CB_FAIL_FILES;
    default: return CB_FAIL_OTHER;
    }
}

static uint64_t ev_data(const cb_conn *c)
{
    return ((uint64_t)c->gen << 32) | c->idx;
}

static bool in_flight(const cb_conn *c)
{
    return c->st == CB_CS_CONNECTING || c->st == CB_CS_HANDSHAKE ||
           c->st == CB_CS_WAIT_CONNECTED;
}

void cb_conn_close(cb_worker *w, cb_conn *c, bool rst)
{
    if (c->fd >= 0) {
        if (rst) {
            struct linger l = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
    }
    if (in_flight(c))
        w->inflight--;
    c->st = CB_CS_IDLE;
    c->gen++;
    c->want_out = false;
    free(c->in);
    free(c->out);
    free(c->frag);
    c->in = c->out = c->frag = NULL;
    c->in_len = c->in_cap = c->out_off = c->out_len = c->out_cap = c->frag_len = 0;
    cb_timer_clear(w, c);
}

void cb_conn_free(cb_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->out);
    free(c->frag);
    free(c->session);
    free(c->conv);
}

/* Closes c and tells the mode. The only place failures are counted. */
static void conn_fail(cb_worker *w, cb_conn *c, cb_fail why, int64_t now)
{
    bool was_ready = c->st == CB_CS_READY;
    cb_conn_close(w, c, false);
    if (was_ready) {
        why = CB_FAIL_CLOSED;
        w->res.c[CB_C_DROPPED]++;
    } else {
        w->res.c[CB_C_CONN_FAIL]++;
        w->res.c[fail_counter[why]]++;
        cb_prog_add(w, CB_P_FAILED, 1);
    }
    w->ops->on_fail(w, c, why, now);
}

/* A failure found inside cb_conn_start is reported at the next loop turn,
 * so modes never see on_fail from inside their own call. */
static void fail_soon(cb_worker *w, cb_conn *c, cb_fail why, int64_t now)
{
    c->pending_fail = (int8_t)why;
    cb_timer_set(w, c, now);
}

static void set_epoll_out(cb_worker *w, cb_conn *c, bool want)
{
    if (c->fd < 0 || c->want_out == want)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u64 = ev_data(c)};
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = want;
}

static int out_reserve(cb_conn *c, size_t more)
{
    size_t need = (size_t)c->out_len + more;
    if (need <= c->out_cap)
        return 0;
    size_t cap = c->out_cap ? c->out_cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(c->out, cap);
    if (!p)
        return -1;
    c->out = p;
    c->out_cap = (uint32_t)cap;
    return 0;
}

static void mark_dirty(cb_worker *w, cb_conn *c)
{
    if (c->dirty)
        return;
    if (w->n_dirty == w->dirty_cap) {
        uint32_t cap = w->dirty_cap ? w->dirty_cap * 2 : 64;
        cb_conn **p = realloc(w->dirty, cap * sizeof *p);
        if (!p)
            return; /* the bytes stay queued; EPOLLOUT or the next send flushes them */
        w->dirty = p;
        w->dirty_cap = cap;
    }
    w->dirty[w->n_dirty++] = c;
    c->dirty = true;
}

static int queue_frame(cb_worker *w, cb_conn *c, int opcode, const void *p, size_t len)
{
    if (c->fd < 0)
        return -1;
    if ((size_t)(c->out_len - c->out_off) + len > CB_OUT_MAX || out_reserve(c, len + 14) != 0) {
        w->res.c[CB_C_SHED]++;
        return -1;
    }
    c->out_len +=
        (uint32_t)cb_ws_encode(c->out + c->out_len, opcode, p, len, (uint32_t)cb_rand(&w->rng));
    mark_dirty(w, c);
    return 0;
}

int cb_conn_send(cb_worker *w, cb_conn *c, const char *text, size_t len)
{
    if (c->st != CB_CS_READY && c->st != CB_CS_WAIT_CONNECTED)
        return -1;
    return queue_frame(w, c, CB_OP_TEXT, text, len);
}

void cb_conn_start(cb_worker *w, cb_conn *c, int64_t now, const char *session)
{
    const cb_opts *o = w->o;
    if (c->st != CB_CS_IDLE)
        cb_conn_close(w, c, false);
    c->st = CB_CS_CONNECTING;
    c->t_start_ns = now;
    c->pending_fail = -1;
    c->resumed = false;
    w->inflight++;
    cb_timer_set(w, c, now + (int64_t)(o->connect_timeout_s * 1e9));

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail_soon(w, c, fail_of_errno(errno), now);
        return;
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (o->n_binds > 0) {
        /* The port is then chosen at connect() for the whole 4-tuple, so
         * one source address serves ~28k connections per destination. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr = o->binds[c->bind_i]};
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            fail_soon(w, c, fail_of_errno(errno), now);
            return;
        }
    }
    const cb_url *u = &o->urls[c->url_i];
    if (connect(fd, (const struct sockaddr *)&u->addr, sizeof u->addr) != 0 &&
        errno != EINPROGRESS) {
        fail_soon(w, c, fail_of_errno(errno), now);
        return;
    }
    char req[4096];
    cb_ws_key(&w->rng, c->key);
    int n = cb_ws_request(req, sizeof req, u, session, c->key);
    if (n < 0 || out_reserve(c, (size_t)n) != 0) {
        fail_soon(w, c, CB_FAIL_PROTOCOL, now);
        return;
    }
    memcpy(c->out, req, (size_t)n);
    c->out_len = (uint32_t)n;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = ev_data(c)};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        fail_soon(w, c, fail_of_errno(errno), now);
        return;
    }
    c->want_out = true;
}

/* Writes what is queued. Returns 0 or an errno (the caller fails c). */
static int conn_write(cb_worker *w, cb_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (uint32_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return n < 0 ? errno : EPIPE;
        }
    }
    if (c->out_off == c->out_len) {
        free(c->out);
        c->out = NULL;
        c->out_off = c->out_len = c->out_cap = 0;
    }
    set_epoll_out(w, c, c->out_len > 0);
    return 0;
}

void cb_flush(cb_worker *w, int64_t now)
{
    /* Callbacks of a failing connection may queue frames on others: they
     * are appended and handled in this same pass. */
    for (uint32_t i = 0; i < w->n_dirty; i++) {
        cb_conn *c = w->dirty[i];
        c->dirty = false;
        if (c->fd < 0 || c->st == CB_CS_CONNECTING)
            continue; /* connect completion writes the request itself */
        int err = conn_write(w, c);
        if (err)
            conn_fail(w, c, fail_of_errno(err), now);
    }
    w->n_dirty = 0;
}

void cb_count_error(cb_worker *w, const char *code)
{
    w->res.c[CB_C_ERRORS]++;
    cb_result_error(&w->res, code, 1);
    cb_prog_add(w, CB_P_ERRORS, 1);
}

/* "connected" (or the error that replaces it). */
static void conn_first_frame(cb_worker *w, cb_conn *c, const cJSON *j, const char *type,
                             int64_t now)
{
    if (strcmp(type, "connected") == 0) {
        const char *uid = cb_json_str(j, "user_id");
        const char *sess = cb_json_str(j, "session");
        if (!uid || strlen(uid) >= sizeof c->user_id || (w->keep_session && !sess)) {
            conn_fail(w, c, CB_FAIL_PROTOCOL, now);
            return;
        }
        snprintf(c->user_id, sizeof c->user_id, "%s", uid);
        if (w->keep_session) {
            free(c->session);
            c->session = strndup(sess, CB_TOKEN_MAX);
        }
        c->resumed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "resumed"));
        c->st = CB_CS_READY;
        w->inflight--;
        cb_timer_clear(w, c);
        w->res.c[CB_C_CONN_OK]++;
        cb_hist_add(&w->res.h[CB_H_CONNECT], (now - c->t_start_ns) / 1000);
        cb_prog_add(w, CB_P_CONNECTED, 1);
        if (now > w->last_ready_ns)
            w->last_ready_ns = now;
        w->ops->on_ready(w, c, now);
    } else if (strcmp(type, "error") == 0) {
        const char *code = cb_json_str(j, "code");
        cb_count_error(w, code);
        conn_fail(w, c,
                  code && strcmp(code, "unauthorized") == 0 ? CB_FAIL_UNAUTHORIZED
                                                            : CB_FAIL_PROTOCOL,
                  now);
    } else {
        conn_fail(w, c, CB_FAIL_PROTOCOL, now);
    }
}

static void conn_text(cb_worker *w, cb_conn *c, const char *p, size_t n, int64_t now)
{
    cJSON *j = cJSON_ParseWithLength(p, n);
    const char *type = j ? cb_json_str(j, "type") : NULL;
    if (!type) {
        cb_result_error(&w->res, "(unreadable frame)", 1);
    } else if (c->st == CB_CS_WAIT_CONNECTED) {
        conn_first_frame(w, c, j, type, now);
    } else {
        w->ops->on_frame(w, c, j, type, now);
    }
    cJSON_Delete(j);
}

static void conn_close_frame(cb_worker *w, cb_conn *c, const uint8_t *p, size_t n, int64_t now)
{
    int code = n >= 2 ? (p[0] << 8) | p[1] : 1005;
    char name[32];
    snprintf(name, sizeof name, "close_%d", code);
    cb_result_error(&w->res, name, 1);
    uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    if (code != 1005) {
        queue_frame(w, c, CB_OP_CLOSE, echo, 2);
        conn_write(w, c); /* best effort: we close right after */
    }
    conn_fail(w, c,
              code == 4401           ? CB_FAIL_UNAUTHORIZED
              : c->st == CB_CS_READY ? CB_FAIL_CLOSED
                                     : CB_FAIL_RESET,
              now);
}

static void conn_frame(cb_worker *w, cb_conn *c, const cb_ws_frame *f, const uint8_t *p,
                       int64_t now)
{
    switch (f->opcode) {
    case CB_OP_PING: queue_frame(w, c, CB_OP_PONG, p, f->len); return;
    case CB_OP_PONG: return;
    case CB_OP_CLOSE: conn_close_frame(w, c, p, f->len, now); return;
    default: break;
    }
    if (f->opcode == CB_OP_CONT && !c->frag) {
        conn_fail(w, c, CB_FAIL_PROTOCOL, now);
        return;
    }
    if (f->fin && !c->frag) {
        if (f->opcode == CB_OP_TEXT)
            conn_text(w, c, (const char *)p, f->len, now);
        return; /* binary frames: not part of the protocol, ignored */
    }
    /* Fragmented: reassemble (rare; the server sends one frame per message). */
    if (f->opcode != CB_OP_CONT && c->frag) {
        conn_fail(w, c, CB_FAIL_PROTOCOL, now);
        return;
    }
    if ((uint64_t)c->frag_len + f->len > CB_FRAME_MAX) {
        conn_fail(w, c, CB_FAIL_PROTOCOL, now);
        return;
    }
    uint8_t *q = realloc(c->frag, c->frag_len + f->len + 1);
    if (!q) {
        conn_fail(w, c, CB_FAIL_OTHER, now);
        return;
    }
    c->frag = q;
    memcpy(c->frag + c->frag_len, p, f->len);
    c->frag_len += (uint32_t)f->len;
    if (f->fin) {
        uint8_t *msg = c->frag;
        uint32_t len = c->frag_len;
        c->frag = NULL;
        c->frag_len = 0;
        conn_text(w, c, (const char *)msg, len, now);
        free(msg);
    }
}

/* Handles buf[0..len): the response head, then whole frames. Returns the
 * bytes consumed, or -1 when c was closed (or restarted) meanwhile. */
static long conn_consume(cb_worker *w, cb_conn *c, uint8_t *buf, size_t len, int64_t now)
{
    uint32_t gen = c->gen;
    size_t pos = 0;
    if (c->st == CB_CS_HANDSHAKE) {
        int status = 0;
        size_t hl = 0;
        int r = cb_ws_response((const char *)buf, len, c->key, &status, &hl);
        if (r == CB_WS_MORE) {
            if (len <= CONN_HEAD_MAX)
                return 0;
            r = CB_WS_BAD;
        }
        if (r == CB_WS_BAD) {
            char name[32];
            snprintf(name, sizeof name, "http_%d", status);
            cb_result_error(&w->res, name, 1);
            conn_fail(w, c, status == 101 || status == 0 ? CB_FAIL_PROTOCOL : CB_FAIL_HTTP,
                      now);
            return -1;
        }
        pos = hl;
        c->st = CB_CS_WAIT_CONNECTED;
    }
    while (pos < len) {
        cb_ws_frame f;
        int r = cb_ws_parse(buf + pos, len - pos, CB_FRAME_MAX, &f);
        if (r == 0)
            break;
        if (r < 0) {
            conn_fail(w, c, CB_FAIL_PROTOCOL, now);
            return -1;
        }
        const uint8_t *p = buf + pos + f.hdr_len;
        pos += f.hdr_len + f.len;
        conn_frame(w, c, &f, p, now);
        if (c->gen != gen)
            return -1;
    }
    return (long)pos;
}

/* Keeps buf[from..len) as the start of the next read. */
static int keep_rest(cb_conn *c, const uint8_t *rest, size_t n)
{
    if (n == 0) {
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = 0;
        return 0;
    }
    if (n > c->in_cap) {
        uint8_t *p = realloc(c->in, n);
        if (!p)
            return -1;
        c->in = p;
        c->in_cap = (uint32_t)n;
    }
    memmove(c->in, rest, n);
    c->in_len = (uint32_t)n;
    return 0;
}

static void conn_read(cb_worker *w, cb_conn *c, int64_t now)
{
    for (int round = 0; round < 8; round++) { /* bounded: others get their turn */
        size_t off = c->in_len;
        if (off)
            memcpy(w->scratch, c->in, off);
        ssize_t n = recv(c->fd, w->scratch + off, CB_SCRATCH - off, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            cb_fail why = n == 0 ? (c->st == CB_CS_READY ? CB_FAIL_CLOSED : CB_FAIL_RESET)
                                 : fail_of_errno(errno);
            conn_fail(w, c, why, now);
            return;
        }
        size_t total = off + (size_t)n;
        long used = conn_consume(w, c, w->scratch, total, now);
        if (used < 0)
            return;
        if (total - (size_t)used >= CB_SCRATCH - 1 ||
            keep_rest(c, w->scratch + used, total - (size_t)used) != 0) {
            conn_fail(w, c, CB_FAIL_PROTOCOL, now); /* a frame larger than we accept */
            return;
        }
        if ((size_t)n < CB_SCRATCH - off)
            return; /* drained for now */
    }
}

void cb_conn_io(cb_worker *w, cb_conn *c, uint32_t events, int64_t now)
{
    if (c->st == CB_CS_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err == 0 && (events & (EPOLLERR | EPOLLHUP)))
            err = ECONNRESET;
        if (err) {
            conn_fail(w, c, fail_of_errno(err), now);
            return;
        }
        c->st = CB_CS_HANDSHAKE;
        err = conn_write(w, c);
        if (err)
            conn_fail(w, c, fail_of_errno(err), now);
        return;
    }
    uint32_t gen = c->gen;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_read(w, c, now);
    if (c->gen == gen && c->fd >= 0 && (events & EPOLLOUT)) {
        int err = conn_write(w, c);
        if (err)
            conn_fail(w, c, fail_of_errno(err), now);
    }
}

void cb_conn_timer(cb_worker *w, cb_conn *c, int64_t now)
{
    if (in_flight(c)) {
        cb_fail why = c->pending_fail >= 0 ? (cb_fail)c->pending_fail : CB_FAIL_TIMEOUT;
        conn_fail(w, c, why, now);
        return;
    }
    w->ops->on_timer(w, c, now);
}
