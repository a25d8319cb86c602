/* The figures of a run, as one JSON object (--json) or a short summary.
 * Both are built from the same cJSON tree, so they never disagree. */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double r3(double v)
{
    return round(v * 1000.0) / 1000.0;
}

static double per_s(uint64_t n, double s)
{
    return s > 0 ? r3((double)n / s) : 0;
}

static void add_u(cJSON *o, const char *name, uint64_t v)
{
    cJSON_AddNumberToObject(o, name, (double)v);
}

static cJSON *failures(const cb_result *r)
{
    cJSON *f = cJSON_CreateObject();
    for (int i = CB_C_FAIL_REFUSED; i <= CB_C_NOT_ATTEMPTED; i++)
        if (r->c[i])
            add_u(f, cb_counter_names[i], r->c[i]);
    return f;
}

static cJSON *config(const cb_opts *o)
{
    cJSON *c = cJSON_CreateObject();
    cJSON *urls = cJSON_AddArrayToObject(c, "urls");
    for (int i = 0; i < o->n_urls; i++)
        cJSON_AddItemToArray(urls, cJSON_CreateString(o->urls[i].text));
    cJSON_AddNumberToObject(c, "procs", o->procs);
    cJSON_AddNumberToObject(c, "threads", o->threads);
    cJSON_AddNumberToObject(c, "binds", o->n_binds);
    cJSON_AddNumberToObject(c, "ramp_per_s", o->ramp);
    cJSON_AddNumberToObject(c, "duration_s", o->duration_s);
    switch (o->mode) {
    case CB_MODE_CHAT:
        cJSON_AddNumberToObject(c, "pairs", (double)o->pairs);
        cJSON_AddNumberToObject(c, "rate_per_sender", o->rate);
        cJSON_AddBoolToObject(c, "one_sender", o->one_sender);
        cJSON_AddStringToObject(c, "conv", o->dm ? "dm" : "random");
        cJSON_AddNumberToObject(c, "text_size", o->text_size);
        cJSON_AddNumberToObject(c, "drain_s", o->drain_s);
        break;
    case CB_MODE_MATCH:
        cJSON_AddNumberToObject(c, "conns", (double)o->conns);
        cJSON_AddNumberToObject(c, "think_ms", o->think_ms);
        break;
    case CB_MODE_STORM:
        cJSON_AddNumberToObject(c, "conns", (double)o->conns);
        cJSON_AddNumberToObject(c, "jitter_ms", o->jitter_ms);
        cJSON_AddNumberToObject(c, "backoff_ms", o->backoff_ms);
        cJSON_AddNumberToObject(c, "backoff_max_ms", o->backoff_max_ms);
        cJSON_AddStringToObject(c, "drop", o->drop_rst ? "rst" : "fin");
        break;
    case CB_MODE_IDLE: cJSON_AddNumberToObject(c, "conns", (double)o->conns); break;
    }
    return c;
}

static void add_idle(cJSON *root, const cb_opts *o, const cb_run *run)
{
    const cb_result *r = &run->res;
    cJSON *gws = cJSON_AddArrayToObject(root, "gateways");
    long delta = 0;
    bool known = o->n_gw_pids > 0;
    for (int i = 0; i < o->n_gw_pids; i++) {
        cJSON *g = cJSON_CreateObject();
        cJSON_AddNumberToObject(g, "pid", o->gw_pids[i]);
        cJSON_AddNumberToObject(g, "rss_before_kib", (double)run->rss_before_kib[i]);
        cJSON_AddNumberToObject(g, "rss_held_kib", (double)run->rss_held_kib[i]);
        cJSON_AddItemToArray(gws, g);
        if (run->rss_before_kib[i] < 0 || run->rss_held_kib[i] < 0)
            known = false;
        delta += run->rss_held_kib[i] - run->rss_before_kib[i];
    }
    uint64_t held =
        r->c[CB_C_CONN_OK] - (r->c[CB_C_DROPPED] < r->c[CB_C_CONN_OK] ? r->c[CB_C_DROPPED] : 0);
    if (known && held > 0)
        cJSON_AddNumberToObject(root, "gateway_rss_per_conn_kib",
                                r3((double)delta / (double)held));
    else
        cJSON_AddNullToObject(root, "gateway_rss_per_conn_kib");
    add_u(root, "held", held);
    cJSON_AddNumberToObject(root, "bench_rss_kib", (double)run->bench_rss_kib);
    cJSON_AddNumberToObject(root, "bench_rss_per_conn_kib",
                            held ? r3((double)run->bench_rss_kib / (double)held) : 0);
}

static void add_chat(cJSON *root, const cb_opts *o, const cb_run *run)
{
    const cb_result *r = &run->res;
    const uint64_t *c = r->c;
    uint64_t senders = c[CB_C_PAIRS] * (o->one_sender ? 1 : 2);
    add_u(root, "pairs", c[CB_C_PAIRS]);
    add_u(root, "pair_failures", c[CB_C_PAIR_FAIL]);
    add_u(root, "senders", senders);
    cJSON_AddNumberToObject(root, "offered_per_s", r3((double)senders * o->rate));
    add_u(root, "sent", c[CB_C_SENT]);
    add_u(root, "acked", c[CB_C_ACKED]);
    add_u(root, "delivered", c[CB_C_DELIVERED]);
    double win = o->duration_s;
    double ack_win = fmax(win, (double)r->m[CB_M_LAST_ACK_NS] / 1e9);
    double dlv_win = fmax(win, (double)r->m[CB_M_LAST_DELIVER_NS] / 1e9);
    cJSON_AddNumberToObject(root, "sent_per_s", per_s(c[CB_C_SENT], win));
    cJSON_AddNumberToObject(root, "acked_per_s", per_s(c[CB_C_ACKED], ack_win));
    cJSON_AddNumberToObject(root, "delivered_per_s", per_s(c[CB_C_DELIVERED], dlv_win));
    cJSON_AddNumberToObject(root, "last_ack_s", r3((double)r->m[CB_M_LAST_ACK_NS] / 1e9));
    cJSON_AddNumberToObject(root, "last_delivery_s",
                            r3((double)r->m[CB_M_LAST_DELIVER_NS] / 1e9));
    cJSON_AddItemToObject(root, "ack_ms", cb_hist_summary(&r->h[CB_H_ACK]));
    cJSON_AddItemToObject(root, "delivery_ms", cb_hist_summary(&r->h[CB_H_DELIVERY]));
    cJSON_AddItemToObject(root, "send_lag_ms", cb_hist_summary(&r->h[CB_H_SEND_LAG]));
    add_u(root, "lost", c[CB_C_LOST]);
    add_u(root, "duplicates", c[CB_C_DUP]);
    add_u(root, "reordered", c[CB_C_REORDERED]);
    add_u(root, "unanswered", c[CB_C_UNANSWERED]);
    add_u(root, "send_errors", c[CB_C_SEND_ERRORS]);
    add_u(root, "delivered_unacked", c[CB_C_DELIVERED_UNACKED]);
    add_u(root, "foreign", c[CB_C_FOREIGN]);
    add_u(root, "shed", c[CB_C_SHED]);
    /* false: the drain ended before every answer came; "lost" and
     * "unanswered" then include messages that were only late. */
    cJSON_AddBoolToObject(root, "drain_complete", c[CB_C_DRAIN_CUT] == 0);
    /* The gateways' side: what their sequencers held and filled meanwhile
     * (null when a gateway's /metrics did not answer). */
    const cb_gw_order *g = &run->order;
    if (!g->ok) {
        cJSON_AddNullToObject(root, "gaps");
        return;
    }
    cJSON *gaps = cJSON_AddObjectToObject(root, "gaps");
    if (gaps == NULL)
        return;
    cJSON_AddNumberToObject(gaps, "held", g->held);
    cJSON_AddNumberToObject(gaps, "fills", g->fills);
    cJSON_AddNumberToObject(gaps, "catchups", g->catchups);
    cJSON_AddNumberToObject(gaps, "filled_messages", g->filled);
    cJSON_AddNumberToObject(gaps, "closed", g->gaps_closed);
    cJSON_AddNumberToObject(gaps, "open_ms_mean",
                            g->gaps_closed > 0 ? r3(g->gap_ms_sum / g->gaps_closed) : 0);
    cJSON_AddNumberToObject(gaps, "open_ms_max_since_start", g->gap_ms_max);
    cJSON_AddNumberToObject(gaps, "event_batches_lost", g->batches_lost);
}

static void add_match(cJSON *root, const cb_opts *o, const cb_run *run)
{
    const uint64_t *c = run->res.c;
    add_u(root, "users", c[CB_C_CONN_OK]);
    add_u(root, "searches", c[CB_C_SEARCHES]);
    add_u(root, "matches", c[CB_C_MATCHED] / 2);
    cJSON_AddNumberToObject(root, "matches_per_s", per_s(c[CB_C_MATCHED] / 2, o->duration_s));
    cJSON_AddItemToObject(root, "time_to_match_ms", cb_hist_summary(&run->res.h[CB_H_MATCH]));
    add_u(root, "ends", c[CB_C_ENDS]);
    add_u(root, "end_conflicts", c[CB_C_END_CONFLICTS]);
}

static void add_storm(cJSON *root, const cb_opts *o, const cb_run *run)
{
    const cb_result *r = &run->res;
    const uint64_t *c = r->c;
    add_u(root, "dropped", c[CB_C_STORM_DROPPED]);
    add_u(root, "resumed", c[CB_C_RESUMED]);
    add_u(root, "not_resumed", c[CB_C_NOT_RESUMED]);
    add_u(root, "wrong_user", c[CB_C_WRONG_USER]);
    add_u(root, "attempts", c[CB_C_RESUME_ATTEMPTS]);
    bool all = c[CB_C_STORM_DROPPED] > 0 && c[CB_C_RESUMED] == c[CB_C_STORM_DROPPED];
    if (all)
        cJSON_AddNumberToObject(root, "all_resumed_s",
                                r3((double)r->m[CB_M_ALL_RESUMED_NS] / 1e9));
    else
        cJSON_AddNullToObject(root, "all_resumed_s");
    cJSON_AddItemToObject(root, "resume_ms", cb_hist_summary(&r->h[CB_H_RESUME]));
    /* Refused attempts = every failed attempt (the initial ramp's too). */
    cJSON_AddItemToObject(root, "refusals", failures(r));
}

static cJSON *build(const cb_opts *o, const cb_run *run)
{
    const cb_result *r = &run->res;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "mode", cb_mode_name(o->mode));
    cJSON_AddItemToObject(root, "config", config(o));
    cJSON_AddNumberToObject(root, "elapsed_s", r3(run->elapsed_s));
    cJSON_AddNumberToObject(root, "setup_s", r3(run->setup_s));
    cJSON_AddBoolToObject(root, "interrupted", run->interrupted);
    cJSON_AddNumberToObject(root, "workers_lost", run->workers_lost);
    cJSON *conn = cJSON_AddObjectToObject(root, "connections");
    add_u(conn, "ok", r->c[CB_C_CONN_OK]);
    add_u(conn, "failed", r->c[CB_C_CONN_FAIL]);
    cJSON_AddItemToObject(conn, "failures", failures(r));
    add_u(conn, "dropped", r->c[CB_C_DROPPED]);
    double ramp_s = (double)r->m[CB_M_RAMP_NS] / 1e9;
    cJSON_AddNumberToObject(conn, "ramp_s", r3(ramp_s));
    uint64_t first_ok =
        o->mode == CB_MODE_STORM ? r->c[CB_C_CONN_OK] - r->c[CB_C_RESUMED] : r->c[CB_C_CONN_OK];
    cJSON_AddNumberToObject(conn, "rate_per_s", per_s(first_ok, ramp_s));
    cJSON_AddItemToObject(root, "connect_ms", cb_hist_summary(&r->h[CB_H_CONNECT]));
    switch (o->mode) {
    case CB_MODE_IDLE: add_idle(root, o, run); break;
    case CB_MODE_CHAT: add_chat(root, o, run); break;
    case CB_MODE_MATCH: add_match(root, o, run); break;
    case CB_MODE_STORM: add_storm(root, o, run); break;
    }
    cJSON *e = cJSON_AddObjectToObject(root, "errors");
    for (int i = 0; i < r->n_err; i++)
        add_u(e, r->err[i].code, r->err[i].n);
    cJSON *b = cJSON_AddObjectToObject(root, "bench");
    cJSON_AddNumberToObject(b, "cpu_s", r3(run->cpu_s));
    cJSON_AddNumberToObject(b, "cpu_pct_of_one_core",
                            run->elapsed_s > 0 ? r3(100 * run->cpu_s / run->elapsed_s) : 0);
    return root;
}

void cb_report_json(const cb_opts *o, const cb_run *run)
{
    cJSON *root = build(o, run);
    char *s = cJSON_PrintUnformatted(root);
    if (s)
        printf("%s\n", s);
    free(s);
    cJSON_Delete(root);
}

/* ---- the summary ------------------------------------------------------------- */
static double num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void lat_line(const char *label, const cJSON *h)
{
    if (num(h, "count") == 0) {
        printf("  %-18s no samples\n", label);
        return;
    }
    printf("  %-18s p50 %.3f  p90 %.3f  p99 %.3f  max %.3f ms  (%.0f samples)\n", label,
           num(h, "p50"), num(h, "p90"), num(h, "p99"), num(h, "max"), num(h, "count"));
}

static void kv_line(const char *label, const cJSON *obj)
{
    printf("  %-18s", label);
    if (!obj || !obj->child)
        printf(" none");
    for (const cJSON *v = obj ? obj->child : NULL; v; v = v->next)
        printf(" %s %.0f", v->string, v->valuedouble);
    printf("\n");
}

void cb_report_text(const cb_opts *o, const cb_run *run)
{
    cJSON *j = build(o, run);
    const cJSON *conn = cJSON_GetObjectItemCaseSensitive(j, "connections");
    printf("chat-bench %s against %s%s, %d worker(s) (%d proc x %d thread)%s\n",
           cb_mode_name(o->mode), o->urls[0].text, o->n_urls > 1 ? " (+ more)" : "",
           o->procs * o->threads, o->procs, o->threads,
           run->interrupted ? "  [INTERRUPTED]" : "");
    printf("  %-18s %.0f ok, %.0f failed, %.0f dropped; ramp %.2f s (%.0f/s)\n", "connections",
           num(conn, "ok"), num(conn, "failed"), num(conn, "dropped"), num(conn, "ramp_s"),
           num(conn, "rate_per_s"));
    if (num(conn, "failed") > 0)
        kv_line("failures", cJSON_GetObjectItemCaseSensitive(conn, "failures"));
    lat_line("connect", cJSON_GetObjectItemCaseSensitive(j, "connect_ms"));
    switch (o->mode) {
    case CB_MODE_IDLE: {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "gateway_rss_per_conn_kib");
        printf("  %-18s %.0f connections\n", "held", num(j, "held"));
        if (cJSON_IsNumber(g))
            printf("  %-18s %.3f KiB resident per connection\n", "gateway memory",
                   g->valuedouble);
        else
            printf("  %-18s unknown (give --gateway-pid)\n", "gateway memory");
        printf("  %-18s %.0f KiB (%.3f KiB per connection)\n", "chat-bench memory",
               num(j, "bench_rss_kib"), num(j, "bench_rss_per_conn_kib"));
        break;
    }
    case CB_MODE_CHAT:
        printf("  %-18s %.0f ok, %.0f failed; %.0f senders x %g msg/s = %.0f msg/s offered\n",
               "pairs", num(j, "pairs"), num(j, "pair_failures"), num(j, "senders"), o->rate,
               num(j, "offered_per_s"));
        printf("  %-18s sent %.0f (%.1f/s)  acked %.0f (%.1f/s)  delivered %.0f (%.1f/s)\n",
               "messages", num(j, "sent"), num(j, "sent_per_s"), num(j, "acked"),
               num(j, "acked_per_s"), num(j, "delivered"), num(j, "delivered_per_s"));
        lat_line("ack latency", cJSON_GetObjectItemCaseSensitive(j, "ack_ms"));
        lat_line("delivery latency", cJSON_GetObjectItemCaseSensitive(j, "delivery_ms"));
        lat_line("send lag (ours)", cJSON_GetObjectItemCaseSensitive(j, "send_lag_ms"));
        printf("  %-18s lost %.0f  duplicates %.0f  reordered %.0f  unanswered %.0f  "
               "delivered-unacked %.0f  shed %.0f\n",
               "correctness", num(j, "lost"), num(j, "duplicates"), num(j, "reordered"),
               num(j, "unanswered"), num(j, "delivered_unacked"), num(j, "shed"));
        const cJSON *gp = cJSON_GetObjectItemCaseSensitive(j, "gaps");
        if (cJSON_IsObject(gp))
            printf("  %-18s held %.0f  filled %.0f in %.0f fills  closed %.0f (open %.1f ms "
                   "mean, %.0f max)  batches lost %.0f\n",
                   "gateways' gaps", num(gp, "held"), num(gp, "filled_messages"),
                   num(gp, "fills"), num(gp, "closed"), num(gp, "open_ms_mean"),
                   num(gp, "open_ms_max_since_start"), num(gp, "event_batches_lost"));
        else
            printf("  %-18s unknown (a gateway's /metrics did not answer)\n", "gateways' gaps");
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "drain_complete")))
            printf(
                "  %-18s the drain ended with answers still due: lost and unanswered include "
                "late ones (a longer --drain tells)\n",
                "note");
        break;
    case CB_MODE_MATCH:
        printf("  %-18s %.0f users, %.0f searches, %.0f matches (%.1f/s), %.0f ends, %.0f end "
               "conflicts\n",
               "matching", num(j, "users"), num(j, "searches"), num(j, "matches"),
               num(j, "matches_per_s"), num(j, "ends"), num(j, "end_conflicts"));
        lat_line("time to match", cJSON_GetObjectItemCaseSensitive(j, "time_to_match_ms"));
        break;
    case CB_MODE_STORM: {
        const cJSON *all = cJSON_GetObjectItemCaseSensitive(j, "all_resumed_s");
        printf("  %-18s dropped %.0f, resumed %.0f, not resumed %.0f, wrong user %.0f, %.0f "
               "attempts\n",
               "storm", num(j, "dropped"), num(j, "resumed"), num(j, "not_resumed"),
               num(j, "wrong_user"), num(j, "attempts"));
        if (cJSON_IsNumber(all))
            printf("  %-18s %.3f s after the drop\n", "all resumed", all->valuedouble);
        else
            printf("  %-18s NOT all resumed\n", "all resumed");
        lat_line("time to resume", cJSON_GetObjectItemCaseSensitive(j, "resume_ms"));
        kv_line("refusals", cJSON_GetObjectItemCaseSensitive(j, "refusals"));
        break;
    }
    }
    kv_line("errors", cJSON_GetObjectItemCaseSensitive(j, "errors"));
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "bench");
    printf("  %-18s %.2f s CPU (%.0f%% of one core) over %.1f s\n", "chat-bench",
           num(b, "cpu_s"), num(b, "cpu_pct_of_one_core"), run->elapsed_s);
    cJSON_Delete(j);
}
