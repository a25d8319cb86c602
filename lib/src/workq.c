/* Thread pool with a FIFO queue (see workq.h). */
#include "chat/workq.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct work_item {
    struct work_item *next;
    chat_work_fn fn;
    void *arg;
};

struct chat_workq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct work_item *head, *tail;
    bool stopping;
    int nthreads;
    pthread_t *threads;
    void *(*init)(void *ctx);
    void (*fini)(void *state);
    void *ctx;
};

static void *workq_main(void *arg)
{
    chat_workq *q = arg;
    void *state = q->init ? q->init(q->ctx) : NULL;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (q->head == NULL && !q->stopping)
            pthread_cond_wait(&q->cv, &q->mu);
        struct work_item *it = q->head;
        if (it == NULL) { /* stopping and drained */
            pthread_mutex_unlock(&q->mu);
            break;
        }
        q->head = it->next;
        if (q->head == NULL)
            q->tail = NULL;
        pthread_mutex_unlock(&q->mu);
        it->fn(it->arg, state);
        free(it);
    }
    if (q->fini)
        q->fini(state);
    return NULL;
}

int chat_workq_open(chat_workq **out, int threads, void *(*init)(void *ctx),
                    void (*fini)(void *state), void *ctx)
{
    chat_workq *q = calloc(1, sizeof *q);
    if (q == NULL)
        return -1;
    q->threads = calloc((size_t)threads, sizeof *q->threads);
    if (q->threads == NULL) {
        free(q);
        return -1;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->init = init;
    q->fini = fini;
    q->ctx = ctx;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&q->threads[i], NULL, workq_main, q) != 0) {
            chat_workq_close(q);
            return -1;
        }
        q->nthreads = i + 1;
    }
    *out = q;
    return 0;
}

int chat_workq_push(chat_workq *q, chat_work_fn fn, void *arg)
{
    struct work_item *it = malloc(sizeof *it);
    if (it == NULL)
        return -1;
    it->next = NULL;
    it->fn = fn;
    it->arg = arg;
    pthread_mutex_lock(&q->mu);
    if (q->stopping) {
        pthread_mutex_unlock(&q->mu);
        free(it);
        return -1;
    }
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

void chat_workq_close(chat_workq *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->threads);
    free(q);
}
