/* Presence pushes: when a user's first connection opens or last one
 * closes, the other members of its DMs and open random chat get
 * {"type":"presence",...} through a PresenceEvt.
 *
 * The connect/disconnect path only queues (pres_notifier_push); notifier
 * threads do the slow part: ask svc-message for the contacts, read the
 * user's state again and publish. A user always lands on the same thread,
 * and the state is read after the contacts call, so the last push
 * published for a user matches where it ended up even when it flapped.
 * Pushes are best effort like every event: a full queue or an unreachable
 * svc-message drops them (logged). */
#include "presence.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chat/log.h"

void pres_ids_free(char **ids, size_t n)
{
    if (ids == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

int pres_notify_run(const pres_notify_deps *d, chat_redis *r, const char *user, bool online,
                    int64_t at, int64_t now)
{
    char **ids = NULL;
    size_t n = 0;
    if (d->contacts(d->ctx, user, at, &ids, &n) != 0) {
        chat_debug("pres_notify_failed", "user=%s reason=contacts", user);
        return -1;
    }
    if (n == 0) {
        pres_ids_free(ids, n);
        return 0;
    }
    bool now_online = online;
    int64_t seen = 0;
    if (pres_status_of(r, user, &now_online, &seen) != 0) {
        /* Redis is away: the push is what we know. */
        now_online = online;
        seen = 0;
    }
    if (now_online != online) {
        pres_ids_free(ids, n);
        return 0; /* moved on: the push of the newer state follows */
    }
    Chat__PresenceEvt pe = CHAT__PRESENCE_EVT__INIT;
    pe.user_id = (char *)user;
    pe.online = online;
    pe.last_seen = online ? now : (seen > 0 ? seen : at);
    Chat__Event ev = CHAT__EVENT__INIT;
    ev.n_user_ids = n;
    ev.user_ids = ids;
    ev.body_case = CHAT__EVENT__BODY_PRESENCE;
    ev.presence = &pe;
    int rv = d->publish(d->ctx, &ev);
    pres_ids_free(ids, n);
    if (rv != 0) {
        chat_warn("pres_notify_failed", "user=%s reason=publish", user);
        return -1;
    }
    return 1;
}

/* ---- threads ---- */

typedef struct notify_item {
    struct notify_item *next;
    char user[CHAT_UUID_LEN + 1];
    bool online;
    int64_t at;
} notify_item;

typedef struct notify_thread {
    pres_notifier *owner;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    notify_item *head, *tail; /* under mu */
    int len;                  /* under mu */
    bool stop;                /* under mu */
    int64_t dropped;          /* under mu: since the last warning */
} notify_thread;

struct pres_notifier {
    const pres_notify_deps *deps;
    const char *redis_host;
    int redis_port, redis_timeout_ms, queue_max;
    int n;
    notify_thread *t;
};

static void *notify_main(void *arg)
{
    notify_thread *t = arg;
    pres_notifier *nt = t->owner;
    chat_redis *r = chat_redis_new(nt->redis_host, nt->redis_port, nt->redis_timeout_ms);
    for (;;) {
        pthread_mutex_lock(&t->mu);
        while (t->head == NULL && !t->stop)
            pthread_cond_wait(&t->cv, &t->mu);
        if (t->stop) {
            pthread_mutex_unlock(&t->mu);
            break;
        }
        notify_item *it = t->head;
        t->head = it->next;
        if (t->head == NULL)
            t->tail = NULL;
        t->len--;
        int64_t dropped = t->dropped;
        t->dropped = 0;
        pthread_mutex_unlock(&t->mu);
        if (dropped > 0)
            chat_warn("pres_notify_dropped", "pushes=%lld reason=queue_full",
                      (long long)dropped);
        if (r != NULL)
            pres_notify_run(nt->deps, r, it->user, it->online, it->at, chat_now_ms());
        free(it);
    }
    chat_redis_free(r);
    return NULL;
}

/* FNV-1a: the same user, the same thread. */
static unsigned notify_route(const char *user, int n)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)user; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h % (unsigned)n;
}

void pres_notifier_push(void *nctx, const char *user, bool online, int64_t at)
{
    pres_notifier *nt = nctx;
    if (nt == NULL || strlen(user) != CHAT_UUID_LEN)
        return;
    notify_thread *t = &nt->t[notify_route(user, nt->n)];
    notify_item *it = malloc(sizeof *it);
    pthread_mutex_lock(&t->mu);
    if (it == NULL || t->stop || t->len >= nt->queue_max) {
        t->dropped++;
        pthread_mutex_unlock(&t->mu);
        free(it);
        return;
    }
    memcpy(it->user, user, sizeof it->user);
    it->online = online;
    it->at = at;
    it->next = NULL;
    if (t->tail != NULL)
        t->tail->next = it;
    else
        t->head = it;
    t->tail = it;
    t->len++;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

int pres_notifier_start(pres_notifier **out, const pres_notify_deps *deps,
                        const char *redis_host, int redis_port, int redis_timeout_ms,
                        int threads, int queue_max)
{
    pres_notifier *nt = calloc(1, sizeof *nt);
    if (nt == NULL)
        return -1;
    nt->t = calloc((size_t)threads, sizeof *nt->t);
    if (nt->t == NULL) {
        free(nt);
        return -1;
    }
    nt->deps = deps;
    nt->redis_host = redis_host;
    nt->redis_port = redis_port;
    nt->redis_timeout_ms = redis_timeout_ms;
    nt->queue_max = queue_max;
    nt->n = threads;
    for (int i = 0; i < threads; i++) {
        notify_thread *t = &nt->t[i];
        t->owner = nt;
        pthread_mutex_init(&t->mu, NULL);
        pthread_cond_init(&t->cv, NULL);
    }
    for (int i = 0; i < threads; i++) {
        notify_thread *t = &nt->t[i];
        t->started = pthread_create(&t->thread, NULL, notify_main, t) == 0;
        if (!t->started) {
            chat_error("pres_notifier_failed", "thread=%d", i);
            pres_notifier_stop(nt);
            return -1;
        }
    }
    *out = nt;
    return 0;
}

void pres_notifier_stop(pres_notifier *nt)
{
    if (nt == NULL)
        return;
    for (int i = 0; i < nt->n; i++) {
        notify_thread *t = &nt->t[i];
        pthread_mutex_lock(&t->mu);
        t->stop = true;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
    }
    for (int i = 0; i < nt->n; i++) {
        notify_thread *t = &nt->t[i];
        if (t->started)
            pthread_join(t->thread, NULL);
        while (t->head != NULL) {
            notify_item *next = t->head->next;
            free(t->head);
            t->head = next;
        }
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
    }
    free(nt->t);
    free(nt);
}
