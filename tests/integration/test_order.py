"""Order across gateways and replicas: concurrent senders on two gateways,
through two svc-message replicas, and every connection of every member (the
senders' second connections too) gets the room's messages in seq order, each
exactly once, none missing (PROTOCOL.md "Messages")."""

import asyncio

import cluster
from client import is_id, new_id

CLUSTER = cluster.Cluster(gateways=2, replicas={"message": 2, "match": 2, "presence": 2}, name="order",
                          env={"CHAT_RATE_PER_MIN": "0"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)

PER_SENDER = 40


class OrderTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def collect(self, c, want_msgs, want_acks, timeout=10.0):
        """Reads c's frames until it has want_msgs messages and want_acks acks."""
        msgs, acks = [], []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(msgs) < want_msgs or len(acks) < want_acks:
            f = await c.recv(timeout=max(0.1, deadline - loop.time()))
            self.assertIn(f["type"], ("message", "ack"), f)
            (msgs if f["type"] == "message" else acks).append(f)
        return msgs, acks

    async def test_concurrent_senders_in_a_room_arrive_in_seq_order(self):
        room = "order-" + new_id()[:8]
        # Senders alternate gateways; the room also has a silent member.
        users = [await self.connect(gw=i % 2) for i in range(4)]
        convs = {(await u.request({"type": "join_room", "room": room}, "conversation", exact=True,
                                  conversation_id=is_id, kind="room", room=room))["conversation_id"]
                 for u in users}
        self.assertEqual(len(convs), 1, convs)
        conv = convs.pop()
        # Second connections of two senders, on the other gateway (resumes).
        twins = {0: await self.connect(gw=1, session=users[0].session),
                 1: await self.connect(gw=0, session=users[1].session)}
        senders = users[:3]

        # Every sender pipelines its sends; the three run at once.
        async def blast(s):
            for i in range(PER_SENDER):
                await s.send_text(conv, f"{s.user_id[:8]}-{i}")
        await asyncio.gather(*(blast(s) for s in senders))

        total = PER_SENDER * len(senders)
        got = {}
        for i, u in enumerate(users):
            mine = PER_SENDER if i < 3 else 0
            got[u] = await self.collect(u, total - mine, mine)
        for i, t in twins.items():
            got[t] = await self.collect(t, total - PER_SENDER, 0)

        seq_owner = {}
        for u in senders:
            acks = got[u][1]
            # One sender's acks come in the order it sent, with rising seqs.
            seqs = [a["seq"] for a in acks]
            self.assertEqual(seqs, sorted(seqs), acks)
            for a in acks:
                self.assertNotIn(a["seq"], seq_owner)
                seq_owner[a["seq"]] = u.user_id
        self.assertEqual(sorted(seq_owner), list(range(1, total + 1)))

        def check(conn, user_id):
            msgs = got[conn][0]
            want = [s for s in range(1, total + 1) if seq_owner[s] != user_id]
            self.assertEqual([m["seq"] for m in msgs], want,
                             f"{user_id[:8]}: seqs out of order, missing or twice")
            for m in msgs:
                self.assertEqual(m["from"], seq_owner[m["seq"]], m)
        for u in users:
            check(u, u.user_id)
        for i, t in twins.items():
            check(t, users[i].user_id)
        for c in users + list(twins.values()):
            await c.no_frame(0.2)
        held = sum(CLUSTER.metric(i, "chat_gateway_order_held_total") for i in range(2))
        fills = sum(CLUSTER.metric(i, "chat_gateway_order_fills_total") for i in range(2))
        print(f"\n  order: {held} messages held for a predecessor, {fills} gap fills")

