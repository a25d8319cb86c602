/* chat_batchq: batches keep push order, respect the maximum, and grow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <time.h>

#include "chat/batchq.h"

#define ITEMS 300
#define MAX_BATCH 100

static sem_t first_running, release_first;
static int seen[ITEMS + 1], nseen, nbatches, biggest;
static intptr_t state_value;

static void *t_init(void *ctx)
{
    return ctx; /* the thread's state: whatever ctx was */
}

static void t_run(void **items, int n, void *state)
{
    state_value = (intptr_t)state;
    if (nbatches++ == 0) {
        sem_post(&first_running);
        sem_wait(&release_first); /* the rest piles up meanwhile */
    }
    if (n > biggest)
        biggest = n;
    for (int i = 0; i < n; i++)
        seen[nseen++] = (int)(intptr_t)items[i];
}

static void test_batches_in_order(void **st)
{
    sem_init(&first_running, 0, 0);
    sem_init(&release_first, 0, 0);
    chat_batchq *q;
    assert_int_equal(chat_batchq_open(&q, MAX_BATCH, t_init, NULL, t_run, (void *)42), 0);
    assert_int_equal(chat_batchq_push(q, (void *)(intptr_t)1), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    assert_int_equal(sem_timedwait(&first_running, &ts), 0);
    /* More than the ring's first size and than one batch. */
    for (int i = 2; i <= ITEMS; i++)
        assert_int_equal(chat_batchq_push(q, (void *)(intptr_t)i), 0);
    sem_post(&release_first);
    chat_batchq_close(q); /* runs what is queued */
    assert_int_equal(nseen, ITEMS);
    for (int i = 0; i < ITEMS; i++)
        assert_int_equal(seen[i], i + 1);
    assert_int_equal(biggest, MAX_BATCH);
    assert_int_equal(nbatches, 1 + (ITEMS - 1 + MAX_BATCH - 1) / MAX_BATCH);
    assert_int_equal(state_value, 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
