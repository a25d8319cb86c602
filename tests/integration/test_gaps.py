"""Lost events are found and filled without a reconnect: svc-message loses
every second batch it publishes on purpose (CHAT_TEST_DROP_EVENTS=2, a test
switch), and the receiving gateways learn of it from the publishers' batch
numbers (the next batch, or the idle heartbeat when the lost one was the
last) and fill the connection's gap from storage."""

import time

import cluster
from client import new_id

CLUSTER = cluster.Cluster(gateways=2, name="gaps",
                          env={"CHAT_RATE_PER_MIN": "0", "CHAT_TEST_DROP_EVENTS": "2"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class GapsTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def dm(self):
        a, b = await self.connect(gw=0), await self.connect(gw=1)
        f = await a.request({"type": "open_dm", "user_id": b.user_id}, "conversation")
        return a, b, f["conversation_id"]

    async def test_each_lost_message_is_filled_in_order(self):
        a, b, conv = await self.dm()
        lost0 = CLUSTER.metric(1, "chat_gateway_event_batches_lost_total")
        fills0 = CLUSTER.metric(1, "chat_gateway_order_fills_total")
        waits = []
        for i in range(1, 9):
            # One at a time: every message is the last one sent, so a lost
            # one is found by the heartbeat, not by its successor.
            cmid = await a.send_text(conv, f"m{i}")
            await a.expect_ack(conv, cmid, seq=i)
            t0 = time.monotonic()
            await b.expect_message(conv, a.user_id, f"m{i}", seq=i)
            waits.append(time.monotonic() - t0)
        await b.no_frame(0.3)
        lost = CLUSTER.metric(1, "chat_gateway_event_batches_lost_total") - lost0
        fills = CLUSTER.metric(1, "chat_gateway_order_fills_total") - fills0
        print(f"\n  gaps: {lost} batches lost, {fills} fills; ack-to-message s: "
              + " ".join(f"{w:.3f}" for w in waits))
        self.assertGreaterEqual(lost, 3)
        self.assertGreaterEqual(fills, 3)

    async def test_a_burst_with_holes_arrives_whole(self):
        a, b, conv = await self.dm()
        n = 30
        for i in range(n):
            await a.send_text(conv, f"b{i}", client_msg_id=new_id())
        seqs = []
        while len(seqs) < n:
            f = await b.recv()
            self.assertEqual(f["type"], "message", f)
            seqs.append(f["seq"])
        self.assertEqual(seqs, list(range(1, n + 1)))
        for _ in range(n):
            self.assertEqual((await a.recv())["type"], "ack")
        await b.no_frame(0.3)

    async def test_the_senders_other_connection_misses_nothing(self):
        a, b, conv = await self.dm()
        a2 = await self.connect(gw=1, session=a.session)
        for i in range(1, 7):
            # a and b take turns: a2 gets b's messages, and a's own only move
            # its cursor (lost or not).
            s, text = (a, f"a{i}") if i % 2 else (b, f"b{i}")
            cmid = await s.send_text(conv, text)
            await s.expect_ack(conv, cmid, seq=i)
            other = b if s is a else a
            await other.expect_message(conv, s.user_id, text, seq=i)
            if s is b:
                await a2.expect_message(conv, b.user_id, text, seq=i)
        await a2.no_frame(0.3)

    async def test_resume_after_a_lost_event(self):
        a, b, conv = await self.dm()
        cmid = await a.send_text(conv, "before")
        await a.expect_ack(conv, cmid, seq=1)
        await b.expect_message(conv, a.user_id, "before", seq=1)
        await b.close()
        b2 = await self.connect(gw=0, session=b.session)
        await b2.expect_message(conv, a.user_id, "before", seq=1)  # not confirmed: replayed
        for i in range(2, 6):
            cmid = await a.send_text(conv, f"after{i}")
            await a.expect_ack(conv, cmid, seq=i)
            await b2.expect_message(conv, a.user_id, f"after{i}", seq=i)
        await b2.no_frame(0.3)
