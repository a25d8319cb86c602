/* Command line: one table of options (getopt_long), strict number parsing
 * with bounds, and --help generated from the same table. */
#include "bench.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define FD_RESERVE 64 /* files a process needs besides its connections */

typedef struct opt_def {
    const char *name;
    int key; /* short option or a value >= 256 */
    bool arg;
    const char *meta, *help;
} opt_def;

enum {
    O_RAMP = 256,
    O_INFLIGHT,
    O_ONE_SENDER,
    O_TEXT_SIZE,
    O_CONV,
    O_DRAIN,
    O_THINK,
    O_JITTER,
    O_BACKOFF,
    O_BACKOFF_MAX,
    O_DROP,
    O_CONNECT_TIMEOUT,
    O_SETUP_TIMEOUT,
    O_GW_PID,
    O_JSON,
    O_SEED,
    O_MODE,
};

static const opt_def defs[] = {
    {"url", 'u', true, "URL[,URL...]",
     "gateways (ws://HOST:PORT/PATH); connections go round-robin [ws://127.0.0.1:8080/ws]"},
    {"bind", 'b', true, "ADDR[,ADDR...]",
     "source addresses (e.g. 127.0.0.2,127.0.0.3), round-robin [kernel's choice]"},
    {"procs", 'p', true, "N", "worker processes (each under the open-files cap) [1]"},
    {"threads", 't', true, "N", "worker threads per process [1]"},
    {"conns", 'n', true, "N", "idle/match/storm: connections, one user each [1000]"},
    {"pairs", 'P', true, "N", "chat: conversations of two users [100]"},
    {"rate", 'r', true, "R", "chat: messages per second per sender [10]"},
    {"duration", 'd', true, "S",
     "idle: hold; chat: send window; match: loop; storm: resume deadline [10]"},
    {"ramp", O_RAMP, true, "N", "new connections per second, all workers together [2000]"},
    {"inflight", O_INFLIGHT, true, "N", "connection attempts in flight per worker [256]"},
    {"one-sender", O_ONE_SENDER, false, NULL,
     "chat: only one user of each pair sends [both send]"},
    {"text-size", O_TEXT_SIZE, true, "N", "chat: pad message texts to N bytes (max 4096) [0]"},
    {"conv", O_CONV, true, "random|dm",
     "chat: random chats (start_search) or DMs (open_dm) [random]"},
    {"drain", O_DRAIN, true, "S",
     "chat/match: wait for outstanding answers after the window [5]"},
    {"think-ms", O_THINK, true, "MS",
     "match: pause between a chat's end and the next search [0]"},
    {"jitter-ms", O_JITTER, true, "MS", "storm: first reconnect spread over [0, MS) [1000]"},
    {"backoff-ms", O_BACKOFF, true, "MS",
     "storm: first retry backoff, doubled per attempt, full jitter [100]"},
    {"backoff-max-ms", O_BACKOFF_MAX, true, "MS", "storm: backoff cap [5000]"},
    {"drop", O_DROP, true, "fin|rst", "storm: close sockets normally or abortively [fin]"},
    {"connect-timeout", O_CONNECT_TIMEOUT, true, "S",
     "per attempt: TCP + upgrade + \"connected\" [10]"},
    {"setup-timeout", O_SETUP_TIMEOUT, true, "S",
     "bound of connecting and pairing [derived from the ramp]"},
    {"gateway-pid", O_GW_PID, true, "PID[,PID...]",
     "gateways whose resident memory idle mode reports"},
    {"json", O_JSON, false, NULL, "print one JSON object instead of the summary"},
    {"quiet", 'q', false, NULL, "no progress lines on stderr"},
    {"seed", O_SEED, true, "N", "random seed [from the clock]"},
    {"mode", O_MODE, true, "MODE", "same as the MODE argument"},
    {"help", 'h', false, NULL, "this text"},
};
#define N_DEFS (sizeof defs / sizeof defs[0])

static const char *const mode_names[] = {"idle", "chat", "match", "storm"};

const char *cb_mode_name(cb_mode m)
{
    return mode_names[m];
}

static void usage(FILE *f, const char *prog)
{
    fprintf(
        f,
        "Usage: %s MODE [options]\n"
        "A load generator for the chat backend; speaks only the public client protocol.\n\n"
        "Modes:\n"
        "  idle   open --conns connections at --ramp/s, hold them --duration s; connect rate,\n"
        "         failures, resident memory per connection of --gateway-pid\n"
        "  chat   --pairs conversations, each sender at --rate msg/s (open loop) for "
        "--duration s;\n"
        "         sent/acked/delivered per second, ack and delivery latency, errors by code,\n"
        "         lost, duplicates, reordered, and the gateways' gap counters (\"gaps\", from\n"
        "         each --url's /metrics: held, fills, filled, closed, open ms, batches lost)\n"
        "  match  --conns users searching and ending chats for --duration s; matches/s, time "
        "to match\n"
        "  storm  --conns connections dropped at once, resumed with backoff and jitter; time "
        "until\n"
        "         all resumed, refusals, lost sessions\n\n"
        "Options:\n",
        prog);
    for (size_t i = 0; i < N_DEFS; i++) {
        char left[64];
        if (defs[i].key < 256)
            snprintf(left, sizeof left, "-%c, --%s%s%s", defs[i].key, defs[i].name,
                     defs[i].arg ? " " : "", defs[i].arg ? defs[i].meta : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", defs[i].name, defs[i].arg ? " " : "",
                     defs[i].arg ? defs[i].meta : "");
        fprintf(f, "  %-34s %s\n", left, defs[i].help);
    }
    fprintf(f,
            "\nOutput: a summary on stdout (--json: one JSON object); progress on stderr.\n"
            "Exit status: 0 run completed (read the figures), 1 the run could not be done,\n"
            "2 bad usage, 3 server unreachable.\n"
            "Each process holds at most (open-files limit - %d) connections: use --procs for "
            "more.\n",
            FD_RESERVE);
}

static int bad(const char *prog, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see --help)\n");
    return 2;
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

/* Calls fn for each comma-separated item (copied into a NUL-ended buffer). */
static int each_item(const char *list, int (*fn)(const char *item, void *arg), void *arg)
{
    char item[512];
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 0 || n >= sizeof item)
            return -1;
        memcpy(item, p, n);
        item[n] = '\0';
        if (fn(item, arg) != 0)
            return -1;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static char url_err[300];

static int add_url(const char *item, void *arg)
{
    cb_opts *o = arg;
    if (o->n_urls >= CB_MAX_URLS) {
        snprintf(url_err, sizeof url_err, "at most %d URLs", CB_MAX_URLS);
        return -1;
    }
    return cb_url_parse(item, &o->urls[o->n_urls++], url_err, sizeof url_err);
}

static int add_bind(const char *item, void *arg)
{
    cb_opts *o = arg;
    if (o->n_binds >= CB_MAX_BINDS || inet_pton(AF_INET, item, &o->binds[o->n_binds]) != 1)
        return -1;
    o->n_binds++;
    return 0;
}

static int add_pid(const char *item, void *arg)
{
    cb_opts *o = arg;
    double v;
    if (o->n_gw_pids >= CB_MAX_PIDS || !parse_num(item, 1, 4194304, &v) || v != (long)v)
        return -1;
    o->gw_pids[o->n_gw_pids++] = (pid_t)v;
    return 0;
}

static void defaults(cb_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mode = CB_MODE_IDLE;
    o->procs = o->threads = 1;
    o->conns = 1000;
    o->pairs = 100;
    o->ramp = 2000;
    o->inflight = 256;
    o->duration_s = 10;
    o->rate = 10;
    o->drain_s = 5;
    o->jitter_ms = 1000;
    o->backoff_ms = 100;
    o->backoff_max_ms = 5000;
    o->connect_timeout_s = 10;
    o->seed = (uint64_t)cb_now_ns();
}

long cb_opts_total_conns(const cb_opts *o)
{
    return o->mode == CB_MODE_CHAT ? 2 * o->pairs : o->conns;
}

static int set_mode(cb_opts *o, const char *s)
{
    for (int m = 0; m < 4; m++)
        if (strcmp(s, mode_names[m]) == 0) {
            o->mode = (cb_mode)m;
            return 0;
        }
    return -1;
}

/* One option's value into o. Returns 0 or 2 (message printed). */
static int apply(cb_opts *o, const char *prog, int key, const char *name, const char *v)
{
    double x;
#define NUM(lo, hi)                                                           \
    do {                                                                      \
        if (!parse_num(v, lo, hi, &x))                                        \
            return bad(prog, "--%s: '%s' is not a number in range", name, v); \
    } while (0)
    switch (key) {
    case 'u':
        o->n_urls = 0;
        if (each_item(v, add_url, o) != 0)
            return bad(prog, "--url: %s%s", url_err[0] ? url_err : "empty item", "");
        return 0;
    case 'b':
        o->n_binds = 0;
        if (each_item(v, add_bind, o) != 0)
            return bad(prog, "--bind: '%s' is not a list of IPv4 addresses (at most %s)", v,
                       "256");
        return 0;
    case O_GW_PID:
        o->n_gw_pids = 0;
        if (each_item(v, add_pid, o) != 0)
            return bad(prog, "--gateway-pid: '%s' is not a list of pids%s", v, "");
        return 0;
    case 'p':
        NUM(1, 64);
        o->procs = (int)x;
        break;
    case 't':
        NUM(1, 64);
        o->threads = (int)x;
        break;
    case 'n':
        NUM(1, 10000000);
        o->conns = (long)x;
        break;
    case 'P':
        NUM(1, 5000000);
        o->pairs = (long)x;
        break;
    case 'r':
        NUM(0.001, 1000000);
        o->rate = x;
        break;
    case 'd':
        NUM(0.1, 86400);
        o->duration_s = x;
        break;
    case O_RAMP:
        NUM(1, 10000000);
        o->ramp = x;
        break;
    case O_INFLIGHT:
        NUM(1, 100000);
        o->inflight = (int)x;
        break;
    case O_ONE_SENDER: o->one_sender = true; break;
    case O_TEXT_SIZE:
        NUM(0, 4096);
        o->text_size = (int)x;
        break;
    case O_CONV:
        if (strcmp(v, "random") && strcmp(v, "dm"))
            return bad(prog, "--conv: '%s' is not random or dm%s", v, "");
        o->dm = strcmp(v, "dm") == 0;
        break;
    case O_DRAIN:
        NUM(0, 3600);
        o->drain_s = x;
        break;
    case O_THINK:
        NUM(0, 3600000);
        o->think_ms = x;
        break;
    case O_JITTER:
        NUM(0, 3600000);
        o->jitter_ms = x;
        break;
    case O_BACKOFF:
        NUM(1, 3600000);
        o->backoff_ms = x;
        break;
    case O_BACKOFF_MAX:
        NUM(1, 3600000);
        o->backoff_max_ms = x;
        break;
    case O_DROP:
        if (strcmp(v, "fin") && strcmp(v, "rst"))
            return bad(prog, "--drop: '%s' is not fin or rst%s", v, "");
        o->drop_rst = strcmp(v, "rst") == 0;
        break;
    case O_CONNECT_TIMEOUT:
        NUM(0.1, 3600);
        o->connect_timeout_s = x;
        break;
    case O_SETUP_TIMEOUT:
        NUM(1, 86400);
        o->setup_timeout_s = x;
        break;
    case O_JSON: o->json = true; break;
    case 'q': o->quiet = true; break;
    case O_SEED:
        NUM(0, 9007199254740991.0);
        o->seed = (uint64_t)x;
        break;
    case O_MODE:
        if (set_mode(o, v) != 0)
            return bad(prog, "unknown mode '%s'%s", v, "");
        break;
    }
    return 0;
#undef NUM
}

/* Cross-option rules: things one option alone cannot check. */
static int check(cb_opts *o, const char *prog)
{
    char a[64], b[64];
    if (o->n_urls == 0) {
        char err[300];
        if (cb_url_parse("ws://127.0.0.1:8080/ws", &o->urls[0], err, sizeof err) != 0)
            return bad(prog, "%s%s", err, "");
        o->n_urls = 1;
    }
    if (o->procs * o->threads > CB_MAX_WORKERS)
        return bad(prog, "--procs x --threads is at most %s%s", "256", "");
    if (o->backoff_max_ms < o->backoff_ms)
        o->backoff_max_ms = o->backoff_ms;
    long total = cb_opts_total_conns(o);
    long workers = (long)o->procs * o->threads;
    if (total < workers * (o->mode == CB_MODE_CHAT ? 2 : 1)) {
        snprintf(a, sizeof a, "%ld", workers);
        return bad(prog, "fewer connections (or pairs) than workers (%s)%s", a, "");
    }
    struct rlimit rl;
    long cap = 20000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        cap = (long)rl.rlim_cur;
    long per_proc = (total + o->procs - 1) / o->procs;
    if (o->mode == CB_MODE_CHAT)
        per_proc += 2; /* pairs are not split, so a process may get one more */
    if (per_proc > cap - FD_RESERVE) {
        snprintf(a, sizeof a, "%ld", per_proc);
        snprintf(b, sizeof b, "%ld", cap - FD_RESERVE);
        return bad(prog,
                   "%s connections per process exceed the open-files limit (%s usable): "
                   "raise --procs",
                   a, b);
    }
    if (o->setup_timeout_s == 0) {
        o->setup_timeout_s = (double)total / o->ramp + o->connect_timeout_s + 30;
        if (o->mode == CB_MODE_CHAT)
            o->setup_timeout_s += (double)o->pairs * 0.02; /* pairs are formed one at a time */
    }
    return 0;
}

int cb_opts_parse(cb_opts *o, int argc, char **argv)
{
    const char *prog = argc > 0 ? argv[0] : "chat-bench";
    struct option lo[N_DEFS + 1];
    char shorts[3 * N_DEFS + 2];
    size_t ns = 0;
    shorts[ns++] = ':'; /* missing arguments reported as ':' */
    for (size_t i = 0; i < N_DEFS; i++) {
        lo[i] = (struct option){defs[i].name, defs[i].arg ? required_argument : no_argument,
                                NULL, defs[i].key};
        if (defs[i].key < 256) {
            shorts[ns++] = (char)defs[i].key;
            if (defs[i].arg)
                shorts[ns++] = ':';
        }
    }
    shorts[ns] = '\0';
    lo[N_DEFS] = (struct option){0};

    defaults(o);
    bool have_mode = false;
    opterr = 0;
    optind = 1;
    for (;;) {
        int idx = -1;
        int key = getopt_long(argc, argv, shorts, lo, &idx);
        if (key == -1)
            break;
        if (key == 'h') {
            usage(stdout, prog);
            return 1;
        }
        if (key == '?' || key == ':') {
            const char *what = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
            return bad(prog,
                       key == ':' ? "option '%s' needs a value%s" : "unknown option '%s'%s",
                       what, "");
        }
        const char *name = "?";
        for (size_t i = 0; i < N_DEFS; i++)
            if (defs[i].key == key)
                name = defs[i].name;
        if (key == O_MODE)
            have_mode = true;
        int rc = apply(o, prog, key, name, optarg);
        if (rc)
            return rc;
    }
    for (int i = optind; i < argc; i++) {
        if (have_mode)
            return bad(prog, "unexpected argument '%s'%s", argv[i], "");
        if (set_mode(o, argv[i]) != 0)
            return bad(prog, "unknown mode '%s' (idle, chat, match or storm)%s", argv[i], "");
        have_mode = true;
    }
    if (!have_mode)
        return bad(prog, "no MODE given (idle, chat, match or storm)%s%s", "", "");
    return check(o, prog);
}
