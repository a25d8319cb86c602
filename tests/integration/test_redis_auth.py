"""A Redis that requires a password (a managed Redis, the prod overlay's):
every service sends AUTH with the password from CHAT_REDIS_PASSWORD_FILE, so
matching, the send rate limit and presence work; a service given a wrong
password says so (event=redis_auth_failed), and no service logs a password."""

import os
import signal
import subprocess
import time
import unittest

import cluster

PASSWORD = "redis-auth-test-" + os.urandom(6).hex()
CLUSTER = cluster.Cluster(name="redisauth", redis_password=PASSWORD,
                          env={"CHAT_RATE_PER_MIN": "2"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class RedisAuthTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def asyncSetUp(self):
        await super().asyncSetUp()
        self.cluster.skip_unless_local("starts its own Redis with a password")

    async def test_matching_rate_limit_and_presence_with_a_password(self):
        a, b = await self.connect(), await self.connect()
        await a.request({"type": "start_search"}, "searching", exact=True)
        await b.request({"type": "start_search"}, "searching", exact=True)
        ma = await a.expect("matched")
        await b.expect("matched", conversation_id=ma["conversation_id"])
        conv = ma["conversation_id"]
        for n in (1, 2):  # the limit (2 a minute) is counted in Redis
            cmid = await a.send_text(conv, f"m{n}")
            await a.expect_ack(conv, cmid, seq=n)
            await b.expect_message(conv, a.user_id, f"m{n}", seq=n)
        req = a.next_req()
        await a.send_text(conv, "m3", req=req)
        await a.expect_error("rate_limited", req=req,
                             retry_after_ms=lambda v: isinstance(v, int) and 0 < v <= 60_000)
        for name, proc in self.cluster.procs.items():
            if name.startswith("svc-"):
                log = proc.log_text()
                self.assertNotIn("redis_auth_failed", log, name)
                self.assertNotIn("redis_unreachable", log, name)

    def test_wrong_password_is_reported_not_logged(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        wrong = "wrong-" + os.urandom(6).hex()
        port = cluster.free_port()
        env.update({"CHAT_REDIS_HOST": "127.0.0.1", "CHAT_REDIS_PORT": str(self.cluster.redis_port),
                    "CHAT_REDIS_PASSWORD": wrong,
                    "CHAT_PRESENCE_LISTEN": f"{self.cluster.scheme}127.0.0.1:{port}",
                    "CHAT_PRESENCE_PUB_LISTEN": f"{self.cluster.scheme}127.0.0.1:{cluster.free_port()}",
                    "CHAT_PRESENCE_ADMIN_LISTEN":
                        f"{self.cluster.scheme}127.0.0.1:{cluster.free_port()}",
                    "CHAT_PRESENCE_HTTP_LISTEN": "",
                    "CHAT_MATCH_ADDRS": self.cluster.addr["svc-match"][0],
                    "CHAT_MESSAGE_ADDRS": self.cluster.addr["svc-message"][0]})
        env.update(self.cluster.tls_env("presence"))
        log_path = os.path.join(self.cluster.tmp, "presence-wrong.log")
        with open(log_path, "w") as log:
            p = subprocess.Popen([os.path.join(self.cluster.bin_dir, "svc-presence")], env=env,
                                 stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            text = ""
            while "event=redis_auth_failed" not in text and time.monotonic() < deadline:
                time.sleep(0.05)
                with open(log_path) as f:
                    text = f.read()
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.assertIn("event=redis_auth_failed", text)
        self.assertNotIn(wrong, text)
        for name, proc in self.cluster.procs.items():
            if name != "redis":  # its own command line names it
                self.assertNotIn(PASSWORD, proc.log_text(), name)


if __name__ == "__main__":
    unittest.main()
