"""A gateway killed outright (SIGKILL, no goodbye): svc-presence stops hearing
its heartbeat, takes its users as gone, and after the reconnect grace their
random-chat partners get partner_disconnected. Short timers:
CHAT_GATEWAY_TTL_MS=2000, CHAT_RECONNECT_GRACE_MS=1000."""

import signal
import unittest

import cluster
from client import pair

CLUSTER = cluster.Cluster(gateways=2, name="gwdeath",
                          env={"CHAT_GATEWAY_TTL_MS": "2000", "CHAT_RECONNECT_GRACE_MS": "1000"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class GatewayDeathTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def test_killed_gateways_users_count_as_gone(self):
        self.cluster.skip_unless_local("kills a gateway")
        a, b = await self.connect(0), await self.connect(1)
        conv = await pair(a, b)
        self.cluster.kill("gateway2", signal.SIGKILL)
        try:
            # TTL 2 s + grace 1 s + sweeper ticks; bounded well above that.
            await a.expect("partner_disconnected", exact=True, conversation_id=conv, timeout=15)
            req = a.next_req()
            await a.send_text(conv, "anyone?", req=req)
            await a.expect_error("conversation_closed", req=req)
            # B is reported offline with a last_seen.
            req = a.next_req()
            await a.send({"type": "presence", "user_ids": [b.user_id], "req": req})
            f = await a.expect("presence", req=req)
            self.assertEqual(f["statuses"][0]["user_id"], b.user_id)
            self.assertEqual(f["statuses"][0]["status"], "offline")
            self.assertIsInstance(f["statuses"][0]["last_seen"], int)
        finally:
            self.cluster.restart("gateway2")
            self.cluster.wait_ready(1)
        # B comes back through the restarted gateway: told the chat ended by timeout.
        b2 = await self.connect(1, session=b.session)
        await b2.expect("chat_ended", exact=True, conversation_id=conv, by="timeout")


if __name__ == "__main__":
    unittest.main()
