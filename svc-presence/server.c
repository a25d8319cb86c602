/* Serving requests: libchat's rpc pool (REP socket + worker threads, each
 * with its own Redis connection; svc-match calls block too). A worker
 * decodes the request, runs pres_handle() and replies. */
#include "presence.h"

#include <stdlib.h>

#include "chat/log.h"
#include "chat/rpc_pool.h"

static void refuse(chat_rpc_job *job, void *arg)
{
    Chat__PresenceReply rep = CHAT__PRESENCE_REPLY__INIT;
    rep.code = CHAT__CODE__UNAVAILABLE;
    rep.detail = "not accepting requests";
    chat_rpc_job_reply_pb(job, &rep.base);
}

/* Made before the pool starts, read by /metrics. */
static chat_reqstats *server_stats;

static void work(chat_rpc_job *job, const uint8_t *data, size_t len, chat_redis *r, void *arg)
{
    const pres_env *env = arg;
    Chat__PresenceRequest *req =
        (Chat__PresenceRequest *)chat_pb_unpack(&chat__presence_request__descriptor, len, data);
    chat_log_req(req != NULL ? req->req_id : NULL);
    pres_out out;
    pres_out_init(&out);
    if (req == NULL)
        pres_out_err(&out, CHAT__CODE__BAD_REQUEST, "undecodable request");
    else if (r == NULL)
        pres_out_err(&out, CHAT__CODE__UNAVAILABLE, "out of memory");
    else
        pres_handle(env, r, req, chat_now_ms(), &out);
    if (out.reply.code != CHAT__CODE__OK)
        chat_debug("pres_request_failed", "req=%d code=%d detail=\"%s\"",
                   req ? (int)req->body_case : -1, (int)out.reply.code, out.detail);
    chat_debug("request_done", "type=%d code=%d", req ? (int)req->body_case : -1,
               (int)out.reply.code);
    chat_reqstats_observe(server_stats, req ? (int)req->body_case : 0, (int)out.reply.code,
                          chat_rpc_pool_age_s());
    chat_rpc_job_reply_pb(job, &out.reply.base);
    chat_log_req(NULL);
    pres_out_free(&out);
    chat__presence_request__free_unpacked(req, NULL);
}

void pres_server_metrics(chat_mbuf *b)
{
    chat_reqstats_render(b, server_stats);
}

int pres_server_open(chat_rpc_pool **out, const chat_rpc_pool_cfg *cfg, const pres_env *env)
{
    if (server_stats == NULL)
        server_stats = chat_reqstats_new(&chat__presence_request__descriptor);
    chat_rpc_pool_cfg c = *cfg;
    c.urgent = pres_server_urgent;
    /* env is const for the handlers; the pool's arg is not. */
    return chat_rpc_pool_open(out, &c, work, refuse, (void *)env);
}

void pres_server_close(chat_rpc_pool *s)
{
    chat_rpc_pool_close(s);
}
