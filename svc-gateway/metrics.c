/* /metrics in the Prometheus text format (checked by `promtool check
 * metrics`: HELP and TYPE for every family, counters end in _total, base
 * units). The counters are plain integers of the lws thread, which also
 * renders them: no locks (the histograms are lib's, atomic anyway). */
#include "gateway.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/metrics.h"

static void metrics_counters(chat_mbuf *b, const gw_server *s)
{
    const gw_metrics *m = &s->m;
    chat_metric_gauge(b, "chat_gateway_connections_open", "Open WebSocket connections.",
                      s->n_conns);
    chat_metric_counter(b, "chat_gateway_connections_total", "WebSocket connections accepted.",
                        m->conns_total);
    chat_metric_counter(b, "chat_gateway_frames_in_total", "Client messages received.",
                        m->frames_in);
    chat_metric_counter(b, "chat_gateway_frames_out_total", "Frames written to clients.",
                        m->frames_out);
    chat_metric_counter(b, "chat_gateway_frames_over_budget_total",
                        "Client messages refused unread, over CHAT_FRAME_RATE_PER_S.",
                        m->frames_over_budget);
    uint64_t refused_rate = 0, refused_ip = 0;
    unsigned addrs = 0;
    if (s->admit != NULL)
        gw_admit_counts(s->admit, &refused_rate, &refused_ip, &addrs);
    chat_metric_family(b, "chat_gateway_connections_refused_total", "counter",
                       "New sockets answered 503 by admission, by limit "
                       "(CHAT_CONN_RATE_PER_S, CHAT_CONN_PER_IP).");
    chat_mbuf_printf(b, "chat_gateway_connections_refused_total{limit=\"rate\"} %" PRIu64 "\n",
                     refused_rate);
    chat_mbuf_printf(b,
                     "chat_gateway_connections_refused_total{limit=\"per_ip\"} %" PRIu64 "\n",
                     refused_ip);
    chat_metric_gauge(
        b, "chat_gateway_client_addresses",
        "Client addresses with open sockets (counted with CHAT_CONN_PER_IP only).", addrs);
    chat_metric_counter(b, "chat_gateway_accept_errors_total",
                        "accept() failures (descriptors or memory ran out); each pauses "
                        "accepting for 100 ms.",
                        gw_front_accept_errors(s->front));
    chat_metric_family(b, "chat_gateway_errors_total", "counter",
                       "Error frames sent, by code.");
    for (int e = GW_E_NONE + 1; e < GW_E_COUNT; e++)
        chat_mbuf_printf(b, "chat_gateway_errors_total{code=\"%s\"} %" PRIu64 "\n",
                         gw_err_name((gw_err)e), m->errors[e]);
}

static void metrics_backend(chat_mbuf *b, gw_server *s)
{
    const gw_metrics *m = &s->m;
    chat_metric_family(b, "chat_gateway_backend_requests_total", "counter",
                       "Requests sent to services.");
    for (int i = 0; i < GW_SVC_EVENTS; i++)
        chat_mbuf_printf(b, "chat_gateway_backend_requests_total{service=\"%s\"} %" PRIu64 "\n",
                         gw_svc_name((gw_svc)i), m->be_requests[i]);
    chat_metric_family(b, "chat_gateway_backend_failures_total", "counter",
                       "Requests that failed in transport (no peer, timeout, bad reply).");
    for (int i = 0; i < GW_SVC_EVENTS; i++)
        chat_mbuf_printf(b, "chat_gateway_backend_failures_total{service=\"%s\"} %" PRIu64 "\n",
                         gw_svc_name((gw_svc)i), m->be_failures[i]);
    chat_metric_family(b, "chat_gateway_backend_peers", "gauge",
                       "Connected peers per service.");
    for (int i = 0; i < GW_SVC_COUNT; i++)
        chat_mbuf_printf(b, "chat_gateway_backend_peers{service=\"%s\"} %d\n",
                         gw_svc_name((gw_svc)i), gw_backend_peers(s->be, (gw_svc)i));
    chat_metric_gauge(b, "chat_gateway_event_queue_length",
                      "Replies and events waiting for the lws thread.",
                      (double)gw_backend_queue_len(s->be));
}

/* An outcome's label: the chat.Code name in lower case, or "transport". */
static const char *metrics_outcome(int code, char buf[32])
{
    if (code == GW_OUTCOME_TRANSPORT)
        return "transport";
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&chat__code__descriptor, code);
    size_t i = 0;
    for (; v != NULL && v->name[i] != '\0' && i < 31; i++)
        buf[i] = (char)(v->name[i] >= 'A' && v->name[i] <= 'Z' ? v->name[i] + 32 : v->name[i]);
    buf[i] = '\0';
    return v != NULL ? buf : "unknown";
}

/* Backend requests by op: outcomes and latency (ops never asked are left
 * out). */
static void metrics_ops(chat_mbuf *b, const gw_metrics *m)
{
    char name[32], labels[64];
    chat_metric_family(b, "chat_gateway_backend_request_outcomes_total", "counter",
                       "Backend requests by op and outcome (the reply's code in lower case, "
                       "or transport: no reply).");
    for (int op = 0; op < GW_OP_COUNT; op++)
        for (int c = 0; c < GW_OUTCOMES; c++)
            if (m->be_outcomes[op][c] > 0)
                chat_mbuf_printf(b,
                                 "chat_gateway_backend_request_outcomes_total{op=\"%s\","
                                 "outcome=\"%s\"} %" PRIu64 "\n",
                                 gw_op_name((gw_op)op), metrics_outcome(c, name),
                                 m->be_outcomes[op][c]);
    chat_metric_family(b, "chat_gateway_backend_request_duration_seconds", "histogram",
                       "Time from sending a backend request to its reply on the lws thread.");
    for (int op = 0; op < GW_OP_COUNT; op++) {
        uint64_t n = 0;
        for (int c = 0; c < GW_OUTCOMES; c++)
            n += m->be_outcomes[op][c];
        if (n == 0)
            continue;
        snprintf(labels, sizeof labels, "op=\"%s\"", gw_op_name((gw_op)op));
        chat_hist_render(b, "chat_gateway_backend_request_duration_seconds", labels,
                         &m->be_latency[op]);
    }
}

static void metrics_order(chat_mbuf *b, gw_server *s)
{
    const gw_metrics *m = &s->m;
    chat_metric_counter(b, "chat_gateway_events_total", "Events received.", m->events_in);
    chat_metric_counter(b, "chat_gateway_events_bad_total", "Events that did not decode.",
                        m->events_bad);
    chat_metric_counter(
        b, "chat_gateway_event_batches_lost_total",
        "Published batches that never arrived (gaps in the publishers' numbers).",
        gw_backend_lost(s->be));
    chat_metric_counter(b, "chat_gateway_order_held_total",
                        "Messages held because they arrived before their predecessor.",
                        m->order_held);
    chat_metric_counter(b, "chat_gateway_order_fills_total",
                        "Gap fills asked of svc-message (a gap open longer than "
                        "CHAT_ORDER_HOLD_MS, or events lost).",
                        m->order_fills);
    chat_metric_counter(b, "chat_gateway_order_catchups_total",
                        "Catch-up pages asked after lost events (conversations a connection "
                        "does not follow yet).",
                        m->order_catchups);
    chat_metric_counter(b, "chat_gateway_order_fill_failures_total",
                        "Gap fills that failed (retried after 1 s).", m->order_fill_failed);
    chat_metric_counter(b, "chat_gateway_order_filled_messages_total",
                        "Messages delivered from gap fills.", m->order_filled);
    chat_metric_counter(b, "chat_gateway_order_gaps_closed_total",
                        "Gaps in a connection's seqs that closed (by a late event or a fill).",
                        m->order_gaps_closed);
    /* Kept in ms, shown in seconds (the base unit). */
    chat_metric_family(b, "chat_gateway_order_gap_seconds_total", "counter",
                       "Total time the closed gaps were open.");
    chat_mbuf_printf(b, "chat_gateway_order_gap_seconds_total %.3f\n",
                     (double)m->order_gap_ms_sum / 1e3);
    chat_metric_gauge(b, "chat_gateway_order_gap_seconds_max", "Longest a closed gap was open.",
                      (double)m->order_gap_ms_max / 1e3);
}

static void metrics_admin(chat_mbuf *b, gw_server *s)
{
    const gw_metrics *m = &s->m;
    chat_metric_family(b, "chat_gateway_admin_requests_total", "counter",
                       "Admin requests run on this gateway (chatctl), by type.");
    for (int t = 0; t < GW_ADMIN_TYPES; t++)
        chat_mbuf_printf(b, "chat_gateway_admin_requests_total{type=\"%s\"} %" PRIu64 "\n",
                         gw_ops_type_name(t), m->admin_requests[t]);
    chat_metric_counter(b, "chat_gateway_kicked_connections_total",
                        "Connections closed with 4403 by a kick or a ban.", m->kicked);
    chat_metric_counter(b, "chat_gateway_ban_refusals_total",
                        "Connects, resumes and REST calls refused for a ban.", m->ban_refused);
    chat_metric_counter(b, "chat_gateway_announcements_sent_total",
                        "Announcement frames queued to connections.", m->announced);
    chat_metric_counter(b, "chat_gateway_drain_closed_connections_total",
                        "Connections closed with 1001 by a drain.", m->drain_closed);
    chat_metric_gauge(b, "chat_gateway_draining", "1 while the gateway drains (not ready).",
                      s->drain.on ? 1 : 0);
    chat_metric_gauge(b, "chat_gateway_bans", "Bans in this gateway's table.",
                      gw_bans_count(s));
}

char *gw_metrics_render(gw_server *s, size_t *len)
{
    chat_mbuf b;
    chat_mbuf_init(&b);
    metrics_counters(&b, s);
    metrics_backend(&b, s);
    metrics_ops(&b, &s->m);
    metrics_order(&b, s);
    metrics_admin(&b, s);
    chat_metrics_process(&b);
    return chat_mbuf_take(&b, len);
}
