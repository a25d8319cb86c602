/* Pure rules of the message service: request validation, routing of sends
 * to writers, status mapping and the small text formats we hand to
 * PostgreSQL. No I/O here, so everything is unit tested (test_rules.c). */
#include "message.h"

#include "chat/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

bool msg_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t need;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return false; /* continuation byte first, or 0xC0/0xC1/0xF5.. */
        }
        if (len - i - 1 < need)
            return false;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        /* Overlong forms, UTF-16 surrogates and values past U+10FFFF are
         * rejected by PostgreSQL; refuse them here, before the batch. */
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += need + 1;
    }
    return true;
}

static bool str_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static Chat__Code check_create(const Chat__CreateConversationReq *r, const char **detail)
{
    if (r->n_member_ids > MSG_MAX_MEMBERS) {
        *detail = "too many members";
        return CHAT__CODE__BAD_REQUEST;
    }
    for (size_t i = 0; i < r->n_member_ids; i++) {
        if (!chat_uuid_valid(r->member_ids[i])) {
            *detail = "member id is not a uuid";
            return CHAT__CODE__BAD_REQUEST;
        }
    }
    switch (r->kind) {
    case CHAT__CONVERSATION_KIND__RANDOM:
    case CHAT__CONVERSATION_KIND__DM:
        /* A pair of two different users, in any order. */
        if (r->n_member_ids != 2 || strcasecmp(r->member_ids[0], r->member_ids[1]) == 0) {
            *detail = "needs two different members";
            return CHAT__CODE__BAD_REQUEST;
        }
        return CHAT__CODE__OK;
    case CHAT__CONVERSATION_KIND__ROOM: return CHAT__CODE__OK;
    default: *detail = "unknown conversation kind"; return CHAT__CODE__BAD_REQUEST;
    }
}

/* An id of a conversation that cannot exist is simply not found; a bad user
 * id is the caller's mistake. */
static Chat__Code check_conv_user(const char *conv, const char *user, bool user_optional,
                                  const char **detail)
{
    if (!(user_optional && !str_set(user)) && !chat_uuid_valid(user)) {
        *detail = "user id is not a uuid";
        return CHAT__CODE__BAD_REQUEST;
    }
    if (!chat_uuid_valid(conv)) {
        *detail = "unknown conversation";
        return CHAT__CODE__NOT_FOUND;
    }
    return CHAT__CODE__OK;
}

static Chat__Code check_send(const Chat__SendReq *r, long long max_text, const char **detail)
{
    if (!chat_uuid_valid(r->sender)) {
        *detail = "sender is not a uuid";
        return CHAT__CODE__BAD_REQUEST;
    }
    size_t idlen = r->client_msg_id ? strlen(r->client_msg_id) : 0;
    if (idlen == 0 || idlen > MSG_CLIENT_ID_MAX || !msg_utf8_valid(r->client_msg_id, idlen)) {
        *detail = "client_msg_id must be 1-64 bytes of UTF-8";
        return CHAT__CODE__BAD_REQUEST;
    }
    size_t tlen = r->text ? strlen(r->text) : 0;
    if (tlen == 0) {
        *detail = "empty text";
        return CHAT__CODE__BAD_REQUEST;
    }
    /* The gateway counts code points exactly; a code point is at most four
     * bytes, so anything longer is too long whatever it contains. */
    if ((long long)tlen > 4 * max_text) {
        *detail = "text too long";
        return CHAT__CODE__TOO_LONG;
    }
    if (!msg_utf8_valid(r->text, tlen)) {
        *detail = "text is not UTF-8";
        return CHAT__CODE__BAD_REQUEST;
    }
    return check_conv_user(r->conversation_id, r->sender, false, detail);
}

static Chat__Code check_replay(const Chat__ReplayReq *r, const char **detail)
{
    if (!chat_uuid_valid(r->user_id)) {
        *detail = "user id is not a uuid";
        return CHAT__CODE__BAD_REQUEST;
    }
    if (str_set(r->after_conversation_id) && !chat_uuid_valid(r->after_conversation_id)) {
        *detail = "bad cursor";
        return CHAT__CODE__BAD_REQUEST;
    }
    return CHAT__CODE__OK;
}

/* One conversation's gap, or (no conversation) a catch-up over the others. */
static Chat__Code check_fill(const Chat__FillReq *r, const char **detail)
{
    if (str_set(r->conversation_id))
        return check_conv_user(r->conversation_id, r->user_id, false, detail);
    if (!chat_uuid_valid(r->user_id)) {
        *detail = "user id is not a uuid";
        return CHAT__CODE__BAD_REQUEST;
    }
    if (str_set(r->after_conversation_id) && !chat_uuid_valid(r->after_conversation_id)) {
        *detail = "bad cursor";
        return CHAT__CODE__BAD_REQUEST;
    }
    if (r->n_skip_conversation_ids > MSG_CATCHUP_SKIP_MAX) {
        *detail = "too many conversations to skip";
        return CHAT__CODE__BAD_REQUEST;
    }
    for (size_t i = 0; i < r->n_skip_conversation_ids; i++)
        if (!chat_uuid_valid(r->skip_conversation_ids[i])) {
            *detail = "skip list: not a uuid";
            return CHAT__CODE__BAD_REQUEST;
        }
    return CHAT__CODE__OK;
}

static Chat__Code check_receipt(const Chat__ReceiptReq *r, const char **detail)
{
    Chat__Code c = check_conv_user(r->conversation_id, r->user_id, false, detail);
    if (c != CHAT__CODE__OK)
        return c;
    if (r->seq < 1 || r->seq > INT64_MAX) {
        *detail = "seq out of range";
        return CHAT__CODE__BAD_REQUEST;
    }
    return CHAT__CODE__OK;
}

static Chat__Code check_user(const char *user, const char **detail)
{
    if (!chat_uuid_valid(user)) {
        *detail = "user id is not a uuid";
        return CHAT__CODE__BAD_REQUEST;
    }
    return CHAT__CODE__OK;
}

static Chat__Code check_open_dm(const Chat__OpenDmReq *r, const char **detail)
{
    if (!chat_uuid_valid(r->user_id) || !chat_uuid_valid(r->peer_id)) {
        *detail = "user id is not a uuid";
        return CHAT__CODE__BAD_REQUEST;
    }
    if (strcasecmp(r->user_id, r->peer_id) == 0) {
        *detail = "a DM needs another user";
        return CHAT__CODE__BAD_REQUEST;
    }
    return CHAT__CODE__OK;
}

static Chat__Code check_room(const char *user, const char *room, const char **detail)
{
    Chat__Code c = check_user(user, detail);
    if (c != CHAT__CODE__OK)
        return c;
    if (!chat_room_valid(room)) {
        *detail = "room names match [a-z0-9_-]{1,64}";
        return CHAT__CODE__BAD_REQUEST;
    }
    return CHAT__CODE__OK;
}

static Chat__Code check_history(const Chat__HistoryReq *r, const char **detail)
{
    Chat__Code c = check_conv_user(r->conversation_id, r->user_id, false, detail);
    if (c != CHAT__CODE__OK)
        return c;
    if (r->limit > MSG_HISTORY_MAX) {
        *detail = "limit must be 1-100";
        return CHAT__CODE__BAD_REQUEST;
    }
    return CHAT__CODE__OK;
}

Chat__Code msg_validate(const Chat__MessageRequest *req, long long max_text,
                        const char **detail)
{
    *detail = "missing request body";
    switch (req->body_case) {
    case CHAT__MESSAGE_REQUEST__BODY_CREATE_CONVERSATION:
        if (req->create_conversation == NULL)
            return CHAT__CODE__BAD_REQUEST;
        return check_create(req->create_conversation, detail);
    case CHAT__MESSAGE_REQUEST__BODY_CLOSE_CONVERSATION:
        if (req->close_conversation == NULL)
            return CHAT__CODE__BAD_REQUEST;
        return check_conv_user(req->close_conversation->conversation_id,
                               req->close_conversation->user_id, true, detail);
    case CHAT__MESSAGE_REQUEST__BODY_CONVERSATION_INFO:
        if (req->conversation_info == NULL)
            return CHAT__CODE__BAD_REQUEST;
        return check_conv_user(req->conversation_info->conversation_id,
                               req->conversation_info->user_id, false, detail);
    case CHAT__MESSAGE_REQUEST__BODY_SEND:
        if (req->send == NULL)
            return CHAT__CODE__BAD_REQUEST;
        return check_send(req->send, max_text, detail);
    case CHAT__MESSAGE_REQUEST__BODY_REPLAY:
        if (req->replay == NULL)
            return CHAT__CODE__BAD_REQUEST;
        return check_replay(req->replay, detail);
    case CHAT__MESSAGE_REQUEST__BODY_RECEIPT:
        if (req->receipt == NULL)
            return CHAT__CODE__BAD_REQUEST;
        return check_receipt(req->receipt, detail);
    case CHAT__MESSAGE_REQUEST__BODY_REGISTER_USER:
        return req->register_user == NULL ? CHAT__CODE__BAD_REQUEST
                                          : check_user(req->register_user->user_id, detail);
    case CHAT__MESSAGE_REQUEST__BODY_OPEN_DM:
        return req->open_dm == NULL ? CHAT__CODE__BAD_REQUEST
                                    : check_open_dm(req->open_dm, detail);
    case CHAT__MESSAGE_REQUEST__BODY_JOIN_ROOM:
        return req->join_room == NULL
                   ? CHAT__CODE__BAD_REQUEST
                   : check_room(req->join_room->user_id, req->join_room->room, detail);
    case CHAT__MESSAGE_REQUEST__BODY_LEAVE_ROOM:
        return req->leave_room == NULL
                   ? CHAT__CODE__BAD_REQUEST
                   : check_room(req->leave_room->user_id, req->leave_room->room, detail);
    case CHAT__MESSAGE_REQUEST__BODY_HISTORY:
        return req->history == NULL ? CHAT__CODE__BAD_REQUEST
                                    : check_history(req->history, detail);
    case CHAT__MESSAGE_REQUEST__BODY_TYPING:
        return req->typing == NULL ? CHAT__CODE__BAD_REQUEST
                                   : check_conv_user(req->typing->conversation_id,
                                                     req->typing->user_id, false, detail);
    case CHAT__MESSAGE_REQUEST__BODY_CONTACTS:
        return req->contacts == NULL ? CHAT__CODE__BAD_REQUEST
                                     : check_user(req->contacts->user_id, detail);
    case CHAT__MESSAGE_REQUEST__BODY_FILL:
        return req->fill == NULL ? CHAT__CODE__BAD_REQUEST : check_fill(req->fill, detail);
    default: return CHAT__CODE__BAD_REQUEST;
    }
}

unsigned msg_route(const char *conversation_id, unsigned writers)
{
    /* FNV-1a over the lower-cased text: the same conversation always lands
     * on the same writer, whatever case the caller used. */
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)conversation_id; *p; p++) {
        h ^= (uint32_t)tolower(*p);
        h *= 16777619u;
    }
    return writers ? h % writers : 0;
}

const char *msg_status_detail(msg_status st)
{
    switch (st) {
    case MSG_ST_STORED:
    case MSG_ST_DUPLICATE: return "";
    case MSG_ST_NOT_FOUND: return "unknown conversation";
    case MSG_ST_NOT_MEMBER: return "not a member";
    case MSG_ST_CLOSED: return "conversation closed";
    case MSG_ST_RATE_LIMITED: return "rate limited";
    case MSG_ST_UNAVAILABLE: return "storage unavailable";
    default: return "internal error";
    }
}

Chat__Code msg_status_code(msg_status st)
{
    switch (st) {
    case MSG_ST_STORED:
    case MSG_ST_DUPLICATE: return CHAT__CODE__OK;
    case MSG_ST_NOT_FOUND: return CHAT__CODE__NOT_FOUND;
    case MSG_ST_NOT_MEMBER: return CHAT__CODE__NOT_MEMBER;
    case MSG_ST_CLOSED: return CHAT__CODE__CONVERSATION_CLOSED;
    case MSG_ST_RATE_LIMITED: return CHAT__CODE__RATE_LIMITED;
    case MSG_ST_UNAVAILABLE: return CHAT__CODE__UNAVAILABLE;
    default: return CHAT__CODE__INTERNAL;
    }
}

int msg_replay_limit(uint32_t limit)
{
    if (limit == 0)
        return MSG_REPLAY_DEFAULT;
    return limit > MSG_REPLAY_MAX ? MSG_REPLAY_MAX : (int)limit;
}

int msg_history_limit(uint32_t limit)
{
    if (limit == 0)
        return MSG_HISTORY_DEFAULT;
    return limit > MSG_HISTORY_MAX ? MSG_HISTORY_MAX : (int)limit;
}

static void lower_copy(char *dst, const char *src)
{
    size_t i = 0;
    for (; src[i]; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[i] = '\0';
}

void msg_dm_key(const char *a, const char *b, char *out)
{
    char la[CHAT_UUID_LEN + 1], lb[CHAT_UUID_LEN + 1];
    lower_copy(la, a);
    lower_copy(lb, b);
    const char *lo = strcmp(la, lb) <= 0 ? la : lb;
    const char *hi = lo == la ? lb : la;
    strcpy(out, lo);
    out[CHAT_UUID_LEN] = ':';
    strcpy(out + CHAT_UUID_LEN + 1, hi);
}

char *msg_uuid_array(char *const *ids, size_t n, size_t *distinct)
{
    char *out = malloc(n * (CHAT_UUID_LEN + 1) + 3);
    if (out == NULL)
        return NULL;
    size_t len = 0, count = 0;
    out[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcasecmp(ids[k], ids[i]) == 0;
        if (seen)
            continue;
        if (count++ > 0)
            out[len++] = ',';
        lower_copy(out + len, ids[i]);
        len += CHAT_UUID_LEN;
    }
    out[len++] = '}';
    out[len] = '\0';
    *distinct = count;
    return out;
}

size_t msg_split_ids(char *s, char **out, size_t max)
{
    size_t n = 0;
    char *p = s;
    while (p != NULL && *p != '\0' && n < max) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        if (*p != '\0')
            out[n++] = p;
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

typedef struct sort_item {
    msg_job *job;
    int idx;
} sort_item;

static int cmp_item(const void *a, const void *b)
{
    const sort_item *x = a, *y = b;
    int c = strcasecmp(x->job->req->send->conversation_id, y->job->req->send->conversation_id);
    return c != 0 ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

void msg_sort_batch(msg_job **jobs, int n)
{
    if (n < 2)
        return;
    sort_item *items = malloc((size_t)n * sizeof *items);
    if (items == NULL)
        return; /* unsorted only risks a deadlock, which is retried */
    for (int i = 0; i < n; i++)
        items[i] = (sort_item){jobs[i], i};
    qsort(items, (size_t)n, sizeof *items, cmp_item);
    for (int i = 0; i < n; i++)
        jobs[i] = items[i].job;
    free(items);
}

/* Days in ms; a cutoff before the epoch keeps everything stored since. */
int64_t msg_retention_cutoff(int64_t now_ms, long long days)
{
    if (days <= 0)
        return 0;
    int64_t cut = now_ms - (int64_t)days * 86400000;
    return cut > 0 ? cut : 0;
}

const char *msg_kind_name(int kind)
{
    switch (kind) {
    case CHAT__CONVERSATION_KIND__RANDOM: return "random";
    case CHAT__CONVERSATION_KIND__DM: return "dm";
    case CHAT__CONVERSATION_KIND__ROOM: return "room";
    default: return "unknown";
    }
}
