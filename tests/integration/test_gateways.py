"""Two gateways: users on different gateways are matched and chat; the HTTP endpoints."""

import re
import unittest

import cluster
from client import pair
from cluster import http_get

CLUSTER = cluster.Cluster(gateways=2, name="gateways")
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class GatewaysTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def test_matched_and_chatting_across_gateways(self):
        a, b = await self.connect(0), await self.connect(1)
        conv = await pair(a, b)
        for i in range(5):
            cmid = await a.send_text(conv, f"from gw1 {i}")
            ack = await a.expect_ack(conv, cmid, seq=2 * i + 1)
            await b.expect_message(conv, a.user_id, f"from gw1 {i}", seq=2 * i + 1, msg_id=ack["msg_id"],
                                   ts=ack["ts"])
            cmid = await b.send_text(conv, f"from gw2 {i}")
            ack = await b.expect_ack(conv, cmid, seq=2 * i + 2)
            await a.expect_message(conv, b.user_id, f"from gw2 {i}", seq=2 * i + 2, msg_id=ack["msg_id"])
        await a.send({"type": "end_chat", "conversation_id": conv})
        await a.expect("chat_ended", exact=True, conversation_id=conv, by="you")
        await b.expect("chat_ended", exact=True, conversation_id=conv, by="partner")

    async def test_every_connection_of_a_user_gets_messages(self):
        a, b = await self.connect(0), await self.connect(0)
        conv = await pair(a, b)
        b2 = await self.connect(1, session=b.session)
        cmid = await a.send_text(conv, "to both")
        ack = await a.expect_ack(conv, cmid, seq=1)
        await b.expect_message(conv, a.user_id, "to both", seq=1, msg_id=ack["msg_id"])
        # b2 opened right after the match: the other gateway may still be delivering
        # the (published) matched event for b, which it then also gives to b2.
        f = await b2.recv()
        if f["type"] == "matched":
            self.assertEqual(f, {"type": "matched", "conversation_id": conv, "kind": "random"})
            f = None
        if f is None:
            await b2.expect_message(conv, a.user_id, "to both", seq=1, msg_id=ack["msg_id"])
        else:
            self.assertEqual((f["type"], f["seq"], f["text"], f["msg_id"]),
                             ("message", 1, "to both", ack["msg_id"]), f)
        # The matched event went to every connection of the other user too: a user with
        # connections on both gateways, searching from one, is matched on both.
        c, d = await self.connect(1), await self.connect(0)
        d2 = await self.connect(1, session=d.session)
        await c.request({"type": "start_search"}, "searching", exact=True)
        await d.request({"type": "start_search"}, "searching", exact=True)
        f = await d.expect("matched", exact=True, conversation_id=lambda x: True, kind="random")
        await c.expect("matched", exact=True, conversation_id=f["conversation_id"], kind="random")
        await d2.expect("matched", exact=True, conversation_id=f["conversation_id"], kind="random")

    async def test_http_endpoints(self):
        for i in range(self.cluster.n_gateways if not self.cluster.external else 1):
            base = self.cluster.http_url(i)
            with self.subTest(gateway=i + 1):
                status, _, _ = http_get(base, "/healthz")
                self.assertEqual(status, 200)
                status, _, _ = http_get(base, "/readyz")
                self.assertEqual(status, 200)
                status, body, headers = http_get(base, "/metrics")
                self.assertEqual(status, 200)
                ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
                self.assertTrue(ctype.startswith("text/plain"), ctype)
                text = body.decode()
                # Prometheus text format: HELP/TYPE comments and `name{labels} value` samples.
                self.assertRegex(text, r"(?m)^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$")
                samples = [l for l in text.splitlines() if l and not l.startswith("#")]
                self.assertTrue(samples, text[:500])
                for line in samples:
                    self.assertRegex(line, r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfa]+( [0-9]+)?$")
                status, body, headers = http_get(base, "/")
                self.assertEqual(status, 200)
                ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
                self.assertTrue(ctype.startswith("text/html"), ctype)
                self.assertTrue(re.search(rb"(?i)<html|<!doctype html", body), body[:200])
                status, _, _ = http_get(base, "/no-such-page")
                self.assertEqual(status, 404)


if __name__ == "__main__":
    unittest.main()
