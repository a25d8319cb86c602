/* The coordinator: starts the workers (threads here, or forked processes
 * each with their threads), moves every worker from setup to the measured
 * phase at the same instant, measures what only it can (gateway memory),
 * prints progress, enforces the overall deadline and merges the results.
 *
 * Ownership: the cb_shared block is mapped here before any fork and
 * unmapped at the end; each worker (cb_worker) is owned by its thread job;
 * a child's JSON result arrives through its pipe into a buffer owned here. */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_TICK_MS 50
#define RUN_PROGRESS_NS (2 * 1000000000LL)
#define RUN_SETTLE_NS (1000000000LL)     /* idle: let the gateway settle before measuring */
#define RUN_GO_DELAY_NS (200000000LL)    /* every worker sees "go" before it comes */
#define RUN_GRACE_NS (15 * 1000000000LL) /* after stop: how long workers get to report */

static cb_shared *g_sh;
static volatile sig_atomic_t g_signals;

static void on_signal(int sig)
{
    if (g_signals++ > 0 && sig == SIGINT)
        _exit(130); /* a second Ctrl-C: leave at once */
    if (g_sh)
        atomic_store(&g_sh->stop, 1);
}

static void install_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static cb_shared *shared_new(void)
{
    cb_shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return NULL;
    memset(sh, 0, sizeof *sh);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&sh->pair_lock, &a);
    pthread_mutexattr_destroy(&a);
    return sh;
}

/* ---- threads of one process ----------------------------------------------------- */
typedef struct thread_job {
    cb_worker w;
    int id, n_workers;
    const cb_opts *o;
    cb_shared *sh;
    pthread_t th;
    bool started, failed;
} thread_job;

static void *thread_main(void *arg)
{
    thread_job *j = arg;
    if (cb_worker_init(&j->w, j->id, j->n_workers, j->o, j->sh) != 0) {
        j->failed = true;
        atomic_fetch_add(&j->sh->ready, 1);
    } else {
        cb_worker_run(&j->w);
        j->w.ops->finish(&j->w);
    }
    atomic_fetch_add(&j->sh->finished, 1);
    return NULL;
}

static thread_job *threads_start(const cb_opts *o, cb_shared *sh, int first_id, int n_workers)
{
    thread_job *jobs = calloc((size_t)o->threads, sizeof *jobs);
    if (!jobs)
        return NULL;
    for (int i = 0; i < o->threads; i++) {
        thread_job *j = &jobs[i];
        j->id = first_id + i;
        j->n_workers = n_workers;
        j->o = o;
        j->sh = sh;
        j->started = pthread_create(&j->th, NULL, thread_main, j) == 0;
        if (!j->started) {
            j->failed = true;
            atomic_fetch_add(&sh->ready, 1);
            atomic_fetch_add(&sh->finished, 1);
        }
    }
    return jobs;
}

/* Joins, merges into out, frees. Returns the number of failed workers. */
static int threads_join(thread_job *jobs, int n, cb_result *out)
{
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (jobs[i].started)
            pthread_join(jobs[i].th, NULL);
        if (jobs[i].failed)
            failed++;
        else
            cb_result_merge(out, &jobs[i].w.res);
        cb_worker_free(&jobs[i].w);
    }
    free(jobs);
    return failed;
}

/* ---- forked processes ----------------------------------------------------------- */
typedef struct child {
    pid_t pid;
    int fd;    /* read end of its result pipe, -1 at EOF */
    char *buf; /* its JSON result so far (owned) */
    size_t len, cap;
    bool reaped;
} child;

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static void child_main(const cb_opts *o, cb_shared *sh, int proc, int n_workers, int fd)
{
    cb_result *r = calloc(1, sizeof *r);
    thread_job *jobs = threads_start(o, sh, proc * o->threads, n_workers);
    int failed = jobs && r ? threads_join(jobs, o->threads, r) : o->threads;
    if (r && failed < o->threads) {
        cJSON *j = cb_result_to_json(r);
        char *text = cJSON_PrintUnformatted(j);
        if (text)
            write_all(fd, text, strlen(text));
        free(text);
        cJSON_Delete(j);
    }
    free(r);
    close(fd);
    _exit(failed ? 1 : 0);
}

static void child_read(child *ch)
{
    while (ch->fd >= 0) {
        if (ch->cap - ch->len < 65536) {
            size_t cap = ch->cap ? ch->cap * 2 : 262144;
            char *p = realloc(ch->buf, cap);
            if (!p)
                return;
            ch->buf = p;
            ch->cap = cap;
        }
        ssize_t n = read(ch->fd, ch->buf + ch->len, ch->cap - ch->len - 1);
        if (n > 0) {
            ch->len += (size_t)n;
        } else if (n < 0 && (errno == EINTR)) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return;
        } else {
            close(ch->fd);
            ch->fd = -1;
        }
    }
}

/* ---- measuring and progress ----------------------------------------------------- */
static long bench_rss_kib(const child *kids, int n)
{
    long sum = cb_proc_rss_kib(getpid());
    for (int i = 0; i < n; i++)
        if (!kids[i].reaped) {
            long k = cb_proc_rss_kib(kids[i].pid);
            if (k > 0)
                sum += k;
        }
    return sum;
}

static void progress(const cb_opts *o, const cb_shared *sh, double t)
{
    unsigned long long p[CB_P__N];
    for (int i = 0; i < CB_P__N; i++)
        p[i] = atomic_load_explicit(&sh->prog[i], memory_order_relaxed);
    char line[256];
    int n = snprintf(line, sizeof line, "[chat-bench] %6.1fs connected %llu failed %llu", t,
                     p[CB_P_CONNECTED], p[CB_P_FAILED]);
    switch (o->mode) {
    case CB_MODE_CHAT:
        n += snprintf(line + n, sizeof line - (size_t)n, " sent %llu acked %llu delivered %llu",
                      p[CB_P_SENT], p[CB_P_ACKED], p[CB_P_DELIVERED]);
        break;
    case CB_MODE_MATCH:
        n += snprintf(line + n, sizeof line - (size_t)n, " matched %llu", p[CB_P_MATCHED]);
        break;
    case CB_MODE_STORM:
        n += snprintf(line + n, sizeof line - (size_t)n, " resumed %llu", p[CB_P_RESUMED]);
        break;
    case CB_MODE_IDLE: break;
    }
    snprintf(line + n, sizeof line - (size_t)n, " errors %llu", p[CB_P_ERRORS]);
    fprintf(stderr, "%s\n", line);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the run -------------------------------------------------------------------- */
typedef enum { R_SETUP, R_SETTLE, R_HOLD, R_RUN } run_phase;

int cb_run_all(const cb_opts *o, cb_run *run)
{
    memset(run, 0, sizeof *run);
    cb_shared *sh = shared_new();
    if (!sh) {
        fprintf(stderr, "chat-bench: cannot map shared memory: %s\n", strerror(errno));
        return -1;
    }
    g_sh = sh;
    install_signals();
    for (int i = 0; i < o->n_gw_pids; i++)
        run->rss_before_kib[i] = cb_proc_rss_kib(o->gw_pids[i]);
    cb_gw_order order0;
    cb_gw_order_read(o, &order0);

    const int n_workers = o->procs * o->threads;
    const int64_t t_start = cb_now_ns();
    thread_job *jobs = NULL;
    child *kids = calloc((size_t)o->procs, sizeof *kids);
    int n_kids = 0;
    if (!kids)
        return -1;
    fflush(stdout);
    fflush(stderr);
    if (o->procs == 1) {
        jobs = threads_start(o, sh, 0, n_workers);
        if (!jobs)
            return -1;
    } else {
        for (int p = 0; p < o->procs; p++) {
            int fds[2];
            if (pipe2(fds, O_CLOEXEC) != 0)
                break;
            pid_t pid = fork();
            if (pid == 0) {
                close(fds[0]);
                for (int k = 0; k < n_kids; k++)
                    if (kids[k].fd >= 0)
                        close(kids[k].fd);
                child_main(o, sh, p, n_workers, fds[1]);
            }
            close(fds[1]);
            if (pid < 0) {
                close(fds[0]);
                break;
            }
            fcntl(fds[0], F_SETFL, O_NONBLOCK);
            kids[n_kids++] = (child){.pid = pid, .fd = fds[0]};
        }
        /* Workers of processes that could not start will never report. */
        for (int p = n_kids; p < o->procs; p++)
            for (int t = 0; t < o->threads; t++) {
                atomic_fetch_add(&sh->ready, 1);
                atomic_fetch_add(&sh->finished, 1);
            }
        run->workers_lost += (o->procs - n_kids) * o->threads;
    }

    run_phase phase = R_SETUP;
    int64_t setup_deadline = t_start + (int64_t)((o->setup_timeout_s + 10) * 1e9);
    int64_t mark = 0, end_deadline = 0, stop_at = 0, next_progress = t_start + RUN_PROGRESS_NS;
    for (;;) {
        int64_t now = cb_now_ns();
        for (int k = 0; k < n_kids; k++)
            child_read(&kids[k]);
        for (int k = 0; k < n_kids; k++)
            if (!kids[k].reaped && waitpid(kids[k].pid, NULL, WNOHANG) == kids[k].pid)
                kids[k].reaped = true;
        if (!o->quiet && now >= next_progress) {
            progress(o, sh, (double)(now - t_start) / 1e9);
            next_progress += RUN_PROGRESS_NS;
        }
        int ready = atomic_load(&sh->ready), finished = atomic_load(&sh->finished);
        bool kids_done = true;
        for (int k = 0; k < n_kids; k++)
            kids_done = kids_done && kids[k].reaped && kids[k].fd < 0;
        if (finished >= n_workers && kids_done)
            break;
        if (atomic_load(&sh->stop) && !stop_at) {
            stop_at = now;
            run->interrupted = g_signals > 0;
        }
        if (stop_at && now - stop_at > RUN_GRACE_NS) {
            /* Workers that ignore the stop are killed; threads have their own
             * hard deadline, processes get SIGKILL by pid. */
            for (int k = 0; k < n_kids; k++)
                if (!kids[k].reaped)
                    kill(kids[k].pid, SIGKILL);
            if (n_kids == 0 || now - stop_at > 2 * RUN_GRACE_NS)
                break;
        }
        switch (phase) {
        case R_SETUP:
            if (ready >= n_workers || now > setup_deadline) {
                run->setup_s = (double)(now - t_start) / 1e9;
                if (o->mode == CB_MODE_IDLE) {
                    phase = R_SETTLE;
                    mark = now + RUN_SETTLE_NS;
                } else {
                    int64_t go = now + RUN_GO_DELAY_NS;
                    atomic_store(&sh->go_ns, go);
                    end_deadline = go + (int64_t)((o->duration_s + o->drain_s + 30) * 1e9);
                    phase = R_RUN;
                }
            }
            break;
        case R_SETTLE:
            if (now >= mark) {
                phase = R_HOLD;
                mark = now + (int64_t)(o->duration_s * 1e9);
            }
            break;
        case R_HOLD:
            if (now >= mark || atomic_load(&sh->stop)) {
                /* Measured at the end of the hold: any growth while idle counts. */
                for (int i = 0; i < o->n_gw_pids; i++)
                    run->rss_held_kib[i] = cb_proc_rss_kib(o->gw_pids[i]);
                run->bench_rss_kib = bench_rss_kib(kids, n_kids);
                atomic_store(&sh->release, 1);
                end_deadline = now + 60 * 1000000000LL;
                phase = R_RUN;
            }
            break;
        case R_RUN:
            if (now > end_deadline && !atomic_load(&sh->stop)) {
                fprintf(stderr,
                        "chat-bench: workers still busy at the deadline; stopping them\n");
                atomic_store(&sh->stop, 1);
            }
            break;
        }
        sleep_ms(RUN_TICK_MS);
    }

    if (jobs)
        run->workers_lost += threads_join(jobs, o->threads, &run->res);
    for (int k = 0; k < n_kids; k++) {
        if (!kids[k].reaped)
            waitpid(kids[k].pid, NULL, 0); /* exited or SIGKILLed above */
        if (kids[k].fd >= 0)
            close(kids[k].fd);
        if (kids[k].buf && kids[k].len > 0) {
            kids[k].buf[kids[k].len] = '\0';
            if (cb_result_from_json(&run->res, kids[k].buf) != 0)
                run->workers_lost += o->threads;
        } else {
            run->workers_lost += o->threads;
        }
        free(kids[k].buf);
    }
    free(kids);
    run->elapsed_s = (double)(cb_now_ns() - t_start) / 1e9;
    run->cpu_s = cb_self_cpu_s();
    cb_gw_order order1;
    cb_gw_order_read(o, &order1);
    cb_gw_order_diff(&order0, &order1, &run->order);
    if (atomic_load(&sh->stop) && g_signals > 0)
        run->interrupted = true;
    g_sh = NULL;
    munmap(sh, sizeof *sh);
    return 0;
}

/* ---- preflight ------------------------------------------------------------------ */
static int pf_fail(char *err, size_t errlen, const char *url, const char *what)
{
    snprintf(err, errlen, "cannot reach %s: %s", url, what);
    return -1;
}

static int preflight_one(const cb_opts *o, const cb_url *u, char *err, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return pf_fail(err, errlen, u->text, strerror(errno));
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (o->n_binds > 0) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr = o->binds[0]};
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            int e = errno;
            close(fd);
            return pf_fail(err, errlen, u->text,
                           e == EADDRNOTAVAIL ? "--bind address is not local" : strerror(e));
        }
    }
    if (connect(fd, (const struct sockaddr *)&u->addr, sizeof u->addr) != 0) {
        int e = errno;
        close(fd);
        return pf_fail(err, errlen, u->text,
                       e == EINPROGRESS || e == EAGAIN ? "connect timed out" : strerror(e));
    }
    uint64_t rng = (uint64_t)cb_now_ns();
    char key[25], req[1024];
    cb_ws_key(&rng, key);
    int n = cb_ws_request(req, sizeof req, u, NULL, key);
    if (n < 0 || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return pf_fail(err, errlen, u->text, "could not send the upgrade request");
    }
    static uint8_t buf[65536];
    size_t len = 0, head = 0;
    int status = 0, rc = CB_WS_MORE;
    bool closed = false;
    int64_t deadline = cb_now_ns() + 5000000000LL;
    while (cb_now_ns() < deadline && len < sizeof buf) {
        ssize_t k = recv(fd, buf + len, sizeof buf - len, 0);
        if (k <= 0) {
            closed = k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
            break;
        }
        len += (size_t)k;
        if (rc == CB_WS_MORE) {
            rc = cb_ws_response((const char *)buf, len, key, &status, &head);
            if (rc == CB_WS_BAD)
                break;
        }
        cb_ws_frame f;
        if (rc == CB_WS_OK && cb_ws_parse(buf + head, len - head, sizeof buf, &f) == 1)
            break;
    }
    close(fd);
    char what[160];
    if (rc == CB_WS_MORE)
        return pf_fail(err, errlen, u->text,
                       len ? "no complete HTTP answer to the upgrade (not a chat gateway?)"
                       : closed
                           ? "the server closed the connection without answering the upgrade"
                           : "no answer to the upgrade within 5 s");
    if (rc == CB_WS_BAD) {
        snprintf(what, sizeof what,
                 "the upgrade was answered with HTTP %d (not a chat gateway "
                 "at this path?)",
                 status);
        return pf_fail(err, errlen, u->text, what);
    }
    cb_ws_frame f;
    if (cb_ws_parse(buf + head, len - head, sizeof buf, &f) != 1 || f.opcode != CB_OP_TEXT)
        return pf_fail(err, errlen, u->text, "no first frame after the upgrade");
    cJSON *j = cJSON_ParseWithLength((const char *)buf + head + f.hdr_len, f.len);
    const char *type = cb_json_str(j, "type");
    bool ok = type && strcmp(type, "connected") == 0;
    if (!ok)
        snprintf(what, sizeof what, "the first frame is not \"connected\" (type %s)",
                 type ? type : "missing");
    cJSON_Delete(j);
    return ok ? 0 : pf_fail(err, errlen, u->text, what);
}

int cb_preflight(const cb_opts *o, char *err, size_t errlen)
{
    for (int i = 0; i < o->n_urls; i++)
        if (preflight_one(o, &o->urls[i], err, errlen) != 0)
            return -1;
    return 0;
}
