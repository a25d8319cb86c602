/* Typing pushes and their timeout, on the receiving side.
 *
 * svc-message relays every typing frame as an event to the other members.
 * Each gateway that delivers a `start` remembers, per (conversation,
 * typist), which of its connections got it and until when; a `stop` (or a
 * newer `start`) settles or renews that, and when the deadline passes
 * without either, this gateway sends those connections the `stop` itself.
 * Living here, the timeout also fires when the typist's own gateway or
 * connection is gone: the receivers' gateway is the one that must be up
 * for a push to matter. Runs on the lws thread. */
#include "gateway.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

/* Typing states one gateway tracks at most; past that a start is still
 * delivered, only its automatic stop is not (logged). */
#define TYPING_MAX_ENTRIES 100000

struct gw_typing {
    UT_hash_handle hh;
    char key[GW_ID_MAX + CHAT_UUID_LEN + 3]; /* conversation '\n' typist */
    char conv[GW_ID_MAX + 1];
    char user[CHAT_UUID_LEN + 1];
    int64_t deadline_ms; /* monotonic */
    uint64_t *conns;     /* got the start (may have closed since; may repeat) */
    size_t n, cap;
    size_t unique; /* n after the last typing_compact */
};

static void typing_free(gw_typing *t)
{
    free(t->conns);
    free(t);
}

static void typing_remove(gw_server *s, gw_typing *t)
{
    HASH_DEL(s->typing, t);
    s->n_typing--;
    typing_free(t);
}

static int typing_key(char *key, size_t n, const char *conv, const char *user)
{
    int len = snprintf(key, n, "%s\n%s", conv, user);
    return len < 0 || (size_t)len >= n ? -1 : 0;
}

/* Appends without looking for id: a scan per connection would make a big
 * room's start cost n^2. Renewed starts repeat ids; typing_compact drops
 * them. */
static void typing_add_conn(gw_typing *t, uint64_t id)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4;
        uint64_t *p = realloc(t->conns, cap * sizeof *p);
        if (p == NULL)
            return; /* this connection misses the automatic stop */
        t->conns = p;
        t->cap = cap;
    }
    t->conns[t->n++] = id;
}

static int typing_cmp_id(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts and drops repeated ids once the list has doubled since the last
 * time (O(n log n) per doubling, so a start costs about its recipients),
 * or now when forced (before the automatic stop: one per connection). */
static void typing_compact(gw_typing *t, bool force)
{
    if (!force && t->n < 2 * t->unique + 16)
        return;
    qsort(t->conns, t->n, sizeof *t->conns, typing_cmp_id);
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++)
        if (k == 0 || t->conns[k - 1] != t->conns[i])
            t->conns[k++] = t->conns[i];
    t->n = t->unique = k;
}

/* The entry of (conv, user), created when missing. NULL: too many, too
 * long or out of memory. */
static gw_typing *typing_get(gw_server *s, const char *conv, const char *user)
{
    char key[GW_ID_MAX + CHAT_UUID_LEN + 3];
    if (strlen(conv) > GW_ID_MAX || strlen(user) > CHAT_UUID_LEN ||
        typing_key(key, sizeof key, conv, user) != 0)
        return NULL;
    gw_typing *t = NULL;
    HASH_FIND_STR(s->typing, key, t);
    if (t != NULL)
        return t;
    if (s->n_typing >= TYPING_MAX_ENTRIES) {
        if (!s->typing_full_logged)
            chat_warn("typing_table_full", "entries=%zu", s->n_typing);
        s->typing_full_logged = true;
        return NULL;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    memcpy(t->key, key, sizeof t->key);
    snprintf(t->conv, sizeof t->conv, "%s", conv);
    snprintf(t->user, sizeof t->user, "%s", user);
    HASH_ADD_STR(s->typing, key, t);
    s->n_typing++;
    return t;
}

static gw_typing *typing_find(gw_server *s, const char *conv, const char *user)
{
    char key[GW_ID_MAX + CHAT_UUID_LEN + 3];
    gw_typing *t = NULL;
    if (typing_key(key, sizeof key, conv, user) == 0)
        HASH_FIND_STR(s->typing, key, t);
    return t;
}

void gw_typing_deliver(gw_server *s, const Chat__Event *ev)
{
    const Chat__TypingEvt *te = ev->typing;
    if (te == NULL || te->conversation_id == NULL || te->user_id == NULL)
        return;
    gw_frame *f = NULL;
    gw_typing *t = NULL;
    for (size_t i = 0; i < ev->n_user_ids; i++) {
        gw_user *u = gw_user_find(s, ev->user_ids[i]);
        if (u == NULL)
            continue;
        if (f == NULL &&
            (f = gw_render_typing(te->conversation_id, te->user_id, te->start)) == NULL)
            return;
        if (te->start && t == NULL)
            t = typing_get(s, te->conversation_id, te->user_id);
        for (gw_conn *c = u->conns; c != NULL; c = c->unext) {
            gw_conn_push(s, c, gw_frame_ref(f));
            if (t != NULL)
                typing_add_conn(t, c->id);
        }
    }
    gw_frame_unref(f);
    if (t != NULL) {
        typing_compact(t, false);
        t->deadline_ms = chat_mono_ms() + s->cfg->typing_timeout_ms;
    } else if (!te->start && (t = typing_find(s, te->conversation_id, te->user_id)) != NULL)
        typing_remove(s, t); /* settled: no automatic stop */
}

void gw_typing_sweep(gw_server *s, int64_t now_ms)
{
    gw_typing *t, *tmp;
    HASH_ITER (hh, s->typing, t, tmp) {
        if (t->deadline_ms > now_ms)
            continue;
        gw_frame *f = gw_render_typing(t->conv, t->user, false);
        typing_compact(t, true);
        for (size_t i = 0; f != NULL && i < t->n; i++) {
            gw_conn *c = gw_conn_find(s, t->conns[i]);
            if (c != NULL)
                gw_conn_push(s, c, gw_frame_ref(f));
        }
        gw_frame_unref(f);
        typing_remove(s, t);
    }
}

void gw_typing_free_all(gw_server *s)
{
    gw_typing *t, *tmp;
    HASH_ITER (hh, s->typing, t, tmp)
        typing_remove(s, t);
    s->typing_full_logged = false;
}
