"""Runs the browser test (tests/browser/run.sh, owned by the web client) against a
cluster started here. The script gets the gateway's base URL in CHAT_TEST_URL
(http://127.0.0.1:PORT/) and must exit 0."""

import os
import shutil
import subprocess
import unittest

import cluster

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "browser", "run.sh")

CLUSTER = cluster.Cluster(gateways=1, name="browser")


def setUpModule():
    if not os.path.exists(SCRIPT):
        raise unittest.SkipTest("tests/browser/run.sh does not exist")
    if not (shutil.which("chromium") or os.path.exists("/usr/bin/chromium")):
        raise unittest.SkipTest("chromium is not installed")
    CLUSTER.start()


def tearDownModule():
    CLUSTER.stop()


class BrowserTest(unittest.TestCase):
    def test_browser_script(self):
        env = dict(os.environ)
        env["CHAT_TEST_URL"] = CLUSTER.http_url(0) + "/"
        r = subprocess.run(["bash", SCRIPT], env=env, cwd=os.path.dirname(SCRIPT),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise AssertionError(f"tests/browser/run.sh exited {r.returncode}\n--- stdout ---\n"
                                 f"{r.stdout[-6000:]}\n--- stderr ---\n{r.stderr[-6000:]}"
                                 + CLUSTER.logs_report())


if __name__ == "__main__":
    unittest.main()
