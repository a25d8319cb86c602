"""Malformed input: JSON, types, fields, req, WebSocket-level violations, and a flood
that must not disturb other users (and meets the per-connection frame budget)."""

import asyncio
import json
import struct
import time
import unittest
import urllib.parse

import websockets

from websockets.frames import Opcode

import cluster
from client import ABSENT, pair
from rawws import OP_CLOSE, OP_CONT, OP_TEXT, Closed, RawWs, close_frame, frame

CLUSTER = cluster.Cluster(gateways=1, name="malformed")
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)

UUID0 = "00000000-0000-4000-8000-000000000000"


class MalformedTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def still_works(self, c):
        await c.request({"type": "presence", "user_ids": []}, "presence", exact=True, statuses=[])

    async def test_bad_json(self):
        c = await self.connect()
        for raw in ('[1]', '"x"', '{', '1', 'null', 'true', '[]', '', ' ', '{"type":"send"',
                    '{"type":"start_search"}}', "{'type':'x'}", '\u00e9'):
            with self.subTest(raw=raw):
                await c.send(raw)
                await c.expect_error("bad_json")
        await self.still_works(c)

    async def test_unknown_type(self):
        c = await self.connect()
        for obj in ({}, {"type": 5}, {"type": None}, {"type": ["send"]}, {"type": "nope"}, {"type": ""},
                    {"type": "connected"}, {"type": "ack"}, {"type": "SEND"}, {"req": "r0"}):
            with self.subTest(obj=obj):
                await c.send(obj)
                await c.expect_error("unknown_type", req=obj.get("req", ABSENT))
        await c.send({"type": "nope", "req": "r1"})
        await c.expect_error("unknown_type", req="r1")
        await self.still_works(c)

    async def test_bad_request_fields(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        cases = [
            {"type": "send", "text": "x", "client_msg_id": "1"},
            {"type": "send", "conversation_id": conv, "client_msg_id": "1"},
            {"type": "send", "conversation_id": conv, "text": "x"},
            {"type": "send", "conversation_id": conv, "text": 5, "client_msg_id": "1"},
            {"type": "send", "conversation_id": conv, "text": None, "client_msg_id": "1"},
            {"type": "send", "conversation_id": 7, "text": "x", "client_msg_id": "1"},
            {"type": "send", "conversation_id": conv, "text": "x", "client_msg_id": ""},
            {"type": "send", "conversation_id": conv, "text": "x", "client_msg_id": 1},
            {"type": "send", "conversation_id": conv, "text": "x", "client_msg_id": "c" * 65},
            {"type": "end_chat"},
            {"type": "end_chat", "conversation_id": 1},
            {"type": "receipt", "conversation_id": conv, "seq": "1", "status": "read"},
            {"type": "receipt", "conversation_id": conv, "seq": 1, "status": "seen"},
            {"type": "receipt", "conversation_id": conv, "status": "read"},
            {"type": "presence", "user_ids": "x"},
            {"type": "presence", "user_ids": [5]},
            {"type": "presence", "user_ids": [UUID0] * 101},
            {"type": "presence"},
            {"type": "history", "conversation_id": conv, "limit": 0},
            {"type": "history", "conversation_id": conv, "limit": 101},
            {"type": "history", "conversation_id": conv, "limit": "5"},
            {"type": "history", "conversation_id": conv, "before": 0},
            {"type": "typing", "conversation_id": conv, "state": "maybe"},
            {"type": "join_room", "room": "Bad Name"},
            {"type": "join_room", "room": ""},
            {"type": "join_room", "room": "r" * 65},
            {"type": "open_dm", "user_id": a.user_id},      # oneself
            {"type": "open_dm", "user_id": "nope"},
            {"type": "open_dm"},
            {"type": "join_room"},
            {"type": "join_room", "room": 5},
            {"type": "leave_room", "room": "Bad/Name"},
            {"type": "leave_room"},
            {"type": "history"},
            {"type": "history", "conversation_id": conv, "before": "3"},
            {"type": "history", "conversation_id": conv, "before": 1.5},
            {"type": "history", "conversation_id": conv, "limit": None},
            {"type": "typing", "conversation_id": conv},
            {"type": "typing", "state": "start"},
        ]
        for obj in cases:
            with self.subTest(obj=json.dumps(obj)[:120]):
                req = a.next_req()
                await a.send(dict(obj, req=req))
                await a.expect_error("bad_request", req=req)
        # None of that was stored or delivered.
        cmid = await a.send_text(conv, "fine")
        await a.expect_ack(conv, cmid, seq=1)
        await b.expect_message(conv, a.user_id, "fine", seq=1)
        await b.no_frame(0.1)

    async def test_req_rules(self):
        c = await self.connect()
        for bad_req in ("q" * 65, 5, None, ["r"], {"r": 1}, True):
            with self.subTest(req=bad_req):
                await c.send({"type": "presence", "user_ids": [], "req": bad_req})
                await c.expect_error("bad_request")        # an invalid req is not echoed
        for good in ("q" * 64, "", "é" * 32, "r-1"):
            with self.subTest(req=good):
                await c.send({"type": "presence", "user_ids": [], "req": good})
                await c.expect("presence", exact=True, statuses=[], req=good)
        await c.send({"type": "stop_search", "req": "s1"})
        await c.expect("search_stopped", exact=True, req="s1")

    async def test_binary_frame_closes_1003(self):
        c = await self.connect()
        await c.send_raw(b'{"type":"presence","user_ids":[]}', Opcode.BINARY)
        await c.expect_close(1003)

    async def test_invalid_utf8_closes_1007(self):
        for payload in (b'{"type":"\xff"}', b'\xc3\x28', b'{"type":"send","text":"\xed\xa0\x80"}',
                        b'\xf8\x88\x80\x80\x80'):
            with self.subTest(payload=payload):
                c = await self.connect()
                await c.send_raw(payload, Opcode.TEXT)
                await c.expect_close(1007)

    @staticmethod
    def padded(size):
        """A JSON object of exactly `size` bytes with an unknown type."""
        head = '{"type":"nope","pad":"'
        return head + "p" * (size - len(head) - 2) + '"}'

    async def test_size_limit(self):
        c = await self.connect()
        frame = self.padded(65536)
        self.assertEqual(len(frame.encode()), 65536)
        await c.send(frame)
        await c.expect_error("unknown_type", timeout=10)
        await self.still_works(c)
        # Reassembled fragments count as one message: 65,536 bytes are fine...
        await c.ws.send(iter([frame[:40000], frame[40000:]]))
        await c.expect_error("unknown_type", timeout=10)
        # ...65,537 are not.
        big = self.padded(65537)
        await c.ws.send(iter([big[:30000], big[30000:60000], big[60000:]]))
        await c.expect_close(1009, timeout=10)
        d = await self.connect()
        await d.send(big)
        await d.expect_close(1009, timeout=10)
        e = await self.connect()
        try:
            await e.send(self.padded(1 << 20))
        except websockets.exceptions.ConnectionClosed:
            pass  # the server may close before the client has written it all
        await e.expect_close(1009, timeout=10)

    # ---- the close handshake (RFC 6455 7.1.1) ------------------------------------
    async def raw_client(self):
        u = urllib.parse.urlparse(self.cluster.ws_url())
        ws = await RawWs.open(u.hostname, u.port, u.path)
        self.addCleanup(ws.abort)
        op, payload = await ws.read_frame()
        self.assertEqual((op, json.loads(payload)["type"]), (OP_TEXT, "connected"))
        return ws

    def oversized_in_fragments(self):
        big = self.padded(65537).encode()
        return (frame(OP_TEXT, big[:30000], fin=False) + frame(OP_CONT, big[30000:60000], fin=False)
                + frame(OP_CONT, big[60000:]))

    @staticmethod
    async def keep_sending(ws, stop, limit_s=15):
        """Sends a request every 10 ms until stop is set (bounded); returns how it ended."""
        deadline = time.monotonic() + limit_s
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                await ws.send(frame(OP_TEXT, '{"type":"presence","user_ids":[]}'))
            except Closed as e:
                return e.how
            await asyncio.sleep(0.01)
        return "stopped"

    async def expect_close_frame(self, ws, code, reason):
        op, payload = await ws.read_frame(timeout=10)
        self.assertEqual(op, OP_CLOSE, f"expected a close frame, got opcode {op}: {payload[:200]!r}")
        self.assertEqual(struct.unpack("!H", payload[:2])[0], code)
        self.assertEqual(payload[2:], reason)

    async def test_close_handshake_answered(self):
        """A client still sending when the server closes gets the close frame; the server
        waits for the client's close (reading and discarding what comes meanwhile) and
        then ends the connection cleanly, without a reset."""
        ws = await self.raw_client()
        await ws.send(self.oversized_in_fragments())
        stop = asyncio.Event()
        sender = asyncio.create_task(self.keep_sending(ws, stop))
        # Nothing else first: the requests after the oversized message are ignored.
        await self.expect_close_frame(ws, 1009, b"message too big")
        with self.assertRaises(asyncio.TimeoutError):  # still open: it awaits our close
            await ws.read_frame(timeout=1.0)
        stop.set()
        self.assertEqual(await sender, "stopped")
        await ws.send(close_frame(1000))
        self.assertEqual(await ws.wait_closed(5), "eof")

    async def test_close_handshake_unanswered(self):
        """A client that never answers the close and keeps sending is dropped, in bounded
        time (lws waits 5 s for the client's close)."""
        ws = await self.raw_client()
        await ws.send(self.oversized_in_fragments())
        stop = asyncio.Event()
        sender = asyncio.create_task(self.keep_sending(ws, stop))
        try:
            await self.expect_close_frame(ws, 1009, b"message too big")
            started = time.monotonic()
            self.assertIn(await ws.wait_closed(10), ("eof", "reset"))
            self.assertGreater(time.monotonic() - started, 1.0)  # it did wait for us
        finally:
            stop.set()
            await sender

    async def test_flood_does_not_disturb_others(self):
        flooder = await self.connect()
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        garbage = ['{', '[1]', '{"type":5}', '{"type":"nope"}', '{"type":"send"}', '"x"',
                   '{"type":"receipt"}', '{"type":"presence","user_ids":"x"}']
        n = 4000

        async def flood():
            for i in range(n):
                await flooder.send(garbage[i % len(garbage)])

        async def drain():
            codes = []
            while len(codes) < n:
                f = await flooder.recv(timeout=30)
                self.assertEqual(f["type"], "error", f)
                codes.append(f["code"])
            return codes

        async def talk(me, other, tag, k=10):
            for i in range(k):
                await me.send_text(conv, f"{tag}{i}")
            got, acks = [], 0
            deadline = time.monotonic() + 20
            while acks < k or len(got) < k:
                f = await me.recv(timeout=max(0.1, deadline - time.monotonic()))
                if f["type"] == "ack":
                    acks += 1
                else:
                    self.assertEqual(f["type"], "message", f)
                    got.append(f)
            # All of them, once each, in seq order (send order is test_chat's business).
            self.assertEqual(sorted(m["text"] for m in got), [f"{'b' if tag == 'a' else 'a'}{i}" for i in range(k)])
            self.assertEqual([m["from"] for m in got], [other.user_id] * k)
            self.assertEqual([m["seq"] for m in got], sorted(m["seq"] for m in got))

        started = time.monotonic()
        results = await asyncio.gather(flood(), drain(), talk(a, b, "a"), talk(b, a, "b"))
        codes = results[1]
        elapsed = time.monotonic() - started
        want = [{'{': "bad_json", '[1]': "bad_json", '"x"': "bad_json",
                 '{"type":5}': "unknown_type", '{"type":"nope"}': "unknown_type"}
                .get(garbage[i % len(garbage)], "bad_request") for i in range(n)]
        # The frame budget (CHAT_FRAME_RATE_PER_S, default 50, two seconds' worth at
        # once) answers the first 100 as they deserve; beyond it, each frame is refused
        # unread unless the budget refilled meanwhile.
        burst = 100
        self.assertEqual(codes[:burst], want[:burst])
        for i in range(burst, n):
            self.assertIn(codes[i], (want[i], "rate_limited"), i)
        self.assertLessEqual(n - codes.count("rate_limited"), burst + 50 * elapsed + 1)
        self.assertLess(elapsed, 60)
        await self.still_works(flooder)


if __name__ == "__main__":
    unittest.main()
