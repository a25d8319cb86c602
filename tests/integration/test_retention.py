"""Retention (issue 9): messages older than the shared setting (chatctl retention set
DAYS) are never returned by history (WebSocket and REST) or replay, also before the
purge deleted them; `retention run` deletes them in batches while sends go on being
acked, and the rest keep their seqs (new sends continue the numbering).

The purger runs only when asked here (CHAT_RETENTION_INTERVAL_S=0), so every run and
every deleted row is the test's. Messages are aged by moving their ts 40 days back."""

import asyncio
import json
import os
import signal
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


# ---- chatctl, per svc-message replica -----------------------------------------------
def retention(*args):
    """`chatctl --json retention ARGS` asked of each svc-message replica in turn, in
    replica order (the setting is shared; runs and deleted are each replica's)."""
    return [CLUSTER.chatctl_json("--message", CLUSTER.admin_addr[n], "retention", *args)
            for n in CLUSTER.service_procs("message")]


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
        rc, out, err = self.cluster.chatctl("retention", "set", "30")
        self.assertEqual(rc, 0, out + err)
        st = retention()
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

        # `chatctl retention run` on the first replica, sends meanwhile: each acked,
        # numbered on, also while the purge runs there.
        first = self.cluster.admin_addr[self.cluster.service_proc("message", 0)]
        run = await asyncio.create_subprocess_exec(
            os.path.join(self.cluster.bin_dir, "chatctl"), "--json", "--message", first,
            "retention", "run", env=self.cluster.chatctl_env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        done = asyncio.ensure_future(run.communicate())
        live, seq, during = [], 10, 0
        while not done.done() or len(live) < 3:
            seq += 1
            t = f"live {seq}"
            self.assertEqual(await self.send_acked(a, room, t), seq)
            await b.expect_message(room, a.user_id, t, seq=seq)
            live.append((seq, a.user_id, t))
            during += retention()[0]["running"]
            self.assertLess(seq, 2000, "purge never ended")
        out, err = await asyncio.wait_for(done, 60)
        self.assertEqual(run.returncode, 0, out + err)
        self.assertGreater(during, 0, "no send went while the purge ran")
        ran = json.loads(out)
        self.assertEqual((ran["running"], ran["deleted"], ran["days"], ran["runs"]),
                         (False, expired, 30, runs[0] + 1))
        st = retention()
        self.assertEqual([r["runs"] for r in st], [runs[0] + 1] + runs[1:])
        self.assertEqual((st[0]["running"], st[0]["deleted"]), (False, expired))
        self.assertGreater(st[0]["last_run_at"], before_ms(60))

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
