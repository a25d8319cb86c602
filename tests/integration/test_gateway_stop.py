"""A gateway stopped with SIGTERM says goodbye: it closes its WebSockets with
1001 and tells svc-presence, in one message, that all its connections are
gone. Their random-chat partners get partner_disconnected after the
reconnect grace, long before the heartbeat TTL would have noticed.
Timers: CHAT_GATEWAY_TTL_MS=60000 (so only the goodbye can explain a quick
notice), CHAT_RECONNECT_GRACE_MS=1000."""

import signal
import time
import unittest

import cluster
from client import pair

CLUSTER = cluster.Cluster(gateways=2, name="gwstop",
                          env={"CHAT_GATEWAY_TTL_MS": "60000", "CHAT_RECONNECT_GRACE_MS": "1000"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class GatewayStopTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def test_stopped_gateways_users_count_as_gone_at_once(self):
        self.cluster.skip_unless_local("stops a gateway")
        a, b = await self.connect(0), await self.connect(1)
        conv = await pair(a, b)
        # Two more of B's gateway, idle, so the goodbye covers several.
        others = [await self.connect(1) for _ in range(3)]
        t0 = time.monotonic()
        self.cluster.kill("gateway2", signal.SIGTERM)
        try:
            await b.expect_close(1001, timeout=10)
            await a.expect("partner_disconnected", exact=True, conversation_id=conv, timeout=15)
            self.assertLess(time.monotonic() - t0, 30, "the TTL (60 s), not the goodbye, did it")
            req = a.next_req()
            await a.send({"type": "presence", "user_ids": [b.user_id] + [o.user_id for o in others],
                          "req": req})
            f = await a.expect("presence", req=req)
            self.assertEqual([s["status"] for s in f["statuses"]], ["offline"] * 4)
        finally:
            self.cluster.restart("gateway2")
            self.cluster.wait_ready(1)
        b2 = await self.connect(1, session=b.session)
        await b2.expect("chat_ended", exact=True, conversation_id=conv, by="timeout")


if __name__ == "__main__":
    unittest.main()
