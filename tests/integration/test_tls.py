"""The internal plane's mutual TLS: every internal listener of a cluster run
with tls+tcp:// addresses (each service replica's request, event and admin
sockets, each gateway's admin socket) refuses a plain-TCP peer, a TLS peer
without a client certificate and one whose certificate another CA signed,
and accepts one with a certificate of the cluster's CA (the control: the SP
header comes back). Then chat and chatctl work across the TLS plane, a
chatctl without a valid certificate cannot reach any process, and a dialer
refuses a listener whose certificate another CA signed (it never sends the
SP header to it, while it does to a listener with the cluster CA's)."""

import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import cluster
from client import connect

CLUSTER = cluster.Cluster(gateways=2, name="tls", replicas={"message": 2}, tls=True)
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)

# An SP (nng) connection begins with this 8-byte header from each side:
# 0x00 'S' 'P' 0x00, then the protocol id (req0 = 0x30, big-endian) and 0.
SP_REQ_HEADER = b"\x00SP\x00\x00\x30\x00\x00"
IO_TIMEOUT_S = 5


def internal_ports():
    """(process, address, host, port) of every internal listener."""
    out = []
    for name, (rep, pub) in CLUSTER.addr.items():
        out += [(name, "rep", rep), (name, "pub", pub)]
    out += [(name, "admin", a) for name, a in CLUSTER.admin_addr.items()]
    res = []
    for name, what, url in out:
        assert url.startswith("tls+tcp://"), url
        host, port = url[len("tls+tcp://"):].rsplit(":", 1)
        res.append((f"{name}/{what}", host, int(port)))
    return res


def sp_over(sock):
    """Sends a req0 SP header and reads the peer's: its 8 bytes, or what came
    before the peer closed (b"" / a partial header) within the bound."""
    sock.sendall(SP_REQ_HEADER)
    got = b""
    while len(got) < 8:
        try:
            chunk = sock.recv(8 - len(got))
        except (ssl.SSLError, OSError):
            break
        if not chunk:
            break
        got += chunk
    return got


def tls_context(cert_dir, kind="chatctl", with_cert=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(CLUSTER.tls_dir(), "ca.crt"))
    ctx.check_hostname = True
    if with_cert:
        ctx.load_cert_chain(os.path.join(cert_dir, f"{kind}.crt"), os.path.join(cert_dir, f"{kind}.key"))
    return ctx


def tls_attempt(host, port, ctx):
    """("handshake", err) when the TLS handshake failed, ("sp", header) when it
    completed and the SP exchange gave header (b"" when the peer hung up)."""
    raw = socket.create_connection((host, port), timeout=IO_TIMEOUT_S)
    try:
        tls = ctx.wrap_socket(raw, server_hostname="chat-internal")
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return "handshake", str(e)
    with tls:
        return "sp", sp_over(tls)


class TlsTest(unittest.IsolatedAsyncioTestCase):
    @classmethod
    def setUpClass(cls):
        CLUSTER.skip_unless_local("starts its own TLS cluster")
        cls.other = tempfile.mkdtemp(prefix="chat-it-tls-other-")
        subprocess.run([cluster.GEN_CERTS, cls.other], check=True, timeout=60)

    @classmethod
    def tearDownClass(cls):
        import shutil
        shutil.rmtree(cls.other, ignore_errors=True)

    def test_every_listener_accepts_the_clusters_certificate(self):
        ports = internal_ports()
        procs = sum(CLUSTER.replicas.values())  # each: rep, pub, admin; a gateway: admin
        self.assertEqual(len(ports), 3 * procs + CLUSTER.n_gateways, ports)
        ctx = tls_context(CLUSTER.tls_dir())
        for what, host, port in ports:
            with self.subTest(listener=what):
                kind, hdr = tls_attempt(host, port, ctx)
                self.assertEqual(kind, "sp", f"{what}: {hdr}")
                self.assertEqual(hdr[:4], b"\x00SP\x00", f"{what}: no SP header over TLS")

    def test_plain_tcp_is_refused_everywhere(self):
        for what, host, port in internal_ports():
            with self.subTest(listener=what):
                with socket.create_connection((host, port), timeout=IO_TIMEOUT_S) as s:
                    hdr = sp_over(s)
                self.assertNotEqual(hdr[:4], b"\x00SP\x00", f"{what} spoke SP over plain TCP")

    def test_no_client_certificate_is_refused_everywhere(self):
        ctx = tls_context(CLUSTER.tls_dir(), with_cert=False)
        for what, host, port in internal_ports():
            with self.subTest(listener=what):
                kind, hdr = tls_attempt(host, port, ctx)
                if kind == "sp":  # TLS 1.3 may finish the client side first
                    self.assertEqual(hdr, b"", f"{what} spoke SP without a client certificate")

    def test_certificate_of_another_ca_is_refused_everywhere(self):
        ctx = tls_context(self.other)
        for what, host, port in internal_ports():
            with self.subTest(listener=what):
                kind, hdr = tls_attempt(host, port, ctx)
                if kind == "sp":
                    self.assertEqual(hdr, b"", f"{what} spoke SP to another CA's certificate")

    async def test_chat_and_chatctl_over_tls(self):
        a = await connect(CLUSTER.ws_url(0))
        b = await connect(CLUSTER.ws_url(1))
        try:
            room = "tls-" + os.urandom(4).hex()
            fa = await a.request({"type": "join_room", "room": room}, "conversation")
            conv = fa["conversation_id"]
            await b.request({"type": "join_room", "room": room}, "conversation",
                            conversation_id=conv)
            await a.send_text(conv, "over tls", client_msg_id="c1")
            await a.expect_ack(conv, "c1", seq=1)
            await b.expect_message(conv, a.user_id, "over tls", seq=1)
        finally:
            await a.close()
            await b.close()
        doc = CLUSTER.chatctl_json("status")
        up = sorted(p["kind"] for p in doc["processes"] if p["reachable"] and p["ready"])
        want = sorted(["gateway"] * CLUSTER.n_gateways +
                      [k for k, n in CLUSTER.replicas.items() for _ in range(n)])
        self.assertEqual(up, want, doc)

    def test_chatctl_without_a_valid_certificate_reaches_nothing(self):
        # What an operator sees (the listeners' own refusal is what the raw
        # socket tests above prove; they fail when listeners stop verifying).
        env = CLUSTER.chatctl_env()
        env["CHAT_TLS_CERT"] = os.path.join(self.other, "chatctl.crt")
        env["CHAT_TLS_KEY"] = os.path.join(self.other, "chatctl.key")
        out = subprocess.run([os.path.join(CLUSTER.bin_dir, "chatctl"), "--json", "--timeout", "2",
                              "status"], env=env, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0, out.stdout)
        import json
        doc = json.loads(out.stdout)
        self.assertEqual([p["address"] for p in doc["processes"] if p["reachable"]], [], out.stdout)
        self.assertEqual(len(doc["processes"]), sum(CLUSTER.replicas.values()) + CLUSTER.n_gateways,
                         out.stdout)

    def fake_listener_sees(self, cert_dir, wait_s):
        """A TLS listener with cert_dir's svc-match certificate stands in as the
        match admin address while chatctl status runs: what each connection
        brought, "handshake failed" or the bytes the dialer sent (its SP header)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(cert_dir, "match.crt"), os.path.join(cert_dir, "match.key"))
        ctx.load_verify_locations(os.path.join(CLUSTER.tls_dir(), "ca.crt"))
        ctx.verify_mode = ssl.CERT_REQUIRED
        srv = socket.create_server(("127.0.0.1", 0))
        srv.settimeout(0.2)
        port, seen, stop = srv.getsockname()[1], [], threading.Event()

        def serve():
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except OSError:
                    continue
                conn.settimeout(IO_TIMEOUT_S)
                try:
                    with ctx.wrap_socket(conn, server_side=True) as tls:
                        got = b""
                        while len(got) < 8:
                            chunk = tls.recv(8 - len(got))
                            if not chunk:
                                break
                            got += chunk
                        seen.append(got)
                except (ssl.SSLError, OSError):
                    seen.append("handshake failed")

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        env = CLUSTER.chatctl_env()
        env["CHAT_MATCH_ADMIN_ADDRS"] = f"tls+tcp://127.0.0.1:{port}"
        try:
            # chatctl waits up to wait_s for an answer the fake never gives: time
            # for its handshakes also in a sanitizer build on a busy machine. It
            # is stopped as soon as the fake has seen its SP header.
            ctl = subprocess.Popen([os.path.join(CLUSTER.bin_dir, "chatctl"), "--json",
                                    "--timeout", str(wait_s * 1000), "status"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + wait_s + 5
            while ctl.poll() is None and SP_REQ_HEADER not in seen and time.monotonic() < deadline:
                time.sleep(0.02)
            ctl.kill()
            ctl.wait()
        finally:
            stop.set()
            t.join(timeout=10)
            srv.close()
        return seen

    def test_dialer_refuses_a_listener_of_another_ca(self):
        good = self.fake_listener_sees(CLUSTER.tls_dir(), 10)
        self.assertIn(SP_REQ_HEADER, good, "control: the dialer spoke SP to the cluster CA's listener")
        bad = self.fake_listener_sees(self.other, 3)
        self.assertTrue(bad, "the dialer never tried the fake listener")
        self.assertNotIn(SP_REQ_HEADER, bad, f"the dialer spoke SP to another CA's listener: {bad}")


if __name__ == "__main__":
    unittest.main()
