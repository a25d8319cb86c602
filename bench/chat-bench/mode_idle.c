/* idle: open --conns connections at --ramp per second and hold them until
 * the coordinator has measured the gateways' memory and the hold time is
 * over. Every figure comes from conn.c's counters. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

typedef enum { IDLE_RAMP, IDLE_HOLD, IDLE_DONE } idle_phase;

typedef struct idle_state {
    idle_phase phase;
} idle_state;

static int idle_setup(cb_worker *w)
{
    idle_state *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    w->mode = s;
    cb_ramp_begin(w, 0, w->n_conns, cb_now_ns());
    return 0;
}

static void idle_tick(cb_worker *w, int64_t now)
{
    idle_state *s = w->mode;
    switch (s->phase) {
    case IDLE_RAMP:
        if (!cb_ramp_done(w) && now < w->setup_deadline_ns && !cb_stopping(w))
            return;
        if (w->last_ready_ns)
            w->res.m[CB_M_RAMP_NS] = w->last_ready_ns - w->ramp_t0;
        atomic_fetch_add(&w->sh->ready, 1);
        s->phase = IDLE_HOLD;
        return;
    case IDLE_HOLD:
        if (atomic_load(&w->sh->release) || cb_stopping(w)) {
            s->phase = IDLE_DONE;
            w->done = true;
        }
        return;
    case IDLE_DONE: return;
    }
}

static void idle_on_ready(cb_worker *w, cb_conn *c, int64_t now)
{
}
static void idle_on_frame(cb_worker *w, cb_conn *c, const cJSON *f, const char *type,
                          int64_t now)
{
    if (strcmp(type, "error") == 0)
        cb_count_error(w, cb_json_str(f, "code"));
}
static void idle_on_fail(cb_worker *w, cb_conn *c, cb_fail why, int64_t now)
{
}
static void idle_on_timer(cb_worker *w, cb_conn *c, int64_t now)
{
}
static void idle_finish(cb_worker *w)
{
}

static void idle_cleanup(cb_worker *w)
{
    free(w->mode);
    w->mode = NULL;
}

const cb_mode_ops cb_idle_ops = {
    idle_setup,   idle_tick,     idle_on_ready, idle_on_frame,
    idle_on_fail, idle_on_timer, idle_finish,   idle_cleanup,
};
