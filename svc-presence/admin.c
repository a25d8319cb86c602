/* What svc-presence answers on the admin plane: who is online (users,
 * user) and the bans (ban, unban) that every gateway enforces. Runs on the
 * admin thread with a Redis connection of its own (shared with status's
 * load figure). */
#include "presence.h"

#include <inttypes.h>
#include <stdlib.h>

#include "chat/log.h"

uint64_t pres_admin_online(chat_redis_shared *rs)
{
    uint64_t users = 0, conns = 0;
    if (pres_online_count(chat_redis_shared_take(rs), &users, &conns) != 0)
        users = 0;
    chat_redis_shared_give(rs);
    return users;
}

static void admin_users(chat_redis *r, chat_admin_out *out)
{
    uint64_t users = 0, conns = 0;
    if (pres_online_count(r, &users, &conns) != 0) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "presence store unavailable");
        return;
    }
    out->reply.online_users = (uint32_t)users;
}

static void admin_user(chat_redis *r, const char *user, chat_admin_out *out)
{
    Chat__AdminUserInfo *u = chat_admin_alloc(out, sizeof *u);
    if (u == NULL) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    chat__admin_user_info__init(u);
    u->user_id = chat_admin_strdup(out, user);
    bool online = false;
    if (pres_status_of(r, user, &online, &u->last_seen) != 0 ||
        pres_ban_of(r, user, chat_now_ms(), &u->banned_until) != 0) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "presence store unavailable");
        return;
    }
    u->online = online;
    out->reply.user = u;
}

static void admin_ban(chat_redis *r, const Chat__AdminBanReq *q, chat_admin_out *out)
{
    int64_t now = chat_now_ms();
    if (q->until_ms < 0 || (q->until_ms > 0 && q->until_ms <= now)) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_BAD_REQUEST, "the ban ends in the past");
        return;
    }
    Chat__AdminBan *b = chat_admin_alloc(out, sizeof *b);
    if (b == NULL) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    if (pres_ban_set(r, q->user_id, q->until_ms, now) != 0) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "presence store unavailable");
        return;
    }
    chat__admin_ban__init(b);
    b->user_id = chat_admin_strdup(out, q->user_id);
    b->until_ms = q->until_ms;
    out->reply.ban = b;
}

static void admin_unban(chat_redis *r, const char *user, chat_admin_out *out)
{
    bool lifted = false;
    if (pres_ban_lift(r, user, chat_now_ms(), &lifted) != 0)
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "presence store unavailable");
    else
        out->reply.affected = lifted ? 1 : 0;
}

/* The user id of the requests that name one, or NULL. */
static const char *admin_user_id(const Chat__AdminRequest *req)
{
    switch (req->body_case) {
    case CHAT__ADMIN_REQUEST__BODY_USER: return req->user->user_id;
    case CHAT__ADMIN_REQUEST__BODY_BAN: return req->ban->user_id;
    case CHAT__ADMIN_REQUEST__BODY_UNBAN: return req->unban->user_id;
    default: return NULL;
    }
}

void pres_admin_handle(const Chat__AdminRequest *req, chat_admin_out *out, void *arg)
{
    chat_redis_shared *rs = arg;
    const char *user = admin_user_id(req);
    if (user != NULL && !chat_uuid_valid(user)) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_BAD_REQUEST, "user_id is not a uuid");
        return;
    }
    chat_redis *r = chat_redis_shared_take(rs);
    switch (req->body_case) {
    case CHAT__ADMIN_REQUEST__BODY_USERS: admin_users(r, out); break;
    case CHAT__ADMIN_REQUEST__BODY_USER: admin_user(r, user, out); break;
    case CHAT__ADMIN_REQUEST__BODY_BAN: admin_ban(r, req->ban, out); break;
    case CHAT__ADMIN_REQUEST__BODY_UNBAN: admin_unban(r, user, out); break;
    default:
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED, "not served by svc-presence");
        break;
    }
    chat_redis_shared_give(rs);
}
