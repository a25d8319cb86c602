/* Client frames: JSON text -> a validated gw_request. Pure (no I/O, no
 * state), so every rule of PROTOCOL.md is unit-tested in test_frames.c. */
#include "gw_wire.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_MAX_INT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact */

static const struct {
    const char *name;
    gw_req_type type;
} frame_types[] = {
    {"start_search", GW_REQ_START_SEARCH},
    {"stop_search", GW_REQ_STOP_SEARCH},
    {"end_chat", GW_REQ_END_CHAT},
    {"send", GW_REQ_SEND},
    {"receipt", GW_REQ_RECEIPT},
    {"presence", GW_REQ_PRESENCE},
    {"open_dm", GW_REQ_OPEN_DM},
    {"join_room", GW_REQ_JOIN_ROOM},
    {"leave_room", GW_REQ_LEAVE_ROOM},
    {"history", GW_REQ_HISTORY},
    {"typing", GW_REQ_TYPING},
};

const char *gw_req_type_name(gw_req_type type)
{
    for (size_t i = 0; i < sizeof frame_types / sizeof frame_types[0]; i++)
        if (frame_types[i].type == type)
            return frame_types[i].name;
    return "?";
}

static gw_request *frame_fail(gw_request *rq, gw_err err, const char *msg)
{
    rq->err = err;
    rq->err_msg = msg;
    return rq;
}

static const cJSON *frame_field(const gw_request *rq, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(rq->root, name);
}

/* A string of 1..GW_ID_MAX bytes (ids, client_msg_id). */
static bool frame_id(const gw_request *rq, const char *name, const char **out)
{
    const cJSON *v = frame_field(rq, name);
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return false;
    size_t n = strlen(v->valuestring);
    if (n == 0 || n > GW_ID_MAX)
        return false;
    *out = v->valuestring;
    return true;
}

/* An integral JSON number in [1, 2^53]. */
static bool frame_uint(const gw_request *rq, const char *name, uint64_t *out)
{
    const cJSON *v = frame_field(rq, name);
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 1 || d > FRAME_MAX_INT || floor(d) != d)
        return false;
    *out = (uint64_t)d;
    return true;
}

/* An optional integer in [min, max]: absent leaves *out alone; anything
 * else that is present must be such an integer. */
static bool frame_opt_uint(const gw_request *rq, const char *name, uint64_t min, uint64_t max,
                           uint64_t *out)
{
    if (frame_field(rq, name) == NULL)
        return true;
    uint64_t v;
    if (!frame_uint(rq, name, &v) || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static gw_request *frame_end_chat(gw_request *rq)
{
    if (!frame_id(rq, "conversation_id", &rq->conversation_id))
        return frame_fail(rq, GW_E_BAD_REQUEST,
                          "conversation_id must be a string of 1-64 bytes");
    return rq;
}

static gw_request *frame_send(gw_request *rq, long long max_text)
{
    if (!frame_id(rq, "conversation_id", &rq->conversation_id))
        return frame_fail(rq, GW_E_BAD_REQUEST,
                          "conversation_id must be a string of 1-64 bytes");
    if (!frame_id(rq, "client_msg_id", &rq->client_msg_id))
        return frame_fail(rq, GW_E_BAD_REQUEST, "client_msg_id must be a string of 1-64 bytes");
    const cJSON *t = frame_field(rq, "text");
    if (!cJSON_IsString(t) || t->valuestring == NULL)
        return frame_fail(rq, GW_E_BAD_REQUEST, "text must be a string");
    size_t bytes = strlen(t->valuestring);
    size_t points = gw_utf8_count(t->valuestring, bytes);
    if (points == 0)
        return frame_fail(rq, GW_E_BAD_REQUEST, "text is empty");
    if ((long long)points > max_text)
        return frame_fail(rq, GW_E_TOO_LONG, "text is over the limit");
    if (gw_utf8_only_space(t->valuestring, bytes))
        return frame_fail(rq, GW_E_BAD_REQUEST, "text is only white space");
    rq->text = t->valuestring;
    return rq;
}

static gw_request *frame_receipt(gw_request *rq)
{
    if (!frame_id(rq, "conversation_id", &rq->conversation_id))
        return frame_fail(rq, GW_E_BAD_REQUEST,
                          "conversation_id must be a string of 1-64 bytes");
    if (!frame_uint(rq, "seq", &rq->seq))
        return frame_fail(rq, GW_E_BAD_REQUEST, "seq must be an integer >= 1");
    const cJSON *st = frame_field(rq, "status");
    if (cJSON_IsString(st) && strcmp(st->valuestring, "delivered") == 0)
        rq->read = false;
    else if (cJSON_IsString(st) && strcmp(st->valuestring, "read") == 0)
        rq->read = true;
    else
        return frame_fail(rq, GW_E_BAD_REQUEST, "status must be \"delivered\" or \"read\"");
    return rq;
}

static gw_request *frame_presence(gw_request *rq)
{
    static const char *const bad = "user_ids must be an array of 0-100 user ids";
    const cJSON *ids = frame_field(rq, "user_ids");
    if (!cJSON_IsArray(ids))
        return frame_fail(rq, GW_E_BAD_REQUEST, bad);
    int n = cJSON_GetArraySize(ids);
    if (n < 0 || n > GW_MAX_PRESENCE_IDS)
        return frame_fail(rq, GW_E_BAD_REQUEST, bad);
    if (n > 0) {
        rq->user_ids = calloc((size_t)n, sizeof *rq->user_ids);
        if (rq->user_ids == NULL) {
            gw_request_free(rq);
            return NULL;
        }
    }
    const cJSON *id;
    cJSON_ArrayForEach(id, ids)
    {
        if (!cJSON_IsString(id) || !chat_uuid_valid(id->valuestring))
            return frame_fail(rq, GW_E_BAD_REQUEST, bad);
        rq->user_ids[rq->n_user_ids++] = id->valuestring;
    }
    return rq;
}

static gw_request *frame_open_dm(gw_request *rq)
{
    const cJSON *u = frame_field(rq, "user_id");
    if (!cJSON_IsString(u) || !chat_uuid_valid(u->valuestring))
        return frame_fail(rq, GW_E_BAD_REQUEST, "user_id must be a user id (UUID)");
    rq->user_id = u->valuestring;
    return rq;
}

static gw_request *frame_room(gw_request *rq)
{
    const cJSON *r = frame_field(rq, "room");
    if (!cJSON_IsString(r) || !chat_room_valid(r->valuestring))
        return frame_fail(rq, GW_E_BAD_REQUEST, "room must match [a-z0-9_-]{1,64}");
    rq->room = r->valuestring;
    return rq;
}

static gw_request *frame_history(gw_request *rq)
{
    if (!frame_id(rq, "conversation_id", &rq->conversation_id))
        return frame_fail(rq, GW_E_BAD_REQUEST,
                          "conversation_id must be a string of 1-64 bytes");
    if (!frame_opt_uint(rq, "before", 1, (uint64_t)FRAME_MAX_INT, &rq->before))
        return frame_fail(rq, GW_E_BAD_REQUEST, "before must be an integer >= 1");
    uint64_t limit = 0;
    if (!frame_opt_uint(rq, "limit", 1, GW_HISTORY_MAX, &limit))
        return frame_fail(rq, GW_E_BAD_REQUEST, "limit must be an integer from 1 to 100");
    rq->limit = (uint32_t)limit;
    return rq;
}

static gw_request *frame_typing(gw_request *rq)
{
    if (!frame_id(rq, "conversation_id", &rq->conversation_id))
        return frame_fail(rq, GW_E_BAD_REQUEST,
                          "conversation_id must be a string of 1-64 bytes");
    const cJSON *st = frame_field(rq, "state");
    if (cJSON_IsString(st) && strcmp(st->valuestring, "start") == 0)
        rq->start = true;
    else if (cJSON_IsString(st) && strcmp(st->valuestring, "stop") == 0)
        rq->start = false;
    else
        return frame_fail(rq, GW_E_BAD_REQUEST, "state must be \"start\" or \"stop\"");
    return rq;
}

/* JSON allows only these four between tokens. */
static bool frame_only_json_space(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return false;
    return true;
}

#define FRAME_STR_(x) #x
#define FRAME_STR(x) FRAME_STR_(x)

/* True when buf stays within GW_FRAME_MAX_DEPTH and GW_FRAME_MAX_VALUES,
 * counting brackets and commas outside strings (one pass, no allocation;
 * whether it is JSON at all is cJSON's business afterwards). */
static bool frame_shape_ok(const char *buf, size_t len)
{
    unsigned depth = 0, values = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (in_str) {
            if (ch == '\\')
                i++; /* the escaped character cannot end the string */
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"') {
            in_str = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > GW_FRAME_MAX_DEPTH || ++values > GW_FRAME_MAX_VALUES)
                return false;
        } else if (ch == ']' || ch == '}') {
            depth -= depth > 0;
        } else if (ch == ',' && ++values > GW_FRAME_MAX_VALUES) {
            return false;
        }
    }
    return true;
}

gw_request *gw_frame_parse(const char *buf, size_t len, long long max_text)
{
    gw_request *rq = calloc(1, sizeof *rq);
    if (rq == NULL)
        return NULL;
    /* A raw NUL is never valid JSON, and cJSON's strings end at one. */
    if (memchr(buf, '\0', len) != NULL)
        return frame_fail(rq, GW_E_BAD_JSON, gw_err_text(GW_E_BAD_JSON));
    if (!frame_shape_ok(buf, len))
        return frame_fail(
            rq, GW_E_BAD_REQUEST,
            "frame too complex: at most " FRAME_STR(
                GW_FRAME_MAX_DEPTH) " levels of nesting and " FRAME_STR(GW_FRAME_MAX_VALUES) " "
                                                                                             "v"
                                                                                             "a"
                                                                                             "l"
                                                                                             "u"
                                                                                             "e"
                                                                                             "s");
    const char *end = NULL;
    rq->root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (rq->root == NULL || end == NULL || !frame_only_json_space(end, buf + len) ||
        !cJSON_IsObject(rq->root))
        return frame_fail(rq, GW_E_BAD_JSON, gw_err_text(GW_E_BAD_JSON));

    const cJSON *req = frame_field(rq, "req");
    bool req_bad = false;
    if (req != NULL) {
        if (cJSON_IsString(req) && strlen(req->valuestring) <= GW_ID_MAX)
            rq->req = req->valuestring;
        else
            req_bad = true;
    }

    const cJSON *type = frame_field(rq, "type");
    size_t i = 0, n = sizeof frame_types / sizeof frame_types[0];
    if (cJSON_IsString(type))
        while (i < n && strcmp(frame_types[i].name, type->valuestring) != 0)
            i++;
    if (!cJSON_IsString(type) || i == n)
        return frame_fail(rq, GW_E_UNKNOWN_TYPE, gw_err_text(GW_E_UNKNOWN_TYPE));
    rq->type = frame_types[i].type;
    if (req_bad)
        return frame_fail(rq, GW_E_BAD_REQUEST, "req must be a string of at most 64 bytes");

    switch (rq->type) {
    case GW_REQ_START_SEARCH:
    case GW_REQ_STOP_SEARCH: return rq;
    case GW_REQ_END_CHAT: return frame_end_chat(rq);
    case GW_REQ_SEND: return frame_send(rq, max_text);
    case GW_REQ_RECEIPT: return frame_receipt(rq);
    case GW_REQ_PRESENCE: return frame_presence(rq);
    case GW_REQ_OPEN_DM: return frame_open_dm(rq);
    case GW_REQ_JOIN_ROOM:
    case GW_REQ_LEAVE_ROOM: return frame_room(rq);
    case GW_REQ_HISTORY: return frame_history(rq);
    case GW_REQ_TYPING: return frame_typing(rq);
    }
    return frame_fail(rq, GW_E_UNKNOWN_TYPE, gw_err_text(GW_E_UNKNOWN_TYPE));
}

void gw_request_free(gw_request *rq)
{
    if (rq == NULL)
        return;
    free(rq->user_ids);
    cJSON_Delete(rq->root);
    free(rq);
}
