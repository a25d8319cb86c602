/* A thread draining a ring buffer in batches (see batchq.h). The ring
 * grows by doubling, so pushing allocates only when it has to grow. */
#include "chat/batchq.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define BATCHQ_MIN_CAP 64

struct chat_batchq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void **ring; /* under mu */
    size_t cap, head, count;
    bool stopping; /* under mu */
    pthread_t thread;
    int max_batch;
    void *(*init)(void *ctx);
    void (*fini)(void *state);
    chat_batch_fn run;
    void *ctx;
};

/* Under mu. Doubles the ring, unwrapping it. Returns 0 or -1. */
static int batchq_grow(chat_batchq *q)
{
    size_t cap = q->cap ? q->cap * 2 : BATCHQ_MIN_CAP;
    void **ring = malloc(cap * sizeof *ring);
    if (ring == NULL)
        return -1;
    for (size_t i = 0; i < q->count; i++)
        ring[i] = q->ring[(q->head + i) % q->cap];
    free(q->ring);
    q->ring = ring;
    q->cap = cap;
    q->head = 0;
    return 0;
}

/* Under mu. Moves up to max items from the front into out. */
static int batchq_take(chat_batchq *q, void **out, int max)
{
    int n = 0;
    for (; n < max && q->count > 0; n++) {
        out[n] = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }
    return n;
}

static void *batchq_main(void *arg)
{
    chat_batchq *q = arg;
    void *state = q->init ? q->init(q->ctx) : NULL;
    void **batch = malloc((size_t)q->max_batch * sizeof *batch);
    void *one[1];
    int max = q->max_batch;
    if (batch == NULL) { /* no memory for batches: one at a time */
        batch = one;
        max = 1;
    }
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (q->count == 0 && !q->stopping)
            pthread_cond_wait(&q->cv, &q->mu);
        int n = batchq_take(q, batch, max);
        pthread_mutex_unlock(&q->mu);
        if (n == 0)
            break; /* stopping and drained */
        q->run(batch, n, state);
    }
    if (batch != one)
        free(batch);
    if (q->fini)
        q->fini(state);
    return NULL;
}

int chat_batchq_open(chat_batchq **out, int max_batch, void *(*init)(void *ctx),
                     void (*fini)(void *state), chat_batch_fn run, void *ctx)
{
    chat_batchq *q = calloc(1, sizeof *q);
    if (q == NULL)
        return -1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->max_batch = max_batch > 0 ? max_batch : 1;
    q->init = init;
    q->fini = fini;
    q->run = run;
    q->ctx = ctx;
    if (pthread_create(&q->thread, NULL, batchq_main, q) != 0) {
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
        free(q);
        return -1;
    }
    *out = q;
    return 0;
}

int chat_batchq_push(chat_batchq *q, void *item)
{
    pthread_mutex_lock(&q->mu);
    if (q->stopping || (q->count == q->cap && batchq_grow(q) != 0)) {
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    q->ring[(q->head + q->count) % q->cap] = item;
    q->count++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

void chat_batchq_close(chat_batchq *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->ring);
    free(q);
}
