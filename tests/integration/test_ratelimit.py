"""Per-user rate limit (CHAT_RATE_PER_MIN=3), shared by all gateways."""

import unittest

import cluster
from client import is_int, new_id, pair

CLUSTER = cluster.Cluster(gateways=2, name="ratelimit", env={"CHAT_RATE_PER_MIN": "3"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


def retry_after_ok(v):
    # 3 a minute: the next token is at most 20 s away.
    return is_int(v) and 0 < v <= 20000


class RateLimitTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def test_fourth_message_is_rate_limited(self):
        a, b = await self.connect(0), await self.connect(0)
        conv = await pair(a, b)
        acks = []
        for i in range(3):
            cmid = await a.send_text(conv, f"m{i}")
            acks.append(await a.expect_ack(conv, cmid, seq=i + 1))
            await b.expect_message(conv, a.user_id, f"m{i}", seq=i + 1)
        req = a.next_req()
        await a.send_text(conv, "too fast", req=req)
        await a.expect_error("rate_limited", req=req, retry_after_ms=retry_after_ok)
        # A retry of a stored message is not refused: it gets its original ack.
        req = a.next_req()
        await a.send_text(conv, "m0", client_msg_id=acks[0]["client_msg_id"], req=req)
        again = await a.expect_ack(conv, acks[0]["client_msg_id"], seq=1, req=req)
        self.assertEqual({k: v for k, v in again.items() if k != "req"}, acks[0])
        await b.no_frame(0.3)   # nothing stored, nothing delivered
        # The partner has a bucket of its own.
        cmid = await b.send_text(conv, "mine")
        await b.expect_ack(conv, cmid, seq=4)
        await a.expect_message(conv, b.user_id, "mine", seq=4)

    async def test_rejected_sends_take_no_token(self):
        a, b = await self.connect(0), await self.connect(1)
        conv = await pair(a, b)
        await a.send_text(conv, "x" * 501)
        await a.expect_error("too_long")
        await a.send_text(conv, "   ")
        await a.expect_error("bad_request")
        for i in range(3):
            cmid = await a.send_text(conv, f"m{i}")
            await a.expect_ack(conv, cmid, seq=i + 1)
        await a.send_text(conv, "four")
        await a.expect_error("rate_limited", retry_after_ms=retry_after_ok)

    async def test_bucket_is_shared_across_gateways(self):
        a, b = await self.connect(0), await self.connect(1)
        conv = await pair(a, b)
        for i in range(2):
            cmid = await a.send_text(conv, f"gw1-{i}")
            await a.expect_ack(conv, cmid, seq=i + 1)
            await b.expect_message(conv, a.user_id, f"gw1-{i}", seq=i + 1)
        a2 = await self.connect(1, session=a.session)      # same user on gateway 2
        self.assertEqual(a2.user_id, a.user_id)
        cmid = await a2.send_text(conv, "gw2-0")
        await a2.expect_ack(conv, cmid, seq=3)
        await b.expect_message(conv, a.user_id, "gw2-0", seq=3)
        req = a2.next_req()
        await a2.send_text(conv, "gw2-1", req=req)
        await a2.expect_error("rate_limited", req=req, retry_after_ms=retry_after_ok)
        await a.send_text(conv, "gw1-again")
        await a.expect_error("rate_limited", retry_after_ms=retry_after_ok)
        await b.no_frame(0.3)


if __name__ == "__main__":
    unittest.main()
