#!/usr/bin/env python3
"""A measurement, not a test: a purge of 1,000,000 expired rows under chat load.

Starts its own cluster (tests/integration/cluster.py, free loopback ports, a temp
dir), inserts N aged rows into one conversation with one INSERT ... SELECT
generate_series (seqs 1..N, the conversation's last_seq set to N), sets the
retention to 30 days and measures chat-bench's send (ack) and delivery latency
in a window before the purge and in a window while `retention run` purges.
Prints the purge's duration, rows/s, and the latencies.

    CHAT_BIN_DIR=build/bin bench/retention.py [--rows 1000000] [--pairs 50] [--rate 10]
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import cluster  # noqa: E402

DAY_MS = 86_400_000


def chatctl_run(c):
    """`chatctl --json retention run`: waits for the purge; its final document."""
    return c.chatctl_json("--timeout", "10000", "retention", "run", timeout=900)


def chat_bench(c, pairs, rate, duration):
    argv = [os.path.join(c.bin_dir, "chat-bench"), "chat", "--url", c.ws_url(0),
            "--pairs", str(pairs), "--rate", str(rate), "--duration", str(duration),
            "--conv", "dm", "--json", "--quiet"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
    if out.returncode != 0:
        raise SystemExit(f"chat-bench failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def lat(r, key):
    h = r.get(key) or {}
    return f"p50 {h.get('p50', float('nan')):.1f} ms, p99 {h.get('p99', float('nan')):.1f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--rate", type=float, default=10, help="msg/s per sender (both send)")
    ap.add_argument("--window", type=int, default=15, help="seconds of chat per window")
    args = ap.parse_args()
    os.environ.setdefault("CHAT_BIN_DIR", os.path.join(HERE, "..", "build", "bin"))
    c = cluster.Cluster(name="retention-bench", env={
        "CHAT_RATE_PER_MIN": "0", "CHAT_RETENTION_INTERVAL_S": "0"})
    c.start()
    try:
        t0 = time.monotonic()
        conv = c.psql("INSERT INTO conversations (kind, room, last_seq) VALUES "
                      f"(3, 'bench-old', {args.rows}) RETURNING id")[0]
        c.psql("INSERT INTO messages (conversation_id, seq, sender, client_msg_id, body, ts)"
               f" SELECT '{conv}', g, gen_random_uuid(), 'old-' || g, 'an old message',"
               f" (extract(epoch FROM now()) * 1000)::bigint - 40 * {DAY_MS}::bigint"
               f" FROM generate_series(1, {args.rows}) g")
        c.psql("ANALYZE messages")
        print(f"inserted {args.rows} aged rows in {time.monotonic() - t0:.1f} s", flush=True)
        c.psql("INSERT INTO msg_settings (key, value) VALUES ('retention_days', '30')"
               " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
        msgs = args.pairs * 2 * args.rate
        print(f"load: {args.pairs} DMs, both senders at {args.rate} msg/s = {msgs:.0f} msg/s",
              flush=True)
        before = chat_bench(c, args.pairs, args.rate, args.window)

        purge = {}

        def run_purge():
            time.sleep(2)  # the chat window is under way
            t = time.monotonic()
            doc = chatctl_run(c)
            purge["s"] = time.monotonic() - t
            purge["deleted"] = doc["deleted"]

        th = threading.Thread(target=run_purge)
        th.start()
        during = chat_bench(c, args.pairs, args.rate, args.window)
        th.join(timeout=600)
        left = c.psql(f"SELECT count(*) FROM messages WHERE conversation_id = '{conv}'")[0]
        s = purge.get("s", float("nan"))
        print(f"purge: {purge.get('deleted')} rows in {s:.1f} s = "
              f"{purge.get('deleted', 0) / s:,.0f} rows/s (rows left in it: {left}); "
              f"the {args.window} s chat window covered {min(s, args.window - 2):.1f} s of it")
        for name, r in (("before", before), ("during", during)):
            print(f"{name}: acked {r.get('acked')} of {r.get('sent')}, errors "
                  f"{r.get('errors')}; ack {lat(r, 'ack_ms')}; delivery {lat(r, 'delivery_ms')}")
    finally:
        c.stop_quietly()


if __name__ == "__main__":
    main()
