"""chat-bench smoke test: a few seconds of each mode against a test cluster
(CHAT_RATE_PER_MIN=0), checking its JSON for correctness, not speed: zero
lost, zero duplicates, zero reordered, every send answered, every session
resumed. Also the tool's own contract: clear exit codes for bad flags and an
unreachable server. chat-bench comes from $CHAT_BIN_DIR like the services."""

import json
import os
import shutil
import subprocess
import unittest

import cluster

# Capacity, not limits (as bench/run.sh): no send, frame, request or connection limit.
CLUSTER = cluster.Cluster(gateways=2, name="bench",
                          env={"CHAT_RATE_PER_MIN": "0", "CHAT_FRAME_RATE_PER_S": "0",
                               "CHAT_OPS_RATE_PER_MIN": "0", "CHAT_CONN_RATE_PER_S": "0"})
setUpModule, tearDownModule = cluster.module_fixtures(CLUSTER)

RUN_TIMEOUT_S = 120


def bench_path():
    bin_dir = os.environ.get("CHAT_BIN_DIR")
    path = os.path.join(bin_dir, "chat-bench") if bin_dir else shutil.which("chat-bench")
    if not path or not os.access(path, os.X_OK):
        raise unittest.SkipTest("chat-bench not built (set CHAT_BIN_DIR)")
    return path


class BenchSmokeTest(unittest.TestCase):
    def run_bench(self, *args, expect_rc=0):
        """Runs chat-bench MODE ... --json -q; returns its JSON (or the process for rc != 0)."""
        p = subprocess.run([bench_path(), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        if p.returncode != expect_rc:
            self.fail(f"chat-bench {' '.join(args)}: exit {p.returncode}, wanted {expect_rc}\n"
                      f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}")
        if expect_rc != 0:
            return p
        try:
            return json.loads(p.stdout)
        except ValueError:
            self.fail(f"chat-bench printed no JSON: {p.stdout[-2000:]!r}")

    def assert_clean_connections(self, j, n):
        self.assertEqual(j["workers_lost"], 0, j)
        self.assertFalse(j["interrupted"], j)
        self.assertGreaterEqual(j["connections"]["ok"], n, j)
        self.assertEqual(j["connections"]["failed"], 0, j)
        self.assertEqual(j["connections"]["dropped"], 0, j)

    def assert_chat_correct(self, j, pairs):
        self.assert_clean_connections(j, 2 * pairs)
        self.assertEqual(j["pairs"], pairs, j)
        self.assertEqual(j["pair_failures"], 0, j)
        self.assertGreater(j["sent"], 0, j)
        self.assertEqual(j["lost"], 0, j)
        self.assertEqual(j["duplicates"], 0, j)
        self.assertEqual(j["reordered"], 0, j)
        self.assertEqual(j["unanswered"], 0, j)
        self.assertEqual(j["acked"], j["sent"], j)
        self.assertEqual(j["delivered"], j["acked"], j)
        self.assertEqual(j["delivered_unacked"], 0, j)
        self.assertIs(j["drain_complete"], True, j)
        self.assertEqual(j["foreign"], 0, j)
        self.assertEqual(j["errors"], {}, j)
        self.assertEqual(j["delivery_ms"]["count"], j["delivered"], j)
        self.assertEqual(j["ack_ms"]["count"], j["acked"], j)
        # The gateways' side of the same promise, from their /metrics.
        g = j["gaps"]
        self.assertEqual(sorted(g), ["catchups", "closed", "event_batches_lost", "filled_messages",
                                     "fills", "held", "open_ms_max_since_start",
                                     "open_ms_mean"], j)
        self.assertEqual(g["event_batches_lost"], 0, j)
        self.assertTrue(all(isinstance(v, (int, float)) and v >= 0 for v in g.values()), g)

    def test_chat(self):
        j = self.run_bench("chat", "--url", CLUSTER.ws_url(0), "--pairs", "20", "--rate", "20",
                           "--duration", "3", "--drain", "15", "--json", "-q")
        self.assert_chat_correct(j, 20)
        self.assertEqual(j["config"]["conv"], "random")

    def test_cut_drain_is_flagged(self):
        # No drain at all: whatever is in flight when sending stops is not
        # answered yet, and the report must say so rather than call it lost.
        j = self.run_bench("chat", "--url", CLUSTER.ws_url(0), "--pairs", "20", "--rate", "50",
                           "--duration", "2", "--drain", "0", "--json", "-q")
        in_flight = j["unanswered"] + j["lost"] + j["delivered_unacked"]
        self.assertIs(j["drain_complete"], in_flight == 0, j)

    def test_chat_across_gateways_and_processes(self):
        # Pairs span both gateways; two processes pair under the shared lock and
        # their results are merged by the parent.
        urls = f"{CLUSTER.ws_url(0)},{CLUSTER.ws_url(1 if not CLUSTER.external else 0)}"
        j = self.run_bench("chat", "--url", urls, "--pairs", "16", "--rate", "15", "--procs", "2",
                           "--threads", "2", "--duration", "3", "--drain", "15", "--json", "-q")
        self.assert_chat_correct(j, 16)

    def test_match(self):
        j = self.run_bench("match", "--url", CLUSTER.ws_url(0), "--conns", "40", "--duration", "2",
                           "--json", "-q")
        self.assert_clean_connections(j, 40)
        self.assertGreater(j["matches"], 0, j)
        # One sample per matched user; a match at the very end of the window
        # may be counted for one of its users only.
        self.assertIn(j["time_to_match_ms"]["count"], (2 * j["matches"], 2 * j["matches"] + 1), j)
        self.assertEqual(j["errors"], {}, j)

    def test_idle(self):
        args = ["idle", "--url", CLUSTER.ws_url(0), "--conns", "200", "--duration", "1", "--json", "-q"]
        if not CLUSTER.external:
            args += ["--gateway-pid", str(CLUSTER.procs["gateway1"].pid)]
        j = self.run_bench(*args)
        self.assert_clean_connections(j, 200)
        self.assertEqual(j["held"], 200, j)
        if not CLUSTER.external:
            self.assertIsNotNone(j["gateway_rss_per_conn_kib"], j)

    def test_storm(self):
        j = self.run_bench("storm", "--url", CLUSTER.ws_url(0), "--conns", "200", "--duration", "30",
                           "--jitter-ms", "500", "--json", "-q")
        self.assertEqual(j["dropped"], 200, j)
        self.assertEqual(j["resumed"], 200, j)
        self.assertEqual(j["not_resumed"], 0, j)
        self.assertEqual(j["wrong_user"], 0, j)
        self.assertIsNotNone(j["all_resumed_s"], j)
        self.assertEqual(j["errors"], {}, j)

    def test_bad_flag_and_unreachable_server(self):
        p = self.run_bench("chat", "--pairs", "many", expect_rc=2)
        self.assertIn("--pairs", p.stderr)
        p = self.run_bench("dance", expect_rc=2)
        self.assertIn("unknown mode", p.stderr)
        port = cluster.free_port()  # nobody listens there
        p = self.run_bench("idle", "--url", f"ws://127.0.0.1:{port}/ws", "--conns", "1", expect_rc=3)
        self.assertIn("cannot reach", p.stderr)
        self.assertIn("refused", p.stderr.lower())


if __name__ == "__main__":
    unittest.main()
