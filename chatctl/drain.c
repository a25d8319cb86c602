/* drain: one gateway stops accepting and closes its connections over a
 * while; chatctl follows it until none is left. */
#include "chatctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "chat/util.h"

#define DRAIN_POLL_MS 500
#define DRAIN_SLACK_MS 15000
#define DRAIN_DEFAULT_S 10

/* The gateway whose status says id; NULL (reported) when none. */
static ctl_target *drain_find(ctl *c, const char *id, ctl_rc *rc)
{
    Chat__AdminRequest req;
    Chat__AdminStatusReq body = CHAT__ADMIN_STATUS_REQ__INIT;
    ctl_req_init(&req);
    req.body_case = CHAT__ADMIN_REQUEST__BODY_STATUS;
    req.status = &body;
    ctl_result *res;
    int n = ctl_call_all(c, 1u << CTL_GATEWAY, &req, &res);
    ctl_target *found = NULL;
    ctl_rc failed = CTL_OK;
    for (int i = 0; i < n; i++) {
        ctl_rc one = ctl_check(c, &res[i], false);
        const Chat__AdminProcStatus *st = one == CTL_OK ? res[i].reply->status : NULL;
        failed = ctl_rc_merge(failed, one);
        if (st != NULL && strcmp(st->id, id) == 0 && found == NULL)
            found = res[i].target;
    }
    ctl_results_free(res, n);
    /* A gateway that did not answer may be the one: not "unknown" then. */
    if (found == NULL)
        *rc = failed != CTL_OK
                  ? ctl_fail(c, failed, "gateway %s not among those that answered", id)
                  : ctl_fail(c, CTL_NOT_FOUND, "unknown gateway %s", id);
    return found;
}

static void drain_req(Chat__AdminRequest *req, Chat__AdminDrainReq *body, bool start,
                      uint32_t over_ms)
{
    Chat__AdminDrainReq init = CHAT__ADMIN_DRAIN_REQ__INIT;
    *body = init;
    body->start = start;
    body->over_ms = over_ms;
    ctl_req_init(req);
    req->body_case = CHAT__ADMIN_REQUEST__BODY_DRAIN;
    req->drain = body;
}

/* One drain request to t; *info the progress (copied). */
static ctl_rc drain_ask(ctl *c, ctl_target *t, bool start, uint32_t over_ms,
                        Chat__AdminDrainInfo *info)
{
    Chat__AdminRequest req;
    Chat__AdminDrainReq body;
    drain_req(&req, &body, start, over_ms);
    ctl_result res;
    ctl_call(c, t, &req, &res);
    ctl_rc rc = ctl_check(c, &res, false);
    if (rc == CTL_OK && res.reply->drain == NULL) {
        ctl_report(c, CTL_GATEWAY, t->url, "no drain progress in the answer");
        rc = CTL_FAILED;
    }
    if (rc == CTL_OK)
        *info = *res.reply->drain;
    ctl_result_clear(&res);
    return rc;
}

static void drain_out(ctl *c, const char *id, bool done, const Chat__AdminDrainInfo *d)
{
    cJSON_AddStringToObject(c->doc, "gateway_id", id);
    cJSON_AddBoolToObject(c->doc, "done", done);
    ctl_json_num(c->doc, "connections", d->connections);
    ctl_json_num(c->doc, "closed", (double)d->closed);
}

static ctl_rc drain_run(ctl *c, const ctl_opts *o)
{
    const char *id = o->args[0];
    long over = DRAIN_DEFAULT_S;
    if (o->over_text != NULL && !ctl_parse_int(o->over_text, 0, 3600, &over))
        return ctl_usage(c, "--over: not a number of seconds in 0..3600: %s", o->over_text);
    ctl_rc rc = CTL_OK;
    ctl_target *t = drain_find(c, id, &rc);
    if (t == NULL)
        return rc;
    Chat__AdminDrainInfo d;
    if ((rc = drain_ask(c, t, true, (uint32_t)over * 1000, &d)) != CTL_OK)
        return rc;
    ctl_say(c, "draining %s (%s) over %lds", id, t->url, over);
    int64_t end = chat_mono_ms() + over * 1000 + DRAIN_SLACK_MS;
    uint32_t shown_left = UINT32_MAX;
    uint64_t shown_closed = UINT64_MAX;
    while (d.connections > 0 && chat_mono_ms() < end) {
        if (d.connections != shown_left || d.closed != shown_closed)
            ctl_say(c, "%s: %u connections left, %" PRIu64 " closed", id, d.connections,
                    d.closed);
        shown_left = d.connections;
        shown_closed = d.closed;
        struct timespec ts = {0, DRAIN_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
        if ((rc = drain_ask(c, t, false, 0, &d)) != CTL_OK)
            return rc;
    }
    bool done = d.connections == 0;
    drain_out(c, id, done, &d);
    ctl_say(c, "%s: %u connections left, %" PRIu64 " closed", id, d.connections, d.closed);
    if (!done)
        return ctl_fail(c, CTL_FAILED, "chatctl: drain of %s not done after %lds", id,
                        over + DRAIN_SLACK_MS / 1000);
    ctl_say(c, "%s drained", id);
    return CTL_OK;
}

const ctl_command ctl_cmd_drain = {
    .name = "drain",
    .usage = "drain GATEWAY_ID [--over SECONDS]",
    .summary = "the gateway stops accepting and closes its connections over SECONDS",
    .help = "Finds the gateway whose status id is GATEWAY_ID (none: exit 4), starts its\n"
            "drain (readyz 503, connections closed with 1001 spread over SECONDS, integer\n"
            "0..3600, default 10), then asks for progress every 500 ms, printing\n"
            "\"ID: N connections left, M closed\", until none is left (exit 0) or\n"
            "SECONDS + 15 s have passed (exit 1).\n"
            "JSON: {\"gateway_id\",\"done\",\"connections\" (still open),\"closed\"}\n",
    .flags = CTL_F_OVER,
    .min_args = 1,
    .max_args = 1,
    .run = drain_run,
};
