"""Random matchmaking: FIFO, idempotent search, stop, leaving while searching, already_in_chat."""

import time
import unittest

import cluster
from client import is_id, pair

CLUSTER = cluster.Cluster(gateways=1, name="match")
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class MatchTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def search(self, c, matched=False):
        await c.request({"type": "start_search"}, "searching", exact=True)
        if matched:
            return (await c.expect("matched", exact=True, conversation_id=is_id, kind="random"))["conversation_id"]

    async def test_fifo_four_users(self):
        a, b, c, d = [await self.connect() for _ in range(4)]
        await self.search(a)
        conv_ab = await self.search(b, matched=True)
        await a.expect("matched", exact=True, conversation_id=conv_ab, kind="random")
        await self.search(c)
        conv_cd = await self.search(d, matched=True)
        await c.expect("matched", exact=True, conversation_id=conv_cd, kind="random")
        self.assertNotEqual(conv_ab, conv_cd)
        for x in (a, b, c, d):
            await x.no_frame(0.2)

    async def test_search_twice_keeps_one_place(self):
        a, b = await self.connect(), await self.connect()
        await self.search(a)
        await self.search(a)   # harmless: searching again, same place
        conv = await self.search(b, matched=True)
        await a.expect("matched", exact=True, conversation_id=conv, kind="random")
        await a.no_frame(0.3)
        await b.no_frame(0.05)

    async def test_stop_search(self):
        a, b = await self.connect(), await self.connect()
        await self.search(a)
        await a.request({"type": "stop_search"}, "search_stopped", exact=True)
        await self.search(b)
        await b.no_frame(0.3)
        await a.no_frame(0.05)
        await b.request({"type": "stop_search"}, "search_stopped", exact=True)

    async def wait_offline(self, observer, user_id, timeout=10):
        """Polls presence until user_id is offline (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            f = await observer.request({"type": "presence", "user_ids": [user_id]}, "presence", exact=True,
                                       statuses=lambda s: isinstance(s, list) and len(s) == 1)
            st = f["statuses"][0]
            self.assertEqual(st["user_id"], user_id)
            if st["status"] == "offline":
                return st
            self.assertLess(time.monotonic(), deadline, f"{user_id} still online after {timeout}s: {st}")
            await observer.no_frame(0.05)

    async def test_disconnect_while_searching_leaves_queue(self):
        q = await self.connect()
        a = await self.connect()
        await self.search(a)
        await a.close()
        await self.wait_offline(q, a.user_id)
        b = await self.connect()
        await self.search(b)
        await b.no_frame(0.3)          # nobody is matched with a user who is gone
        c = await self.connect()
        conv = await self.search(c, matched=True)
        await b.expect("matched", exact=True, conversation_id=conv, kind="random")

    async def test_start_search_in_chat_is_already_in_chat(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        req = a.next_req()
        await a.send({"type": "start_search", "req": req})
        await a.expect_error("already_in_chat", req=req)
        await b.send({"type": "start_search"})
        await b.expect_error("already_in_chat")
        # After the chat ends, searching works again.
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect("chat_ended", exact=True, conversation_id=conv, by="you")
        await b.expect("chat_ended", exact=True, conversation_id=conv, by="partner")
        await self.search(a)
        await a.request({"type": "stop_search"}, "search_stopped", exact=True)


if __name__ == "__main__":
    unittest.main()
