/* The dialers of one socket, kept in step with what its addresses name
 * (see dialers.h): a tcp:// URL whose host is a name gets one dialer per
 * address the name resolves to, re-resolved every CHAT_RESOLVE_MS, so
 * replicas behind a Kubernetes headless Service (one DNS name, an address
 * per pod) are dialed as they come and dropped as they go. */
#include "dialers.h"
#include "tls.h"

_Static_assert(CHAT_ADDR_TEXT == INET6_ADDRSTRLEN, "address text size");

#include "chat/log.h"
#include "chat/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DIALERS_MAX 64 /* addresses per socket */
#define URL_MAX 300
#define RESOLVE_MS_DEFAULT 2000

typedef struct dial_entry {
    char url[URL_MAX];
    nng_dialer d;
    int src;   /* the source that names it */
    bool keep; /* reconcile: still named */
} dial_entry;

/* One URL of the list: static (dialed once as written) or a host name with
 * the rest of the URL around it. */
typedef struct dial_source {
    char scheme[16]; /* "tcp://" or "tls+tcp://" */
    char host[256];
    char port[16];
    bool named;
    char url[URL_MAX]; /* as written */
} dial_source;

struct chat_dialers {
    nng_socket sock;
    dial_source *src;
    int n_src;
    dial_entry ent[DIALERS_MAX];
    int n_ent;
    atomic_int count;
    int64_t every_ms;
    pthread_mutex_t mu; /* ent, n_ent, stop */
    pthread_cond_t cv;
    pthread_t thread;
    bool threaded, stop;
};

/* "tcp://host:port[/...]" (or tls+tcp://) with host neither an IPv4 nor a
 * bracketed IPv6 literal: a name. Everything else is dialed as written. */
static void source_parse(dial_source *s, const char *url)
{
    memset(s, 0, sizeof *s);
    snprintf(s->url, sizeof s->url, "%s", url);
    const char *scheme = strncmp(url, "tcp://", 6) == 0        ? "tcp://"
                         : strncmp(url, "tls+tcp://", 10) == 0 ? "tls+tcp://"
                                                               : NULL;
    if (scheme == NULL)
        return;
    const char *h = url + strlen(scheme), *colon = strrchr(h, ':');
    if (h[0] == '[' || colon == NULL || (size_t)(colon - h) >= sizeof s->host ||
        strlen(colon + 1) >= sizeof s->port || colon == h)
        return;
    memcpy(s->host, h, (size_t)(colon - h));
    snprintf(s->port, sizeof s->port, "%s", colon + 1);
    struct in_addr a4;
    if (inet_pton(AF_INET, s->host, &a4) == 1)
        return;
    snprintf(s->scheme, sizeof s->scheme, "%s", scheme);
    s->named = true;
}

/* The hosts file (CHAT_HOSTS_FILE): lines "name addr addr ...", read on each
 * resolution. Returns the addresses it lists for host (possibly none), or
 * -1 when it does not name host (then DNS decides). */
static int hosts_file_lookup(const char *host, char out[][CHAT_ADDR_TEXT], int max)
{
    const char *path = getenv("CHAT_HOSTS_FILE");
    FILE *f = path != NULL && path[0] ? fopen(path, "r") : NULL;
    if (f == NULL)
        return -1;
    char line[1024];
    int n = -1;
    while (n < 0 && fgets(line, sizeof line, f) != NULL) {
        char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save);
        if (tok == NULL || tok[0] == '#' || strcmp(tok, host) != 0)
            continue;
        n = 0;
        while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL && n < max)
            snprintf(out[n++], INET6_ADDRSTRLEN, "%s", tok);
    }
    fclose(f);
    return n;
}

int chat_resolve(const char *host, char out[][CHAT_ADDR_TEXT], int max)
{
    int n = hosts_file_lookup(host, out, max);
    if (n >= 0)
        return n;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return -1;
    n = 0;
    for (struct addrinfo *ai = res; ai != NULL && n < max; ai = ai->ai_next) {
        char buf[INET6_ADDRSTRLEN];
        const void *a = ai->ai_family == AF_INET
                            ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                            : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        if (inet_ntop(ai->ai_family, a, buf, sizeof buf) == NULL)
            continue;
        bool dup = false;
        for (int i = 0; i < n && !dup; i++)
            dup = strcmp(out[i], buf) == 0;
        if (!dup)
            snprintf(out[n++], INET6_ADDRSTRLEN, "%s", buf);
    }
    freeaddrinfo(res);
    return n;
}

/* Returns 0 or nng_dial's error. */
static int entry_want(chat_dialers *d, int src, const char *url)
{
    for (int i = 0; i < d->n_ent; i++)
        if (strcmp(d->ent[i].url, url) == 0) {
            d->ent[i].keep = true;
            return 0;
        }
    if (d->n_ent == DIALERS_MAX) {
        chat_log(CHAT_LOG_WARN, "dialers_full", "url=%s max=%d", url, DIALERS_MAX);
        return NNG_ENOSPC;
    }
    dial_entry *e = &d->ent[d->n_ent];
    int rv = chat_tls_dial(d->sock, url, &e->d);
    if (rv != 0) {
        chat_log(CHAT_LOG_WARN, "dial_failed", "url=%s err=\"%s\"", url, nng_strerror(rv));
        return rv;
    }
    snprintf(e->url, sizeof e->url, "%s", url);
    e->src = src;
    e->keep = true;
    d->n_ent++;
    chat_log(CHAT_LOG_INFO, "peer_added", "url=%s", url);
    return 0;
}

/* Dials what the sources name now and closes the dialers of addresses no
 * longer named. A name that does not resolve at the moment keeps its
 * dialers (a DNS hiccup must not cut every replica off). Returns the
 * first error of an address dialed as written (a bad configuration). */
static int dialers_reconcile(chat_dialers *d)
{
    int err = 0;
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < d->n_ent; i++)
        d->ent[i].keep = false;
    for (int s = 0; s < d->n_src; s++) {
        dial_source *src = &d->src[s];
        if (!src->named) {
            int rv = entry_want(d, s, src->url);
            if (err == 0)
                err = rv;
            continue;
        }
        char addrs[DIALERS_MAX][INET6_ADDRSTRLEN];
        int n = chat_resolve(src->host, addrs, DIALERS_MAX);
        if (n < 0) {
            for (int i = 0; i < d->n_ent; i++) /* keep this name's dialers */
                if (d->ent[i].src == s)
                    d->ent[i].keep = true;
            continue;
        }
        for (int i = 0; i < n; i++) {
            char url[URL_MAX];
            bool v6 = strchr(addrs[i], ':') != NULL;
            int w = snprintf(url, sizeof url, "%s%s%.*s%s:%s", src->scheme, v6 ? "[" : "",
                             INET6_ADDRSTRLEN, addrs[i], v6 ? "]" : "", src->port);
            if (w < 0 || (size_t)w >= sizeof url)
                continue;
            entry_want(d, s, url);
        }
    }
    for (int i = 0; i < d->n_ent;) {
        if (d->ent[i].keep) {
            i++;
            continue;
        }
        chat_log(CHAT_LOG_INFO, "peer_removed", "url=%s", d->ent[i].url);
        nng_dialer_close(d->ent[i].d);
        d->ent[i] = d->ent[--d->n_ent];
    }
    atomic_store(&d->count, d->n_ent);
    pthread_mutex_unlock(&d->mu);
    return err;
}

static void *dialers_main(void *arg)
{
    chat_dialers *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        struct timespec until = chat_deadline_ms(d->every_ms);
        while (!d->stop && pthread_cond_timedwait(&d->cv, &d->mu, &until) != ETIMEDOUT)
            ;
        if (d->stop)
            break;
        pthread_mutex_unlock(&d->mu);
        dialers_reconcile(d);
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static int count_source(const char *item, void *arg)
{
    chat_dialers *d = arg;
    dial_source *grown = realloc(d->src, (size_t)(d->n_src + 1) * sizeof *grown);
    if (grown == NULL)
        return NNG_ENOMEM;
    d->src = grown;
    source_parse(&d->src[d->n_src++], item);
    return 0;
}

int chat_dialers_open(chat_dialers **out, nng_socket sock, const char *urls)
{
    chat_dialers *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NNG_ENOMEM;
    d->sock = sock;
    const char *every = getenv("CHAT_RESOLVE_MS");
    d->every_ms = every != NULL && atoll(every) >= 50 ? atoll(every) : RESOLVE_MS_DEFAULT;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    int rv = chat_split_list(urls, count_source, d);
    if (rv == 0 && d->n_src == 0)
        rv = NNG_EADDRINVAL;
    if (rv != 0) {
        chat_dialers_close(d);
        return rv;
    }
    if ((rv = dialers_reconcile(d)) != 0) {
        chat_dialers_close(d);
        return rv;
    }
    bool named = false;
    for (int s = 0; s < d->n_src; s++)
        named |= d->src[s].named;
    if (named && pthread_create(&d->thread, NULL, dialers_main, d) == 0)
        d->threaded = true;
    *out = d;
    return 0;
}

int chat_dialers_count(chat_dialers *d)
{
    return d != NULL ? atomic_load(&d->count) : 0;
}

void chat_dialers_close(chat_dialers *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (d->threaded)
        pthread_join(d->thread, NULL);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d->src);
    free(d);
}
