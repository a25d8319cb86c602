"""Abuse limits at the gateway's door: the connection rate and the per-address cap
(HTTP 503 before lws sees the socket, probes exempt), silent and slow sockets dropped,
accept() out of descriptors without a busy loop, the per-connection frame budget, and
frames whose shape would make parsing expensive.

Two clusters: RATE (a low CHAT_CONN_RATE_PER_S, no address cap) and CAP (a low
CHAT_CONN_PER_IP, short handshake timeout, a low CHAT_FRAME_RATE_PER_S)."""

import asyncio
import json
import os
import resource
import socket
import time
import unittest

import cluster
from client import ANY, connect, pair
from cluster import http_get

RATE_PER_S = 20
PER_IP = 4
FRAME_RATE = 10  # a burst of 2 s worth: 20 frames
HANDSHAKE_MS = 600
# Each service's per-user limit of requests other than sends (svc-message: typing,
# history, receipts, rooms, open_dm; svc-match: start/stop_search; svc-presence: presence).
OPS_PER_MIN, OPS_BURST = 60, 5

RATE = cluster.Cluster(gateways=1, name="abuse-rate",
                       env={"CHAT_CONN_RATE_PER_S": str(RATE_PER_S)})
CAP = cluster.Cluster(gateways=1, name="abuse-cap",
                      env={"CHAT_CONN_PER_IP": str(PER_IP),
                           "CHAT_HANDSHAKE_TIMEOUT_MS": str(HANDSHAKE_MS),
                           "CHAT_FRAME_RATE_PER_S": str(FRAME_RATE),
                           "CHAT_OPS_RATE_PER_MIN": str(OPS_PER_MIN),
                           "CHAT_OPS_BURST": str(OPS_BURST)})


def setUpModule():
    RATE.start()
    CAP.start()


def tearDownModule():
    RATE.stop()
    CAP.stop()


UPGRADE = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


async def upgrade_status(port, source="127.0.0.1", timeout=10):
    """Sends a WebSocket upgrade; returns (status line, headers dict, body, writer)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), timeout)
    writer.write(UPGRADE.encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode().split("\r\n")
    headers = dict(ln.split(": ", 1) for ln in lines[1:] if ": " in ln)
    headers = {k.lower(): v for k, v in headers.items()}
    body = b""
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout)
    return lines[0], headers, body, writer


async def refill(rate):
    """A token bucket refills with time, not on an event: wait for one full second's worth."""
    await asyncio.sleep(1.0 + 2.0 / rate)


def gateway_port(c):
    return int(c.http_url(0).rsplit(":", 1)[1])


class RateTest(cluster.ClusterTestCase):
    cluster = RATE

    async def test_new_connections_over_the_rate_get_503(self):
        self.cluster.skip_unless_local("counts the gateway's refusals")
        port = gateway_port(self.cluster)
        refused0 = self.cluster.metric(0, 'chat_gateway_connections_refused_total{limit="rate"}')
        await refill(RATE_PER_S)
        n = 3 * RATE_PER_S
        t0 = time.monotonic()
        results = await asyncio.gather(*(upgrade_status(port) for _ in range(n)))
        elapsed = time.monotonic() - t0
        ok = [r for r in results if r[0].startswith("HTTP/1.1 101")]
        refused = [r for r in results if not r[0].startswith("HTTP/1.1 101")]
        for r in results:
            r[3].close()
        # A second's worth at once, then the rate: never more, and the burst whole.
        self.assertGreaterEqual(len(ok), RATE_PER_S)
        self.assertLessEqual(len(ok), RATE_PER_S + int(RATE_PER_S * elapsed) + 1, elapsed)
        self.assertTrue(refused)
        for status, headers, body, _ in refused:
            self.assertEqual(status, "HTTP/1.1 503 Service Unavailable")
            self.assertEqual(headers.get("retry-after"), "1")
            self.assertEqual(headers.get("connection"), "close")
            self.assertEqual(body, b"too many new connections, retry later\n")
        # Probes are not connections to refuse: ready while the bucket is empty.
        self.assertEqual(self.cluster.readyz(0), 200)
        self.assertEqual(
            self.cluster.metric(0, 'chat_gateway_connections_refused_total{limit="rate"}')
            - refused0, len(refused))
        # The limit passes: a client that retries gets in and chats.
        await refill(RATE_PER_S)
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        await a.send_text(conv, "after the storm", client_msg_id="m1")
        await a.expect_ack(conv, "m1")
        await b.expect_message(conv, a.user_id, "after the storm")

    async def test_accept_without_descriptors_does_not_spin(self):
        self.cluster.skip_unless_local("changes the gateway's descriptor limit")
        proc = self.cluster.procs["gateway1"]
        pid = proc.pid
        errors0 = self.cluster.metric(0, "chat_gateway_accept_errors_total")
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        held = []
        try:
            in_use = len(os.listdir(f"/proc/{pid}/fd"))
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 8, hard))
            # Silent sockets: each one the gateway accepts holds a descriptor, the rest
            # wait in the backlog for accept(), which now fails with EMFILE.
            for _ in range(40):
                s = socket.create_connection(("127.0.0.1", gateway_port(self.cluster)), timeout=5)
                held.append(s)
            cpu0, t0 = self._cpu(pid), time.monotonic()
            await asyncio.sleep(1.5)  # CPU over a span of time: nothing to await
            cpu = self._cpu(pid) - cpu0
            wall = time.monotonic() - t0
            self.assertLess(cpu, 0.25 * wall, f"gateway used {cpu:.2f}s CPU in {wall:.2f}s")
        finally:
            for s in held:
                s.close()
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        self.assertGreater(self.cluster.metric(0, "chat_gateway_accept_errors_total"), errors0)
        self.assertIn("event=accept_failed", proc.log_text())
        await refill(RATE_PER_S)
        c = await self.connect()
        await c.request({"type": "presence", "user_ids": []}, "presence", exact=True, statuses=[])

    @staticmethod
    def _cpu(pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CapTest(cluster.ClusterTestCase):
    cluster = CAP

    async def test_connections_per_address_are_capped(self):
        self.cluster.skip_unless_local("counts the gateway's refusals")
        port = gateway_port(self.cluster)
        clients = [await self.connect() for _ in range(PER_IP)]
        status, headers, body, w = await upgrade_status(port)
        w.close()
        self.assertEqual(status, "HTTP/1.1 503 Service Unavailable")
        self.assertEqual(body, b"too many connections from your address\n")
        # Another address (loopback is a /8) is counted on its own.
        status, _, _, w = await upgrade_status(port, source="127.0.0.2")
        self.assertTrue(status.startswith("HTTP/1.1 101"), status)
        w.close()
        self.assertEqual(self.cluster.readyz(0), 200)  # probes exempt
        self.assertGreaterEqual(
            self.cluster.metric(0, 'chat_gateway_connections_refused_total{limit="per_ip"}'), 1)
        # A closed connection gives its place back (once lws has let go of it).
        await clients[0].close()
        deadline = time.monotonic() + 5
        while True:
            status, _, _, w = await upgrade_status(port)
            w.close()
            if status.startswith("HTTP/1.1 101") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        self.assertTrue(status.startswith("HTTP/1.1 101"), status)

    async def _closed_within(self, payload, lo, hi):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway_port(self.cluster))
        t0 = time.monotonic()
        if payload:
            writer.write(payload)
            await writer.drain()
        data = await asyncio.wait_for(reader.read(), hi + 2)
        took = time.monotonic() - t0
        writer.close()
        self.assertEqual(data, b"")
        self.assertGreaterEqual(took, lo)
        self.assertLess(took, hi)

    async def test_silent_and_slow_sockets_are_dropped(self):
        t = HANDSHAKE_MS / 1000
        await self._closed_within(b"", t * 0.8, t + 1.5)  # nothing at all
        await self._closed_within(b"GET /ws HTTP/1.1", t * 0.8, t + 1.5)  # no end of line
        # The request line, then headers that never end: lws's own header timeout
        # (10 s; shorter ones reset sockets of a gateway busy adopting tens of
        # thousands, see svc-gateway/server.c).
        await self._closed_within(b"GET /ws HTTP/1.1\r\nHost: x\r\n", 8, 13)

    async def test_frame_budget_counts_garbage_too(self):
        flooder = await self.connect()
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        n = 4 * 2 * FRAME_RATE
        for _ in range(n):
            await flooder.send("{")
        codes = [(await flooder.recv())["code"] for _ in range(n)]
        first = codes.index("rate_limited")
        # The burst (2 s worth, less what refilled meanwhile) answered, then refused.
        self.assertGreaterEqual(first, 2 * FRAME_RATE - 1)
        self.assertLessEqual(first, 2 * FRAME_RATE + 2)
        self.assertEqual(set(codes[:first]), {"bad_json"})
        self.assertLess(codes.count("bad_json"), 2 * FRAME_RATE + 5)
        # The canary pair is untouched.
        await a.send_text(conv, "still here", client_msg_id="c1")
        await a.expect_ack(conv, "c1")
        await b.expect_message(conv, a.user_id, "still here")
        # A refusal says when to come back, and then the connection works.
        await flooder.send("{")
        f = await flooder.expect_error("rate_limited", message="too many frames", retry_after_ms=ANY)
        self.assertGreater(f["retry_after_ms"], 0)
        await asyncio.sleep(f["retry_after_ms"] / 1000 + 0.05)  # the time it named
        await flooder.request({"type": "presence", "user_ids": []}, "presence", exact=True,
                              statuses=[])

    async def test_requests_other_than_sends_are_limited_per_user(self):
        a, b = await self.connect(), await self.connect()
        conv = await pair(a, b)
        for _ in range(OPS_BURST):
            await a.send({"type": "typing", "conversation_id": conv, "state": "start"})
            await b.expect("typing", conversation_id=conv, user_id=a.user_id, state="start")
        await a.send({"type": "typing", "conversation_id": conv, "state": "stop"})
        f = await a.expect_error("rate_limited", message="too many requests", retry_after_ms=ANY)
        self.assertTrue(0 < f["retry_after_ms"] <= 60000 // OPS_PER_MIN, f)
        await b.no_frame()
        # The same bucket for REST history: 429 with the wait.
        status, body, _ = http_get(self.cluster.http_url(0),
                                   f"/api/conversations/{conv}/messages",
                                   headers={"Authorization": "Bearer " + a.session})
        self.assertEqual(status, 429, body)
        got = json.loads(body)
        self.assertEqual(set(got), {"error", "retry_after_ms"})
        self.assertEqual(got["error"], "rate_limited")
        # Sends have their own limit, and the partner their own bucket.
        await a.send_text(conv, "still talking", client_msg_id="ops1")
        await a.expect_ack(conv, "ops1")
        await b.expect_message(conv, a.user_id, "still talking")
        await b.send({"type": "typing", "conversation_id": conv, "state": "start"})
        await a.expect("typing", conversation_id=conv, user_id=b.user_id, state="start")

    async def test_presence_and_search_are_limited_per_user(self):
        """svc-presence and svc-match keep buckets of their own (the same settings)."""
        c = await self.connect()
        for _ in range(OPS_BURST):
            await c.request({"type": "presence", "user_ids": []}, "presence", statuses=[])
        await c.send({"type": "presence", "user_ids": [], "req": "p-over"})
        f = await c.expect_error("rate_limited", req="p-over", message="too many requests",
                                 retry_after_ms=ANY)
        self.assertTrue(0 < f["retry_after_ms"] <= 60000 // OPS_PER_MIN, f)
        for i in range(OPS_BURST):
            if i % 2 == 0:
                await c.request({"type": "start_search"}, "searching")
            else:
                await c.request({"type": "stop_search"}, "search_stopped")
        await c.send({"type": "start_search", "req": "s-over"})
        f = await c.expect_error("rate_limited", req="s-over", message="too many requests",
                                 retry_after_ms=ANY)
        self.assertTrue(0 < f["retry_after_ms"] <= 60000 // OPS_PER_MIN, f)
        # Another user is not touched by it.
        d = await self.connect()
        await d.request({"type": "presence", "user_ids": []}, "presence", statuses=[])

    async def test_expensive_shapes_are_refused_unparsed(self):
        c = await self.connect()
        for raw in ("[" * 60000, '{"type":"presence","user_ids":[' + "0," * 20000 + "0]}",
                    '{"type":"start_search","x":' + "[" * 9 + "]" * 9 + "}"):
            await c.send(raw)
            f = await c.expect_error("bad_request")
            self.assertEqual(f["message"],
                             "frame too complex: at most 8 levels of nesting and 1024 values")
        await c.request({"type": "presence", "user_ids": []}, "presence", exact=True, statuses=[])


if __name__ == "__main__":
    unittest.main()
