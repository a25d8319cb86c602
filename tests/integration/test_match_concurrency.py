"""Matching under concurrency, on the real cluster: two gateways, two svc-match
processes, a couple of hundred users searching, stopping, chatting, ending and
searching again, five times each (a few seconds on a quiet machine). Every user's whole frame sequence is
checked against the random-chat rules of PROTOCOL.md:

- `matched` only while searching (after `searching`, before `search_stopped`),
  at most once per conversation, never while in a chat;
- `chat_ended` only for the chat the user is in, once;
- a user is in at most one random chat at a time, and every conversation
  matches exactly two users;
- no error but the `conversation_closed` of an `end_chat` that raced the
  partner's.

The seed of the run is printed on failure (CHAT_TEST_SEED=N repeats it).
"""

import asyncio
import collections
import os
import random
import time
import unittest

import cluster
from client import connect

CLUSTER = cluster.Cluster(gateways=2, name="matchrace", replicas={"match": 2},
                          env={"CHAT_RATE_PER_MIN": "0"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)

USERS = 200
CYCLES = 5               # searches per user: the work is fixed, the time is the machine's
REPLY_TIMEOUT_S = 15.0   # bound on any single reply under load
QUIET_S = 1.0            # after the run: late frames would show up here


def check_sequence(frames):
    """Problems with one connection's frames (in the order received), as strings."""
    problems = []
    searching, chat = False, None
    matched, ended = set(), set()
    for i, f in enumerate(frames):
        t = f.get("type")
        where = f"frame {i} {f}"
        if t == "presence" or (i == 0 and t == "connected"):
            continue
        if t == "searching":
            if chat is not None:
                problems.append(f"{where}: searching while in chat {chat}")
            searching = True
        elif t == "matched":
            cid = f.get("conversation_id")
            if set(f) != {"type", "conversation_id", "kind"} or f.get("kind") != "random":
                problems.append(f"{where}: malformed matched")
            if cid in matched:
                problems.append(f"{where}: second matched for {cid}")
            elif not searching:
                problems.append(f"{where}: matched while not searching")
            elif chat is not None:
                problems.append(f"{where}: matched while in chat {chat}")
            matched.add(cid)
            chat, searching = cid, False
        elif t == "search_stopped":
            searching = False
        elif t == "chat_ended":
            cid = f.get("conversation_id")
            if cid in ended:
                problems.append(f"{where}: second chat_ended for {cid}")
            elif cid != chat:
                problems.append(f"{where}: chat_ended for {cid}, not the current chat {chat}")
            ended.add(cid)
            if cid == chat:
                chat = None
        elif t == "error" and f.get("code") == "conversation_closed" and str(f.get("req", "")).startswith("e"):
            pass  # our end_chat lost the race with the partner's
        else:
            problems.append(f"{where}: unexpected frame")
    if chat is not None or searching:
        problems.append(f"ends {'in chat ' + chat if chat else 'searching'}")
    return problems, matched


class User:
    """One connection driven through search / stop / chat / end cycles."""

    def __init__(self, client, rng):
        self.c, self.rng = client, rng
        self.cycles = self.matches = self.stops = 0
        self.ended = {}  # conversation id -> "you" / "partner", from every chat_ended seen

    async def frame(self, deadline):
        """The next frame, or None once deadline (monotonic) has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            f = await self.c.recv(left)
        except AssertionError as e:
            if str(e).startswith("no frame within"):
                return None
            raise
        if f["type"] == "chat_ended":
            self.ended[f.get("conversation_id")] = f.get("by")
        return f

    async def search(self, n):
        """start_search, then stop_search after a random while unless matched first.
        Returns the conversation matched (also one that came with the stop), or None."""
        await self.c.send({"type": "start_search", "req": f"s{n}"})
        deadline = time.monotonic() + self.rng.uniform(0, 0.25)
        stopped, conv = False, None
        while True:
            f = await self.frame(deadline)
            if f is None:
                if stopped:
                    raise AssertionError(f"user {self.c.user_id}: no search_stopped within "
                                         f"{REPLY_TIMEOUT_S}s; frames:\n    " + self.c._history(20))
                await self.c.send({"type": "stop_search", "req": f"t{n}"})
                self.stops += 1
                stopped, deadline = True, time.monotonic() + REPLY_TIMEOUT_S
            elif f["type"] == "matched":
                conv = f["conversation_id"]
                if not stopped:
                    return conv
            elif f["type"] == "search_stopped" and f.get("req") == f"t{n}":
                return conv

    async def chat(self, n, conv):
        """Stays a random while; ends the chat unless the partner ends it first (its
        chat_ended may have come with the match, while the search was being stopped)."""
        deadline = time.monotonic() + self.rng.uniform(0, 0.15)
        ending = replied = False
        while True:
            by = self.ended.get(conv)
            if by == "you" or (by == "partner" and (not ending or replied)):
                return
            f = await self.frame(deadline)
            if f is None:
                if ending:
                    raise AssertionError(f"user {self.c.user_id}: end_chat of {conv}: no answer "
                                         f"within {REPLY_TIMEOUT_S}s; frames:\n    "
                                         + self.c._history(20))
                await self.c.send({"type": "end_chat", "conversation_id": conv, "req": f"e{n}"})
                ending, deadline = True, time.monotonic() + REPLY_TIMEOUT_S
            elif f["type"] == "error" and f.get("req") == f"e{n}":
                replied = True

    async def run(self):
        for n in range(1, CYCLES + 1):
            self.cycles += 1
            conv = await self.search(n)
            if conv is not None:
                self.matches += 1
                await self.chat(n, conv)

    async def quiet(self):
        """Reads what still comes within QUIET_S (nothing should)."""
        deadline = time.monotonic() + QUIET_S
        while await self.frame(deadline) is not None:
            pass


class MatchConcurrencyTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def test_frame_sequences_under_churn(self):
        seed = int(os.environ.get("CHAT_TEST_SEED", str(random.randrange(1 << 30))))
        rng = random.Random(seed)
        clients = await asyncio.gather(*(connect(self.cluster.ws_url(i % 2 if not self.cluster.external else 0))
                                         for i in range(USERS)))
        self._clients.extend(clients)
        users = [User(c, random.Random(rng.random())) for c in clients]
        started = time.monotonic()
        await asyncio.gather(*(u.run() for u in users))
        took = time.monotonic() - started
        await asyncio.gather(*(u.quiet() for u in users))

        problems, by_conv = [], collections.defaultdict(list)
        for i, u in enumerate(users):
            ps, matched = check_sequence(u.c.seen)
            problems += [f"user {i} ({u.c.user_id}): {p}" for p in ps]
            for cid in matched:
                by_conv[cid].append(u.c.user_id)
        for cid, who in by_conv.items():
            if len(who) != 2:
                problems.append(f"conversation {cid} matched {len(who)} users: {who}")
        matches = sum(u.matches for u in users)
        summary = (f"seed {seed}: {sum(u.cycles for u in users)} searches, {sum(u.stops for u in users)} stops, "
                   f"{matches} matches seen, {len(by_conv)} conversations in {took:.1f} s")
        self.assertEqual(problems[:20], [], summary + f"; {len(problems)} problems")
        print(summary)
        self.assertEqual(matches, 2 * len(by_conv), summary)
        self.assertGreater(matches, 0, summary)


if __name__ == "__main__":
    unittest.main()
