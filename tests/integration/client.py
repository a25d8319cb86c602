"""An async WebSocket test client for the chat protocol (websockets 10.4).

Every wait is bounded and a failed expectation raises AssertionError naming
what was expected and the frames seen, so a failing test says what happened.

    c = await connect(url)                    # reads the `connected` frame
    await c.send({"type": "start_search"})
    await c.expect("searching")
    f = await c.expect("matched", kind="random", conversation_id=ANY)

Field values in expect(): a plain value must be equal, ANY must be present,
ABSENT must be absent, a callable must return True. exact=True also checks
that the frame has no other keys.

Presence pushes (`{"type":"presence","user_id":…,"status":…}`) are set aside
by default (they arrive whenever a partner connects or leaves); tests about
presence pass skip_presence=False. Set-aside frames are kept in c.skipped.
"""

import asyncio
import json
import re
import time
import uuid

import websockets
import websockets.exceptions
from websockets.frames import Opcode


class _Any:
    def __repr__(self):
        return "ANY"


class _Absent:
    def __repr__(self):
        return "ABSENT"


ANY = _Any()
ABSENT = _Absent()

UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def is_uuid4(s):
    return isinstance(s, str) and bool(UUID4_RE.match(s))


def is_id(s):
    """conversation_id / msg_id: an opaque string of 1..64 bytes."""
    return isinstance(s, str) and 1 <= len(s.encode()) <= 64


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_now_ms(v, slack_ms=60_000):
    return is_int(v) and abs(v - time.time() * 1000) <= slack_ms


def new_id():
    return uuid.uuid4().hex


class Client:
    def __init__(self, ws, url, skip_presence=True):
        self.ws = ws
        self.url = url
        self.skip_presence = skip_presence
        self.seen = []        # every frame received, for failure messages
        self.skipped = []     # presence pushes set aside
        self.welcome = None   # the `connected` frame
        self.user_id = None
        self.session = None
        self._req = 0

    # ---- sending -----------------------------------------------------------
    async def send(self, obj):
        """Sends one JSON object (or a str as is) as a text frame."""
        await self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    async def send_raw(self, data, opcode=Opcode.TEXT, fin=True):
        """Sends one frame with any payload bytes (e.g. invalid UTF-8 in a text frame)."""
        await self.ws.write_frame(fin, opcode, data)

    def next_req(self):
        self._req += 1
        return f"r{self._req}"

    async def request(self, obj, reply_type, **fields):
        """Sends obj with a fresh req and expects reply_type echoing it."""
        req = self.next_req()
        await self.send(dict(obj, req=req))
        return await self.expect(reply_type, req=req, **fields)

    # ---- receiving -----------------------------------------------------------
    def _history(self, n=12):
        return "\n    ".join(json.dumps(f)[:300] for f in self.seen[-n:]) or "(none)"

    async def recv(self, timeout=5.0):
        """Next frame as a dict (presence pushes set aside unless skip_presence=False)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no frame within {timeout}s on {self.url}; frames seen:\n    "
                                     + self._history())
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                continue
            except websockets.exceptions.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
                raise AssertionError(f"connection closed (code {code}) while waiting for a frame; "
                                     f"frames seen:\n    " + self._history())
            if isinstance(raw, bytes):
                raise AssertionError(f"binary frame from server: {raw[:100]!r}")
            try:
                frame = json.loads(raw)
            except ValueError:
                raise AssertionError(f"server sent non-JSON: {raw[:300]!r}")
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise AssertionError(f"server frame without a type: {raw[:300]!r}")
            self.seen.append(frame)
            if self.skip_presence and frame["type"] == "presence" and "status" in frame:
                self.skipped.append(frame)
                continue
            return frame

    async def expect(self, type_, exact=False, timeout=5.0, **fields):
        """The next frame must be of type_ and have those fields (see module doc)."""
        frame = await self.recv(timeout)
        check_frame(frame, type_, exact, fields, self._history)
        return frame

    async def expect_error(self, code, req=ABSENT, timeout=5.0, **fields):
        """Next frame is {"type":"error","code":code,"message":TEXT?,...} with nothing else;
        req must be echoed when given and absent otherwise."""
        frame = await self.recv(timeout)
        fields = dict(code=code, req=req, **fields)
        check_frame(frame, "error", False, fields, self._history)
        allowed = {"type", "message"} | {k for k, v in fields.items() if v is not ABSENT}
        extra = set(frame) - allowed
        if extra or not isinstance(frame.get("message", ""), str):
            raise AssertionError(f"error frame {json.dumps(frame)[:300]}: unexpected keys {sorted(extra)} "
                                 "or non-string message")
        return frame

    async def expect_close(self, code, timeout=5.0):
        """The server must close with `code` before sending any other frame."""
        try:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no close {code} within {timeout}s; frames seen:\n    " + self._history())
        except websockets.exceptions.ConnectionClosed as e:
            got = e.rcvd.code if e.rcvd else None
            if got != code:
                raise AssertionError(f"closed with {got} (reason {e.rcvd.reason if e.rcvd else ''!r}), "
                                     f"expected {code}; frames seen:\n    " + self._history())
            return
        raise AssertionError(f"expected close {code}, got a frame: {str(raw)[:300]}; before:\n    "
                             + self._history())

    async def no_frame(self, within=0.3):
        """Nothing (but set-aside presence pushes) may arrive within `within` seconds."""
        try:
            frame = await self.recv(within)
        except AssertionError as e:
            if str(e).startswith("no frame within"):
                return
            raise
        raise AssertionError(f"unexpected frame: {json.dumps(frame)[:300]}; frames seen:\n    "
                             + self._history())

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except Exception:
            pass

    # ---- protocol helpers ------------------------------------------------------
    async def send_text(self, conversation_id, text, client_msg_id=None, req=None):
        """Sends a chat message; returns its client_msg_id."""
        cmid = client_msg_id or new_id()
        frame = {"type": "send", "conversation_id": conversation_id, "text": text, "client_msg_id": cmid}
        if req is not None:
            frame["req"] = req
        await self.send(frame)
        return cmid

    async def expect_ack(self, conversation_id, client_msg_id, seq=ANY, req=ABSENT, timeout=5.0):
        fields = dict(client_msg_id=client_msg_id, conversation_id=conversation_id, msg_id=is_id,
                      seq=seq if seq is not ANY else is_int, ts=is_now_ms)
        if req is not ABSENT:
            fields["req"] = req
        return await self.expect("ack", exact=True, timeout=timeout, **fields)

    async def expect_message(self, conversation_id, sender, text, seq=ANY, msg_id=ANY, ts=ANY, timeout=5.0):
        return await self.expect("message", exact=True, timeout=timeout, conversation_id=conversation_id,
                                 msg_id=msg_id if msg_id is not ANY else is_id,
                                 seq=seq if seq is not ANY else is_int, ts=ts if ts is not ANY else is_now_ms,
                                 **{"from": sender, "text": text})


def check_frame(frame, type_, exact, fields, history=lambda: ""):
    problems = []
    if frame.get("type") != type_:
        problems.append(f"type {frame.get('type')!r} != {type_!r}")
    for k, want in fields.items():
        if want is ABSENT:
            if k in frame:
                problems.append(f"{k} present ({frame[k]!r}), expected absent")
        elif k not in frame:
            problems.append(f"{k} missing")
        elif want is ANY:
            pass
        elif callable(want):
            if not want(frame[k]):
                problems.append(f"{k}={frame[k]!r} fails {getattr(want, '__name__', 'check')}")
        elif frame[k] != want or type(frame[k]) is not type(want):
            problems.append(f"{k}={frame[k]!r}, expected {want!r}")
    if exact:
        allowed = {"type"} | {k for k, v in fields.items() if v is not ABSENT}
        extra = set(frame) - allowed
        if extra:
            problems.append(f"unexpected keys {sorted(extra)}")
    if problems:
        raise AssertionError(f"frame {json.dumps(frame)[:400]}: " + "; ".join(problems)
                             + "\n  recent frames:\n    " + history())


async def connect(url, session=None, wait_connected=True, skip_presence=True, **ws_kw):
    """Opens a WebSocket to url (with ?session= when given) and, unless
    wait_connected=False, reads and checks the first frame, `connected`."""
    if session is not None:
        url = url + ("&" if "?" in url else "?") + "session=" + session
    ws = await asyncio.wait_for(
        websockets.connect(url, compression=None, max_size=1 << 22, ping_interval=None,
                           open_timeout=10, close_timeout=5, **ws_kw), 15)
    c = Client(ws, url, skip_presence=skip_presence)
    if wait_connected:
        f = await c.expect("connected", exact=True, user_id=is_uuid4, session=is_nonempty_str,
                           resumed=session is not None)
        c.welcome, c.user_id, c.session = f, f["user_id"], f["session"]
    return c


def is_nonempty_str(s):
    return isinstance(s, str) and len(s) > 0


async def pair(a, b):
    """Matches a and b in a random chat (a searches first); returns the conversation id.
    Checks the exact frames: searching to both, matched to both with one id."""
    await a.request({"type": "start_search"}, "searching", exact=True)
    await b.request({"type": "start_search"}, "searching", exact=True)
    fb = await b.expect("matched", exact=True, conversation_id=is_id, kind="random")
    fa = await a.expect("matched", exact=True, conversation_id=fb["conversation_id"], kind="random")
    return fa["conversation_id"]
