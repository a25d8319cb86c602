/* Serving requests: libchat's rpc pool (REP socket + worker threads, each
 * with its own Redis connection; svc-message calls block too). A worker
 * decodes the request, runs match_handle() and replies. */
#include "match.h"

#include <stdlib.h>

#include "chat/log.h"
#include "chat/rpc_pool.h"

static void refuse(chat_rpc_job *job, void *arg)
{
    Chat__MatchReply rep = CHAT__MATCH_REPLY__INIT;
    rep.code = CHAT__CODE__UNAVAILABLE;
    rep.detail = "not accepting requests";
    chat_rpc_job_reply_pb(job, &rep.base);
}

/* Made before the pool starts, read by /metrics. */
static chat_reqstats *server_stats;

static void work(chat_rpc_job *job, const uint8_t *data, size_t len, chat_redis *r, void *arg)
{
    const match_env *env = arg;
    Chat__MatchRequest *req =
        (Chat__MatchRequest *)chat_pb_unpack(&chat__match_request__descriptor, len, data);
    chat_log_req(req != NULL ? req->req_id : NULL);
    match_out out;
    match_out_init(&out);
    if (req == NULL)
        match_out_err(&out, CHAT__CODE__BAD_REQUEST, "undecodable request");
    else if (r == NULL)
        match_out_err(&out, CHAT__CODE__UNAVAILABLE, "out of memory");
    else
        match_handle(env, r, req, &out);
    if (out.reply.code != CHAT__CODE__OK)
        chat_debug("match_request_failed", "req=%d code=%d detail=\"%s\"",
                   req ? (int)req->body_case : -1, (int)out.reply.code, out.detail);
    chat_debug("request_done", "type=%d code=%d", req ? (int)req->body_case : -1,
               (int)out.reply.code);
    chat_reqstats_observe(server_stats, req ? (int)req->body_case : 0, (int)out.reply.code,
                          chat_rpc_pool_age_s());
    chat_rpc_job_reply_pb(job, &out.reply.base);
    chat_log_req(NULL);
    match_out_free(&out);
    chat__match_request__free_unpacked(req, NULL);
}

void match_server_metrics(chat_mbuf *b)
{
    chat_reqstats_render(b, server_stats);
}

int match_server_open(chat_rpc_pool **out, const chat_rpc_pool_cfg *cfg, const match_env *env)
{
    if (server_stats == NULL)
        server_stats = chat_reqstats_new(&chat__match_request__descriptor);
    /* env is const for the handlers; the pool's arg is not. */
    return chat_rpc_pool_open(out, cfg, work, refuse, (void *)env);
}

void match_server_close(chat_rpc_pool *s)
{
    chat_rpc_pool_close(s);
}
