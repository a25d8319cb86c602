/* A thread that drains its queue in batches: everything queued while it
 * worked (up to a maximum) is handed over at once. For group commit, where
 * one transaction serves whatever arrived together (see svc-message's
 * writers). Items keep their push order. */
#ifndef CHAT_BATCHQ_H
#define CHAT_BATCHQ_H

typedef struct chat_batchq chat_batchq;
/* Runs on the queue's thread with 1..max items; owns them from here. */
typedef void (*chat_batch_fn)(void **items, int n, void *thread_state);

/* init runs once on the new thread and returns its private state (e.g. a
 * database connection); fini frees it when the queue stops. Both may be
 * NULL. Returns 0 or -1. */
int chat_batchq_open(chat_batchq **out, int max_batch, void *(*init)(void *ctx),
                     void (*fini)(void *state), chat_batch_fn run, void *ctx);
/* Thread-safe; never waits for the work. Returns 0, or -1 when the queue is
 * stopping or out of memory (the item was not queued; the caller keeps it). */
int chat_batchq_push(chat_batchq *q, void *item);
/* Runs what is queued, then joins the thread. NULL is fine. */
void chat_batchq_close(chat_batchq *q);

#endif
