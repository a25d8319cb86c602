/* chat-bench: a load generator that speaks only the public client protocol
 * (../shared/PROTOCOL.md), so it can be pointed at any server that does.
 * Private header of the tool (prefix cb_).
 *
 * Shape: the coordinator (main thread of the first process) starts W
 * workers = procs x threads. Every worker owns one epoll loop, its share of
 * the connections and its cb_result; nothing of a worker is shared with
 * another except the cb_shared block (atomics, one process-shared mutex),
 * which lives in a MAP_SHARED mapping so forked workers see it too. Thread
 * workers hand their result to their process by value at the end; a forked
 * process sends its merged result to the coordinator as JSON over a pipe.
 *
 * Our own WebSocket client (ws.c + conn.c) rather than libwebsockets': a
 * connection costs a ~220-byte struct plus buffers only while bytes are
 * pending, so one process holds ~19,900 connections (the open-files cap)
 * in a few MiB. */
#ifndef BENCH_CHAT_BENCH_BENCH_H
#define BENCH_CHAT_BENCH_BENCH_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#define CB_MAX_URLS 64
#define CB_MAX_BINDS 256
#define CB_MAX_PIDS 64
#define CB_MAX_WORKERS 256
#define CB_ID_MAX 64                      /* conversation_id, msg_id: at most 64 bytes */
#define CB_TOKEN_MAX 512                  /* session token we are willing to keep */
#define CB_OUT_MAX (4u << 20)             /* unsent bytes per connection before we shed */
#define CB_FRAME_MAX (1u << 20)           /* largest frame we accept from a server */
#define CB_SCRATCH (CB_FRAME_MAX + 65536) /* a worker's read buffer */

/* ------------------------------------------------------------------ time.c */
int64_t cb_now_ns(void);           /* CLOCK_MONOTONIC: comparable across our processes */
uint64_t cb_rand(uint64_t *state); /* xorshift64*: cheap, not for secrets */
double cb_rand01(uint64_t *state);

/* ------------------------------------------------------------------ opts.c */
typedef enum { CB_MODE_IDLE, CB_MODE_CHAT, CB_MODE_MATCH, CB_MODE_STORM } cb_mode;

typedef struct cb_url {
    char text[256];          /* as given, for reports */
    char hostport[96];       /* Host: header */
    char path[256];          /* "/ws" (query allowed) */
    struct sockaddr_in addr; /* IPv4 only: loopback tests */
} cb_url;

typedef struct cb_opts {
    cb_mode mode;
    cb_url urls[CB_MAX_URLS];
    int n_urls;
    struct in_addr binds[CB_MAX_BINDS];
    int n_binds;
    pid_t gw_pids[CB_MAX_PIDS];
    int n_gw_pids;
    int procs, threads;
    long conns;        /* idle/match/storm: connections (one user each) */
    long pairs;        /* chat: conversations of two users */
    double ramp;       /* connections opened per second, all workers */
    int inflight;      /* connection attempts in flight per worker */
    double duration_s; /* idle hold, chat send window, match loop, storm deadline */
    double rate;       /* chat: messages per second per sender */
    bool one_sender;   /* chat: only the first user of a pair sends */
    int text_size;     /* chat: pad message texts to this many bytes */
    bool dm;           /* chat: DMs (open_dm) instead of random chats */
    double drain_s;    /* chat/match: wait for answers after the window */
    double think_ms;   /* match: pause between chat_ended and the next search */
    double jitter_ms;  /* storm: first reconnect spread over [0, jitter) */
    double backoff_ms, backoff_max_ms; /* storm: retry backoff, doubled, full jitter */
    bool drop_rst;                     /* storm: drop with RST instead of FIN */
    double connect_timeout_s;
    double setup_timeout_s; /* bound of connect + pairing (0: derived) */
    bool json;
    bool quiet;
    uint64_t seed;
} cb_opts;

/* Parses argv into o (defaults first). Returns 0, 1 after --help (exit 0)
 * or 2 after printing the error (exit 2). */
int cb_opts_parse(cb_opts *o, int argc, char **argv);
const char *cb_mode_name(cb_mode m);
/* connections one run opens in total */
long cb_opts_total_conns(const cb_opts *o);

/* ------------------------------------------------------------------ ws.c */
/* Pure WebSocket client codec (RFC 6455) and ws:// URL parsing. */
int cb_url_parse(const char *text, cb_url *out, char *err, size_t errlen);
void cb_ws_key(uint64_t *rng, char key[25]);
/* Writes the upgrade request; session may be NULL. Returns its length, or
 * -1 if cap is too small. */
int cb_ws_request(char *buf, size_t cap, const cb_url *u, const char *session, const char *key);
enum { CB_WS_MORE = 0, CB_WS_OK = 1, CB_WS_BAD = -1 };
/* Looks at a response head in buf[0..len): CB_WS_MORE until "\r\n\r\n";
 * CB_WS_OK for a 101 with the right Sec-WebSocket-Accept (*head_len set);
 * CB_WS_BAD otherwise (*status = the HTTP status, 0 if unreadable). */
int cb_ws_response(const char *buf, size_t len, const char *key, int *status, size_t *head_len);

typedef struct cb_ws_frame {
    bool fin;
    int opcode;
    size_t hdr_len;
    uint64_t len;
} cb_ws_frame;
enum {
    CB_OP_CONT = 0,
    CB_OP_TEXT = 1,
    CB_OP_BIN = 2,
    CB_OP_CLOSE = 8,
    CB_OP_PING = 9,
    CB_OP_PONG = 10
};
/* 1: a whole frame is in p[0..n) (*f set); 0: need more bytes; -1: not a
 * valid server frame (masked, reserved bits, bad opcode, over max). */
int cb_ws_parse(const uint8_t *p, size_t n, uint64_t max, cb_ws_frame *f);
/* Writes a masked client frame (header, then payload XOR mask) into out,
 * which has room for len + 14 bytes. Returns the bytes written. */
size_t cb_ws_encode(uint8_t *out, int opcode, const void *payload, size_t len, uint32_t mask);

/* ------------------------------------------------------------------ hist.c */
/* Log-linear histogram of microseconds, HdrHistogram-style: exact below 128,
 * then 64 sub-buckets per power of two (<= 1.6 % relative error) up to
 * 2^32 us (~71 min; larger values clamp). Mergeable by adding counts. */
#define CB_HIST_SLOTS 1728
typedef struct cb_hist {
    uint64_t count, sum_us, max_us, min_us;
    uint64_t slot[CB_HIST_SLOTS];
} cb_hist;

void cb_hist_add(cb_hist *h, int64_t us);
void cb_hist_merge(cb_hist *into, const cb_hist *from);
/* Value at percentile p (0..100]: the highest value of the bucket that holds
 * it, never above the exact max. 0 when empty. */
uint64_t cb_hist_pct(const cb_hist *h, double p);
int cb_hist_slot(uint64_t us);
uint64_t cb_hist_slot_high(int slot);
cJSON *cb_hist_to_json(const cb_hist *h);          /* sparse, for merging */
int cb_hist_from_json(cb_hist *h, const cJSON *j); /* adds into h; -1 if malformed */
cJSON *cb_hist_summary(const cb_hist *h);          /* {count,p50,p90,p99,max,mean} in ms */

/* ------------------------------------------------------------------ result.c */
/* Counters every mode may use (sum when merged). Keep names in result.c in
 * the same order. */
typedef enum {
    CB_C_CONN_OK,
    CB_C_CONN_FAIL,
    CB_C_FAIL_REFUSED,
    CB_C_FAIL_RESET,
    CB_C_FAIL_TIMEOUT,
    CB_C_FAIL_HTTP,
    CB_C_FAIL_UNAUTHORIZED,
    CB_C_FAIL_PROTOCOL,
    CB_C_FAIL_ADDR,
    CB_C_FAIL_FILES,
    CB_C_FAIL_OTHER,
    CB_C_UNFINISHED,
    CB_C_NOT_ATTEMPTED,
    CB_C_DROPPED,
    CB_C_PAIRS,
    CB_C_PAIR_FAIL,
    CB_C_SENT,
    CB_C_ACKED,
    CB_C_DELIVERED,
    CB_C_LOST,
    CB_C_DUP,
    CB_C_REORDERED,
    CB_C_UNANSWERED,
    CB_C_DELIVERED_UNACKED,
    CB_C_FOREIGN,
    CB_C_SHED,
    CB_C_SEND_ERRORS,
    CB_C_DRAIN_CUT, /* workers whose drain ended with answers still due */
    CB_C_SEARCHES,
    CB_C_MATCHED,
    CB_C_ENDS,
    CB_C_END_CONFLICTS,
    CB_C_STORM_DROPPED,
    CB_C_RESUMED,
    CB_C_RESUME_ATTEMPTS,
    CB_C_NOT_RESUMED,
    CB_C_WRONG_USER,
    CB_C_ERRORS,
    CB_C__N
} cb_counter;

/* Durations, ns (max when merged). */
typedef enum {
    CB_M_RAMP_NS,         /* first attempt .. last connection ready */
    CB_M_LAST_ACK_NS,     /* window start .. last ack */
    CB_M_LAST_DELIVER_NS, /* window start .. last delivery */
    CB_M_ALL_RESUMED_NS,  /* drop .. last resume */
    CB_M__N
} cb_maxval;

typedef enum {
    CB_H_CONNECT,
    CB_H_ACK,
    CB_H_DELIVERY,
    CB_H_SEND_LAG,
    CB_H_MATCH,
    CB_H_RESUME,
    CB_H__N
} cb_histid;

#define CB_MAX_CODES 24
typedef struct cb_result {
    uint64_t c[CB_C__N];
    int64_t m[CB_M__N];
    cb_hist h[CB_H__N];
    struct {
        char code[32];
        uint64_t n;
    } err[CB_MAX_CODES]; /* error frames by code */
    int n_err;
} cb_result;

extern const char *const cb_counter_names[CB_C__N];
extern const char *const cb_hist_names[CB_H__N];
void cb_result_error(cb_result *r, const char *code, uint64_t n);
void cb_result_merge(cb_result *into, const cb_result *from);
cJSON *cb_result_to_json(const cb_result *r);               /* internal form, for the pipe */
int cb_result_from_json(cb_result *into, const char *text); /* merges; -1 if malformed */

/* ------------------------------------------------------------------ shared */
/* Progress counters, updated with relaxed atomics by workers. */
typedef enum {
    CB_P_CONNECTED,
    CB_P_FAILED,
    CB_P_SENT,
    CB_P_ACKED,
    CB_P_DELIVERED,
    CB_P_MATCHED,
    CB_P_RESUMED,
    CB_P_ERRORS,
    CB_P__N
} cb_prog;

typedef struct cb_shared {
    atomic_int ready;    /* workers whose setup is over */
    atomic_int finished; /* workers whose result is final */
    atomic_llong go_ns;  /* 0, then the start of the measured phase */
    atomic_int release;  /* idle: the coordinator has measured: stop holding */
    atomic_int stop;     /* SIGINT/SIGTERM or overall deadline: wrap up now */
    atomic_ullong prog[CB_P__N];
    pthread_mutex_t pair_lock; /* process-shared: random-chat pairing one pair at a time */
} cb_shared;

/* ------------------------------------------------------------------ conn.c */
typedef enum {
    CB_CS_IDLE,           /* no socket (not started, or closed) */
    CB_CS_CONNECTING,     /* TCP connect in progress */
    CB_CS_HANDSHAKE,      /* upgrade sent, waiting for 101 */
    CB_CS_WAIT_CONNECTED, /* WebSocket open, waiting for "connected" */
    CB_CS_READY,
} cb_cstate;

typedef enum {
    CB_FAIL_REFUSED,
    CB_FAIL_RESET,
    CB_FAIL_TIMEOUT,
    CB_FAIL_HTTP,
    CB_FAIL_UNAUTHORIZED,
    CB_FAIL_PROTOCOL,
    CB_FAIL_ADDR,
    CB_FAIL_FILES,
    CB_FAIL_OTHER,
    CB_FAIL_CLOSED, /* a ready connection closed by the peer */
} cb_fail;

/* One client connection. Owned by its worker's conns[] for the whole run
 * (reconnects reuse it); the buffers are owned by the connection and freed
 * when it closes. */
typedef struct cb_conn {
    uint32_t idx; /* in the worker's conns[] */
    uint32_t gen; /* bumped at every close: stale epoll events are ignored */
    int fd;
    uint8_t st;          /* cb_cstate */
    bool dirty;          /* on the worker's flush list */
    bool want_out;       /* EPOLLOUT registered */
    bool resumed;        /* the last "connected" said resumed:true */
    int8_t pending_fail; /* cb_fail found while starting, reported at the next turn; -1 */
    uint16_t url_i, bind_i;
    int heap_pos; /* in the timer heap, -1 if none */
    int64_t timer_ns;
    int64_t t_start_ns; /* connection attempt started */
    uint8_t *in;        /* bytes of an incomplete frame or response head */
    uint32_t in_len, in_cap;
    uint8_t *out; /* unsent bytes: out[out_off..out_len) */
    uint32_t out_off, out_len, out_cap;
    uint8_t *frag; /* a fragmented message being reassembled */
    uint32_t frag_len;
    char key[25]; /* Sec-WebSocket-Key of this attempt */
    char user_id[37];
    char *session; /* malloc'd token, kept when the mode needs it */
    /* mode state */
    uint8_t ms;    /* mode-specific state */
    uint8_t role;  /* chat: 0 or 1 in its pair */
    uint32_t pair; /* chat: pair index */
    uint32_t attempts;
    uint64_t n;      /* chat: messages sent */
    int64_t mark_ns; /* match: search sent; chat: next send */
    char *conv;      /* match: current conversation (malloc'd) */
} cb_conn;

typedef struct cb_worker cb_worker;

/* What a mode does; conn.c and loop.c call these. */
typedef struct cb_mode_ops {
    int (*setup)(cb_worker *w);                              /* after conns[] exist */
    void (*tick)(cb_worker *w, int64_t now);                 /* every loop turn */
    void (*on_ready)(cb_worker *w, cb_conn *c, int64_t now); /* "connected" arrived */
    void (*on_frame)(cb_worker *w, cb_conn *c, const cJSON *f, const char *type, int64_t now);
    void (*on_fail)(cb_worker *w, cb_conn *c, cb_fail why, int64_t now); /* c is closed */
    void (*on_timer)(cb_worker *w, cb_conn *c, int64_t now);
    void (*finish)(cb_worker *w);  /* final counters */
    void (*cleanup)(cb_worker *w); /* free mode state */
} cb_mode_ops;

extern const cb_mode_ops cb_idle_ops, cb_chat_ops, cb_match_ops, cb_storm_ops;

struct cb_worker {
    int id, n_workers; /* global index among all workers */
    const cb_opts *o;
    const cb_mode_ops *ops;
    cb_shared *sh;
    int epfd;
    cb_conn *conns; /* owned; n_conns of them */
    uint32_t n_conns;
    long first_gidx; /* global index of conns[0] (spreads URLs and binds) */
    cb_conn **heap;  /* timer min-heap by timer_ns */
    uint32_t heap_len;
    cb_conn **dirty; /* connections with bytes to flush */
    uint32_t n_dirty, dirty_cap;
    uint8_t *scratch; /* read buffer */
    int inflight;     /* attempts not yet ready or failed */
    /* ramp: conns[next_open..] not yet started, one every ramp_gap_ns */
    uint32_t next_open, ramp_end, ramp_from;
    int64_t ramp_t0, ramp_gap_ns, last_ready_ns;
    bool keep_session;
    bool done; /* the mode says the loop may end */
    int64_t setup_deadline_ns, hard_deadline_ns;
    uint64_t rng;
    cb_result res;
    void *mode; /* mode state, owned by the mode */
};

/* Starts a connection attempt (session may be NULL). Failure is reported
 * through ops->on_fail like any later one (never re-entrantly: queued to
 * the next loop turn when it happens at once). */
void cb_conn_start(cb_worker *w, cb_conn *c, int64_t now, const char *session);
/* Queues a text frame (JSON). Returns 0, or -1 if the connection is not
 * open or its unsent output is over CB_OUT_MAX (counted as shed). */
int cb_conn_send(cb_worker *w, cb_conn *c, const char *text, size_t len);
/* Closes without telling the mode (used by modes themselves). rst: abortive. */
void cb_conn_close(cb_worker *w, cb_conn *c, bool rst);
void cb_conn_io(cb_worker *w, cb_conn *c, uint32_t events, int64_t now);
void cb_conn_timer(cb_worker *w, cb_conn *c, int64_t now);
void cb_flush(cb_worker *w, int64_t now);
void cb_conn_free(cb_conn *c);

/* ------------------------------------------------------------------ loop.c */
int cb_worker_init(cb_worker *w, int id, int n_workers, const cb_opts *o, cb_shared *sh);
void cb_worker_run(cb_worker *w); /* until the mode says done or a hard deadline */
void cb_worker_free(cb_worker *w);
void cb_timer_set(cb_worker *w, cb_conn *c, int64_t when);
void cb_timer_clear(cb_worker *w, cb_conn *c);
/* Ramp helper: opens conns[from..to) paced at the worker's share of --ramp,
 * at most --inflight at a time. */
void cb_ramp_begin(cb_worker *w, uint32_t from, uint32_t to, int64_t now);
bool cb_ramp_done(const cb_worker *w); /* every attempt made and answered */
/* This worker's share of total (spread evenly, remainder to the first). */
long cb_share(long total, int id, int n, long *first);
void cb_prog_add(cb_worker *w, cb_prog p, uint64_t n);
/* Counts an error frame's code (CB_C_ERRORS, errors by code, progress). */
void cb_count_error(cb_worker *w, const char *code);
bool cb_stopping(const cb_worker *w);

/* ------------------------------------------------------------------ json helpers (frames.c) */
const char *cb_json_str(const cJSON *o, const char *name); /* NULL if absent/not string */
bool cb_json_u64(const cJSON *o, const char *name, uint64_t *out);
/* Copies src into a JSON string literal body (escapes quotes etc.). Returns
 * the length written, or -1 if it does not fit. */
int cb_json_escape(char *dst, size_t cap, const char *src);

/* ------------------------------------------------------------------ run.c */
/* Runs the whole benchmark (workers, coordination) and fills out. */
/* gwmetrics.c: the gateways' order-and-gap counters, summed over --url. */
typedef struct cb_gw_order {
    double held, fills, catchups, filled, gaps_closed, gap_ms_sum, gap_ms_max, batches_lost;
    bool ok; /* every gateway answered */
} cb_gw_order;
bool cb_gw_order_read(const struct cb_opts *o, cb_gw_order *out);
/* b - a (gap_ms_max: b's, the longest since the gateways started). */
void cb_gw_order_diff(const cb_gw_order *a, const cb_gw_order *b, cb_gw_order *out);

typedef struct cb_run {
    cb_result res;
    cb_gw_order order; /* what the gateways did during the run */
    double elapsed_s;  /* whole run */
    double setup_s;    /* start .. every worker ready */
    double cpu_s;      /* our own CPU (user+sys, all processes) */
    long rss_before_kib[CB_MAX_PIDS], rss_held_kib[CB_MAX_PIDS]; /* gateways */
    long bench_rss_kib; /* our own processes, while holding (idle) */
    int workers_lost;   /* workers whose result never arrived */
    bool interrupted;
} cb_run;

int cb_run_all(const cb_opts *o, cb_run *run);
/* One blocking connection (timeout): 0 if the server answers "connected",
 * else -1 with a sentence in err. */
int cb_preflight(const cb_opts *o, char *err, size_t errlen);

/* ------------------------------------------------------------------ report.c */
void cb_report_text(const cb_opts *o, const cb_run *run);
void cb_report_json(const cb_opts *o, const cb_run *run);

/* ------------------------------------------------------------------ procinfo.c */
long cb_proc_rss_kib(pid_t pid); /* VmRSS, -1 if unknown */
double cb_self_cpu_s(void);      /* this process and its reaped children */

#endif
