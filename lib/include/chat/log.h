/* Structured logging: one logfmt line per event on stderr,
 *   ts=2026-11-25T14:00:00.123Z level=info svc=gateway event=listen port=8080
 * A line logged while a thread works for a request ends with req_id=ID
 * (chat_log_req): one client action can be followed across services.
 * event is a stable identifier (grep-able); the rest is free key=value text.
 * CHAT_LOG_LEVEL=debug|info|warn|error sets the threshold. Thread-safe. */
#ifndef CHAT_LOG_H
#define CHAT_LOG_H

#include <stdbool.h>

typedef enum { CHAT_LOG_DEBUG, CHAT_LOG_INFO, CHAT_LOG_WARN, CHAT_LOG_ERROR } chat_log_level;

void chat_log_init(const char *service);
/* The request this thread works for now: every line it logs until the
 * next call carries req_id=ID (NULL or "": none). Thread-local. */
void chat_log_req(const char *req_id);
/* That id ("" when none): passed on in requests to other services. */
const char *chat_log_req_current(void);
/* True when lines of this level are written (to skip building them). */
bool chat_log_enabled(chat_log_level lvl);
void chat_log(chat_log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define chat_debug(ev, ...) chat_log(CHAT_LOG_DEBUG, ev, __VA_ARGS__)
#define chat_info(ev, ...) chat_log(CHAT_LOG_INFO, ev, __VA_ARGS__)
#define chat_warn(ev, ...) chat_log(CHAT_LOG_WARN, ev, __VA_ARGS__)
#define chat_error(ev, ...) chat_log(CHAT_LOG_ERROR, ev, __VA_ARGS__)

#endif
