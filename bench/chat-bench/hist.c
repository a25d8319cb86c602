/* Log-linear latency histogram (see bench.h): constant memory whatever the
 * number of samples, mergeable across workers by adding slots. */
#include "bench.h"

#include <math.h>

#define HIST_LINEAR 128                 /* exact below this */
#define HIST_SUB 64                     /* sub-buckets per power of two */
#define HIST_MAX ((uint64_t)UINT32_MAX) /* clamp, us */

_Static_assert(CB_HIST_SLOTS == HIST_LINEAR + (32 - 7) * HIST_SUB, "slot count");

int cb_hist_slot(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (int)v;
    if (v > HIST_MAX)
        v = HIST_MAX;
    int msb = 63 - __builtin_clzll(v); /* 7..31 */
    int shift = msb - 6;               /* v >> shift is in [64, 128) */
    return HIST_LINEAR + (shift - 1) * HIST_SUB + (int)((v >> shift) - HIST_SUB);
}

uint64_t cb_hist_slot_high(int s)
{
    if (s < HIST_LINEAR)
        return (uint64_t)s;
    int shift = (s - HIST_LINEAR) / HIST_SUB + 1;
    uint64_t sub = (uint64_t)((s - HIST_LINEAR) % HIST_SUB + HIST_SUB);
    return ((sub + 1) << shift) - 1;
}

void cb_hist_add(cb_hist *h, int64_t us)
{
    uint64_t v = us < 0 ? 0 : (uint64_t)us; /* clocks never go back; be safe anyway */
    if (v > HIST_MAX)
        v = HIST_MAX;
    h->slot[cb_hist_slot(v)]++;
    if (h->count == 0 || v < h->min_us)
        h->min_us = v;
    if (v > h->max_us)
        h->max_us = v;
    h->count++;
    h->sum_us += v;
}

void cb_hist_merge(cb_hist *into, const cb_hist *from)
{
    if (from->count == 0)
        return;
    for (int i = 0; i < CB_HIST_SLOTS; i++)
        into->slot[i] += from->slot[i];
    if (into->count == 0 || from->min_us < into->min_us)
        into->min_us = from->min_us;
    if (from->max_us > into->max_us)
        into->max_us = from->max_us;
    into->count += from->count;
    into->sum_us += from->sum_us;
}

uint64_t cb_hist_pct(const cb_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (int i = 0; i < CB_HIST_SLOTS; i++) {
        seen += h->slot[i];
        if (seen >= want) {
            uint64_t v = cb_hist_slot_high(i);
            return v > h->max_us ? h->max_us : v;
        }
    }
    return h->max_us;
}

cJSON *cb_hist_to_json(const cb_hist *h)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", (double)h->count);
    cJSON_AddNumberToObject(o, "sum", (double)h->sum_us);
    cJSON_AddNumberToObject(o, "min", (double)h->min_us);
    cJSON_AddNumberToObject(o, "max", (double)h->max_us);
    cJSON *s = cJSON_AddArrayToObject(o, "slots"); /* [slot, count, slot, count, ...] */
    for (int i = 0; i < CB_HIST_SLOTS; i++)
        if (h->slot[i]) {
            cJSON_AddItemToArray(s, cJSON_CreateNumber(i));
            cJSON_AddItemToArray(s, cJSON_CreateNumber((double)h->slot[i]));
        }
    return o;
}

static bool num(const cJSON *o, const char *name, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0)
        return false;
    *out = (uint64_t)v->valuedouble;
    return true;
}

int cb_hist_from_json(cb_hist *h, const cJSON *j)
{
    cb_hist t = {0};
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "slots");
    if (!num(j, "count", &t.count) || !num(j, "sum", &t.sum_us) || !num(j, "min", &t.min_us) ||
        !num(j, "max", &t.max_us) || !cJSON_IsArray(s))
        return -1;
    int n = cJSON_GetArraySize(s);
    if (n % 2)
        return -1;
    uint64_t total = 0;
    for (const cJSON *e = s->child; e && e->next; e = e->next->next) {
        if (!cJSON_IsNumber(e) || !cJSON_IsNumber(e->next))
            return -1;
        double slot = e->valuedouble;
        if (slot < 0 || slot >= CB_HIST_SLOTS || e->next->valuedouble < 0)
            return -1;
        t.slot[(int)slot] += (uint64_t)e->next->valuedouble;
        total += (uint64_t)e->next->valuedouble;
    }
    if (total != t.count)
        return -1;
    cb_hist_merge(h, &t);
    return 0;
}

static double ms(uint64_t us)
{
    return round((double)us) / 1000.0;
}

cJSON *cb_hist_summary(const cb_hist *h)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", (double)h->count);
    cJSON_AddNumberToObject(o, "p50", ms(cb_hist_pct(h, 50)));
    cJSON_AddNumberToObject(o, "p90", ms(cb_hist_pct(h, 90)));
    cJSON_AddNumberToObject(o, "p99", ms(cb_hist_pct(h, 99)));
    cJSON_AddNumberToObject(o, "max", ms(h->max_us));
    cJSON_AddNumberToObject(
        o, "mean", h->count ? round((double)h->sum_us / (double)h->count) / 1000.0 : 0);
    return o;
}
