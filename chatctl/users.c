/* users, user, kick, ban, unban: presence knows who is online and banned,
 * message who exists and their conversations, each gateway its
 * connections. */
#include "chatctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/util.h"

#define CTL_KICK_REASON "kicked by an operator"

void ctl_req_init(Chat__AdminRequest *req)
{
    Chat__AdminRequest init = CHAT__ADMIN_REQUEST__INIT;
    *req = init;
}

ctl_rc ctl_user_exists(ctl *c, const char *user_id)
{
    Chat__AdminRequest req;
    Chat__AdminUserReq body = CHAT__ADMIN_USER_REQ__INIT;
    ctl_req_init(&req);
    body.user_id = (char *)user_id;
    req.body_case = CHAT__ADMIN_REQUEST__BODY_USER;
    req.user = &body;
    ctl_result res;
    ctl_rc rc = ctl_ask_first(c, CTL_MESSAGE, &req, &res, true);
    if (rc == CTL_NOT_FOUND)
        ctl_fail(c, rc, "unknown user %s", user_id);
    ctl_result_clear(&res);
    return rc;
}

/* ---- users ---- */

static ctl_rc users_online(ctl *c, Chat__AdminRequest *req)
{
    ctl_result res;
    ctl_rc rc = ctl_ask_first(c, CTL_PRESENCE, req, &res, false);
    if (rc == CTL_OK) {
        ctl_json_num(c->doc, "online_users", res.reply->online_users);
        ctl_say(c, "online users: %u", res.reply->online_users);
    } else {
        cJSON_AddNullToObject(c->doc, "online_users");
        ctl_say(c, "online users: ? (presence did not answer)");
    }
    ctl_result_clear(&res);
    return rc;
}

static ctl_rc users_run(ctl *c, const ctl_opts *o)
{
    Chat__AdminRequest req;
    Chat__AdminUsersReq body = CHAT__ADMIN_USERS_REQ__INIT;
    ctl_req_init(&req);
    req.body_case = CHAT__ADMIN_REQUEST__BODY_USERS;
    req.users = &body;
    ctl_rc rc = users_online(c, &req);
    ctl_result *res;
    int n = ctl_call_all(c, 1u << CTL_GATEWAY, &req, &res);
    static const char *const head[] = {"GATEWAY", "CONNECTIONS", "USERS", NULL};
    ctl_table *t = c->json ? NULL : ctl_table_new(head);
    cJSON *gws = cJSON_CreateArray();
    uint64_t conns = 0;
    for (int i = 0; i < n; i++) {
        ctl_rc one = ctl_check(c, &res[i], false);
        const Chat__AdminGatewayUsers *g = one == CTL_OK ? res[i].reply->gateway_users : NULL;
        rc = ctl_rc_merge(rc, one);
        if (g == NULL)
            continue;
        conns += g->connections;
        cJSON *j = cJSON_CreateObject();
        ctl_json_str(j, "gateway_id", g->gateway_id);
        ctl_json_num(j, "connections", g->connections);
        ctl_json_num(j, "users", g->users);
        cJSON_AddItemToArray(gws, j);
        char nc[16], nu[16];
        snprintf(nc, sizeof nc, "%u", g->connections);
        snprintf(nu, sizeof nu, "%u", g->users);
        const char *row[] = {g->gateway_id, nc, nu};
        ctl_table_row(t, row);
    }
    ctl_json_num(c->doc, "connections", (double)conns);
    cJSON_AddItemToObject(c->doc, "gateways", gws);
    ctl_say(c, "connections:  %" PRIu64, conns);
    ctl_table_print(t);
    ctl_results_free(res, n);
    return rc;
}

/* ---- user ---- */

static void user_req(Chat__AdminRequest *req, Chat__AdminUserReq *body, const char *user_id)
{
    Chat__AdminUserReq init = CHAT__ADMIN_USER_REQ__INIT;
    *body = init;
    body->user_id = (char *)user_id;
    ctl_req_init(req);
    req->body_case = CHAT__ADMIN_REQUEST__BODY_USER;
    req->user = body;
}

static void user_conversations(ctl *c, const Chat__AdminUserInfo *u)
{
    static const char *const head[] = {"CONVERSATION_ID", "KIND", "ROOM", NULL};
    ctl_table *t = c->json ? NULL : ctl_table_new(head);
    cJSON *arr = cJSON_AddArrayToObject(c->doc, "conversations");
    for (size_t i = 0; u != NULL && i < u->n_conversations; i++) {
        const Chat__AdminConvRef *r = u->conversations[i];
        cJSON *j = cJSON_CreateObject();
        ctl_json_str(j, "conversation_id", r->conversation_id);
        ctl_json_str(j, "kind", r->kind);
        ctl_json_str(j, "room", r->room);
        cJSON_AddItemToArray(arr, j);
        const char *row[] = {r->conversation_id, r->kind, r->room};
        ctl_table_row(t, row);
    }
    ctl_say(c, "conversations:");
    ctl_table_print(t);
}

static void user_presence(ctl *c, const Chat__AdminUserInfo *u)
{
    if (u == NULL) {
        cJSON_AddNullToObject(c->doc, "online");
        cJSON_AddNullToObject(c->doc, "last_seen");
        cJSON_AddNullToObject(c->doc, "banned");
        cJSON_AddNullToObject(c->doc, "banned_until");
        ctl_say(c, "online:       ? (presence did not answer)");
        return;
    }
    char seen[40], until[40];
    ctl_fmt_time(u->last_seen, seen, sizeof seen);
    cJSON_AddBoolToObject(c->doc, "online", u->online);
    ctl_json_num(c->doc, "last_seen", (double)u->last_seen);
    cJSON_AddBoolToObject(c->doc, "banned", u->banned_until >= 0);
    ctl_json_num(c->doc, "banned_until", (double)u->banned_until);
    if (u->banned_until < 0)
        snprintf(until, sizeof until, "no");
    else if (u->banned_until == 0)
        snprintf(until, sizeof until, "until unbanned");
    else
        ctl_fmt_time(u->banned_until, until + snprintf(until, sizeof until, "until "),
                     sizeof until - 6);
    ctl_say(c, "online:       %s", u->online ? "yes" : "no");
    ctl_say(c, "last seen:    %s", seen);
    ctl_say(c, "banned:       %s", until);
}

static void user_conn_add(ctl_table *t, cJSON *arr, const Chat__AdminConn *cn)
{
    char id[24], at[40];
    snprintf(id, sizeof id, "%" PRIu64, cn->conn_id);
    ctl_fmt_time(cn->opened_at, at, sizeof at);
    const char *row[] = {cn->gateway_id, id, at, cn->remote};
    ctl_table_row(t, row);
    cJSON *j = cJSON_CreateObject();
    ctl_json_str(j, "gateway_id", cn->gateway_id);
    ctl_json_num(j, "conn_id", (double)cn->conn_id);
    ctl_json_num(j, "opened_at", (double)cn->opened_at);
    ctl_json_str(j, "remote", cn->remote);
    cJSON_AddItemToArray(arr, j);
}

static ctl_rc user_connections(ctl *c, Chat__AdminRequest *req)
{
    ctl_result *res;
    int n = ctl_call_all(c, 1u << CTL_GATEWAY, req, &res);
    static const char *const head[] = {"GATEWAY", "CONN_ID", "OPENED_AT", "REMOTE", NULL};
    ctl_table *t = c->json ? NULL : ctl_table_new(head);
    cJSON *arr = cJSON_AddArrayToObject(c->doc, "connections");
    ctl_rc rc = CTL_OK;
    for (int i = 0; i < n; i++) {
        /* A gateway that does not know the user has no connection of it. */
        ctl_rc one = ctl_check(c, &res[i], true);
        const Chat__AdminUserInfo *u = one == CTL_OK ? res[i].reply->user : NULL;
        if (one != CTL_NOT_FOUND)
            rc = ctl_rc_merge(rc, one);
        for (size_t k = 0; u != NULL && k < u->n_conns; k++)
            user_conn_add(t, arr, u->conns[k]);
    }
    ctl_say(c, "connections:");
    ctl_table_print(t);
    ctl_results_free(res, n);
    return rc;
}

static ctl_rc user_run(ctl *c, const ctl_opts *o)
{
    const char *id = o->args[0];
    if (!chat_uuid_valid(id))
        return ctl_usage(c, "not a user id (UUID): %s", id);
    Chat__AdminRequest req;
    Chat__AdminUserReq body;
    user_req(&req, &body, id);
    ctl_result msg, pres;
    ctl_rc rc = ctl_ask_first(c, CTL_MESSAGE, &req, &msg, true);
    if (rc != CTL_OK) {
        if (rc == CTL_NOT_FOUND)
            ctl_fail(c, rc, "unknown user %s", id);
        ctl_result_clear(&msg);
        return rc;
    }
    cJSON_AddStringToObject(c->doc, "user_id", id);
    ctl_say(c, "user:         %s", id);
    ctl_rc prc = ctl_ask_first(c, CTL_PRESENCE, &req, &pres, true);
    user_presence(c, prc == CTL_OK ? pres.reply->user : NULL);
    /* Presence not knowing the user only means it never came online. */
    rc = prc == CTL_NOT_FOUND ? CTL_OK : prc;
    rc = ctl_rc_merge(rc, user_connections(c, &req));
    user_conversations(c, msg.reply->user);
    ctl_result_clear(&pres);
    ctl_result_clear(&msg);
    return rc;
}

/* ---- kick, ban, unban ---- */

static ctl_rc kick_run(ctl *c, const ctl_opts *o)
{
    const char *id = o->args[0];
    if (!chat_uuid_valid(id))
        return ctl_usage(c, "not a user id (UUID): %s", id);
    ctl_rc rc = ctl_user_exists(c, id);
    if (rc != CTL_OK)
        return rc;
    Chat__AdminRequest req;
    Chat__AdminKickReq body = CHAT__ADMIN_KICK_REQ__INIT;
    ctl_req_init(&req);
    body.user_id = (char *)id;
    /* The client is told why; an empty message would tell it nothing. */
    body.reason = (char *)(o->reason && o->reason[0] ? o->reason : CTL_KICK_REASON);
    req.body_case = CHAT__ADMIN_REQUEST__BODY_KICK;
    req.kick = &body;
    uint64_t closed;
    rc = ctl_gateways_affected(c, &req, &closed);
    cJSON_AddStringToObject(c->doc, "user_id", id);
    ctl_json_num(c->doc, "closed", (double)closed);
    ctl_say(c, "kicked %s: %" PRIu64 " connections closed", id, closed);
    return rc;
}

/* Stores the ban in presence; *until_ms becomes what presence answered. */
static ctl_rc ban_store(ctl *c, const char *id, int64_t *until_ms)
{
    Chat__AdminRequest req;
    Chat__AdminBanReq body = CHAT__ADMIN_BAN_REQ__INIT;
    ctl_req_init(&req);
    body.user_id = (char *)id;
    body.until_ms = *until_ms;
    req.body_case = CHAT__ADMIN_REQUEST__BODY_BAN;
    req.ban = &body;
    ctl_result res;
    ctl_rc rc = ctl_ask_first(c, CTL_PRESENCE, &req, &res, true);
    if (rc == CTL_NOT_FOUND)
        ctl_fail(c, rc, "unknown user %s", id);
    if (rc == CTL_OK && res.reply->ban != NULL)
        *until_ms = res.reply->ban->until_ms;
    ctl_result_clear(&res);
    return rc;
}

static ctl_rc ban_run(ctl *c, const ctl_opts *o)
{
    const char *id = o->args[0];
    int64_t dur = 0, until_ms = 0;
    if (!chat_uuid_valid(id))
        return ctl_usage(c, "not a user id (UUID): %s", id);
    if (o->for_text != NULL && !ctl_parse_duration(o->for_text, &dur))
        return ctl_usage(c, "--for: not a duration like 30s, 10m, 2h, 7d: %s", o->for_text);
    ctl_rc rc = ctl_user_exists(c, id);
    if (rc != CTL_OK)
        return rc;
    if (dur > 0)
        until_ms = chat_now_ms() + dur;
    if ((rc = ban_store(c, id, &until_ms)) != CTL_OK)
        return rc;
    Chat__AdminRequest req;
    Chat__AdminBanReq body = CHAT__ADMIN_BAN_REQ__INIT;
    ctl_req_init(&req);
    body.user_id = (char *)id;
    body.until_ms = until_ms;
    req.body_case = CHAT__ADMIN_REQUEST__BODY_BAN;
    req.ban = &body;
    uint64_t closed;
    rc = ctl_gateways_affected(c, &req, &closed);
    char until[48] = "until unbanned";
    if (until_ms > 0) {
        int n = snprintf(until, sizeof until, "until ");
        ctl_fmt_time(until_ms, until + n, sizeof until - (size_t)n);
    }
    cJSON_AddStringToObject(c->doc, "user_id", id);
    ctl_json_num(c->doc, "until_ms", (double)until_ms);
    ctl_json_str(c->doc, "until", until_ms > 0 ? until + 6 : NULL);
    ctl_json_num(c->doc, "closed", (double)closed);
    ctl_say(c, "banned %s %s: %" PRIu64 " connections closed", id, until, closed);
    return rc;
}

static ctl_rc unban_run(ctl *c, const ctl_opts *o)
{
    const char *id = o->args[0];
    if (!chat_uuid_valid(id))
        return ctl_usage(c, "not a user id (UUID): %s", id);
    Chat__AdminRequest req;
    Chat__AdminUnbanReq body = CHAT__ADMIN_UNBAN_REQ__INIT;
    ctl_req_init(&req);
    body.user_id = (char *)id;
    req.body_case = CHAT__ADMIN_REQUEST__BODY_UNBAN;
    req.unban = &body;
    ctl_result res;
    ctl_rc rc = ctl_ask_first(c, CTL_PRESENCE, &req, &res, true);
    ctl_result_clear(&res);
    if (rc == CTL_NOT_FOUND)
        return ctl_fail(c, rc, "unknown user %s", id);
    if (rc != CTL_OK)
        return rc;
    uint64_t ignored;
    rc = ctl_gateways_affected(c, &req, &ignored);
    cJSON_AddStringToObject(c->doc, "user_id", id);
    cJSON_AddBoolToObject(c->doc, "unbanned", true);
    ctl_say(c, "unbanned %s", id);
    return rc;
}

const ctl_command ctl_cmd_users = {
    .name = "users",
    .usage = "users",
    .summary = "users online, connections, per gateway",
    .help = "Presence (the first replica that answers) counts the users online; every\n"
            "gateway its connections and users.\n"
            "JSON: {\"online_users\",\"connections\" (sum over the gateways),\n"
            "  \"gateways\":[{\"gateway_id\",\"connections\",\"users\"}]}\n",
    .max_args = 0,
    .run = users_run,
};

const ctl_command ctl_cmd_user = {
    .name = "user",
    .usage = "user USER_ID",
    .summary = "one user: online, last seen, ban, connections, conversations",
    .help =
        "Message says whether the user exists (unknown: exit 4) and its conversations,\n"
        "presence whether it is online and banned, every gateway its connections.\n"
        "JSON: {\"user_id\",\"online\",\"last_seen\" (unix ms, 0 unknown),\"banned\",\n"
        "  \"banned_until\" (-1 not banned, 0 until unbanned, else unix ms),\n"
        "  \"connections\":[{\"gateway_id\",\"conn_id\",\"opened_at\" (unix ms),\"remote\"}],\n"
        "  \"conversations\":[{\"conversation_id\",\"kind\",\"room\"}]}\n"
        "(online, last_seen, banned, banned_until null when presence did not answer)\n",
    .min_args = 1,
    .max_args = 1,
    .run = user_run,
};

const ctl_command ctl_cmd_kick = {
    .name = "kick",
    .usage = "kick USER_ID [--reason TEXT]",
    .summary = "close every connection of the user (error \"kicked\", close 4403)",
    .help = "Checks with message that the user exists (unknown: exit 4), then every\n"
            "gateway closes the user's connections, sending TEXT as the error's message\n"
            "(default: \"" CTL_KICK_REASON "\").\n"
            "JSON: {\"user_id\",\"closed\"} (closed: connections closed, summed)\n",
    .flags = CTL_F_REASON,
    .min_args = 1,
    .max_args = 1,
    .run = kick_run,
};

const ctl_command ctl_cmd_ban = {
    .name = "ban",
    .usage = "ban USER_ID [--for DURATION]",
    .summary = "kick the user and refuse its connects until unbanned or DURATION ends",
    .help = "DURATION: a positive integer and s, m, h or d (30s, 10m, 2h, 7d); without\n"
            "--for the ban lasts until unbanned. Checks with message that the user exists\n"
            "(unknown: exit 4), stores the ban in presence, then every gateway applies it\n"
            "and closes the user's connections.\n"
            "JSON: {\"user_id\",\"until_ms\" (unix ms, 0 until unbanned),\n"
            "  \"until\" (ISO-8601 UTC, null until unbanned),\"closed\"}\n",
    .flags = CTL_F_FOR,
    .min_args = 1,
    .max_args = 1,
    .run = ban_run,
};

const ctl_command ctl_cmd_unban = {
    .name = "unban",
    .usage = "unban USER_ID",
    .summary = "lift the user's ban",
    .help = "Presence drops the ban, then every gateway.\n"
            "JSON: {\"user_id\",\"unbanned\":true}\n",
    .min_args = 1,
    .max_args = 1,
    .run = unban_run,
};
