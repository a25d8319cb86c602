"""chatctl against a real cluster of 2 gateways x 2 replicas of every service: every
read command of ../shared/ADMIN.md with its exact --json fields and exit codes, the
admin secret refused by every process (and logged), an unreachable replica named, and
one client request followed across the gateway's and svc-message's logs by its req_id.
Kick, ban, announce and drain: test_admin_gateway.py; retention: test_retention.py."""

import asyncio
import re
import time
import uuid

import cluster
from client import ANY, is_id, is_now_ms, pair

CLUSTER = cluster.Cluster(gateways=2, name="admin", env={"CHAT_LOG_LEVEL": "debug"},
                          replicas={"message": 2, "match": 2, "presence": 2})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)

KINDS = {"gw1": "gateway", "gw2": "gateway", "svc-message": "message",
         "svc-message.2": "message", "svc-match": "match", "svc-match.2": "match",
         "svc-presence": "presence", "svc-presence.2": "presence"}
LOAD_NAMES = {"gateway": "connections", "message": "requests_in_flight",
              "match": "queue_length", "presence": "users_online"}


def room_name():
    return "adm-" + uuid.uuid4().hex[:10]


class AdminTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    def setUp(self):
        self.cluster.skip_unless_local("chatctl needs the processes' admin addresses")

    def ctl(self, *args, want=0):
        return self.cluster.chatctl_json(*args, want=want)

    async def until(self, fn, what, timeout=10):
        """Polls fn() (bounded) until it returns a true value; returns it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what}: not within {timeout}s (last: {last})")

    def proc_name(self, admin_address):
        return next(n for n, a in self.cluster.admin_addr.items() if a == admin_address)

    # ---- status -----------------------------------------------------------------
    async def test_status_every_process(self):
        a = await self.connect(0)
        doc = self.ctl("status")
        procs = {p["id"]: p for p in doc["processes"]}
        self.assertEqual(sorted(procs), sorted(KINDS))
        versions = set()
        for pid, p in procs.items():
            kind = KINDS[pid]
            self.assertEqual(set(p) >= {"kind", "id", "address", "metrics_url", "version",
                                        "uptime_ms", "ready", "restarts", "load_name", "load"},
                             True, p)
            self.assertEqual((p["kind"], p["ready"], p["restarts"], p["load_name"]),
                             (kind, True, 0, LOAD_NAMES[kind]), p)
            name = "gateway" + pid[2:] if kind == "gateway" else pid
            self.assertEqual(p["address"], self.cluster.admin_addr[name])
            self.assertEqual(p["metrics_url"], self.cluster.metrics_urls()[name])
            self.assertGreater(p["uptime_ms"], 0)
            versions.add(p["version"])
        self.assertEqual(len(versions), 1, versions)
        self.assertRegex(versions.pop(), r"^\d+\.\d+\.\d+")
        self.assertGreaterEqual(procs["gw1"]["load"], 1)
        await a.close()
        rc, out, err = self.cluster.chatctl("status")
        self.assertEqual(rc, 0, err)
        header = out.splitlines()[0].split()
        self.assertEqual(header[:2], ["KIND", "ID"])
        self.assertEqual(len(out.splitlines()), 1 + 8, out)

    # ---- users, user ------------------------------------------------------------
    async def test_users_and_user(self):
        a = await self.connect(0)
        a2 = await self.connect(1, session=a.session)
        b = await self.connect(1)
        room = room_name()
        r = await a.request({"type": "join_room", "room": room}, "conversation", exact=True,
                            conversation_id=is_id, kind="room", room=room)
        dm = await a.request({"type": "open_dm", "user_id": b.user_id}, "conversation",
                             exact=True, conversation_id=is_id, kind="dm", members=ANY)

        def users_settled():
            d = self.ctl("users")
            gws = {g["gateway_id"]: g for g in d["gateways"]}
            ok = (set(gws) == {"gw1", "gw2"} and d["connections"] ==
                  gws["gw1"]["connections"] + gws["gw2"]["connections"] and
                  d["online_users"] >= 2 and gws["gw2"]["connections"] >= 2)
            return d if ok else None
        d = await self.until(users_settled, "users counts")
        self.assertEqual(set(d), {"online_users", "connections", "gateways"} | (set(d) & {"errors", "req_id"}))

        u = await self.until(lambda: (lambda x: x if x["online"] else None)(self.ctl("user", a.user_id)),
                             "user online")
        self.assertEqual(u["user_id"], a.user_id)
        self.assertIn(u["banned_until"], (-1, None))
        conns = sorted(u["connections"], key=lambda c: c["gateway_id"])
        self.assertEqual([c["gateway_id"] for c in conns], ["gw1", "gw2"])
        for c in conns:
            self.assertRegex(c["remote"], r"^127\.0\.0\.1:\d+$")
            self.assertTrue(is_now_ms(c["opened_at"]), c)
            self.assertIsInstance(c["conn_id"], int)
        convs = {c["conversation_id"]: c for c in u["conversations"]}
        self.assertEqual(convs[r["conversation_id"]]["kind"], "room")
        self.assertEqual(convs[r["conversation_id"]]["room"], room)
        self.assertEqual(convs[dm["conversation_id"]]["kind"], "dm")

        # Offline: no connections, a last_seen.
        await a.close()
        await a2.close()
        u = await self.until(lambda: (lambda x: x if not x["online"] else None)(self.ctl("user", a.user_id)),
                             "user offline")
        self.assertEqual(u["connections"], [])
        self.assertTrue(is_now_ms(u["last_seen"]), u)
        await b.close()

    async def test_unknown_and_bad_user(self):
        rc, out, err = self.cluster.chatctl("user", str(uuid.uuid4()))
        self.assertEqual(rc, 4, out + err)
        self.assertIn("unknown user", err)
        rc, out, err = self.cluster.chatctl("user", "not-a-uuid")
        self.assertEqual(rc, 2, out + err)
        rc, out, err = self.cluster.chatctl("kick", str(uuid.uuid4()))
        self.assertEqual(rc, 4, out + err)
        rc, out, err = self.cluster.chatctl("frobnicate")
        self.assertEqual(rc, 2, out + err)
        rc, out, err = self.cluster.chatctl("status", "--no-such-flag")
        self.assertEqual(rc, 2, out + err)

    # ---- queue ------------------------------------------------------------------
    async def test_queue(self):
        a, b = await self.connect(0), await self.connect(1)
        await a.request({"type": "start_search"}, "searching", exact=True)
        q = await self.until(lambda: (lambda x: x if x["waiting"] == 1 else None)(self.ctl("queue")),
                             "one waiting")
        self.assertGreaterEqual(q["longest_wait_ms"], 0)
        self.assertLess(q["longest_wait_ms"], 60_000)
        await b.request({"type": "start_search"}, "searching", exact=True)
        await b.expect("matched", exact=True, conversation_id=is_id, kind="random")
        await a.expect("matched", exact=True, conversation_id=is_id, kind="random")
        self.assertEqual(self.ctl("queue"), {**self.ctl("queue"), "waiting": 0, "longest_wait_ms": 0})
        await a.close()
        await b.close()

    # ---- conversation, room -----------------------------------------------------
    async def test_conversation_and_room(self):
        a, b = await self.connect(0), await self.connect(1)
        conv = await pair(a, b)
        for i in range(2):
            cmid = await a.send_text(conv, f"c{i}")
            await a.expect_ack(conv, cmid, seq=i + 1)
            await b.expect_message(conv, a.user_id, f"c{i}", seq=i + 1)
        c = self.ctl("conversation", conv)
        self.assertEqual((c["conversation_id"], c["kind"], c["room"] or "", sorted(c["members"]),
                          c["last_seq"], c["closed"]),
                         (conv, "random", "", sorted([a.user_id, b.user_id]), 2, False))
        self.assertTrue(is_now_ms(c["created_at"]), c)
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect("chat_ended", exact=True, conversation_id=conv, by="you")
        await b.expect("chat_ended", exact=True, conversation_id=conv, by="partner")
        self.assertTrue(self.ctl("conversation", conv)["closed"])

        room = room_name()
        r = await a.request({"type": "join_room", "room": room}, "conversation", exact=True,
                            conversation_id=is_id, kind="room", room=room)
        await b.request({"type": "join_room", "room": room}, "conversation", exact=True,
                        conversation_id=r["conversation_id"], kind="room", room=room)
        cmid = await b.send_text(r["conversation_id"], "hello room")
        await b.expect_ack(r["conversation_id"], cmid, seq=1)
        await a.expect_message(r["conversation_id"], b.user_id, "hello room", seq=1)
        doc = self.ctl("room", room)
        self.assertEqual((doc["name"], doc["conversation_id"], doc["member_count"], doc["last_seq"]),
                         (room, r["conversation_id"], 2, 1))
        rc, out, err = self.cluster.chatctl("room", room_name())
        self.assertEqual(rc, 4, out + err)
        rc, out, err = self.cluster.chatctl("conversation", str(uuid.uuid4()))
        self.assertEqual(rc, 4, out + err)
        await a.close()
        await b.close()

    # ---- the secret ---------------------------------------------------------------
    def refusals(self, reason):
        return {n: len(re.findall(rf"event=admin_refused .*reason={reason}", p.log_text()))
                for n, p in self.cluster.procs.items() if n in self.cluster.admin_addr}

    async def test_wrong_or_missing_secret_refused_by_every_process(self):
        for token, reason in (("not-the-secret", "wrong_token"), ("", "no_token")):
            before = self.refusals(reason)
            rc, out, err = self.cluster.chatctl("status", token=token)
            self.assertEqual(rc, 3, out + err)
            self.assertIn("unauthorized", err)
            # Every one of the 8 processes refused and logged it.
            after = await self.until(
                lambda: (lambda r: r if all(r[n] > before[n] for n in r) else None)(self.refusals(reason)),
                f"admin_refused reason={reason} in every log")
            self.assertEqual(len(after), 8)
        # A command that changes something is refused the same way.
        rc, out, err = self.cluster.chatctl("announce", "nope", token="not-the-secret")
        self.assertEqual(rc, 3, out + err)
        for name, proc in self.cluster.procs.items():
            self.assertNotIn("not-the-secret", proc.log_text(), name)

    # ---- an unreachable replica -----------------------------------------------------
    async def test_unreachable_replica_named(self):
        self.cluster.kill("svc-match.2")
        try:
            rc, out, err = self.cluster.chatctl("--timeout", "1000", "status")
            self.assertEqual(rc, 1, out + err)
            self.assertIn(self.cluster.admin_addr["svc-match.2"], out + err)
            self.assertIn("unreachable", (out + err).lower())
            rc, out, _ = self.cluster.chatctl("--json", "--timeout", "1000", "status")
            self.assertEqual(rc, 1)
            import json
            doc = json.loads(out)
            down = [p for p in doc["processes"] if p["address"] == self.cluster.admin_addr["svc-match.2"]]
            self.assertEqual(len(down), 1, doc)
            self.assertFalse(down[0]["reachable"])
            # The queue is still answered by the other replica.
            self.assertEqual(self.ctl("--timeout", "1000", "queue")["waiting"], 0)
        finally:
            self.cluster.restart("svc-match.2")
        await self.until(lambda: self.cluster.chatctl("status")[0] == 0, "status whole again", 20)

    # ---- req_id across services --------------------------------------------------------
    async def test_req_id_in_gateway_and_message_logs(self):
        a, b = await self.connect(0), await self.connect(0)
        conv = await pair(a, b)
        req = "trace-" + uuid.uuid4().hex[:8]
        cmid = await a.send_text(conv, "follow me", req=req)
        await a.expect_ack(conv, cmid, seq=1, req=req)
        gw = self.cluster.procs["gateway1"]

        def gateway_line():
            m = re.search(rf"event=request .*\breq={req}\b.*\breq_id=(\S+)", gw.log_text())
            return m.group(1) if m else None
        rid = await self.until(gateway_line, "the gateway's request line")
        msgs = [self.cluster.procs[n] for n in self.cluster.service_procs("message")]
        lines = await self.until(
            lambda: [l for p in msgs for l in p.log_text().splitlines() if f"req_id={rid}" in l],
            f"req_id={rid} in svc-message's logs")
        self.assertTrue(any("event=request_done" in l for l in lines), lines)
        await a.close()
        await b.close()
