/* A worker: its connections, its epoll loop, its timers (a min-heap of
 * connections by deadline, one timer per connection) and the ramp that
 * paces new connections. */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_WAIT_MS 5 /* modes' ticks run at least this often */
#define LOOP_EVENTS 512

long cb_share(long total, int id, int n, long *first)
{
    long base = total / n, rem = total % n;
    *first = id * base + (id < rem ? id : rem);
    return base + (id < rem ? 1 : 0);
}

void cb_prog_add(cb_worker *w, cb_prog p, uint64_t n)
{
    atomic_fetch_add_explicit(&w->sh->prog[p], n, memory_order_relaxed);
}

bool cb_stopping(const cb_worker *w)
{
    return atomic_load_explicit(&w->sh->stop, memory_order_relaxed) != 0;
}

/* ---- timer heap ---------------------------------------------------------- */
static void heap_swap(cb_worker *w, uint32_t a, uint32_t b)
{
    cb_conn *t = w->heap[a];
    w->heap[a] = w->heap[b];
    w->heap[b] = t;
    w->heap[a]->heap_pos = (int)a;
    w->heap[b]->heap_pos = (int)b;
}

static void heap_up(cb_worker *w, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (w->heap[p]->timer_ns <= w->heap[i]->timer_ns)
            break;
        heap_swap(w, i, p);
        i = p;
    }
}

static void heap_down(cb_worker *w, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->heap_len && w->heap[l]->timer_ns < w->heap[m]->timer_ns)
            m = l;
        if (r < w->heap_len && w->heap[r]->timer_ns < w->heap[m]->timer_ns)
            m = r;
        if (m == i)
            return;
        heap_swap(w, i, m);
        i = m;
    }
}

void cb_timer_clear(cb_worker *w, cb_conn *c)
{
    if (c->heap_pos < 0)
        return;
    uint32_t i = (uint32_t)c->heap_pos;
    c->heap_pos = -1;
    w->heap_len--;
    if (i == w->heap_len)
        return;
    w->heap[i] = w->heap[w->heap_len];
    w->heap[i]->heap_pos = (int)i;
    heap_up(w, i);
    heap_down(w, (uint32_t)w->heap[i]->heap_pos);
}

void cb_timer_set(cb_worker *w, cb_conn *c, int64_t when)
{
    cb_timer_clear(w, c);
    c->timer_ns = when;
    c->heap_pos = (int)w->heap_len;
    w->heap[w->heap_len++] = c; /* capacity n_conns: one timer per connection */
    heap_up(w, (uint32_t)c->heap_pos);
}

/* ---- ramp -------------------------------------------------------------------- */
void cb_ramp_begin(cb_worker *w, uint32_t from, uint32_t to, int64_t now)
{
    w->next_open = from;
    w->ramp_end = to;
    w->ramp_t0 = now;
    w->ramp_from = from;
    double per_worker = w->o->ramp / w->n_workers;
    w->ramp_gap_ns = (int64_t)(1e9 / per_worker);
}

bool cb_ramp_done(const cb_worker *w)
{
    return w->next_open >= w->ramp_end && w->inflight == 0;
}

static void ramp_tick(cb_worker *w, int64_t now)
{
    if (w->next_open >= w->ramp_end)
        return;
    if (now > w->setup_deadline_ns || cb_stopping(w)) {
        /* Never attempted (out of setup time): counted as failed so the
         * totals add up, under a reason of their own. */
        uint32_t left = w->ramp_end - w->next_open;
        w->res.c[CB_C_CONN_FAIL] += left;
        w->res.c[CB_C_NOT_ATTEMPTED] += left;
        w->next_open = w->ramp_end;
        return;
    }
    while (w->next_open < w->ramp_end && w->inflight < w->o->inflight &&
           now >= w->ramp_t0 + (int64_t)(w->next_open - w->ramp_from) * w->ramp_gap_ns) {
        cb_conn *c = &w->conns[w->next_open++];
        cb_conn_start(w, c, now, NULL);
    }
}

/* ---- worker ------------------------------------------------------------------ */
static const cb_mode_ops *ops_for(cb_mode m)
{
    switch (m) {
    case CB_MODE_IDLE: return &cb_idle_ops;
    case CB_MODE_CHAT: return &cb_chat_ops;
    case CB_MODE_MATCH: return &cb_match_ops;
    case CB_MODE_STORM: return &cb_storm_ops;
    }
    return &cb_idle_ops;
}

int cb_worker_init(cb_worker *w, int id, int n_workers, const cb_opts *o, cb_shared *sh)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    w->n_workers = n_workers;
    w->o = o;
    w->sh = sh;
    w->ops = ops_for(o->mode);
    w->epfd = -1;
    w->rng = (o->seed + 1) * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)(id + 1) << 32);
    long first = 0, n;
    if (o->mode == CB_MODE_CHAT) {
        n = 2 * cb_share(o->pairs, id, n_workers, &first); /* a pair lives in one worker */
        first *= 2;
    } else {
        n = cb_share(o->conns, id, n_workers, &first);
    }
    w->first_gidx = first;
    w->n_conns = (uint32_t)n;
    w->conns = calloc(n ? (size_t)n : 1, sizeof *w->conns);
    w->heap = calloc(n ? (size_t)n : 1, sizeof *w->heap);
    w->scratch = malloc(CB_SCRATCH);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!w->conns || !w->heap || !w->scratch || w->epfd < 0)
        return -1;
    for (uint32_t i = 0; i < w->n_conns; i++) {
        cb_conn *c = &w->conns[i];
        c->idx = i;
        c->fd = -1;
        c->heap_pos = -1;
        c->pending_fail = -1;
        c->url_i = (uint16_t)((first + i) % o->n_urls);
        c->bind_i = o->n_binds ? (uint16_t)((first + i) % o->n_binds) : 0;
    }
    int64_t now = cb_now_ns();
    w->setup_deadline_ns = now + (int64_t)(o->setup_timeout_s * 1e9);
    w->hard_deadline_ns =
        w->setup_deadline_ns + (int64_t)((o->duration_s + o->drain_s + 120) * 1e9);
    return w->ops->setup(w);
}

static void fire_timers(cb_worker *w, int64_t now)
{
    /* Bounded: a timer re-armed for "now" waits for the next turn. */
    for (uint32_t budget = w->heap_len; budget > 0 && w->heap_len > 0; budget--) {
        cb_conn *c = w->heap[0];
        if (c->timer_ns > now)
            return;
        cb_timer_clear(w, c);
        cb_conn_timer(w, c, now);
    }
}

/* How long epoll may sleep: until the next timer or ramp slot (ns
 * precision, so a send schedule is kept to well under a millisecond), at
 * most LOOP_MAX_WAIT_MS so the mode's tick runs regularly. */
static int64_t wait_ns(const cb_worker *w, int64_t now)
{
    int64_t next = now + LOOP_MAX_WAIT_MS * 1000000LL;
    if (w->heap_len && w->heap[0]->timer_ns < next)
        next = w->heap[0]->timer_ns;
    if (w->next_open < w->ramp_end && w->inflight < w->o->inflight) {
        int64_t r = w->ramp_t0 + (int64_t)(w->next_open - w->ramp_from) * w->ramp_gap_ns;
        if (r < next)
            next = r;
    }
    return next > now ? next - now : 0;
}

static int loop_wait(cb_worker *w, struct epoll_event *evs, int64_t ns)
{
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    int n = epoll_pwait2(w->epfd, evs, LOOP_EVENTS, &ts, NULL);
    if (n < 0 && errno == ENOSYS) /* kernels before 5.11 */
        n = epoll_wait(w->epfd, evs, LOOP_EVENTS, (int)((ns + 999999) / 1000000));
    return n;
}

void cb_worker_run(cb_worker *w)
{
    struct epoll_event evs[LOOP_EVENTS];
    while (!w->done) {
        int64_t now = cb_now_ns();
        if (now > w->hard_deadline_ns)
            break; /* a safety net: modes end long before */
        fire_timers(w, now);
        ramp_tick(w, now);
        w->ops->tick(w, now);
        cb_flush(w, now);
        if (w->done)
            break;
        int n = loop_wait(w, evs, wait_ns(w, now));
        now = cb_now_ns();
        for (int i = 0; i < n; i++) {
            uint32_t idx = (uint32_t)evs[i].data.u64;
            uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
            if (idx >= w->n_conns)
                continue;
            cb_conn *c = &w->conns[idx];
            if (c->gen != gen || c->fd < 0)
                continue; /* closed (and maybe reopened) since the event was queued */
            cb_conn_io(w, c, evs[i].events, now);
        }
        cb_flush(w, now);
    }
    for (uint32_t i = 0; i < w->n_conns; i++) {
        cb_conn *c = &w->conns[i];
        if (c->st != CB_CS_IDLE && c->st != CB_CS_READY) {
            /* Still connecting when the run ended: a failure of its own kind,
             * so ok + failed adds up to what was attempted. */
            w->res.c[CB_C_CONN_FAIL]++;
            w->res.c[CB_C_UNFINISHED]++;
        }
        if (c->fd >= 0 || c->st != CB_CS_IDLE)
            cb_conn_close(w, c, false);
    }
}

void cb_worker_free(cb_worker *w)
{
    if (w->ops && w->ops->cleanup)
        w->ops->cleanup(w);
    for (uint32_t i = 0; w->conns && i < w->n_conns; i++)
        cb_conn_free(&w->conns[i]);
    free(w->conns);
    free(w->heap);
    free(w->dirty);
    free(w->scratch);
    if (w->epfd >= 0)
        close(w->epfd);
    w->conns = NULL;
    w->heap = NULL;
    w->dirty = NULL;
    w->scratch = NULL;
    w->epfd = -1;
}
