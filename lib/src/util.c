/* Time, UUIDs, signals, lists (see util.h). */
#include "chat/util.h"

#include <ctype.h>
#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uuid.h>

int64_t chat_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t chat_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec chat_deadline_ms(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

void chat_uuid_new(char out[CHAT_UUID_LEN + 1])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}

bool chat_uuid_valid(const char *s)
{
    if (s == NULL || strlen(s) != CHAT_UUID_LEN)
        return false;
    for (int i = 0; i < CHAT_UUID_LEN; i++) {
        bool dash = (i == 8 || i == 13 || i == 18 || i == 23);
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

bool chat_room_valid(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > CHAT_ROOM_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static atomic_int sig_stop;
static sem_t sig_sem; /* posted by the handler: sem_post is async-signal-safe */

static void on_signal(int sig)
{
    /* A second SIGINT means "now": the operator does not want to wait. */
    if (sig == SIGINT && atomic_load(&sig_stop))
        _exit(130);
    atomic_store(&sig_stop, 1);
    sem_post(&sig_sem);
}

void chat_signals_install(void)
{
    sem_init(&sig_sem, 0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool chat_stopping(void)
{
    return atomic_load(&sig_stop) != 0;
}

void chat_wait_for_stop(void)
{
    while (!chat_stopping())
        if (sem_wait(&sig_sem) != 0 && errno != EINTR)
            break;
}

int chat_split_list(const char *list, int (*fn)(const char *item, void *arg), void *arg)
{
    const char *p = list;
    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len > 0 && isspace((unsigned char)*p)) {
            p++;
            len--;
        }
        while (len > 0 && isspace((unsigned char)p[len - 1]))
            len--;
        if (len > 0) {
            char *item = strndup(p, len);
            if (item == NULL)
                return -1;
            int rv = fn(item, arg);
            free(item);
            if (rv != 0)
                return rv;
        }
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}
