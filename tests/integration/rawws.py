"""A WebSocket client without a library's manners, for close-handshake tests.

websockets answers a close frame by itself and refuses to send after it; these
tests need a client that keeps sending, never answers, or answers exactly
when told. RawWs writes the frames and bytes it is given (masked, as a client
must) and reads the server's frames as they come. Every wait is bounded.
"""

import asyncio
import base64
import os
import struct
import time

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode, payload=b"", fin=True):
    """One masked client frame."""
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def close_frame(code, reason=b""):
    return frame(OP_CLOSE, struct.pack("!H", code) + reason)


class Closed(Exception):
    """The TCP connection ended; .how is 'eof' or 'reset'."""

    def __init__(self, how):
        super().__init__(how)
        self.how = how


class RawWs:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host, port, path="/ws", timeout=10):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise AssertionError(f"upgrade refused: {head[:200]!r}")
        return cls(reader, writer)

    async def send(self, data):
        """Writes bytes; raises Closed when the server has gone."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            raise Closed("reset")

    async def _read(self, n, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise asyncio.TimeoutError()
        try:
            return await asyncio.wait_for(self.reader.readexactly(n), left)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise AssertionError(f"connection ended inside a frame ({len(e.partial)} of {n} bytes)")
            raise Closed("eof")
        except ConnectionResetError:
            raise Closed("reset")

    async def read_frame(self, timeout=5.0):
        """(opcode, payload) of the server's next frame; asyncio.TimeoutError when none
        comes in time, Closed when the connection ends."""
        deadline = time.monotonic() + timeout
        b0, b1 = await self._read(2, deadline)
        if b1 & 0x80:
            raise AssertionError("the server masked a frame")
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self._read(2, deadline))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self._read(8, deadline))
        payload = await self._read(n, deadline) if n else b""
        return b0 & 0x0F, payload

    async def wait_closed(self, timeout):
        """Reads until the connection ends (discarding frames); returns 'eof' or 'reset'.
        asyncio.TimeoutError if it is still open after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.read_frame(max(0.0, deadline - time.monotonic()))
            except Closed as e:
                return e.how

    def abort(self):
        self.writer.transport.abort()
