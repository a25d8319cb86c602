"""Direct messages, rooms, history (WebSocket and REST), receipts, typing and presence."""

import asyncio
import json
import socket
import time
import unittest
import urllib.error
import urllib.request
import uuid

import cluster
from client import ANY, is_id, is_int, is_now_ms, is_uuid4, new_id, pair
from cluster import http_get

CLUSTER = cluster.Cluster(gateways=2, name="conversations")
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


def _get_or_timeout(url, headers, timeout):
    """GET that gives up (closing its socket) after `timeout` s; returns the status or "timeout"."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (socket.timeout, TimeoutError, urllib.error.URLError):
        return "timeout"


def room_name():
    return "it-" + uuid.uuid4().hex[:12]


class ConversationsTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def dm(self, a, b):
        f = await a.request({"type": "open_dm", "user_id": b.user_id}, "conversation", exact=True,
                            conversation_id=is_id, kind="dm", members=ANY)
        self.assertEqual(sorted(f["members"]), sorted([a.user_id, b.user_id]))
        return f["conversation_id"]

    async def send_ok(self, sender, conv, text, seq, *receivers):
        cmid = await sender.send_text(conv, text)
        ack = await sender.expect_ack(conv, cmid, seq=seq)
        for r in receivers:
            await r.expect_message(conv, sender.user_id, text, seq=seq, msg_id=ack["msg_id"], ts=ack["ts"])
        return ack

    async def test_open_dm(self):
        a, b = await self.connect(), await self.connect()
        conv = await self.dm(a, b)
        self.assertEqual(await self.dm(a, b), conv)
        self.assertEqual(await self.dm(b, a), conv)
        await self.send_ok(a, conv, "hi b", 1, b)
        await self.send_ok(b, conv, "hi a", 2, a)
        req = a.next_req()
        await a.send({"type": "open_dm", "user_id": a.user_id, "req": req})
        await a.expect_error("bad_request", req=req)
        await a.send({"type": "open_dm", "user_id": str(uuid.uuid4())})
        await a.expect_error("not_found")
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect_error("bad_request")
        # A DM is not a random chat: both may still search.
        await a.request({"type": "start_search"}, "searching", exact=True)
        await a.request({"type": "stop_search"}, "search_stopped", exact=True)

    async def test_rooms(self):
        a, b, c = await self.connect(), await self.connect(), await self.connect()
        room = room_name()
        fa = await a.request({"type": "join_room", "room": room}, "conversation", exact=True,
                             conversation_id=is_id, kind="room", room=room)
        conv = fa["conversation_id"]
        await b.request({"type": "join_room", "room": room}, "conversation", exact=True,
                        conversation_id=conv, kind="room", room=room)
        await self.send_ok(a, conv, "one", 1, b)
        await self.send_ok(b, conv, "two", 2, a)
        # A new member starts at the current seq: nothing replayed, live from 3 on.
        await c.request({"type": "join_room", "room": room}, "conversation", exact=True,
                        conversation_id=conv, kind="room", room=room)
        await c.no_frame(0.2)
        await self.send_ok(a, conv, "three", 3, b, c)
        # Receipts in rooms are stored, not relayed.
        await b.send({"type": "receipt", "conversation_id": conv, "seq": 3, "status": "read"})
        await a.no_frame(0.3)
        await c.request({"type": "leave_room", "room": room}, "left", exact=True, conversation_id=conv)
        await self.send_ok(a, conv, "four", 4, b)
        await c.no_frame(0.2)
        req = c.next_req()
        await c.send({"type": "leave_room", "room": room, "req": req})
        await c.expect_error("not_member", req=req)
        await c.send({"type": "leave_room", "room": room_name()})
        await c.expect_error("not_found")
        await c.send_text(conv, "outside")
        await c.expect_error("not_member")
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect_error("bad_request")
        # Membership lasts across disconnects.
        await b.close()
        await self.send_ok(a, conv, "five", 5)
        b2 = await self.connect(session=b.session)
        await b2.expect_message(conv, a.user_id, "four", seq=4)   # not confirmed: replayed
        await b2.expect_message(conv, a.user_id, "five", seq=5)
        await b2.no_frame(0.2)

    async def test_history(self):
        a, b = await self.connect(), await self.connect()
        conv = await self.dm(a, b)
        acks = [await self.send_ok(a, conv, f"h{i}", i + 1, b) if i % 2 == 0 else
                await self.send_ok(b, conv, f"h{i}", i + 1, a) for i in range(5)]

        def msgs(seqs):
            return [{"msg_id": acks[s - 1]["msg_id"], "seq": s,
                     "from": a.user_id if (s - 1) % 2 == 0 else b.user_id,
                     "text": f"h{s - 1}", "ts": acks[s - 1]["ts"]} for s in seqs]

        await a.request({"type": "history", "conversation_id": conv}, "history", exact=True,
                        conversation_id=conv, messages=msgs([1, 2, 3, 4, 5]), next_before=None)
        await a.request({"type": "history", "conversation_id": conv, "limit": 2}, "history", exact=True,
                        conversation_id=conv, messages=msgs([4, 5]), next_before=4)
        await b.request({"type": "history", "conversation_id": conv, "limit": 2, "before": 4}, "history",
                        exact=True, conversation_id=conv, messages=msgs([2, 3]), next_before=2)
        await b.request({"type": "history", "conversation_id": conv, "limit": 2, "before": 2}, "history",
                        exact=True, conversation_id=conv, messages=msgs([1]), next_before=None)
        c = await self.connect()
        await c.send({"type": "history", "conversation_id": conv})
        await c.expect_error("not_member")
        await c.send({"type": "history", "conversation_id": str(uuid.uuid4())})
        await c.expect_error("not_found")

        # The same over REST.
        base = self.cluster.http_url(0)
        path = f"/api/conversations/{conv}/messages"
        auth = {"Authorization": "Bearer " + a.session}
        status, body, _ = http_get(base, path + "?limit=2", headers=auth)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"messages": msgs([4, 5]), "next_before": 4})
        status, body, _ = http_get(base, path + "?before=4&limit=3", headers=auth)
        self.assertEqual((status, json.loads(body)), (200, {"messages": msgs([1, 2, 3]), "next_before": None}))
        status, body, _ = http_get(base, path)
        self.assertEqual((status, json.loads(body)), (401, {"error": "unauthorized"}))
        status, body, _ = http_get(base, path, headers={"Authorization": "Bearer x" + a.session})
        self.assertEqual((status, json.loads(body)), (401, {"error": "unauthorized"}))
        status, body, _ = http_get(base, path, headers={"Authorization": "Bearer " + c.session})
        self.assertEqual((status, json.loads(body)), (403, {"error": "not_member"}))
        status, body, _ = http_get(base, f"/api/conversations/{uuid.uuid4()}/messages", headers=auth)
        self.assertEqual((status, json.loads(body)), (404, {"error": "not_found"}))
        for q in ("?limit=0", "?limit=101", "?limit=x", "?before=0", "?before=-1"):
            status, body, _ = http_get(base, path + q, headers=auth)
            self.assertEqual((q, status, json.loads(body)), (q, 400, {"error": "bad_request"}))

    async def test_receipts_relayed_in_dm_and_random(self):
        a, b = await self.connect(), await self.connect()
        for conv in (await self.dm(a, b), await pair(a, b)):
            with self.subTest(conv=conv):
                await self.send_ok(a, conv, "r1", 1, b)
                await self.send_ok(a, conv, "r2", 2, b)
                await b.send({"type": "receipt", "conversation_id": conv, "seq": 1, "status": "delivered"})
                await a.expect("receipt", exact=True, conversation_id=conv, seq=1, status="delivered",
                               user_id=b.user_id)
                await b.send({"type": "receipt", "conversation_id": conv, "seq": 2, "status": "read"})
                await a.expect("receipt", exact=True, conversation_id=conv, seq=2, status="read",
                               user_id=b.user_id)
                req = b.next_req()
                await b.send({"type": "receipt", "conversation_id": conv, "seq": 3, "status": "read",
                               "req": req})
                await b.expect_error("bad_request", req=req)
                await b.no_frame(0.1)
                await a.no_frame(0.1)

    async def test_typing(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        for state in ("start", "stop"):
            await a.send({"type": "typing", "conversation_id": conv, "state": state})
            await b.expect("typing", exact=True, conversation_id=conv, user_id=a.user_id, state=state)
        await a.no_frame(0.2)

    async def test_typing_errors(self):
        a, b, c = await self.connect(), await self.connect(), await self.connect()
        conv = await pair(a, b)
        req = c.next_req()
        await c.send({"type": "typing", "conversation_id": conv, "state": "start", "req": req})
        await c.expect_error("not_member", req=req)
        await c.send({"type": "typing", "conversation_id": str(uuid.uuid4()), "state": "start"})
        await c.expect_error("not_found")
        await c.send({"type": "typing", "conversation_id": "not-a-conversation", "state": "stop"})
        await c.expect_error("not_found")
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect("chat_ended", exact=True, conversation_id=conv, by="you")
        await b.expect("chat_ended", exact=True, conversation_id=conv, by="partner")
        req = b.next_req()
        await b.send({"type": "typing", "conversation_id": conv, "state": "start", "req": req})
        await b.expect_error("conversation_closed", req=req)
        await a.no_frame(0.2)
        # Still usable afterwards.
        await c.request({"type": "presence", "user_ids": []}, "presence", exact=True, statuses=[])

    async def test_typing_in_room(self):
        a, b, c = await self.connect(), await self.connect(), await self.connect()
        room = room_name()
        conv = None
        for x in (a, b, c):
            f = await x.request({"type": "join_room", "room": room}, "conversation", exact=True,
                                conversation_id=is_id, kind="room", room=room)
            conv = f["conversation_id"]
        for state in ("start", "stop"):
            await b.send({"type": "typing", "conversation_id": conv, "state": state})
            for x in (a, c):
                await x.expect("typing", exact=True, conversation_id=conv, user_id=b.user_id, state=state)
        await b.no_frame(0.2)

    async def test_history_of_ended_random_chat(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        ack = await self.send_ok(a, conv, "before the end", 1, b)
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect("chat_ended", exact=True, conversation_id=conv, by="you")
        await b.expect("chat_ended", exact=True, conversation_id=conv, by="partner")
        page = {"msg_id": ack["msg_id"], "seq": 1, "from": a.user_id, "text": "before the end", "ts": ack["ts"]}
        for x in (a, b):
            await x.request({"type": "history", "conversation_id": conv, "before": 1000}, "history",
                            exact=True, conversation_id=conv, messages=[page], next_before=None)
        await a.request({"type": "history", "conversation_id": conv, "before": 1}, "history",
                        exact=True, conversation_id=conv, messages=[], next_before=None)
        status, body, _ = http_get(self.cluster.http_url(0), f"/api/conversations/{conv}/messages",
                                   headers={"Authorization": "bearer " + b.session})
        self.assertEqual((status, json.loads(body)), (200, {"messages": [page], "next_before": None}))

    async def test_rest_paths_and_args(self):
        a, b = await self.connect(), await self.connect()
        conv = await self.dm(a, b)
        base = self.cluster.http_url(0)
        auth = {"Authorization": "Bearer " + a.session}
        status, body, headers = http_get(base, f"/api/conversations/{conv}/messages?x=1&limit=5", headers=auth)
        self.assertEqual((status, json.loads(body)), (200, {"messages": [], "next_before": None}))
        self.assertTrue(headers.get("content-type", headers.get("Content-Type", "")).startswith("application/json"))
        for path in ("/api/conversations", f"/api/conversations/{conv}", f"/api/conversations/{conv}/messages/x",
                     "/api/nope"):
            status, body, _ = http_get(base, path, headers=auth)
            self.assertEqual((path, status, json.loads(body)), (path, 404, {"error": "not_found"}))
        for hdr in ("Basic " + a.session, a.session, "Bearer", "Bearer " + a.session[:-1]):
            status, body, _ = http_get(base, f"/api/conversations/{conv}/messages",
                                       headers={"Authorization": hdr})
            self.assertEqual((hdr, status, json.loads(body)), (hdr, 401, {"error": "unauthorized"}))
        # Bad parameters are checked before membership: 400 even for a stranger's request.
        status, body, _ = http_get(base, f"/api/conversations/{uuid.uuid4()}/messages?limit=1000", headers=auth)
        self.assertEqual((status, json.loads(body)), (400, {"error": "bad_request"}))
        # The socket stays usable for the next request (keep-alive) and the WebSocket side is unaffected.
        await a.request({"type": "presence", "user_ids": []}, "presence", exact=True, statuses=[])

    async def test_rest_waits_for_a_hung_backend(self):
        # svc-message stopped (SIGSTOP): the REST call waits for the request timeout and
        # answers 503; a client that hangs up meanwhile costs nothing; the WebSocket side
        # keeps answering other requests the whole time (the HTTP handler never blocks).
        a, b = await self.connect(), await self.connect()
        conv = await self.dm(a, b)
        base = self.cluster.http_url(0)
        path = f"/api/conversations/{conv}/messages"
        auth = {"Authorization": "Bearer " + a.session}
        loop = asyncio.get_running_loop()
        with self.cluster.paused("message"):
            # One that gives up after 0.3 s, one that waits for the answer.
            quitter = loop.run_in_executor(None, lambda: _get_or_timeout(base + path, auth, 0.3))
            waiter = loop.run_in_executor(None, lambda: http_get(base, path, timeout=10, headers=auth))
            for _ in range(3):
                await a.request({"type": "presence", "user_ids": []}, "presence", exact=True, statuses=[])
            self.assertEqual(await quitter, "timeout")
            status, body, _ = await waiter
            self.assertEqual((status, json.loads(body)), (503, {"error": "unavailable"}))
        status, body, _ = http_get(base, path, headers=auth)
        self.assertEqual((status, json.loads(body)), (200, {"messages": [], "next_before": None}))

    async def test_connect_while_message_service_hangs(self):
        # A new user's `connected` waits for its registration; with svc-message hung it comes
        # after the request timeout all the same, still first, and the frames the client sent
        # meanwhile are answered after it, in order.
        with self.cluster.paused("message"):
            t0 = time.monotonic()
            b = await self.connect(wait_connected=False)
            await b.send({"type": "presence", "user_ids": [], "req": "early-1"})
            await b.send({"type": "stop_search", "req": "early-2"})
            f = await b.expect("connected", exact=True, user_id=is_uuid4, session=ANY, resumed=False, timeout=10)
            b.user_id, b.session = f["user_id"], f["session"]
            self.assertLess(time.monotonic() - t0, 8)
            await b.expect("presence", exact=True, statuses=[], req="early-1")
            await b.expect("search_stopped", exact=True, req="early-2")
        # Opening a DM registers the requester too, so b is known from then on.
        a = await self.connect()
        conv = await b.request({"type": "open_dm", "user_id": a.user_id}, "conversation", exact=True,
                               conversation_id=is_id, kind="dm", members=ANY)
        self.assertEqual(await self.dm(a, b), conv["conversation_id"])

    async def test_open_dm_to_a_user_just_connected(self):
        a = await self.connect()
        for _ in range(5):
            b = await self.connect()
            # b's id is known from its `connected` frame on: a DM to it never says not_found.
            conv = await self.dm(a, b)
            await self.send_ok(a, conv, "hi new one", 1, b)
        await a.send({"type": "open_dm", "user_id": "not-a-uuid"})
        await a.expect_error("bad_request")
        await a.send({"type": "open_dm", "user_id": a.user_id.upper()})   # oneself, other case
        await a.expect_error("bad_request")

    async def test_presence_contacts(self):
        # Pushes go to the members of the user's DMs and open random chat only.
        a = await self.connect(skip_presence=False)
        b = await self.connect()
        c = await self.connect(skip_presence=False)
        d = await self.connect(skip_presence=False)
        conv = await pair(a, b)
        room = room_name()
        for x in (b, c):
            await x.request({"type": "join_room", "room": room}, "conversation", exact=True,
                            conversation_id=is_id, kind="room", room=room)
        await b.close()
        await a.expect("presence", exact=True, user_id=b.user_id, status="offline", last_seen=is_now_ms)
        b2 = await self.connect(session=b.session)
        await a.expect("presence", exact=True, user_id=b.user_id, status="online", last_seen=is_now_ms)
        # An ended random chat: no more pushes.
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect("chat_ended", exact=True, conversation_id=conv, by="you")
        await b2.expect("chat_ended", exact=True, conversation_id=conv, by="partner")
        await b2.close()
        await a.no_frame(0.5)
        await c.no_frame(0.05)     # a room is no DM
        await d.no_frame(0.05)     # a stranger

    async def test_across_gateways(self):
        if self.cluster.external:
            self.skipTest("external cluster: one gateway")
        a = await self.connect(gw=0, skip_presence=False)
        b = await self.connect(gw=1)
        conv = await self.dm(a, b)          # b registered through gateway 2, found from gateway 1
        await self.send_ok(b, conv, "over there", 1, a)
        await b.send({"type": "typing", "conversation_id": conv, "state": "start"})
        await a.expect("typing", exact=True, conversation_id=conv, user_id=b.user_id, state="start")
        room = room_name()
        ids = set()
        for x in (a, b):
            f = await x.request({"type": "join_room", "room": room}, "conversation", exact=True,
                                conversation_id=is_id, kind="room", room=room)
            ids.add(f["conversation_id"])
        self.assertEqual(len(ids), 1)
        await self.send_ok(a, ids.pop(), "room hello", 1, b)
        status, body, _ = http_get(self.cluster.http_url(1), f"/api/conversations/{conv}/messages",
                                   headers={"Authorization": "Bearer " + a.session})
        self.assertEqual(status, 200, body)
        self.assertEqual([m["text"] for m in json.loads(body)["messages"]], ["over there"])
        await b.close()
        await a.expect("presence", exact=True, user_id=b.user_id, status="offline", last_seen=is_now_ms)

    async def test_presence(self):
        a = await self.connect(skip_presence=False)
        b = await self.connect()
        conv = await self.dm(a, b)
        await self.send_ok(a, conv, "hello", 1, b)
        await b.close()
        f = await a.expect("presence", exact=True, user_id=b.user_id, status="offline", last_seen=is_now_ms)
        b2 = await self.connect(session=b.session)
        await a.expect("presence", exact=True, user_id=b.user_id, status="online", last_seen=is_now_ms)
        await b2.expect_message(conv, a.user_id, "hello", seq=1)    # never confirmed: replayed
        unknown = str(uuid.uuid4())
        r = await b2.request({"type": "presence", "user_ids": [a.user_id, unknown]}, "presence", exact=True,
                             statuses=ANY)
        by_id = {s["user_id"]: s for s in r["statuses"]}
        self.assertEqual(set(by_id), {a.user_id, unknown})
        self.assertEqual(by_id[unknown], {"user_id": unknown, "status": "offline", "last_seen": None})
        self.assertEqual(by_id[a.user_id]["status"], "online")
        self.assertTrue(is_now_ms(by_id[a.user_id]["last_seen"]), by_id)
        self.assertGreaterEqual(f["last_seen"], 0)


if __name__ == "__main__":
    unittest.main()
