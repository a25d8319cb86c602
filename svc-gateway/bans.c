/* The ban table (see gateway.h): a uthash by user id, on the lws thread.
 *
 * Two sources write it. The admin plane sets and lifts bans at once, when
 * chatctl reaches this gateway; svc-presence holds the list every gateway
 * shares (in Redis) and numbers it (bans_version): each heartbeat's answer
 * carries that number, and when it is not the table's the gateway asks for
 * the list and swaps it in whole. A gateway chatctl missed (down, started
 * later, unreachable) so catches up within a heartbeat. */
#include "gateway.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

/* A BansReq without an answer for this long is taken as lost. */
#define BANS_ASK_TIMEOUT_MS 10000
/* An admin-plane lift is kept as a tombstone until the next list swap, so
 * that a list asked for before the lift cannot bring the ban back. */
#define BANS_LIFTED (-1)

struct gw_ban {
    UT_hash_handle hh;
    char user_id[CHAT_UUID_LEN + 1];
    int64_t until_ms; /* unix ms; 0: until lifted; BANS_LIFTED: lifted (a tombstone) */
    int64_t set_ms; /* chat_mono_ms() when the admin plane set or lifted it; 0: from presence */
};

/* Lower case, as the gateway's user ids are; false when not a UUID. */
static bool bans_key(const char *user_id, char key[CHAT_UUID_LEN + 1])
{
    size_t n = user_id != NULL ? strlen(user_id) : 0;
    if (n != CHAT_UUID_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        key[i] = (char)tolower((unsigned char)user_id[i]);
    key[n] = '\0';
    return chat_uuid_valid(key);
}

static gw_ban *bans_find(gw_ban *table, const char *key)
{
    gw_ban *b = NULL;
    HASH_FIND_STR(table, key, b);
    return b;
}

/* Adds or updates one entry of table. 0 or -1 (out of memory). */
static int bans_put(gw_ban **table, const char *key, int64_t until_ms, int64_t set_ms)
{
    gw_ban *b = bans_find(*table, key);
    if (b == NULL) {
        b = calloc(1, sizeof *b);
        if (b == NULL)
            return -1;
        memcpy(b->user_id, key, sizeof b->user_id);
        HASH_ADD_STR(*table, user_id, b);
    }
    b->until_ms = until_ms;
    b->set_ms = set_ms;
    return 0;
}

static void bans_clear(gw_ban **table)
{
    gw_ban *b, *tmp;
    HASH_ITER (hh, *table, b, tmp) {
        HASH_DEL(*table, b);
        free(b);
    }
}

static bool bans_expired(const gw_ban *b, int64_t now_ms)
{
    return b->until_ms == BANS_LIFTED || (b->until_ms > 0 && b->until_ms <= now_ms);
}

int gw_bans_set(gw_server *s, const char *user_id, int64_t until_ms)
{
    char key[CHAT_UUID_LEN + 1];
    if (!bans_key(user_id, key))
        return -1;
    return bans_put(&s->bans, key, until_ms > 0 ? until_ms : 0, chat_mono_ms());
}

void gw_bans_lift(gw_server *s, const char *user_id)
{
    char key[CHAT_UUID_LEN + 1];
    if (bans_key(user_id, key) && bans_put(&s->bans, key, BANS_LIFTED, chat_mono_ms()) != 0)
        chat_error("ban_lift_failed", "user=%s err=\"out of memory\"", key);
}

int64_t gw_bans_until(gw_server *s, const char *user_id)
{
    char key[CHAT_UUID_LEN + 1];
    gw_ban *b = bans_key(user_id, key) ? bans_find(s->bans, key) : NULL;
    if (b == NULL || b->until_ms == BANS_LIFTED)
        return -1;
    if (bans_expired(b, chat_now_ms())) {
        HASH_DEL(s->bans, b);
        free(b);
        return -1;
    }
    return b->until_ms;
}

bool gw_banned(gw_server *s, const char *user_id)
{
    return s->bans != NULL && gw_bans_until(s, user_id) >= 0;
}

static void bans_prune(gw_server *s)
{
    int64_t now = chat_now_ms();
    gw_ban *b, *tmp;
    HASH_ITER (hh, s->bans, b, tmp) {
        /* Tombstones stay until the list that replaces them. */
        if (b->until_ms != BANS_LIFTED && bans_expired(b, now)) {
            HASH_DEL(s->bans, b);
            free(b);
        }
    }
}

void gw_bans_fetch(gw_server *s)
{
    if (s->bans_asking && chat_mono_ms() - s->bans_asked_ms < BANS_ASK_TIMEOUT_MS)
        return;
    Chat__BansReq req = CHAT__BANS_REQ__INIT;
    Chat__PresenceRequest pr = CHAT__PRESENCE_REQUEST__INIT;
    pr.body_case = CHAT__PRESENCE_REQUEST__BODY_BANS;
    pr.bans = &req;
    char req_id[GW_REQ_ID_MAX];
    gw_req_id_new(s, req_id);
    pr.req_id = req_id;
    s->bans_asking = true;
    s->bans_asked_ms = chat_mono_ms();
    s->m.be_requests[GW_SVC_PRESENCE]++;
    gw_backend_call(s->be, GW_OP_BANS, 0, NULL, &pr.base);
}

void gw_bans_heard(gw_server *s, uint64_t version)
{
    bans_prune(s);
    if (!s->bans_synced || version != s->bans_version)
        gw_bans_fetch(s);
}

/* Bans the admin plane set or lifted after the list was asked for are
 * newer than it: they win (the next heartbeat shows presence's newer
 * version, and its list agrees with them). */
static int bans_keep_recent(gw_server *s, gw_ban **table)
{
    int64_t asked = s->bans_asked_ms;
    for (gw_ban *b = s->bans; b != NULL; b = b->hh.next) {
        if (b->set_ms == 0 || b->set_ms < asked)
            continue;
        gw_ban *old = bans_find(*table, b->user_id);
        if (b->until_ms == BANS_LIFTED && old != NULL) {
            HASH_DEL(*table, old);
            free(old);
        } else if (b->until_ms != BANS_LIFTED &&
                   bans_put(table, b->user_id, b->until_ms, b->set_ms) != 0) {
            return -1;
        }
    }
    return 0;
}

/* The new table from a reply, or -1 (out of memory: the old one stays). */
static int bans_build(gw_server *s, const Chat__PresenceReply *r, gw_ban **table)
{
    int64_t now = chat_now_ms();
    char key[CHAT_UUID_LEN + 1];
    for (size_t i = 0; i < r->n_bans; i++) {
        const Chat__BanEntry *e = r->bans[i];
        if (e == NULL || !bans_key(e->user_id, key) || (e->until_ms > 0 && e->until_ms <= now))
            continue; /* not a user id, or over already */
        if (bans_put(table, key, e->until_ms > 0 ? e->until_ms : 0, 0) != 0)
            return -1;
    }
    return bans_keep_recent(s, table);
}

void gw_bans_reply(gw_server *s, gw_item *it)
{
    s->bans_asking = false;
    int code = it->err == 0 ? it->r.pres->code : CHAT__CODE__UNAVAILABLE;
    if (code != CHAT__CODE__OK) {
        /* Asked again at the next heartbeat's answer. */
        if (s->bans_synced)
            chat_warn("bans_fetch_failed", "err=%d code=%d", it->err, code);
        else
            chat_debug("bans_fetch_failed", "err=%d code=%d", it->err, code);
        return;
    }
    gw_ban *table = NULL;
    if (bans_build(s, it->r.pres, &table) != 0) {
        bans_clear(&table);
        chat_error("bans_fetch_failed", "err=\"out of memory\"");
        return;
    }
    bans_clear(&s->bans);
    s->bans = table;
    if (!s->bans_synced || s->bans_version != it->r.pres->bans_version)
        chat_info("bans_loaded", "version=%" PRIu64 " bans=%u", it->r.pres->bans_version,
                  HASH_COUNT(s->bans));
    s->bans_version = it->r.pres->bans_version;
    s->bans_synced = true;
}

unsigned gw_bans_count(gw_server *s)
{
    unsigned n = 0;
    for (gw_ban *b = s->bans; b != NULL; b = b->hh.next)
        n += b->until_ms != BANS_LIFTED;
    return n;
}

void gw_bans_free(gw_server *s)
{
    bans_clear(&s->bans);
}
