/* The gateways' side of the order-and-gap promise: their /metrics counters
 * (messages held for a predecessor, gap fills, messages filled, gaps closed
 * and how long they were open, event batches lost), read from every --url
 * before and after the run. Plain blocking HTTP/1.0, 2 s per gateway: it
 * runs outside the measured part. A gateway that does not answer leaves the
 * figures out (ok false), it never fails the run. */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const struct {
    const char *name;
    size_t off;
    bool max;
    double scale; /* the gateway's unit -> ours (its gap times are seconds) */
} gw_fields[] = {
    {"chat_gateway_order_held_total", offsetof(cb_gw_order, held), false, 1},
    {"chat_gateway_order_fills_total", offsetof(cb_gw_order, fills), false, 1},
    {"chat_gateway_order_catchups_total", offsetof(cb_gw_order, catchups), false, 1},
    {"chat_gateway_order_filled_messages_total", offsetof(cb_gw_order, filled), false, 1},
    {"chat_gateway_order_gaps_closed_total", offsetof(cb_gw_order, gaps_closed), false, 1},
    {"chat_gateway_order_gap_seconds_total", offsetof(cb_gw_order, gap_ms_sum), false, 1e3},
    {"chat_gateway_order_gap_seconds_max", offsetof(cb_gw_order, gap_ms_max), true, 1e3},
    {"chat_gateway_event_batches_lost_total", offsetof(cb_gw_order, batches_lost), false, 1},
};

/* GET /metrics of one gateway into buf (NUL-terminated). 0 or -1. */
static int gw_get(const cb_url *u, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char req[200];
    int n = snprintf(req, sizeof req, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", u->hostport);
    size_t len = 0;
    if (connect(fd, (const struct sockaddr *)&u->addr, sizeof u->addr) == 0 && n > 0 &&
        send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        ssize_t k;
        while (len + 1 < cap && (k = recv(fd, buf + len, cap - 1 - len, 0)) > 0)
            len += (size_t)k;
    }
    close(fd);
    buf[len] = '\0';
    return strncmp(buf, "HTTP/1.", 7) == 0 && strstr(buf, " 200 ") != NULL ? 0 : -1;
}

bool cb_gw_order_read(const cb_opts *o, cb_gw_order *out)
{
    memset(out, 0, sizeof *out);
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (buf == NULL)
        return false;
    bool ok = o->n_urls > 0;
    for (int i = 0; i < o->n_urls && ok; i++) {
        if (gw_get(&o->urls[i], buf, cap) != 0) {
            ok = false;
            break;
        }
        for (char *line = buf; line != NULL && *line;
             line = strchr(line, '\n'), line = line ? line + 1 : NULL)
            for (size_t f = 0; f < sizeof gw_fields / sizeof gw_fields[0]; f++) {
                size_t nl = strlen(gw_fields[f].name);
                if (strncmp(line, gw_fields[f].name, nl) != 0 || line[nl] != ' ')
                    continue;
                double v = strtod(line + nl + 1, NULL) * gw_fields[f].scale;
                double *dst = (double *)((char *)out + gw_fields[f].off);
                *dst = gw_fields[f].max ? (v > *dst ? v : *dst) : *dst + v;
            }
    }
    free(buf);
    out->ok = ok;
    return ok;
}

void cb_gw_order_diff(const cb_gw_order *a, const cb_gw_order *b, cb_gw_order *out)
{
    memset(out, 0, sizeof *out);
    out->ok = a->ok && b->ok;
    for (size_t f = 0; f < sizeof gw_fields / sizeof gw_fields[0]; f++) {
        const double *x = (const double *)((const char *)a + gw_fields[f].off);
        const double *y = (const double *)((const char *)b + gw_fields[f].off);
        double *d = (double *)((char *)out + gw_fields[f].off);
        *d = gw_fields[f].max ? *y : *y - *x; /* a max is since the gateway started */
    }
}
