"""Discovery: every caller knows each service by one name ({svc}.chat.test,
as a Kubernetes headless Service would be) that resolves to its replicas,
through CHAT_HOSTS_FILE (the name source the test edits; DNS answers go
through the same code, lib/src/dialers.c). Replicas are added to and removed
from the name while users chat: a removed one is no longer asked, an added
one gets work within seconds, without restarting anybody."""

import asyncio
import signal

import cluster
from client import new_id, pair

CLUSTER = cluster.Cluster(gateways=2, replicas={"message": 2, "match": 2, "presence": 2},
                          named=True, name="discovery", env={"CHAT_RATE_PER_MIN": "0"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


def peers(i, service):
    return CLUSTER.metric(i, f'chat_gateway_backend_peers{{service="{service}"}}')


class DiscoveryTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    def setUp(self):
        self.cluster.skip_unless_local("edits the cluster's names and stops replicas")

    async def wait_peers(self, service, want, timeout=10):
        """Until both gateways have exactly `want` peers of service (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(peers(i, service) != want for i in range(2)):
            self.assertLess(loop.time(), deadline,
                            f"{service}: peers {[peers(i, service) for i in range(2)]}, want {want}")
            await asyncio.sleep(0.05)  # re-resolution is periodic: nothing to await

    async def wait_log(self, procs, text, timeout=10):
        """Until every process of procs has logged text (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(text not in self.cluster.procs[p].log_text() for p in procs):
            self.assertLess(loop.time(), deadline, f"{text!r} not logged by all of {procs}")
            await asyncio.sleep(0.05)  # polling logs: there is no event to await

    async def chat(self, a, b, conv, n, first_seq):
        for i in range(n):
            cmid = await a.send_text(conv, f"x{i}", client_msg_id=new_id())
            await a.expect_ack(conv, cmid, seq=first_seq + i, timeout=3)
            await b.expect_message(conv, a.user_id, f"x{i}", seq=first_seq + i, timeout=3)

    async def test_replicas_come_and_go(self):
        await self.wait_peers("message", 2)
        # 3 publishers per service name: message, match and presence, 2 each.
        await self.wait_peers("events", 6)
        a, b = await self.connect(gw=0), await self.connect(gw=1)
        conv = await pair(a, b)
        await self.chat(a, b, conv, 5, 1)

        # svc-message.2 leaves the name: the gateways drop it, and a stopped
        # svc-message.2 then costs nothing (no request waits on it).
        self.cluster.name_replicas("message", [0])
        await self.wait_peers("message", 1)
        await self.wait_peers("events", 5)
        rep2 = self.cluster.addr["svc-message.2"][0]
        await self.wait_log(self.cluster.service_procs("match"), f"peer_removed url={rep2}")
        with self.cluster.paused("svc-message.2"):
            await self.chat(a, b, conv, 10, 6)
            c, d = await self.connect(gw=1), await self.connect(gw=0)
            conv2 = await pair(c, d)  # svc-match asks svc-message by the name too
            await self.chat(c, d, conv2, 3, 1)

        # Swap: only svc-message.2 is named, then svc-message dies. The new one
        # took the work (requests and events) without a restart of anybody.
        self.cluster.name_replicas("message", [0, 1])
        await self.wait_peers("message", 2)
        await self.wait_peers("events", 6)
        self.cluster.name_replicas("message", [1])
        await self.wait_peers("message", 1)
        await self.wait_peers("events", 5)
        # svc-match calls svc-message too (a new chat's conversation).
        rep = self.cluster.addr["svc-message"][0]
        await self.wait_log(self.cluster.service_procs("match"), f"peer_removed url={rep}")
        self.cluster.kill("svc-message", signal.SIGKILL)
        await self.chat(a, b, conv, 10, 16)
        e, f = await self.connect(gw=0), await self.connect(gw=1)
        conv3 = await pair(e, f)
        await self.chat(e, f, conv3, 3, 1)

        # Back to two.
        self.cluster.restart("svc-message")
        self.cluster.name_replicas("message", [0, 1])
        await self.wait_peers("message", 2)
        await self.wait_peers("events", 6)
        await self.chat(a, b, conv, 10, 26)
        for x in (a, b, c, d, e, f):
            await x.no_frame(0.1)

