"""A whole chat cluster for one test module, as plain processes on 127.0.0.1.

One Cluster per test module: a fresh PostgreSQL (initdb into a temp dir),
Redis, svc-message, svc-match, svc-presence and 1..N gateways, every one on a
free port, binaries from $CHAT_BIN_DIR. Logs stay in the temp dir (one file
per process) and their tails are printed when a test fails. Everything is
stopped by pid at the end, also on failure or KeyboardInterrupt.

If $CHAT_TEST_EXTERNAL_URL is set (e.g. ws://127.0.0.1:8080 or
http://host:8080), nothing is started and the tests talk to that gateway;
tests that need to kill services are skipped, and modules that need a
particular service setting run only when the same variable is exported with
the same value (the operator declares how the external cluster runs).

With CHAT_TEST_TLS=1 every internal address is tls+tcp:// and every process
(and chatctl) gets its kind's certificate from a CA made for the cluster by
deploy/tls/gen-certs.sh: the whole suite over the mutually authenticated
internal plane.

Teardown is also a check: services get SIGTERM and must exit 0 within a bound,
and no log may hold a sanitizer report; otherwise the module fails.
"""

import atexit
import contextlib
import os
import re
import shutil
import signal
import random
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

PG_BIN = os.environ.get("CHAT_PG_BIN", "/usr/lib/postgresql/15/bin")
READY_TIMEOUT_S = float(os.environ.get("CHAT_TEST_READY_TIMEOUT_S", "30"))
STOP_TIMEOUT_S = float(os.environ.get("CHAT_TEST_STOP_TIMEOUT_S", "15"))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")
SERVICES = ("svc-message", "svc-match", "svc-presence")
GEN_CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "tls",
                         "gen-certs.sh")

_used_ports = set()


def _port_range():
    """Ports to hand out: below the kernel's ephemeral range, so an outgoing
    connection (nng dialing, a client) can never take one between our check and
    the service's listen."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (10000, low) if low > 12000 else (low // 2, low)


# Ports handed out by any test process on this machine, one file each (its
# content: the owner's pid). Parallel modules (ctest -j) pick at random, but a
# port one of them picked is not bound until its process starts, sometimes a
# second later: without this, another module could take it meanwhile (seen:
# it.local_runner's svc-message "Address in use"). Files of dead owners are
# taken over; a process removes its own at exit.
_PORTS_DIR = os.path.join(tempfile.gettempdir(), "chat-it-ports")


def _claim(port):
    path = os.path.join(_PORTS_DIR, str(port))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    owner = int(f.read() or 0)
                if owner > 0 and owner != os.getpid():
                    os.kill(owner, 0)
                    return False  # alive: its port
            except ProcessLookupError:
                pass  # a dead owner's: take it over
            except (OSError, ValueError):
                return False
            with contextlib.suppress(OSError):
                os.unlink(path)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def _release_claims():
    for q in _used_ports:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(_PORTS_DIR, str(q)))


atexit.register(_release_claims)


def free_port(offsets=(0,)):
    """A TCP port p such that p + each offset is free right now and never handed out
    before by any test process still running (offsets=(0, 1, 10, 11): two replicas'
    rpc and pub ports); random, so parallel test modules rarely even try the same one."""
    lo, hi = _port_range()
    os.makedirs(_PORTS_DIR, exist_ok=True)
    for _ in range(1000):
        port = random.randrange(lo, hi - max(offsets))
        ports = [port + o for o in offsets]
        if any(q in _used_ports for q in ports):
            continue
        try:
            for q in ports:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", q))
        except OSError:
            continue
        claimed = []
        for q in ports:
            if not _claim(q):
                break
            claimed.append(q)
        _used_ports.update(claimed)
        if len(claimed) == len(ports):
            return port
    raise RuntimeError("no free port")


def external_url():
    return os.environ.get("CHAT_TEST_EXTERNAL_URL", "").strip() or None


def http_get(base, path, timeout=5, headers=None):
    """GET base+path; returns (status, body bytes, headers). Never raises on HTTP errors."""
    req = urllib.request.Request(base + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(data.splitlines()[-lines:])


class Proc:
    """One process we started: owns its Popen and its log file."""

    def __init__(self, name, argv, env, log_path, cwd=None):
        self.name, self.argv, self.env, self.log_path, self.cwd = name, argv, env, log_path, cwd
        self.popen = None
        self.generation = 0          # restarts append to the same log with a marker
        self.expected_exit = None    # set when we kill it on purpose

    def start(self):
        self.generation += 1
        log = open(self.log_path, "ab")
        log.write(f"==== start #{self.generation}: {' '.join(self.argv)}\n".encode())
        log.flush()
        try:
            self.popen = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.cwd, start_new_session=True)
        finally:
            log.close()
        self.expected_exit = None

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """Sends sig and reaps the process; returns its exit status."""
        if not self.alive():
            return self.popen.returncode if self.popen else None
        self.expected_exit = -sig
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.name} did not exit within {STOP_TIMEOUT_S}s of signal {sig}")

    def pause(self):
        """SIGSTOP, and returns once every thread has stopped. kill() returning is not that:
        the kernel stops a process's threads one by one, and under CPU contention the others
        keep serving requests for milliseconds. waitpid(WUNTRACED) reports the completed
        group stop (or the exit of a process that died instead)."""
        self.popen.send_signal(signal.SIGSTOP)
        _, status = os.waitpid(self.popen.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            self.popen.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"{self.name} exited ({self.popen.returncode}) instead of stopping")

    def resume(self):
        """SIGCONT after pause()."""
        if self.popen.returncode is None:
            self.popen.send_signal(signal.SIGCONT)

    def stop(self):
        """SIGTERM, wait; returns a problem description or None. Never hides ASan reports:
        SIGKILL only if SIGTERM did not work in time (and that is a failure)."""
        if self.popen is None:
            return None
        if self.popen.poll() is not None:
            rc = self.popen.returncode
            if self.expected_exit is not None and rc in (0, self.expected_exit):
                return None  # we stopped it on purpose and did not restart it
            return f"{self.name} had already exited with status {rc}"
        self.popen.send_signal(signal.SIGTERM)
        try:
            rc = self.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            return f"{self.name} ignored SIGTERM for {STOP_TIMEOUT_S}s (killed)"
        if rc != 0:
            return f"{self.name} exited with status {rc} after SIGTERM"
        return None

    def tail(self, lines=40):
        return _tail(self.log_path, lines)

    def log_text(self):
        """The whole log so far (every generation)."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def sanitizer_report(self):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return None
        for mark in SANITIZER_MARKS:
            if mark in text:
                return mark
        return None


class Cluster:
    """Starts and stops the processes of one test module.

    env: overrides for every service (e.g. {"CHAT_RATE_PER_MIN": "3"}).
    gateways: how many gateways (consecutive ids gw1, gw2, ...).
    replicas: processes per service, e.g. {"match": 2}; the first is named
    "svc-match", the others "svc-match.2", ...; every caller knows them all.
    """

    def __init__(self, gateways=1, env=None, name=None, replicas=None, named=False, tls=None,
                 redis_password=None, redis_aof=False):
        # CHAT_TEST_GATEWAYS / CHAT_TEST_REPLICAS raise every module's counts to at least
        # that many (the whole suite against N gateways x M replicas of every service).
        self.n_gateways = max(gateways, int(os.environ.get("CHAT_TEST_GATEWAYS", "1")))
        least = int(os.environ.get("CHAT_TEST_REPLICAS", "1"))
        self.replicas = {n: max(least, int((replicas or {}).get(n, 1)))
                         for n in ("message", "match", "presence")}
        self.env_overrides = dict(env or {})
        # named: replica i of a service listens on 127.0.0.(2+i) (all on the same two
        # ports) and callers know each service by one name, {svc}.chat.test, that the
        # hosts file CHAT_HOSTS_FILE resolves to its replicas (name_replicas() edits it).
        self.named = named
        self.named_ports, self.named_active = {}, {}
        self.name = name or "cluster"
        self.external = external_url()
        self.procs = {}
        self.tmp = None
        self.pg_port = None
        self.pg_data = None
        self.gateway_ports = []
        self.started = False
        self.keep_logs = False       # set when a test failed: stop() keeps the temp dir
        self._pg_started = False
        # Known to the tests so they can mint tokens (e.g. an expired one); for an
        # external cluster only when the operator exports it.
        self.session_secret = (os.environ.get("CHAT_SESSION_SECRET") if self.external
                               else "integration-test-secret-" + self.name)
        # The admin secret every process is given (chatctl carries it).
        self.admin_token = (os.environ.get("CHAT_ADMIN_TOKEN") if self.external
                            else "integration-admin-token-" + self.name)
        # Process name -> its admin address (tcp://...) and health/metrics host:port.
        self.admin_addr, self.http_addr = {}, {}
        # The internal plane's transport (tls=True or CHAT_TEST_TLS=1: mutual TLS).
        self.tls = not self.external and (tls if tls is not None
                                          else os.environ.get("CHAT_TEST_TLS") == "1")
        self.scheme = "tls+tcp://" if self.tls else "tcp://"
        # A Redis that requires a password: the services get it from a file.
        self.redis_password = redis_password
        # redis_aof: Redis keeps an append-only file in its dir, as deploy/ runs it, so
        # a restart after kill_redis() finds its data (restart_redis(wipe=True) does not).
        self.redis_aof = redis_aof

    # ---- addresses -------------------------------------------------------
    def ws_url(self, i=0, path="/ws"):
        """ws://… of gateway i (external mode: the one external gateway)."""
        if self.external:
            base = re.sub(r"^http", "ws", self.external.rstrip("/"))
            base = re.sub(r"/ws$", "", base)
            return base + path
        return f"ws://127.0.0.1:{self.gateway_ports[i]}{path}"

    def http_url(self, i=0):
        if self.external:
            base = re.sub(r"^ws", "http", self.external.rstrip("/"))
            return re.sub(r"/ws$", "", base)
        return f"http://127.0.0.1:{self.gateway_ports[i]}"

    def skip_unless_local(self, why="needs to control the cluster's processes"):
        if self.external:
            raise unittest.SkipTest(f"external cluster: {why}")

    # ---- start -----------------------------------------------------------
    def start(self):
        if self.external:
            for k, v in self.env_overrides.items():
                if os.environ.get(k) != v:
                    raise unittest.SkipTest(
                        f"external cluster: this module needs {k}={v}; export it if the cluster runs so")
            self.started = True
            return self
        bin_dir = os.environ.get("CHAT_BIN_DIR")
        if not bin_dir:
            raise RuntimeError("set CHAT_BIN_DIR to the build's bin directory (or CHAT_TEST_EXTERNAL_URL)")
        self.bin_dir = os.path.abspath(bin_dir)
        for prog in SERVICES + ("svc-gateway",):
            if not os.access(os.path.join(self.bin_dir, prog), os.X_OK):
                raise RuntimeError(f"{prog} not found in {self.bin_dir}")
        self.tmp = tempfile.mkdtemp(prefix=f"chat-it-{self.name}-")
        os.chmod(self.tmp, 0o755)  # postgres must be able to traverse it
        atexit.register(self.stop_quietly)
        try:
            self._start_all()
        except BaseException:
            report = self.logs_report()
            self.stop_quietly()
            sys.stderr.write(report)
            raise
        self.started = True
        return self

    def tls_dir(self):
        return os.path.join(self.tmp, "tls")

    def tls_env(self, kind):
        """CHAT_TLS_* for a process of kind ("gateway", "message", ..., "chatctl")."""
        if not self.tls:
            return {}
        d = self.tls_dir()
        return {"CHAT_TLS_CERT": os.path.join(d, f"{kind}.crt"),
                "CHAT_TLS_KEY": os.path.join(d, f"{kind}.key"),
                "CHAT_TLS_CA": os.path.join(d, "ca.crt")}

    def _start_all(self):
        if self.tls:
            subprocess.run([GEN_CERTS, self.tls_dir()], check=True, timeout=60)
        self._start_postgres()
        self._start_redis()
        # Process name -> (REP address, PUB address), per service in replica order.
        self.addr = {}
        for svc in ("message", "match", "presence"):
            if self.named:
                self.named_ports[svc] = (free_port(), free_port())
                self.named_active[svc] = list(range(self.replicas[svc]))
            for i in range(self.replicas[svc]):
                host = f"127.0.0.{2 + i}" if self.named else "127.0.0.1"
                rep, pub = self.named_ports[svc] if self.named else (free_port(), free_port())
                self.addr[self.service_proc(svc, i)] = (f"{self.scheme}{host}:{rep}",
                                                        f"{self.scheme}{host}:{pub}")
        if self.named:
            self._write_hosts()
        base = self._base_env()
        # In dependency order (match calls message, presence calls match), each one
        # listening before the next starts: a caller's first request then finds its
        # peer connected instead of racing the peer's start.
        for svc in ("message", "match", "presence"):
            for i in range(self.replicas[svc]):
                name = self.service_proc(svc, i)
                env = dict(base)
                env[f"CHAT_{svc.upper()}_LISTEN"] = self.addr[name][0]
                env[f"CHAT_{svc.upper()}_PUB_LISTEN"] = self.addr[name][1]
                env.update(self._admin_env(name, svc.upper()))
                env.update(self.tls_env(svc))
                self._add(name, [os.path.join(self.bin_dir, f"svc-{svc}")], env).start()
                self.wait_listening(name)
        for i in range(self.n_gateways):
            port = free_port()
            self.gateway_ports.append(port)
            env = dict(base)
            env["CHAT_GATEWAY_PORT"] = str(port)
            env["CHAT_GATEWAY_ID"] = f"gw{i + 1}"
            env.setdefault("CHAT_GATEWAY_BIND", "127.0.0.1")
            env.update(self._admin_env(f"gateway{i + 1}", "GATEWAY"))
            env.update(self.tls_env("gateway"))
            self._add(f"gateway{i + 1}", [os.path.join(self.bin_dir, "svc-gateway")], env).start()
        for i in range(self.n_gateways):
            self.wait_ready(i)

    def _admin_env(self, name, kind):
        """A process's admin and health addresses (free ports on 127.0.0.1)."""
        self.admin_addr[name] = f"{self.scheme}127.0.0.1:{free_port()}"
        env = {f"CHAT_{kind}_ADMIN_LISTEN": self.admin_addr[name]}
        if kind != "GATEWAY":  # a gateway serves /metrics on its own port
            self.http_addr[name] = f"127.0.0.1:{free_port()}"
            env[f"CHAT_{kind}_HTTP_LISTEN"] = self.http_addr[name]
            env[f"CHAT_{kind}_ID"] = name
        return env

    def admin_addrs(self, kind):
        """Comma-separated admin addresses of every process of a kind
        ("gateway", "message", "match", "presence")."""
        names = ([f"gateway{i + 1}" for i in range(self.n_gateways)] if kind == "gateway"
                 else self.service_procs(kind))
        return ",".join(self.admin_addr[n] for n in names if n in self.admin_addr)

    def metrics_urls(self):
        """Process name -> its /metrics URL, for every process of the cluster."""
        urls = {f"gateway{i + 1}": self.http_url(i) + "/metrics" for i in range(self.n_gateways)}
        urls.update({n: f"http://{a}/metrics" for n, a in self.http_addr.items()})
        return urls

    def chatctl_env(self, token=None):
        """The environment chatctl needs to reach this cluster (token: another secret,
        or "" for none)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        env.update({f"CHAT_{k.upper()}_ADMIN_ADDRS": self.admin_addrs(k)
                    for k in ("gateway", "message", "match", "presence")})
        env["CHAT_ENV_FILE"] = os.devnull  # never the local runner's state dir
        env.update(self.tls_env("chatctl"))
        tok = self.admin_token if token is None else token
        if tok:
            env["CHAT_ADMIN_TOKEN"] = tok
        return env

    def chatctl(self, *args, token=None, timeout=60):
        """Runs the chatctl binary against this cluster: (exit code, stdout, stderr)."""
        self.skip_unless_local("chatctl needs the processes' admin addresses")
        out = subprocess.run([os.path.join(self.bin_dir, "chatctl"), *args],
                             env=self.chatctl_env(token), capture_output=True, text=True,
                             timeout=timeout)
        return out.returncode, out.stdout, out.stderr

    def chatctl_json(self, *args, want=0, **kw):
        """chatctl --json ARGS: the parsed document (asserts the exit code)."""
        import json
        rc, out, err = self.chatctl("--json", *args, **kw)
        assert rc == want, f"chatctl {' '.join(args)}: exit {rc}, wanted {want}\n{out}\n{err}"
        return json.loads(out)

    @staticmethod
    def service_proc(svc, i=0):
        """Process name of replica i (from 0) of service svc ("match")."""
        return f"svc-{svc}" if i == 0 else f"svc-{svc}.{i + 1}"

    def service_procs(self, svc):
        return [self.service_proc(svc, i) for i in range(self.replicas[svc])]

    def _addrs(self, svc, which):
        if self.named:
            return f"{self.scheme}{svc}.chat.test:{self.named_ports[svc][which]}"
        return ",".join(self.addr[n][which] for n in self.service_procs(svc))

    # ---- discovery (named clusters) ------------------------------------------
    @property
    def hosts_file(self):
        return os.path.join(self.tmp, "hosts")

    def _write_hosts(self):
        lines = [f"{svc}.chat.test " + " ".join(f"127.0.0.{2 + i}" for i in idx)
                 for svc, idx in self.named_active.items()]
        tmp = self.hosts_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self.hosts_file)  # readers see the old or the new file, whole

    def name_replicas(self, svc, indices):
        """From now on {svc}.chat.test resolves to these replicas only (0-based)."""
        self.named_active[svc] = list(indices)
        self._write_hosts()

    def _base_env(self):
        # The services' settings come from this module only, never from the shell
        # that runs the tests (a stray CHAT_RATE_PER_MIN would change the results).
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        env.update({
            "CHAT_PG_DSN": f"host=127.0.0.1 port={self.pg_port} dbname=chat user=postgres",
            "CHAT_REDIS_HOST": "127.0.0.1",
            "CHAT_REDIS_PORT": str(self.redis_port),
            "CHAT_MESSAGE_ADDRS": self._addrs("message", 0),
            "CHAT_MATCH_ADDRS": self._addrs("match", 0),
            "CHAT_PRESENCE_ADDRS": self._addrs("presence", 0),
            "CHAT_EVENTS_ADDRS": ",".join(self._addrs(n, 1) for n in ("message", "match", "presence")),
            "CHAT_SESSION_SECRET": self.session_secret,
            "CHAT_ADMIN_TOKEN": self.admin_token,
            "CHAT_LOG_LEVEL": os.environ.get("CHAT_LOG_LEVEL", "info"),
        })
        if self.named:
            env.update({"CHAT_HOSTS_FILE": self.hosts_file, "CHAT_RESOLVE_MS": "200"})
        if self.redis_password:
            env["CHAT_REDIS_PASSWORD_FILE"] = self.redis_password_file
        env.update(self.env_overrides)
        return env

    def _add(self, name, argv, env, cwd=None):
        proc = Proc(name, argv, env, os.path.join(self.tmp, f"{name}.log"), cwd)
        self.procs[name] = proc
        return proc

    def _as_postgres(self, argv):
        if os.getuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def _start_postgres(self):
        self.pg_port = free_port()
        pg_dir = os.path.join(self.tmp, "pg")
        os.mkdir(pg_dir, 0o700)
        if os.getuid() == 0:
            shutil.chown(pg_dir, "postgres", "postgres")
        self.pg_data = os.path.join(pg_dir, "data")
        self.pg_log = os.path.join(self.tmp, "postgres.log")
        with open(self.pg_log, "ab") as log:
            subprocess.run(self._as_postgres([f"{PG_BIN}/initdb", "-D", self.pg_data, "-U", "postgres",
                                              "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                           stdout=log, stderr=subprocess.STDOUT, check=True, timeout=120)
        # The server writes its own log (the pg dir is not ours to write as root).
        self._pg_opts = (f"-c listen_addresses=127.0.0.1 -p {self.pg_port} -k {pg_dir} -c fsync=off "
                         f"-c full_page_writes=off -c max_connections=200")
        self._pg_started = True
        self._pg_ctl_start()
        self.psql("CREATE DATABASE chat", db="postgres")

    def _pg_ctl_start(self):
        subprocess.run(self._as_postgres([f"{PG_BIN}/pg_ctl", "-D", self.pg_data, "-l",
                                          os.path.join(self.tmp, "pg", "server.log"), "-w", "-t", "60",
                                          "-o", self._pg_opts, "start"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=True, timeout=90)

    def psql(self, sql, db="chat"):
        """Runs sql with psql (unaligned, tuples only); returns the output lines."""
        out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                              "-p", str(self.pg_port), "-U", "postgres", "-d", db, "-c", sql],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise AssertionError(f"psql failed: {out.stderr.strip()}")
        return [line for line in out.stdout.splitlines() if line != ""]

    def _start_redis(self):
        self.redis_port = free_port()
        rdir = os.path.join(self.tmp, "redis")
        os.mkdir(rdir)
        argv = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes" if self.redis_aof else "no", "--dir", rdir]
        if self.redis_password:
            argv += ["--requirepass", self.redis_password]
            with open(self.redis_password_file, "w") as f:
                f.write(self.redis_password + "\n")
        self._add("redis", argv, dict(os.environ)).start()
        self._wait_redis()

    def _wait_redis(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            if not self.procs["redis"].alive() or time.monotonic() > deadline:
                raise RuntimeError("redis did not start")
            time.sleep(0.05)

    @property
    def redis_password_file(self):
        return os.path.join(self.tmp, "redis_password")

    # ---- readiness -------------------------------------------------------
    @staticmethod
    def _listening_ports():
        """Local TCP sockets in LISTEN state, as ports and as (IPv4 address, port)
        pairs (from /proc, so nothing connects to them)."""
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        cols = line.split()
                        if cols[3] == "0A":
                            host, port = cols[1].rsplit(":", 1)
                            ports.add(int(port, 16))
                            if len(host) == 8:
                                ip = ".".join(str(b) for b in bytes.fromhex(host)[::-1])
                                ports.add((ip, int(port, 16)))
            except OSError:
                pass
        return ports

    def wait_listening(self, name, timeout=READY_TIMEOUT_S):
        """Waits until service `name` listens on both its REP and PUB addresses (bounded)."""
        want = set()
        for a in self.addr[name]:
            host, port = a.split("://", 1)[1].rsplit(":", 1)
            want.add((host, int(port)) if self.named else int(port))
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while not want <= self._listening_ports():
            if not proc.alive():
                raise AssertionError(f"{name} exited while starting\n" + self.logs_report())
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not listening on {sorted(want)} after {timeout}s\n"
                                     + self.logs_report())
            time.sleep(0.02)

    def metric(self, i, sample):
        """Gateway i's /metrics value of one sample, e.g. "chat_gateway_order_fills_total"
        or 'chat_gateway_backend_peers{service="message"}' (an int; fails when absent)."""
        status, body, _ = http_get(self.http_url(i), "/metrics")
        assert status == 200, f"/metrics of gateway {i}: {status}"
        m = re.search(r"^" + re.escape(sample) + r" (\d+)$", body.decode(), re.M)
        assert m, f"no {sample} in gateway {i}'s /metrics"
        return int(m.group(1))

    def readyz(self, i=0):
        try:
            return http_get(self.http_url(i), "/readyz", timeout=2)[0]
        except OSError:
            return None

    def wait_ready(self, i=0, timeout=READY_TIMEOUT_S, want=200):
        """Polls gateway i's /readyz until it answers `want` (bounded); fails with log tails."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.readyz(i)
            if last == want:
                return
            dead = [p.name for p in self.procs.values()
                    if p.popen is not None and not p.alive() and p.expected_exit is None]
            if dead:
                raise AssertionError(f"process(es) died while waiting for readiness: {dead}\n"
                                     + self.logs_report())
            time.sleep(0.05)
        raise AssertionError(f"gateway{i + 1} /readyz: wanted {want}, last {last} after {timeout}s\n"
                             + self.logs_report())

    # ---- faults ------------------------------------------------------------
    def kill(self, name, sig=signal.SIGKILL):
        """Kills one of our processes (e.g. 'svc-message') and reaps it; returns its status."""
        self.skip_unless_local("kills a service")
        return self.procs[name].kill(sig)

    def restart(self, name):
        """Starts a stopped process again with the same command, ports and env."""
        self.skip_unless_local("restarts a service")
        proc = self.procs[name]
        if proc.alive():
            raise AssertionError(f"{name} is still running")
        proc.start()
        if name.startswith("svc-"):
            self.wait_listening(name)

    def kill_service(self, svc, sig=signal.SIGKILL):
        """Kills every replica of svc ("message"); returns their exit statuses."""
        return [self.kill(n, sig) for n in self.service_procs(svc)]

    def restart_service(self, svc):
        for n in self.service_procs(svc):
            self.restart(n)

    @contextlib.contextmanager
    def paused(self, svc):
        """Every replica of svc ("message") stopped (Proc.pause) for the with-block, then
        continued; or just the process svc names ("svc-message.2")."""
        self.skip_unless_local(f"stops {svc}")
        names = [svc] if svc in self.procs else self.service_procs(svc)
        procs = [self.procs[n] for n in names]
        try:
            for p in procs:
                p.pause()
            yield
        finally:
            for p in procs:
                p.resume()

    # ---- the data stores' faults --------------------------------------------
    # PostgreSQL runs daemonized under pg_ctl (not our child), so it is found by
    # the pid in postmaster.pid and its children by their parent pid; Redis is the
    # Proc "redis". Both come back on the same port with the same data dir.
    def postgres_pids(self):
        """The postmaster's pid followed by its children's (from /proc)."""
        with open(os.path.join(self.pg_data, "postmaster.pid")) as f:
            pm = int(f.readline())
        kids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == pm:
                    kids.append(int(d))
        return [pm] + kids

    @staticmethod
    def _wait_pids(pids, done, what, timeout=STOP_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while not all(done(p) for p in pids):
            if time.monotonic() > deadline:
                raise AssertionError(f"postgres processes {pids} not {what} after {timeout}s")
            time.sleep(0.01)

    @staticmethod
    def _pid_state(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None  # gone

    def kill_postgres(self):
        """SIGKILL to the postmaster and every backend at once (a crash: the restart
        runs PostgreSQL's crash recovery); returns once all of them are gone."""
        self.skip_unless_local("kills postgres")
        pids = self.postgres_pids()
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        self._wait_pids(pids, lambda p: self._pid_state(p) in (None, "Z"), "gone")
        # The postmaster is not our child: where nobody reaps it, it stays a zombie,
        # and a zombie's pid in its lock files makes the new postmaster refuse to start.
        for lock in (os.path.join(self.pg_data, "postmaster.pid"),
                     os.path.join(self.tmp, "pg", f".s.PGSQL.{self.pg_port}.lock")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)

    def restart_postgres(self):
        """pg_ctl start with the same port, options and data dir (waits until it accepts)."""
        self.skip_unless_local("restarts postgres")
        self._pg_ctl_start()

    @contextlib.contextmanager
    def paused_postgres(self):
        """The postmaster and all its backends stopped (state T in /proc, the same
        promise as Proc.pause) for the with-block, then continued."""
        self.skip_unless_local("stops postgres")
        pids = self.postgres_pids()
        try:
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGSTOP)
            self._wait_pids(pids, lambda p: self._pid_state(p) in (None, "T", "t"), "stopped")
            yield
        finally:
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGCONT)

    def kill_redis(self, sig=signal.SIGKILL):
        return self.kill("redis", sig)

    def restart_redis(self, wipe=False):
        """Starts Redis again on its port and dir; wipe=True empties the dir first (a
        Redis that lost its data). Returns once it answers PING."""
        self.skip_unless_local("restarts redis")
        if wipe:
            rdir = os.path.join(self.tmp, "redis")
            shutil.rmtree(rdir)
            os.mkdir(rdir)
        self.restart("redis")
        self._wait_redis()

    # ---- stop ------------------------------------------------------------
    def stop(self):
        """Stops everything (gateways first, PostgreSQL last); raises AssertionError if a
        process misbehaved (exit status, sanitizer report). Removes the temp dir when clean."""
        if self.external or self.tmp is None:
            return
        problems = []
        order = [n for n in self.procs if n.startswith("gateway")] + \
                [n for svc in ("presence", "match", "message") for n in self.service_procs(svc)
                 if n in self.procs]
        for name in order:
            pb = self.procs[name].stop()
            if pb:
                problems.append(pb)
        for name, proc in self.procs.items():
            mark = proc.sanitizer_report()
            if mark:
                problems.append(f"{name}: sanitizer report ({mark!r}) in {proc.log_path}")
        if "redis" in self.procs:
            self.procs["redis"].stop()  # its exit status is not under test
        self._stop_postgres()
        report = self.logs_report() if problems else ""
        tmp, self.tmp = self.tmp, None
        if problems:
            sys.stderr.write(report)
            raise AssertionError("cluster teardown: " + "; ".join(problems) + f" (logs kept in {tmp})")
        if os.environ.get("CHAT_TEST_KEEP_LOGS") or self.keep_logs:
            sys.stderr.write(f"logs kept in {tmp}\n")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    def _stop_postgres(self):
        if not self._pg_started:
            return
        self._pg_started = False
        r = subprocess.run(self._as_postgres([f"{PG_BIN}/pg_ctl", "-D", self.pg_data, "-m", "fast", "-w",
                                              "-t", "30", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        if r.returncode != 0:
            # Last resort, by the pid PostgreSQL wrote itself.
            try:
                with open(os.path.join(self.pg_data, "postmaster.pid")) as f:
                    os.kill(int(f.readline()), signal.SIGQUIT)
            except (OSError, ValueError):
                pass

    def stop_quietly(self):
        """For error paths and atexit: stop everything, report nothing, never raise."""
        if self.tmp is None:
            return
        for proc in list(self.procs.values())[::-1]:
            try:
                if proc.alive():
                    proc.popen.send_signal(signal.SIGTERM)
                    try:
                        proc.popen.wait(timeout=STOP_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        proc.popen.kill()
                        proc.popen.wait()
            except Exception:
                pass
        try:
            self._stop_postgres()
        except Exception:
            pass
        sys.stderr.write(f"chat-it: logs kept in {self.tmp}\n")
        self.tmp = None

    # ---- logs --------------------------------------------------------------
    def logs_report(self, lines=30):
        if self.external or not self.tmp:
            return ""
        out = [f"\n===== logs of cluster {self.name} ({self.tmp}) ====="]
        for name, proc in self.procs.items():
            out.append(f"----- {name} (pid {proc.pid}) -----\n{proc.tail(lines)}")
        pg_server_log = os.path.join(self.tmp, "pg", "server.log")
        if os.path.exists(pg_server_log):
            out.append(f"----- postgres -----\n{_tail(pg_server_log, 15)}")
        return "\n".join(out) + "\n"


class ClusterTestCase(unittest.IsolatedAsyncioTestCase):
    """Base class: `cluster` is the module's Cluster. Clients opened with self.connect()
    are closed after each test; a failing test prints the cluster's log tails."""

    cluster = None

    async def asyncSetUp(self):
        self._clients = []

    async def asyncTearDown(self):
        for c in self._clients:
            await c.close()

    async def connect(self, gw=0, session=None, **kw):
        from client import connect
        c = await connect(self.cluster.ws_url(gw), session=session, **kw)
        self._clients.append(c)
        return c

    def run(self, result=None):
        before = (len(result.failures), len(result.errors)) if result is not None else None
        out = super().run(result)
        if result is not None and (len(result.failures), len(result.errors)) != before and self.cluster:
            sys.stderr.write(self.cluster.logs_report())
            self.cluster.keep_logs = True  # the whole logs, for the post-mortem
        return out


def module_fixtures(cluster):
    """Returns (setUpModule, tearDownModule) for a test module owning `cluster`."""

    def setUpModule():
        cluster.start()

    def tearDownModule():
        cluster.stop()

    return setUpModule, tearDownModule
