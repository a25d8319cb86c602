"""A live fuzzer for the gateway's front door: raw TCP connections with malformed HTTP
handshakes and WebSocket frames that break RFC 6455 in every way we know of, while a
canary pair chats through the same gateway and must not notice.

Each connection gets one category (seeded: connection k of seed S always sends the
same bytes) and its exact outcome is recorded; the exact close codes of PROTOCOL.md
(binary 1003, invalid UTF-8 1007, over 65,536 bytes 1009) and the valid-but-odd
cases (fragments, interleaved pings, a message split at every byte, byte-at-a-time
writes) are asserted, the rest only must end closed or still usable. At the end: the
canary never missed, duplicated or reordered a message, no process died or logged a
sanitizer report, the gateway's RSS after every fuzz connection closed is within a
bound of its level before (not in ASan/TSan builds: see check_rss), and a new client
still gets served.

The cluster runs with CHAT_FRAME_RATE_PER_S=0 and CHAT_CONN_RATE_PER_S=0 (the gateway's
admission limits off) and CHAT_RATE_PER_MIN=0: otherwise most fuzz frames would only
meet the frame budget (`rate_limited`, unparsed), most connections a 503, and the
canary's 10 messages a second the per-user send limit.

Env: CHAT_TEST_FUZZ_S (seconds of fuzzing, default 20), CHAT_TEST_FUZZ_SEED (repeat a
run; the seed is printed)."""

import asyncio
import json
import os
import random
import struct
import sys
import time
import unittest
from collections import Counter, defaultdict

import cluster
from procstat import check_rss, rss
from client import is_id, pair
from rawws import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Closed, RawWs,
                   close_frame)

FUZZ_S = float(os.environ.get("CHAT_TEST_FUZZ_S", "20"))
SEED = int(os.environ.get("CHAT_TEST_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
PARALLEL = 50                # fuzz connections open at once
CONN_LIMIT_S = 40            # one fuzz connection, whatever it does (its waits are shorter)
MAX_MESSAGE = 65536

CLUSTER = cluster.Cluster(gateways=1, name="wsfuzz",
                          env={"CHAT_FRAME_RATE_PER_S": "0", "CHAT_CONN_RATE_PER_S": "0",
                               "CHAT_RATE_PER_MIN": "0"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)

CLIENT_TYPES = ("start_search", "stop_search", "end_chat", "open_dm", "join_room", "leave_room",
                "conversations", "send", "receipt", "history", "typing", "presence",
                "set_profile", "profiles")
# What a fuzz connection may be told (unavailable: a backend slow under the fuzz).
ERROR_CODES = {"bad_json", "unknown_type", "bad_request", "too_long", "rate_limited",
               "not_member", "not_found", "already_in_chat", "conversation_closed", "unavailable"}


def log(msg):
    print(f"[wsfuzz] {msg}", file=sys.stderr, flush=True)


def xor_mask(payload, key):
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")




def padded(size, type_="nope"):
    """A JSON object of exactly `size` bytes."""
    head = '{"type":"%s","pad":"' % type_
    return (head + "p" * (size - len(head) - 2) + '"}').encode()


def probe_request(req="probe"):
    return json.dumps({"type": "presence", "user_ids": [], "req": req}).encode()


class Fuzz:
    """One fuzz connection: its seeded choices, its counters, its socket."""

    def __init__(self, index, port, stats):
        self.index, self.port, self.stats = index, port, stats
        self.rng = random.Random(f"{SEED}:{index}")
        self.ws = None
        self.category = None

    def where(self):
        return f"connection {self.index} ({self.category}, seed {SEED})"

    # ---- writing -----------------------------------------------------------
    def frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True, length=None, form=None):
        """One client frame. length lies about the size, form (7, 16, 64) forces a length
        encoding (non-minimal ones included)."""
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload) if length is None else length
        if form is None:
            form = 7 if n < 126 else 16 if n < 65536 else 64
        head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
        mbit = 0x80 if mask else 0
        if form == 7:
            head += bytes([mbit | n])
        elif form == 16:
            head += bytes([mbit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([mbit | 127]) + struct.pack("!Q", n)
        self.stats[self.category]["frames"] += 1
        if not mask:
            return head + payload
        key = self.rng.randbytes(4)
        return head + key + xor_mask(payload, key)

    async def send(self, data, chunk=None):
        """Writes data, in chunks of `chunk` bytes with a yield between them when given."""
        step = chunk or len(data) or 1
        for i in range(0, len(data), step):
            await self.ws.send(data[i:i + step])
            self.stats[self.category]["bytes"] += len(data[i:i + step])
            if chunk:
                await asyncio.sleep(0)

    # ---- connecting ---------------------------------------------------------
    async def tcp(self):
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
        self.ws = RawWs(reader, writer)
        self.stats[self.category]["connections"] += 1

    def upgrade_request(self, path="/ws", version="13", key=True, upgrade=True, extra=""):
        key_hdr = f"Sec-WebSocket-Key: {self.rng.randbytes(16).hex()[:22]}==\r\n" if key else ""
        up = "Upgrade: websocket\r\nConnection: Upgrade\r\n" if upgrade else ""
        return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{up}{key_hdr}"
                f"Sec-WebSocket-Version: {version}\r\n{extra}\r\n").encode()

    async def upgraded(self, path="/ws"):
        """A WebSocket past the `connected` frame."""
        await self.tcp()
        await self.send(self.upgrade_request(path))
        head = await asyncio.wait_for(self.ws.reader.readuntil(b"\r\n\r\n"), 10)
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"{self.where()}: a valid upgrade was refused: {head[:200]!r}")
        op, payload = await self.ws.read_frame(10)
        if op != OP_TEXT or json.loads(payload).get("type") != "connected":
            raise AssertionError(f"{self.where()}: first frame {op} {payload[:200]!r}, not connected")

    # ---- reading -------------------------------------------------------------
    def check_text(self, payload, codes=ERROR_CODES):
        """A server text frame: a JSON object with a type; errors only with known codes."""
        try:
            f = json.loads(payload)
        except ValueError:
            raise AssertionError(f"{self.where()}: server sent non-JSON {payload[:200]!r}")
        if not isinstance(f, dict) or not isinstance(f.get("type"), str):
            raise AssertionError(f"{self.where()}: server frame without a type: {payload[:200]!r}")
        if f["type"] == "error" and f.get("code") not in codes:
            raise AssertionError(f"{self.where()}: unexpected error frame {payload[:300]!r}")
        return f

    async def ending(self, timeout=3.0, want=None):
        """Reads until the server ends the exchange: 'close CODE' (answered), 'eof', 'reset',
        'cut' (inside a frame) or 'open' (nothing within timeout). want(op, payload) -> True
        stops early with 'answered'."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                op, payload = await self.ws.read_frame(max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return "open"
            except Closed as e:
                return e.how
            except AssertionError as e:
                if "inside a frame" in str(e):
                    return "cut"
                raise AssertionError(f"{self.where()}: {e}")
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                try:
                    await self.ws.send(close_frame(code if code and code < 5000 else 1000))
                except Closed:
                    pass
                return f"close {code}"
            if op == OP_TEXT:
                self.check_text(payload)
            if want is not None and want(op, payload):
                return "answered"

    async def closed_or_usable(self, timeout=2.0):
        """The RFC leaves it to the server: closed, or still answering a request."""
        how = await self.ending(timeout)
        if how != "open":
            return how
        try:
            await self.send(self.frame(OP_TEXT, probe_request()))
        except Closed as e:
            return e.how
        how = await self.ending(10.0, want=self.is_reply("probe"))
        if how == "open":
            raise AssertionError(f"{self.where()}: neither closed nor answering a request in 10 s")
        return "usable" if how == "answered" else how

    def is_reply(self, req):
        def want(op, payload):
            return op == OP_TEXT and json.loads(payload).get("req") == req
        return want

    async def expect_reply(self, req="probe", timeout=10.0, pong=()):
        """The reply to request `req` must come, and before it a pong echoing one of the
        pings `pong` (RFC 6455 5.5.3 lets a server answer only one of several)."""
        pongs = []

        def want(op, payload):
            if op == OP_PONG:
                pongs.append(payload)
            return self.is_reply(req)(op, payload)
        how = await self.ending(timeout, want=want)
        if how != "answered":
            raise AssertionError(f"{self.where()}: no reply to {req!r} ({how})")
        if pong and not set(pongs) & set(pong):
            raise AssertionError(f"{self.where()}: no pong echoing one of our {len(pong)} pings "
                                 f"(got {[p[:20] for p in pongs[:3]]})")
        return "answered"

    async def expect_close(self, code, timeout=10.0):
        how = await self.ending(timeout)
        if how != f"close {code}":
            raise AssertionError(f"{self.where()}: expected close {code}, got {how}")
        return how


# ---- categories: each takes a Fuzz, returns its outcome ----------------------

BAD_LINES = [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET /ws\r\n\r\n", b"GET /ws HTTP/1.1 x\r\n\r\n",
             b" / HTTP/1.1\r\n\r\n", b"\r\n\r\n", b"GET /ws HTTP/1.1\n\n", b"get /ws http/1.1\r\n\r\n",
             b"GET /ws HTTP/9.9\r\n\r\n", b"GET /ws HTTP/1.1\r\nHost\r\n\r\n",
             b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
             b"GET http://127.0.0.1/ws HTTP/1.1\r\n\r\n", b"\x00" * 64, b"GET /ws HTTP/1.1\r\n\x00\r\n\r\n",
             b"A" * 10000 + b" / HTTP/1.1\r\n\r\n", b"GET /" + b"w" * 10000 + b" HTTP/1.1\r\n\r\n",
             b"POST /api/auth/login HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n{",
             b"POST /api/auth/login HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
             b"POST /api/auth/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
             b"GET /api/conversations HTTP/1.1\r\nAuthorization: Bearer %00\r\n\r\n",
             b"GET /api/conversations/%00/messages?before=-1&limit=99999999999999999999 HTTP/1.1\r\n"
             b"Authorization: Bearer x\r\n\r\n"]
ODD_PATHS = ["/ws%00", "/ws%", "/ws%zz", "/%2e%2e/ws", "/ws?session=%00", "/ws?session=%",
             "/ws?session=%G1", "/ws?session=" + "A" * 5000, "/ws?session=&session=x",
             "/ws?" + "a=b&" * 500, "/ws?session=a.b.c", "/ws#frag", "/ws?session=%2500",
             "/ws?session=" + "%ff" * 100, "//ws", "/ws/"]


async def http_response(fz, timeout=3.0):
    """The status line the server answered with, 'eof'/'reset', or 'open'."""
    try:
        data = await asyncio.wait_for(fz.ws.reader.read(65536), timeout)
    except asyncio.TimeoutError:
        return "open"
    except ConnectionResetError:
        return "reset"
    if not data:
        return "eof"
    return data.split(b"\r\n", 1)[0].decode("latin-1")[:40]


async def cat_http_garbage(fz):
    await fz.tcp()
    r = fz.rng
    pick = r.randrange(4)
    if pick == 0:
        data = r.choice(BAD_LINES)
    elif pick == 1:
        data = r.randbytes(r.randint(1, 3000))
    elif pick == 2:  # headers far over lws's 4096-byte limit, one huge or many
        big = (b"X-Big: " + b"a" * r.choice([4000, 5000, 20000, 70000]) + b"\r\n" if r.random() < 0.5
               else b"".join(b"X-H%d: v\r\n" % i for i in range(r.choice([200, 600]))))
        data = b"GET /ws HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n"
    else:  # a request line and part of the headers, then gone
        data = fz.upgrade_request()[:r.randint(1, 60)]
    try:
        await fz.send(data, chunk=r.choice([None, None, 7]))
    except Closed as e:
        return e.how
    if pick == 3:
        return "aborted"
    return await http_response(fz)


async def cat_bad_upgrade(fz):
    """Upgrades that must not be accepted: no Upgrade, no key; a wrong version."""
    await fz.tcp()
    r = fz.rng
    how = r.choice(["upgrade", "key", "version"])
    req = fz.upgrade_request(upgrade=how != "upgrade", key=how != "key",
                             version=r.choice(["8", "0", "99", "abc", "", "13, 8"]) if how == "version"
                             else "13")
    await fz.send(req)
    status = await http_response(fz)
    if status.startswith("HTTP/1.1 101"):
        raise AssertionError(f"{fz.where()}: upgrade without a valid {how} accepted: {status}")
    # A version other than 13: 426 naming 13 (RFC 6455 4.2.2; the gateway checks it,
    # lws alone would upgrade any).
    if how == "version" and not status.startswith(("HTTP/1.1 426", "HTTP/1.1 400")):
        raise AssertionError(f"{fz.where()}: a wrong version answered {status}")
    return f"{how}: {status.split(' ', 2)[1] if status.startswith('HTTP/') else status}"


async def cat_odd_path(fz):
    """Escapes and odd session arguments: refused, a fresh identity, or unauthorized + 4401."""
    await fz.tcp()
    await fz.send(fz.upgrade_request(fz.rng.choice(ODD_PATHS)))
    try:
        head = await asyncio.wait_for(fz.ws.reader.readuntil(b"\r\n\r\n"), 5)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return "closed"
    except asyncio.LimitOverrunError:
        return "big answer"
    if not head.startswith(b"HTTP/1.1 101"):
        return head.split(b"\r\n", 1)[0].decode("latin-1")[:30]
    op, payload = await fz.ws.read_frame(10)
    f = fz.check_text(payload, {"unauthorized"}) if op == OP_TEXT else {}
    if f.get("type") == "connected":
        return "connected " + await fz.closed_or_usable(0.2)
    if f.get("type") != "error" or f.get("code") != "unauthorized":
        raise AssertionError(f"{fz.where()}: first frame {payload[:200]!r}")
    return await fz.expect_close(4401)


async def cat_fragments(fz):
    await fz.upgraded()
    r = fz.rng
    body = probe_request()
    pick = r.randrange(4)
    if pick == 0:  # a continuation with no message to continue
        await fz.send(fz.frame(OP_CONT, b'{"type":"x"}'))
        return "orphan cont: " + await fz.closed_or_usable()
    if pick == 1:  # a new text frame while a message is open
        await fz.send(fz.frame(OP_TEXT, body[:5], fin=False) + fz.frame(OP_TEXT, body))
        return "text in text: " + await fz.closed_or_usable()
    if pick == 2:  # pings and pongs between the fragments: valid, answered
        cut = sorted(r.sample(range(1, len(body)), 2))
        ping = r.randbytes(r.randint(0, 125))
        await fz.send(fz.frame(OP_TEXT, body[:cut[0]], fin=False) + fz.frame(OP_PING, ping)
                      + fz.frame(OP_CONT, body[cut[0]:cut[1]], fin=False)
                      + fz.frame(OP_PONG, r.randbytes(r.randint(0, 125)))
                      + fz.frame(OP_CONT, body[cut[1]:]))
        return await fz.expect_reply(pong=[ping])
    # every byte its own fragment, multi-byte characters split too: valid, answered
    body = json.dumps({"type": "presence", "user_ids": [], "req": "probé€𝄞"},
                      ensure_ascii=False).encode()
    frames = [fz.frame(OP_TEXT if i == 0 else OP_CONT, body[i:i + 1], fin=i == len(body) - 1)
              for i in range(len(body))]
    await fz.send(b"".join(frames))
    return await fz.expect_reply(req="probé€𝄞")


async def cat_control(fz):
    await fz.upgraded()
    r = fz.rng
    pick = r.randrange(6)
    if pick == 0:  # pings of every allowed size: each echoed
        payloads = [r.randbytes(r.randint(0, 125)) for _ in range(r.randint(1, 5))]
        await fz.send(b"".join(fz.frame(OP_PING, p) for p in payloads) + fz.frame(OP_TEXT, probe_request()))
        return await fz.expect_reply(pong=payloads)
    if pick == 1:  # control frames over 125 bytes
        op = r.choice([OP_PING, OP_PONG, OP_CLOSE])
        await fz.send(fz.frame(op, r.randbytes(r.randint(126, 3000))))
        return f"oversized {op}: " + await fz.closed_or_usable()
    if pick == 2:  # a fragmented control frame
        op = r.choice([OP_PING, OP_PONG])
        await fz.send(fz.frame(op, b"ab", fin=False) + fz.frame(OP_CONT, b"cd"))
        return f"fragmented {op}: " + await fz.closed_or_usable()
    if pick == 3:  # close with an invalid code, a short payload or a bad reason
        payload = r.choice([struct.pack("!H", r.choice([0, 999, 1004, 1005, 1006, 1015, 1016, 2999,
                                                            5000, 65535])),
                            b"\x03", struct.pack("!H", 1000) + b"\xff\xfe",
                            struct.pack("!H", 1000) + b"r" * 123])
        await fz.send(fz.frame(OP_CLOSE, payload))
        return "bad close: " + await fz.ending(8.0)
    if pick == 4:  # data after our close: ignored, the connection ends
        await fz.send(fz.frame(OP_CLOSE, struct.pack("!H", 1000)) + fz.frame(OP_TEXT, probe_request()))
        return "data after close: " + await fz.ending(8.0)
    await fz.send(fz.frame(OP_PONG, r.randbytes(r.randint(0, 125))) + fz.frame(OP_TEXT, probe_request()))
    return await fz.expect_reply()


async def cat_sizes(fz):
    """Around the 65,536-byte limit, whole or in fragments whose sum crosses it."""
    await fz.upgraded()
    r = fz.rng
    size = r.choice([65535, 65536, 65537, 65537, 70000])
    body = padded(size)
    pieces = [body]
    if r.random() < 0.6:
        cuts = sorted(r.sample(range(1, size), r.randint(1, 4)))
        pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [size])]
    frames = b"".join(fz.frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(pieces) - 1)
                      for i, p in enumerate(pieces))
    try:
        await fz.send(frames)
    except Closed as e:
        if size <= MAX_MESSAGE:
            raise AssertionError(f"{fz.where()}: {size} bytes in {len(pieces)} frames: {e.how}")
    if size > MAX_MESSAGE:
        return await fz.expect_close(1009)

    def unknown_type(op, payload):
        return op == OP_TEXT and json.loads(payload).get("code") == "unknown_type"
    how = await fz.ending(15.0, want=unknown_type)
    if how != "answered":
        raise AssertionError(f"{fz.where()}: {size} bytes in {len(pieces)} frames: {how}, "
                             "not unknown_type")
    return f"{size}: answered"


async def cat_lengths(fz):
    """Payload lengths that lie: the 64-bit top bit, non-minimal encodings, more than sent."""
    await fz.upgraded()
    r = fz.rng
    pick = r.randrange(4)
    body = probe_request()
    if pick == 0:
        await fz.send(fz.frame(OP_TEXT, b"x" * 16, length=(1 << 63) | r.randrange(1 << 20), form=64))
        return "top bit: " + await fz.ending(3.0)
    if pick == 1:  # the RFC says minimal; the server may take it or fail the connection
        await fz.send(fz.frame(OP_TEXT, body, form=r.choice([16, 64])))
        return "non-minimal: " + await fz.closed_or_usable()
    if pick == 2:  # a header promising far more than comes, then we are gone mid-frame
        await fz.send(fz.frame(OP_TEXT, r.randbytes(r.randint(0, 200)),
                               length=r.choice([126, 60000, 65536, 1 << 20, 1 << 40])))
        fz.ws.abort()
        return "aborted mid-frame"
    await fz.send(fz.frame(OP_TEXT, b"x" * 10, length=1 << 40, form=64))
    return "2^40: " + await fz.ending(3.0)


async def cat_bits(fz):
    """Unmasked client frames, reserved bits without an extension, reserved opcodes."""
    await fz.upgraded()
    r = fz.rng
    pick = r.randrange(3)
    if pick == 0:
        await fz.send(fz.frame(OP_TEXT, probe_request(), mask=False))
        return "unmasked: " + await fz.closed_or_usable()
    if pick == 1:
        rsv = r.randint(1, 7)
        await fz.send(fz.frame(OP_TEXT, probe_request(), rsv=rsv))
        return f"rsv {rsv}: " + await fz.closed_or_usable()
    op = r.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    await fz.send(fz.frame(op, r.randbytes(r.randint(0, 40))))
    return f"opcode {op}: " + await fz.closed_or_usable()


async def cat_trickle(fz):
    """Frames written one byte at a time: a valid one is answered."""
    await fz.upgraded()
    r = fz.rng
    if r.random() < 0.5:
        await fz.send(fz.frame(OP_TEXT, probe_request()), chunk=1)
        return await fz.expect_reply()
    bad = r.choice([fz.frame(OP_TEXT, b"\xc3\x28"), fz.frame(9, b"x"),
                    fz.frame(OP_TEXT, b"{}", rsv=4), fz.frame(OP_CONT, b"{}")])
    try:
        await fz.send(bad, chunk=1)
    except Closed as e:
        return "invalid: " + e.how
    return "invalid: " + await fz.closed_or_usable()


async def cat_exact_close(fz):
    """The closes PROTOCOL.md names: binary 1003, invalid UTF-8 1007."""
    await fz.upgraded()
    r = fz.rng
    if r.random() < 0.5:
        await fz.send(fz.frame(OP_BINARY, probe_request() if r.random() < 0.5 else r.randbytes(50)))
        return await fz.expect_close(1003)
    bad = r.choice([b'{"type":"\xff"}', b"\xc3\x28", b'{"type":"send","text":"\xed\xa0\x80"}',
                    b"\xf8\x88\x80\x80\x80", b'{"type":"presence","user_ids":[]}\xc0\xaf',
                    b"\xf4\x90\x80\x80"])
    if r.random() < 0.5:  # the bad byte in a later fragment
        await fz.send(fz.frame(OP_TEXT, b'{"a":"', fin=False) + fz.frame(OP_CONT, bad))
    else:
        await fz.send(fz.frame(OP_TEXT, bad))
    return await fz.expect_close(1007)


def fuzz_uuid(r):
    h = r.randbytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def valid_frame(r, conv):
    """A well-formed client frame of a random type (never naming the canary's users)."""
    t = r.choice(CLIENT_TYPES)
    room = f"fuzz-{r.randrange(5)}"
    f = {"type": t}
    if t == "end_chat":
        f["conversation_id"] = conv
    elif t == "open_dm":
        f["user_id"] = fuzz_uuid(r)
    elif t in ("join_room", "leave_room"):
        f["room"] = room
    elif t == "send":
        f.update(conversation_id=conv, text=r.choice(["hi", "é" * 500, " x ", "𝄞"]),
                 client_msg_id=r.randbytes(8).hex())
    elif t == "receipt":
        f.update(conversation_id=conv, seq=r.randint(1, 3), status=r.choice(["delivered", "read"]))
    elif t == "history":
        f.update(conversation_id=conv, limit=r.randint(1, 100))
    elif t == "typing":
        f.update(conversation_id=conv, state=r.choice(["start", "stop"]))
    elif t in ("presence", "profiles"):
        f["user_ids"] = [fuzz_uuid(r) for _ in range(r.randint(0, 100))]
    elif t == "set_profile":
        f["display_name"] = r.choice(["fuzz", None, " ", "n" * 41])
    if r.random() < 0.3:
        f["req"] = r.randbytes(4).hex()
    return f


ODD_VALUES = [1, -1, 1.5, None, True, [], {}, 2 ** 64, -2 ** 63 - 1, "", "x" * 65, 1e308, "\u0000"]


def deep(r, depth):
    v = r.choice([1, "x", None])
    for _ in range(depth):
        v = [v] if r.random() < 0.5 else {"a": v}
    return v


def mutate(r, f):
    """A frame gone wrong: its type swapped, a field lost, changed, duplicated or huge."""
    f = dict(f)
    keys = list(f)
    pick = r.randrange(7)
    if pick == 0:
        f["type"] = r.choice(CLIENT_TYPES + ("connected", "ack", "SEND", ""))
    elif pick == 1 and len(keys) > 1:
        del f[r.choice(keys[1:])]
    elif pick == 2:
        f[r.choice(keys)] = r.choice(ODD_VALUES)
    elif pick == 3:
        f[r.choice(keys)] = r.choice(["x", "é", "\u0000", "\ud7ff"]) * r.choice([65, 501, 5000, 20000])
    elif pick == 4:
        f[r.choice(keys + ["extra"])] = deep(r, r.randint(1, 40))
    elif pick == 5:  # a key twice: the text, not the dict, says so
        text = json.dumps(f)
        k = r.choice(keys)
        return text[:-1] + f', "{k}": {json.dumps(r.choice(ODD_VALUES))}}}'
    else:
        f["req"] = r.choice(ODD_VALUES + ["q" * 65])
    return json.dumps(f, ensure_ascii=r.random() < 0.5)


INVALID_JSON = ['{', '[1]', '"x"', 'null', '', ' ', '{"type":"send"', '{"type":"presence"}}',
                "{'type':'x'}", '{"type":NaN}', '{"type":Infinity}', '{"type":"\\ud800"}',
                '{"type":"presence","user_ids":["\\u0000"]}', '1' * 400, '{"a":' * 60,
                '{"type":"send","text":"\\udfff\\ud800"}', '\ufeff{"type":"presence","user_ids":[]}',
                '{"type":"presence","user_ids":[],"req":"\\u0000"}', '[' * 10 + ']' * 10]


async def cat_json(fz):
    """Many text frames, valid, mutated and invalid, of every client type: each answered as
    PROTOCOL.md says (only known error codes), the connection never closed."""
    await fz.upgraded()
    r = fz.rng
    await fz.send(fz.frame(OP_TEXT, json.dumps({"type": "join_room", "room": f"fuzz-{r.randrange(5)}",
                                                "req": "join"})))
    conv = None

    def joined(op, payload):
        nonlocal conv
        f = json.loads(payload) if op == OP_TEXT else {}
        conv = f.get("conversation_id") if f.get("req") == "join" else None
        return conv is not None
    if await fz.ending(10.0, want=joined) != "answered" or not is_id(conv):
        raise AssertionError(f"{fz.where()}: join_room not answered with a conversation")
    n = r.randint(5, 40)
    for _ in range(n):
        kind = r.random()
        text = (json.dumps(valid_frame(r, conv)) if kind < 0.4 else mutate(r, valid_frame(r, conv))
                if kind < 0.8 else r.choice(INVALID_JSON))
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > MAX_MESSAGE or not valid_utf8(data):
            data = b'{"type":"nope"}'
        await fz.send(fz.frame(OP_TEXT, data))
    await fz.send(fz.frame(OP_TEXT, probe_request()))
    return await fz.expect_reply(timeout=20.0)


def valid_utf8(data):
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


CATEGORIES = {"http_garbage": (cat_http_garbage, 3), "bad_upgrade": (cat_bad_upgrade, 1),
              "odd_path": (cat_odd_path, 2), "fragments": (cat_fragments, 2),
              "control": (cat_control, 2), "sizes": (cat_sizes, 2), "lengths": (cat_lengths, 2),
              "bits": (cat_bits, 2), "trickle": (cat_trickle, 1), "exact_close": (cat_exact_close, 2),
              "json": (cat_json, 4)}


async def fuzz_one(index, port, stats, outcomes):
    fz = Fuzz(index, port, stats)
    names = list(CATEGORIES)
    fz.category = fz.rng.choices(names, weights=[CATEGORIES[n][1] for n in names])[0]
    abort_early = fz.rng.random() < 0.1
    try:
        run = CATEGORIES[fz.category][0](fz)
        if abort_early:  # gone at a random moment, mid-frame or mid-handshake as it falls
            try:
                await asyncio.wait_for(run, fz.rng.uniform(0.001, 0.05))
                how = "finished"
            except asyncio.TimeoutError:
                how = "aborted at random"
        else:
            how = await asyncio.wait_for(run, CONN_LIMIT_S)
    except asyncio.TimeoutError:
        raise AssertionError(f"{fz.where()}: no outcome within {CONN_LIMIT_S} s")
    except Closed as e:
        how = e.how  # the server closed while we were still writing
    finally:
        if fz.ws is not None:
            fz.ws.abort()
    outcomes[fz.category][how] += 1


class WsFuzzTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def canary(self, a, b, conv, stop, counts):
        """a and b take turns, a message every ~100 ms; every ack and delivery exact, in seq
        order, nothing else on either connection."""
        seq = 0
        next_at = time.monotonic()
        while not stop.is_set():
            seq += 1
            me, other = (a, b) if seq % 2 else (b, a)
            text = f"canary {seq}"
            cmid = await me.send_text(conv, text)
            await me.expect_ack(conv, cmid, seq=seq, timeout=15)
            await other.expect_message(conv, me.user_id, text, seq=seq, timeout=15)
            counts["messages"] = seq
            next_at += 0.1
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def wait_open(self, want, timeout=30.0):
        deadline = time.monotonic() + timeout
        while (n := self.cluster.metric(0, "chat_gateway_connections_open")) != want:
            if time.monotonic() > deadline:
                raise AssertionError(f"connections_open {n}, not back to the canary's {want} "
                                     f"within {timeout} s (seed {SEED})")
            await asyncio.sleep(0.2)

    async def test_fuzz_beside_a_canary(self):
        self.cluster.skip_unless_local("watches the gateway's process and memory")
        log(f"seed {SEED} (CHAT_TEST_FUZZ_SEED={SEED} repeats it), {FUZZ_S:g} s")
        port = int(self.cluster.http_url(0).rsplit(":", 1)[1])
        gw = self.cluster.procs["gateway1"]
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        await self.wait_open(2)
        rss_before = rss(gw.pid)
        stop, counts = asyncio.Event(), {"messages": 0}
        canary = asyncio.create_task(self.canary(a, b, conv, stop, counts))
        stats = defaultdict(Counter)
        outcomes = defaultdict(Counter)
        started = time.monotonic()
        next_index = iter(range(1 << 30))

        async def worker():
            while time.monotonic() - started < FUZZ_S and not canary.done():
                await fuzz_one(next(next_index), port, stats, outcomes)

        workers = [asyncio.create_task(worker()) for _ in range(PARALLEL)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            stop.set()
        if canary.done() and canary.exception():
            raise AssertionError(f"the canary pair was disturbed (seed {SEED})") from canary.exception()
        await asyncio.wait_for(canary, 30)
        elapsed = time.monotonic() - started
        self.report(stats, outcomes, elapsed, counts["messages"])
        await a.no_frame(0.3)
        await b.no_frame(0.1)
        self.check_processes()
        await self.wait_open(2)
        check_rss(self, log, "gateway1", gw.pid, rss_before, SEED)
        # Still serving: a newcomer, and the canary.
        c = await self.connect()
        await c.request({"type": "presence", "user_ids": []}, "presence", exact=True, statuses=[])
        cmid = await a.send_text(conv, "after the fuzz")
        await a.expect_ack(conv, cmid, seq=counts["messages"] + 1)
        await b.expect_message(conv, a.user_id, "after the fuzz", seq=counts["messages"] + 1)

    def check_processes(self):
        for name, p in self.cluster.procs.items():
            self.assertTrue(p.alive(), f"{name} died during the fuzz (seed {SEED}):\n{p.tail()}")
            mark = p.sanitizer_report()
            self.assertIsNone(mark, f"{name}: sanitizer report {mark!r} (seed {SEED}) in {p.log_path}")

    @staticmethod
    def report(stats, outcomes, elapsed, messages):
        total = Counter()
        for s in stats.values():
            total.update(s)
        log(f"{elapsed:.1f} s: {total['connections']} connections, {total['frames']} frames, "
            f"{total['bytes']} bytes; canary {messages} messages")
        for name in sorted(stats):
            s = stats[name]
            top = ", ".join(f"{k}: {v}" for k, v in outcomes[name].most_common(6))
            log(f"  {name:13} {s['connections']:4} conns {s['frames']:6} frames {s['bytes']:9} bytes"
                f"  [{top}]")


if __name__ == "__main__":
    unittest.main()
