"""Metrics and health on every process, 2 gateways x 2 replicas of every service: each
process's /metrics passes `promtool check metrics`; /healthz and /readyz answer on the
services' own HTTP addresses; a real Prometheus (Debian's, as a plain process on loopback)
scrapes the whole cluster and its HTTP API gives back the series of the chat just had."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse

import cluster
from client import pair
from cluster import http_get

CLUSTER = cluster.Cluster(gateways=2, name="metrics",
                          replicas={"message": 2, "match": 2, "presence": 2})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
SCRAPE_S = 30  # bound on Prometheus's start and first scrapes of every target


def scrape(url):
    status, body, _ = http_get(url.rsplit("/metrics", 1)[0], "/metrics")
    assert status == 200, f"{url}: {status}"
    return body.decode()


class MetricsTest(cluster.ClusterTestCase):
    cluster = CLUSTER

    async def chat_a_little(self):
        a, b = await self.connect(0), await self.connect(1)
        conv = await pair(a, b)
        for i in range(3):
            cmid = await a.send_text(conv, f"m{i}")
            await a.expect_ack(conv, cmid, seq=i + 1)
            await b.expect_message(conv, a.user_id, f"m{i}", seq=i + 1)
        return a, b

    @unittest.skipUnless(PROMTOOL, "promtool (Debian: prometheus) not installed")
    async def test_promtool_accepts_every_process(self):
        self.cluster.skip_unless_local()
        a, b = await self.chat_a_little()
        urls = self.cluster.metrics_urls()
        self.assertEqual(len(urls), 2 + 6)
        for name, url in urls.items():
            text = scrape(url)
            out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                                 text=True, timeout=30)
            self.assertEqual((out.returncode, out.stdout + out.stderr), (0, ""),
                             f"promtool on {name}'s /metrics")
            self.assertIn("process_cpu_seconds_total ", text, name)
        # Per request type, by outcome, with latency histograms, in each service.
        for name in ("svc-message", "svc-match", "svc-presence"):
            text = scrape(urls[name])
            self.assertRegex(text, r'(?m)^chat_requests_total\{type="\w+",outcome="ok"\} [1-9]', name)
            self.assertRegex(text, r'(?m)^chat_request_duration_seconds_bucket\{type="\w+",'
                                   r'le="\+Inf"\} [1-9]', name)
        await a.close()
        await b.close()

    async def test_health_of_every_service(self):
        self.cluster.skip_unless_local()
        for name, addr in self.cluster.http_addr.items():
            base = f"http://{addr}"
            self.assertEqual(http_get(base, "/healthz")[:2], (200, b"ok\n"), name)
            self.assertEqual(http_get(base, "/readyz")[:2], (200, b"ready\n"), name)
            self.assertEqual(http_get(base, "/nothing")[0], 404, name)

    @unittest.skipUnless(PROMETHEUS, "prometheus (Debian: prometheus) not installed")
    async def test_prometheus_scrapes_the_cluster(self):
        self.cluster.skip_unless_local()
        a, b = await self.chat_a_little()
        prom = Prometheus(self.cluster)
        try:
            prom.start()
            targets = prom.wait_all_up(SCRAPE_S)
            self.assertEqual(len(targets), 8)
            # The messages just sent, as Prometheus stored them.
            sent = prom.query('sum(chat_requests_total{job="message",type="send",outcome="ok"})')
            self.assertGreaterEqual(float(sent[0]["value"][1]), 3)
            frames = prom.query('sum(chat_gateway_frames_in_total{job="gateway"})')
            self.assertGreaterEqual(float(frames[0]["value"][1]), 3)
            # One series per replica: the instance label tells them apart.
            up = prom.query('up{job="presence"}')
            self.assertEqual(sorted(r["metric"]["instance"] for r in up),
                             sorted(self.cluster.http_addr[n] for n in ("svc-presence", "svc-presence.2")))
            hist = prom.query('histogram_quantile(0.99, sum by (le) '
                              '(chat_request_duration_seconds_bucket{job="match"}))')
            self.assertEqual(len(hist), 1)
        finally:
            prom.stop()
            await a.close()
            await b.close()


class Prometheus:
    """A Prometheus of our own on a free loopback port, scraping every process once a second."""

    def __init__(self, cl):
        self.cl = cl
        self.dir = tempfile.mkdtemp(prefix="chat-it-prom-", dir=cl.tmp)
        self.port = cluster.free_port()
        self.proc = None

    def _config(self):
        jobs = {}
        for name, url in self.cl.metrics_urls().items():
            job = "gateway" if name.startswith("gateway") else name.split(".")[0][len("svc-"):]
            jobs.setdefault(job, []).append(urllib.parse.urlsplit(url).netloc)
        lines = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 900ms", "scrape_configs:"]
        for job, targets in sorted(jobs.items()):
            lines += [f"  - job_name: {job}", "    static_configs:",
                      f"      - targets: {json.dumps(sorted(targets))}"]
        path = os.path.join(self.dir, "prometheus.yml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start(self):
        cfg = self._config()
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        status, body, _ = http_get(url, "", timeout=5)
        assert status == 200, f"{path}: {status} {body[:200]}"
        doc = json.loads(body)
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, q):
        return self.api("query", query=q)["result"]

    def wait_all_up(self, timeout):
        """Every target scraped and up (bounded); returns the active targets."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited: " + self.tail()
            try:
                active = self.api("targets")["activeTargets"]
                last = [(t["labels"]["job"], t["health"], t.get("lastError")) for t in active]
                if len(active) == 8 and all(t["health"] == "up" for t in active):
                    # up is in the database once the next rule-free query sees it.
                    if len(self.query("up == 1")) == 8:
                        return active
            except (OSError, AssertionError, ValueError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"targets not all up after {timeout}s: {last}\n" + self.tail())

    def tail(self):
        try:
            with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()


if __name__ == "__main__":
    unittest.main()
