/* Clock and a cheap random generator. */
#include "bench.h"

#include <time.h>

int64_t cb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t cb_rand(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL; /* never stuck at 0 */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

double cb_rand01(uint64_t *s)
{
    return (double)(cb_rand(s) >> 11) / 9007199254740992.0; /* [0, 1) */
}
