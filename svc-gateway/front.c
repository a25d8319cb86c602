/* The listening socket, owned by a small thread of its own.
 *
 * Why not lws's listener: lws decodes %xx in the request line while parsing
 * and drops the connection without any answer on "%00" or a malformed
 * escape, so a client whose ?session= holds such bytes would never get the
 * protocol's "unauthorized" + 4401. This thread accepts, reads the request
 * line, escapes those '%' ("%00" -> "%2500": the token then simply fails
 * to verify) and hands the socket with the bytes read so far to the lws
 * thread, which adopts it (lws_adopt_socket_vhost_readbuf).
 *
 * It is also where admission happens (admit.c), once the request line is
 * in: a socket over the connection rate or its address's share is answered
 * 503 and closed, never handed over. Health and metrics requests are
 * exempt, so that probes keep telling the truth during a storm. A socket
 * that sends no request line within CHAT_HANDSHAKE_TIMEOUT_MS is closed.
 *
 * Threads: the front thread owns the listener and the sockets still being
 * read; handed-over sockets wait in a locked list until the lws thread
 * takes them (woken with lws_cancel_service, like backend.c). */
#define _GNU_SOURCE /* accept4, pipe2 */
#include "gateway.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chat/log.h"

#define FRONT_LINE_MAX 4096    /* request line longer than this: lws refuses it */
#define FRONT_MAX_PENDING 1024 /* sockets being read; beyond, accept waits */
/* After accept fails for want of descriptors (or memory), the listener is
 * left alone this long: polling it again at once would spin on the same
 * error while the backlog waits. */
#define FRONT_ACCEPT_PAUSE_MS 100

typedef struct front_pending {
    int fd;
    struct sockaddr_storage peer;
    size_t len;
    int64_t deadline_ms;
    char buf[FRONT_LINE_MAX];
} front_pending;

struct gw_front {
    int listen_fd;
    int wake[2]; /* pipe: wakes the thread to stop */
    pthread_t thread;
    bool thread_started;
    front_pending **pending; /* front thread only */
    size_t n_pending;
    pthread_mutex_t mu;
    gw_accepted *head, *tail; /* under mu */
    struct lws_context *ctx;  /* under mu */
    gw_admit *admit;
    int64_t timeout_ms;
    int64_t paused_until_ms, warned_ms; /* front thread only */
    _Atomic uint64_t accept_errors;
};

static int front_listen_on(const struct addrinfo *ai)
{
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6) /* "all interfaces" means IPv4 too */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Binds bind:port (empty bind: every interface, IPv6 first for dual stack). */
static int front_listen(const char *bind_addr, int port)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    int rv = getaddrinfo(bind_addr[0] != '\0' ? bind_addr : NULL, service, &hints, &res);
    if (rv != 0) {
        chat_error("listen_failed", "bind=\"%s\" port=%d err=\"%s\"", bind_addr, port,
                   gai_strerror(rv));
        return -1;
    }
    int fd = -1, err = 0;
    for (int pass = 0; pass < 2 && fd < 0; pass++)
        for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
            if ((pass == 0) == (ai->ai_family == AF_INET6) && (fd = front_listen_on(ai)) < 0)
                err = errno;
    freeaddrinfo(res);
    if (fd < 0)
        chat_error("listen_failed", "bind=\"%s\" port=%d err=\"%s\"", bind_addr, port,
                   strerror(err));
    return fd;
}

static bool front_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

size_t gw_front_sanitize(const char *in, size_t len, char *out)
{
    const char *eol = memchr(in, '\n', len);
    size_t line = eol != NULL ? (size_t)(eol - in) : len;
    size_t o = 0;
    for (size_t i = 0; i < line; i++) {
        out[o++] = in[i];
        if (in[i] != '%')
            continue;
        bool ok = i + 2 < line && front_hex(in[i + 1]) && front_hex(in[i + 2]) &&
                  !(in[i + 1] == '0' && in[i + 2] == '0');
        if (!ok) {
            out[o++] = '2';
            out[o++] = '5';
        }
    }
    memcpy(out + o, in + line, len - line);
    return o + len - line;
}

/* The answer to a socket admission refused: lws never sees it. Written
 * once the request line is in, so that closing after it does not reset the
 * connection under the client before it read the answer. */
static void front_refuse(front_pending *p, gw_admit_verdict v)
{
    const char *why = v == GW_ADMIT_RATE ? "too many new connections, retry later\n"
                                         : "too many connections from your address\n";
    char buf[256];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n"
                     "content-type: text/plain; charset=utf-8\r\ncontent-length: %zu\r\n"
                     "connection: close\r\n\r\n%s",
                     strlen(why), why);
    /* A fresh socket's send buffer takes this whole; if not, never mind. */
    if (n > 0 && send(p->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n)
        shutdown(p->fd, SHUT_WR);
}

/* Probes and scrapes: GET of these paths (with or without a query). */
static bool front_exempt(const front_pending *p)
{
    static const char *const paths[] = {"GET /healthz", "GET /readyz", "GET /metrics"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        size_t n = strlen(paths[i]);
        if (p->len > n && memcmp(p->buf, paths[i], n) == 0 &&
            (p->buf[n] == ' ' || p->buf[n] == '?'))
            return true;
    }
    return false;
}

static void front_handover(gw_front *f, front_pending *p, gw_admit_ip *held)
{
    gw_accepted *a = malloc(sizeof *a + 3 * p->len + 1);
    if (a == NULL) {
        close(p->fd);
        gw_admit_release(f->admit, held);
        return;
    }
    a->next = NULL;
    a->fd = p->fd;
    a->held = held;
    a->len = gw_front_sanitize(p->buf, p->len, a->data);
    pthread_mutex_lock(&f->mu);
    bool was_empty = f->head == NULL;
    if (f->tail != NULL)
        f->tail->next = a;
    else
        f->head = a;
    f->tail = a;
    if (was_empty && f->ctx != NULL)
        lws_cancel_service(f->ctx);
    pthread_mutex_unlock(&f->mu);
}

static void front_drop(gw_front *f, size_t i, bool handover)
{
    front_pending *p = f->pending[i];
    gw_admit_ip *held = NULL;
    gw_admit_verdict v = GW_ADMIT_OK;
    if (handover && !front_exempt(p))
        v = gw_admit_take(f->admit, &p->peer, &held);
    if (handover && v == GW_ADMIT_OK) {
        front_handover(f, p, held);
    } else {
        if (handover)
            front_refuse(p, v);
        close(p->fd);
    }
    free(p);
    f->pending[i] = f->pending[--f->n_pending];
}

/* accept failed: nothing to take, or a real error, which pauses accepting
 * (logged at most once a second: a storm must not flood the log). */
static void front_accept_failed(gw_front *f, int err)
{
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED)
        return;
    atomic_fetch_add(&f->accept_errors, 1);
    int64_t now = chat_mono_ms();
    f->paused_until_ms = now + FRONT_ACCEPT_PAUSE_MS;
    if (now - f->warned_ms >= 1000) {
        f->warned_ms = now;
        chat_warn("accept_failed", "err=\"%s\" pause_ms=%d", strerror(err),
                  FRONT_ACCEPT_PAUSE_MS);
    }
}

static void front_accept(gw_front *f)
{
    while (f->n_pending < FRONT_MAX_PENDING) {
        front_pending *p = malloc(sizeof *p);
        if (p == NULL) {
            front_accept_failed(f, ENOMEM);
            return;
        }
        socklen_t plen = sizeof p->peer;
        int fd = accept4(f->listen_fd, (struct sockaddr *)&p->peer, &plen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            free(p);
            front_accept_failed(f, errno);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        p->fd = fd;
        p->len = 0;
        p->deadline_ms = chat_mono_ms() + f->timeout_ms;
        f->pending[f->n_pending++] = p;
    }
}

/* Reads what is there; returns 1 when the request line is complete (or the
 * buffer full), 0 to wait for more, -1 when the client went away. */
static int front_read(front_pending *p)
{
    ssize_t n = recv(p->fd, p->buf + p->len, sizeof p->buf - p->len, 0);
    if (n == 0)
        return -1;
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    p->len += (size_t)n;
    return (memchr(p->buf, '\n', p->len) != NULL || p->len == sizeof p->buf) ? 1 : 0;
}

static void *front_main(void *arg)
{
    gw_front *f = arg;
    struct pollfd *pfd = malloc((FRONT_MAX_PENDING + 2) * sizeof *pfd);
    if (pfd == NULL)
        return NULL;
    for (;;) {
        int64_t now = chat_mono_ms(), next = now + f->timeout_ms;
        bool paused = now < f->paused_until_ms;
        if (paused)
            next = f->paused_until_ms;
        pfd[0] = (struct pollfd){.fd = f->wake[0], .events = POLLIN};
        pfd[1] = (struct pollfd){
            .fd = f->n_pending < FRONT_MAX_PENDING && !paused ? f->listen_fd : -1,
            .events = POLLIN};
        for (size_t i = 0; i < f->n_pending; i++) {
            pfd[2 + i] = (struct pollfd){.fd = f->pending[i]->fd, .events = POLLIN};
            if (f->pending[i]->deadline_ms < next)
                next = f->pending[i]->deadline_ms;
        }
        size_t polled = f->n_pending;
        int n = poll(pfd, 2 + polled, (int)(next > now ? next - now : 0));
        if (n < 0 && errno != EINTR)
            break;
        if (pfd[0].revents != 0)
            break; /* asked to stop */
        /* Backwards, so removing entry i (swapped with the last) is safe. */
        now = chat_mono_ms();
        for (size_t i = polled; i-- > 0;) {
            int st = 0;
            if (pfd[2 + i].revents != 0)
                st = front_read(f->pending[i]);
            if (st == 0 && f->pending[i]->deadline_ms <= now)
                st = -1; /* too slow to even send a request line */
            if (st != 0)
                front_drop(f, i, st > 0);
        }
        if (pfd[1].revents != 0)
            front_accept(f);
    }
    free(pfd);
    return NULL;
}

int gw_front_open(gw_front **out, const gw_config *cfg, gw_admit *admit)
{
    gw_front *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->admit = admit;
    f->timeout_ms = cfg->handshake_timeout_ms;
    f->listen_fd = -1;
    f->wake[0] = f->wake[1] = -1;
    pthread_mutex_init(&f->mu, NULL);
    f->pending = calloc(FRONT_MAX_PENDING, sizeof *f->pending);
    if (f->pending == NULL || pipe2(f->wake, O_CLOEXEC) != 0 ||
        (f->listen_fd = front_listen(cfg->bind, (int)cfg->port)) < 0 ||
        pthread_create(&f->thread, NULL, front_main, f) != 0) {
        gw_front_close(f);
        return -1;
    }
    f->thread_started = true;
    *out = f;
    return 0;
}

void gw_front_set_context(gw_front *f, struct lws_context *ctx)
{
    pthread_mutex_lock(&f->mu);
    f->ctx = ctx;
    if (ctx != NULL && f->head != NULL)
        lws_cancel_service(ctx);
    pthread_mutex_unlock(&f->mu);
}

gw_accepted *gw_front_take(gw_front *f)
{
    pthread_mutex_lock(&f->mu);
    gw_accepted *list = f->head;
    f->head = f->tail = NULL;
    pthread_mutex_unlock(&f->mu);
    return list;
}

uint64_t gw_front_accept_errors(gw_front *f)
{
    return f != NULL ? atomic_load(&f->accept_errors) : 0;
}

void gw_accepted_free(gw_accepted *a, gw_admit *admit)
{
    while (a != NULL) {
        gw_accepted *next = a->next;
        close(a->fd);
        gw_admit_release(admit, a->held);
        free(a);
        a = next;
    }
}

void gw_front_close(gw_front *f)
{
    if (f == NULL)
        return;
    if (f->thread_started) {
        char b = 1;
        if (write(f->wake[1], &b, 1) < 0)
            chat_warn("front_wake_failed", "err=\"%s\"", strerror(errno));
        pthread_join(f->thread, NULL);
    }
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    for (size_t i = 0; i < f->n_pending; i++) {
        close(f->pending[i]->fd);
        free(f->pending[i]);
    }
    free(f->pending);
    gw_accepted_free(gw_front_take(f), f->admit);
    if (f->wake[0] >= 0)
        close(f->wake[0]);
    if (f->wake[1] >= 0)
        close(f->wake[1]);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
