/* A fixed pool of threads running queued work items in FIFO order. Used
 * where work blocks (Redis, PostgreSQL) so nng's own threads never do. */
#ifndef CHAT_WORKQ_H
#define CHAT_WORKQ_H

typedef struct chat_workq chat_workq;
typedef void (*chat_work_fn)(void *arg, void *thread_state);

/* init runs once on each new thread and returns its private state (e.g. a
 * Redis connection); fini frees it when the pool stops. Both may be NULL. */
int chat_workq_open(chat_workq **out, int threads, void *(*init)(void *ctx),
                    void (*fini)(void *state), void *ctx);
/* Thread-safe; never blocks on the work itself. Returns 0, or -1 when the
 * pool is stopping (the item was not queued). */
int chat_workq_push(chat_workq *q, chat_work_fn fn, void *arg);
/* Runs what is queued, then joins the threads. NULL is fine. */
void chat_workq_close(chat_workq *q);

#endif
