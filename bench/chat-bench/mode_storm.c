/* storm: open --conns connections, then (at the moment the coordinator
 * names, the same for every worker) drop them all at once and reconnect
 * each with its session token: first attempt after a random delay in
 * [0, --jitter-ms), then exponential backoff with full jitter. A
 * connection counts as resumed when "connected" says resumed:true with the
 * same user id; the run ends when all are resumed or after --duration s. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

enum { S_UP, S_WAIT, S_CONNECTING, S_RESUMED, S_GIVEN_UP };

typedef enum { ST_CONNECT, ST_WAIT_GO, ST_RESUME, ST_DONE } storm_phase;

typedef struct storm_state {
    storm_phase phase;
    int64_t drop_ns, deadline;
    char (*uid)[37]; /* user id of each connection before the drop */
    uint64_t dropped, settled;
} storm_state;

static void drop_all(cb_worker *w, storm_state *s, int64_t now)
{
    s->drop_ns = now;
    s->deadline = now + (int64_t)(w->o->duration_s * 1e9);
    for (uint32_t i = 0; i < w->n_conns; i++) {
        cb_conn *c = &w->conns[i];
        if (c->st != CB_CS_READY || !c->session) {
            c->ms = S_GIVEN_UP; /* never up: not part of the storm */
            continue;
        }
        memcpy(s->uid[i], c->user_id, sizeof s->uid[i]);
        cb_conn_close(w, c, w->o->drop_rst);
        c->ms = S_WAIT;
        c->attempts = 0;
        s->dropped++;
        cb_timer_set(w, c, now + (int64_t)(cb_rand01(&w->rng) * w->o->jitter_ms * 1e6));
    }
    w->res.c[CB_C_STORM_DROPPED] += s->dropped;
    s->phase = ST_RESUME;
}

static void storm_on_timer(cb_worker *w, cb_conn *c, int64_t now)
{
    storm_state *s = w->mode;
    if (s->phase != ST_RESUME || c->ms != S_WAIT)
        return;
    c->attempts++;
    w->res.c[CB_C_RESUME_ATTEMPTS]++;
    c->ms = S_CONNECTING;
    cb_conn_start(w, c, now, c->session);
}

static void storm_on_ready(cb_worker *w, cb_conn *c, int64_t now)
{
    storm_state *s = w->mode;
    if (s->phase != ST_RESUME || c->ms != S_CONNECTING)
        return;
    s->settled++;
    if (!c->resumed || strcmp(c->user_id, s->uid[c->idx]) != 0) {
        w->res.c[CB_C_WRONG_USER]++;
        c->ms = S_GIVEN_UP;
        return;
    }
    c->ms = S_RESUMED;
    w->res.c[CB_C_RESUMED]++;
    cb_prog_add(w, CB_P_RESUMED, 1);
    cb_hist_add(&w->res.h[CB_H_RESUME], (now - s->drop_ns) / 1000);
    if (now - s->drop_ns > w->res.m[CB_M_ALL_RESUMED_NS])
        w->res.m[CB_M_ALL_RESUMED_NS] = now - s->drop_ns;
}

static void storm_on_fail(cb_worker *w, cb_conn *c, cb_fail why, int64_t now)
{
    storm_state *s = w->mode;
    if (s->phase != ST_RESUME || c->ms != S_CONNECTING)
        return;
    if (why == CB_FAIL_UNAUTHORIZED) { /* the token is refused: retrying cannot help */
        c->ms = S_GIVEN_UP;
        s->settled++;
        return;
    }
    double cap = w->o->backoff_ms;
    for (uint32_t i = 1; i < c->attempts && cap < w->o->backoff_max_ms; i++)
        cap *= 2;
    if (cap > w->o->backoff_max_ms)
        cap = w->o->backoff_max_ms;
    c->ms = S_WAIT;
    cb_timer_set(w, c, now + (int64_t)(cb_rand01(&w->rng) * cap * 1e6));
}

static void storm_on_frame(cb_worker *w, cb_conn *c, const cJSON *f, const char *type,
                           int64_t now)
{
    if (strcmp(type, "error") == 0)
        cb_count_error(w, cb_json_str(f, "code"));
}

static void storm_tick(cb_worker *w, int64_t now)
{
    storm_state *s = w->mode;
    switch (s->phase) {
    case ST_CONNECT:
        if (cb_ramp_done(w) || now > w->setup_deadline_ns || cb_stopping(w)) {
            if (w->last_ready_ns)
                w->res.m[CB_M_RAMP_NS] = w->last_ready_ns - w->ramp_t0;
            atomic_fetch_add(&w->sh->ready, 1);
            s->phase = ST_WAIT_GO;
        }
        return;
    case ST_WAIT_GO: {
        int64_t go = atomic_load(&w->sh->go_ns);
        if (cb_stopping(w)) {
            s->phase = ST_DONE;
            w->done = true;
        } else if (go && now >= go) {
            drop_all(w, s, now);
        }
        return;
    }
    case ST_RESUME:
        if (s->settled >= s->dropped || now >= s->deadline || cb_stopping(w)) {
            s->phase = ST_DONE;
            w->done = true;
        }
        return;
    case ST_DONE: return;
    }
}

static int storm_setup(cb_worker *w)
{
    storm_state *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    w->mode = s;
    s->uid = calloc(w->n_conns ? w->n_conns : 1, sizeof *s->uid);
    if (!s->uid)
        return -1;
    w->keep_session = true;
    cb_ramp_begin(w, 0, w->n_conns, cb_now_ns());
    return 0;
}

static void storm_finish(cb_worker *w)
{
    storm_state *s = w->mode;
    if (!s)
        return;
    uint64_t ok = w->res.c[CB_C_RESUMED];
    w->res.c[CB_C_NOT_RESUMED] = s->dropped > ok ? s->dropped - ok : 0;
}

static void storm_cleanup(cb_worker *w)
{
    storm_state *s = w->mode;
    if (!s)
        return;
    free(s->uid);
    free(s);
    w->mode = NULL;
}

const cb_mode_ops cb_storm_ops = {
    storm_setup,   storm_tick,     storm_on_ready, storm_on_frame,
    storm_on_fail, storm_on_timer, storm_finish,   storm_cleanup,
};
