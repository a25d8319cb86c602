"""Liveness verdicts that hold: svc-presence declares a gateway dead after
CHAT_GATEWAY_TTL_MS (3 s here) without a heartbeat. A gateway whose
heartbeats come just under that (every 2.4 s), while it is busy registering
hundreds of new connections, keeps its users online and their chats; one
that really went silent (stopped) is declared dead, and when it comes back
it re-registers what it holds, so its users are online again and their
random chats go on (the reconnect grace had not run out)."""

import asyncio

import cluster
from client import connect, pair

CLUSTER = cluster.Cluster(gateways=2, name="liveness",
                          env={"CHAT_GATEWAY_TTL_MS": "3000", "CHAT_HEARTBEAT_MS": "2400",
                               "CHAT_RECONNECT_GRACE_MS": "30000", "CHAT_RATE_PER_MIN": "0"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class LivenessTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    def setUp(self):
        self.cluster.skip_unless_local("reads the services' logs and stops a gateway")

    def dead_verdicts(self):
        return sum(self.cluster.procs[n].log_text().count("event=pres_gateway_dead")
                   for n in self.cluster.service_procs("presence"))

    async def status_of(self, asker, user_id):
        f = await asker.request({"type": "presence", "user_ids": [user_id]}, "presence")
        return f["statuses"][0]["status"]

    async def test_heartbeats_just_under_the_ttl_during_a_connection_ramp(self):
        a, b = await self.connect(gw=0, skip_presence=False), await self.connect(gw=1)
        conv = await pair(a, b)
        before = self.dead_verdicts()
        # 400 connections at once on b's gateway, held for four TTLs; a
        # asks after b and chats with it meanwhile.
        url = self.cluster.ws_url(1)
        crowd = await asyncio.gather(*(connect(url) for _ in range(400)))
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + 12
            i = 0
            while loop.time() < end:
                self.assertEqual(await self.status_of(a, b.user_id), "online")
                i += 1
                cmid = await a.send_text(conv, f"m{i}")
                await a.expect_ack(conv, cmid, seq=i)
                await b.expect_message(conv, a.user_id, f"m{i}", seq=i)
                await a.no_frame(0.5)  # also: no presence push, no partner_disconnected
        finally:
            await asyncio.gather(*(c.close() for c in crowd))
        self.assertEqual(self.dead_verdicts(), before, "a live gateway was declared dead")
        await b.no_frame(0.1)

    async def test_a_false_verdict_costs_nobody_their_chat(self):
        a, b = await self.connect(gw=0), await self.connect(gw=1)
        conv = await pair(a, b)
        before = self.dead_verdicts()
        gw = self.cluster.procs["gateway2"]
        gw.pause()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while self.dead_verdicts() == before:
                self.assertLess(loop.time(), deadline, "gateway2 never declared dead")
                await asyncio.sleep(0.1)  # polling a log file: there is no event to await
            self.assertEqual(await self.status_of(a, b.user_id), "offline")
        finally:
            gw.resume()
        # Its next heartbeat is answered "resync": it registers b again.
        deadline = asyncio.get_running_loop().time() + 10
        while await self.status_of(a, b.user_id) != "online":
            self.assertLess(asyncio.get_running_loop().time(), deadline, "b never online again")
            await a.no_frame(0.2)
        cmid = await a.send_text(conv, "still here?")
        await a.expect_ack(conv, cmid, seq=1)
        await b.expect_message(conv, a.user_id, "still here?", seq=1)
        cmid = await b.send_text(conv, "yes")
        await b.expect_ack(conv, cmid, seq=2)
        await a.expect_message(conv, b.user_id, "yes", seq=2)
        await a.no_frame(0.3)  # no partner_disconnected, no chat_ended
        await b.no_frame(0.1)
