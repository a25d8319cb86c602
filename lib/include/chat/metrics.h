/* Prometheus metrics: a text buffer with helpers that write well-formed
 * families (HELP, TYPE, samples), latency histograms, and per-request-type
 * statistics that every service keeps the same way. The text format is
 * https://prometheus.io/docs/instrumenting/exposition_formats/ and the
 * names follow its conventions (base units, _total counters, _seconds). */
#ifndef CHAT_METRICS_H
#define CHAT_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* ---- text ---- */
typedef struct chat_mbuf {
    char *data;
    size_t len, cap;
    bool failed; /* out of memory at some point: the text is incomplete */
} chat_mbuf;

void chat_mbuf_init(chat_mbuf *b);
void chat_mbuf_printf(chat_mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the text over (malloc'd, NUL-terminated; NULL when it failed). */
char *chat_mbuf_take(chat_mbuf *b, size_t *len);
void chat_mbuf_free(chat_mbuf *b);

/* "# HELP name help\n# TYPE name type\n". */
void chat_metric_family(chat_mbuf *b, const char *name, const char *type, const char *help);
/* A family with one unlabelled sample. */
void chat_metric_counter(chat_mbuf *b, const char *name, const char *help, uint64_t v);
void chat_metric_gauge(chat_mbuf *b, const char *name, const char *help, double v);

/* ---- histograms (lock-free; observe from any thread) ---- */
#define CHAT_HIST_BUCKETS 14
typedef struct chat_hist {
    _Atomic uint64_t counts[CHAT_HIST_BUCKETS + 1]; /* last: above the last bound */
    _Atomic uint64_t sum_ns;
} chat_hist;

/* The bucket bounds in seconds: 0.0005 ... 10. */
extern const double chat_hist_bounds[CHAT_HIST_BUCKETS];
void chat_hist_observe(chat_hist *h, double seconds);
/* The samples of one histogram: name_bucket{labels,le=...}, _sum, _count.
 * labels: "" or e.g. "type=\"send\"" (no braces). The family line is the
 * caller's (chat_metric_family with "histogram"). */
void chat_hist_render(chat_mbuf *b, const char *name, const char *labels, const chat_hist *h);

/* Histograms of counts (batch sizes): bounds 1, 2, 4 ... 4096. */
#define CHAT_SIZE_BUCKETS 13
typedef struct chat_size_hist {
    _Atomic uint64_t counts[CHAT_SIZE_BUCKETS + 1];
    _Atomic uint64_t sum;
} chat_size_hist;
void chat_size_hist_observe(chat_size_hist *h, uint64_t n);
void chat_size_hist_render(chat_mbuf *b, const char *name, const char *labels,
                           const chat_size_hist *h);

/* ---- requests by type and outcome ----
 * Types are the fields of a request message's oneof (their names become the
 * `type` label), outcomes the chat.Code names in lower case (`ok`,
 * `bad_request`, ...). */
typedef struct chat_reqstats chat_reqstats;

/* desc: e.g. &chat__match_request__descriptor. NULL when out of memory. */
chat_reqstats *chat_reqstats_new(const ProtobufCMessageDescriptor *desc);
/* body_case: the request's oneof case (0 or unknown: type "unknown");
 * code: a chat.Code value. */
void chat_reqstats_observe(chat_reqstats *rs, int body_case, int code, double seconds);
/* chat_requests_total{type,outcome} and chat_request_duration_seconds{type}. */
void chat_reqstats_render(chat_mbuf *b, const chat_reqstats *rs);
void chat_reqstats_free(chat_reqstats *rs);

/* Process figures from /proc/self: process_cpu_seconds_total,
 * process_resident_memory_bytes, process_open_fds,
 * process_start_time_seconds. */
void chat_metrics_process(chat_mbuf *b);

/* Seconds between two chat_mono_ns() readings. */
int64_t chat_mono_ns(void);

#endif
