"""Retention (issue 9): messages older than the shared setting (chatctl retention set
DAYS) are never returned by history (WebSocket and REST) or replay, also before the
purge deleted them; `retention run` deletes them in batches while sends go on being
acked, and the rest keep their seqs (new sends continue the numbering).

The purger runs only when asked here (CHAT_RETENTION_INTERVAL_S=0), so every run and
every deleted row is the test's. Messages are aged by moving their ts 40 days back."""

import asyncio
import json
import signal
import socket
import struct
import time
import unittest

import cluster
from client import is_id

DAY_MS = 86_400_000
BULK = 50_000  # aged rows of a conversation nobody reads: a purge that takes a while

CLUSTER = cluster.Cluster(gateways=2, name="retention", env={
    "CHAT_RATE_PER_MIN": "0",
    "CHAT_RETENTION_DAYS": "90",        # seeds the setting: it was never set
    "CHAT_RETENTION_INTERVAL_S": "0",   # runs only when asked
    "CHAT_RETENTION_BATCH": "2000",
    "CHAT_RETENTION_PAUSE_MS": "10",
})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


# ---- the admin plane without chatctl: nng's SP over TCP, protobuf by hand ----------
def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num, wire, payload):
    key = _varint(num << 3 | wire)
    return key + (_varint(payload) if wire == 0 else _varint(len(payload)) + payload)


def _parse(buf):
    """{field number: [values]} of one protobuf message (varints and byte strings)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(buf, i)
        elif wire == 2:
            n, i = _read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.setdefault(num, []).append(v)
    return out


def _read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise AssertionError("admin peer closed the connection")
        data += chunk
    return data


def admin_call(addr, token, body_field, body):
    """One AdminRequest (token, req_id, body) to a REP address; the AdminReply's fields."""
    host, port = addr.removeprefix("tcp://").rsplit(":", 1)
    req = (_field(1, 2, token.encode()) + _field(2, 2, b"it-retention")
           + _field(body_field, 2, body))
    batch = _field(1, 2, req)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.settimeout(10)
        s.sendall(b"\x00SP\x00" + struct.pack(">HH", 0x30, 0))  # REQ v0
        hello = _recv_exact(s, 8)
        assert hello[:4] == b"\x00SP\x00" and struct.unpack(">H", hello[4:6])[0] == 0x31, hello
        payload = struct.pack(">I", 0x80000001) + batch
        s.sendall(struct.pack(">Q", len(payload)) + payload)
        n = struct.unpack(">Q", _recv_exact(s, 8))[0]
        reply = _recv_exact(s, n)
    assert struct.unpack(">I", reply[:4])[0] == 0x80000001, reply[:4]
    items = _parse(reply[4:]).get(1, [])
    assert len(items) == 1, f"reply batch with {len(items)} items"
    return _parse(items[0])


RET_GET, RET_SET, RET_RUN = 0, 1, 2


def _retention_info(fields):
    code = fields.get(1, [0])[0]
    assert code == 0, f"admin code {code}: {fields.get(2, [b''])[0].decode()}"
    info = _parse(fields.get(11, [b""])[0])
    one = lambda k: info.get(k, [0])[0]
    return {"days": one(1), "running": bool(one(2)), "deleted": one(3),
            "last_run_at": one(4), "runs": one(5)}


def retention(op=RET_GET, days=0):
    """Every svc-message replica's retention reply, in replica order (chatctl's own
    --json output is checked elsewhere; this is the same request)."""
    body = _field(1, 0, op) + (_field(2, 0, days) if days else b"")
    return [_retention_info(admin_call(CLUSTER.admin_addr[n], CLUSTER.admin_token, 20, body))
            for n in CLUSTER.service_procs("message")]


def wait_purged(timeout=120):
    """Polls until no replica runs a purge; returns the replies."""
    deadline = time.monotonic() + timeout
    while True:
        st = retention()
        if not any(r["running"] for r in st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"purge still running after {timeout}s: {st}")
        time.sleep(0.05)


class RetentionTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def send_acked(self, c, conv, text):
        cmid = await c.send_text(conv, text)
        return (await c.expect_ack(conv, cmid, timeout=10))["seq"]

    async def room_pair(self, room):
        a, b = await self.connect(0), await self.connect(1)
        f = await a.request({"type": "join_room", "room": room}, "conversation", kind="room",
                            room=room, conversation_id=is_id)
        await b.request({"type": "join_room", "room": room}, "conversation",
                        conversation_id=f["conversation_id"])
        return a, b, f["conversation_id"]

    async def dm_pair(self):
        c, d = await self.connect(0), await self.connect(1)
        f = await c.request({"type": "open_dm", "user_id": d.user_id}, "conversation", kind="dm")
        return c, d, f["conversation_id"]

    def age(self, conv, upto_seq):
        """Moves the conversation's messages up to upto_seq 40 days back."""
        self.cluster.psql(f"UPDATE messages SET ts = ts - 40 * {DAY_MS}::bigint"
                          f" WHERE conversation_id = '{conv}' AND seq <= {upto_seq}")

    def stored_seqs(self, conv):
        return [int(s) for s in self.cluster.psql(
            f"SELECT seq FROM messages WHERE conversation_id = '{conv}' ORDER BY seq")]

    async def history_ws(self, c, conv, **kw):
        return await c.request(dict({"type": "history", "conversation_id": conv}, **kw),
                               "history", conversation_id=conv)

    def history_rest(self, c, conv, query=""):
        status, body, _ = cluster.http_get(self.cluster.http_url(1),
                                           f"/api/conversations/{conv}/messages{query}",
                                           headers={"Authorization": "Bearer " + c.session})
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def expect_page(self, page, want, next_before):
        """A history page: exactly `want` [(seq, from, text)] ascending, and next_before."""
        got = [(m["seq"], m["from"], m["text"]) for m in page["messages"]]
        self.assertEqual(got, want)
        for m in page["messages"]:
            self.assertEqual(set(m), {"msg_id", "seq", "from", "text", "ts"}, m)
        if next_before is None:
            self.assertIsNone(page["next_before"])
        else:
            self.assertEqual(page["next_before"], next_before)

    async def all_history(self, c, conv, ws):
        """Every page of the history, newest first, each one's next_before its lowest seq;
        returns [(seq, from, text)] ascending."""
        out, before = [], None
        for _ in range(100):
            if ws:
                kw = {"limit": 40} if before is None else {"limit": 40, "before": before}
                page = await self.history_ws(c, conv, **kw)
            else:
                page = self.history_rest(c, conv, "?limit=40" + (f"&before={before}" if before else ""))
            got = [(m["seq"], m["from"], m["text"]) for m in page["messages"]]
            out = got + out
            if page["next_before"] is None:
                return out
            self.assertEqual(page["next_before"], got[0][0])
            before = page["next_before"]
        raise AssertionError("history paging does not end")

    # ---- tests (in name order: the setting is the cluster's) --------------------
    async def test_1_seeded_then_set(self):
        st = retention()
        self.assertEqual([r["days"] for r in st], [90] * len(st))  # seeded from the env
        self.assertEqual([(r["running"], r["deleted"], r["last_run_at"], r["runs"]) for r in st],
                         [(False, 0, 0, 0)] * len(st))
        st = retention(RET_SET, 30)
        self.assertEqual([r["days"] for r in st], [30] * len(st))
        self.assertEqual(self.cluster.psql(
            "SELECT value FROM msg_settings WHERE key = 'retention_days'"), ["30"])
        # A restarted replica keeps the operator's setting (the env only seeds).
        self.cluster.skip_unless_local()
        name = self.cluster.service_proc("message", 0)
        self.assertEqual(self.cluster.kill(name, signal.SIGTERM), 0)  # a clean stop
        self.cluster.restart(name)
        for i in range(self.cluster.n_gateways):
            self.cluster.wait_ready(i)
        self.assertEqual([r["days"] for r in retention()], [30] * len(st))

    async def test_2_read_time_filter_before_any_purge(self):
        a, b, room = await self.room_pair("ret-filter")
        texts = [f"filter {i}" for i in range(1, 7)]
        for i, t in enumerate(texts, 1):
            self.assertEqual(await self.send_acked(a, room, t), i)
            await b.expect_message(room, a.user_id, t, seq=i)
        self.age(room, 3)
        self.assertEqual(self.stored_seqs(room), [1, 2, 3, 4, 5, 6])  # nothing purged
        kept = [(s, a.user_id, f"filter {s}") for s in (4, 5, 6)]
        self.expect_page(await self.history_ws(b, room), kept, None)
        # Paging ends at the oldest kept message instead of pointing into expired seqs.
        self.expect_page(await self.history_ws(b, room, limit=2), kept[1:], 5)
        self.expect_page(await self.history_ws(b, room, before=5, limit=2), kept[:1], None)
        self.expect_page(await self.history_ws(b, room, before=4), [], None)
        self.expect_page(self.history_rest(b, room), kept, None)
        self.expect_page(self.history_rest(b, room, "?limit=2"), kept[1:], 5)
        self.expect_page(self.history_rest(b, room, "?before=5"), kept[:1], None)

        # A resume's replay: only what is kept (d never confirmed anything).
        c, d, dm = await self.dm_pair()
        await d.close()
        for i in range(1, 6):
            self.assertEqual(await self.send_acked(c, dm, f"dm {i}"), i)
        self.age(dm, 2)
        d2 = await self.connect(1, session=d.session)
        for s in (3, 4, 5):
            await d2.expect_message(dm, c.user_id, f"dm {s}", seq=s)
        await d2.no_frame(0.5)

    async def test_3_purge_under_sends(self):
        a, b, room = await self.room_pair("ret-room")
        want = []
        for i in range(1, 11):
            sender = a if i % 2 else b
            t = f"room {i}"
            self.assertEqual(await self.send_acked(sender, room, t), i)
            await (b if i % 2 else a).expect_message(room, sender.user_id, t, seq=i)
            want.append((i, sender.user_id, t))
        c, d, dm = await self.dm_pair()
        for i in range(1, 7):
            self.assertEqual(await self.send_acked(c, dm, f"dm {i}"), i)
            await d.expect_message(dm, c.user_id, f"dm {i}", seq=i)
        await d.close()
        self.age(room, 6)
        self.age(dm, 3)
        bulk = self.cluster.psql(
            "INSERT INTO conversations (kind, room, last_seq) VALUES (3, 'ret-bulk', "
            f"{BULK}) RETURNING id")[0]
        self.cluster.psql(
            "INSERT INTO messages (conversation_id, seq, sender, client_msg_id, body, ts)"
            f" SELECT '{bulk}', g, gen_random_uuid(), 'bulk-' || g, 'old', "
            f" (extract(epoch FROM now()) * 1000)::bigint - 40 * {DAY_MS}::bigint"
            f" FROM generate_series(1, {BULK}) g")
        expired = 6 + 3 + BULK + 5  # and test_2's aged rows
        before = retention()
        runs = [r["runs"] for r in before]

        st = retention(RET_RUN)
        self.assertEqual([r["running"] for r in st], [True] * len(st))
        self.assertEqual([r["runs"] for r in st], [n + 1 for n in runs])
        self.assertEqual([r["days"] for r in st], [30] * len(st))
        # Sends while it purges: each acked, numbered on.
        live, seq = [], 10
        while any(r["running"] for r in retention()) or len(live) < 3:
            seq += 1
            t = f"live {seq}"
            self.assertEqual(await self.send_acked(a, room, t), seq)
            await b.expect_message(room, a.user_id, t, seq=seq)
            live.append((seq, a.user_id, t))
            self.assertLess(seq, 400, "purge never ended")
        st = wait_purged()
        self.assertEqual(sum(r["deleted"] for r in st), expired)
        self.assertEqual([r["runs"] for r in st], [n + 1 for n in runs])
        self.assertTrue(all(r["last_run_at"] > before_ms(60) for r in st), st)

        # Gone from PostgreSQL; the rest keep their seqs.
        self.assertEqual(self.cluster.psql(
            f"SELECT count(*) FROM messages WHERE ts < (extract(epoch FROM now()) * 1000)::bigint"
            f" - 30 * {DAY_MS}::bigint"), ["0"])
        self.assertEqual(self.stored_seqs(room), list(range(7, seq + 1)))
        self.assertEqual(self.stored_seqs(dm), [4, 5, 6])
        self.assertEqual(self.stored_seqs(bulk), [])
        kept = want[6:] + live
        self.assertEqual(await self.all_history(b, room, ws=True), kept)
        self.assertEqual(await self.all_history(a, room, ws=False), kept)
        self.expect_page(await self.history_ws(a, room, limit=3), kept[-3:], kept[-3][0])
        # The next send continues the numbering (no seq reused or skipped).
        self.assertEqual(await self.send_acked(b, room, "after"), seq + 1)
        await a.expect_message(room, b.user_id, "after", seq=seq + 1)
        # d's replay: the kept DM messages only.
        d2 = await self.connect(0, session=d.session)
        for s in (4, 5, 6):
            await d2.expect_message(dm, c.user_id, f"dm {s}", seq=s)
        await d2.no_frame(0.5)
        # The admin view of the room: its last seq stays.
        self.assertEqual(self.cluster.psql(
            f"SELECT last_seq FROM conversations WHERE id = '{room}'"), [str(seq + 1)])


def before_ms(seconds):
    return int(time.time() * 1000) - seconds * 1000


if __name__ == "__main__":
    unittest.main()
