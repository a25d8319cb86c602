/* Prometheus text and the counters behind it (see metrics.h). */
#include "chat/metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.pb-c.h"

void chat_mbuf_init(chat_mbuf *b)
{
    memset(b, 0, sizeof *b);
}

void chat_mbuf_printf(chat_mbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
}

char *chat_mbuf_take(chat_mbuf *b, size_t *len)
{
    if (b->failed || b->data == NULL) {
        chat_mbuf_free(b);
        return NULL;
    }
    char *p = b->data;
    *len = b->len;
    chat_mbuf_init(b);
    return p;
}

void chat_mbuf_free(chat_mbuf *b)
{
    free(b->data);
    chat_mbuf_init(b);
}

void chat_metric_family(chat_mbuf *b, const char *name, const char *type, const char *help)
{
    chat_mbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void chat_metric_counter(chat_mbuf *b, const char *name, const char *help, uint64_t v)
{
    chat_metric_family(b, name, "counter", help);
    chat_mbuf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

void chat_metric_gauge(chat_mbuf *b, const char *name, const char *help, double v)
{
    chat_metric_family(b, name, "gauge", help);
    chat_mbuf_printf(b, "%s %.17g\n", name, v);
}

/* ---- histograms ---- */
const double chat_hist_bounds[CHAT_HIST_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

void chat_hist_observe(chat_hist *h, double seconds)
{
    int i = 0;
    while (i < CHAT_HIST_BUCKETS && seconds > chat_hist_bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    if (seconds > 0)
        atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)(seconds * 1e9), memory_order_relaxed);
}

/* One _bucket line: the labels joined with le. */
static void hist_bucket(chat_mbuf *b, const char *name, const char *labels, const char *le,
                        uint64_t cum)
{
    chat_mbuf_printf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, labels[0] ? "," : "",
                     le, (unsigned long long)cum);
}

static void hist_tail(chat_mbuf *b, const char *name, const char *labels, double sum,
                      uint64_t count)
{
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    chat_mbuf_printf(b, "%s_sum%s%s%s %.9g\n%s_count%s%s%s %llu\n", name, open, labels, close,
                     sum, name, open, labels, close, (unsigned long long)count);
}

void chat_hist_render(chat_mbuf *b, const char *name, const char *labels, const chat_hist *h)
{
    uint64_t cum = 0;
    char le[32];
    for (int i = 0; i < CHAT_HIST_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        snprintf(le, sizeof le, "%g", chat_hist_bounds[i]);
        hist_bucket(b, name, labels, le, cum);
    }
    cum += atomic_load_explicit(&h->counts[CHAT_HIST_BUCKETS], memory_order_relaxed);
    hist_bucket(b, name, labels, "+Inf", cum);
    hist_tail(b, name, labels,
              (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9, cum);
}

void chat_size_hist_observe(chat_size_hist *h, uint64_t n)
{
    int i = 0;
    while (i < CHAT_SIZE_BUCKETS && n > (1ULL << i))
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, n, memory_order_relaxed);
}

void chat_size_hist_render(chat_mbuf *b, const char *name, const char *labels,
                           const chat_size_hist *h)
{
    uint64_t cum = 0;
    char le[32];
    for (int i = 0; i < CHAT_SIZE_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        snprintf(le, sizeof le, "%llu", 1ULL << i);
        hist_bucket(b, name, labels, le, cum);
    }
    cum += atomic_load_explicit(&h->counts[CHAT_SIZE_BUCKETS], memory_order_relaxed);
    hist_bucket(b, name, labels, "+Inf", cum);
    hist_tail(b, name, labels, (double)atomic_load_explicit(&h->sum, memory_order_relaxed),
              cum);
}

/* ---- requests by type and outcome ---- */
#define RS_CODES 16 /* chat.Code values 0..15; others count as the last */

struct chat_reqstats {
    int n_types;        /* type 0: unknown; then one per oneof field */
    char **names;       /* [n_types] */
    int *field_numbers; /* [n_types]: body_case of type i */
    _Atomic uint64_t (*outcomes)[RS_CODES];
    chat_hist *hists;
};

chat_reqstats *chat_reqstats_new(const ProtobufCMessageDescriptor *desc)
{
    chat_reqstats *rs = calloc(1, sizeof *rs);
    if (rs == NULL)
        return NULL;
    int n = 1;
    for (unsigned i = 0; i < desc->n_fields; i++)
        if (desc->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            n++;
    rs->n_types = n;
    rs->names = calloc((size_t)n, sizeof *rs->names);
    rs->field_numbers = calloc((size_t)n, sizeof *rs->field_numbers);
    rs->outcomes = calloc((size_t)n, sizeof *rs->outcomes);
    rs->hists = calloc((size_t)n, sizeof *rs->hists);
    if (!rs->names || !rs->field_numbers || !rs->outcomes || !rs->hists) {
        chat_reqstats_free(rs);
        return NULL;
    }
    rs->names[0] = "unknown";
    int t = 1;
    for (unsigned i = 0; i < desc->n_fields; i++)
        if (desc->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            rs->names[t] = (char *)desc->fields[i].name;
            rs->field_numbers[t++] = (int)desc->fields[i].id;
        }
    return rs;
}

static int rs_type(const chat_reqstats *rs, int body_case)
{
    for (int t = 1; t < rs->n_types; t++)
        if (rs->field_numbers[t] == body_case)
            return t;
    return 0;
}

void chat_reqstats_observe(chat_reqstats *rs, int body_case, int code, double seconds)
{
    if (rs == NULL)
        return;
    int t = rs_type(rs, body_case);
    int c = code >= 0 && code < RS_CODES ? code : RS_CODES - 1;
    atomic_fetch_add_explicit(&rs->outcomes[t][c], 1, memory_order_relaxed);
    chat_hist_observe(&rs->hists[t], seconds);
}

/* chat.Code's name in lower case ("NOT_MEMBER" -> "not_member"). */
static void rs_outcome_name(int code, char out[32])
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&chat__code__descriptor, code);
    if (v == NULL) {
        snprintf(out, 32, "other");
        return;
    }
    size_t i = 0;
    for (; v->name[i] && i < 31; i++)
        out[i] = (char)tolower((unsigned char)v->name[i]);
    out[i] = '\0';
}

void chat_reqstats_render(chat_mbuf *b, const chat_reqstats *rs)
{
    if (rs == NULL)
        return;
    chat_metric_family(b, "chat_requests_total", "counter",
                       "Requests answered, by request type and outcome.");
    char outcome[32];
    for (int t = 0; t < rs->n_types; t++)
        for (int c = 0; c < RS_CODES; c++) {
            uint64_t v = atomic_load_explicit(&rs->outcomes[t][c], memory_order_relaxed);
            /* Every type's ok and unavailable are always there (a rate of
             * failures needs its zero); other outcomes once they happened. */
            if (v == 0 && c != CHAT__CODE__OK && c != CHAT__CODE__UNAVAILABLE)
                continue;
            rs_outcome_name(c, outcome);
            chat_mbuf_printf(b, "chat_requests_total{type=\"%s\",outcome=\"%s\"} %llu\n",
                             rs->names[t], outcome, (unsigned long long)v);
        }
    chat_metric_family(b, "chat_request_duration_seconds", "histogram",
                       "Time from a request's arrival to its answer, by request type.");
    char labels[96];
    for (int t = 0; t < rs->n_types; t++) {
        snprintf(labels, sizeof labels, "type=\"%s\"", rs->names[t]);
        chat_hist_render(b, "chat_request_duration_seconds", labels, &rs->hists[t]);
    }
}

void chat_reqstats_free(chat_reqstats *rs)
{
    if (rs == NULL)
        return;
    free(rs->names);
    free(rs->field_numbers);
    free(rs->outcomes);
    free(rs->hists);
    free(rs);
}

/* ---- the process ---- */
static int metrics_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void chat_metrics_process(chat_mbuf *b)
{
    FILE *f = fopen("/proc/self/stat", "r");
    if (f == NULL)
        return;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name, which is in parentheses and may hold
     * spaces: state(3) ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24). */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return;
    unsigned long long utime = 0, stime = 0, start = 0, rss = 0;
    if (sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
               "%llu %*u %llu",
               &utime, &stime, &start, &rss) != 4)
        return;
    double tick = (double)sysconf(_SC_CLK_TCK);
    chat_metric_family(b, "process_cpu_seconds_total", "counter",
                       "User and system CPU time spent, seconds.");
    chat_mbuf_printf(b, "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / tick);
    chat_metric_gauge(b, "process_resident_memory_bytes", "Resident memory size, bytes.",
                      (double)rss * (double)sysconf(_SC_PAGESIZE));
    int fds = metrics_open_fds();
    if (fds >= 0)
        chat_metric_gauge(b, "process_open_fds", "Open file descriptors.", fds);
    /* Boot time + start ticks: the start as unix seconds. */
    FILE *s = fopen("/proc/stat", "r");
    unsigned long long btime = 0;
    if (s != NULL) {
        char line[256];
        while (fgets(line, sizeof line, s))
            if (sscanf(line, "btime %llu", &btime) == 1)
                break;
        fclose(s);
    }
    if (btime > 0)
        chat_metric_gauge(b, "process_start_time_seconds",
                          "Start time of the process since the unix epoch, seconds.",
                          (double)btime + (double)start / tick);
}

int64_t chat_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
