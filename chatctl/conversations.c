/* conversation, room, retention: what message stores. */
#include "chatctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "chat/util.h"

#define RETENTION_POLL_MS 200
#define RETENTION_WAIT_MS (10 * 60 * 1000)

/* Asks message (first that answers); NOT_FOUND and a missing conversation
 * are turned into rc here, what is not found named by what. */
static ctl_rc conv_ask(ctl *c, Chat__AdminRequest *req, ctl_result *res, const char *what)
{
    ctl_rc rc = ctl_ask_first(c, CTL_MESSAGE, req, res, true);
    if (rc == CTL_NOT_FOUND)
        ctl_fail(c, rc, "unknown %s", what);
    if (rc == CTL_OK && res->reply->conversation == NULL)
        rc = ctl_fail(c, CTL_FAILED, "chatctl: message %s: no conversation in the answer",
                      res->target->url);
    if (rc != CTL_OK)
        ctl_result_clear(res);
    return rc;
}

ctl_rc ctl_room_get(ctl *c, const char *name, bool with_members, ctl_result *res)
{
    Chat__AdminRequest req;
    Chat__AdminRoomReq body = CHAT__ADMIN_ROOM_REQ__INIT;
    ctl_req_init(&req);
    body.name = (char *)name;
    body.with_members = with_members;
    req.body_case = CHAT__ADMIN_REQUEST__BODY_ROOM;
    req.room = &body;
    char what[CHAT_ROOM_MAX + 16];
    snprintf(what, sizeof what, "room %s", name);
    return conv_ask(c, &req, res, what);
}

static void conv_json(cJSON *o, const Chat__AdminConversationInfo *ci)
{
    ctl_json_str(o, "conversation_id", ci->conversation_id);
    ctl_json_str(o, "kind", ci->kind);
    ctl_json_str(o, "room", ci->room);
    cJSON *m = cJSON_AddArrayToObject(o, "members");
    for (size_t i = 0; i < ci->n_members; i++)
        cJSON_AddItemToArray(m, cJSON_CreateString(ci->members[i]));
    ctl_json_num(o, "last_seq", (double)ci->last_seq);
    cJSON_AddBoolToObject(o, "closed", ci->closed);
    ctl_json_num(o, "created_at", (double)ci->created_at);
    ctl_json_num(o, "member_count", ci->member_count);
}

static void conv_print(ctl *c, const Chat__AdminConversationInfo *ci)
{
    char at[40];
    ctl_fmt_time(ci->created_at, at, sizeof at);
    ctl_say(c, "conversation: %s", ci->conversation_id);
    ctl_say(c, "kind:         %s", ci->kind);
    ctl_say(c, "room:         %s", ci->room[0] ? ci->room : "-");
    ctl_say(c, "last seq:     %" PRIu64, ci->last_seq);
    ctl_say(c, "closed:       %s", ci->closed ? "yes" : "no");
    ctl_say(c, "created at:   %s", at);
    ctl_say(c, "members:      %u", ci->member_count);
    for (size_t i = 0; i < ci->n_members; i++)
        ctl_say(c, "  %s", ci->members[i]);
}

static ctl_rc conversation_run(ctl *c, const ctl_opts *o)
{
    const char *id = o->args[0];
    if (!chat_uuid_valid(id))
        return ctl_usage(c, "not a conversation id (UUID): %s", id);
    Chat__AdminRequest req;
    Chat__AdminConversationReq body = CHAT__ADMIN_CONVERSATION_REQ__INIT;
    ctl_req_init(&req);
    body.conversation_id = (char *)id;
    req.body_case = CHAT__ADMIN_REQUEST__BODY_CONVERSATION;
    req.conversation = &body;
    ctl_result res;
    char what[64];
    snprintf(what, sizeof what, "conversation %s", id);
    ctl_rc rc = conv_ask(c, &req, &res, what);
    if (rc != CTL_OK)
        return rc;
    conv_json(c->doc, res.reply->conversation);
    conv_print(c, res.reply->conversation);
    ctl_result_clear(&res);
    return CTL_OK;
}

static ctl_rc room_run(ctl *c, const ctl_opts *o)
{
    const char *name = o->args[0];
    if (!chat_room_valid(name))
        return ctl_usage(c, "not a room name ([a-z0-9_-], 1..%d): %s", CHAT_ROOM_MAX, name);
    ctl_result res;
    ctl_rc rc = ctl_room_get(c, name, false, &res);
    if (rc != CTL_OK)
        return rc;
    const Chat__AdminConversationInfo *ci = res.reply->conversation;
    cJSON_AddStringToObject(c->doc, "name", name);
    ctl_json_str(c->doc, "conversation_id", ci->conversation_id);
    ctl_json_num(c->doc, "member_count", ci->member_count);
    ctl_json_num(c->doc, "last_seq", (double)ci->last_seq);
    char members[16], seq[24];
    snprintf(members, sizeof members, "%u", ci->member_count);
    snprintf(seq, sizeof seq, "%" PRIu64, ci->last_seq);
    static const char *const head[] = {"NAME", "CONVERSATION_ID", "MEMBERS", "LAST_SEQ", NULL};
    ctl_table *t = c->json ? NULL : ctl_table_new(head);
    const char *row[] = {name, ci->conversation_id, members, seq};
    ctl_table_row(t, row);
    ctl_table_print(t);
    ctl_result_clear(&res);
    return CTL_OK;
}

/* ---- retention ---- */

static void retention_req(Chat__AdminRequest *req, Chat__AdminRetentionReq *body,
                          Chat__RetentionOp op, uint32_t days)
{
    Chat__AdminRetentionReq init = CHAT__ADMIN_RETENTION_REQ__INIT;
    *body = init;
    body->op = op;
    body->days = days;
    ctl_req_init(req);
    req->body_case = CHAT__ADMIN_REQUEST__BODY_RETENTION;
    req->retention = body;
}

/* rc of one retention answer: OK only with reply.retention. */
static ctl_rc retention_check(ctl *c, const ctl_result *res)
{
    ctl_rc rc = ctl_check(c, res, false);
    if (rc == CTL_OK && res->reply->retention == NULL) {
        ctl_report(c, CTL_MESSAGE, res->target->url, "no retention in the answer");
        rc = CTL_FAILED;
    }
    return rc;
}

static void retention_out(ctl *c, const Chat__AdminRetentionInfo *r)
{
    ctl_json_num(c->doc, "days", r->days);
    cJSON_AddBoolToObject(c->doc, "running", r->running);
    ctl_json_num(c->doc, "deleted", (double)r->deleted);
    ctl_json_num(c->doc, "last_run_at", (double)r->last_run_at);
    ctl_json_num(c->doc, "runs", (double)r->runs);
    char days[24], deleted[24], at[40], runs[24];
    snprintf(days, sizeof days, r->days ? "%u" : "0 (forever)", r->days);
    snprintf(deleted, sizeof deleted, "%" PRIu64, r->deleted);
    snprintf(runs, sizeof runs, "%" PRIu64, r->runs);
    ctl_fmt_time(r->last_run_at, at, sizeof at);
    static const char *const head[] = {"DAYS",        "RUNNING", "DELETED",
                                       "LAST_RUN_AT", "RUNS",    NULL};
    ctl_table *t = c->json ? NULL : ctl_table_new(head);
    const char *row[] = {days, r->running ? "yes" : "no", deleted, at, runs};
    ctl_table_row(t, row);
    ctl_table_print(t);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls the replica that started run number `runs` until it is over. */
static ctl_rc retention_wait(ctl *c, ctl_target *t, uint64_t runs)
{
    Chat__AdminRequest req;
    Chat__AdminRetentionReq body;
    retention_req(&req, &body, CHAT__RETENTION_OP__RETENTION_GET, 0);
    int64_t end = chat_mono_ms() + RETENTION_WAIT_MS;
    uint64_t shown = UINT64_MAX;
    for (;;) {
        ctl_result res;
        ctl_call(c, t, &req, &res);
        ctl_rc rc = retention_check(c, &res);
        if (rc != CTL_OK) {
            ctl_result_clear(&res);
            return rc;
        }
        const Chat__AdminRetentionInfo *r = res.reply->retention;
        if (!r->running && r->runs >= runs) {
            retention_out(c, r);
            ctl_say(c, "deleted %" PRIu64 " messages", r->deleted);
            ctl_result_clear(&res);
            return CTL_OK;
        }
        if (r->deleted != shown)
            ctl_say(c, "running on %s: %" PRIu64 " deleted so far", t->url, r->deleted);
        shown = r->deleted;
        ctl_result_clear(&res);
        if (chat_mono_ms() >= end)
            return ctl_fail(c, CTL_FAILED, "chatctl: message %s: run not over after %d min",
                            t->url, RETENTION_WAIT_MS / 60000);
        sleep_ms(RETENTION_POLL_MS);
    }
}

static ctl_rc retention_run(ctl *c, const ctl_opts *o)
{
    const char *sub = o->n_args > 0 ? o->args[0] : NULL;
    Chat__RetentionOp op = CHAT__RETENTION_OP__RETENTION_GET;
    long days = 0;
    if (sub != NULL && strcmp(sub, "set") == 0) {
        if (o->n_args != 2 || !ctl_parse_int(o->args[1], 0, 36500, &days))
            return ctl_usage(c, "retention set DAYS: DAYS is an integer 0..36500");
        op = CHAT__RETENTION_OP__RETENTION_SET;
    } else if (sub != NULL && strcmp(sub, "run") == 0) {
        if (o->n_args != 1)
            return ctl_usage(c, "retention run: no argument expected");
        op = CHAT__RETENTION_OP__RETENTION_RUN;
    } else if (sub != NULL) {
        return ctl_usage(c, "retention: unknown subcommand %s (set DAYS, run)", sub);
    }
    Chat__AdminRequest req;
    Chat__AdminRetentionReq body;
    retention_req(&req, &body, op, (uint32_t)days);
    ctl_result res;
    ctl_rc rc = ctl_call_first(c, CTL_MESSAGE, &req, &res);
    if (rc == CTL_OK)
        rc = retention_check(c, &res);
    if (rc == CTL_OK && op == CHAT__RETENTION_OP__RETENTION_RUN) {
        ctl_say(c, "retention run started on %s", res.target->url);
        rc = retention_wait(c, res.target, res.reply->retention->runs);
    } else if (rc == CTL_OK) {
        if (op == CHAT__RETENTION_OP__RETENTION_SET)
            ctl_say(c, "retention set to %ld days%s", days, days ? "" : " (keep forever)");
        retention_out(c, res.reply->retention);
    }
    ctl_result_clear(&res);
    return rc;
}

const ctl_command ctl_cmd_conversation = {
    .name = "conversation",
    .usage = "conversation ID",
    .summary = "one conversation: kind, room, members, last seq, closed, created at",
    .help =
        "Message describes the conversation (unknown: exit 4).\n"
        "JSON: {\"conversation_id\",\"kind\" (random, dm, room),\"room\" (null when none),\n"
        "  \"members\":[user ids],\"last_seq\",\"closed\",\"created_at\" (unix ms),\n"
        "  \"member_count\"}\n",
    .min_args = 1,
    .max_args = 1,
    .run = conversation_run,
};

const ctl_command ctl_cmd_room = {
    .name = "room",
    .usage = "room NAME",
    .summary = "one room: its conversation id, member count, last seq",
    .help = "Message describes the room (unknown: exit 4).\n"
            "Table columns: NAME CONVERSATION_ID MEMBERS LAST_SEQ\n"
            "JSON: {\"name\",\"conversation_id\",\"member_count\",\"last_seq\"}\n",
    .min_args = 1,
    .max_args = 1,
    .run = room_run,
};

const ctl_command ctl_cmd_retention = {
    .name = "retention",
    .usage = "retention | retention set DAYS | retention run",
    .summary = "message retention: show, set DAYS (0 = keep forever), purge now",
    .help =
        "retention: the setting and the last run (message, first replica that answers).\n"
        "retention set DAYS: messages older than DAYS (integer 0..36500; 0 keeps them\n"
        "  forever) are deleted from now on.\n"
        "retention run: starts a purge on one replica and polls that replica every\n"
        "  200 ms, printing progress, until the run is over (at most 10 minutes, then\n"
        "  exit 1); ends with \"deleted N messages\".\n"
        "Table columns: DAYS RUNNING DELETED LAST_RUN_AT RUNS\n"
        "JSON (all three): {\"days\",\"running\",\"deleted\" (by the current or last run),\n"
        "  \"last_run_at\" (unix ms, 0 never),\"runs\" (runs started on that replica)}\n",
    .min_args = 0,
    .max_args = 2,
    .run = retention_run,
};
