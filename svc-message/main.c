/* svc-message: wires the configuration to the service and runs until a
 * signal. Everything else lives in service.c and the files it names. */
#include "message.h"

#include "chat/config.h"
#include "chat/log.h"
#include "chat/util.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

/* The staged stop takes a few seconds at most (one batch against a slow
 * database, the REP socket's wait for answered requests). libchat's
 * chat_rpc_server_close() can hang in nng_close() when peers keep sending
 * during the close (reported to the lead); by then every request has been
 * answered and every ack was committed, so leaving is safe. */
#define STOP_BOUND_S 8

static void *stop_watchdog(void *arg)
{
    sleep(STOP_BOUND_S);
    chat_error("stop_timeout", "after_s=%d action=exit", STOP_BOUND_S);
    _exit(1);
}

static const char about[] =
    "svc-message: conversations, members, messages and receipts in PostgreSQL;\n"
    "serves MessageRequest on a REP socket and publishes Events.";

int main(int argc, char **argv)
{
    msg_config cfg;
    const chat_cfg_item items[] = {
        {"CHAT_MESSAGE_LISTEN", CHAT_CFG_STR, "tcp://127.0.0.1:7201", 0, 0,
         "REP address for MessageRequest", &cfg.listen},
        {"CHAT_MESSAGE_PUB_LISTEN", CHAT_CFG_STR, "tcp://127.0.0.1:7202", 0, 0,
         "PUB address for events", &cfg.pub_listen},
        {"CHAT_PG_DSN", CHAT_CFG_STR, "host=127.0.0.1 port=5432 dbname=chat user=postgres", 0,
         0, "PostgreSQL conninfo", &cfg.pg_dsn},
        {"CHAT_PG_TIMEOUT_MS", CHAT_CFG_INT, "2000", 100, 600000,
         "statement timeout; PostgreSQL slower than this is unavailable", &cfg.pg_timeout_ms},
        {"CHAT_REDIS_HOST", CHAT_CFG_STR, "127.0.0.1", 0, 0, "Redis host (rate limit)",
         &cfg.redis_host},
        {"CHAT_REDIS_PORT", CHAT_CFG_INT, "6379", 1, 65535, "Redis port", &cfg.redis_port},
        {"CHAT_RATE_PER_MIN", CHAT_CFG_INT, "10", 0, 1000000,
         "messages per user per minute, burst of the same size (0: no limit)",
         &cfg.rate_per_min},
        {"CHAT_MAX_TEXT", CHAT_CFG_INT, "500", 1, 1000000,
         "max text in code points (texts over 4x this in bytes are refused)", &cfg.max_text},
        {"CHAT_MSG_WRITERS", CHAT_CFG_INT, "2", 1, 64,
         "writer threads (sends; one PostgreSQL and one Redis connection each)", &cfg.writers},
        {"CHAT_MSG_BATCH", CHAT_CFG_INT, "256", 1, 4096, "max sends per transaction",
         &cfg.batch},
        {"CHAT_MSG_CONTEXTS", CHAT_CFG_INT, "1024", 1, 65536,
         "concurrent requests (nng contexts)", &cfg.contexts},
        {"CHAT_MSG_READERS", CHAT_CFG_INT, "2", 1, 64,
         "worker threads for other requests (one PostgreSQL connection each)", &cfg.readers},
        {"CHAT_TEST_DROP_EVENTS", CHAT_CFG_INT, "0", 0, 1000000,
         "tests only: every Nth published batch is lost on purpose (0: none)",
         &cfg.test_drop_events},
        {"CHAT_LOG_LEVEL", CHAT_CFG_STR, "info", 0, 0, "debug, info, warn or error",
         &cfg.log_level},
    };
    int rv = chat_cfg_main(argc, argv, about, items, sizeof items / sizeof items[0]);
    if (rv != 0)
        return rv > 0 ? 0 : 2;
    chat_log_init("message");
    chat_signals_install();

    msg_service svc;
    if (msg_service_start(&svc, &cfg) != 0)
        return 1;
    chat_wait_for_stop();
    chat_info("stopping", "signal=1");
    pthread_t wd;
    if (pthread_create(&wd, NULL, stop_watchdog, NULL) == 0)
        pthread_detach(wd);
    msg_service_stop(&svc);
    return 0;
}
