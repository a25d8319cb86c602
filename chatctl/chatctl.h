/* chatctl: the admin CLI (../shared/ADMIN.md, docs/CHATCTL.md).
 *
 * Layers run one way: main.c -> commands.c (the command table) -> the area
 * files (status.c, users.c, announce.c, queue.c, conversations.c, drain.c),
 * which build requests, hand them to client.c (the one send-and-wait path)
 * and print through out.c. options.c reads flags, the env file and the
 * token before anything is sent. Every function that can fail returns a
 * ctl_rc, the exit status it stands for; main() turns the merged one into
 * the exit status. */
#ifndef CHATCTL_CHATCTL_H
#define CHATCTL_CHATCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "admin.pb-c.h"
#include "chat/rpc.h"

/* Exit statuses (ADMIN.md). */
typedef enum ctl_rc {
    CTL_OK = 0,
    CTL_FAILED = 1,       /* the request failed or partly failed */
    CTL_USAGE = 2,        /* bad usage */
    CTL_UNAUTHORIZED = 3, /* a process refused the token */
    CTL_NOT_FOUND = 4,    /* unknown user, conversation, room, gateway */
} ctl_rc;

/* The worse of two: unauthorized > usage > not found > failed > ok. */
ctl_rc ctl_rc_merge(ctl_rc a, ctl_rc b);

typedef enum ctl_kind { CTL_GATEWAY, CTL_MESSAGE, CTL_MATCH, CTL_PRESENCE, CTL_KINDS } ctl_kind;

/* "gateway", "message", "match", "presence". */
const char *ctl_kind_name(ctl_kind k);

/* ---- options.c ---- */

/* Command flags (each command says which it takes). */
enum {
    CTL_F_REASON = 1 << 0,
    CTL_F_FOR = 1 << 1,
    CTL_F_ROOM = 1 << 2,
    CTL_F_OVER = 1 << 3,
};

#define CTL_ARGS_MAX 8

/* What the command line said; the strings point into argv. */
typedef struct ctl_opts {
    const char *env_file;         /* --env */
    const char *addrs[CTL_KINDS]; /* --gateways --message --match --presence */
    const char *token_file;       /* --token-file */
    bool json, help;
    int timeout_ms;      /* --timeout, default 3000 */
    const char *command; /* NULL: none given */
    const char *args[CTL_ARGS_MAX];
    int n_args;
    unsigned flags_seen; /* CTL_F_* given */
    const char *reason, *for_text, *room, *over_text;
} ctl_opts;

/* Parses argv[1..argc). On CTL_USAGE writes a one-line reason into err. */
ctl_rc ctl_opts_parse(int argc, char **argv, ctl_opts *o, char *err, size_t errn);

/* "30s", "10m", "2h", "7d" (positive integer + unit) into *ms; false for
 * anything else (nothing written). */
bool ctl_parse_duration(const char *s, int64_t *ms);
/* A decimal integer in [min, max] into *out; false otherwise. */
bool ctl_parse_int(const char *s, long min, long max, long *out);

/* One env-file line: 1 with key/value written (quotes and surrounding
 * blanks gone, an "export " prefix allowed), 0 for a blank or comment line,
 * -1 when it is not KEY=VALUE. */
int ctl_env_line(const char *line, char *key, size_t keyn, char *val, size_t valn);
/* Sets every KEY=VALUE of the file that the environment does not have
 * yet. 0, or -1 with a reason in err. */
int ctl_env_load(const char *path, char *err, size_t errn);
/* Loads --env FILE, else $CHAT_ENV_FILE (both must exist), else the first
 * default that exists (none: fine). argv0 locates the binary. */
ctl_rc ctl_env_setup(const ctl_opts *o, char *err, size_t errn);
/* The admin secret into tok: --token-file, else CHAT_ADMIN_TOKEN, else
 * CHAT_ADMIN_TOKEN_FILE ("" when none: every process will refuse). */
ctl_rc ctl_token_read(const ctl_opts *o, char *tok, size_t tokn, char *err, size_t errn);
/* The comma-separated admin addresses of a kind: flag, env, default. */
const char *ctl_addrs(const ctl_opts *o, ctl_kind k);

/* ---- client.c: the one send-and-wait path ---- */

#define CTL_URL_MAX 300
#define CTL_TOKEN_MAX 4096

/* One process: an address of a kind, with its own client so that a name
 * behind which several replicas stand reaches each of them. */
typedef struct ctl_target {
    ctl_kind kind;
    char url[CTL_URL_MAX];
    chat_rpc_client *client; /* NULL: could not open; error says why */
    char error[320];
} ctl_target;

/* The outcome of one request to one target. */
typedef struct ctl_result {
    ctl_target *target;
    Chat__AdminReply *reply; /* owned; NULL when err != 0 */
    int err;                 /* nng error: no answer */
} ctl_result;

typedef struct ctl {
    const ctl_opts *opts;
    bool json;
    int timeout_ms;
    char token[CTL_TOKEN_MAX];
    char req_id[20];
    ctl_target *targets[CTL_KINDS]; /* opened on first use */
    int n_targets[CTL_KINDS];
    bool opened[CTL_KINDS];
    cJSON *doc;    /* the --json document */
    cJSON *errors; /* its "errors" array (owned by doc) */
} ctl;

/* Sets up c (no network yet). 0 or CTL_FAILED (out of memory). */
ctl_rc ctl_init(ctl *c, const ctl_opts *o);
/* Closes every client, frees the document. */
void ctl_fini(ctl *c);

/* The targets of a kind (its address list resolved), opened on first use;
 * *n their number. */
ctl_target *ctl_targets(ctl *c, ctl_kind k, int *n);
/* Sends req (token and req_id filled in here) to one target and waits. */
void ctl_call(ctl *c, ctl_target *t, Chat__AdminRequest *req, ctl_result *res);
/* Sends req to every target of every kind in mask (1 << kind), all at once.
 * *out (caller frees with ctl_results_free) gets one result per target in
 * kind and list order; returns how many. */
int ctl_call_all(ctl *c, unsigned mask, Chat__AdminRequest *req, ctl_result **out);
/* Tries the targets of a kind in order until one answers (any code). When
 * none does, every failure is reported and CTL_FAILED returned. */
ctl_rc ctl_call_first(ctl *c, ctl_kind k, Chat__AdminRequest *req, ctl_result *res);
/* ctl_call_first() and ctl_check() of its answer: the one-replica path of
 * every command. */
ctl_rc ctl_ask_first(ctl *c, ctl_kind k, Chat__AdminRequest *req, ctl_result *res,
                     bool not_found_ok);
/* Sends req to every gateway and sums reply.affected over those that
 * answered (ADMIN_NOT_FOUND: none affected there) into *sum. */
ctl_rc ctl_gateways_affected(ctl *c, Chat__AdminRequest *req, uint64_t *sum);
void ctl_result_clear(ctl_result *res);
void ctl_results_free(ctl_result *r, int n);
/* Why a result is not ADMIN_OK, as text ("unreachable", "failed: ..."). */
void ctl_result_error(const ctl_result *res, char *buf, size_t n);
/* The one place results are judged: CTL_OK for ADMIN_OK; CTL_NOT_FOUND for
 * ADMIN_NOT_FOUND when not_found_ok (the caller names what was not found);
 * otherwise the failure is reported (kind, address, error) and its rc
 * returned. */
ctl_rc ctl_check(ctl *c, const ctl_result *res, bool not_found_ok);

/* ---- out.c: tables, JSON, messages ---- */

typedef struct ctl_table ctl_table;
/* A table with the given header (NULL-terminated). NULL: out of memory. */
ctl_table *ctl_table_new(const char *const *header);
/* Adds a row of as many cells as the header (copied). */
void ctl_table_row(ctl_table *t, const char *const *cells);
/* Prints aligned on stdout and frees. */
void ctl_table_print(ctl_table *t);

/* A failure of one process: into "errors" and, in table mode, on stderr. */
void ctl_report(ctl *c, ctl_kind k, const char *address, const char *error);
/* A failure of the whole command ("unknown user X"): stderr, and "error"
 * in the document. Returns rc. */
ctl_rc ctl_fail(ctl *c, ctl_rc rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Bad usage: "chatctl: MSG" and "see chatctl --help" on stderr. */
void ctl_usage_print(const char *msg);
/* The same for a command's bad value; also "error" in the document. */
ctl_rc ctl_usage(ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Table mode only: a line on stdout. */
void ctl_say(ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the document (JSON mode). */
void ctl_json_print(ctl *c);

/* unix ms as "2026-12-02T05:57:10Z" ("-" for 0). */
void ctl_fmt_time(int64_t ms, char *buf, size_t n);
/* ms as "1h02m03s" (under 10 s: "1.5s"). */
void ctl_fmt_duration(int64_t ms, char *buf, size_t n);
/* JSON helpers: a string or null for "". */
void ctl_json_str(cJSON *o, const char *name, const char *s);
void ctl_json_num(cJSON *o, const char *name, double v);

/* ---- commands ---- */

typedef struct ctl_command {
    const char *name;
    const char *usage;   /* "kick USER_ID [--reason TEXT]" */
    const char *summary; /* one line */
    const char *help;    /* what it does and its JSON fields */
    unsigned flags;      /* CTL_F_* it takes */
    int min_args, max_args;
    ctl_rc (*run)(ctl *c, const ctl_opts *o);
} ctl_command;

extern const ctl_command ctl_cmd_status, ctl_cmd_users, ctl_cmd_user, ctl_cmd_kick, ctl_cmd_ban,
    ctl_cmd_unban, ctl_cmd_announce, ctl_cmd_queue, ctl_cmd_conversation, ctl_cmd_room,
    ctl_cmd_retention, ctl_cmd_drain;

/* commands.c: the command named, or NULL. */
const ctl_command *ctl_command_find(const char *name);
/* Checks a parsed command line against its command (arguments, flags). */
ctl_rc ctl_command_check(const ctl_opts *o, const ctl_command **cmd, char *err, size_t errn);
/* --help texts on stdout. */
void ctl_help_global(void);
void ctl_help_command(const ctl_command *cmd);

/* users.c helpers shared with announce.c: a request with its body set. */
void ctl_req_init(Chat__AdminRequest *req);
/* Asks message whether the user exists: CTL_OK, CTL_NOT_FOUND (reported as
 * "unknown user ID") or a failure. */
ctl_rc ctl_user_exists(ctl *c, const char *user_id);

/* conversations.c, for announce.c too: the room NAME from message (res
 * filled on CTL_OK with reply.conversation set; unknown room reported). */
ctl_rc ctl_room_get(ctl *c, const char *name, bool with_members, ctl_result *res);

#endif
