/* What svc-match answers on the admin plane: the random-chat queue
 * (chatctl queue). Runs on the admin thread with a Redis connection of its
 * own, so an operator's question never takes a worker from the users. */
#include "match.h"

#include <pthread.h>
#include <stdlib.h>

#include "chat/log.h"

struct match_admin {
    pthread_mutex_t mu; /* the admin thread and status's load figure share r */
    chat_redis *r;
};

match_admin *match_admin_new(const char *redis_host, int redis_port, int timeout_ms)
{
    match_admin *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->r = chat_redis_new(redis_host, redis_port, timeout_ms);
    if (a->r == NULL) {
        free(a);
        return NULL;
    }
    pthread_mutex_init(&a->mu, NULL);
    return a;
}

void match_admin_free(match_admin *a)
{
    if (a == NULL)
        return;
    chat_redis_free(a->r);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static int admin_queue_stats(match_admin *a, uint64_t *waiting, int64_t *longest_ms)
{
    pthread_mutex_lock(&a->mu);
    int rv = match_queue_stats(a->r, waiting, longest_ms);
    pthread_mutex_unlock(&a->mu);
    return rv;
}

uint64_t match_admin_waiting(match_admin *a)
{
    uint64_t waiting = 0;
    int64_t longest = 0;
    return admin_queue_stats(a, &waiting, &longest) == 0 ? waiting : 0;
}

void match_admin_handle(const Chat__AdminRequest *req, chat_admin_out *out, void *arg)
{
    match_admin *a = arg;
    if (req->body_case != CHAT__ADMIN_REQUEST__BODY_QUEUE) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED, "not served by svc-match");
        return;
    }
    Chat__AdminQueueInfo *q = chat_admin_alloc(out, sizeof *q);
    if (q == NULL) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    chat__admin_queue_info__init(q);
    if (admin_queue_stats(a, &q->waiting, &q->longest_wait_ms) != 0) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "redis unavailable");
        return;
    }
    out->reply.queue = q;
}
