"""The gateway's fallback event loop: CHAT_GATEWAY_LOOP=poll (lws's own
poll() loop, what runs where lws's libev plugin is missing). The same
chat must work: pairing, an ack, the message at the partner, end_chat,
and a resume that replays what was missed."""

import unittest

import cluster
from client import pair

CLUSTER = cluster.Cluster(gateways=1, name="poll", env={"CHAT_GATEWAY_LOOP": "poll"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class PollLoopTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def test_gateway_says_which_loop(self):
        self.cluster.skip_unless_local("reads the gateway's log")
        self.assertIn("loop=poll", self.cluster.procs["gateway1"].tail(200))

    async def test_chat_end_to_end(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        req = a.next_req()
        cmid = await a.send_text(conv, "over poll", req=req)
        ack = await a.expect_ack(conv, cmid, seq=1, req=req)
        await b.expect_message(conv, a.user_id, "over poll", seq=1, msg_id=ack["msg_id"], ts=ack["ts"])
        # B drops; A sends; B resumes and gets what it has not confirmed.
        session = b.session
        await b.close()
        cmid2 = await a.send_text(conv, "while away")
        await a.expect_ack(conv, cmid2, seq=2)
        b2 = await self.connect(session=session)
        # No delivered receipt was sent: the replay starts at seq 1.
        await b2.expect_message(conv, a.user_id, "over poll", seq=1)
        await b2.expect_message(conv, a.user_id, "while away", seq=2)
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect("chat_ended", exact=True, conversation_id=conv, by="you")
        await b2.expect("chat_ended", exact=True, conversation_id=conv, by="partner")


if __name__ == "__main__":
    unittest.main()
