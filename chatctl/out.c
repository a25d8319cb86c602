/* Output: aligned tables and lines in table mode, one JSON document with
 * --json, failures on stderr. */
#include "chatctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const kind_names[CTL_KINDS] = {"gateway", "message", "match", "presence"};

const char *ctl_kind_name(ctl_kind k)
{
    return k < CTL_KINDS ? kind_names[k] : "?";
}

#define TABLE_COLS 16

struct ctl_table {
    int cols;
    int rows, cap;
    char **cells; /* rows * cols, row 0 the header */
};

static void table_add(ctl_table *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        int cap = t->cap ? t->cap * 2 : 8;
        char **v = realloc(t->cells, (size_t)cap * (size_t)t->cols * sizeof *v);
        if (v == NULL)
            return; /* out of memory: the row is left out */
        t->cells = v;
        t->cap = cap;
    }
    for (int i = 0; i < t->cols; i++)
        t->cells[t->rows * t->cols + i] = strdup(cells[i] ? cells[i] : "");
    t->rows++;
}

ctl_table *ctl_table_new(const char *const *header)
{
    ctl_table *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    while (t->cols < TABLE_COLS && header[t->cols] != NULL)
        t->cols++;
    table_add(t, header);
    return t;
}

void ctl_table_row(ctl_table *t, const char *const *cells)
{
    if (t != NULL)
        table_add(t, cells);
}

void ctl_table_print(ctl_table *t)
{
    if (t == NULL)
        return;
    int width[TABLE_COLS] = {0};
    for (int r = 0; r < t->rows; r++)
        for (int i = 0; i < t->cols; i++) {
            const char *s = t->cells[r * t->cols + i];
            int w = s ? (int)strlen(s) : 0;
            if (w > width[i])
                width[i] = w;
        }
    for (int r = 0; r < t->rows; r++) {
        for (int i = 0; i < t->cols; i++) {
            const char *s = t->cells[r * t->cols + i];
            /* An empty cell would shift the columns of a whitespace split. */
            s = (s == NULL || s[0] == '\0') ? "-" : s;
            if (i == t->cols - 1)
                printf("%s\n", s);
            else
                printf("%-*s  ", width[i] > 0 ? width[i] : 1, s);
        }
    }
    for (int r = 0; r < t->rows * t->cols; r++)
        free(t->cells[r]);
    free(t->cells);
    free(t);
}

void ctl_report(ctl *c, ctl_kind k, const char *address, const char *error)
{
    /* Only a document with failures has "errors": scripts compare whole
     * documents of commands that worked. */
    if (c->errors == NULL)
        c->errors = cJSON_AddArrayToObject(c->doc, "errors");
    cJSON *e = cJSON_CreateObject();
    if (e != NULL && c->errors != NULL) {
        cJSON_AddStringToObject(e, "kind", ctl_kind_name(k));
        cJSON_AddStringToObject(e, "address", address);
        cJSON_AddStringToObject(e, "error", error);
        cJSON_AddItemToArray(c->errors, e);
    } else {
        cJSON_Delete(e);
    }
    /* Unauthorized is said once, by main(). */
    if (strcmp(error, "unauthorized") != 0)
        fprintf(stderr, "chatctl: %s %s: %s\n", ctl_kind_name(k), address, error);
}

/* "error": what failed as a whole (the first such failure). */
static void doc_error(ctl *c, const char *msg)
{
    if (!cJSON_HasObjectItem(c->doc, "error"))
        cJSON_AddStringToObject(c->doc, "error", msg);
}

ctl_rc ctl_fail(ctl *c, ctl_rc rc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", msg);
    doc_error(c, msg);
    return rc;
}

void ctl_usage_print(const char *msg)
{
    fprintf(stderr, "chatctl: %s\nsee chatctl --help\n", msg);
}

ctl_rc ctl_usage(ctl *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ctl_usage_print(msg);
    doc_error(c, msg);
    return CTL_USAGE;
}

void ctl_say(ctl *c, const char *fmt, ...)
{
    if (c->json)
        return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

void ctl_json_print(ctl *c)
{
    /* The command's fields first, what failed last. */
    static const char *const tail[] = {"error", "errors"};
    for (int i = 0; i < 2; i++) {
        cJSON *it = cJSON_DetachItemFromObject(c->doc, tail[i]);
        if (it != NULL)
            cJSON_AddItemToObject(c->doc, tail[i], it);
    }
    char *s = cJSON_Print(c->doc);
    if (s != NULL)
        printf("%s\n", s);
    free(s);
}

void ctl_fmt_time(int64_t ms, char *buf, size_t n)
{
    if (ms <= 0) {
        snprintf(buf, n, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void ctl_fmt_duration(int64_t ms, char *buf, size_t n)
{
    if (ms < 0)
        ms = 0;
    if (ms < 10000) {
        snprintf(buf, n, "%.1fs", (double)ms / 1000.0);
        return;
    }
    int64_t s = ms / 1000, d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
    s %= 60;
    if (d > 0)
        snprintf(buf, n, "%lldd%02lldh%02lldm%02llds", (long long)d, (long long)h, (long long)m,
                 (long long)s);
    else if (h > 0)
        snprintf(buf, n, "%lldh%02lldm%02llds", (long long)h, (long long)m, (long long)s);
    else if (m > 0)
        snprintf(buf, n, "%lldm%02llds", (long long)m, (long long)s);
    else
        snprintf(buf, n, "%llds", (long long)s);
}

void ctl_json_str(cJSON *o, const char *name, const char *s)
{
    if (s == NULL || s[0] == '\0')
        cJSON_AddNullToObject(o, name);
    else
        cJSON_AddStringToObject(o, name, s);
}

void ctl_json_num(cJSON *o, const char *name, double v)
{
    cJSON_AddNumberToObject(o, name, v);
}
