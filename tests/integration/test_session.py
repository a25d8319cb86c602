"""Connecting and resuming: the connected frame, session tokens, bad tokens."""

import hashlib
import hmac
import time
import unittest

import cluster
from client import connect, is_uuid4

CLUSTER = cluster.Cluster(gateways=1, name="session")
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)


class SessionTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def test_connected_frame_is_first_with_fresh_uuid4(self):
        a = await self.connect()   # connect() checks the exact frame (keys, uuid v4, resumed false)
        b = await self.connect()
        self.assertTrue(is_uuid4(a.user_id), a.welcome)
        self.assertEqual(a.welcome["resumed"], False)
        self.assertNotEqual(a.user_id, b.user_id)
        self.assertNotEqual(a.session, b.session)

    async def test_resume_gives_same_user_and_a_valid_fresh_token(self):
        a = await self.connect()
        await a.close()
        r = await self.connect(session=a.session)
        self.assertEqual(r.user_id, a.user_id)
        self.assertEqual(r.welcome["resumed"], True)
        # The fresh token works, and the older one stays valid until it expires.
        r2 = await self.connect(session=r.session)
        self.assertEqual(r2.user_id, a.user_id)
        r3 = await self.connect(session=a.session)
        self.assertEqual(r3.user_id, a.user_id)

    async def test_two_connections_of_one_user(self):
        a = await self.connect()
        a2 = await self.connect(session=a.session)
        self.assertEqual(a2.user_id, a.user_id)
        # Both connections stay usable; the user is online.
        for c in (a, a2):
            f = await c.request({"type": "presence", "user_ids": [a.user_id]}, "presence", exact=True,
                                statuses=lambda s: isinstance(s, list) and len(s) == 1)
            self.assertEqual(f["statuses"][0]["user_id"], a.user_id)
            self.assertEqual(f["statuses"][0]["status"], "online")

    async def _expect_unauthorized(self, token):
        c = await connect(self.cluster.ws_url(), session=token, wait_connected=False)
        self._clients.append(c)
        await c.expect_error("unauthorized")
        await c.expect_close(4401)

    async def test_bad_tokens_are_unauthorized_then_4401(self):
        for token in ("", "x", "not-a-token", "A" * 300, "%ff%fe", "%20", "..", "a.b.c", "v1....",
                      "v1.00000000-0000-4000-8000-000000000000.99999999999." + "0" * 64):
            with self.subTest(token=token):
                await self._expect_unauthorized(token)

    async def test_token_with_nul_byte_is_unauthorized(self):
        # A percent-encoded NUL is still just an invalid token for the protocol.
        await self._expect_unauthorized("%00")
        await self._expect_unauthorized("abc%00def")

    async def test_tampered_token_is_unauthorized(self):
        a = await self.connect()
        tok = a.session
        # Change each position class: start, middle, end (a flipped bit anywhere must fail).
        for i in sorted({0, len(tok) // 2, len(tok) - 2}):
            repl = "0" if tok[i] != "0" else "1"     # a different value also case-insensitively
            bad = tok[:i] + repl + tok[i + 1:]
            with self.subTest(pos=i):
                await self._expect_unauthorized(bad)
        await self._expect_unauthorized(tok[:-4])
        await self._expect_unauthorized(tok + "AAAA")

    def mint(self, user_id, expiry_s):
        """A token as the gateway makes them (svc-gateway/session_token.c):
        v1.<user>.<expiry unix s>.<hex HMAC-SHA256 with the session secret>."""
        if not self.cluster.session_secret:
            self.skipTest("external cluster: export CHAT_SESSION_SECRET to mint tokens")
        body = f"v1.{user_id}.{expiry_s}"
        mac = hmac.new(self.cluster.session_secret.encode(), body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    async def test_expired_token_is_unauthorized_then_4401(self):
        a = await self.connect()
        # Control: a token minted here with a future expiry is accepted, so the
        # refusal below is about the expiry and nothing else.
        ok = await self.connect(session=self.mint(a.user_id, int(time.time()) + 3600))
        self.assertEqual(ok.user_id, a.user_id)
        await self._expect_unauthorized(self.mint(a.user_id, int(time.time()) - 5))
        await self._expect_unauthorized(self.mint(a.user_id, 1))

    async def test_token_with_wrong_secret_is_unauthorized(self):
        a = await self.connect()
        body = f"v1.{a.user_id}.{int(time.time()) + 3600}"
        mac = hmac.new(b"some other secret", body.encode(), hashlib.sha256).hexdigest()
        await self._expect_unauthorized(f"{body}.{mac}")


if __name__ == "__main__":
    unittest.main()
