/* logfmt logging on stderr (see log.h). */
#include "chat/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *log_service = "chat";
static chat_log_level log_threshold = CHAT_LOG_INFO;
static const char *const log_names[] = {"debug", "info", "warn", "error"};

void chat_log_init(const char *service)
{
    log_service = service;
    const char *lvl = getenv("CHAT_LOG_LEVEL");
    if (lvl == NULL)
        return;
    for (int i = 0; i < 4; i++)
        if (strcmp(lvl, log_names[i]) == 0)
            log_threshold = (chat_log_level)i;
}

#define LOG_REQ_MAX 40
static _Thread_local char log_req[LOG_REQ_MAX + 1];

void chat_log_req(const char *req_id)
{
    size_t n = req_id ? strnlen(req_id, LOG_REQ_MAX) : 0;
    memcpy(log_req, req_id ? req_id : "", n);
    log_req[n] = '\0';
}

const char *chat_log_req_current(void)
{
    return log_req;
}

bool chat_log_enabled(chat_log_level lvl)
{
    return lvl >= log_threshold;
}

void chat_log(chat_log_level lvl, const char *event, const char *fmt, ...)
{
    if (lvl < log_threshold)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[1024];
    int n = snprintf(line, sizeof line,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s svc=%s event=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), log_names[lvl], log_service, event);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* A line about a request names it, unless the caller already did. */
    if (log_req[0] != '\0' && m >= 0 && (size_t)(n + m) < sizeof line &&
        strstr(line + n, "req_id=") == NULL)
        snprintf(line + n + m, sizeof line - (size_t)(n + m), " req_id=%s", log_req);
    /* One fputs per line: stdio locks the stream, so lines never interleave. */
    size_t len = strlen(line);
    if (len + 1 < sizeof line) {
        line[len] = '\n';
        line[len + 1] = '\0';
    }
    fputs(line, stderr);
}
