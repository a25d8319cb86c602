"""Messages in a random chat: ack and message frames, seq, dedupe, limits, end_chat,
resume within the grace with replay."""

import asyncio
import unittest
import uuid

import cluster
from client import ANY, is_id, new_id, pair

CLUSTER = cluster.Cluster(gateways=1, name="chat")
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class ChatTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def chat(self):
        a, b = await self.connect(), await self.connect()
        return a, b, await pair(a, b)

    async def test_ack_and_message_fields(self):
        a, b, conv = await self.chat()
        req = a.next_req()
        cmid = await a.send_text(conv, "hello there", req=req)
        ack = await a.expect_ack(conv, cmid, seq=1, req=req)
        msg = await b.expect_message(conv, a.user_id, "hello there", seq=1, msg_id=ack["msg_id"], ts=ack["ts"])
        self.assertEqual(msg["seq"], 1)
        # And the other way round: seq goes on per conversation.
        cmid2 = await b.send_text(conv, "hi")
        ack2 = await b.expect_ack(conv, cmid2, seq=2)
        await a.expect_message(conv, b.user_id, "hi", seq=2, msg_id=ack2["msg_id"], ts=ack2["ts"])
        self.assertNotEqual(ack["msg_id"], ack2["msg_id"])
        await a.no_frame(0.2)
        await b.no_frame(0.05)

    async def burst(self, senders, conv, n):
        """Each sender sends n messages back to back (interleaved between senders);
        returns {sender: [ack frames, in the order their messages were sent]} after
        checking every member got every other member's messages exactly once, in
        ascending gapless seq, with the fields of the matching ack."""
        texts = {}
        for i in range(n):
            for s in senders:
                cmid = new_id()
                texts[cmid] = (s, f"{s.user_id[:8]} #{i}")
                await s.send_text(conv, texts[cmid][1], client_msg_id=cmid)
        acks, got = {s: [] for s in senders}, {s: [] for s in senders}
        for s in senders:
            others = n * (len(senders) - 1)
            while len(acks[s]) < n or len(got[s]) < others:
                f = await s.recv()
                self.assertIn(f["type"], ("ack", "message"), f)
                (acks if f["type"] == "ack" else got)[s].append(f)
        by_seq = {}
        for s in senders:
            self.assertEqual(len(acks[s]), n, acks[s])
            for f in acks[s]:
                self.assertEqual(texts[f["client_msg_id"]][0], s, f)
                by_seq[f["seq"]] = f
        self.assertEqual(sorted(by_seq), list(range(1, n * len(senders) + 1)))
        for s in senders:
            seqs = [m["seq"] for m in got[s]]
            self.assertEqual(seqs, sorted(seqs), f"{s.user_id} received out of seq order")
            for m in got[s]:
                ack = by_seq[m["seq"]]
                sender, text = texts[ack["client_msg_id"]]
                self.assertIsNot(sender, s)
                self.assertEqual(m, {"type": "message", "conversation_id": conv, "msg_id": ack["msg_id"],
                                     "seq": ack["seq"], "from": sender.user_id, "text": text, "ts": ack["ts"]})
            await s.no_frame(0.1)
        sent_order = {s: [c for c in texts if texts[c][0] is s] for s in senders}
        return {s: sorted(acks[s], key=lambda f: sent_order[s].index(f["client_msg_id"])) for s in senders}

    async def test_burst_is_gapless_and_in_seq_order(self):
        a, b, conv = await self.chat()
        await self.burst([a], conv, 10)             # the default rate allows a burst of 10

    async def test_concurrent_senders_gapless(self):
        a, b, conv = await self.chat()
        await self.burst([a, b], conv, 8)

    async def test_one_senders_messages_keep_their_order(self):
        # What a user types first is stored (and shown) first: one connection's
        # sends to one conversation get rising seqs in the order they were sent.
        for _ in range(3):                          # reordering is a race: give it a few chances
            a, b, conv = await self.chat()
            acks = await self.burst([a, b], conv, 8)
            for s in (a, b):
                self.assertEqual([f["seq"] for f in acks[s]], sorted(f["seq"] for f in acks[s]),
                                 "seq order differs from send order: " +
                                 str([(f["client_msg_id"][:6], f["seq"]) for f in acks[s]]))

    async def test_retry_is_deduplicated(self):
        a, b, conv = await self.chat()
        cmid = new_id()
        await a.send_text(conv, "once", client_msg_id=cmid)
        ack1 = await a.expect_ack(conv, cmid, seq=1)
        await b.expect_message(conv, a.user_id, "once", seq=1, msg_id=ack1["msg_id"])
        req = a.next_req()
        await a.send_text(conv, "once", client_msg_id=cmid, req=req)
        ack2 = await a.expect_ack(conv, cmid, seq=1, req=req)
        self.assertEqual({k: v for k, v in ack2.items() if k != "req"}, ack1)
        # The partner's next frame is the next message, not a second "once".
        cmid3 = await a.send_text(conv, "next")
        ack3 = await a.expect_ack(conv, cmid3, seq=2)
        await b.expect_message(conv, a.user_id, "next", seq=2, msg_id=ack3["msg_id"])
        # The same client_msg_id from the other user is a different message.
        await b.send_text(conv, "mine", client_msg_id=cmid)
        await b.expect_ack(conv, cmid, seq=3)
        await a.expect_message(conv, b.user_id, "mine", seq=3)

    async def test_text_length_in_code_points(self):
        a, b, conv = await self.chat()
        seq = 0
        for text in ("x" * 500, "é" * 500, "😀" * 500, "a😀é" * 166 + "zz"):
            with self.subTest(text=text[:3], n=len(text)):
                cmid = await a.send_text(conv, text)
                seq += 1
                await a.expect_ack(conv, cmid, seq=seq)
                await b.expect_message(conv, a.user_id, text, seq=seq)
        for text in ("x" * 501, "é" * 501, "😀" * 501, "x" * 5000):
            with self.subTest(text=text[:3], n=len(text)):
                req = a.next_req()
                await a.send_text(conv, text, req=req)
                await a.expect_error("too_long", req=req)
        # Nothing was stored for those: the next one is seq+1.
        cmid = await a.send_text(conv, "after")
        await a.expect_ack(conv, cmid, seq=seq + 1)
        await b.expect_message(conv, a.user_id, "after", seq=seq + 1)

    async def test_empty_and_blank_text_is_bad_request(self):
        a, b, conv = await self.chat()
        for text in ("", " ", "   ", "\t", "\n", " \r\n\t ", "\u00a0", "\u3000", " \u2003\u2028 "):
            with self.subTest(text=text):
                req = a.next_req()
                await a.send_text(conv, text, req=req)
                await a.expect_error("bad_request", req=req)
        cmid = await a.send_text(conv, " x ")
        await a.expect_ack(conv, cmid, seq=1)
        await b.expect_message(conv, a.user_id, " x ", seq=1)

    async def test_send_to_unknown_or_foreign_conversation(self):
        a, b, conv = await self.chat()
        c = await self.connect()
        await c.send_text(conv, "intruder")
        await c.expect_error("not_member")
        await a.send_text(str(uuid.uuid4()), "nobody")
        await a.expect_error("not_found")
        await a.send_text("no-such-conversation", "nobody")
        await a.expect_error("not_found")
        await b.no_frame(0.2)

    async def test_end_chat_then_closed(self):
        a, b, conv = await self.chat()
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect("chat_ended", exact=True, conversation_id=conv, by="you")
        await b.expect("chat_ended", exact=True, conversation_id=conv, by="partner")
        for c in (a, b):
            req = c.next_req()
            await c.send_text(conv, "still there?", req=req)
            await c.expect_error("conversation_closed", req=req)
            req = c.next_req()
            await c.send({"type": "end_chat", "conversation_id": conv, "req": req})
            await c.expect_error("conversation_closed", req=req)
        # Both are free to search again.
        await a.request({"type": "start_search"}, "searching", exact=True)
        await a.request({"type": "stop_search"}, "search_stopped", exact=True)

    async def test_end_chat_unknown_conversation(self):
        a = await self.connect()
        req = a.next_req()
        await a.send({"type": "end_chat", "conversation_id": str(uuid.uuid4()), "req": req})
        await a.expect_error("not_found", req=req)

    async def test_resume_within_grace_replays_then_live(self):
        a, b, conv = await self.chat()
        cmid = await a.send_text(conv, "m1")
        await a.expect_ack(conv, cmid, seq=1)
        await b.expect_message(conv, a.user_id, "m1", seq=1)
        await b.send({"type": "receipt", "conversation_id": conv, "seq": 1, "status": "delivered"})
        # The relayed receipt shows it is stored: m1 must not come back on resume.
        await a.expect("receipt", exact=True, conversation_id=conv, seq=1, status="delivered",
                       user_id=b.user_id)
        await b.close()
        acks = []
        for text in ("m2", "m3"):
            cmid = await a.send_text(conv, text)
            acks.append(await a.expect_ack(conv, cmid))
        self.assertEqual([f["seq"] for f in acks], [2, 3])
        b2 = await self.connect(session=b.session)
        self.assertEqual(b2.user_id, b.user_id)
        cmid = await a.send_text(conv, "m4")                 # live, possibly during the replay
        await a.expect_ack(conv, cmid, seq=4)
        await b2.expect_message(conv, a.user_id, "m2", seq=2, msg_id=acks[0]["msg_id"], ts=acks[0]["ts"])
        await b2.expect_message(conv, a.user_id, "m3", seq=3, msg_id=acks[1]["msg_id"], ts=acks[1]["ts"])
        await b2.expect_message(conv, a.user_id, "m4", seq=4)
        await b2.no_frame(0.3)
        # The chat goes on both ways.
        cmid = await b2.send_text(conv, "back")
        await b2.expect_ack(conv, cmid, seq=5)
        await a.expect_message(conv, b.user_id, "back", seq=5)
        await a.no_frame(0.1)


if __name__ == "__main__":
    unittest.main()
