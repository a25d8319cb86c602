/* Server frames: JSON text built with cJSON (which escapes every string),
 * fields in the order PROTOCOL.md lists them. Integers are written as raw
 * decimal text so ts and seq never turn into exponent notation. */
#include "gw_wire.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

gw_frame *gw_frame_new(const char *json, size_t len)
{
    gw_frame *f = malloc(sizeof *f + GW_FRAME_PRE + len + 1);
    if (f == NULL)
        return NULL;
    f->refs = 1;
    f->len = len;
    f->seq = 0;
    f->conv[0] = '\0';
    memcpy(gw_frame_data(f), json, len);
    gw_frame_data(f)[len] = '\0';
    return f;
}

gw_frame *gw_frame_ref(gw_frame *f)
{
    if (f != NULL)
        f->refs++;
    return f;
}

void gw_frame_unref(gw_frame *f)
{
    if (f != NULL && --f->refs == 0)
        free(f);
}

/* Prints and frees obj (NULL is fine). */
static gw_frame *render_finish(cJSON *obj)
{
    if (obj == NULL)
        return NULL;
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (text == NULL)
        return NULL;
    gw_frame *f = gw_frame_new(text, strlen(text));
    free(text);
    return f;
}

/* cJSON_Add* return NULL when out of memory; these keep going and let the
 * caller notice through `ok`. */
static void render_str(cJSON *o, bool *ok, const char *name, const char *v)
{
    if (cJSON_AddStringToObject(o, name, v != NULL ? v : "") == NULL)
        *ok = false;
}

static void render_int(cJSON *o, bool *ok, const char *name, int64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%" PRId64, v);
    if (cJSON_AddRawToObject(o, name, num) == NULL)
        *ok = false;
}

static cJSON *render_begin(const char *type, bool *ok)
{
    *ok = true;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        *ok = false;
    else
        render_str(o, ok, "type", type);
    return o;
}

/* Adds req (when not NULL) and prints o; NULL when anything failed. */
static gw_frame *render_end(cJSON *o, bool ok, const char *req)
{
    if (o != NULL && req != NULL)
        render_str(o, &ok, "req", req);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return render_finish(o);
}

gw_frame *gw_render_connected(const char *user_id, const char *token, bool resumed)
{
    bool ok;
    cJSON *o = render_begin("connected", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "user_id", user_id);
    render_str(o, &ok, "session", token);
    if (cJSON_AddBoolToObject(o, "resumed", resumed) == NULL)
        ok = false;
    return render_end(o, ok, NULL);
}

gw_frame *gw_render_error(gw_err code, const char *message, const char *req,
                          int64_t retry_after_ms)
{
    bool ok;
    cJSON *o = render_begin("error", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "code", gw_err_name(code));
    render_str(o, &ok, "message",
               message != NULL && message[0] != '\0' ? message : gw_err_text(code));
    if (retry_after_ms >= 0)
        render_int(o, &ok, "retry_after_ms", retry_after_ms);
    return render_end(o, ok, req);
}

gw_frame *gw_render_simple(const char *type, const char *req)
{
    bool ok;
    cJSON *o = render_begin(type, &ok);
    return o == NULL ? NULL : render_end(o, ok, req);
}

gw_frame *gw_render_matched(const char *conversation_id)
{
    bool ok;
    cJSON *o = render_begin("matched", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "conversation_id", conversation_id);
    render_str(o, &ok, "kind", "random");
    return render_end(o, ok, NULL);
}

gw_frame *gw_render_chat_ended(const char *conversation_id, const char *by)
{
    bool ok;
    cJSON *o = render_begin("chat_ended", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "conversation_id", conversation_id);
    render_str(o, &ok, "by", by);
    return render_end(o, ok, NULL);
}

gw_frame *gw_render_partner_disconnected(const char *conversation_id)
{
    bool ok;
    cJSON *o = render_begin("partner_disconnected", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "conversation_id", conversation_id);
    return render_end(o, ok, NULL);
}

gw_frame *gw_render_ack(const char *client_msg_id, const Chat__StoredMessage *m,
                        const char *req)
{
    bool ok;
    cJSON *o = render_begin("ack", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "client_msg_id", client_msg_id);
    render_str(o, &ok, "conversation_id", m->conversation_id);
    render_str(o, &ok, "msg_id", m->msg_id);
    render_int(o, &ok, "seq", (int64_t)m->seq);
    render_int(o, &ok, "ts", m->ts);
    return render_end(o, ok, req);
}

gw_frame *gw_render_message(const Chat__StoredMessage *m)
{
    bool ok;
    cJSON *o = render_begin("message", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "conversation_id", m->conversation_id);
    render_str(o, &ok, "msg_id", m->msg_id);
    render_int(o, &ok, "seq", (int64_t)m->seq);
    render_str(o, &ok, "from", m->sender);
    render_str(o, &ok, "text", m->text);
    render_int(o, &ok, "ts", m->ts);
    gw_frame *f = render_end(o, ok, NULL);
    if (f != NULL) {
        /* Remembered so a live copy can be skipped after a replay. */
        f->seq = m->seq;
        snprintf(f->conv, sizeof f->conv, "%s", m->conversation_id ? m->conversation_id : "");
    }
    return f;
}

gw_frame *gw_render_receipt(const char *conversation_id, uint64_t seq, bool read,
                            const char *user_id)
{
    bool ok;
    cJSON *o = render_begin("receipt", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "conversation_id", conversation_id);
    render_int(o, &ok, "seq", (int64_t)seq);
    render_str(o, &ok, "status", read ? "read" : "delivered");
    render_str(o, &ok, "user_id", user_id);
    return render_end(o, ok, NULL);
}

static const Chat__UserStatus *render_find_status(const char *id, Chat__UserStatus *const *st,
                                                  size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (st[i] != NULL && st[i]->user_id != NULL && strcmp(st[i]->user_id, id) == 0)
            return st[i];
    return NULL;
}

gw_frame *gw_render_presence(const char *const *ids, size_t n_ids,
                             Chat__UserStatus *const *statuses, size_t n_statuses,
                             const char *req)
{
    bool ok;
    cJSON *o = render_begin("presence", &ok);
    if (o == NULL)
        return NULL;
    cJSON *arr = cJSON_AddArrayToObject(o, "statuses");
    if (arr == NULL)
        ok = false;
    for (size_t i = 0; ok && i < n_ids; i++) {
        const Chat__UserStatus *st = render_find_status(ids[i], statuses, n_statuses);
        cJSON *e = cJSON_CreateObject();
        if (e == NULL || !cJSON_AddItemToArray(arr, e)) {
            cJSON_Delete(e);
            ok = false;
            break;
        }
        render_str(e, &ok, "user_id", ids[i]);
        render_str(e, &ok, "status", st != NULL && st->online ? "online" : "offline");
        if (st != NULL && st->last_seen > 0)
            render_int(e, &ok, "last_seen", st->last_seen);
        else if (cJSON_AddNullToObject(e, "last_seen") == NULL)
            ok = false;
    }
    return render_end(o, ok, req);
}

gw_frame *gw_render_conversation_dm(const char *conversation_id, const char *const members[2],
                                    const char *req)
{
    bool ok;
    cJSON *o = render_begin("conversation", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "conversation_id", conversation_id);
    render_str(o, &ok, "kind", "dm");
    cJSON *arr = cJSON_AddArrayToObject(o, "members");
    for (int i = 0; ok && arr != NULL && i < 2; i++) {
        cJSON *m = cJSON_CreateString(members[i] != NULL ? members[i] : "");
        if (m == NULL || !cJSON_AddItemToArray(arr, m)) {
            cJSON_Delete(m);
            ok = false;
        }
    }
    if (arr == NULL)
        ok = false;
    return render_end(o, ok, req);
}

gw_frame *gw_render_conversation_room(const char *conversation_id, const char *room,
                                      const char *req)
{
    bool ok;
    cJSON *o = render_begin("conversation", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "conversation_id", conversation_id);
    render_str(o, &ok, "kind", "room");
    render_str(o, &ok, "room", room);
    return render_end(o, ok, req);
}

gw_frame *gw_render_left(const char *conversation_id, const char *req)
{
    bool ok;
    cJSON *o = render_begin("left", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "conversation_id", conversation_id);
    return render_end(o, ok, req);
}

/* The "messages" array and "next_before" of a history page. */
static void render_page(cJSON *o, bool *ok, Chat__StoredMessage *const *msgs, size_t n,
                        uint64_t next_before)
{
    cJSON *arr = cJSON_AddArrayToObject(o, "messages");
    if (arr == NULL) {
        *ok = false;
        return;
    }
    for (size_t i = 0; *ok && i < n; i++) {
        const Chat__StoredMessage *m = msgs[i];
        cJSON *e = cJSON_CreateObject();
        if (e == NULL || !cJSON_AddItemToArray(arr, e)) {
            cJSON_Delete(e);
            *ok = false;
            break;
        }
        render_str(e, ok, "msg_id", m->msg_id);
        render_int(e, ok, "seq", (int64_t)m->seq);
        render_str(e, ok, "from", m->sender);
        render_str(e, ok, "text", m->text);
        render_int(e, ok, "ts", m->ts);
    }
    if (next_before > 0)
        render_int(o, ok, "next_before", (int64_t)next_before);
    else if (cJSON_AddNullToObject(o, "next_before") == NULL)
        *ok = false;
}

gw_frame *gw_render_history(const char *conversation_id, Chat__StoredMessage *const *msgs,
                            size_t n, uint64_t next_before, const char *req)
{
    bool ok;
    cJSON *o = render_begin("history", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "conversation_id", conversation_id);
    render_page(o, &ok, msgs, n, next_before);
    return render_end(o, ok, req);
}

gw_frame *gw_render_history_rest(Chat__StoredMessage *const *msgs, size_t n,
                                 uint64_t next_before)
{
    bool ok = true;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    render_page(o, &ok, msgs, n, next_before);
    return render_end(o, ok, NULL);
}

gw_frame *gw_render_rest_error(gw_err code, int64_t retry_after_ms)
{
    bool ok = true;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "error", gw_err_name(code));
    if (retry_after_ms >= 0)
        render_int(o, &ok, "retry_after_ms", retry_after_ms);
    return render_end(o, ok, NULL);
}

gw_frame *gw_render_typing(const char *conversation_id, const char *user_id, bool start)
{
    bool ok;
    cJSON *o = render_begin("typing", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "conversation_id", conversation_id);
    render_str(o, &ok, "user_id", user_id);
    render_str(o, &ok, "state", start ? "start" : "stop");
    return render_end(o, ok, NULL);
}

gw_frame *gw_render_announcement(const char *text)
{
    bool ok;
    cJSON *o = render_begin("announcement", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "text", text);
    return render_end(o, ok, NULL);
}

gw_frame *gw_render_presence_push(const char *user_id, bool online, int64_t last_seen)
{
    bool ok;
    cJSON *o = render_begin("presence", &ok);
    if (o == NULL)
        return NULL;
    render_str(o, &ok, "user_id", user_id);
    render_str(o, &ok, "status", online ? "online" : "offline");
    if (last_seen > 0)
        render_int(o, &ok, "last_seen", last_seen);
    else if (cJSON_AddNullToObject(o, "last_seen") == NULL)
        ok = false;
    return render_end(o, ok, NULL);
}
