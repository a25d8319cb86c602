/* match: --conns users search, get matched, end the chat and search again,
 * for --duration s. Time to match = start_search sent .. "matched" seen.
 *
 * Only one member should end a chat (both would make one of them get
 * conversation_closed). "matched" does not name the partner, so the worker
 * remembers which of its users was matched into which conversation: the
 * second local member to see a conversation ends it at once; a member
 * whose partner is not local (another worker) ends it after END_WAIT_NS
 * (then both may end it: the loser's conversation_closed is counted as an
 * end conflict, not an error). */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#define END_WAIT_NS (100 * 1000000LL)
#define RETRY_NS (100 * 1000000LL)

/* M_STOPPING: stop_search sent at the end of the run; a match may still come. */
enum { M_IDLE, M_SEARCHING, M_IN_CHAT, M_ENDING, M_STOPPING };

typedef struct match_seen {
    char conv[CB_ID_MAX + 1];
    uint32_t idx; /* the member that saw it first */
    UT_hash_handle hh;
} match_seen;

typedef enum { MA_CONNECT, MA_WAIT_GO, MA_LOOP, MA_WIND, MA_DONE } match_phase;

typedef struct match_state {
    match_phase phase;
    int64_t end, wind_end;
    match_seen *seen; /* owned entries */
} match_state;

static void search(cb_worker *w, cb_conn *c, int64_t now)
{
    static const char f[] = "{\"type\":\"start_search\",\"req\":\"s\"}";
    if (cb_conn_send(w, c, f, sizeof f - 1) != 0)
        return;
    c->ms = M_SEARCHING;
    c->mark_ns = now;
    w->res.c[CB_C_SEARCHES]++;
}

static void forget(match_state *s, const char *conv, uint32_t idx)
{
    match_seen *e = NULL;
    HASH_FIND_STR(s->seen, conv, e);
    if (e && e->idx == idx) {
        HASH_DEL(s->seen, e);
        free(e);
    }
}

static void end_chat(cb_worker *w, match_state *s, cb_conn *c)
{
    char esc[6 * CB_ID_MAX + 1], f[6 * CB_ID_MAX + 96];
    forget(s, c->conv, c->idx);
    cb_timer_clear(w, c);
    if (cb_json_escape(esc, sizeof esc, c->conv) < 0)
        return;
    int n = snprintf(f, sizeof f,
                     "{\"type\":\"end_chat\",\"req\":\"e\",\"conversation_id\":\"%s\"}", esc);
    if (cb_conn_send(w, c, f, (size_t)n) == 0)
        c->ms = M_ENDING;
}

static void on_matched(cb_worker *w, match_state *s, cb_conn *c, const cJSON *f, int64_t now)
{
    const char *conv = cb_json_str(f, "conversation_id");
    if ((c->ms != M_SEARCHING && c->ms != M_STOPPING) || !conv || strlen(conv) > CB_ID_MAX) {
        cb_result_error(&w->res, "(unexpected matched)", 1);
        return;
    }
    if (s->phase == MA_LOOP && c->ms == M_SEARCHING) {
        cb_hist_add(&w->res.h[CB_H_MATCH], (now - c->mark_ns) / 1000);
        w->res.c[CB_C_MATCHED]++;
        cb_prog_add(w, CB_P_MATCHED, 1);
    }
    free(c->conv);
    c->conv = strdup(conv);
    c->ms = M_IN_CHAT;
    if (!c->conv) {
        c->ms = M_IDLE;
        return;
    }
    match_seen *e = NULL;
    HASH_FIND_STR(s->seen, conv, e);
    if (e) { /* the partner is ours and waits: we end it */
        HASH_DEL(s->seen, e);
        cb_timer_clear(w, &w->conns[e->idx]);
        free(e);
        end_chat(w, s, c);
        return;
    }
    e = calloc(1, sizeof *e);
    if (e) {
        snprintf(e->conv, sizeof e->conv, "%s", conv);
        e->idx = c->idx;
        HASH_ADD_STR(s->seen, conv, e);
    }
    cb_timer_set(w, c, now + END_WAIT_NS);
}

static void after_chat(cb_worker *w, match_state *s, cb_conn *c, int64_t now)
{
    free(c->conv);
    c->conv = NULL;
    c->ms = M_IDLE;
    cb_timer_clear(w, c);
    if (s->phase != MA_LOOP)
        return;
    if (w->o->think_ms > 0)
        cb_timer_set(w, c, now + (int64_t)(w->o->think_ms * 1e6));
    else
        search(w, c, now);
}

static void match_on_frame(cb_worker *w, cb_conn *c, const cJSON *f, const char *type,
                           int64_t now)
{
    match_state *s = w->mode;
    if (strcmp(type, "matched") == 0) {
        on_matched(w, s, c, f, now);
    } else if (strcmp(type, "chat_ended") == 0) {
        const char *conv = cb_json_str(f, "conversation_id");
        const char *by = cb_json_str(f, "by");
        if (!c->conv || !conv || strcmp(conv, c->conv) != 0)
            return; /* an old chat's notice */
        forget(s, c->conv, c->idx);
        if (by && strcmp(by, "you") == 0)
            w->res.c[CB_C_ENDS]++;
        after_chat(w, s, c, now);
    } else if (strcmp(type, "error") == 0) {
        const char *req = cb_json_str(f, "req");
        const char *code = cb_json_str(f, "code");
        if (req && strcmp(req, "e") == 0 && code && strcmp(code, "conversation_closed") == 0) {
            w->res.c[CB_C_END_CONFLICTS]++; /* the partner ended it first */
            return;
        }
        cb_count_error(w, code);
        if (req && strcmp(req, "s") == 0 && c->ms == M_SEARCHING) {
            c->ms = M_IDLE;
            if (s->phase == MA_LOOP)
                cb_timer_set(w, c, now + RETRY_NS);
        } else if (req && strcmp(req, "t") == 0 && c->ms == M_STOPPING) {
            c->ms = M_IDLE;
        } else if (req && strcmp(req, "e") == 0 && c->ms == M_ENDING) {
            c->ms = M_IN_CHAT; /* still in the chat: try again later */
            cb_timer_set(w, c, now + RETRY_NS);
        }
    } else if (strcmp(type, "search_stopped") == 0 && c->ms == M_STOPPING) {
        c->ms = M_IDLE;
    }
    /* searching, presence, partner_disconnected: nothing to do */
}

static void match_on_timer(cb_worker *w, cb_conn *c, int64_t now)
{
    match_state *s = w->mode;
    if (c->ms == M_IN_CHAT && c->conv)
        end_chat(w, s, c);
    else if (c->ms == M_IDLE && s->phase == MA_LOOP)
        search(w, c, now);
}

static bool all_idle(const cb_worker *w)
{
    for (uint32_t i = 0; i < w->n_conns; i++)
        if (w->conns[i].st == CB_CS_READY && w->conns[i].ms != M_IDLE)
            return false;
    return true;
}

static void match_tick(cb_worker *w, int64_t now)
{
    match_state *s = w->mode;
    switch (s->phase) {
    case MA_CONNECT:
        if (cb_ramp_done(w) || now > w->setup_deadline_ns || cb_stopping(w)) {
            if (w->last_ready_ns)
                w->res.m[CB_M_RAMP_NS] = w->last_ready_ns - w->ramp_t0;
            atomic_fetch_add(&w->sh->ready, 1);
            s->phase = MA_WAIT_GO;
        }
        return;
    case MA_WAIT_GO: {
        int64_t go = atomic_load(&w->sh->go_ns);
        if (cb_stopping(w)) {
            s->phase = MA_DONE;
            w->done = true;
        } else if (go && now >= go) {
            s->phase = MA_LOOP;
            s->end = go + (int64_t)(w->o->duration_s * 1e9);
            for (uint32_t i = 0; i < w->n_conns; i++)
                if (w->conns[i].st == CB_CS_READY)
                    search(w, &w->conns[i], now);
        }
        return;
    }
    case MA_LOOP:
        if (now < s->end && !cb_stopping(w))
            return;
        s->phase = MA_WIND;
        s->wind_end = now + (int64_t)(w->o->drain_s * 1e9);
        for (uint32_t i = 0; i < w->n_conns; i++) {
            cb_conn *c = &w->conns[i];
            if (c->st != CB_CS_READY)
                continue;
            if (c->ms == M_SEARCHING) {
                static const char f[] = "{\"type\":\"stop_search\",\"req\":\"t\"}";
                cb_conn_send(w, c, f, sizeof f - 1);
                c->ms = M_STOPPING;
            } else if (c->ms == M_IN_CHAT) {
                end_chat(w, s, c);
            }
        }
        return;
    case MA_WIND:
        if (all_idle(w) || now >= s->wind_end || cb_stopping(w)) {
            s->phase = MA_DONE;
            w->done = true;
        }
        return;
    case MA_DONE: return;
    }
}

static int match_setup(cb_worker *w)
{
    match_state *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    w->mode = s;
    cb_ramp_begin(w, 0, w->n_conns, cb_now_ns());
    return 0;
}

static void match_on_ready(cb_worker *w, cb_conn *c, int64_t now)
{
}

static void match_on_fail(cb_worker *w, cb_conn *c, cb_fail why, int64_t now)
{
    match_state *s = w->mode;
    if (c->conv)
        forget(s, c->conv, c->idx);
    free(c->conv);
    c->conv = NULL;
    c->ms = M_IDLE;
}

static void match_finish(cb_worker *w)
{
}

static void match_cleanup(cb_worker *w)
{
    match_state *s = w->mode;
    if (!s)
        return;
    match_seen *e, *tmp;
    HASH_ITER (hh, s->seen, e, tmp) {
        HASH_DEL(s->seen, e);
        free(e);
    }
    free(s);
    w->mode = NULL;
}

const cb_mode_ops cb_match_ops = {
    match_setup,   match_tick,     match_on_ready, match_on_frame,
    match_on_fail, match_on_timer, match_finish,   match_cleanup,
};
