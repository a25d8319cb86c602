#!/usr/bin/python3
"""deploy/images/smoke.sh's WebSocket client: two users on the gateway at URL
are matched in a random chat and exchange one message each way, checked by
their exact text (and every frame's exact fields).

    smoke_client.py ws://127.0.0.1:PORT/ws

Uses tests/integration/client.py (python3-websockets). Exit 0 when everything
arrived as expected, 1 with the reason otherwise; every wait is bounded.
"""

import asyncio
import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "integration"))
from client import connect, pair  # noqa: E402


async def main(url):
    a = await connect(url)
    b = await connect(url)
    try:
        conv = await pair(a, b)
        # Not ASCII on purpose: the text must come through byte for byte.
        text_a = f"smoke from a container, {uuid.uuid4().hex[:8]}: grüße ✓"
        cmid = await a.send_text(conv, text_a)
        ack = await a.expect_ack(conv, cmid)
        msg = await b.expect_message(conv, a.user_id, text_a, msg_id=ack["msg_id"], seq=ack["seq"])
        assert msg["text"] == text_a, (msg, text_a)
        text_b = f"and back, {uuid.uuid4().hex[:8]}"
        cmid = await b.send_text(conv, text_b)
        ack = await b.expect_ack(conv, cmid)
        await a.expect_message(conv, b.user_id, text_b, msg_id=ack["msg_id"], seq=ack["seq"])
        print(f"smoke_client: {a.user_id[:8]} and {b.user_id[:8]} matched in {conv}, "
              f"exchanged {text_a!r} and {text_b!r}")
    finally:
        await a.close()
        await b.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: smoke_client.py ws://HOST:PORT/ws")
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), 60))
    except (AssertionError, OSError, asyncio.TimeoutError) as e:
        sys.exit(f"smoke_client: FAILED: {type(e).__name__}: {e}")
