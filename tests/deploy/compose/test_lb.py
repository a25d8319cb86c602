"""deploy.compose_lb: deploy/compose/haproxy.cfg, run for real on loopback in
front of two real gateways of this build (tests/integration/cluster.py).

The very file compose mounts is used, unchanged: every address that differs
here is one of its environment variables (CHAT_LB_BIND, CHAT_LB_STATS_BIND,
CHAT_LB_DNS, CHAT_LB_GATEWAYS, CHAT_LB_SLOTS). HAProxy finds the gateways the
way it does under compose, by asking a DNS server again and again: here
dnsstub.py on 127.0.0.1 plays Docker's DNS, answering an SRV name with one
record per gateway (the two gateways of one machine differ by port, not by
address as replicas under compose do).

In order (each step needs the one before):
 1. a gateway that appears in the DNS answer (a scale-up) gets connections
    within a bounded time; before that, everything goes to the first one;
 2. WebSocket connections through the LB land on both gateways, and two users
    placed on different gateways through it are matched and chat;
 3. the web client and the health endpoints pass through, /metrics does not;
 4. a gateway drained with chatctl (its /readyz answers 503) is taken out
    within a bounded time: every connect through the LB meanwhile succeeds
    (a 503 is retried on the other gateway), and afterwards new connections all
    go to the other gateway (the drained one's LB session count stays put);
    the drained gateway's WebSockets are closed with 1001 through the LB.
"""

import asyncio
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import cluster  # noqa: E402
from client import connect, pair  # noqa: E402
from cluster import http_get  # noqa: E402
from dnsstub import DnsStub  # noqa: E402

HAPROXY_CFG = os.environ.get("CHAT_TEST_HAPROXY_CFG", os.path.join(ROOT, "deploy", "compose", "haproxy.cfg"))
SLOTS = 4
DETECT_S = 15       # bound for the LB to see a new gateway, or a drained one
METRIC_S = 10       # bound for a gateway's connection gauge to show a change

CLUSTER = cluster.Cluster(gateways=2, name="compose-lb")
DNS = None
LB = None           # the haproxy Popen
LB_PORT = STATS_PORT = None
LB_LOG = None


def haproxy_bin():
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def setUpModule():
    global DNS, LB, LB_PORT, STATS_PORT, LB_LOG
    if cluster.external_url():
        raise unittest.SkipTest("runs its own gateways (CHAT_TEST_EXTERNAL_URL is set)")
    hp = haproxy_bin()
    if not hp:
        raise RuntimeError("haproxy not found (apt-get install haproxy; tests/deploy/compose.deps)")
    CLUSTER.start()
    try:
        DNS = DnsStub().start()
        DNS.set_gateways([CLUSTER.gateway_ports[0]])  # step 1 adds the second
        LB_PORT, STATS_PORT = cluster.free_port(), cluster.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        env.update({"CHAT_LB_BIND": f"127.0.0.1:{LB_PORT}", "CHAT_LB_STATS_BIND": f"127.0.0.1:{STATS_PORT}",
                    "CHAT_LB_DNS": DNS.address, "CHAT_LB_GATEWAYS": DNS.srv_name,
                    "CHAT_LB_SLOTS": str(SLOTS)})
        check = subprocess.run([hp, "-c", "-f", HAPROXY_CFG], env=env, capture_output=True, text=True,
                               timeout=30)
        if check.returncode != 0:
            raise AssertionError(f"haproxy -c rejects {HAPROXY_CFG}:\n{check.stdout}{check.stderr}")
        LB_LOG = os.path.join(CLUSTER.tmp, "haproxy.log")
        with open(LB_LOG, "ab") as log:
            LB = subprocess.Popen([hp, "-db", "-f", HAPROXY_CFG], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        wait_for(lambda: stats_rows() is not None, 10, "haproxy's stats page")
    except BaseException:
        tearDownModule(quiet=True)
        raise


def tearDownModule(quiet=False):
    global LB, DNS
    if LB is not None:
        if LB.poll() is None:
            LB.send_signal(signal.SIGTERM)
            try:
                LB.wait(10)
            except subprocess.TimeoutExpired:
                LB.kill()
                LB.wait()
        LB = None
    if DNS is not None:
        DNS.stop()
        DNS = None
    if quiet:
        CLUSTER.stop_quietly()
    else:
        CLUSTER.stop()


# ---- helpers ------------------------------------------------------------------------

def wait_for(pred, timeout, what):
    """Polls pred() every 50 ms until it returns something true; returns it and the time taken."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        if LB is not None and LB.poll() is not None:
            raise AssertionError(f"haproxy exited ({LB.returncode}) while waiting for {what}\n{lb_log()}")
        try:
            last = pred()
        except OSError as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout}s (last: {last!r})\nstats: {stats_rows()}\n{lb_log()}")


def lb_log(lines=30):
    return "haproxy log:\n" + (cluster._tail(LB_LOG, lines) if LB_LOG else "(none)")


def stats_rows():
    """The gateway slots of haproxy's stats (CSV): [{svname, addr, status, stot, scur}]."""
    try:
        status, body, _ = http_get(f"http://127.0.0.1:{STATS_PORT}", "/stats;csv", timeout=2)
    except OSError:
        return None
    if status != 200:
        return None
    text = body.decode().lstrip("# ")
    return [r for r in csv.DictReader(io.StringIO(text))
            if r["pxname"] == "gateways" and r["svname"] not in ("FRONTEND", "BACKEND")]


def slot(port):
    """The stats row of the slot serving 127.0.0.1:port, or None."""
    for r in stats_rows() or []:
        if r.get("addr") == f"127.0.0.1:{port}":
            return r
    return None


def is_up(port):
    """In the pool and not on its way out ("UP 1/2": a check failed, one more takes it out)."""
    r = slot(port)
    return r is not None and r["status"] == "UP"


def is_down(port):
    r = slot(port)
    return r is not None and r["status"].startswith("DOWN")


def gauges():
    return [CLUSTER.metric(i, "chat_gateway_connections_open") for i in range(2)]


def wait_gauges(want, what):
    return wait_for(lambda: gauges() == want, METRIC_S, f"{what}: connections_open {want} (now {gauges()})")


def lb_url(path="/ws"):
    return f"ws://127.0.0.1:{LB_PORT}{path}"


class LoadBalancerTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def lb_connect(self, **kw):
        c = await connect(lb_url(), **kw)
        self._clients.append(c)
        return c

    async def landed(self, before):
        """After one new connection: which gateway (0 or 1) it landed on, from the gauges."""
        got = await asyncio.to_thread(
            wait_for, lambda: (lambda g: g if sum(g) == sum(before) + 1 else None)(gauges()),
            METRIC_S, "the new connection in a gateway's connections_open")
        return 0 if got[0] == before[0] + 1 else 1

    async def close_all(self):
        for c in self._clients:
            await c.close()
        self._clients = []
        await asyncio.to_thread(wait_gauges, [0, 0], "every client closed")

    async def test_1_a_gateway_added_to_the_dns_answer_gets_connections(self):
        p1, p2 = CLUSTER.gateway_ports
        t = time.monotonic()
        await asyncio.to_thread(wait_for, lambda: is_up(p1), DETECT_S, f"gw1 (127.0.0.1:{p1}) UP in haproxy")
        print(f"\n  gw1 UP {time.monotonic() - t:.1f}s after haproxy started", file=sys.stderr)
        self.assertIsNone(slot(p2), "gw2 is in the pool before the DNS names it")
        for _ in range(3):
            await self.lb_connect()
        await asyncio.to_thread(wait_gauges, [3, 0], "three clients through the LB, one gateway named")
        await self.close_all()
        DNS.set_gateways([p1, p2])  # docker compose up --scale svc-gateway=2
        t = time.monotonic()
        await asyncio.to_thread(wait_for, lambda: is_up(p2), DETECT_S, f"gw2 (127.0.0.1:{p2}) UP after the "
                                "DNS answer grew")
        print(f"  gw2 UP {time.monotonic() - t:.1f}s after the DNS answer named it", file=sys.stderr)
        self.assertTrue(is_up(p1), f"gw1 went away: {stats_rows()}")

    async def test_2_connections_spread_and_users_on_different_gateways_chat(self):
        p1, p2 = CLUSTER.gateway_ports
        await asyncio.to_thread(wait_for, lambda: is_up(p1) and is_up(p2), DETECT_S, "both gateways UP")
        for _ in range(6):
            await self.lb_connect()
        g = await asyncio.to_thread(wait_for, lambda: (lambda g: g if sum(g) == 6 else None)(gauges()),
                                    METRIC_S, "six connections on the gateways")
        print(f"\n  six connections through the LB: gw1 {g[0]}, gw2 {g[1]}", file=sys.stderr)
        self.assertTrue(g[0] >= 1 and g[1] >= 1, f"the LB sent every connection to one gateway: {g}")
        await self.close_all()

        # Two users on different gateways, both through the LB.
        a = await self.lb_connect()
        ga = await self.landed([0, 0])
        b, gb, extra = None, None, []
        for _ in range(6):  # bounded: leastconn sends the next one to the other gateway
            before = gauges()
            b = await self.lb_connect()
            gb = await self.landed(before)
            if gb != ga:
                break
            extra.append(b)
        self.assertNotEqual(ga, gb, "six connects after a's all landed on a's gateway")
        print(f"  a on gw{ga + 1}, b on gw{gb + 1}", file=sys.stderr)
        conv = await pair(a, b)
        for i in range(3):
            cmid = await a.send_text(conv, f"a->b {i}")
            ack = await a.expect_ack(conv, cmid, seq=2 * i + 1)
            await b.expect_message(conv, a.user_id, f"a->b {i}", seq=2 * i + 1, msg_id=ack["msg_id"])
            cmid = await b.send_text(conv, f"b->a {i}")
            ack = await b.expect_ack(conv, cmid, seq=2 * i + 2)
            await a.expect_message(conv, b.user_id, f"b->a {i}", seq=2 * i + 2, msg_id=ack["msg_id"])
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect("chat_ended", conversation_id=conv, by="you")
        await b.expect("chat_ended", conversation_id=conv, by="partner")
        await self.close_all()

    async def test_3_http_passes_but_metrics_stay_inside(self):
        base = f"http://127.0.0.1:{LB_PORT}"
        for path, want in (("/", 200), ("/healthz", 200), ("/readyz", 200), ("/metrics", 404)):
            status, _, _ = await asyncio.to_thread(http_get, base, path)
            self.assertEqual(status, want, f"GET {path} through the LB")

    async def test_4_a_drained_gateway_gets_no_new_connections(self):
        p1, p2 = CLUSTER.gateway_ports
        await asyncio.to_thread(wait_for, lambda: is_up(p1) and is_up(p2), DETECT_S, "both gateways UP")
        old = [await self.lb_connect() for _ in range(4)]
        g = await asyncio.to_thread(wait_for, lambda: (lambda g: g if sum(g) == 4 else None)(gauges()),
                                    METRIC_S, "four connections on the gateways")
        self.assertGreaterEqual(g[0], 1, f"no connection on gw1 to drain: {g}")
        on_gw1 = g[0]

        drain = asyncio.create_task(asyncio.to_thread(CLUSTER.chatctl, "drain", "gw1", "--over", "1"))
        await asyncio.to_thread(wait_for, lambda: CLUSTER.readyz(0) == 503, 10, "gw1 /readyz 503 (draining)")
        t0 = time.monotonic()
        during = 0
        # Until haproxy's check takes gw1 out, every connect through the LB still
        # succeeds: gw1 refuses the upgrade with 503 and haproxy retries it on gw2.
        while not is_down(p1):
            self.assertLess(time.monotonic() - t0, DETECT_S,
                            f"gw1 still UP in haproxy {DETECT_S}s after it began draining: {slot(p1)}")
            await self.lb_connect()
            during += 1
            await asyncio.sleep(0.1)
        detect = time.monotonic() - t0
        r = slot(p1)
        print(f"\n  gw1 out of the pool ({r['status']}) {detect:.1f}s after /readyz said 503; "
              f"{during} connects meanwhile, all connected ({r['wredis']} of them refused by gw1 and "
              f"redispatched to gw2)", file=sys.stderr)
        rc, out, err = await drain
        self.assertEqual(rc, 0, f"chatctl drain gw1: {out}{err}")
        self.assertIn("gw1 drained", out + err)

        sessions = int(slot(p1)["stot"])
        before = gauges()
        self.assertEqual(before[0], 0, f"the drained gw1 still has connections: {before}")
        for _ in range(6):
            await self.lb_connect()
        await asyncio.to_thread(wait_gauges, [0, before[1] + 6], "six new connections, all on gw2")
        self.assertEqual(int(slot(p1)["stot"]), sessions, f"haproxy sent gw1 new sessions: {slot(p1)}")
        self.assertTrue(is_down(p1), f"gw1 back in the pool while draining: {slot(p1)}")

        # The drained gateway's WebSockets were closed with 1001, through the LB.
        closed = await asyncio.to_thread(
            wait_for, lambda: (lambda c: c if len(c) == on_gw1 else None)(
                [c for c in old if c.ws.close_code is not None]),
            METRIC_S, f"the {on_gw1} clients of gw1 closed (codes: {[c.ws.close_code for c in old]})")
        for c in closed:
            self.assertEqual(c.ws.close_code, 1001, "a drained connection's close code")
        await self.close_all()


if __name__ == "__main__":
    unittest.main()
