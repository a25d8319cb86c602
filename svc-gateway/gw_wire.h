/* The gateway's pure code (prefix gw_): limits, client error codes, UTF-8,
 * session tokens, parsing client frames and rendering outgoing ones. Nothing
 * here needs lws, nng or the server state, so the unit tests build it alone
 * (CMake target gw_wire). gateway.h includes it. */
#ifndef SVC_GATEWAY_GW_WIRE_H
#define SVC_GATEWAY_GW_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "chat/util.h"
#include "message.pb-c.h"
#include "presence.pb-c.h"

#define GW_ID_MAX 64         /* bytes of conversation_id, client_msg_id, req */
#define GW_MAX_MESSAGE 65536 /* reassembled WebSocket payload, bytes */
/* A frame's shape, checked before it is parsed, so that 64 KiB of "[[[[" or
 * "[0,0,0," costs a scan and not thousands of allocations: nesting depth and
 * values (array elements and object members). The largest valid frame, a
 * presence query of 100 ids, has depth 2 and about 105 values. */
#define GW_FRAME_MAX_DEPTH 8
#define GW_FRAME_MAX_VALUES 1024
#define GW_MAX_PRESENCE_IDS 100 /* user_ids of one presence query */
#define GW_REPLAY_PAGE 200      /* messages per replay request */
#define GW_TOKEN_MAX 160        /* session token text, with its NUL */
#define GW_GATEWAY_ID_MAX 32
#define GW_HISTORY_MAX 100     /* messages of one history page */
#define GW_ADMIN_TOKEN_MAX 512 /* the admin secret, with its NUL */
/* A request id: "<gateway id>-<16 hex digits>", with its NUL. */
#define GW_REQ_ID_MAX (GW_GATEWAY_ID_MAX + 18)
/* Headroom before a frame's bytes for lws_write: LWS_PRE, checked equal in
 * gateway.h (16 on every platform lws supports today). */
#define GW_FRAME_PRE 16

/* ---- errors.c */
/* The client error codes of PROTOCOL.md "Errors". */
typedef enum {
    GW_E_NONE = 0,
    GW_E_BAD_JSON,
    GW_E_UNKNOWN_TYPE,
    GW_E_BAD_REQUEST,
    GW_E_TOO_LONG,
    GW_E_RATE_LIMITED,
    GW_E_NOT_MEMBER,
    GW_E_NOT_FOUND,
    GW_E_ALREADY_IN_CHAT,
    GW_E_CONVERSATION_CLOSED,
    GW_E_UNAVAILABLE,
    GW_E_UNAUTHORIZED,
    GW_E_KICKED,
    GW_E_COUNT
} gw_err;

const char *gw_err_name(gw_err e); /* "bad_json", ...; "" for GW_E_NONE */
const char *gw_err_text(gw_err e); /* default human message */
gw_err gw_err_from_code(int code); /* chat.Code -> client code (INTERNAL -> unavailable) */

/* ---- utf8.c */
bool gw_utf8_valid(const void *data, size_t n);
/* Code points of valid UTF-8 text. */
size_t gw_utf8_count(const char *text, size_t n);
/* True when every code point of valid UTF-8 text is Unicode white space
 * (also for empty text). */
bool gw_utf8_only_space(const char *text, size_t n);

/* ---- session_token.c */
/* Signs a token for user_id valid until expiry_s into out. Returns 0 or -1. */
int gw_token_sign(const char *secret, const char *user_id, int64_t expiry_s,
                  char out[GW_TOKEN_MAX]);
/* Returns 0 and the user id when token is well formed, signed with secret
 * and not expired at now_s; -1 otherwise (user_out untouched). */
int gw_token_verify(const char *secret, const char *token, int64_t now_s,
                    char user_out[CHAT_UUID_LEN + 1]);

/* ---- frames.c */
typedef enum {
    GW_REQ_START_SEARCH,
    GW_REQ_STOP_SEARCH,
    GW_REQ_END_CHAT,
    GW_REQ_SEND,
    GW_REQ_RECEIPT,
    GW_REQ_PRESENCE,
    GW_REQ_OPEN_DM,
    GW_REQ_JOIN_ROOM,
    GW_REQ_LEAVE_ROOM,
    GW_REQ_HISTORY,
    GW_REQ_TYPING,
} gw_req_type;

/* One parsed client frame. Strings point into root and live as long as the
 * request. */
typedef struct gw_request {
    struct gw_request *next; /* the connection's waiting list */
    gw_req_type type;
    gw_err err;          /* GW_E_NONE when the frame is valid */
    const char *err_msg; /* static text, with err */
    const char *req;     /* the client's req to echo; NULL if absent/invalid */
    const char *conversation_id;
    const char *text;
    const char *client_msg_id;
    uint64_t seq;               /* receipt */
    bool read;                  /* receipt: "read" (else "delivered") */
    size_t n_user_ids;          /* presence */
    const char **user_ids;      /* presence: malloc'd array */
    const char *user_id;        /* open_dm: a valid UUID */
    const char *room;           /* join_room, leave_room: a valid room name */
    uint64_t before;            /* history: 0 when absent (from the newest) */
    uint32_t limit;             /* history: 0 when absent (the default) */
    bool start;                 /* typing: "start" (else "stop") */
    char req_id[GW_REQ_ID_MAX]; /* requests.c: the id its backend request got ("" none) */
    cJSON *root;
} gw_request;

/* Parses and validates one text message (valid UTF-8, len bytes). Always
 * returns a request (check ->err) unless out of memory (NULL). The caller
 * frees it with gw_request_free(). A frame deeper or with more values than
 * the limits above is bad_request, unparsed. */
gw_request *gw_frame_parse(const char *buf, size_t len, long long max_text);
const char *gw_req_type_name(gw_req_type type); /* "send", ... */
void gw_request_free(gw_request *rq);           /* NULL is fine */

/* ---- render.c */
/* An outgoing text frame with GW_FRAME_PRE bytes of headroom for lws_write. It is
 * reference counted so an event is rendered once and queued on many
 * connections; only the lws thread touches the count. */
typedef struct gw_frame {
    int refs;
    size_t len;
    uint64_t seq;             /* "message" pushes: for replay dedup */
    char conv[GW_ID_MAX + 1]; /* "message" pushes: conversation id, else "" */
    unsigned char buf[];      /* GW_FRAME_PRE headroom, then len bytes and a NUL */
} gw_frame;

static inline char *gw_frame_data(gw_frame *f)
{
    return (char *)f->buf + GW_FRAME_PRE;
}
gw_frame *gw_frame_new(const char *json, size_t len); /* one reference */
gw_frame *gw_frame_ref(gw_frame *f);
void gw_frame_unref(gw_frame *f); /* NULL is fine */

/* Each returns a new frame (one reference) or NULL when out of memory.
 * req: the client's req to echo, or NULL. */
gw_frame *gw_render_connected(const char *user_id, const char *token, bool resumed);
/* retry_after_ms < 0: no "retry_after_ms" field. message NULL: the default. */
gw_frame *gw_render_error(gw_err code, const char *message, const char *req,
                          int64_t retry_after_ms);
gw_frame *gw_render_simple(const char *type, const char *req); /* searching, ... */
gw_frame *gw_render_matched(const char *conversation_id);
gw_frame *gw_render_chat_ended(const char *conversation_id, const char *by);
gw_frame *gw_render_partner_disconnected(const char *conversation_id);
gw_frame *gw_render_ack(const char *client_msg_id, const Chat__StoredMessage *m,
                        const char *req);
gw_frame *gw_render_message(const Chat__StoredMessage *m);
gw_frame *gw_render_receipt(const char *conversation_id, uint64_t seq, bool read,
                            const char *user_id);
/* One status per asked id, in the order asked; ids missing from the reply
 * are offline with last_seen null. */
gw_frame *gw_render_presence(const char *const *ids, size_t n_ids,
                             Chat__UserStatus *const *statuses, size_t n_statuses,
                             const char *req);
gw_frame *gw_render_conversation_dm(const char *conversation_id, const char *const members[2],
                                    const char *req);
gw_frame *gw_render_conversation_room(const char *conversation_id, const char *room,
                                      const char *req);
gw_frame *gw_render_left(const char *conversation_id, const char *req);
/* A history page (messages ascending); next_before 0 renders as null. */
gw_frame *gw_render_history(const char *conversation_id, Chat__StoredMessage *const *msgs,
                            size_t n, uint64_t next_before, const char *req);
/* The same page as the REST body {"messages":[...],"next_before":...}. */
gw_frame *gw_render_history_rest(Chat__StoredMessage *const *msgs, size_t n,
                                 uint64_t next_before);
/* A REST error body {"error":CODE}, with "retry_after_ms" when that is
 * >= 0 (429). */
gw_frame *gw_render_rest_error(gw_err code, int64_t retry_after_ms);
gw_frame *gw_render_typing(const char *conversation_id, const char *user_id, bool start);
/* {"type":"announcement","text":TEXT} (an operator's broadcast). */
gw_frame *gw_render_announcement(const char *text);
/* The push to contacts; last_seen 0 renders as null. */
gw_frame *gw_render_presence_push(const char *user_id, bool online, int64_t last_seen);

#endif
