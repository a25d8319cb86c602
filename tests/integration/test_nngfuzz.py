"""A live fuzzer for the services' request ports: mutated batches over nng's req/rep
TCP transport, spoken by hand, to every service process, while a canary pair chats
through the gateway.

The transport (nng src/transport/tcp/tcp.c, nanomsg's rfc/sp-tcp-mapping): each side
sends 8 bytes, 0x00 'S' 'P' 0x00, its 16-bit protocol id (req0 0x30, rep0 0x31) and two
zero bytes; then every message is a 64-bit big-endian length and that many bytes. A
request's bytes start with its 32-bit request id, high bit set, which the reply echoes;
the rest is a chat.Batch (proto/envelope.proto) of packed requests.

Seeds are real requests of every oneof member of MessageRequest, MatchRequest and
PresenceRequest, encoded by hand (a varint encoder; no protoc for Python here). The
mutations: bit flips of the batch or of one item, truncation, lengths that lie, huge
repeated fields, nested garbage, another service's requests, thousands of items, empty
batches, unknown fields and wire types; at the SP level a wrong handshake, a request id
without its high bit, a message shorter than its id, a length larger than what follows,
a message over the services' 1 MiB limit. Fuzz requests name only made-up users,
conversations and gateways ("fuzz-gw-N"), never the canary's.

Asserted: every well-framed request is answered with a Batch echoing its id (one reply
item per request item when the batch was intact), the SP handshake is rep0's; every
service process stays alive without a sanitizer report, its RSS within a bound of its
level before (not in ASan/TSan builds: see check_rss); the canary never misses, duplicates or reorders a message, and chats on
afterwards. In the TLS pass (CHAT_TEST_TLS=1) the request ports refuse plain TCP by
design: the module is skipped there (the refusal is it.tls's).

Env: CHAT_TEST_FUZZ_S (default 20), CHAT_TEST_FUZZ_SEED (the seed is printed)."""

import asyncio
import os
import random
import struct
import sys
import time
import unittest
from collections import Counter, defaultdict

import cluster
from procstat import check_rss, rss
from client import pair

FUZZ_S = float(os.environ.get("CHAT_TEST_FUZZ_S", "20"))
SEED = int(os.environ.get("CHAT_TEST_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
WORKERS = 2                  # connections per service process, one request in flight each
REPLY_S = 30.0               # a well-framed request must be answered within this
RECV_MAX = 1 << 20           # lib/src/rpc_server.c: NNG_OPT_RECVMAXSZ
REQ0, REP0 = 0x30, 0x31

CLUSTER = cluster.Cluster(gateways=1, name="nngfuzz", env={"CHAT_RATE_PER_MIN": "0"})


def setUpModule():
    if CLUSTER.tls:
        raise unittest.SkipTest("CHAT_TEST_TLS=1: the request ports take only mutual TLS, so "
                                "plain-TCP fuzzing is refused by design (covered by it.tls)")
    CLUSTER.start()


def tearDownModule():
    CLUSTER.stop()


def log(msg):
    print(f"[nngfuzz] {msg}", file=sys.stderr, flush=True)


# ---- protobuf wire format, by hand -------------------------------------------

def varint(n):
    n &= (1 << 64) - 1  # negative int64s are ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def num(field, n):
    return key(field, 0) + varint(n)


def ld(field, data):
    """A length-delimited field: bytes, a string or a message."""
    if isinstance(data, str):
        data = data.encode()
    return key(field, 2) + varint(len(data)) + data


def parse(data):
    """[(field, wire, value)] of a message, or None if it is not well formed."""
    out, i = [], 0
    try:
        while i < len(data):
            k, i = read_varint(data, i)
            field, wire = k >> 3, k & 7
            if wire == 0:
                v, i = read_varint(data, i)
            elif wire == 2:
                n, i = read_varint(data, i)
                if i + n > len(data):
                    return None
                v, i = data[i:i + n], i + n
            elif wire in (1, 5):
                n = 8 if wire == 1 else 4
                if i + n > len(data):
                    return None
                v, i = data[i:i + n], i + n
            else:
                return None
            if field == 0:
                return None
            out.append((field, wire, v))
    except IndexError:
        return None
    return out


def read_varint(data, i):
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i
        if shift > 63:
            raise IndexError("varint too long")


def batch(items, extra=b""):
    return b"".join(ld(1, it) for it in items) + extra


# ---- seeds: every request of every service ---------------------------------------

class Seeds:
    """Valid packed requests of one service, with made-up ids from rng."""

    def __init__(self, rng):
        self.r = rng

    def uid(self):
        h = self.r.randbytes(16).hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"

    def conv(self):
        return self.r.choice([self.r.randbytes(8).hex(), self.uid(), "", "x" * 64])

    def conn(self):
        return ld(1, f"fuzz-gw-{self.r.randrange(4)}") + num(2, self.r.randrange(1 << 40))

    def ts(self):
        return self.r.choice([0, int(time.time() * 1000), -1, 1 << 62])

    def message(self):
        r, u, c = self.r, self.uid, self.conv
        body = r.choice([
            lambda: ld(1, num(1, r.randint(0, 4)) + ld(2, u()) + ld(2, u())),
            lambda: ld(2, ld(1, c()) + ld(2, u())),
            lambda: ld(3, ld(1, c()) + ld(2, u())),
            lambda: ld(4, ld(1, c()) + ld(2, u()) + ld(3, r.randbytes(6).hex()) + ld(4, "fuzz")),
            lambda: ld(5, ld(1, u()) + ld(2, c()) + num(3, r.randrange(100)) + num(4, r.randint(0, 500))),
            lambda: ld(6, ld(1, u()) + ld(2, c()) + num(3, r.randrange(5)) + num(4, r.randint(0, 1))),
            lambda: ld(7, ld(1, u())),
            lambda: ld(8, ld(1, u()) + ld(2, u())),
            lambda: ld(9, ld(1, u()) + ld(2, f"fuzz-{r.randrange(5)}")),
            lambda: ld(10, ld(1, u()) + ld(2, f"fuzz-{r.randrange(5)}")),
            lambda: ld(11, ld(1, u()) + ld(2, c()) + num(3, r.randrange(10)) + num(4, r.randint(0, 200))),
            lambda: ld(12, ld(1, u()) + ld(2, c()) + num(3, 1)),
            lambda: ld(13, ld(1, u()) + num(2, self.ts())),
            lambda: ld(14, ld(1, u()) + ld(2, c()) + num(3, r.randrange(9)) + num(4, r.randint(0, 1))
                       + num(5, r.randint(0, 200)) + num(6, self.ts()) + ld(7, c()) + ld(8, c())),
        ])()
        return body + ld(100, r.randbytes(4).hex())

    def match(self):
        r, u = self.r, self.uid
        body = r.choice([
            lambda: ld(1, ld(1, u()) + ld(2, self.conn())),
            lambda: ld(2, ld(1, u())),
            lambda: ld(3, ld(1, u()) + ld(2, self.conv()) + ld(3, self.conn())),
            lambda: ld(4, ld(1, u())),
            lambda: ld(5, ld(1, u())),
            lambda: ld(6, ld(1, u())),
        ])()
        return body + ld(100, r.randbytes(4).hex())

    def presence(self):
        r, u = self.r, self.uid
        body = r.choice([
            lambda: ld(1, ld(1, u()) + ld(2, self.conn()) + num(3, self.ts())),
            lambda: ld(2, ld(1, u()) + ld(2, self.conn())),
            lambda: ld(3, ld(1, f"fuzz-gw-{r.randrange(4)}") + num(2, r.randrange(100)) + num(3, r.randint(0, 1))),
            lambda: ld(4, b"".join(ld(1, u()) for _ in range(r.randint(0, 20)))),
            lambda: ld(5, b""),
        ])()
        return body + ld(100, r.randbytes(4).hex())

    def of(self, svc):
        return getattr(self, svc)()

    def huge(self, svc):
        """One request with a repeated field far beyond anything real (under 1 MiB)."""
        r, n = self.r, self.r.choice([1000, 10000, 25000])
        if svc == "message":
            return r.choice([ld(14, ld(1, self.uid()) + b"".join(ld(7, self.conv()) for _ in range(n))),
                             ld(1, num(1, 2) + b"".join(ld(2, self.uid()) for _ in range(n // 10)))])
        if svc == "presence":
            return ld(4, b"".join(ld(1, self.uid()) for _ in range(n)))
        return ld(1, ld(1, "u" * r.choice([1000, 100000, 900000])))


# ---- mutations ------------------------------------------------------------------

def flip(r, data, k):
    b = bytearray(data)
    for _ in range(k):
        if b:
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
    return bytes(b)


def nested_garbage(r, depth):
    v = r.randbytes(r.randint(0, 30))
    for _ in range(depth):
        v = ld(r.randint(1, 20), v) + (r.randbytes(r.randint(0, 4)) if r.random() < 0.3 else b"")
    return v


def mutated(r, seeds, svc):
    """(category, batch bytes, items the reply must have or None when unknown)."""
    others = [s for s in ("message", "match", "presence") if s != svc]
    n = r.randint(1, 8)
    items = [seeds.of(svc) for _ in range(n)]
    pick = r.randrange(12)
    if pick == 0:
        return "valid", batch(items), n
    if pick == 1:
        return "flip batch", flip(r, batch(items), r.randint(1, 8)), None
    if pick == 2:
        i = r.randrange(n)
        items[i] = flip(r, items[i], r.randint(1, 8))
        return "flip item", batch(items), n
    if pick == 3:
        i = r.randrange(n)
        items[i] = items[i][:r.randrange(len(items[i]) + 1)]
        return "truncated item", batch(items), n
    if pick == 4:
        data = batch(items)
        return "truncated batch", data[:r.randrange(len(data))], None
    if pick == 5:  # an item whose length says more (or less) than there is
        data = batch(items[:-1]) + key(1, 2) + varint(len(items[-1]) + r.choice([1, 100, 1 << 30, -1 & 0xFFFF]))
        return "lying length", data + items[-1], None
    if pick == 6:
        return "huge field", batch([seeds.huge(svc)]), 1
    if pick == 7:
        items = [nested_garbage(r, r.randint(1, 60)) for _ in range(n)]
        return "nested garbage", batch(items), n
    if pick == 8:
        items = [seeds.of(r.choice(others)) for _ in range(n)]
        return "wrong service", batch(items), n
    if pick == 9:  # thousands of items, cheap ones mostly (no storage behind them)
        k = r.choice([1000, 3000, 5000])
        items = [r.choice([b"", r.randbytes(r.randint(1, 12)), b"\x08\x01"]) if r.random() < 0.98
                 else seeds.of(svc) for _ in range(k)]
        return "thousands", batch(items), k
    if pick == 10:
        return "empty batch", r.choice([b"", num(2, 7) + num(3, 9)]), 0
    # unknown fields and wrong wire types around and inside the items
    extra = r.choice([num(9, 1), key(1, 0) + varint(5), key(2, 2) + varint(3) + b"abc",
                      key(1, 5) + b"\x00\x00\x00\x00", key(15, 1) + b"\x00" * 8, key(4, 3), b"\xff"])
    return "wire types", batch(items, extra) if r.random() < 0.5 else extra + batch(items), None


# ---- SP over TCP ---------------------------------------------------------------

def sp_header(proto):
    return b"\x00SP\x00" + struct.pack("!H", proto) + b"\x00\x00"


class SpConn:
    """One req0 connection to a rep0 socket."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, addr, proto=REQ0, header=None):
        host, port = addr.split("://", 1)[1].rsplit(":", 1)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 10)
        c = cls(reader, writer)
        writer.write(header if header is not None else sp_header(proto))
        await writer.drain()
        return c

    async def peer_header(self, timeout=10.0):
        return await asyncio.wait_for(self.reader.readexactly(8), timeout)

    async def send(self, body, length=None):
        self.writer.write(struct.pack("!Q", len(body) if length is None else length) + body)
        await self.writer.drain()

    async def recv(self, timeout):
        (n,) = struct.unpack("!Q", await asyncio.wait_for(self.reader.readexactly(8), timeout))
        if n > 64 << 20:
            raise AssertionError(f"a reply of {n} bytes announced")
        return await asyncio.wait_for(self.reader.readexactly(n), timeout)

    def abort(self):
        self.writer.transport.abort()


class Worker:
    """One connection's stream of requests to one service process."""

    def __init__(self, name, svc, addr, index, stats):
        self.name, self.svc, self.addr, self.index, self.stats = name, svc, addr, index, stats
        self.k = 0
        self.conn = None

    def where(self, category):
        return f"{self.name} request {self.index}.{self.k} ({category}, seed {SEED})"

    async def connect(self):
        self.conn = await SpConn.open(self.addr)
        got = await self.conn.peer_header()
        if got != sp_header(REP0):
            raise AssertionError(f"{self.name}: SP handshake {got!r}, not rep0's {sp_header(REP0)!r}")

    async def run(self, deadline):
        try:
            while time.monotonic() < deadline:
                self.k += 1
                r = random.Random(f"{SEED}:{self.name}:{self.index}:{self.k}")
                if r.random() < 0.08:
                    await self.sp_abuse(r)
                else:
                    await self.request(r)
        finally:
            if self.conn is not None:
                self.conn.abort()

    async def request(self, r):
        if self.conn is None:
            await self.connect()
        category, data, want_items = mutated(r, Seeds(r), self.svc)
        rid = 0x80000000 | r.randrange(1 << 31)
        st = self.stats[self.name]
        st["messages"] += 1
        st["bytes"] += len(data) + 12
        st[category] += 1
        await self.conn.send(struct.pack("!I", rid) + data)
        try:
            reply = await self.conn.recv(REPLY_S)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.where(category)}: no reply within {REPLY_S} s")
        except (asyncio.IncompleteReadError, ConnectionResetError):
            raise AssertionError(f"{self.where(category)}: the service closed the connection")
        self.check_reply(category, rid, reply, want_items)
        st["answered"] += 1

    def check_reply(self, category, rid, reply, want_items):
        if len(reply) < 4 or struct.unpack("!I", reply[:4])[0] != rid:
            raise AssertionError(f"{self.where(category)}: reply {reply[:16]!r} does not echo id {rid:#x}")
        fields = parse(reply[4:])
        if fields is None:
            raise AssertionError(f"{self.where(category)}: reply is not a Batch: {reply[4:60]!r}")
        items = [v for f, w, v in fields if f == 1 and w == 2]
        if want_items is not None and len(items) not in (want_items, 0):
            raise AssertionError(f"{self.where(category)}: {len(items)} reply items for {want_items}")
        for it in items:
            if parse(it) is None:
                raise AssertionError(f"{self.where(category)}: a reply item is not a message: {it[:60]!r}")

    async def sp_abuse(self, r):
        """Misuse of the transport on a connection of its own, then gone."""
        st = self.stats[self.name]
        pick = r.randrange(6)
        header = [sp_header(REP0), sp_header(0x10), b"\x00SQ\x00\x00\x30\x00\x00",
                  sp_header(REQ0)[:r.randint(0, 7)], sp_header(REQ0), sp_header(REQ0)][pick]
        c = await SpConn.open(self.addr, header=header)
        st["sp abuse"] += 1
        try:
            if pick == 4:  # an id without its high bit, a message shorter than an id
                await c.send(r.choice([struct.pack("!I", r.randrange(1 << 31)) + batch([b""]), b"\x80\x00"]))
            elif pick == 5:  # a length over the limit, or more than will come
                body = struct.pack("!I", 0x80000001) + r.randbytes(100)
                await c.send(body, length=r.choice([RECV_MAX + 1, 1 << 62, len(body) + 5000]))
            st["bytes"] += len(header)
            await asyncio.wait_for(c.reader.read(64), 0.3)
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            c.abort()




class NngFuzzTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def canary(self, a, b, conv, stop, counts):
        """Turns, a message every ~100 ms, every ack and delivery exact and in order."""
        seq, next_at = 0, time.monotonic()
        while not stop.is_set():
            seq += 1
            me, other = (a, b) if seq % 2 else (b, a)
            cmid = await me.send_text(conv, f"canary {seq}")
            await me.expect_ack(conv, cmid, seq=seq, timeout=15)
            await other.expect_message(conv, me.user_id, f"canary {seq}", seq=seq, timeout=15)
            counts["messages"] = seq
            next_at += 0.1
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def test_fuzz_every_service(self):
        self.cluster.skip_unless_local("talks to the services' own ports")
        log(f"seed {SEED} (CHAT_TEST_FUZZ_SEED={SEED} repeats it), {FUZZ_S:g} s")
        services = {n: self.cluster.procs[n] for n in self.cluster.addr}
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        before = {n: rss(p.pid) for n, p in services.items()}
        stop, counts = asyncio.Event(), {"messages": 0}
        canary = asyncio.create_task(self.canary(a, b, conv, stop, counts))
        stats = defaultdict(Counter)
        started = time.monotonic()
        workers = [Worker(n, n.split("-", 1)[1].split(".")[0], self.cluster.addr[n][0], i, stats)
                   for n in services for i in range(WORKERS)]
        tasks = [asyncio.create_task(w.run(started + FUZZ_S)) for w in workers]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            stop.set()
        if canary.done() and canary.exception():
            raise AssertionError(f"the canary pair was disturbed (seed {SEED})") from canary.exception()
        await asyncio.wait_for(canary, 30)
        self.report(stats, time.monotonic() - started, counts["messages"])
        await a.no_frame(0.3)
        await b.no_frame(0.1)
        for n, p in self.cluster.procs.items():
            self.assertTrue(p.alive(), f"{n} died during the fuzz (seed {SEED}):\n{p.tail()}")
            mark = p.sanitizer_report()
            self.assertIsNone(mark, f"{n}: sanitizer report {mark!r} (seed {SEED}) in {p.log_path}")
        for n, p in services.items():
            check_rss(self, log, n, p.pid, before[n], SEED)
        # Still serving, end to end: the canary and a newcomer.
        cmid = await a.send_text(conv, "after the fuzz")
        await a.expect_ack(conv, cmid, seq=counts["messages"] + 1)
        await b.expect_message(conv, a.user_id, "after the fuzz", seq=counts["messages"] + 1)
        c = await self.connect()
        await c.request({"type": "join_room", "room": "after-fuzz"}, "conversation", kind="room")

    @staticmethod
    def report(stats, elapsed, messages):
        log(f"{elapsed:.1f} s; canary {messages} messages")
        for name in sorted(stats):
            s = stats[name]
            cats = ", ".join(f"{k}: {v}" for k, v in sorted(s.items())
                             if k not in ("messages", "bytes", "answered"))
            log(f"  {name:14} {s['messages']:5} messages ({s['answered']} answered), "
                f"{s['bytes']} bytes  [{cats}]")


if __name__ == "__main__":
    unittest.main()
