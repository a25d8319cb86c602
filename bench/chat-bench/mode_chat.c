/* chat: --pairs conversations of two users. Each sender sends --rate
 * messages/s on a fixed schedule for --duration s (open loop: a slow
 * answer never delays the next send), then we wait up to --drain s for the
 * last acks and deliveries.
 *
 * Every message carries its own send time, so nothing is kept per message
 * but one flag byte per (conversation, seq):
 *   text "t=<mono ns>;n=<n>"         -> delivery latency at the receiver,
 *   client_msg_id "<mono ns>-<n>"    -> ack latency at the sender.
 * lost = acked by one member, never delivered to the other; duplicates and
 * reordered are judged by (conversation, seq) at the receiver.
 *
 * Pairing a random chat needs nobody else searching in between (matching
 * is FIFO), so pairs are formed one at a time under the process-shared
 * pair_lock; both users must report the same conversation or the pair is
 * dropped (another client was searching too). */
#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAIR_TIMEOUT_NS (5 * 1000000000LL)
#define SEQ_MAX (1u << 24)
#define TEXT_MAX 4096

enum { F_ACK0 = 1, F_ACK1 = 2, F_DLV0 = 4, F_DLV1 = 8 };

typedef enum { P_NEW, P_WAIT_A, P_WAIT_MATCH, P_WAIT_DM, P_OK, P_FAILED } pair_st;

typedef struct chat_pair {
    uint8_t st;
    bool broken; /* a member dropped during the run */
    char conv[CB_ID_MAX + 1];
    char conv_esc[6 * CB_ID_MAX + 1]; /* as a JSON string body */
    char matched[2][CB_ID_MAX + 1];   /* random: what each member was matched into */
    uint8_t *flags;                   /* by seq: F_* */
    uint32_t cap;
    uint64_t last_seq[2]; /* highest seq delivered to each member */
} chat_pair;

typedef enum { CH_CONNECT, CH_PAIR, CH_WAIT_GO, CH_SEND, CH_DRAIN, CH_DONE } chat_phase;

typedef struct chat_state {
    chat_phase phase;
    chat_pair *pairs; /* owned; n_pairs */
    uint32_t n_pairs;
    uint32_t cur; /* the pair being formed */
    int64_t cur_t0;
    bool locked; /* we hold sh->pair_lock */
    int64_t t0, end, drain_end, interval_ns;
    bool finished;
} chat_state;

static cb_conn *member(cb_worker *w, uint32_t pair, int role)
{
    return &w->conns[2 * pair + (uint32_t)role];
}

static void send_json(cb_worker *w, cb_conn *c, const char *fmt, const char *arg)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, fmt, arg ? arg : "");
    if (n > 0 && (size_t)n < sizeof buf)
        cb_conn_send(w, c, buf, (size_t)n);
}

/* ---- pairing ------------------------------------------------------------------ */
static void unlock_pairing(cb_worker *w, chat_state *s)
{
    if (s->locked) {
        pthread_mutex_unlock(&w->sh->pair_lock);
        s->locked = false;
    }
}

static void end_quietly(cb_worker *w, cb_conn *c, const char *conv)
{
    char esc[6 * CB_ID_MAX + 1];
    if (conv[0] && cb_json_escape(esc, sizeof esc, conv) >= 0)
        send_json(w, c, "{\"type\":\"end_chat\",\"req\":\"x\",\"conversation_id\":\"%s\"}",
                  esc);
}

static void pair_failed(cb_worker *w, chat_state *s, chat_pair *p)
{
    if (!w->o->dm)
        for (int r = 0; r < 2; r++) {
            cb_conn *c = member(w, s->cur, r);
            send_json(w, c, "{\"type\":\"stop_search\",\"req\":\"x\"}", NULL);
            end_quietly(w, c, p->matched[r]);
        }
    p->st = P_FAILED;
    w->res.c[CB_C_PAIR_FAIL]++;
    unlock_pairing(w, s);
    s->cur++;
}

static void pair_ok(cb_worker *w, chat_state *s, chat_pair *p, const char *conv)
{
    snprintf(p->conv, sizeof p->conv, "%s", conv);
    if (cb_json_escape(p->conv_esc, sizeof p->conv_esc, conv) < 0) {
        pair_failed(w, s, p);
        return;
    }
    p->st = P_OK;
    w->res.c[CB_C_PAIRS]++;
    unlock_pairing(w, s);
    s->cur++;
}

/* Starts the next pair, or finishes pairing. */
static void pairing_tick(cb_worker *w, chat_state *s, int64_t now)
{
    while (s->cur < s->n_pairs) {
        chat_pair *p = &s->pairs[s->cur];
        cb_conn *a = member(w, s->cur, 0), *b = member(w, s->cur, 1);
        if (p->st == P_NEW) {
            if (a->st != CB_CS_READY || b->st != CB_CS_READY || cb_stopping(w)) {
                p->st = P_FAILED;
                w->res.c[CB_C_PAIR_FAIL]++;
                s->cur++;
                continue;
            }
            if (w->o->dm) {
                send_json(w, a, "{\"type\":\"open_dm\",\"req\":\"p\",\"user_id\":\"%s\"}",
                          b->user_id);
                p->st = P_WAIT_DM;
            } else {
                if (!s->locked) {
                    int rc = pthread_mutex_trylock(&w->sh->pair_lock);
                    if (rc == EOWNERDEAD) /* a worker process died holding it */
                        rc = pthread_mutex_consistent(&w->sh->pair_lock);
                    if (rc != 0)
                        return; /* another worker is pairing: next turn */
                    s->locked = true;
                }
                send_json(w, a, "{\"type\":\"start_search\",\"req\":\"p\"}", NULL);
                p->st = P_WAIT_A;
            }
            s->cur_t0 = now;
            return;
        }
        if (now - s->cur_t0 > PAIR_TIMEOUT_NS || a->st != CB_CS_READY || b->st != CB_CS_READY) {
            pair_failed(w, s, p);
            continue;
        }
        return; /* waiting for its answers */
    }
    unlock_pairing(w, s);
    atomic_fetch_add(&w->sh->ready, 1);
    s->phase = CH_WAIT_GO;
}

static void pairing_frame(cb_worker *w, chat_state *s, cb_conn *c, const cJSON *f,
                          const char *type)
{
    const char *req = cb_json_str(f, "req");
    bool mine = req && strcmp(req, "p") == 0;
    chat_pair *p = &s->pairs[c->pair];
    if (strcmp(type, "matched") == 0) {
        const char *conv = cb_json_str(f, "conversation_id");
        if (!conv || strlen(conv) > CB_ID_MAX)
            return;
        if (c->pair != s->cur || s->phase != CH_PAIR) {
            end_quietly(w, c, conv); /* late match of a pair that failed */
            return;
        }
        snprintf(p->matched[c->role], sizeof p->matched[0], "%s", conv);
        if (p->matched[0][0] && p->matched[1][0]) {
            if (strcmp(p->matched[0], p->matched[1]) == 0)
                pair_ok(w, s, p, conv);
            else
                pair_failed(w, s, p);
        }
        return;
    }
    if (!mine || c->pair != s->cur || s->phase != CH_PAIR)
        return;
    if (strcmp(type, "error") == 0) {
        cb_count_error(w, cb_json_str(f, "code"));
        pair_failed(w, s, p);
    } else if (strcmp(type, "searching") == 0 && c->role == 0 && p->st == P_WAIT_A) {
        send_json(w, member(w, c->pair, 1), "{\"type\":\"start_search\",\"req\":\"p\"}", NULL);
        p->st = P_WAIT_MATCH;
    } else if (strcmp(type, "conversation") == 0 && p->st == P_WAIT_DM) {
        const char *conv = cb_json_str(f, "conversation_id");
        if (conv && strlen(conv) <= CB_ID_MAX)
            pair_ok(w, s, p, conv);
        else
            pair_failed(w, s, p);
    }
}

/* ---- sending ------------------------------------------------------------------ */
static void send_one(cb_worker *w, chat_pair *p, cb_conn *c, int64_t sched, int64_t now)
{
    char text[TEXT_MAX + 64];
    int n =
        snprintf(text, sizeof text, "t=%lld;n=%llu", (long long)now, (unsigned long long)c->n);
    int want = w->o->text_size < TEXT_MAX ? w->o->text_size : TEXT_MAX;
    if (n < want) {
        memset(text + n, 'x', (size_t)(want - n));
        n = want;
        text[n] = '\0';
    }
    char frame[TEXT_MAX + 1024];
    int len = snprintf(
        frame, sizeof frame,
        "{\"type\":\"send\",\"conversation_id\":\"%s\",\"client_msg_id\":\"%lld-%llu\","
        "\"text\":\"%s\"}",
        p->conv_esc, (long long)now, (unsigned long long)c->n, text);
    if (len <= 0 || (size_t)len >= sizeof frame || cb_conn_send(w, c, frame, (size_t)len) != 0)
        return; /* shed (counted by conn.c): never sent */
    c->n++;
    w->res.c[CB_C_SENT]++;
    cb_prog_add(w, CB_P_SENT, 1);
    cb_hist_add(&w->res.h[CB_H_SEND_LAG], (now - sched) / 1000);
}

static void start_sending(cb_worker *w, chat_state *s, int64_t go)
{
    s->t0 = go;
    s->end = go + (int64_t)(w->o->duration_s * 1e9);
    s->interval_ns = (int64_t)(1e9 / w->o->rate);
    if (s->interval_ns < 1)
        s->interval_ns = 1;
    for (uint32_t i = 0; i < s->n_pairs; i++) {
        if (s->pairs[i].st != P_OK)
            continue;
        for (int r = 0; r < (w->o->one_sender ? 1 : 2); r++) {
            cb_conn *c = member(w, i, r);
            if (c->st != CB_CS_READY)
                continue;
            c->n = 0;
            /* A random phase per sender, so the senders do not beat in step. */
            c->mark_ns = go + (int64_t)(cb_rand01(&w->rng) * (double)s->interval_ns);
            cb_timer_set(w, c, c->mark_ns);
        }
    }
    s->phase = CH_SEND;
}

static void chat_on_timer(cb_worker *w, cb_conn *c, int64_t now)
{
    chat_state *s = w->mode;
    if (s->phase != CH_SEND || c->st != CB_CS_READY)
        return;
    chat_pair *p = &s->pairs[c->pair];
    /* Open loop: everything due is sent now, however late we are. */
    while (c->mark_ns <= now && c->mark_ns < s->end) {
        send_one(w, p, c, c->mark_ns, now);
        c->mark_ns += s->interval_ns;
    }
    if (c->mark_ns < s->end)
        cb_timer_set(w, c, c->mark_ns);
}

/* ---- receiving ---------------------------------------------------------------- */
static uint8_t *seq_flag(chat_pair *p, uint64_t seq)
{
    if (seq == 0 || seq >= SEQ_MAX)
        return NULL;
    if (seq >= p->cap) {
        uint32_t cap = p->cap ? p->cap : 1024;
        while (cap <= seq)
            cap *= 2;
        uint8_t *f = realloc(p->flags, cap);
        if (!f)
            return NULL;
        memset(f + p->cap, 0, cap - p->cap);
        p->flags = f;
        p->cap = cap;
    }
    return &p->flags[seq];
}

static void on_ack(cb_worker *w, chat_state *s, chat_pair *p, cb_conn *c, const cJSON *f,
                   int64_t now)
{
    const char *conv = cb_json_str(f, "conversation_id");
    const char *cmid = cb_json_str(f, "client_msg_id");
    uint64_t seq;
    uint8_t *fl;
    if (!conv || strcmp(conv, p->conv) != 0 || !cmid || !cb_json_u64(f, "seq", &seq) ||
        !(fl = seq_flag(p, seq))) {
        w->res.c[CB_C_FOREIGN]++;
        return;
    }
    long long sent_ns = strtoll(cmid, NULL, 10);
    if (sent_ns > 0 && sent_ns <= now)
        cb_hist_add(&w->res.h[CB_H_ACK], (now - sent_ns) / 1000);
    uint8_t bit = c->role ? F_ACK1 : F_ACK0;
    if (*fl & (F_ACK0 | F_ACK1)) {
        w->res.c[CB_C_FOREIGN]++; /* a second ack for one seq */
        return;
    }
    *fl |= bit;
    w->res.c[CB_C_ACKED]++;
    cb_prog_add(w, CB_P_ACKED, 1);
    if (now - s->t0 > w->res.m[CB_M_LAST_ACK_NS])
        w->res.m[CB_M_LAST_ACK_NS] = now - s->t0;
}

static void on_message(cb_worker *w, chat_state *s, chat_pair *p, cb_conn *c, const cJSON *f,
                       int64_t now)
{
    const char *conv = cb_json_str(f, "conversation_id");
    const char *text = cb_json_str(f, "text");
    uint64_t seq;
    uint8_t *fl;
    if (!conv || strcmp(conv, p->conv) != 0 || !cb_json_u64(f, "seq", &seq) ||
        !(fl = seq_flag(p, seq))) {
        w->res.c[CB_C_FOREIGN]++;
        return;
    }
    if (text && strncmp(text, "t=", 2) == 0) {
        long long sent_ns = strtoll(text + 2, NULL, 10);
        if (sent_ns > 0 && sent_ns <= now)
            cb_hist_add(&w->res.h[CB_H_DELIVERY], (now - sent_ns) / 1000);
    }
    int r = c->role;
    uint8_t bit = r ? F_DLV1 : F_DLV0;
    if (*fl & bit) {
        w->res.c[CB_C_DUP]++;
        return;
    }
    *fl |= bit;
    w->res.c[CB_C_DELIVERED]++;
    cb_prog_add(w, CB_P_DELIVERED, 1);
    if (seq < p->last_seq[r])
        w->res.c[CB_C_REORDERED]++;
    else
        p->last_seq[r] = seq;
    if (now - s->t0 > w->res.m[CB_M_LAST_DELIVER_NS])
        w->res.m[CB_M_LAST_DELIVER_NS] = now - s->t0;
}

static void chat_on_frame(cb_worker *w, cb_conn *c, const cJSON *f, const char *type,
                          int64_t now)
{
    chat_state *s = w->mode;
    if (s->phase <= CH_PAIR) {
        pairing_frame(w, s, c, f, type);
        return;
    }
    chat_pair *p = &s->pairs[c->pair];
    if (strcmp(type, "ack") == 0) {
        on_ack(w, s, p, c, f, now);
    } else if (strcmp(type, "message") == 0) {
        on_message(w, s, p, c, f, now);
    } else if (strcmp(type, "error") == 0) {
        const char *req = cb_json_str(f, "req");
        if (req && strcmp(req, "x") == 0)
            return; /* clean-up of a failed pairing */
        cb_count_error(w, cb_json_str(f, "code"));
        if (s->phase >= CH_SEND)
            w->res.c[CB_C_SEND_ERRORS]++;
    }
    /* receipts, presence, typing, late pairing replies: not measured */
}

/* ---- phases ------------------------------------------------------------------- */
static bool settled(const cb_worker *w)
{
    const uint64_t *c = w->res.c;
    return c[CB_C_SENT] == c[CB_C_ACKED] + c[CB_C_SEND_ERRORS] &&
           c[CB_C_DELIVERED] >= c[CB_C_ACKED];
}

static void chat_tick(cb_worker *w, int64_t now)
{
    chat_state *s = w->mode;
    switch (s->phase) {
    case CH_CONNECT:
        if (cb_ramp_done(w) || now > w->setup_deadline_ns || cb_stopping(w)) {
            if (w->last_ready_ns)
                w->res.m[CB_M_RAMP_NS] = w->last_ready_ns - w->ramp_t0;
            s->phase = CH_PAIR;
        }
        return;
    case CH_PAIR:
        if (now > w->setup_deadline_ns)
            for (; s->cur < s->n_pairs;) /* out of time: the rest fail */
                pair_failed(w, s, &s->pairs[s->cur]);
        pairing_tick(w, s, now);
        return;
    case CH_WAIT_GO: {
        int64_t go = atomic_load(&w->sh->go_ns);
        if (cb_stopping(w)) {
            s->phase = CH_DONE;
            w->done = true;
        } else if (go && now >= go) {
            start_sending(w, s, go);
        }
        return;
    }
    case CH_SEND:
        if (now >= s->end || cb_stopping(w)) {
            s->phase = CH_DRAIN;
            s->drain_end = now + (int64_t)(w->o->drain_s * 1e9);
        }
        return;
    case CH_DRAIN:
        if (settled(w) || now >= s->drain_end || cb_stopping(w)) {
            if (!settled(w))
                w->res.c[CB_C_DRAIN_CUT]++; /* lost/unanswered include late ones */
            s->phase = CH_DONE;
            w->done = true;
        }
        return;
    case CH_DONE: return;
    }
}

static void chat_on_ready(cb_worker *w, cb_conn *c, int64_t now)
{
}

static void chat_on_fail(cb_worker *w, cb_conn *c, cb_fail why, int64_t now)
{
    chat_state *s = w->mode;
    if (s->phase >= CH_WAIT_GO)
        s->pairs[c->pair].broken = true;
}

static int chat_setup(cb_worker *w)
{
    chat_state *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    w->mode = s;
    s->n_pairs = w->n_conns / 2;
    s->pairs = calloc(s->n_pairs ? s->n_pairs : 1, sizeof *s->pairs);
    if (!s->pairs)
        return -1;
    for (uint32_t i = 0; i < w->n_conns; i++) {
        w->conns[i].pair = i / 2;
        w->conns[i].role = (uint8_t)(i % 2);
    }
    cb_ramp_begin(w, 0, w->n_conns, cb_now_ns());
    return 0;
}

static void chat_finish(cb_worker *w)
{
    chat_state *s = w->mode;
    if (!s || s->finished)
        return;
    s->finished = true;
    unlock_pairing(w, s);
    uint64_t *cnt = w->res.c;
    for (uint32_t i = 0; i < s->n_pairs; i++) {
        chat_pair *p = &s->pairs[i];
        for (uint32_t q = 1; q < p->cap; q++) {
            uint8_t f = p->flags[q];
            if ((f & F_ACK0) && !(f & F_DLV1))
                cnt[CB_C_LOST]++;
            if ((f & F_ACK1) && !(f & F_DLV0))
                cnt[CB_C_LOST]++;
            if (((f & F_DLV1) && !(f & F_ACK0)) || ((f & F_DLV0) && !(f & F_ACK1)))
                cnt[CB_C_DELIVERED_UNACKED]++;
        }
    }
    uint64_t answered = cnt[CB_C_ACKED] + cnt[CB_C_SEND_ERRORS];
    cnt[CB_C_UNANSWERED] = cnt[CB_C_SENT] > answered ? cnt[CB_C_SENT] - answered : 0;
}

static void chat_cleanup(cb_worker *w)
{
    chat_state *s = w->mode;
    if (!s)
        return;
    unlock_pairing(w, s);
    for (uint32_t i = 0; s->pairs && i < s->n_pairs; i++)
        free(s->pairs[i].flags);
    free(s->pairs);
    free(s);
    w->mode = NULL;
}

const cb_mode_ops cb_chat_ops = {
    chat_setup,   chat_tick,     chat_on_ready, chat_on_frame,
    chat_on_fail, chat_on_timer, chat_finish,   chat_cleanup,
};
