/* status: every address of every kind, one row per process. */
#include "chatctl.h"

#include <stdio.h>
#include <stdlib.h>

#define STATUS_ALL ((1u << CTL_KINDS) - 1)

static void status_json(cJSON *rows, const ctl_result *r, const char *error)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return;
    const Chat__AdminProcStatus *st = r->reply && !error ? r->reply->status : NULL;
    cJSON_AddStringToObject(o, "kind", ctl_kind_name(r->target->kind));
    ctl_json_str(o, "id", st ? st->id : NULL);
    cJSON_AddStringToObject(o, "address", r->target->url);
    ctl_json_str(o, "metrics_url", st ? st->metrics_url : NULL);
    ctl_json_str(o, "version", st ? st->version : NULL);
    if (st != NULL) {
        ctl_json_num(o, "uptime_ms", (double)st->uptime_ms);
        cJSON_AddBoolToObject(o, "ready", st->ready);
        ctl_json_num(o, "restarts", st->restarts);
        ctl_json_str(o, "load_name", st->load_name);
        ctl_json_num(o, "load", (double)st->load);
    } else {
        cJSON_AddNullToObject(o, "uptime_ms");
        cJSON_AddBoolToObject(o, "ready", false);
        cJSON_AddNullToObject(o, "restarts");
        cJSON_AddNullToObject(o, "load_name");
        cJSON_AddNullToObject(o, "load");
    }
    cJSON_AddBoolToObject(o, "reachable", r->reply != NULL);
    ctl_json_str(o, "error", error);
    cJSON_AddItemToArray(rows, o);
}

static void status_row(ctl_table *t, const ctl_result *r, const char *error)
{
    const Chat__AdminProcStatus *st = r->reply && !error ? r->reply->status : NULL;
    const char *kind = ctl_kind_name(r->target->kind);
    if (st == NULL) {
        /* One word, so that the columns still split on blanks. */
        const char *mark = r->reply == NULL ? "unreachable" : "error";
        const char *row[] = {kind, "-", r->target->url, "-", "-", "-", mark, "-", "-"};
        ctl_table_row(t, row);
        return;
    }
    char up[32], restarts[16], load[96];
    ctl_fmt_duration((int64_t)st->uptime_ms, up, sizeof up);
    snprintf(restarts, sizeof restarts, "%u", st->restarts);
    snprintf(load, sizeof load, "%s=%llu", st->load_name[0] ? st->load_name : "load",
             (unsigned long long)st->load);
    const char *row[] = {kind,        st->id, r->target->url,           st->metrics_url,
                         st->version, up,     st->ready ? "yes" : "no", restarts,
                         load};
    ctl_table_row(t, row);
}

static ctl_rc status_run(ctl *c, const ctl_opts *o)
{
    Chat__AdminRequest req = CHAT__ADMIN_REQUEST__INIT;
    Chat__AdminStatusReq body = CHAT__ADMIN_STATUS_REQ__INIT;
    req.body_case = CHAT__ADMIN_REQUEST__BODY_STATUS;
    req.status = &body;
    ctl_result *res;
    int n = ctl_call_all(c, STATUS_ALL, &req, &res);
    static const char *const head[] = {"KIND",   "ID",    "ADDRESS",  "METRICS", "VERSION",
                                       "UPTIME", "READY", "RESTARTS", "LOAD",    NULL};
    ctl_table *t = c->json ? NULL : ctl_table_new(head);
    cJSON *rows = cJSON_AddArrayToObject(c->doc, "processes");
    ctl_rc rc = CTL_OK;
    for (int i = 0; i < n; i++) {
        ctl_rc one = ctl_check(c, &res[i], false);
        char why[400];
        ctl_result_error(&res[i], why, sizeof why);
        if (one == CTL_OK && res[i].reply->status == NULL) {
            snprintf(why, sizeof why, "no status in the answer");
            ctl_report(c, res[i].target->kind, res[i].target->url, why);
            one = CTL_FAILED;
        }
        status_json(rows, &res[i], one == CTL_OK ? NULL : why);
        status_row(t, &res[i], one == CTL_OK ? NULL : why);
        rc = ctl_rc_merge(rc, one);
    }
    ctl_table_print(t);
    ctl_results_free(res, n);
    return rc;
}

const ctl_command ctl_cmd_status = {
    .name = "status",
    .usage = "status",
    .summary = "every process of every kind: id, address, version, uptime, ready, load",
    .help = "Asks every address of every kind (gateways, message, match, presence) at once.\n"
            "Table columns: KIND ID ADDRESS METRICS VERSION UPTIME READY RESTARTS LOAD\n"
            "(LOAD is NAME=VALUE: gateway connections, match queue_length, message\n"
            "requests_in_flight, presence users_online). A process that does not answer\n"
            "is a row with READY \"unreachable\" (or \"error\" for an error answer), named\n"
            "on stderr too; the exit status is then 1.\n"
            "JSON: {\"processes\":[{\"kind\",\"id\",\"address\",\"metrics_url\",\"version\",\n"
            "  \"uptime_ms\",\"ready\",\"restarts\",\"load_name\",\"load\",\"reachable\",\n"
            "  \"error\"}]} (unknown values null; error null when it answered).\n",
    .min_args = 0,
    .max_args = 0,
    .run = status_run,
};
