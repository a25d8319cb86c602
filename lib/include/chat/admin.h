/* The admin plane of one process: a REP socket on its own address that
 * answers chat.AdminRequest (proto/admin.proto) from chatctl.
 *
 * Every request must carry the admin secret; one without it is refused
 * (ADMIN_UNAUTHORIZED, logged as admin_refused) before anything else looks
 * at it. `status` is answered here, on the nng thread, from the callbacks of
 * chat_admin_cfg (which must be quick and thread-safe); every other request
 * goes to the process's handler on the admin thread, one at a time, where it
 * may block (Redis, PostgreSQL, waiting for the gateway's event loop). */
#ifndef CHAT_ADMIN_H
#define CHAT_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admin.pb-c.h"

/* The reply being built, with an arena for everything it points to (freed
 * once the reply is sent). The reply starts as ADMIN_OK. */
typedef struct chat_admin_out {
    Chat__AdminReply reply;
    struct admin_block *blocks;
    char detail[256];
} chat_admin_out;

/* Zeroed memory that lives as long as the reply (NULL: out of memory). */
void *chat_admin_alloc(chat_admin_out *o, size_t n);
char *chat_admin_strdup(chat_admin_out *o, const char *s);
/* Sets the code and a detail text. */
void chat_admin_fail(chat_admin_out *o, Chat__AdminCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef void (*chat_admin_handler)(const Chat__AdminRequest *req, chat_admin_out *out,
                                   void *arg);

typedef struct chat_admin_cfg {
    const char *kind;        /* gateway, message, match, presence */
    const char *id;          /* this process's id */
    const char *listen;      /* nng URL */
    const char *token;       /* the admin secret; "" refuses every request */
    const char *metrics_url; /* "" when none */
    const char *load_name;   /* the key load figure's name */
    unsigned restarts;       /* from the supervisor */
    bool (*ready)(void *arg);
    uint64_t (*load)(void *arg);
    chat_admin_handler handler; /* NULL: only status */
    void *arg;
} chat_admin_cfg;

typedef struct chat_admin chat_admin;

/* Listens. cfg's strings and arg must outlive the server. 0 or an nng error
 * (logged). */
int chat_admin_open(chat_admin **out, const chat_admin_cfg *cfg);
/* Stops listening, finishes the request being handled, frees. NULL is fine. */
void chat_admin_close(chat_admin *a);

/* True when token is the secret (constant time in the contents). */
bool chat_admin_token_ok(const char *secret, const char *token);

/* The program's version (CMake's CHAT_VERSION). */
const char *chat_version(void);

#endif
