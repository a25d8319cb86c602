"""A process's memory as the fuzz and fault tests check it: resident size from
/proc, whether it runs under a sanitizer, and the bound on its growth."""

import re

RSS_SLACK = 64 << 20


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    return "libasan" in maps or "libtsan" in maps


def check_rss(test, log, name, pid, before, seed, slack=RSS_SLACK):
    """RSS after the run within slack of before. Not under ASan or TSan: ASan keeps
    freed memory in its quarantine (256 MiB) and its allocator's free lists, TSan shadows
    it (a 20 s run measured +384 MiB in svc-message with no leak); there LeakSanitizer's
    report at teardown (cluster.stop) is the leak check."""
    after = rss(pid)
    if sanitized(pid):
        log(f"{name} RSS before {before >> 20} MiB, after {after >> 20} MiB (sanitizer build: "
            "not bounded, LeakSanitizer checks at teardown)")
        return
    log(f"{name} RSS before {before >> 20} MiB, after {after >> 20} MiB (bound +{slack >> 20} MiB)")
    test.assertLessEqual(after - before, slack,
                         f"{name} RSS grew {(after - before) >> 20} MiB (seed {seed})")
