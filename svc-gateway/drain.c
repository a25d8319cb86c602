/* Draining (chatctl drain): the gateway leaves the pool without a storm.
 *
 * From the start /readyz answers 503 (a load balancer stops sending new
 * clients) and WebSocket upgrades get HTTP 503 (server.c): a client that
 * still comes here fails its connect and retries with backoff, reaching
 * another gateway, and nothing of it was registered anywhere. The open
 * connections are closed with 1001, the close of a stopping gateway that
 * clients already answer by resuming elsewhere, spread evenly over over_ms:
 * by elapsed time t, ceil(total * t / over_ms) of them. The gateway stays
 * up, not ready, until it is restarted. Runs on the lws thread only. */
#include "gateway.h"

#include "chat/log.h"

/* Closes up to n open connections (oldest first) with 1001. */
static void drain_close(gw_server *s, uint64_t n)
{
    for (gw_conn *c = s->conns; c != NULL && n > 0; c = c->hh.next) {
        if (c->closing)
            continue;
        gw_conn_close(s, c, 1001);
        s->drain.closed++;
        s->m.drain_closed++;
        n--;
    }
}

void gw_drain_start(gw_server *s, uint32_t over_ms)
{
    if (s->drain.on)
        return;
    unsigned open = 0;
    for (gw_conn *c = s->conns; c != NULL; c = c->hh.next)
        open += !c->closing;
    s->drain.on = true;
    s->drain.t0_ms = chat_mono_ms();
    s->drain.over_ms = over_ms;
    s->drain.total = open;
    chat_info("drain_started", "connections=%u over_ms=%u", open, over_ms);
    gw_drain_tick(s);
}

void gw_drain_tick(gw_server *s)
{
    gw_drain *d = &s->drain;
    if (!d->on || d->closed >= d->total)
        return;
    int64_t elapsed = chat_mono_ms() - d->t0_ms;
    uint64_t due = d->total;
    if (d->over_ms > 0 && elapsed < (int64_t)d->over_ms)
        due = ((uint64_t)d->total * (uint64_t)elapsed + d->over_ms - 1) / d->over_ms;
    if (due > d->closed)
        drain_close(s, due - d->closed);
    if (due >= d->total) {
        /* All due: done (fewer than total when some closed by themselves). */
        d->total = (unsigned)d->closed;
        chat_info("drain_done", "closed=%llu", (unsigned long long)d->closed);
    }
}

void gw_drain_info(gw_server *s, Chat__AdminDrainInfo *out)
{
    out->draining = s->drain.on;
    out->connections = s->n_conns;
    out->over_ms = s->drain.over_ms;
    out->closed = s->drain.closed;
}
