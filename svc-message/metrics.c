/* svc-message's families on the skeleton's /metrics (chat_message_*, and
 * the shared chat_requests_total / chat_request_duration_seconds). Every
 * figure is an atomic or a snapshot taken under its owner's lock, so a
 * scrape never waits for PostgreSQL. */
#include "message.h"

#include "chat/redis.h"
#include "chat/service.h"

static void queues(chat_mbuf *b, msg_stats *st)
{
    chat_metric_family(b, "chat_message_queue_depth", "gauge",
                       "Requests waiting for a thread, by queue.");
    const struct {
        const char *name;
        int64_t v;
    } q[] = {{"writer", atomic_load(&st->writer_queued)},
             {"reader", atomic_load(&st->reader_queued)},
             {"meta", atomic_load(&st->meta_queued)}};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        chat_mbuf_printf(b, "chat_message_queue_depth{queue=\"%s\"} %lld\n", q[i].name,
                         (long long)(q[i].v > 0 ? q[i].v : 0));
    int64_t inflight = atomic_load(&st->in_flight);
    chat_metric_gauge(b, "chat_message_requests_in_flight",
                      "Requests received and not answered yet.",
                      (double)(inflight > 0 ? inflight : 0));
}

static void commits(chat_mbuf *b, msg_stats *st)
{
    chat_metric_family(b, "chat_message_batch_size", "histogram",
                       "Sends per writer batch (one transaction).");
    chat_size_hist_render(b, "chat_message_batch_size", "", &st->batch_size);
    chat_metric_family(b, "chat_message_commit_duration_seconds", "histogram",
                       "Time to store one batch, by path (send: a writer's sends, meta: "
                       "conversation creates and closes).");
    chat_hist_render(b, "chat_message_commit_duration_seconds", "path=\"send\"", &st->commit_s);
    chat_hist_render(b, "chat_message_commit_duration_seconds", "path=\"meta\"",
                     &st->meta_commit_s);
}

static void backends(chat_mbuf *b, const msg_service *svc)
{
    uint64_t connect, down, statement;
    msg_pg_errors(&connect, &down, &statement);
    chat_metric_family(b, "chat_message_pg_errors_total", "counter",
                       "PostgreSQL failures: connects that failed, round trips that lost "
                       "the connection, statements refused.");
    chat_mbuf_printf(b, "chat_message_pg_errors_total{kind=\"connect\"} %llu\n",
                     (unsigned long long)connect);
    chat_mbuf_printf(b, "chat_message_pg_errors_total{kind=\"down\"} %llu\n",
                     (unsigned long long)down);
    chat_mbuf_printf(b, "chat_message_pg_errors_total{kind=\"statement\"} %llu\n",
                     (unsigned long long)statement);
    /* Redis errors and event batches as every service reports them; the
     * events inside them are this service's own figure. */
    chat_svc_metrics_common(b, "chat_message", NULL, svc->pub);
    uint64_t published, failed;
    msg_publish_counts(&published, &failed);
    chat_metric_counter(b, "chat_message_events_published_total",
                        "Events handed to the publisher.", published);
    chat_metric_counter(b, "chat_message_events_dropped_total",
                        "Events whose batch the publisher refused.", failed);
}

static void fills(chat_mbuf *b, msg_stats *st)
{
    chat_metric_counter(b, "chat_message_requests_expired_total",
                        "Requests answered unavailable unworked: they waited for a reader "
                        "past CHAT_WORK_DEADLINE_MS.",
                        (double)atomic_load(&st->expired));
    chat_metric_counter(b, "chat_message_fills_total",
                        "Fill requests answered (gateways' gap repairs and catch-ups).",
                        atomic_load(&st->fills));
    chat_metric_counter(b, "chat_message_filled_messages_total", "Messages returned by fills.",
                        atomic_load(&st->filled));
}

static void retention(chat_mbuf *b, msg_retention *r)
{
    msg_retention_state s;
    msg_retention_get(r, &s);
    chat_metric_counter(b, "chat_message_retention_deleted_total",
                        "Expired messages deleted by this replica's purger.", s.deleted_total);
    chat_metric_counter(b, "chat_message_retention_runs_total",
                        "Purge runs started on this replica.", s.runs);
    chat_metric_gauge(b, "chat_message_retention_running", "1 while a purge runs here.",
                      s.running ? 1 : 0);
    chat_metric_gauge(b, "chat_message_retention_last_run_duration_seconds",
                      "How long the last purge run took.", s.last_duration_s);
    chat_metric_gauge(b, "chat_message_retention_last_run_timestamp_seconds",
                      "When the last purge run ended, unix seconds (0: never).",
                      (double)s.last_run_at / 1000.0);
}

void msg_service_metrics(chat_mbuf *b, void *arg)
{
    msg_service *svc = arg;
    pthread_mutex_lock(&svc->mu);
    if (svc->up) {
        chat_reqstats_render(b, svc->stats.reqs);
        queues(b, &svc->stats);
        commits(b, &svc->stats);
        backends(b, svc);
        fills(b, &svc->stats);
        retention(b, svc->retention);
    }
    pthread_mutex_unlock(&svc->mu);
}
