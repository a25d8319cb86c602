"""Replicas die under load: 2 gateways x 2 replicas of every service, pairs
chatting across the gateways, and one replica of a service killed with
SIGKILL mid-stream, then started again. Nothing acknowledged is lost, nothing
arrives twice or out of order, no chat ends, searches still pair each user
exactly once, and the cluster is whole again afterwards."""

import asyncio
import signal

import cluster
from client import is_id, new_id, pair

CLUSTER = cluster.Cluster(gateways=2, replicas={"message": 2, "match": 2, "presence": 2},
                          name="replica_kill",
                          env={"CHAT_RATE_PER_MIN": "0", "CHAT_RPC_TIMEOUT_MS": "2000"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)

PAIRS = 6
PER_SENDER = 60


class ReplicaKillTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    def setUp(self):
        self.cluster.skip_unless_local("kills replicas")

    async def sender(self, a, conv, n, progress, stats):
        """Sends n messages one after another, each retried with its client_msg_id
        until acked; returns the acked seqs in send order."""
        acked = []
        for i in range(n):
            cmid = new_id()
            for attempt in range(60):
                req = a.next_req()
                await a.send_text(conv, f"m{i}", client_msg_id=cmid, req=req)
                f = await a.recv(timeout=10)
                if f["type"] == "ack":
                    self.assertEqual((f["client_msg_id"], f["req"]), (cmid, req), f)
                    acked.append(f["seq"])
                    break
                self.assertEqual((f["type"], f.get("code"), f.get("req")), ("error", "unavailable", req), f)
                stats["unavailable"] += 1
                await a.no_frame(0.1)
            else:
                self.fail(f"m{i} never acked")
            progress[0] += 1
        return acked

    async def receiver(self, b, conv, sender_id, n):
        got = []
        while len(got) < n:
            f = await b.recv(timeout=15)
            self.assertEqual(f["type"], "message", f)
            self.assertEqual((f["conversation_id"], f["from"]), (conv, sender_id), f)
            got.append(f)
        return got

    async def chat_through_kill(self, victim):
        pairs = []
        for i in range(PAIRS):
            a, b = await self.connect(gw=i % 2), await self.connect(gw=(i + 1) % 2)
            pairs.append((a, b, await pair(a, b)))
        progress, stats = [0], {"unavailable": 0}
        senders = [asyncio.create_task(self.sender(a, conv, PER_SENDER, progress, stats))
                   for a, b, conv in pairs]
        receivers = [asyncio.create_task(self.receiver(b, conv, a.user_id, PER_SENDER))
                     for a, b, conv in pairs]
        total = PAIRS * PER_SENDER
        # Kill once a third has been acked, restart once two thirds have.
        while progress[0] < total // 3:
            await asyncio.wait(senders, timeout=0.05)
            self.assertFalse(any(t.done() and t.exception() for t in senders))
        self.cluster.kill(victim, signal.SIGKILL)
        while progress[0] < 2 * total // 3 and not all(t.done() for t in senders):
            await asyncio.wait(senders, timeout=0.05)
        self.cluster.restart(victim)
        acked = await asyncio.gather(*senders)
        got = await asyncio.gather(*receivers)
        for (a, b, conv), seqs, msgs in zip(pairs, acked, got):
            self.assertEqual(seqs, list(range(1, PER_SENDER + 1)), "acks: gapless, in send order")
            self.assertEqual([m["seq"] for m in msgs], seqs, "delivered: each acked one, once, in order")
            self.assertEqual([m["text"] for m in msgs], [f"m{i}" for i in range(PER_SENDER)])
            rows = self.cluster.psql(f"SELECT count(*) FROM messages WHERE conversation_id = '{conv}'")
            self.assertEqual(rows, [str(PER_SENDER)])
        for a, b, conv in pairs:
            await a.no_frame(0.1)
            await b.no_frame(0.1)
        for i in range(2):
            self.cluster.wait_ready(i)
        print(f"\n  {victim}: {total} messages, {stats['unavailable']} answered unavailable (retried)")
        return pairs

    async def test_message_replica_killed(self):
        await self.chat_through_kill("svc-message.2")

    async def test_presence_replica_killed(self):
        pairs = await self.chat_through_kill("svc-presence.2")
        # Presence still answers about everyone online.
        a, b, _ = pairs[0]
        f = await a.request({"type": "presence", "user_ids": [b.user_id]}, "presence")
        self.assertEqual(f["statuses"][0]["status"], "online", f)

    async def test_match_replica_killed(self):
        await self.chat_through_kill("svc-match.2")
        # Searches after the restart pair everyone once, across both replicas.
        users = [await self.connect(gw=i % 2) for i in range(8)]
        for u in users:
            await u.request({"type": "start_search"}, "searching", exact=True)
        convs = {}
        for u in users:
            f = await u.expect("matched", exact=True, conversation_id=is_id, kind="random")
            convs.setdefault(f["conversation_id"], []).append(u.user_id)
        self.assertEqual(sorted(len(v) for v in convs.values()), [2] * 4, convs)
        for u in users:
            await u.no_frame(0.2)
