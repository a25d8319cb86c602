/* A request's job: its one answer and its release. The lowest layer of the
 * service: the handler (service.c), the writers (writer.c) and the stores
 * (store.c) call it; it calls none of them. */
#include "message.h"

#include "chat/log.h"

#include <stdlib.h>

/* The request's type as the oneof names it ("send"), for logs. */
static const char *job_type(const msg_job *job)
{
    const ProtobufCFieldDescriptor *f =
        job->req == NULL
            ? NULL
            : protobuf_c_message_descriptor_get_field(&chat__message_request__descriptor,
                                                      (unsigned)job->req->body_case);
    return f != NULL ? f->name : "unknown";
}

void msg_job_reply(msg_job *job, const Chat__MessageReply *reply)
{
    if (job->rpc == NULL)
        return;
    chat_rpc_job_reply_pb(job->rpc, &reply->base);
    job->rpc = NULL;
    /* Where every answer goes out: the writers' batches too. */
    double s = (double)(chat_mono_ns() - job->t0_ns) / 1e9;
    if (job->svc != NULL) {
        chat_reqstats_observe(job->svc->stats.reqs,
                              job->req != NULL ? (int)job->req->body_case : 0, (int)reply->code,
                              s);
        atomic_fetch_sub(&job->svc->stats.in_flight, 1);
    }
    if (chat_log_enabled(CHAT_LOG_DEBUG)) {
        const ProtobufCEnumValue *c =
            protobuf_c_enum_descriptor_get_value(&chat__code__descriptor, (int)reply->code);
        chat_debug("request_done", "type=%s code=%s ms=%.3f req_id=%s", job_type(job),
                   c != NULL ? c->name : "?", s * 1000.0,
                   job->req != NULL && job->req->req_id[0] ? job->req->req_id : "-");
    }
}

void msg_job_free(msg_job *job)
{
    if (job == NULL)
        return;
    if (job->rpc != NULL) { /* a path forgot to answer: never strand a context */
        Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
        rep.code = CHAT__CODE__INTERNAL;
        msg_job_reply(job, &rep);
    }
    if (job->req != NULL)
        chat__message_request__free_unpacked(job->req, NULL);
    free(job->res.body);
    free(job->res.others);
    free(job);
}

void msg_job_fail(msg_job *job, Chat__Code code, const char *detail)
{
    Chat__MessageReply rep = CHAT__MESSAGE_REPLY__INIT;
    rep.code = code;
    rep.detail = (char *)(detail ? detail : "");
    msg_job_reply(job, &rep);
    msg_job_free(job);
}

bool msg_job_usable(msg_job *job, const PGresult *r, const char *what)
{
    if (r == NULL) {
        msg_job_fail(job, CHAT__CODE__UNAVAILABLE, "storage unavailable");
        return false;
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        chat_error("store_query_failed", "req=%s err=\"%s\" req_id=%s", what, m ? m : "?",
                   job->req->req_id[0] ? job->req->req_id : "-");
        msg_job_fail(job, CHAT__CODE__INTERNAL, "internal error");
        return false;
    }
    return true;
}

void msg_job_done(msg_job *job, Chat__MessageReply *rep)
{
    msg_job_reply(job, rep);
    msg_job_free(job);
}
