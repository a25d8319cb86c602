/* Admission: which new sockets the gateway takes.
 *
 * Two limits, both checked by the front thread before a socket costs the
 * lws thread anything:
 *   - new connections per second per gateway (CHAT_CONN_RATE_PER_S): a
 *     token bucket holding one second's worth, so a reconnect storm after a
 *     restart is answered 503 + Retry-After and spreads out instead of
 *     arriving all at once;
 *   - open connections per client address (CHAT_CONN_PER_IP), so a few
 *     hosts cannot take every descriptor. Counted from accept until lws
 *     destroys the connection (gw_admit_release from LWS_CALLBACK_WSI_DESTROY).
 * The address table is the one thing the two threads share, under mu. Each
 * counted connection holds a pointer to its address's entry, which lives
 * while its count is above zero. */
#include "gateway.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <uthash.h>

struct gw_admit_ip {
    UT_hash_handle hh;
    uint8_t addr[16]; /* IPv6, or IPv4 mapped into it */
    unsigned count;
};

struct gw_admit {
    unsigned per_ip, rate;
    double tokens; /* front thread only */
    int64_t refill_ms;
    pthread_mutex_t mu;
    gw_admit_ip *ips; /* under mu */
    _Atomic uint64_t refused_rate, refused_ip;
};

gw_admit *gw_admit_new(unsigned per_ip, unsigned rate_per_s)
{
    gw_admit *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->per_ip = per_ip;
    a->rate = rate_per_s;
    a->tokens = rate_per_s;
    a->refill_ms = chat_mono_ms();
    pthread_mutex_init(&a->mu, NULL);
    return a;
}

/* The peer's address as 16 bytes (IPv4 as ::ffff:a.b.c.d, as a dual-stack
 * listener reports it anyway). False for anything else. */
static bool admit_addr(const struct sockaddr_storage *ss, uint8_t out[16])
{
    if (ss->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
        return true;
    }
    if (ss->ss_family == AF_INET) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        return true;
    }
    return false;
}

static bool admit_rate_take(gw_admit *a, int64_t now_ms)
{
    if (a->rate == 0)
        return true;
    if (now_ms > a->refill_ms) {
        a->tokens += (double)(now_ms - a->refill_ms) * a->rate / 1000.0;
        if (a->tokens > a->rate)
            a->tokens = a->rate;
        a->refill_ms = now_ms;
    }
    if (a->tokens < 1.0)
        return false;
    a->tokens -= 1.0;
    return true;
}

gw_admit_verdict gw_admit_take(gw_admit *a, const struct sockaddr_storage *peer,
                               gw_admit_ip **held)
{
    *held = NULL;
    if (!admit_rate_take(a, chat_mono_ms())) {
        atomic_fetch_add(&a->refused_rate, 1);
        return GW_ADMIT_RATE;
    }
    uint8_t addr[16];
    if (a->per_ip == 0 || !admit_addr(peer, addr))
        return GW_ADMIT_OK;
    pthread_mutex_lock(&a->mu);
    gw_admit_ip *e = NULL;
    HASH_FIND(hh, a->ips, addr, sizeof addr, e);
    gw_admit_verdict v = GW_ADMIT_OK;
    if (e != NULL && e->count >= a->per_ip) {
        v = GW_ADMIT_IP;
    } else if (e == NULL && (e = calloc(1, sizeof *e)) != NULL) {
        memcpy(e->addr, addr, sizeof addr);
        HASH_ADD(hh, a->ips, addr, sizeof e->addr, e);
    }
    if (v == GW_ADMIT_OK && e != NULL) {
        e->count++;
        *held = e;
    }
    pthread_mutex_unlock(&a->mu);
    if (v == GW_ADMIT_IP)
        atomic_fetch_add(&a->refused_ip, 1);
    return v;
}

void gw_admit_release(gw_admit *a, gw_admit_ip *held)
{
    if (held == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    if (--held->count == 0) {
        HASH_DEL(a->ips, held);
        free(held);
    }
    pthread_mutex_unlock(&a->mu);
}

void gw_admit_counts(gw_admit *a, uint64_t *refused_rate, uint64_t *refused_ip,
                     unsigned *addresses)
{
    *refused_rate = atomic_load(&a->refused_rate);
    *refused_ip = atomic_load(&a->refused_ip);
    pthread_mutex_lock(&a->mu);
    *addresses = HASH_COUNT(a->ips);
    pthread_mutex_unlock(&a->mu);
}

void gw_admit_free(gw_admit *a)
{
    if (a == NULL)
        return;
    gw_admit_ip *e, *tmp;
    HASH_ITER (hh, a->ips, e, tmp) {
        HASH_DEL(a->ips, e);
        free(e);
    }
    pthread_mutex_destroy(&a->mu);
    free(a);
}
