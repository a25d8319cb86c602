/* /metrics in the Prometheus text format. The counters are plain integers
 * of the lws thread, which also renders them: no locks, no atomics. */
#include "gateway.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct metrics_buf {
    char *p;
    size_t len, cap;
    bool oom;
} metrics_buf;

static void metrics_printf(metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void metrics_printf(metrics_buf *b, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !b->oom; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void metrics_family(metrics_buf *b, const char *name, const char *type, const char *help)
{
    metrics_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one unlabelled sample. */
static void metrics_one(metrics_buf *b, const char *name, const char *type, const char *help,
                        uint64_t v)
{
    metrics_family(b, name, type, help);
    metrics_printf(b, "%s %" PRIu64 "\n", name, v);
}

char *gw_metrics_render(gw_server *s, size_t *len)
{
    metrics_buf b = {malloc(4096), 0, 4096, false};
    if (b.p == NULL)
        return NULL;
    const gw_metrics *m = &s->m;

    metrics_family(&b, "chat_gateway_connections_open", "gauge", "Open WebSocket connections.");
    metrics_printf(&b, "chat_gateway_connections_open %u\n", s->n_conns);
    metrics_family(&b, "chat_gateway_connections_total", "counter",
                   "WebSocket connections accepted.");
    metrics_printf(&b, "chat_gateway_connections_total %" PRIu64 "\n", m->conns_total);
    metrics_family(&b, "chat_gateway_frames_in_total", "counter", "Client messages received.");
    metrics_printf(&b, "chat_gateway_frames_in_total %" PRIu64 "\n", m->frames_in);
    metrics_family(&b, "chat_gateway_frames_out_total", "counter",
                   "Frames written to clients.");
    metrics_printf(&b, "chat_gateway_frames_out_total %" PRIu64 "\n", m->frames_out);

    metrics_family(&b, "chat_gateway_errors_total", "counter", "Error frames sent, by code.");
    for (int e = GW_E_NONE + 1; e < GW_E_COUNT; e++)
        metrics_printf(&b, "chat_gateway_errors_total{code=\"%s\"} %" PRIu64 "\n",
                       gw_err_name((gw_err)e), m->errors[e]);

    metrics_family(&b, "chat_gateway_backend_requests_total", "counter",
                   "Requests sent to services.");
    for (int i = 0; i < GW_SVC_EVENTS; i++)
        metrics_printf(&b, "chat_gateway_backend_requests_total{service=\"%s\"} %" PRIu64 "\n",
                       gw_svc_name((gw_svc)i), m->be_requests[i]);
    metrics_family(&b, "chat_gateway_backend_failures_total", "counter",
                   "Requests that failed in transport (no peer, timeout, bad reply).");
    for (int i = 0; i < GW_SVC_EVENTS; i++)
        metrics_printf(&b, "chat_gateway_backend_failures_total{service=\"%s\"} %" PRIu64 "\n",
                       gw_svc_name((gw_svc)i), m->be_failures[i]);
    metrics_family(&b, "chat_gateway_backend_peers", "gauge", "Connected peers per service.");
    for (int i = 0; i < GW_SVC_COUNT; i++)
        metrics_printf(&b, "chat_gateway_backend_peers{service=\"%s\"} %d\n",
                       gw_svc_name((gw_svc)i), gw_backend_peers(s->be, (gw_svc)i));

    metrics_one(&b, "chat_gateway_events_total", "counter", "Events received.", m->events_in);
    metrics_one(&b, "chat_gateway_events_bad_total", "counter", "Events that did not decode.",
                m->events_bad);
    metrics_one(&b, "chat_gateway_event_batches_lost_total", "counter",
                "Published batches that never arrived (gaps in the publishers' numbers).",
                gw_backend_lost(s->be));
    metrics_one(&b, "chat_gateway_order_held_total", "counter",
                "Messages held because they arrived before their predecessor.", m->order_held);
    metrics_one(&b, "chat_gateway_order_fills_total", "counter",
                "Gap fills asked of svc-message (a gap open longer than CHAT_ORDER_HOLD_MS, "
                "or events lost).",
                m->order_fills);
    metrics_one(&b, "chat_gateway_order_catchups_total", "counter",
                "Catch-up pages asked after lost events (conversations a connection "
                "does not follow yet).",
                m->order_catchups);
    metrics_one(&b, "chat_gateway_order_fill_failures_total", "counter",
                "Gap fills that failed (retried after 1 s).", m->order_fill_failed);
    metrics_one(&b, "chat_gateway_order_filled_messages_total", "counter",
                "Messages delivered from gap fills.", m->order_filled);
    metrics_one(&b, "chat_gateway_order_gaps_closed_total", "counter",
                "Gaps in a connection's seqs that closed (by a late event or a fill).",
                m->order_gaps_closed);
    metrics_one(&b, "chat_gateway_order_gap_ms_sum", "counter",
                "Total ms the closed gaps were open.", m->order_gap_ms_sum);
    metrics_one(&b, "chat_gateway_order_gap_ms_max", "gauge",
                "Longest a closed gap was open, ms.", m->order_gap_ms_max);
    metrics_family(&b, "chat_gateway_event_queue_length", "gauge",
                   "Replies and events waiting for the lws thread.");
    metrics_printf(&b, "chat_gateway_event_queue_length %zu\n", gw_backend_queue_len(s->be));

    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
