/* svc-message: its settings and the skeleton's callbacks (chat/service.h:
 * configuration, signals, admin plane, /metrics and the bounded stop).
 * Everything else lives in service.c and the files it names. */
#include "message.h"

#include "chat/ratelimit.h"
#include "chat/rpc_pool.h"
#include "chat/service.h"

static const char about[] =
    "svc-message: conversations, members, messages and receipts in PostgreSQL;\n"
    "serves MessageRequest on a REP socket and publishes Events.";

static msg_config cfg;
static msg_service svc;

static const chat_cfg_item items[] = {
    {"CHAT_MESSAGE_LISTEN", CHAT_CFG_STR, "tcp://127.0.0.1:7201", 0, 0,
     "REP address for MessageRequest", &cfg.listen},
    {"CHAT_MESSAGE_PUB_LISTEN", CHAT_CFG_STR, "tcp://127.0.0.1:7202", 0, 0,
     "PUB address for events", &cfg.pub_listen},
    {"CHAT_PG_DSN", CHAT_CFG_STR, "host=127.0.0.1 port=5432 dbname=chat user=postgres", 0, 0,
     "PostgreSQL conninfo", &cfg.pg_dsn},
    {"CHAT_PG_TIMEOUT_MS", CHAT_CFG_INT, "2000", 100, 600000,
     "statement timeout; PostgreSQL slower than this is unavailable", &cfg.pg_timeout_ms},
    {"CHAT_REDIS_HOST", CHAT_CFG_STR, "127.0.0.1", 0, 0, "Redis host (rate limit)",
     &cfg.redis_host},
    {"CHAT_REDIS_PORT", CHAT_CFG_INT, "6379", 1, 65535, "Redis port", &cfg.redis_port},
    CHAT_REDIS_CFG_AUTH,
    {"CHAT_RATE_PER_MIN", CHAT_CFG_INT, "10", 0, 1000000,
     "messages per user per minute, burst of the same size (0: no limit)", &cfg.rate_per_min},
    CHAT_RATE_CFG_OPS(&cfg.ops_per_min, &cfg.ops_burst),
    CHAT_CFG_WORK_DEADLINE(&cfg.work_deadline_ms),
    {"CHAT_MAX_ROOMS_PER_USER", CHAT_CFG_INT, "100", 1, 1000000,
     "rooms a user may be in at once; join_room beyond is bad_request", &cfg.max_rooms},
    {"CHAT_MAX_TEXT", CHAT_CFG_INT, "500", 1, 1000000,
     "max text in code points (texts over 4x this in bytes are refused)", &cfg.max_text},
    {"CHAT_MSG_WRITERS", CHAT_CFG_INT, "2", 1, 64,
     "writer threads (sends; one PostgreSQL and one Redis connection each)", &cfg.writers},
    {"CHAT_MSG_BATCH", CHAT_CFG_INT, "256", 1, 4096, "max sends per transaction", &cfg.batch},
    {"CHAT_MSG_CONTEXTS", CHAT_CFG_INT, "1024", 1, 65536, "concurrent requests (nng contexts)",
     &cfg.contexts},
    {"CHAT_MSG_READERS", CHAT_CFG_INT, "2", 1, 64,
     "worker threads for other requests (one PostgreSQL connection each)", &cfg.readers},
    {"CHAT_RETENTION_DAYS", CHAT_CFG_INT, "0", 0, 36500,
     "messages older than this many days are deleted (0: kept forever); seeds the setting "
     "all replicas share in PostgreSQL only if it was never set (chatctl retention set wins)",
     &cfg.retention_days},
    {"CHAT_RETENTION_INTERVAL_S", CHAT_CFG_INT, "60", 0, 86400,
     "seconds between purges of expired messages (0: only on chatctl retention run)",
     &cfg.retention_interval_s},
    {"CHAT_RETENTION_BATCH", CHAT_CFG_INT, "5000", 1, 1000000,
     "rows deleted per statement (each its own transaction) by a purge", &cfg.retention_batch},
    {"CHAT_RETENTION_PAUSE_MS", CHAT_CFG_INT, "20", 0, 60000,
     "pause between two deletes of a purge (sends go first)", &cfg.retention_pause_ms},
    {"CHAT_TEST_DROP_EVENTS", CHAT_CFG_INT, "0", 0, 1000000,
     "tests only: every Nth published batch is lost on purpose (0: none)",
     &cfg.test_drop_events},
};

static int start(void *arg)
{
    return msg_service_start(arg, &cfg);
}

static void stop(void *arg)
{
    msg_service_stop(arg);
}

int main(int argc, char **argv)
{
    /* The stop is bounded: one batch against a slow database and the REP
     * socket's wait for answered requests take a few seconds at most; by
     * then every ack sent was committed, so leaving is safe. */
    const chat_svc_def def = {
        .kind = "message",
        .about = about,
        .items = items,
        .n_items = sizeof items / sizeof items[0],
        .admin_default = "tcp://127.0.0.1:7203",
        .http_default = "127.0.0.1:7204",
        .load_name = "requests_in_flight",
        .start = start,
        .stop = stop,
        .ready = msg_service_ready,
        .load = msg_service_load,
        .metrics = msg_service_metrics,
        .admin = msg_admin_handle,
        .stop_bound_s = 8,
    };
    return chat_svc_main(argc, argv, &def, &svc);
}
