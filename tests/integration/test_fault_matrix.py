"""The fault matrix: 2 gateways x 2 replicas of every service, with 8 DM
conversations chatting across the gateways for the whole module, and each
fault in turn, each followed by its restart (or SIGCONT):

    kill -9 of a gateway, of one replica of svc-message, svc-match and
    svc-presence, of PostgreSQL and of Redis; SIGSTOP of each of them for
    5 s; Redis restarted without its data.

Every member sends a message every 50-100 ms with a unique client_msg_id and
retries the same id on `unavailable`, on a timeout and after a closed
connection (resuming with its session token, with backoff, on its own gateway
first). After each fault and recovery:
  - every acked message is in the conversation's REST history (seq, sender,
    text) and reached the other member, in order, once after dedupe by
    (conversation, seq) (the duplicates the clients saw are counted);
  - `unavailable` only for faults that take the storage path away, and only
    while it is away (up to the recovery, plus svc-message's reconnect
    backoff);
  - the time from the restart until every /readyz is 200 and a fresh probe
    message is acked and delivered end to end;
  - VmRSS of every process some seconds after recovery within +64 MiB of the
    level before the fault.
Redis faults also check presence (a user whose connection closed during the
outage is offline within grace + TTL; live users online) and matching (a
fresh pair matches). At the end everything acked is in PostgreSQL, exactly,
with gapless seqs. A table per fault is printed (docs/RELIABILITY.md)."""

import asyncio
import json
import os
import random
import re
import signal
import sys
import threading
import time
import unittest
import urllib.parse

import websockets
import websockets.exceptions

import cluster
from cluster import http_get

GRACE_MS, TTL_MS, HEARTBEAT_MS = 2000, 3000, 1000
CLUSTER = cluster.Cluster(gateways=2, replicas={"message": 2, "match": 2, "presence": 2},
                          name="fault_matrix", redis_aof=True,
                          env={"CHAT_RATE_PER_MIN": "0", "CHAT_RPC_TIMEOUT_MS": "2000",
                               "CHAT_RECONNECT_GRACE_MS": str(GRACE_MS),
                               "CHAT_GATEWAY_TTL_MS": str(TTL_MS),
                               "CHAT_HEARTBEAT_MS": str(HEARTBEAT_MS)})

PAIRS = 8
ACK_TIMEOUT_S = 3.0        # then the same client_msg_id is sent again
DOWN_S = 1.0               # a killed process stays down this long before its restart
STOP_S = 5.0               # SIGSTOP ... SIGCONT
RECOVERY_TIMEOUT_S = 45.0
DELIVERY_TIMEOUT_S = 30.0
RSS_SETTLE_S = 2.0
RSS_BOUND_KB = 64 * 1024
# After PostgreSQL is back, svc-message's connections reconnect with a backoff of
# up to 2 s (svc-message/pg.c PG_RETRY_MAX_MS): a send may meet one still waiting.
UNAVAILABLE_SLACK_S = 2.5 + 2.0
KINDS = ("gateway", "svc-message", "svc-match", "svc-presence", "redis")


def kind_of(name):
    return "gateway" if name.startswith("gateway") else name.split(".")[0]


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class Stats:
    FIELDS = ("acks", "unavailable", "late_unavailable", "dups", "dup_acks", "timeouts",
              "reconnects")

    def __init__(self):
        for f in self.FIELDS:
            setattr(self, f, 0)
        self.unavailable_at = []
        self.ghost_offline_s = None
        self.unavailable_who = []
        self.recovery_ms = None
        self.rss = {}          # process name -> (before kB, after kB)


class User:
    """One chat member (or a probe / helper when auto=False): a connection that
    resumes by itself, a reader task, and (auto) a sender task."""

    def __init__(self, eng, name, home, auto=True):
        self.eng, self.name, self.home, self.auto = eng, name, home, auto
        self.user_id = self.session = None
        self.conv = self.partner = None
        self.ws = None
        self.gw = None
        self.reader = None
        self.pending = {}          # req -> future of the reply frame
        self.pushes = []           # other pushes (matched, ...), with an event
        self.push_event = asyncio.Event()
        self.msg_event = asyncio.Event()
        self.acked = {}            # client_msg_id -> seq
        self.ack_order = []        # (seq, cmid, text) in ack order
        self.texts = {}            # cmid -> text sent
        self.seen = {}             # conv -> {seq: (from, text)} first occurrence
        self.order = {}            # conv -> [seq] first-occurrence order
        self.n_req = 0
        self.n_msg = 0
        self.last_receipt = {}
        self.stopping = False
        self.task = None

    # ---- connection ----------------------------------------------------------
    async def connect(self, gw):
        url = CLUSTER.ws_url(gw)
        if self.session:
            url += "?session=" + urllib.parse.quote(self.session)
        ws = await asyncio.wait_for(websockets.connect(url, compression=None, max_size=1 << 22,
                                                       ping_interval=None, open_timeout=5,
                                                       close_timeout=2), 8)
        try:
            f = json.loads(await asyncio.wait_for(ws.recv(), 5))
        except BaseException:
            await ws.close()
            raise
        if f.get("type") != "connected":
            await ws.close()
            if f.get("code") == "unauthorized":
                self.eng.violation(f"{self.name}: session refused {f}")
            raise ConnectionError(f"first frame {f}")
        if self.user_id is not None and f["user_id"] != self.user_id:
            self.eng.violation(f"{self.name}: resumed as {f['user_id']}, was {self.user_id}")
        self.user_id, self.session = f["user_id"], f["session"]
        self.ws, self.gw = ws, gw
        self.reader = asyncio.get_running_loop().create_task(self.read(ws))

    async def reconnect(self):
        """Resumes with backoff: its own gateway first, then the other one, alternately."""
        delay = 0.05
        for attempt in range(1000):
            if self.ws is not None and not self.ws.closed:
                return
            gw = (self.home + attempt) % CLUSTER.n_gateways
            try:
                await self.connect(gw)
                self.eng.stats().reconnects += 1
                return
            except (OSError, asyncio.TimeoutError, ConnectionError,
                    websockets.exceptions.WebSocketException):
                pass
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)
        raise AssertionError(f"{self.name}: no reconnect")

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.wait([self.reader], timeout=5)

    async def send(self, obj):
        await self.ws.send(json.dumps(obj))

    async def request(self, obj, timeout=ACK_TIMEOUT_S):
        """Sends obj with a fresh req; the reply frame, or None (timeout, closed)."""
        self.n_req += 1
        req = f"{self.name}-r{self.n_req}"
        fut = asyncio.get_running_loop().create_future()
        self.pending[req] = fut
        try:
            await self.ws.send(json.dumps(dict(obj, req=req)))
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except (asyncio.TimeoutError, websockets.exceptions.ConnectionClosed):
            return None
        finally:
            self.pending.pop(req, None)

    # ---- receiving -------------------------------------------------------------
    async def read(self, ws):
        try:
            async for raw in ws:
                self.on_frame(json.loads(raw))
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_result(None)

    def on_frame(self, f):
        t = f.get("type")
        if t == "ack":
            self.on_ack(f)
        elif t == "message":
            self.on_message(f)
        elif t == "error" and f.get("code") != "unavailable":
            self.eng.violation(f"{self.name}: error {f}")
        req = f.get("req")
        if req is not None and req in self.pending and not self.pending[req].done():
            self.pending[req].set_result(f)
        elif req is None and t not in ("message", "receipt", "presence", "typing"):
            self.pushes.append(f)
            self.push_event.set()

    def on_ack(self, f):
        cmid, seq, conv = f["client_msg_id"], f["seq"], f["conversation_id"]
        if cmid in self.acked:
            if self.acked[cmid] != seq:
                self.eng.violation(f"{self.name}: {cmid} acked as {self.acked[cmid]} and {seq}")
            self.eng.stats().dup_acks += 1
            return
        owner = self.eng.seq_owner.setdefault(conv, {})
        if seq in owner and owner[seq] != cmid:
            self.eng.violation(f"{conv} seq {seq} acked for {owner[seq]} and {cmid}")
        owner[seq] = cmid
        self.acked[cmid] = seq
        self.ack_order.append((seq, cmid, self.texts.get(cmid)))
        self.eng.stats().acks += 1

    def on_message(self, f):
        conv, seq = f["conversation_id"], f["seq"]
        seen = self.seen.setdefault(conv, {})
        if seq in seen:
            self.eng.stats().dups += 1
            if seen[seq] != (f["from"], f["text"]):
                self.eng.violation(f"{self.name}: {conv}/{seq} came as {seen[seq]} and "
                                   f"{(f['from'], f['text'])}")
            return
        order = self.order.setdefault(conv, [])
        if order and seq < order[-1]:
            self.eng.violation(f"{self.name}: {conv} seq {seq} after {order[-1]} (out of order)")
        seen[seq] = (f["from"], f["text"])
        order.append(seq)
        self.msg_event.set()
        # A cumulative delivered receipt now and then bounds the replays of resumes.
        if self.ws is not None and seq - self.last_receipt.get(conv, 0) >= 10:
            self.last_receipt[conv] = seq
            asyncio.get_running_loop().create_task(self.receipt(conv, seq))

    async def receipt(self, conv, seq):
        try:
            await self.send({"type": "receipt", "conversation_id": conv, "seq": seq,
                             "status": "delivered"})
        except websockets.exceptions.ConnectionClosed:
            pass

    async def wait_push(self, type_, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for f in self.pushes:
                if f.get("type") == type_:
                    self.pushes.remove(f)
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.push_event.clear()
            try:
                await asyncio.wait_for(self.push_event.wait(), left)
            except asyncio.TimeoutError:
                pass

    # ---- sending -----------------------------------------------------------------
    async def send_until_acked(self, text, deadline=None):
        """One message, retried with its client_msg_id until acked; returns its seq
        (or None past the deadline)."""
        self.n_msg += 1
        cmid = f"{self.name}-{self.n_msg}-{random.getrandbits(32):08x}"
        self.texts[cmid] = text
        while cmid not in self.acked:
            if deadline is not None and time.monotonic() > deadline:
                return None
            if self.ws is None or self.ws.closed:
                await self.reconnect()
                continue
            f = await self.request({"type": "send", "conversation_id": self.conv, "text": text,
                                    "client_msg_id": cmid})
            if f is None:
                if self.ws is not None and not self.ws.closed:
                    self.eng.stats().timeouts += 1
            elif f.get("type") == "error" and f.get("code") == "unavailable":
                st = self.eng.stats()
                st.unavailable += 1
                st.unavailable_at.append(time.monotonic())
                st.unavailable_who.append(self.name)
                await asyncio.sleep(random.uniform(0.1, 0.2))
        return self.acked[cmid]

    async def run(self):
        while not self.stopping:
            await self.send_until_acked(f"{self.name} says {self.n_msg + 1}")
            await asyncio.sleep(random.uniform(0.05, 0.1))


class Engine:
    """The chat traffic, on an event loop of its own thread for the whole module."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.phase = "setup"
        self.phases = {"setup": Stats()}
        self.phase_order = []
        self.violations = []
        self.seq_owner = {}
        self.users, self.probes = [], []

    def call(self, coro, timeout=120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stats(self):
        return self.phases[self.phase]

    def begin(self, phase):
        self.phases[phase] = Stats()
        self.phase_order.append(phase)
        self.phase = phase
        return self.phases[phase]

    def violation(self, what):
        self.violations.append(f"[{self.phase}] {what}")

    async def _start(self):
        for i in range(PAIRS):
            a, b = User(self, f"a{i}", 0), User(self, f"b{i}", 1)
            await a.connect(0)
            await b.connect(1)
            await self.open_dm(a, b)
            self.users += [a, b]
        pa, pb = User(self, "probe-a", 0, auto=False), User(self, "probe-b", 1, auto=False)
        await pa.connect(0)
        await pb.connect(1)
        await self.open_dm(pa, pb)
        self.probes = [pa, pb]
        for u in self.users:
            u.task = self.loop.create_task(u.run())

    async def open_dm(self, a, b):
        for x, y in ((a, b), (b, a)):
            f = await x.request({"type": "open_dm", "user_id": y.user_id}, timeout=10)
            assert f and f.get("type") == "conversation", f"open_dm: {f}"
            x.conv, x.partner = f["conversation_id"], y
        assert a.conv == b.conv

    def start(self):
        self.thread.start()
        self.call(self._start())

    async def _stop(self):
        for u in self.users:
            u.stopping = True
        done, pending = await asyncio.wait([u.task for u in self.users], timeout=DELIVERY_TIMEOUT_S)
        for t in done:
            if t.exception():
                self.violation(f"sender failed: {t.exception()!r}")
        if pending:
            self.violation(f"{len(pending)} senders still waiting for an ack after the traffic stopped")

    def stop_traffic(self):
        self.call(self._stop())

    async def _close(self):
        for u in self.users + self.probes:
            if u.task is not None and not u.task.done():
                u.task.cancel()
            await u.close()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in rest:
            t.cancel()
        await asyncio.wait(rest, timeout=5) if rest else None

    def close(self):
        try:
            self.call(self._close(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    # ---- checks (coroutines on the loop) ---------------------------------------
    async def _snapshot(self):
        """Per user: the seqs it has acked so far, with their texts."""
        return {u.name: {seq: text for seq, _, text in u.ack_order} for u in self.users}

    async def _wait_delivered(self, snap, timeout):
        """Until every member has received every message its partner had acked in snap;
        returns what is still missing (empty: all there)."""
        deadline = time.monotonic() + timeout
        while True:
            missing = {}
            for u in self.users:
                got = u.seen.get(u.conv, {})
                lack = [s for s in snap[u.partner.name] if s not in got]
                if lack:
                    missing[u.name] = lack[:5] + ([f"... {len(lack)}"] if len(lack) > 5 else [])
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        for u in self.users:  # what arrived is what was sent
            got = u.seen.get(u.conv, {})
            for s, text in snap[u.partner.name].items():
                if s in got and got[s] != (u.partner.user_id, text):
                    self.violation(f"{u.name}: {u.conv}/{s} is {got[s]}, acked as {text!r}")
        return missing

    async def _probe(self, deadline):
        """A fresh message from probe-a (gateway 1) acked and delivered to probe-b
        (gateway 2); retried until the deadline. True when it made it."""
        pa, pb = self.probes
        while time.monotonic() < deadline:
            for p in (pa, pb):
                if p.ws is None or p.ws.closed or p.gw != p.home:
                    await p.close()
                    try:
                        await p.connect(p.home)
                    except (OSError, asyncio.TimeoutError, ConnectionError,
                            websockets.exceptions.WebSocketException):
                        await asyncio.sleep(0.05)
            if any(p.ws is None or p.ws.closed for p in (pa, pb)):
                continue
            seq = await pa.send_until_acked(f"probe {pa.n_msg + 1}",
                                            deadline=min(deadline, time.monotonic() + 5))
            if seq is None:
                continue
            until = min(deadline, time.monotonic() + 5)
            while seq not in pb.seen.get(pb.conv, {}) and time.monotonic() < until:
                pb.msg_event.clear()
                try:
                    await asyncio.wait_for(pb.msg_event.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass
            if seq in pb.seen.get(pb.conv, {}):
                return True
        return False

    async def _rehome(self):
        """Members a gateway's death moved to the other gateway go back to their own
        (close, resume on the home gateway), so the next fault meets them spread out."""
        moved = [u for u in self.users if u.gw != u.home]
        for u in moved:
            if u.ws is not None:
                await u.ws.close()
        return len(moved)


ENGINE = Engine()


def setUpModule():
    CLUSTER.start()
    try:
        ENGINE.start()
    except BaseException:
        CLUSTER.stop_quietly()
        raise


def tearDownModule():
    try:
        ENGINE.close()
    finally:
        print_table(sys.stderr)
        CLUSTER.stop()


def mib(kb):
    return "-" if kb is None else f"{kb / 1024:.0f}"


def print_table(out):
    head = (f"{'fault':<16}{'acks':>6}{'unavail':>8}{'late':>5}{'dups':>6}{'dupack':>7}"
            f"{'t/o':>5}{'recon':>6}{'recov_ms':>9}  RSS MiB before->after (max per kind): "
            + " ".join(KINDS))
    lines = ["", "fault matrix (" + time.strftime("%Y-%m-%d %H:%M") + ")", head]
    for name in ENGINE.phase_order:
        st = ENGINE.phases[name]
        rss = []
        for k in KINDS:
            vals = [v for n, v in st.rss.items() if kind_of(n) == k]
            if vals:
                b = max((v[0] for v in vals if v[0] is not None), default=None)
                a = max((v[1] for v in vals if v[1] is not None), default=None)
                rss.append(f"{mib(b)}->{mib(a)}")
        rec = "-" if st.recovery_ms is None else str(st.recovery_ms)
        lines.append(f"{name:<16}{st.acks:>6}{st.unavailable:>8}{st.late_unavailable:>5}"
                     f"{st.dups:>6}{st.dup_acks:>7}{st.timeouts:>5}{st.reconnects:>6}{rec:>9}  "
                     + " ".join(rss))
    out.write("\n".join(lines) + "\n")


def rss_all():
    names = [n for n in CLUSTER.procs if kind_of(n) in KINDS]
    return {n: rss_kb(CLUSTER.procs[n].pid) if CLUSTER.procs[n].alive() else None for n in names}


def all_ready():
    return all(CLUSTER.readyz(i) == 200 for i in range(CLUSTER.n_gateways))


def history(conv, token, down_to):
    """conv's messages with seq > down_to, from the REST history (pages of 100,
    newest first): {seq: (from, text)}."""
    got, before = {}, None
    while True:
        q = "?limit=100" + (f"&before={before}" if before else "")
        status, body, _ = http_get(CLUSTER.http_url(0), f"/api/conversations/{conv}/messages{q}",
                                   headers={"Authorization": "Bearer " + token})
        assert status == 200, f"REST history of {conv}: {status} {body[:200]!r}"
        page = json.loads(body)
        for m in page["messages"]:
            got[m["seq"]] = (m["from"], m["text"])
        before = page["next_before"]
        if before is None or before <= down_to + 1:
            return got


class FaultMatrixTest(unittest.TestCase):
    checked_upto = {}   # conv -> seq up to which the history was checked

    def setUp(self):
        CLUSTER.skip_unless_local("kills and stops every kind of process")
        self.v0 = len(ENGINE.violations)   # each fault answers for its own

    def run(self, result=None):
        before = (len(result.failures), len(result.errors)) if result is not None else None
        out = super().run(result)
        if result is not None and (len(result.failures), len(result.errors)) != before:
            sys.stderr.write(CLUSTER.logs_report())
            CLUSTER.keep_logs = True
        return out

    # ---- the frame of every fault ------------------------------------------------
    def fault(self, name, inject, recover, storage=False, after=None):
        """inject() does the fault, recover() the restart (or SIGCONT); the recovery
        is timed from the start of recover(). storage: the fault takes the storage
        path (svc-message, PostgreSQL) away, so `unavailable` is expected."""
        # Traffic is flowing before the fault: every member has had acks lately.
        ENGINE.call(self.wait_flowing())
        st = ENGINE.begin(name)
        rss_before = rss_all()
        t_fault = time.monotonic()
        inject()
        t0 = time.monotonic()
        recover()
        deadline = t0 + RECOVERY_TIMEOUT_S
        while not all_ready():
            self.assertLess(time.monotonic(), deadline, f"{name}: /readyz not 200 everywhere")
            time.sleep(0.05)
        self.assertTrue(ENGINE.call(ENGINE._probe(deadline)), f"{name}: no probe acked end to end")
        t_ready = time.monotonic()
        st.recovery_ms = int((t_ready - t0) * 1000)
        if after is not None:
            after()
        self.check_delivery_and_history(name)
        self.fresh_pair_matches()
        moved = ENGINE.call(ENGINE._rehome())
        if moved:
            ENGINE.call(self.wait_flowing())
        # Memory some seconds after recovery, against the level before the fault.
        time.sleep(RSS_SETTLE_S)
        rss_after = rss_all()
        st.rss = {n: (rss_before.get(n), rss_after.get(n)) for n in rss_after}
        # unavailable: only for the storage path, only while it was away.
        st.late_unavailable = sum(1 for t in st.unavailable_at if t > t_ready + UNAVAILABLE_SLACK_S)
        early = sum(1 for t in st.unavailable_at if t < t_fault)
        print_table_row(name)
        self.assertEqual(ENGINE.violations[self.v0:], [])
        if storage is False:
            self.assertEqual(st.unavailable, 0, f"{name}: `unavailable` without a storage fault "
                                                f"({sorted(set(st.unavailable_who))})")
        self.assertEqual((early, st.late_unavailable), (0, 0),
                         f"{name}: `unavailable` before the fault or well after the recovery")
        for n, (b, a) in st.rss.items():
            if b is not None and a is not None:
                self.assertLess(a - b, RSS_BOUND_KB, f"{name}: {n} VmRSS {b} kB -> {a} kB")

    async def wait_flowing(self, timeout=30):
        counts = {u.name: len(u.ack_order) for u in ENGINE.users}
        deadline = time.monotonic() + timeout
        while any(len(u.ack_order) <= counts[u.name] for u in ENGINE.users):
            assert time.monotonic() < deadline, "traffic is not flowing"
            await asyncio.sleep(0.02)

    def check_delivery_and_history(self, name):
        snap = ENGINE.call(ENGINE._snapshot())
        missing = ENGINE.call(ENGINE._wait_delivered(snap, DELIVERY_TIMEOUT_S))
        self.assertEqual(missing, {}, f"{name}: acked messages not delivered to the other member")
        for a in ENGINE.users[::2]:
            b = a.partner
            low = self.checked_upto.get(a.conv, 0)
            got = history(a.conv, a.session, low)
            want = {s: (u.user_id, t) for u in (a, b) for s, t in snap[u.name].items() if s > low}
            lost = {s: w for s, w in want.items() if got.get(s) != w}
            self.assertEqual(lost, {}, f"{name}: acked messages of {a.conv} not in its history "
                                       f"(seq: wanted; history has {[got.get(s) for s in list(lost)[:3]]})")
            if want:
                self.checked_upto[a.conv] = max(want)

    # ---- helpers for the faults -----------------------------------------------------
    def kill_restart(self, proc):
        return (lambda: (CLUSTER.kill(proc, signal.SIGKILL), time.sleep(DOWN_S)),
                lambda: CLUSTER.restart(proc))

    def stop_cont(self, proc):
        state = {}

        def inject():
            state["cm"] = CLUSTER.paused(proc)
            state["cm"].__enter__()
            time.sleep(STOP_S)

        return inject, lambda: state["cm"].__exit__(None, None, None)

    def fresh_pair_matches(self):
        """Two new users, one per gateway, search and are matched at the first try
        (svc-match's queue in Redis, the conversation created by svc-message in
        PostgreSQL): no chat is stuck after the fault."""
        async def match():
            x, y = User(ENGINE, "seeker-x", 0, auto=False), User(ENGINE, "seeker-y", 1, auto=False)
            await x.connect(0)
            await y.connect(1)
            try:
                for u in (x, y):
                    f = await u.request({"type": "start_search"}, timeout=5)
                    assert f and f["type"] == "searching", f"start_search: {f}"
                fx, fy = await x.wait_push("matched", 10), await y.wait_push("matched", 10)
                assert fx and fy and fx["conversation_id"] == fy["conversation_id"], (fx, fy)
            finally:
                await x.close()
                await y.close()
        ENGINE.call(match())

    # ---- Redis: what survives it ----------------------------------------------------------
    def ghost_setup(self):
        """A user online on gateway 1 whose connection will close during the Redis
        outage, and an observer who shares a DM with it."""
        async def go():
            g, o = User(ENGINE, "ghost", 0, auto=False), User(ENGINE, "observer", 1, auto=False)
            await g.connect(0)
            await o.connect(1)
            await ENGINE.open_dm(g, o)
            return g, o
        return ENGINE.call(go())

    def presence_of(self, observer, user_ids):
        f = ENGINE.call(observer.request({"type": "presence", "user_ids": user_ids}, timeout=5))
        if f is None or f.get("type") != "presence":
            return None
        return {s["user_id"]: s["status"] for s in f["statuses"]}

    def wait_presence(self, observer, want, timeout, must=True):
        """Until a presence query answers `want` ({user_id: status}); returns seconds
        (None past the timeout when not must)."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < timeout:
            last = self.presence_of(observer, list(want))
            if last == want:
                return time.monotonic() - t0
            time.sleep(0.1)
        if must:
            self.fail(f"presence {last}, wanted {want} within {timeout}s")
        return None

    def redis_after(self, ghost, observer, ghost_must):
        """After a Redis fault: the ghost (closed during the outage) goes offline
        within grace + TTL (recorded; asserted when ghost_must); members still
        connected are online."""
        bound = (GRACE_MS + TTL_MS) / 1000 + 5
        t = self.wait_presence(observer, {ghost.user_id: "offline"}, bound, must=ghost_must)
        ENGINE.stats().ghost_offline_s = t
        t = -1 if t is None else t
        live = [u.user_id for u in ENGINE.users[:4]]
        t2 = self.wait_presence(observer, {u: "online" for u in live}, 3 * HEARTBEAT_MS / 1000 + 5)
        print(f"\n  presence after recovery: ghost offline in {t:.1f}s, live users online in {t2:.1f}s")
        ENGINE.call(ghost.close())
        ENGINE.call(observer.close())

    def redis_fault(self, name, inject, recover, hold_s, ghost_must=True, storage=False):
        """inject() takes Redis away; the ghost's connection then closes (its
        disconnect meets a Redis that is away) and Redis stays away hold_s."""
        ghost, observer = self.ghost_setup()

        def inject_and_close():
            inject()
            ENGINE.call(ghost.close())
            time.sleep(hold_s)

        self.fault(name, inject_and_close, recover, storage=storage,
                   after=lambda: self.redis_after(ghost, observer, ghost_must))

    # ---- the faults, in order ----------------------------------------------------------------
    def test_01_kill_gateway(self):
        self.fault("kill gateway2", *self.kill_restart("gateway2"))

    def test_02_kill_message(self):
        self.fault("kill message.2", *self.kill_restart("svc-message.2"), storage=True)

    def test_03_kill_match(self):
        self.fault("kill match.2", *self.kill_restart("svc-match.2"))

    def test_04_kill_presence(self):
        self.fault("kill presence.2", *self.kill_restart("svc-presence.2"))

    def test_05_kill_postgres(self):
        self.fault("kill postgres", lambda: (CLUSTER.kill_postgres(), time.sleep(DOWN_S)),
                   CLUSTER.restart_postgres, storage=True)

    def test_06_kill_redis(self):
        self.redis_fault("kill redis", CLUSTER.kill_redis, CLUSTER.restart_redis, DOWN_S,
                         ghost_must=False)

    def test_06b_kill_redis_closed_user_goes_offline(self):
        """A connection that closes while Redis is down goes offline once Redis is back
        with its data (AOF): the gateway sends a failed disconnect again after its next
        good heartbeat (svc-gateway/presence.c). Before that fix the user stayed online
        for good: the gateway's heartbeats kept its registrations alive."""
        st = ENGINE.phases.get("kill redis")
        self.assertIsNotNone(st, "test_06 did not run")
        self.assertIsNotNone(st.ghost_offline_s, "user whose connection closed during the "
                             "outage still online after grace + TTL + 5 s")

    def test_07_stop_gateway(self):
        self.fault("stop gateway2", *self.stop_cont("gateway2"))

    def test_08_stop_message(self):
        self.fault("stop message.2", *self.stop_cont("svc-message.2"), storage=True)

    def test_09_stop_match(self):
        self.fault("stop match.2", *self.stop_cont("svc-match.2"))

    def test_10_stop_presence(self):
        self.fault("stop presence.2", *self.stop_cont("svc-presence.2"))

    def test_11_stop_postgres(self):
        state = {}

        def inject():
            state["cm"] = CLUSTER.paused_postgres()
            state["cm"].__enter__()
            time.sleep(STOP_S)

        self.fault("stop postgres", inject, lambda: state["cm"].__exit__(None, None, None),
                   storage=True)

    def test_12_stop_redis(self):
        paused = CLUSTER.paused("redis")
        self.redis_fault("stop redis", paused.__enter__, lambda: paused.__exit__(None, None, None),
                         STOP_S)

    def test_13_wipe_redis(self):
        self.redis_fault("wipe redis", CLUSTER.kill_redis, lambda: CLUSTER.restart_redis(wipe=True),
                         DOWN_S)

    def test_99_everything_stored_once(self):
        """Traffic stopped: every ack is in PostgreSQL exactly, seqs gapless, every
        member has every other member's messages."""
        ENGINE.begin("final")
        ENGINE.stop_traffic()
        self.assertEqual(ENGINE.violations[self.v0:], [])
        snap = ENGINE.call(ENGINE._snapshot())
        missing = ENGINE.call(ENGINE._wait_delivered(snap, DELIVERY_TIMEOUT_S))
        self.assertEqual(missing, {})
        rows = CLUSTER.psql("SELECT conversation_id, seq, client_msg_id FROM messages")
        stored = {}
        for r in rows:
            conv, seq, cmid = r.split("|")
            stored.setdefault(conv, {})[int(seq)] = cmid
        total = 0
        for a in ENGINE.users[::2]:
            acked = {s: c for u in (a, a.partner) for c, s in u.acked.items()}
            total += len(acked)
            self.assertEqual(sorted(acked), list(range(1, len(acked) + 1)), f"{a.conv}: gapless acks")
            self.assertEqual(stored.get(a.conv), acked, f"{a.conv}: PostgreSQL holds exactly the acks")
            for u in (a, a.partner):
                self.assertEqual(sorted(u.seen.get(u.conv, {})), sorted(u.partner.acked.values()),
                                 f"{u.name}: received exactly the partner's acked messages")
        print(f"\n  {total} messages acked, all stored once, all delivered")


def print_table_row(name):
    st = ENGINE.phases[name]
    print(f"\n  {name}: acks={st.acks} unavailable={st.unavailable} late={st.late_unavailable} "
          f"dups={st.dups} dup_acks={st.dup_acks} timeouts={st.timeouts} "
          f"reconnects={st.reconnects} recovery_ms={st.recovery_ms} "
          f"unavailable_to={sorted(set(st.unavailable_who))} ghost_offline_s={st.ghost_offline_s}")


if __name__ == "__main__":
    unittest.main()
