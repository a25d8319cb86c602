/* The operators' requests a gateway answers (proto/admin.proto), run on the
 * lws thread: who is connected here, kick, ban and unban, announcements,
 * drain. Each is a bounded pass over this gateway's connections; the
 * reply goes into the admin thread's chat_admin_out (admin.c waits). */
#include "gateway.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "chat/admin.h"
#include "chat/log.h"

#define OPS_REASON_MAX 200 /* code points of a kick's reason */

enum { OPS_USERS, OPS_USER, OPS_KICK, OPS_BAN, OPS_UNBAN, OPS_ANNOUNCE, OPS_DRAIN, OPS_OTHER };

/* A user id of a request, lower-cased as the gateway keeps them. */
static bool ops_user_id(const char *in, char out[CHAT_UUID_LEN + 1])
{
    size_t n = in != NULL ? strlen(in) : 0;
    if (n != CHAT_UUID_LEN)
        return false;
    for (size_t i = 0; i <= n; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    return chat_uuid_valid(out);
}

static bool ops_bad_user(chat_admin_out *o, const char *in, char out[CHAT_UUID_LEN + 1])
{
    if (ops_user_id(in, out))
        return false;
    chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_BAD_REQUEST, "user_id is not a UUID");
    return true;
}

/* Text an operator sends to clients: valid UTF-8 (protobuf does not check
 * it, and a client would drop the connection on invalid text), at most max
 * code points. */
static bool ops_text_ok(const char *text, size_t max)
{
    size_t n = strlen(text);
    return gw_utf8_valid(text, n) && gw_utf8_count(text, n) <= max;
}

/* The client's address (IP:port) from its socket; "" when unknown. */
static void ops_remote(gw_conn *c, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char ip[INET6_ADDRSTRLEN];
    out[0] = '\0';
    int fd = lws_get_socket_fd(c->wsi);
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        if (inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip) != NULL)
            snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        if (inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip) != NULL)
            snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    }
}

static void ops_users(gw_server *s, chat_admin_out *o)
{
    Chat__AdminGatewayUsers *u = chat_admin_alloc(o, sizeof *u);
    if (u == NULL) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    chat__admin_gateway_users__init(u);
    u->gateway_id = (char *)s->gateway_id;
    u->connections = s->n_conns;
    u->users = HASH_COUNT(s->users);
    o->reply.gateway_users = u;
}

static Chat__AdminConn *ops_conn(gw_server *s, chat_admin_out *o, gw_conn *c)
{
    Chat__AdminConn *ac = chat_admin_alloc(o, sizeof *ac);
    char remote[INET6_ADDRSTRLEN + 10];
    if (ac == NULL)
        return NULL;
    chat__admin_conn__init(ac);
    ac->gateway_id = (char *)s->gateway_id;
    ac->conn_id = c->id;
    ac->opened_at = c->opened_ms;
    ops_remote(c, remote, sizeof remote);
    ac->remote = chat_admin_strdup(o, remote);
    return ac;
}

static void ops_user(gw_server *s, const Chat__AdminUserReq *r, chat_admin_out *o)
{
    char id[CHAT_UUID_LEN + 1];
    if (ops_bad_user(o, r->user_id, id))
        return;
    gw_user *u = gw_user_find(s, id);
    size_t n = 0;
    for (gw_conn *c = u != NULL ? u->conns : NULL; c != NULL; c = c->unext)
        n++;
    Chat__AdminUserInfo *info = chat_admin_alloc(o, sizeof *info);
    Chat__AdminConn **conns = chat_admin_alloc(o, (n > 0 ? n : 1) * sizeof *conns);
    if (info == NULL || conns == NULL) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    chat__admin_user_info__init(info);
    info->user_id = chat_admin_strdup(o, id);
    info->online = n > 0;
    info->banned_until = gw_bans_until(s, id);
    info->conns = conns;
    for (gw_conn *c = u != NULL ? u->conns : NULL; c != NULL; c = c->unext) {
        if ((conns[info->n_conns] = ops_conn(s, o, c)) == NULL) {
            chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
            return;
        }
        info->n_conns++;
    }
    o->reply.user = info;
}

/* The kicked frame, then 4403 once what is queued is out. Returns the
 * connections closed. */
static unsigned ops_kick_user(gw_server *s, const char *id, const char *reason)
{
    gw_user *u = gw_user_find(s, id);
    unsigned n = 0;
    for (gw_conn *c = u != NULL ? u->conns : NULL; c != NULL; c = c->unext) {
        if (c->closing)
            continue;
        gw_conn_send_error(s, c, GW_E_KICKED, reason, NULL);
        gw_conn_close(s, c, 4403);
        n++;
    }
    s->m.kicked += n;
    if (n > 0)
        chat_info("kicked", "user=%s connections=%u", id, n);
    return n;
}

static void ops_kick(gw_server *s, const Chat__AdminKickReq *r, chat_admin_out *o)
{
    char id[CHAT_UUID_LEN + 1];
    if (ops_bad_user(o, r->user_id, id))
        return;
    if (!ops_text_ok(r->reason, OPS_REASON_MAX)) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_BAD_REQUEST,
                        "reason must be valid UTF-8 of at most %d code points", OPS_REASON_MAX);
        return;
    }
    /* An empty reason: the code's own text ("removed by an operator"). */
    o->reply.affected = ops_kick_user(s, id, r->reason);
}

static void ops_ban(gw_server *s, const Chat__AdminBanReq *r, chat_admin_out *o)
{
    char id[CHAT_UUID_LEN + 1];
    if (ops_bad_user(o, r->user_id, id))
        return;
    if (r->until_ms < 0) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_BAD_REQUEST, "until_ms must be >= 0");
        return;
    }
    if (r->until_ms > 0 && r->until_ms <= chat_now_ms()) {
        /* Over already: nothing to refuse, nobody to kick. */
        gw_bans_lift(s, id);
        return;
    }
    if (gw_bans_set(s, id, r->until_ms) != 0) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    chat_info("banned", "user=%s until_ms=%" PRId64, id, r->until_ms);
    o->reply.affected = ops_kick_user(s, id, "banned");
}

static void ops_unban(gw_server *s, const Chat__AdminUnbanReq *r, chat_admin_out *o)
{
    char id[CHAT_UUID_LEN + 1];
    if (ops_bad_user(o, r->user_id, id))
        return;
    gw_bans_lift(s, id);
    chat_info("unbanned", "user=%s", id);
}

/* Queues f on c once per request (admin_mark); counts it. */
static unsigned ops_announce_to(gw_server *s, gw_conn *c, gw_frame *f)
{
    /* Not before `connected` (the first frame, always), not after a close. */
    if (c->closing || c->registering || c->user == NULL || c->admin_mark == s->admin_mark)
        return 0;
    c->admin_mark = s->admin_mark;
    gw_conn_push(s, c, gw_frame_ref(f));
    return 1;
}

static unsigned ops_announce_users(gw_server *s, const Chat__AdminAnnounceReq *r, gw_frame *f)
{
    unsigned n = 0;
    char id[CHAT_UUID_LEN + 1];
    for (size_t i = 0; i < r->n_only_users; i++) {
        gw_user *u = ops_user_id(r->only_users[i], id) ? gw_user_find(s, id) : NULL;
        for (gw_conn *c = u != NULL ? u->conns : NULL; c != NULL; c = c->unext)
            n += ops_announce_to(s, c, f);
    }
    return n;
}

static void ops_announce(gw_server *s, const Chat__AdminAnnounceReq *r, chat_admin_out *o)
{
    size_t len = strlen(r->text);
    if (len == 0 || !ops_text_ok(r->text, (size_t)s->cfg->max_text) ||
        gw_utf8_only_space(r->text, len)) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_BAD_REQUEST,
                        "text must be valid UTF-8, not blank, at most %lld code points "
                        "(CHAT_MAX_TEXT)",
                        s->cfg->max_text);
        return;
    }
    gw_frame *f = gw_render_announcement(r->text);
    if (f == NULL) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    s->admin_mark++;
    unsigned n = 0;
    if (r->filtered)
        n = ops_announce_users(s, r, f);
    else
        for (gw_conn *c = s->conns; c != NULL; c = c->hh.next)
            n += ops_announce_to(s, c, f);
    gw_frame_unref(f);
    s->m.announced += n;
    chat_info("announced", "connections=%u filtered=%d", n, r->filtered);
    o->reply.affected = n;
}

static void ops_drain(gw_server *s, const Chat__AdminDrainReq *r, chat_admin_out *o)
{
    Chat__AdminDrainInfo *d = chat_admin_alloc(o, sizeof *d);
    if (d == NULL) {
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    if (r->start)
        gw_drain_start(s, r->over_ms);
    chat__admin_drain_info__init(d);
    gw_drain_info(s, d);
    o->reply.drain = d;
}

static int ops_type(Chat__AdminRequest__BodyCase body)
{
    switch (body) {
    case CHAT__ADMIN_REQUEST__BODY_USERS: return OPS_USERS;
    case CHAT__ADMIN_REQUEST__BODY_USER: return OPS_USER;
    case CHAT__ADMIN_REQUEST__BODY_KICK: return OPS_KICK;
    case CHAT__ADMIN_REQUEST__BODY_BAN: return OPS_BAN;
    case CHAT__ADMIN_REQUEST__BODY_UNBAN: return OPS_UNBAN;
    case CHAT__ADMIN_REQUEST__BODY_ANNOUNCE: return OPS_ANNOUNCE;
    case CHAT__ADMIN_REQUEST__BODY_DRAIN: return OPS_DRAIN;
    default: return OPS_OTHER;
    }
}

void gw_ops_handle(gw_server *s, const Chat__AdminRequest *req, chat_admin_out *o)
{
    s->m.admin_requests[ops_type(req->body_case)]++;
    switch (req->body_case) {
    case CHAT__ADMIN_REQUEST__BODY_USERS: ops_users(s, o); return;
    case CHAT__ADMIN_REQUEST__BODY_USER: ops_user(s, req->user, o); return;
    case CHAT__ADMIN_REQUEST__BODY_KICK: ops_kick(s, req->kick, o); return;
    case CHAT__ADMIN_REQUEST__BODY_BAN: ops_ban(s, req->ban, o); return;
    case CHAT__ADMIN_REQUEST__BODY_UNBAN: ops_unban(s, req->unban, o); return;
    case CHAT__ADMIN_REQUEST__BODY_ANNOUNCE: ops_announce(s, req->announce, o); return;
    case CHAT__ADMIN_REQUEST__BODY_DRAIN: ops_drain(s, req->drain, o); return;
    default:
        chat_admin_fail(o, CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED, "not served by a gateway");
        return;
    }
}

const char *gw_ops_type_name(int type)
{
    static const char *const names[GW_ADMIN_TYPES] = {"users", "user",     "kick",  "ban",
                                                      "unban", "announce", "drain", "other"};
    return type >= 0 && type < GW_ADMIN_TYPES ? names[type] : "other";
}
