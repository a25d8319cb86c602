"""Faults: svc-message killed and restarted; svc-match stopped (readiness)."""

import signal
import time
import unittest

import cluster
from client import new_id, pair
from cluster import http_get

CLUSTER = cluster.Cluster(gateways=1, name="faults", env={"CHAT_RPC_TIMEOUT_MS": "1000"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class FaultsTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    def setUp(self):
        self.cluster.skip_unless_local("kills and restarts services")

    async def send_until_acked(self, c, conv, text, cmid, timeout=30):
        """Sends (retrying the same client_msg_id) until acked; returns (ack, unavailable count)."""
        deadline = time.monotonic() + timeout
        unavailable = 0
        while True:
            await c.send_text(conv, text, client_msg_id=cmid)
            f = await c.recv(timeout=5)
            if f["type"] == "ack":
                self.assertEqual((f["client_msg_id"], f["conversation_id"]), (cmid, conv), f)
                return f, unavailable
            self.assertEqual((f["type"], f.get("code")), ("error", "unavailable"), f)
            unavailable += 1
            self.assertLess(time.monotonic(), deadline, f"{cmid} not acked within {timeout}s")
            await c.no_frame(0.2)

    async def test_message_service_killed_and_restarted(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        acked = {}
        for i in range(3):
            cmid = await a.send_text(conv, f"before {i}")
            ack = await a.expect_ack(conv, cmid, seq=i + 1)
            acked[cmid] = ack["seq"]
            await b.expect_message(conv, a.user_id, f"before {i}", seq=i + 1)

        self.cluster.kill_service("message", signal.SIGKILL)
        # While it is down: unavailable, nothing accepted.
        down_cmids = []
        for i in range(3):
            cmid = new_id()
            req = a.next_req()
            await a.send_text(conv, f"during {i}", client_msg_id=cmid, req=req)
            await a.expect_error("unavailable", req=req, timeout=10)
            down_cmids.append(cmid)
        await b.no_frame(0.2)

        self.cluster.restart_service("message")
        self.cluster.wait_ready(0)
        # The sender retries the refused messages with the same ids, then goes on.
        for i, cmid in enumerate(down_cmids):
            ack, _ = await self.send_until_acked(a, conv, f"during {i}", cmid)
            acked[cmid] = ack["seq"]
        for i in range(3):
            cmid = new_id()
            ack, _ = await self.send_until_acked(a, conv, f"after {i}", cmid)
            acked[cmid] = ack["seq"]
        seqs = sorted(acked.values())
        self.assertEqual(seqs, list(range(1, len(acked) + 1)), acked)
        # The partner gets the messages acked after the restart, in order.
        got = []
        while len(got) < 6:
            f = await b.recv(timeout=10)
            self.assertEqual(f["type"], "message", f)
            got.append(f)
        self.assertEqual([m["text"] for m in got], [f"during {i}" for i in range(3)] + [f"after {i}" for i in range(3)])
        self.assertEqual([m["seq"] for m in got], list(range(4, 10)))
        # Every acked message is in PostgreSQL, and nothing else.
        rows = self.cluster.psql(f"SELECT seq FROM messages WHERE conversation_id = '{conv}' ORDER BY seq")
        self.assertEqual([int(r) for r in rows], seqs)
        rows = self.cluster.psql(f"SELECT client_msg_id FROM messages WHERE conversation_id = '{conv}' ORDER BY seq")
        self.assertEqual(rows, sorted(acked, key=acked.get))

    async def test_readyz_follows_match_service(self):
        base = self.cluster.http_url(0)
        self.assertEqual(http_get(base, "/readyz")[0], 200)
        statuses = self.cluster.kill_service("match", signal.SIGTERM)
        self.assertEqual(set(statuses), {0}, "svc-match exit status after SIGTERM")
        self.cluster.wait_ready(0, want=503, timeout=20)
        self.assertEqual(http_get(base, "/healthz")[0], 200)
        a = await self.connect()
        req = a.next_req()
        await a.send({"type": "start_search", "req": req})
        await a.expect_error("unavailable", req=req, timeout=10)
        self.cluster.restart_service("match")
        self.cluster.wait_ready(0, want=200, timeout=20)
        await a.request({"type": "start_search"}, "searching", exact=True)
        await a.request({"type": "stop_search"}, "search_stopped", exact=True)

    async def test_gateway_shutdown_closes_1001_and_session_resumes(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        status = self.cluster.kill("gateway1", signal.SIGTERM)
        await a.expect_close(1001, timeout=10)
        await b.expect_close(1001, timeout=10)
        self.assertEqual(status, 0, "gateway exit status after SIGTERM")
        self.cluster.restart("gateway1")
        self.cluster.wait_ready(0)
        a2 = await self.connect(session=a.session)
        b2 = await self.connect(session=b.session)
        self.assertEqual((a2.user_id, b2.user_id), (a.user_id, b.user_id))
        cmid = await a2.send_text(conv, "after the restart")      # the chat survived
        await a2.expect_ack(conv, cmid, seq=1)
        await b2.expect_message(conv, a.user_id, "after the restart", seq=1)


if __name__ == "__main__":
    unittest.main()
