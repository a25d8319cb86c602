"""The operator actions that happen on gateways, driven through chatctl on
two gateways: kick (the exact error frame, then close 4403, on every
gateway), ban (kick, then the user's connects and resumes refused with
unauthorized + 4401 on either gateway and its REST calls 401, until unban
or the end of a --for), a ban reaching a gateway chatctl did not reach
(through svc-presence's list, within a heartbeat), announcements (every
connection once, the exact frame; --room to members only), drain
(readyz 503, upgrades refused, 1001 closes spread over --over, clients
resume on the other gateway), users/user, the req_id that follows a client
request into svc-message's log, and the admin counters in /metrics.
CHAT_HEARTBEAT_MS=300 so a ban chatctl missed arrives quickly;
CHAT_LOG_LEVEL=debug for the request lines."""

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import unittest
import uuid

import cluster
from client import connect, is_id, is_now_ms

CLUSTER = cluster.Cluster(gateways=2, name="admgw",
                          env={"CHAT_HEARTBEAT_MS": "300", "CHAT_LOG_LEVEL": "debug",
                               "CHAT_RATE_PER_MIN": "0"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


async def until(pred, timeout=10.0, every=0.05, what="condition"):
    """Polls pred() (bounded) until it is true; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(every)


class AdminGatewayTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def asyncSetUp(self):
        await super().asyncSetUp()
        self.cluster.skip_unless_local("drives chatctl against the processes' admin addresses")
        if not os.access(os.path.join(self.cluster.bin_dir, "chatctl"), os.X_OK):
            self.skipTest("chatctl is not built")

    # ---- helpers -------------------------------------------------------------
    async def ctl(self, *args, want=0):
        """chatctl --json ARGS off the event loop (the clients keep reading)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, lambda: self.cluster.chatctl_json(*args, want=want))

    async def ctl_only_gw1(self, *args):
        """chatctl --json ARGS knowing only gateway 1 (gateway 2 is missed)."""
        env = self.cluster.chatctl_env()
        env["CHAT_GATEWAY_ADMIN_ADDRS"] = self.cluster.admin_addr["gateway1"]
        argv = [os.path.join(self.cluster.bin_dir, "chatctl"), "--json", *args]
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(None, lambda: subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=60))
        self.assertEqual(out.returncode, 0, f"chatctl {args}: {out.stdout}\n{out.stderr}")
        return json.loads(out.stdout)

    async def expect_refused(self, gw, session):
        """A connect with session gets unauthorized, then close 4401."""
        c = await self.connect(gw, session=session, wait_connected=False)
        await c.expect_error("unauthorized")
        await c.expect_close(4401)

    async def try_resume(self, gw, session):
        """True when the resume is welcomed, False when refused as unauthorized."""
        c = await self.connect(gw, session=session, wait_connected=False)
        f = await c.recv()
        if f["type"] == "connected":
            self.assertTrue(f["resumed"])
            return True
        self.assertEqual((f["type"], f.get("code")), ("error", "unauthorized"), f)
        await c.expect_close(4401)
        return False

    def rest_status(self, gw, token):
        status, _, _ = cluster.http_get(self.cluster.http_url(gw), "/api/conversations/nope/messages",
                                        headers={"Authorization": "Bearer " + token})
        return status

    def open_conns(self):
        return sum(self.cluster.metric(i, "chat_gateway_connections_open") for i in range(2))

    async def settle(self, n):
        """Waits until the gateways hold exactly n connections (earlier tests' are gone)."""
        await until(lambda: self.open_conns() == n, what=f"{n} open connections")

    # ---- kick ----------------------------------------------------------------
    async def test_kick_closes_every_connection_of_the_user_on_both_gateways(self):
        a1 = await self.connect(0)
        a2 = await self.connect(1, session=a1.session)
        other = await self.connect(1)
        kicked0 = sum(self.cluster.metric(i, "chat_gateway_kicked_connections_total")
                      for i in range(2))
        doc = await self.ctl("kick", a1.user_id, "--reason", "spamming the lobby")
        self.assertEqual((doc["user_id"], doc["closed"]), (a1.user_id, 2))
        for c in (a1, a2):
            await c.expect_error("kicked", message="spamming the lobby")
            await c.expect_close(4403)
        await other.no_frame()
        kicked = sum(self.cluster.metric(i, "chat_gateway_kicked_connections_total")
                     for i in range(2))
        self.assertEqual(kicked - kicked0, 2)
        # A kick is no ban: the user comes back at once.
        back = await self.connect(0, session=a1.session)
        self.assertEqual(back.user_id, a1.user_id)

    async def test_kick_without_reason_has_a_message(self):
        a = await self.connect(1)
        doc = await self.ctl("kick", a.user_id)
        self.assertEqual(doc["closed"], 1)
        f = await a.expect_error("kicked")
        self.assertTrue(f["message"])
        await a.expect_close(4403)

    # ---- ban -----------------------------------------------------------------
    async def test_ban_refuses_connects_resumes_and_rest_until_unbanned(self):
        a = await self.connect(0)
        a2 = await self.connect(1, session=a.session)
        session = a.session
        self.assertNotEqual(self.rest_status(0, session), 401)
        refused0 = self.cluster.metric(1, "chat_gateway_ban_refusals_total")
        doc = await self.ctl("ban", a.user_id)
        self.assertEqual((doc["user_id"], doc["until_ms"], doc["closed"]), (a.user_id, 0, 2))
        for c in (a, a2):
            await c.expect_error("kicked", message="banned")
            await c.expect_close(4403)
        for gw in (0, 1, 1, 0):
            await self.expect_refused(gw, session)
            self.assertEqual(self.rest_status(gw, session), 401)
        self.assertGreaterEqual(self.cluster.metric(1, "chat_gateway_ban_refusals_total") - refused0, 2)
        # The fresh token a banned connection got earlier is refused as well.
        await self.expect_refused(0, a2.session)
        # Others, and brand-new anonymous users, are not affected.
        fresh = await self.connect(1)
        self.assertNotEqual(fresh.user_id, a.user_id)

        doc = await self.ctl("unban", a.user_id)
        self.assertEqual(doc["user_id"], a.user_id)
        for gw in (0, 1):
            back = await self.connect(gw, session=session)
            self.assertEqual(back.user_id, a.user_id)
            self.assertNotEqual(self.rest_status(gw, session), 401)

    async def test_ban_for_a_while_ends_by_itself(self):
        a = await self.connect(1)
        t0 = time.monotonic()
        doc = await self.ctl("ban", a.user_id, "--for", "2s")
        self.assertEqual(doc["closed"], 1)
        self.assertTrue(is_now_ms(doc["until_ms"] - 2000, slack_ms=5000), doc)
        await a.expect_error("kicked", message="banned")
        await a.expect_close(4403)
        await self.expect_refused(0, a.session)
        # Refused until the end, welcomed after it: on both gateways.
        for gw in (0, 1):
            deadline = time.monotonic() + 15
            while not await self.try_resume(gw, a.session):
                self.assertLess(time.monotonic(), deadline, "the ban did not end")
                await asyncio.sleep(0.2)
        self.assertGreater(time.monotonic() - t0, 1.5, "the ban ended too early")

    async def test_ban_reaches_a_gateway_chatctl_missed(self):
        a = await self.connect(1)
        # chatctl knows gateway 1 only: gateway 2 learns of the ban from
        # svc-presence's list when a heartbeat shows the list changed.
        doc = await self.ctl_only_gw1("ban", a.user_id)
        self.assertEqual(doc["user_id"], a.user_id)
        await self.expect_refused(0, a.session)
        deadline = time.monotonic() + 10
        while await self.try_resume(1, a.session):
            self.assertLess(time.monotonic(), deadline, "gateway 2 never heard of the ban")
            await asyncio.sleep(0.1)
        await self.ctl_only_gw1("unban", a.user_id)
        self.assertTrue(await self.try_resume(0, a.session))
        deadline = time.monotonic() + 10
        while not await self.try_resume(1, a.session):
            self.assertLess(time.monotonic(), deadline, "gateway 2 never heard of the unban")
            await asyncio.sleep(0.1)

    # ---- announce ------------------------------------------------------------
    async def test_announce_reaches_every_connection_once(self):
        await self.settle(0)
        a1 = await self.connect(0)
        a2 = await self.connect(1, session=a1.session)
        b = await self.connect(1)
        await self.settle(3)
        text = "Maintenance at 10:00 UTC — back in 5 min ✓"
        doc = await self.ctl("announce", text)
        self.assertEqual((doc["text"], doc["reached"]), (text, 3))
        for c in (a1, a2, b):
            await c.expect("announcement", exact=True, text=text)
            await c.no_frame()

    async def test_announce_to_a_room_reaches_its_members_only(self):
        room = "ann-" + uuid.uuid4().hex[:8]
        a, b, outsider = await self.connect(0), await self.connect(1), await self.connect(1)
        b2 = await self.connect(0, session=b.session)
        for c in (a, b):
            await c.request({"type": "join_room", "room": room}, "conversation",
                            conversation_id=is_id, kind="room", room=room)
        doc = await self.ctl("announce", "room only", "--room", room)
        self.assertEqual((doc["room"], doc["reached"]), (room, 3))
        for c in (a, b, b2):
            await c.expect("announcement", exact=True, text="room only")
        for c in (a, b, b2, outsider):
            await c.no_frame()

    async def test_announce_text_is_checked(self):
        for text in ("", "   ", "x" * 501):
            rc, _, err = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.cluster.chatctl("--json", "announce", text))
            self.assertNotEqual(rc, 0, f"announce {text[:10]!r} was accepted")

    # ---- users / user ----------------------------------------------------------
    async def test_user_lists_its_connections_on_both_gateways(self):
        a1 = await self.connect(0)
        a2 = await self.connect(1, session=a1.session)
        doc = await self.ctl("user", a1.user_id)
        conns = sorted(doc["connections"], key=lambda c: c["gateway_id"])
        self.assertEqual([c["gateway_id"] for c in conns], ["gw1", "gw2"])
        for c in conns:
            self.assertTrue(is_now_ms(c["opened_at"]), c)
            self.assertRegex(c["remote"], r"^127\.0\.0\.1:\d+$")
        self.assertNotEqual(conns[0]["conn_id"], conns[1]["conn_id"])
        doc = await self.ctl("users")
        per_gw = {g["gateway_id"]: g for g in doc["gateways"]}
        self.assertEqual(set(per_gw), {"gw1", "gw2"})
        for g in per_gw.values():
            self.assertGreaterEqual(g["connections"], 1)
            self.assertGreaterEqual(g["users"], 1)
        await a2.no_frame(0.05)

    # ---- req_id ----------------------------------------------------------------
    async def test_a_client_request_is_followed_by_its_req_id(self):
        a = await self.connect(0)
        req = "trace-" + uuid.uuid4().hex[:8]
        await a.send({"type": "join_room", "room": "trace-room", "req": req})
        await a.expect("conversation", req=req)
        pat = re.compile(r"event=request type=join_room req=" + re.escape(req)
                         + r" conn=\d+ req_id=(gw1-[0-9a-f]{16})\b")
        gw_log = self.cluster.procs["gateway1"]
        m = await until(lambda: pat.search(gw_log.log_text()), what="the gateway's request line")
        req_id = m.group(1)
        # Whichever replica served it (the scaled pass runs two).
        msg_logs = [self.cluster.procs[n] for n in self.cluster.service_procs("message")]
        await until(lambda: any(("req_id=" + req_id) in p.log_text() for p in msg_logs),
                    what=f"svc-message's line with req_id={req_id}")

    # ---- drain (last: gateway 2 is restarted afterwards) ------------------------
    async def test_zz_drain_spreads_the_closes_and_clients_resume_elsewhere(self):
        await self.settle(0)
        clients = [await self.connect(1) for _ in range(10)]
        loop = asyncio.get_running_loop()
        try:
            t0 = time.monotonic()
            run = loop.run_in_executor(None, lambda: self.cluster.chatctl(
                "--json", "drain", "gw2", "--over", "2"))

            async def closed_at(c):
                await c.expect_close(1001, timeout=20)
                return time.monotonic() - t0

            times = sorted(await asyncio.gather(*(closed_at(c) for c in clients)))
            self.assertGreater(times[-1] - times[0], 1.0, f"closed at once: {times}")
            self.assertLessEqual(sum(t < times[0] + 0.5 for t in times), 5, times)
            rc, out, err = await run
            self.assertEqual(rc, 0, out + err)
            doc = json.loads(out)
            self.assertEqual(doc, {"gateway_id": "gw2", "done": True, "connections": 0,
                                   "closed": 10})
            # Not ready, refuses upgrades, stays up.
            self.assertEqual(self.cluster.readyz(1), 503)
            self.assertEqual(self.cluster.metric(1, "chat_gateway_draining"), 1)
            with self.assertRaises(Exception) as ctx:
                await connect(self.cluster.ws_url(1))
            self.assertIn("503", str(ctx.exception))
            # Draining again changes nothing.
            doc = await self.ctl("drain", "gw2", "--over", "0")
            self.assertEqual((doc["done"], doc["closed"]), (True, 10))
            # Every client resumes on the other gateway.
            for c in clients:
                back = await self.connect(0, session=c.session)
                self.assertEqual(back.user_id, c.user_id)
            self.assertEqual(self.cluster.readyz(0), 200)
        finally:
            # A drained gateway stays up (not ready) until restarted.
            self.cluster.kill("gateway2", signal.SIGTERM)
            self.cluster.restart("gateway2")
            self.cluster.wait_ready(1)


if __name__ == "__main__":
    unittest.main()
