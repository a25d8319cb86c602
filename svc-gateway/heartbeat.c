/* The heartbeat to svc-presence, on a path of its own: a thread with its own
 * nng socket, so neither a busy event loop (a connection ramp) nor the
 * requests queued before it (thousands of registrations) can delay it past
 * the presence service's CHAT_GATEWAY_TTL_MS. svc-presence serves it on a
 * lane of its own too (svc-presence/server.c). The answer goes to the lws
 * thread like any other (GW_OP_HEARTBEAT): it may ask for a resync. */
#include "gateway.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include <nng/nng.h>

#include "chat/log.h"

struct gw_heartbeat {
    gw_backend *be;
    chat_rpc_client *rpc;
    const char *gateway_id;
    int64_t interval_ms;
    atomic_uint connections; /* set by the lws thread */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, started;
};

static void heartbeat_once(gw_heartbeat *h)
{
    Chat__HeartbeatReq hb = CHAT__HEARTBEAT_REQ__INIT;
    hb.gateway_id = (char *)h->gateway_id;
    hb.connections = atomic_load(&h->connections);
    Chat__PresenceRequest pr = CHAT__PRESENCE_REQUEST__INIT;
    pr.body_case = CHAT__PRESENCE_REQUEST__BODY_HEARTBEAT;
    pr.heartbeat = &hb;
    ProtobufCMessage *reply = NULL;
    int64_t t0 = chat_mono_ms(), t0_ns = chat_mono_ns();
    int rv = chat_rpc_call_decode(h->rpc, &pr.base, &chat__presence_reply__descriptor, &reply);
    chat_debug("heartbeat", "err=%d ms=%lld", rv, (long long)(chat_mono_ms() - t0));
    gw_item *it = calloc(1, sizeof *it);
    if (it == NULL) {
        if (reply != NULL)
            protobuf_c_message_free_unpacked(reply, NULL);
        return;
    }
    it->be = h->be;
    it->op = GW_OP_HEARTBEAT;
    it->t0_ns = t0_ns;
    it->err = rv == NNG_EPROTO ? -1 : rv;
    it->r.pres = (Chat__PresenceReply *)reply;
    gw_backend_deliver(h->be, it);
}

static void *heartbeat_main(void *arg)
{
    gw_heartbeat *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        struct timespec until = chat_deadline_ms(h->interval_ms);
        while (!h->stop && pthread_cond_timedwait(&h->cv, &h->mu, &until) != ETIMEDOUT)
            ;
        if (h->stop)
            break;
        pthread_mutex_unlock(&h->mu);
        heartbeat_once(h); /* blocks at most CHAT_RPC_TIMEOUT_MS */
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int gw_heartbeat_start(gw_heartbeat **out, gw_backend *be, const gw_config *cfg,
                       const char *gateway_id)
{
    gw_heartbeat *h = calloc(1, sizeof *h);
    if (h == NULL)
        return -1;
    h->be = be;
    h->gateway_id = gateway_id;
    h->interval_ms = cfg->heartbeat_ms;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    int rv = chat_rpc_client_open(&h->rpc, cfg->presence_addrs, (int)cfg->rpc_timeout_ms);
    if (rv == 0 && pthread_create(&h->thread, NULL, heartbeat_main, h) == 0) {
        h->started = true;
        *out = h;
        return 0;
    }
    chat_error("heartbeat_start_failed", "err=%d", rv);
    gw_heartbeat_stop(h);
    return -1;
}

void gw_heartbeat_connections(gw_heartbeat *h, unsigned n)
{
    if (h != NULL)
        atomic_store(&h->connections, n);
}

/* No heartbeat after this one returns (except one in flight). */
static void heartbeat_halt(gw_heartbeat *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void gw_heartbeat_stop(gw_heartbeat *h)
{
    if (h == NULL)
        return;
    heartbeat_halt(h);
    if (h->started)
        pthread_join(h->thread, NULL);
    chat_rpc_client_close(h->rpc);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
