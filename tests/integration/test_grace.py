"""Timers: the reconnect grace (CHAT_RECONNECT_GRACE_MS=1000): partner_disconnected, and
the gone user's chat_ended by timeout on return; the typing timeout
(CHAT_TYPING_TIMEOUT_MS=1000)."""

import unittest

import cluster
from client import pair

CLUSTER = cluster.Cluster(gateways=1, name="grace", env={"CHAT_RECONNECT_GRACE_MS": "1000",
                                                             "CHAT_TYPING_TIMEOUT_MS": "1000"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class GraceTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def test_partner_disconnected_after_grace(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        cmid = await a.send_text(conv, "are you there")
        await a.expect_ack(conv, cmid, seq=1)
        await b.expect_message(conv, a.user_id, "are you there", seq=1)
        # Confirmed (the relayed receipt shows it is stored), so not replayed on return.
        await b.send({"type": "receipt", "conversation_id": conv, "seq": 1, "status": "delivered"})
        await a.expect("receipt", exact=True, conversation_id=conv, seq=1, status="delivered",
                       user_id=b.user_id)
        await b.close()
        # Grace 1 s + sweeper tick; bounded well above that.
        await a.expect("partner_disconnected", exact=True, conversation_id=conv, timeout=10)
        req = a.next_req()
        await a.send_text(conv, "too late", req=req)
        await a.expect_error("conversation_closed", req=req)
        # A is free again.
        await a.request({"type": "start_search"}, "searching", exact=True)
        await a.request({"type": "stop_search"}, "search_stopped", exact=True)
        # B returns after the grace: told once that the chat ended by timeout.
        b2 = await self.connect(session=b.session)
        self.assertEqual(b2.user_id, b.user_id)
        await b2.expect("chat_ended", exact=True, conversation_id=conv, by="timeout")
        await b2.no_frame(0.3)
        req = b2.next_req()
        await b2.send_text(conv, "hello?", req=req)
        await b2.expect_error("conversation_closed", req=req)
        await b2.request({"type": "start_search"}, "searching", exact=True)
        await b2.request({"type": "stop_search"}, "search_stopped", exact=True)
        await b2.close()
        b3 = await self.connect(session=b.session)     # handed out once only
        await b3.no_frame(0.3)
        await a.no_frame(0.05)

    async def test_partner_ends_while_away_is_told_on_return(self):
        # B's connection is gone (within the grace) when A ends the chat: the live
        # chat_ended cannot reach B, so B gets it when it resumes, once.
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        await b.close()
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect("chat_ended", exact=True, conversation_id=conv, by="you")
        b2 = await self.connect(session=b.session)
        await b2.expect("chat_ended", exact=True, conversation_id=conv, by="partner")
        await b2.no_frame(0.3)
        await b2.close()
        b3 = await self.connect(session=b.session)
        await b3.no_frame(0.3)

    async def test_quick_reconnect_keeps_chat(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        await b.close()
        b2 = await self.connect(session=b.session)      # well within 1 s
        cmid = await a.send_text(conv, "still here")
        await a.expect_ack(conv, cmid, seq=1)
        await b2.expect_message(conv, a.user_id, "still here", seq=1)
        # Past the grace, nothing ends: B has a connection.
        await a.no_frame(1.6)
        await b2.no_frame(0.05)
        cmid = await b2.send_text(conv, "yes")
        await b2.expect_ack(conv, cmid, seq=2)
        await a.expect_message(conv, b.user_id, "yes", seq=2)

    async def test_typing_start_expires_into_stop(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        await a.send({"type": "typing", "conversation_id": conv, "state": "start"})
        await b.expect("typing", exact=True, conversation_id=conv, user_id=a.user_id, state="start")
        # Not refreshed: a stop comes by itself after about 1 s (and not long before).
        await b.no_frame(0.5)
        await b.expect("typing", exact=True, conversation_id=conv, user_id=a.user_id, state="stop", timeout=5)
        await b.no_frame(0.3)
        await a.no_frame(0.05)

    async def test_typing_refresh_and_stop(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        # A refreshed start postpones the automatic stop...
        await a.send({"type": "typing", "conversation_id": conv, "state": "start"})
        await b.expect("typing", exact=True, conversation_id=conv, user_id=a.user_id, state="start")
        await b.no_frame(0.6)
        await a.send({"type": "typing", "conversation_id": conv, "state": "start"})
        await b.expect("typing", exact=True, conversation_id=conv, user_id=a.user_id, state="start")
        await b.no_frame(0.5)      # past the first start's 1 s
        await b.expect("typing", exact=True, conversation_id=conv, user_id=a.user_id, state="stop", timeout=5)
        # ...and an explicit stop settles it: no second stop later.
        await a.send({"type": "typing", "conversation_id": conv, "state": "start"})
        await b.expect("typing", exact=True, conversation_id=conv, user_id=a.user_id, state="start")
        await a.send({"type": "typing", "conversation_id": conv, "state": "stop"})
        await b.expect("typing", exact=True, conversation_id=conv, user_id=a.user_id, state="stop")
        await b.no_frame(1.5)
        # The typist's connection closing does not keep the other side waiting. (Its
        # grace of 1 s also ends the chat about then: the two pushes may come in either order.)
        await a.send({"type": "typing", "conversation_id": conv, "state": "start"})
        await b.expect("typing", exact=True, conversation_id=conv, user_id=a.user_id, state="start")
        await a.close()
        got = [await b.recv(timeout=5), await b.recv(timeout=5)]
        stop = {"type": "typing", "conversation_id": conv, "user_id": a.user_id, "state": "stop"}
        ended = {"type": "partner_disconnected", "conversation_id": conv}
        self.assertIn(got, ([stop, ended], [ended, stop]))


if __name__ == "__main__":
    unittest.main()
