#!/usr/bin/env python3
"""Writes bench/run.sh's results into BENCHMARKS.md.

Reads the point files of one run (chat-bench JSON, pgbench results, CPU
deltas, machine facts, the commands) and replaces the part of the output
file between the results markers; everything outside them (the hand-written
introduction and analysis) is kept. Creates the file if it does not exist.
"""

import argparse
import json
import os
import sys

BEGIN = "<!-- results:begin: written by bench/run.sh, edits inside are overwritten -->"
END = "<!-- results:end -->"

TARGETS = {
    "durable_ratio": 0.40,      # of the multi-row ceiling, every acked delivered
    "delivery_p99_ms": 20.0,    # at 5,000 msg/s
    "idle_kib": 4.0,            # resident per idle connection
    "one_gateway": 19000,
    "machine": 60000,
    "matches_per_s": 10000,
    "storm_conns": 10000,
    "storm_s": 30.0,
}

PROCS = ["gateway1", "gateway2", "gateway3", "gateway4", "svc-message", "svc-message.2", "svc-match", "svc-presence",
         "postgresql", "redis"]


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def lat(h):
    if not h or not h.get("count"):
        return "–"
    return f"{h['p50']:.1f} / {h['p90']:.1f} / {h['p99']:.1f} / {h['max']:.1f}"


def errors_text(d):
    if not d:
        return "none"
    return ", ".join(f"{k} {v:,}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))


class Run:
    def __init__(self, points_dir):
        self.dir = points_dir
        self.machine = load(os.path.join(points_dir, "machine.json"), {})
        self.points = {}
        for name in os.listdir(points_dir):
            if name.endswith(".meta.json"):
                p = name[: -len(".meta.json")]
                self.points[p] = {
                    "meta": load(os.path.join(points_dir, name), {}),
                    "json": load(os.path.join(points_dir, p + ".json")),
                    "cpu": load(os.path.join(points_dir, p + ".cpu.json"), {}),
                    "order": load(os.path.join(points_dir, p + ".order.json"), {}),
                    "kill": load(os.path.join(points_dir, p + ".kill.json")),
                }
        self.ceil = {}
        for name in ("ceiling_single", "ceiling_multi"):
            c = load(os.path.join(points_dir, name + ".ceiling.json"))
            if c:
                c["cpu"] = load(os.path.join(points_dir, name + ".cpu.json"), {})
                self.ceil[name] = c

    def point(self, name):
        p = self.points.get(name)
        return (p or {}).get("json")

    def cpu_row(self, name, cpu, wall, bench_cpu, load1=None):
        cells = []
        total = 0.0
        for proc in PROCS:
            c = cpu.get(proc)
            if c is None:
                cells.append("–")
                continue
            cells.append(f"{c['pct']:.0f}")
            total += c["pct"]
        if bench_cpu is not None and wall:
            pct = 100 * bench_cpu / wall
            cells.append(f"{pct:.0f}")
            total += pct
        else:
            cells.append("–")
        machine = cpu.get("machine", {}).get("pct")
        others = f"{max(0.0, machine - total):.0f}" if machine is not None else "–"
        load = f"{load1:.1f}" if load1 is not None else "–"
        return f"| {name} | {wall:.1f} | " + " | ".join(cells) + f" | **{total:.0f}** | {others} | {load} |"


def chat_points(run):
    return sorted((n for n in run.points if n.startswith("chat")), key=lambda n: (
        (run.point(n) or {}).get("offered_per_s", 0), n))


def targets(run, out):
    t = TARGETS
    multi = run.ceil.get("ceiling_multi", {}).get("rows_per_s")
    rows = []

    # 1. durable throughput: the best chat point where every acked message was delivered
    best = None
    for n in chat_points(run):
        j = run.point(n)
        if j and j.get("lost", 1) == 0 and j.get("acked", 0) > 0 and j.get("drain_complete") is not False:
            if best is None or j["acked_per_s"] > best[1]["acked_per_s"]:
                best = (n, j)
    if best and multi:
        ratio = best[1]["acked_per_s"] / multi
        verdict = "met" if ratio >= t["durable_ratio"] else \
            f"missed by {100 * (t['durable_ratio'] - ratio):.1f} points ({ratio / t['durable_ratio']:.0%} of the target)"
        rows.append(("durable messages ≥ 40 % of the multi-row ceiling, every acked one delivered",
                     f"{best[1]['acked_per_s']:,.0f} msg/s acked (point {best[0]}, lost 0) = "
                     f"**{100 * ratio:.1f} %** of {multi:,.0f} rows/s", verdict))
    else:
        rows.append(("durable messages ≥ 40 % of the multi-row ceiling", "no chat point without loss", "not measured"))

    # 2. delivery p99 at 5,000 msg/s
    p5k = None
    for n in chat_points(run):
        j = run.point(n)
        if j and abs(j.get("offered_per_s", 0) - 5000) < 1 and n.startswith("chat_r"):
            p5k = (n, j)
            break
    if p5k:
        p99 = p5k[1]["delivery_ms"]["p99"]
        ok = p99 <= t["delivery_p99_ms"] and p5k[1]["delivered_per_s"] >= 0.95 * 5000
        rows.append(("delivery p99 ≤ 20 ms at 5,000 msg/s",
                     f"p99 {p99:,.1f} ms at {p5k[1]['delivered_per_s']:,.0f} msg/s delivered (point {p5k[0]})",
                     "met" if ok else f"missed: {p99 / t['delivery_p99_ms']:.1f}× the bound"))

    # 3-4. idle
    j1 = run.point("idle_1gw")
    if j1:
        kib = j1.get("gateway_rss_per_conn_kib")
        rows.append(("idle connection ≤ 4 KiB resident (gateway)", f"{fmt(kib, 2)} KiB per connection",
                     "met" if kib is not None and kib <= t["idle_kib"] else
                     (f"missed by {kib - t['idle_kib']:.2f} KiB ({kib / t['idle_kib']:.0%} of the bound)"
                      if kib is not None else "not measured")))
        held = j1.get("held", 0)
        rows.append(("one gateway holds ≥ 19,000", f"{held:,} held, {j1['connections']['failed']:,} failed",
                     "met" if held >= t["one_gateway"] else f"missed by {t['one_gateway'] - held:,}"))
    j4 = run.point("idle_4gw")
    if j4:
        held = j4.get("held", 0)
        rows.append(("the machine holds ≥ 60,000 (several gateways, several chat-bench processes)",
                     f"{held:,} held over {len(j4['config']['urls'])} gateways, "
                     f"{j4['connections']['failed']:,} failed; {fmt(j4.get('gateway_rss_per_conn_kib'), 2)} KiB each",
                     "met" if held >= t["machine"] else f"missed by {t['machine'] - held:,}"))
    jm = run.point("match")
    if jm:
        mps = jm.get("matches_per_s", 0)
        rows.append(("≥ 10,000 matches/s", f"{mps:,.0f} matches/s",
                     "met" if mps >= t["matches_per_s"] else f"missed: {mps / t['matches_per_s']:.1%} of the target"))
    js = run.point("storm")
    if js:
        allr = js.get("all_resumed_s")
        ok = js.get("dropped", 0) >= t["storm_conns"] and allr is not None and allr <= t["storm_s"] \
            and js.get("not_resumed", 1) == 0
        rows.append(("storm of 10,000 reconnects all resumed within 30 s, none lost",
                     f"{js.get('dropped', 0):,} dropped, {js.get('resumed', 0):,} resumed "
                     f"({'all in ' + fmt(allr, 2) + ' s' if allr is not None else 'NOT all'}), "
                     f"{js.get('not_resumed', 0):,} not resumed",
                     "met" if ok else "missed"))
    out.append("### Targets (2-core machine)\n")
    out.append("| target | measured | verdict |")
    out.append("|---|---|---|")
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    out.append("")


def section_machine(run, out, args):
    m = run.machine
    out.append(f"Run of {m.get('date', '?')}, commit `{m.get('git_commit', '?')}`"
               f"{' (with uncommitted changes)' if m.get('git_dirty', '0') not in ('', '0') else ''}, "
               f"bench/run.sh{' --quick (figures not meaningful)' if args.quick else ''}, "
               f"{args.total_s // 60} min {args.total_s % 60} s in all.\n")
    out.append("### Machine and versions\n")
    out.append("| | |")
    out.append("|---|---|")
    for k, label in (("nproc", "cores (nproc)"), ("cpu_model", "CPU"), ("mem_total", "memory"),
                     ("os", "OS"), ("kernel", "kernel"), ("open_files", "open files per process"),
                     ("postgresql", "PostgreSQL"), ("pg_settings", "PostgreSQL settings"),
                     ("redis", "Redis"), ("libwebsockets", "libwebsockets"), ("nng", "nng"),
                     ("protobuf_c", "protobuf-c"), ("hiredis", "hiredis"), ("cc", "compiler"),
                     ("env_overrides", "CHAT_* settings changed from their defaults (besides CHAT_RATE_PER_MIN=0)"),
                     ("load_before", "load average before the run"),
                     ("load_after", "load average after the run")):
        if m.get(k) not in (None, ""):
            out.append(f"| {label} | {m[k]} |")
    out.append("")


def section_ceiling(run, out):
    out.append("### The ceiling: PostgreSQL alone, same machine, same settings\n")
    out.append("pgbench INSERTs into the project's own `messages` table (schema created by svc-message's "
               "migration in a separate database), `synchronous_commit=on`.\n")
    out.append("| point | rows per transaction | clients | transactions/s | **rows/s** | PostgreSQL CPU (% of one core) |")
    out.append("|---|---|---|---|---|---|")
    for name in ("ceiling_single", "ceiling_multi"):
        c = run.ceil.get(name)
        if not c:
            continue
        pg = c["cpu"].get("postgresql", {}).get("pct")
        out.append(f"| {name} | {c['rows_per_tx']} | {c['clients']} | {c['tps']:,.0f} | "
                   f"**{c['rows_per_s']:,.0f}** | {fmt(pg, 0)} |")
    out.append("")


def section_chat(run, out):
    multi = run.ceil.get("ceiling_multi", {}).get("rows_per_s")
    single = run.ceil.get("ceiling_single", {}).get("rows_per_s")
    out.append("### chat: durable messages\n")
    out.append("Latencies in ms as p50 / p90 / p99 / max. Ratios are acked msg/s over the ceiling's rows/s.\n")
    out.append("| point | offered msg/s | sent/s | acked/s | delivered/s | **acked / multi-row ceiling** | "
               "acked / single-row ceiling | ack latency | delivery latency | lost | dup | reordered | "
               "unanswered | errors |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in chat_points(run):
        j = run.point(n)
        if not j:
            out.append(f"| {n} | chat-bench failed (see its log) |" + " |" * 12)
            continue
        rm = f"**{100 * j['acked_per_s'] / multi:.1f} %**" if multi else "–"
        rs = f"{100 * j['acked_per_s'] / single:.0f} %" if single else "–"
        cut = " (drain cut)" if j.get("drain_complete") is False else ""
        out.append(f"| {n} | {j['offered_per_s']:,.0f} | {j['sent_per_s']:,.0f} | {j['acked_per_s']:,.0f} | "
                   f"{j['delivered_per_s']:,.0f} | {rm} | {rs} | {lat(j['ack_ms'])} | {lat(j['delivery_ms'])} | "
                   f"{j['lost']:,}{cut} | {j['duplicates']:,} | {j['reordered']:,} | {j['unanswered']:,} | "
                   f"{errors_text(j.get('errors'))} |")
    out.append("")
    out.append("*drain cut*: the point's drain ended before every answer came, so its lost and unanswered "
               "counts include messages that were only late (such a point does not count for the "
               "durable-messages target).\n")
    out.append("chat-bench's own send lag (schedule → socket; a saturated load generator shows here): " +
               "; ".join(f"{n} p99 {run.point(n)['send_lag_ms']['p99']:.1f} ms"
                         for n in chat_points(run) if run.point(n)) + ".\n")


def section_order(run, out):
    """What the gateways' sequencers did per chat point, the replica points and the kill."""
    out.append("### chat: order and gaps, replicas, a replica killed\n")
    out.append("Per chat point, from the gateways' `/metrics` before and after it: messages held for a "
               "predecessor (arrived out of order), gap fills asked of svc-message, messages those fills "
               "delivered, gaps closed and how long they were open (mean / max ms), event batches lost. "
               "The client side of the same guarantees is in the table above: lost, dup and reordered as "
               "chat-bench saw them.\n")
    out.append("| point | held | fills | filled msgs | gaps closed | gap open ms (mean / max) | batches lost |")
    out.append("|---|---|---|---|---|---|---|")
    for n in chat_points(run):
        o = run.points[n].get("order") or {}
        if not o:
            out.append(f"| {n} | – | – | – | – | – | – |")
            continue
        closed = o.get("order_gaps_closed_total", 0)
        # The gateway reports gap times in seconds (order_gap_seconds_*); shown in ms.
        mean = o.get("order_gap_seconds_total", 0) * 1e3 / closed if closed else None
        out.append(f"| {n} | {o.get('order_held_total', 0):,.0f} | {o.get('order_fills_total', 0):,.0f} | "
                   f"{o.get('order_filled_messages_total', 0):,.0f} | {closed:,.0f} | "
                   f"{fmt(mean)} / {fmt(o.get('order_gap_seconds_max', 0) * 1e3, 0) if closed else '–'} | "
                   f"{o.get('event_batches_lost_total', 0):,.0f} |")
    out.append("")
    pairs = [(n[: -len("_2msg")], n) for n in chat_points(run) if n.endswith("_2msg")]
    for one, two in pairs:
        a, b = run.point(one), run.point(two)
        if a and b:
            out.append(f"Two svc-message replicas against one, same run, same offered load: {two} acked "
                       f"{b['acked_per_s']:,.0f} msg/s with delivery p99 {b['delivery_ms']['p99']:,.1f} ms; "
                       f"{one} acked {a['acked_per_s']:,.0f} msg/s with delivery p99 "
                       f"{a['delivery_ms']['p99']:,.1f} ms.\n")
    for n in chat_points(run):
        k, j = run.points[n].get("kill"), run.point(n)
        if k and j:
            out.append(f"Kill point {n}: {k['victim']} SIGKILLed under load, down {k['down_s']:.1f} s, then "
                       f"started again; every gateway was connected to it again "
                       f"{k['restart_to_whole_ms']:,.0f} ms after its start. Meanwhile: "
                       f"{j['acked']:,} acked, lost {j['lost']:,}, duplicates {j['duplicates']:,}, "
                       f"reordered {j['reordered']:,}, unanswered {j['unanswered']:,}, errors: "
                       f"{errors_text(j.get('errors'))}.\n")


def section_match_idle_storm(run, out):
    jm = run.point("match")
    if jm:
        out.append("### match\n")
        out.append("| users | searches | matches | **matches/s** | time to match p50 / p90 / p99 / max ms | "
                   "ends | end conflicts | errors |")
        out.append("|---|---|---|---|---|---|---|---|")
        out.append(f"| {jm['users']:,} | {jm['searches']:,} | {jm['matches']:,} | **{jm['matches_per_s']:,.0f}** | "
                   f"{lat(jm['time_to_match_ms'])} | {jm['ends']:,} | {jm['end_conflicts']:,} | "
                   f"{errors_text(jm.get('errors'))} |")
        out.append("")
    out.append("### idle connections\n")
    out.append("| point | gateways | chat-bench processes | held | failed | connect rate /s | connect p50 / p90 / p99 / max ms | "
               "**gateway KiB per connection** | gateway RSS before → held (KiB) | chat-bench KiB per connection |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for n in ("idle_1gw", "idle_4gw"):
        j = run.point(n)
        if not j:
            continue
        rss = ", ".join(f"{g['rss_before_kib']:,} → {g['rss_held_kib']:,}" for g in j.get("gateways", []))
        fails = j["connections"]["failed"]
        fk = j["connections"].get("failures") or {}
        out.append(f"| {n} | {len(j['config']['urls'])} | {j['config']['procs']} | {j['held']:,} | "
                   f"{fails:,}{' (' + errors_text(fk) + ')' if fails else ''} | "
                   f"{j['connections']['rate_per_s']:,.0f} | {lat(j['connect_ms'])} | "
                   f"**{fmt(j.get('gateway_rss_per_conn_kib'), 2)}** | {rss} | {fmt(j.get('bench_rss_per_conn_kib'), 2)} |")
    out.append("")
    js = run.point("storm")
    if js:
        out.append("### storm\n")
        out.append("| dropped | resumed | not resumed | wrong user | attempts | **all resumed after** | "
                   "time to resume p50 / p90 / p99 / max ms | failed attempts |")
        out.append("|---|---|---|---|---|---|---|---|")
        allr = js.get("all_resumed_s")
        out.append(f"| {js['dropped']:,} | {js['resumed']:,} | {js['not_resumed']:,} | {js['wrong_user']:,} | "
                   f"{js['attempts']:,} | **{fmt(allr, 2) + ' s' if allr is not None else 'not all'}** | "
                   f"{lat(js['resume_ms'])} | {errors_text(js.get('refusals'))} |")
        out.append("")


def section_cpu(run, out):
    out.append("### CPU per process during each point\n")
    out.append("% of one core over the point's wall time (from /proc/PID/stat utime+stime; PostgreSQL = "
               "postmaster and every backend; chat-bench = its own getrusage). Two cores = 200 %. "
               "*others* = the machine's busy time (/proc/stat) minus all of these: processes outside "
               "the benchmark (e.g. other test runs on a shared machine); *load* = 1-minute load average "
               "when the point started.\n")
    out.append("| point | wall s | " + " | ".join(PROCS) + " | chat-bench | total | others | load |")
    out.append("|---|---|" + "---|" * (len(PROCS) + 4))
    for name in ("ceiling_single", "ceiling_multi"):
        c = run.ceil.get(name)
        if c:
            out.append(run.cpu_row(name, c["cpu"], c["wall_s"], None))
    for n in sorted(run.points, key=lambda n: run.points[n]["meta"].get("order", 0)):
        p = run.points[n]
        j = p["json"] or {}
        bench = (j.get("bench") or {}).get("cpu_s")
        out.append(run.cpu_row(n, p["cpu"], p["meta"].get("wall_s", 0), bench, p["meta"].get("load1")))
    out.append("")


def section_commands(args, out, run):
    out.append("### Commands\n")
    out.append("Cluster: `bench/run.sh` (ports 19080-19083, 19201-19402, PostgreSQL 19432, Redis 19379; "
               "`CHAT_RATE_PER_MIN=0`, everything else at its default). Each point:\n")
    out.append("```")
    try:
        with open(args.commands) as f:
            for line in f:
                name, _, cmd = line.rstrip("\n").partition("\t")
                out.append(f"{name}: {cmd}")
    except OSError:
        pass
    out.append("```")
    out.append("")
    for n, p in sorted(run.points.items()):
        if p["meta"].get("rc", 0) != 0:
            out.append(f"- point {n}: chat-bench exited with status {p['meta']['rc']}.")
    out.append("")


def render(run, args):
    out = [BEGIN, "## Results", ""]
    section_machine(run, out, args)
    targets(run, out)
    section_ceiling(run, out)
    section_chat(run, out)
    section_order(run, out)
    section_match_idle_storm(run, out)
    section_cpu(run, out)
    section_commands(args, out, run)
    out.append(END)
    return "\n".join(out) + "\n"


TEMPLATE_HEAD = """# Benchmarks

Produced by `bench/run.sh` (see `bench/run.sh --help`): a local cluster on its
own ports, `chat-bench` (the load generator in `bench/chat-bench/`, speaking
only the public protocol) at a fixed set of points, and PostgreSQL's own
ceiling measured in the same run.

"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", required=True)
    ap.add_argument("--commands", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--total-s", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    run = Run(args.points)
    block = render(run, args)
    try:
        with open(args.out) as f:
            old = f.read()
    except OSError:
        old = TEMPLATE_HEAD + BEGIN + "\n" + END + "\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        new = head + block.rstrip("\n") + tail
    else:
        new = old.rstrip("\n") + "\n\n" + block
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    sys.exit(main())
