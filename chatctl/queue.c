/* queue: the random-chat queue, as match sees it. */
#include "chatctl.h"

#include <inttypes.h>
#include <stdio.h>

static ctl_rc queue_run(ctl *c, const ctl_opts *o)
{
    Chat__AdminRequest req;
    Chat__AdminQueueReq body = CHAT__ADMIN_QUEUE_REQ__INIT;
    ctl_req_init(&req);
    req.body_case = CHAT__ADMIN_REQUEST__BODY_QUEUE;
    req.queue = &body;
    ctl_result res;
    ctl_rc rc = ctl_ask_first(c, CTL_MATCH, &req, &res, false);
    if (rc == CTL_OK && res.reply->queue == NULL)
        rc = ctl_fail(c, CTL_FAILED, "chatctl: match %s: no queue in the answer",
                      res.target->url);
    if (rc == CTL_OK) {
        const Chat__AdminQueueInfo *q = res.reply->queue;
        ctl_json_num(c->doc, "waiting", (double)q->waiting);
        ctl_json_num(c->doc, "longest_wait_ms", (double)q->longest_wait_ms);
        char n[24], wait[32];
        snprintf(n, sizeof n, "%" PRIu64, q->waiting);
        ctl_fmt_duration(q->longest_wait_ms, wait, sizeof wait);
        static const char *const head[] = {"WAITING", "LONGEST_WAIT", NULL};
        ctl_table *t = c->json ? NULL : ctl_table_new(head);
        const char *row[] = {n, q->waiting > 0 ? wait : "-"};
        ctl_table_row(t, row);
        ctl_table_print(t);
    }
    ctl_result_clear(&res);
    return rc;
}

const ctl_command ctl_cmd_queue = {
    .name = "queue",
    .usage = "queue",
    .summary = "the random-chat queue: users waiting, the longest wait",
    .help = "Match (the first replica that answers) describes its queue.\n"
            "Table columns: WAITING LONGEST_WAIT\n"
            "JSON: {\"waiting\",\"longest_wait_ms\"}\n",
    .max_args = 0,
    .run = queue_run,
};
