"""Session tokens expire after CHAT_SESSION_TTL_S (here 2 s)."""

import asyncio
import unittest

import cluster
from client import connect

CLUSTER = cluster.Cluster(gateways=1, name="expiry", env={"CHAT_SESSION_TTL_S": "2"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class ExpiryTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def test_expired_token_is_unauthorized_then_4401(self):
        a = await self.connect()
        r = await self.connect(session=a.session)      # still valid right away
        self.assertEqual(r.user_id, a.user_id)
        # Expiry is a matter of wall time: nothing to await but the clock.
        await asyncio.sleep(3.2)
        c = await connect(self.cluster.ws_url(), session=a.session, wait_connected=False)
        self._clients.append(c)
        await c.expect_error("unauthorized")
        await c.expect_close(4401)


if __name__ == "__main__":
    unittest.main()
