/* chatctl's requests to svc-message (proto/admin.proto): a user's
 * conversations, one conversation, one room, and the retention setting and
 * purger. They run on the skeleton's admin thread, one at a time, on a
 * PostgreSQL connection of their own (opened at the first request,
 * reconnected after a failure by msg_pg), so an operator's query never
 * takes a reader from the users. */
#include "message.h"

#include "chat/log.h"
#include "chat/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define ADM_CONVS_MAX 1000    /* conversations listed for one user */
#define ADM_MEMBERS_MAX 10000 /* members listed for one conversation */
#define ADM_DAYS_MAX 36500    /* a retention beyond a century is a typo */

struct msg_admin {
    msg_pg pg; /* the admin thread's */
};

msg_admin *msg_admin_new(const msg_config *cfg)
{
    msg_admin *a = calloc(1, sizeof *a);
    if (a != NULL)
        msg_pg_init(&a->pg, cfg->pg_dsn, (int)cfg->pg_timeout_ms);
    return a;
}

void msg_admin_free(msg_admin *a)
{
    if (a == NULL)
        return;
    msg_pg_close(&a->pg);
    free(a);
}

/* The one place an admin query fails: the result with rows, or NULL after
 * setting the reply's error. */
static PGresult *adm_query(msg_admin *a, chat_admin_out *o, const char *stmt, int n,
                           const char *const *v)
{
    PGresult *res = msg_pg_query(&a->pg, stmt, n, v);
    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK)
        return res;
    const char *m = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "%s",
                    m != NULL ? m : "storage unavailable");
    PQclear(res);
    return NULL;
}

/* Column c of row r, copied into the reply's arena. */
static char *adm_str(chat_admin_out *o, const PGresult *res, int r, int c)
{
    return chat_admin_strdup(o, PQgetvalue(res, r, c));
}

static void adm_user(msg_admin *a, const Chat__AdminUserReq *q, chat_admin_out *o)
{
    if (!chat_uuid_valid(q->user_id)) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_NOT_FOUND, "unknown user %s", q->user_id);
        return;
    }
    char cap[16];
    snprintf(cap, sizeof cap, "%d", ADM_CONVS_MAX);
    const char *v[] = {q->user_id, cap};
    PGresult *known = adm_query(a, o, MSG_SQL_ADM_USER, 1, v);
    if (known == NULL)
        return;
    bool exists = PQntuples(known) == 1 && PQgetvalue(known, 0, 0)[0] == 't';
    PQclear(known);
    if (!exists) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_NOT_FOUND, "unknown user %s", q->user_id);
        return;
    }
    PGresult *res = adm_query(a, o, MSG_SQL_ADM_USER_CONVS, 2, v);
    if (res == NULL)
        return;
    int n = PQntuples(res);
    Chat__AdminUserInfo *u = chat_admin_alloc(o, sizeof *u);
    Chat__AdminConvRef *refs = chat_admin_alloc(o, (size_t)(n + 1) * sizeof *refs);
    Chat__AdminConvRef **ptrs = chat_admin_alloc(o, (size_t)(n + 1) * sizeof *ptrs);
    if (u == NULL || refs == NULL || ptrs == NULL) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        PQclear(res);
        return;
    }
    chat__admin_user_info__init(u);
    u->user_id = chat_admin_strdup(o, q->user_id);
    for (int i = 0; i < n; i++) {
        chat__admin_conv_ref__init(&refs[i]);
        refs[i].conversation_id = adm_str(o, res, i, 0);
        refs[i].kind = (char *)msg_kind_name(atoi(PQgetvalue(res, i, 1)));
        refs[i].room = adm_str(o, res, i, 2);
        ptrs[i] = &refs[i];
    }
    u->n_conversations = (size_t)n;
    u->conversations = ptrs;
    o->reply.user = u;
    PQclear(res);
}

/* The reply from one row of ADM_CONV_COLS (schema.c), with the members
 * when asked. */
static void adm_conv_reply(msg_admin *a, chat_admin_out *o, const PGresult *row,
                           bool with_members)
{
    Chat__AdminConversationInfo *ci = chat_admin_alloc(o, sizeof *ci);
    if (ci == NULL) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    chat__admin_conversation_info__init(ci);
    ci->conversation_id = adm_str(o, row, 0, 0);
    ci->kind = (char *)msg_kind_name(atoi(PQgetvalue(row, 0, 1)));
    ci->room = adm_str(o, row, 0, 2);
    ci->last_seq = strtoull(PQgetvalue(row, 0, 3), NULL, 10);
    ci->closed = PQgetvalue(row, 0, 4)[0] == 't';
    ci->created_at = strtoll(PQgetvalue(row, 0, 5), NULL, 10);
    ci->member_count = (uint32_t)strtoul(PQgetvalue(row, 0, 6), NULL, 10);
    o->reply.conversation = ci;
    if (!with_members)
        return;
    char cap[16];
    snprintf(cap, sizeof cap, "%d", ADM_MEMBERS_MAX);
    const char *v[] = {ci->conversation_id, cap};
    PGresult *res = adm_query(a, o, MSG_SQL_ADM_MEMBERS, 2, v);
    if (res == NULL) {
        o->reply.conversation = NULL;
        return;
    }
    int n = PQntuples(res);
    char **m = chat_admin_alloc(o, (size_t)(n + 1) * sizeof *m);
    if (m == NULL) {
        o->reply.conversation = NULL;
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
    } else {
        for (int i = 0; i < n; i++)
            m[i] = adm_str(o, res, i, 0);
        ci->n_members = (size_t)n;
        ci->members = m;
    }
    PQclear(res);
}

/* A conversation by id or a room by name (stmt), NOT_FOUND without a row. */
static void adm_conv_by(msg_admin *a, chat_admin_out *o, const char *stmt, const char *key,
                        bool with_members, const char *what)
{
    const char *v[] = {key};
    PGresult *res = adm_query(a, o, stmt, 1, v);
    if (res == NULL)
        return;
    if (PQntuples(res) != 1)
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_NOT_FOUND, "no %s %s", what, key);
    else
        adm_conv_reply(a, o, res, with_members);
    PQclear(res);
}

static void adm_conversation(msg_admin *a, const Chat__AdminConversationReq *q,
                             chat_admin_out *o)
{
    if (!chat_uuid_valid(q->conversation_id)) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_NOT_FOUND, "no conversation %s",
                        q->conversation_id);
        return;
    }
    adm_conv_by(a, o, MSG_SQL_ADM_CONV, q->conversation_id, true, "conversation");
}

static void adm_room(msg_admin *a, const Chat__AdminRoomReq *q, chat_admin_out *o)
{
    if (!chat_room_valid(q->name)) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_BAD_REQUEST,
                        "room names are [a-z0-9_-]{1,%d}", CHAT_ROOM_MAX);
        return;
    }
    adm_conv_by(a, o, MSG_SQL_ADM_ROOM, q->name, q->with_members, "room");
}

static void adm_retention(msg_service *svc, const Chat__AdminRetentionReq *q, chat_admin_out *o)
{
    msg_admin *a = svc->admin;
    PGresult *res;
    if (q->op == CHAT__RETENTION_OP__RETENTION_SET) {
        if (q->days > ADM_DAYS_MAX) {
            chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_BAD_REQUEST, "days: 0 to %d",
                            ADM_DAYS_MAX);
            return;
        }
        char days[16];
        snprintf(days, sizeof days, "%u", q->days);
        const char *v[] = {days};
        res = adm_query(a, o, MSG_SQL_RET_SET, 1, v);
        if (res != NULL)
            chat_info("retention_set", "days=%u", q->days);
    } else {
        res = adm_query(a, o, MSG_SQL_RET_GET, 0, NULL);
    }
    if (res == NULL)
        return;
    Chat__AdminRetentionInfo *ri = chat_admin_alloc(o, sizeof *ri);
    if (ri == NULL) {
        PQclear(res);
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    chat__admin_retention_info__init(ri);
    ri->days = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    msg_retention_state st;
    if (q->op == CHAT__RETENTION_OP__RETENTION_RUN) {
        msg_retention_request(svc->retention, &st);
        chat_info("retention_run_asked", "days=%u runs=%" PRIu64, ri->days, st.runs);
    } else {
        msg_retention_get(svc->retention, &st);
    }
    ri->running = st.running;
    ri->deleted = st.deleted;
    ri->last_run_at = st.last_run_at;
    ri->runs = st.runs;
    o->reply.retention = ri;
}

void msg_admin_handle(const Chat__AdminRequest *req, chat_admin_out *out, void *arg)
{
    msg_service *svc = arg;
    switch (req->body_case) {
    case CHAT__ADMIN_REQUEST__BODY_USER: adm_user(svc->admin, req->user, out); break;
    case CHAT__ADMIN_REQUEST__BODY_CONVERSATION:
        adm_conversation(svc->admin, req->conversation, out);
        break;
    case CHAT__ADMIN_REQUEST__BODY_ROOM: adm_room(svc->admin, req->room, out); break;
    case CHAT__ADMIN_REQUEST__BODY_RETENTION: adm_retention(svc, req->retention, out); break;
    default:
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED, "not served by svc-message");
        break;
    }
}
