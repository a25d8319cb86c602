/* A worker's (or a process's) figures: counters, maxima, histograms and
 * error frames by code. One internal JSON form carries them from a forked
 * process to the coordinator, which merges them like thread results. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cb_counter_names[CB_C__N] = {
    "conn_ok",
    "conn_fail",
    "refused",
    "reset",
    "timeout",
    "http",
    "unauthorized",
    "protocol",
    "no_address",
    "no_files",
    "other",
    "unfinished",
    "not_attempted",
    "dropped",
    "pairs",
    "pair_fail",
    "sent",
    "acked",
    "delivered",
    "lost",
    "duplicates",
    "reordered",
    "unanswered",
    "delivered_unacked",
    "foreign",
    "shed",
    "send_errors",
    "drain_cut",
    "searches",
    "matched",
    "ends",
    "end_conflicts",
    "storm_dropped",
    "resumed",
    "resume_attempts",
    "not_resumed",
    "wrong_user",
    "errors",
};

const char *const cb_hist_names[CB_H__N] = {
    "connect", "ack", "delivery", "send_lag", "match", "resume",
};

void cb_result_error(cb_result *r, const char *code, uint64_t n)
{
    if (!code || !*code)
        code = "(none)";
    for (int i = 0; i < r->n_err; i++)
        if (strcmp(r->err[i].code, code) == 0) {
            r->err[i].n += n;
            return;
        }
    /* A server that invents codes must not grow us without bound: the last
     * slot collects the rest. */
    int i;
    if (r->n_err < CB_MAX_CODES - 1) {
        i = r->n_err++;
        snprintf(r->err[i].code, sizeof r->err[i].code, "%.31s", code);
    } else {
        i = CB_MAX_CODES - 1;
        if (r->n_err < CB_MAX_CODES) {
            r->n_err = CB_MAX_CODES;
            snprintf(r->err[i].code, sizeof r->err[i].code, "(other)");
        }
    }
    r->err[i].n += n;
}

void cb_result_merge(cb_result *into, const cb_result *from)
{
    for (int i = 0; i < CB_C__N; i++)
        into->c[i] += from->c[i];
    for (int i = 0; i < CB_M__N; i++)
        if (from->m[i] > into->m[i])
            into->m[i] = from->m[i];
    for (int i = 0; i < CB_H__N; i++)
        cb_hist_merge(&into->h[i], &from->h[i]);
    for (int i = 0; i < from->n_err; i++)
        cb_result_error(into, from->err[i].code, from->err[i].n);
}

cJSON *cb_result_to_json(const cb_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *c = cJSON_AddObjectToObject(o, "c");
    for (int i = 0; i < CB_C__N; i++)
        cJSON_AddNumberToObject(c, cb_counter_names[i], (double)r->c[i]);
    cJSON *m = cJSON_AddArrayToObject(o, "m");
    for (int i = 0; i < CB_M__N; i++)
        cJSON_AddItemToArray(m, cJSON_CreateNumber((double)r->m[i]));
    cJSON *h = cJSON_AddObjectToObject(o, "h");
    for (int i = 0; i < CB_H__N; i++)
        cJSON_AddItemToObject(h, cb_hist_names[i], cb_hist_to_json(&r->h[i]));
    cJSON *e = cJSON_AddObjectToObject(o, "e");
    for (int i = 0; i < r->n_err; i++)
        cJSON_AddNumberToObject(e, r->err[i].code, (double)r->err[i].n);
    return o;
}

int cb_result_from_json(cb_result *into, const char *text)
{
    cJSON *o = cJSON_Parse(text);
    if (!o)
        return -1;
    int rv = -1;
    cb_result *t = calloc(1, sizeof *t);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "c");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "m");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "h");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "e");
    if (!t || !cJSON_IsObject(c) || !cJSON_IsArray(m) || !cJSON_IsObject(h) ||
        !cJSON_IsObject(e) || cJSON_GetArraySize(m) != CB_M__N)
        goto out;
    for (int i = 0; i < CB_C__N; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, cb_counter_names[i]);
        if (!cJSON_IsNumber(v))
            goto out;
        t->c[i] = (uint64_t)v->valuedouble;
    }
    for (int i = 0; i < CB_M__N; i++)
        t->m[i] = (int64_t)cJSON_GetArrayItem(m, i)->valuedouble;
    for (int i = 0; i < CB_H__N; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(h, cb_hist_names[i]);
        if (!v || cb_hist_from_json(&t->h[i], v) != 0)
            goto out;
    }
    for (const cJSON *v = e->child; v; v = v->next)
        if (cJSON_IsNumber(v) && v->string)
            cb_result_error(t, v->string, (uint64_t)v->valuedouble);
    cb_result_merge(into, t);
    rv = 0;
out:
    free(t);
    cJSON_Delete(o);
    return rv;
}
