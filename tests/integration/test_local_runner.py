"""deploy/local/run.sh as an operator runs it: CHAT_REPLICAS=2 and CHAT_GATEWAYS=2 on free
loopback ports, chat across both gateways and every replica, a replica killed with -9 is
started again (1 s, then 2 s: the backoff doubles), the cluster is whole again, and SIGTERM
stops everything it started. Under CHAT_TEST_TLS=1 the runner is started with CHAT_TLS=1:
the same, over the mutually authenticated internal plane it sets up itself."""
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import cluster
from client import ANY, connect, is_id

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = os.path.join(ROOT, "deploy", "local", "run.sh")
READY_S = 120  # a sanitizer build, a fresh initdb and nine processes on a busy machine


def free_base():
    """A port p with p, p+1, p+10 and p+11 free: replicas 1 and 2 of a service (rpc, pub)."""
    return cluster.free_port((0, 1, 10, 11))


class Runner:
    """The runner process and every line it prints, awaitable by pattern."""

    def __init__(self, env, log_path):
        self.lines, self.cond = [], threading.Condition()
        self.log = open(log_path, "w")
        self.popen = subprocess.Popen([RUNNER, "--no-deps", "--no-build"], env=env,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.write(line + "\n")
            self.log.flush()
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # EOF
            self.cond.notify_all()

    def wait_line(self, pattern, timeout, start=0):
        """The first match of pattern in lines[start:], waiting up to timeout s."""
        rx, deadline = re.compile(pattern), time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    if line is None:
                        raise AssertionError(f"runner exited before printing /{pattern}/")
                    m = rx.search(line)
                    if m:
                        return i, m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no /{pattern}/ from the runner within {timeout}s")
                self.cond.wait(left)

    def text(self):
        with self.cond:
            return "\n".join(l for l in self.lines if l is not None)


def metric(port, name, label):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f'{name}{{service="{label}"}} '):
                return int(float(line.split()[-1]))
    return None


async def until(cond, timeout, what):
    """Checks cond() every 50 ms until true (there is no event to await), bounded."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.05)


@unittest.skipIf(cluster.external_url(), "runs its own cluster with deploy/local/run.sh")
class LocalRunnerTest(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="chat-it-runner-")
        os.chmod(self.tmp, 0o755)  # PostgreSQL runs as postgres under the state dir
        self.gw_port = free_base()
        self.tls = os.environ.get("CHAT_TEST_TLS") == "1"
        scheme = "tls+tcp://" if self.tls else "tcp://"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        env.update({
            "CHAT_STATE_DIR": os.path.join(self.tmp, "state"),
            "CHAT_BUILD_DIR": os.path.dirname(os.environ["CHAT_BIN_DIR"].rstrip("/")),
            "CHAT_PG_PORT": str(cluster.free_port()),
            "CHAT_REDIS_PORT": str(cluster.free_port()),
            "CHAT_GATEWAY_PORT": str(self.gw_port),
            "CHAT_GATEWAYS": "2",
            "CHAT_REPLICAS": "2",
            "CHAT_READY_TIMEOUT_S": str(READY_S),
            "CHAT_RATE_PER_MIN": "0",  # passed through to the services
            "CHAT_TLS": "1" if self.tls else "0",
        })
        for svc in ("MESSAGE", "MATCH", "PRESENCE"):
            p, q = free_base(), free_base()
            env[f"CHAT_{svc}_LISTEN"] = f"{scheme}127.0.0.1:{p}"
            env[f"CHAT_{svc}_PUB_LISTEN"] = f"{scheme}127.0.0.1:{p + 1}"
            env[f"CHAT_{svc}_ADMIN_LISTEN"] = f"{scheme}127.0.0.1:{q}"
            env[f"CHAT_{svc}_HTTP_LISTEN"] = f"127.0.0.1:{q + 1}"
        env["CHAT_GATEWAY_ADMIN_LISTEN"] = f"{scheme}127.0.0.1:{free_base()}"
        self.state = env["CHAT_STATE_DIR"]
        self.runner = Runner(env, os.path.join(self.tmp, "runner.log"))
        self.ok = False

    def tearDown(self):
        r = self.runner
        if r.popen.poll() is None:
            r.popen.send_signal(signal.SIGTERM)  # its cleanup stops what it started
            try:
                r.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                r.popen.kill()
                r.popen.wait()
        r.reader.join(timeout=10)
        r.popen.stdout.close()
        r.log.close()
        if self.ok and not os.environ.get("CHAT_TEST_KEEP_LOGS"):
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            sys.stderr.write(f"runner output kept in {self.tmp}/runner.log\n")

    def pids(self, start=0):
        """name -> pid as listed after `ready:`."""
        i, _ = self.runner.wait_line(r"Ctrl-C stops everything", READY_S, start)
        out = {}
        for line in self.runner.lines[start:i]:
            m = re.match(r"\[run\.sh\]   (\S+) pid (\d+)$", line)
            if m:
                out[m.group(1)] = int(m.group(2))
        return out

    async def chat(self, a, b, conv, first_seq, n):
        for k in range(n):
            text = f"m{first_seq + k}"
            cmid = await a.send_text(conv, text)
            ack = await a.expect_ack(conv, cmid, seq=first_seq + k)
            await b.expect_message(conv, a.user_id, text, seq=first_seq + k, msg_id=ack["msg_id"],
                                   ts=ack["ts"])

    def chatctl_status(self):
        """`chatctl --json status` as an operator types it: nothing but the state dir
        (where run.sh wrote chatctl.env) to find the cluster."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        env["CHAT_STATE_DIR"] = self.state
        out = subprocess.run([os.path.join(os.environ["CHAT_BIN_DIR"], "chatctl"), "--json",
                              "status"], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        return {p["id"]: p for p in json.loads(out.stdout)["processes"]}

    async def whole(self, timeout=30):
        """Every gateway connected to both replicas of each service and all six publishers."""
        for port in (self.gw_port, self.gw_port + 1):
            for svc, want in (("message", 2), ("match", 2), ("presence", 2), ("events", 6)):
                await until(lambda: metric(port, "chat_gateway_backend_peers", svc) == want,
                            timeout, f"gateway :{port} {svc} peers == {want}")

    async def test_replicas_restart_and_stop(self):
        pids = self.pids()
        self.assertEqual(sorted(pids), sorted(
            ["redis", "gateway1", "gateway2"] +
            [f"svc-{s}{r}" for s in ("message", "match", "presence") for r in ("", ".2")]))
        await self.whole()
        if self.tls:  # the runner made its CA and told chatctl where the certificates are
            self.runner.wait_line(r"^\[run\.sh\] internal plane: mutual TLS", 1)
            with open(os.path.join(self.state, "chatctl.env")) as f:
                self.assertIn(f"CHAT_TLS_CERT={self.state}/tls/chatctl.crt", f.read())
        ws = lambda g: f"ws://127.0.0.1:{self.gw_port + g}/ws"
        a, b = await connect(ws(0)), await connect(ws(1))
        try:
            f = await a.request({"type": "open_dm", "user_id": b.user_id}, "conversation",
                                exact=True, conversation_id=is_id, kind="dm", members=ANY)
            conv = f["conversation_id"]
            await self.chat(a, b, conv, 1, 6)  # requests spread over both replicas

            # kill -9: restarted after 1 s, then 2 s, then 4 s, and the third death
            # in a row soon after a start is reported as a crash loop.
            seq = 7
            for n, delay in ((1, 1), (2, 2), (3, 4)):
                victim = pids["svc-message.2"]
                mark = len(self.runner.lines)
                os.kill(victim, signal.SIGKILL)
                self.runner.wait_line(
                    rf"^\[run\.sh\] svc-message\.2 \(pid {victim}\) exited with status 137; "
                    rf"restarting in {delay}s$", 10, mark)
                if n == 3:
                    self.runner.wait_line(
                        r"^\[run\.sh\] CRASH LOOP: svc-message\.2 died 3 times in a row within "
                        r"30s of starting \(last status 137\); its \[svc-message\.2\] lines "
                        r"above say why$", 5, mark)
                else:
                    self.assertFalse([ln for ln in self.runner.lines[mark:] if "CRASH LOOP" in ln])
                _, m = self.runner.wait_line(r"^\[run\.sh\] svc-message\.2 restarted \(pid (\d+)\)$",
                                             delay + 10, mark)
                pids["svc-message.2"] = int(m.group(1))
                await self.whole()
                await self.chat(a, b, conv, seq, 6)
                seq += 6
            await self.chat(b, a, conv, seq, 2)
            # chatctl finds the cluster by itself and sees the supervisor's restarts.
            # Ready is eventually true: a gateway is not while it reconnects to the
            # restarted replica's publisher.
            deadline = time.monotonic() + 30
            while True:
                procs = self.chatctl_status()
                if all(p["ready"] for p in procs.values()) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            self.assertEqual(sorted(procs), sorted(
                ["gw1", "gw2"] + [f"svc-{s}{r}" for s in ("message", "match", "presence")
                                  for r in ("", ".2")]))
            self.assertTrue(all(p["ready"] for p in procs.values()), procs)
            self.assertEqual(procs["svc-message.2"]["restarts"], 3)
            self.assertEqual(procs["svc-message"]["restarts"], 0)
        finally:
            await a.close()
            await b.close()

        # SIGTERM: everything stops, the runner exits 0.
        r = self.runner.popen
        r.send_signal(signal.SIGTERM)
        self.assertEqual(r.wait(timeout=60), 0)
        self.runner.reader.join(timeout=10)
        self.assertIn("[run.sh] stopped", self.runner.lines)
        for name, pid in pids.items():
            with self.assertRaises(ProcessLookupError, msg=f"{name} (pid {pid}) still runs"):
                os.kill(pid, 0)
        text = self.runner.text()
        for mark in cluster.SANITIZER_MARKS:
            self.assertNotIn(mark, text)
        self.ok = True


if __name__ == "__main__":
    unittest.main()
