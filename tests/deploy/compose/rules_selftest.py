#!/usr/bin/python3
"""deploy.compose_rules_selftest: every rule of rules.py can fail.

DEFECTS below holds deliberate defects, each with the rule that must catch it.
Each one is applied to a fresh temporary copy of deploy/compose/ (the compose
file edited through python3-yaml, .env.example, .gitignore and haproxy.cfg by
exact text substitution); rules.py, run on that copy, must report its rule as
FAIL and every other rule as ok (but the ones an entry names in `also`). The
unmodified directory, and a copy whose compose file is only loaded and dumped
again, must pass every rule. A rule of rules.py with no defect here, or a
defect naming no rule, fails the self-test: a new rule cannot go unproved.

    tests/deploy/compose/rules_selftest.py [COMPOSE_DIR]   (default: deploy/compose)

A defect names its rule by a prefix of the rule's name (the line rules.py
prints), which must match exactly one rule. CHAT_BIN_DIR (ctest sets it) is
passed on; without it the --help rule cannot fail, and its defect is skipped.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import namedtuple

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SRC = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "deploy", "compose")
RULES = os.path.join(HERE, "rules.py")
LINE = re.compile(r"^(ok  |FAIL)  (.+)$")

Defect = namedtuple("Defect", "rule what mutate also needs", defaults=((), None))


class Copy:
    """A temporary copy of the compose directory, edited by one defect."""

    def __init__(self, path):
        self.path = path
        self._doc = None

    @property
    def doc(self):
        # Through JSON: the anchors' values become separate objects, so a
        # defect in one service's volumes or environment stays in that service.
        if self._doc is None:
            with open(self.file("docker-compose.yml")) as f:
                self._doc = json.loads(json.dumps(yaml.safe_load(f)))
        return self._doc

    def file(self, name):
        return os.path.join(self.path, name)

    def sub(self, name, old, new, count=1):
        """Replace old by new in a file; old must occur exactly count times."""
        assert name != "docker-compose.yml" or self._doc is None, "text and YAML edits mixed"
        with open(self.file(name)) as f:
            text = f.read()
        if text.count(old) != count:
            raise ValueError(f"{name}: {old!r} occurs {text.count(old)} times, wanted {count}")
        with open(self.file(name), "w") as f:
            f.write(text.replace(old, new))

    def save(self):
        if self._doc is not None:
            with open(self.file("docker-compose.yml"), "w") as f:
                yaml.safe_dump(self._doc, f, sort_keys=False, width=1 << 20)


def svc(c, name):
    return c.doc["services"][name]


def env(c, name):
    return svc(c, name)["environment"]


def certs_script(c, old, new):
    """A precise edit of the certs service's shell script (its command's last item)."""
    cmd = svc(c, "certs")["command"]
    if cmd[-1].count(old) != 1:
        raise ValueError(f"certs script: {old!r} occurs {cmd[-1].count(old)} times")
    cmd[-1] = cmd[-1].replace(old, new)


def put(d, key, value):
    d[key] = value


HEALTH = "every chat service has a healthcheck"
DATA = "PostgreSQL and Redis keep their data"

DEFECTS = [
    # Every other rule looks the services up by name, so a missing one also
    # fails those that read it: redis is read by two.
    Defect("every service the stack needs", "no redis service",
           lambda c: c.doc["services"].pop("redis"), also=(HEALTH, DATA)),
    Defect("every chat service, certs and chatctl is built", "chatctl runs image chat:dev",
           lambda c: put(svc(c, "chatctl"), "image", "chat:dev")),
    Defect("every chat service, certs and chatctl is built", "svc-match built from another Dockerfile",
           lambda c: put(svc(c, "svc-match")["build"], "dockerfile", "Dockerfile")),
    Defect("every chat service runs its program", "svc-presence run through sh -c",
           lambda c: put(svc(c, "svc-presence"), "command", ["sh", "-c", "svc-presence"])),
    Defect(HEALTH, "svc-match checks svc-message's port 7204",
           lambda c: put(svc(c, "svc-match")["healthcheck"], "test",
                         ["CMD", "chat-healthcheck", "http://127.0.0.1:7204/readyz"])),
    Defect(HEALTH, "svc-gateway's healthcheck disabled",
           lambda c: put(svc(c, "svc-gateway"), "healthcheck", {"disable": True})),
    Defect(HEALTH, "svc-message's healthcheck without retries",
           lambda c: svc(c, "svc-message")["healthcheck"].pop("retries")),
    Defect(HEALTH, "redis without a healthcheck", lambda c: svc(c, "redis").pop("healthcheck")),
    Defect("every long-running service restarts", "certs restarts on failure",
           lambda c: put(svc(c, "certs"), "restart", "on-failure")),
    Defect("every long-running service restarts", "postgres without restart",
           lambda c: svc(c, "postgres").pop("restart")),
    Defect("no container_name, hostname or fixed host port", "svc-gateway publishes 8081:8080",
           lambda c: put(svc(c, "svc-gateway"), "ports", ["8081:8080"])),
    Defect("no container_name, hostname or fixed host port", "svc-message has a container_name",
           lambda c: put(svc(c, "svc-message"), "container_name", "chat-message")),
    Defect("no container_name, hostname or fixed host port", "redis on the host's network",
           lambda c: put(svc(c, "redis"), "network_mode", "host")),
    Defect("the LB publishes exactly one port", "lb publishes its stats port too",
           lambda c: svc(c, "lb")["ports"].append("8404:8404")),
    Defect("the LB publishes exactly one port", "lb maps to container port 80",
           lambda c: put(svc(c, "lb"), "ports", ["${CHAT_HTTP_PORT:-8080}:80"])),
    Defect("the four chat services have replicas", "svc-gateway without deploy.replicas",
           lambda c: svc(c, "svc-gateway").pop("deploy")),
    Defect("the four chat services have replicas", "svc-match with 0 replicas",
           lambda c: put(svc(c, "svc-match")["deploy"], "replicas", 0)),
    Defect("every internal address is tls+tcp://", "svc-gateway's events from svc-match over tcp://",
           lambda c: put(env(c, "svc-gateway"), "CHAT_EVENTS_ADDRS", env(c, "svc-gateway")[
               "CHAT_EVENTS_ADDRS"].replace("tls+tcp://svc-match", "tcp://svc-match"))),
    Defect("every internal address is tls+tcp://", "chatctl reaches svc-match's admin over tcp://",
           lambda c: put(env(c, "chatctl"), "CHAT_MATCH_ADMIN_ADDRS", "tcp://svc-match:7303")),
    Defect("every internal address is tls+tcp://", "svc-message listens on plain tcp://",
           lambda c: put(env(c, "svc-message"), "CHAT_MESSAGE_LISTEN", "tcp://0.0.0.0:7201")),
    Defect("every chat service and chatctl set CHAT_TLS_CERT/KEY/CA", "svc-match presents message's key",
           lambda c: put(env(c, "svc-match"), "CHAT_TLS_KEY", "/certs/message.key")),
    Defect("every chat service and chatctl set CHAT_TLS_CERT/KEY/CA", "chatctl without CHAT_TLS_CA",
           lambda c: env(c, "chatctl").pop("CHAT_TLS_CA")),
    Defect("every chat service and chatctl mount the certs volume", "svc-presence mounts certs writable",
           lambda c: put(svc(c, "svc-presence"), "volumes", ["certs:/certs"])),
    Defect("every chat service and chatctl mount the certs volume", "chatctl mounts certs-ca",
           lambda c: svc(c, "chatctl")["volumes"].append("certs-ca:/ca:ro")),
    Defect("every chat service and chatctl mount the certs volume", "certs mounts certs read-only",
           lambda c: put(svc(c, "certs"), "volumes", ["certs-ca:/ca", "certs:/certs:ro"])),
    Defect("the certs service runs chat-gen-certs", "the keys installed 0644",
           lambda c: certs_script(c, "-m 0600", "-m 0644")),
    Defect("the certs service runs chat-gen-certs", "presence left out of the key loop",
           lambda c: certs_script(c, "gateway message match presence chatctl", "gateway message match chatctl")),
    Defect("the certs service runs chat-gen-certs", "run as 10001, keys installed 0644",
           lambda c: (put(svc(c, "certs"), "user", "10001"),
                      certs_script(c, "-o 10001 -g 10001 -m 0600", "-m 0644"))),
    Defect("the certs service runs chat-gen-certs", "no chat-gen-certs",
           lambda c: certs_script(c, "chat-gen-certs /ca\n", "")),
    Defect("the certs service runs chat-gen-certs", "certs runs as user 1000",
           lambda c: put(svc(c, "certs"), "user", "1000")),
    Defect("the certs service runs chat-gen-certs", "svc-gateway does not wait for certs",
           lambda c: put(svc(c, "svc-gateway")["depends_on"], "certs", {"condition": "service_started"})),
    Defect("every caller's address names a compose service", "svc-presence calls svc-match on 7399",
           lambda c: put(env(c, "svc-presence"), "CHAT_MATCH_ADDRS", "tls+tcp://svc-match:7399")),
    Defect("every caller's address names a compose service", "svc-gateway calls svc-message by an alias",
           lambda c: put(env(c, "svc-gateway"), "CHAT_MESSAGE_ADDRS", "tls+tcp://message:7201")),
    Defect("every caller's address names a compose service", "svc-match listens on 127.0.0.1",
           lambda c: put(env(c, "svc-match"), "CHAT_MATCH_LISTEN", "tls+tcp://127.0.0.1:7301")),
    Defect("every caller's address names a compose service", "svc-presence without an admin listener",
           lambda c: env(c, "svc-presence").pop("CHAT_PRESENCE_ADMIN_LISTEN")),
    Defect("every caller's address names a compose service", "svc-match HTTP on 127.0.0.1",
           lambda c: put(env(c, "svc-match"), "CHAT_MATCH_HTTP_LISTEN", "127.0.0.1:7304")),
    Defect("every caller's address names a compose service", "svc-gateway without CHAT_PRESENCE_ADDRS",
           lambda c: env(c, "svc-gateway").pop("CHAT_PRESENCE_ADDRS")),
    Defect("chatctl is a tools-profile service", "chatctl without the tools profile",
           lambda c: svc(c, "chatctl").pop("profiles")),
    Defect("chatctl is a tools-profile service", "chatctl's entrypoint through sh",
           lambda c: put(svc(c, "chatctl"), "entrypoint", ["sh", "-c", "chatctl"])),
    Defect(DATA, "redis without --appendonly yes",
           lambda c: put(svc(c, "redis"), "command", ["redis-server"])),
    Defect(DATA, "postgres data in a bind mount",
           lambda c: put(svc(c, "postgres"), "volumes", ["./pg:/var/lib/postgresql/data"])),
    Defect(DATA, "redis's volume not declared", lambda c: c.doc["volumes"].pop("redis-data")),
    Defect("svc-message waits for a healthy PostgreSQL", "svc-match waits only for svc-message to start",
           lambda c: put(svc(c, "svc-match")["depends_on"], "svc-message", {"condition": "service_started"})),
    Defect("svc-message waits for a healthy PostgreSQL", "svc-message does not wait for postgres",
           lambda c: svc(c, "svc-message")["depends_on"].pop("postgres")),
    Defect("no secret value inline", "CHAT_ADMIN_TOKEN inline in svc-gateway",
           lambda c: put(env(c, "svc-gateway"), "CHAT_ADMIN_TOKEN", "hunter2")),
    Defect("no secret value inline", "PGPASSWORD with an inline default",
           lambda c: put(env(c, "svc-message"), "PGPASSWORD", "${POSTGRES_PASSWORD:-hunter2}")),
    Defect("no secret value inline", "a password in svc-message's DSN",
           lambda c: put(env(c, "svc-message"), "CHAT_PG_DSN", "host=postgres user=chat password=hunter2")),
    Defect("no secret value inline", "svc-match without env_file .env",
           lambda c: svc(c, "svc-match").pop("env_file")),
    Defect("no secret value inline", ".env.example without CHAT_SESSION_SECRET",
           lambda c: c.sub(".env.example", "\nCHAT_SESSION_SECRET=change-me-openssl-rand-hex-32\n", "\n")),
    Defect("no secret value inline", ".env.example's placeholder inline in the compose file",
           lambda c: put(env(c, "svc-gateway"), "CHAT_WELCOME", "change-me-openssl-rand-hex-32")),
    Defect(".env.example lists every variable", ".env.example without CHAT_HTTP_PORT",
           lambda c: c.sub(".env.example", "\nCHAT_HTTP_PORT=8080\n", "\n")),
    Defect(".env.example lists every variable", "a real-looking CHAT_ADMIN_TOKEN in .env.example",
           lambda c: c.sub(".env.example", "CHAT_ADMIN_TOKEN=change-me-openssl-rand-hex-32",
                           "CHAT_ADMIN_TOKEN=3f1c9a0b7d2e4f6a8b0c1d2e3f4a5b6c")),
    Defect(".env.example lists every variable", ".env.example does not say how to make secrets",
           lambda c: c.sub(".env.example", "openssl rand", "a generator", count=4)),
    Defect(".env.example lists every variable", "certs does not refuse a placeholder POSTGRES_PASSWORD",
           lambda c: certs_script(c, " POSTGRES_PASSWORD; do", "; do")),
    Defect(".env.example lists every variable", "certs refuses only empty secrets, not change-me",
           lambda c: certs_script(c, '""|change-me*)', '"")')),
    Defect(".env.example's CHAT_* settings", "a CHAT_* setting no program knows",
           lambda c: c.sub(".env.example", "\nCHAT_LOG_LEVEL=info\n", "\nCHAT_LOG_LEVEL=info\nCHAT_NO_SUCH_SETTING=1\n"),
           needs="CHAT_BIN_DIR"),
    Defect(".env is git-ignored", ".gitignore names .env.local instead",
           lambda c: c.sub(".gitignore", "\n.env\n", "\n.env.local\n")),
    Defect(".env is git-ignored", "no .gitignore", lambda c: os.remove(c.file(".gitignore"))),
    Defect("the LB depends on the gateways", "lb without depends_on",
           lambda c: svc(c, "lb").pop("depends_on")),
    Defect("the LB depends on the gateways", "lb mounts another config",
           lambda c: put(svc(c, "lb"), "volumes", ["./other.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"])),
    Defect("haproxy.cfg finds every gateway replica", "a static server instead of server-template",
           lambda c: c.sub("haproxy.cfg", 'server-template gw "${CHAT_LB_SLOTS-10}" "${CHAT_LB_GATEWAYS-svc-gateway:8080}"',
                           "server gw1 svc-gateway:8080")),
    Defect("haproxy.cfg finds every gateway replica", "the gateways default to port 80",
           lambda c: c.sub("haproxy.cfg", "${CHAT_LB_GATEWAYS-svc-gateway:8080}", "${CHAT_LB_GATEWAYS-svc-gateway:80}")),
    Defect("haproxy.cfg finds every gateway replica", "CHAT_LB_DNS defaults to 8.8.8.8",
           lambda c: c.sub("haproxy.cfg", "${CHAT_LB_DNS-127.0.0.11:53}", "${CHAT_LB_DNS-8.8.8.8:53}")),
    Defect("haproxy.cfg finds every gateway replica", "the servers without resolvers",
           lambda c: c.sub("haproxy.cfg", " resolvers docker resolve-prefer", " resolve-prefer")),
    Defect("haproxy.cfg finds every gateway replica", "the public bind defaults to :80",
           lambda c: c.sub("haproxy.cfg", "${CHAT_LB_BIND-:8080}", "${CHAT_LB_BIND-:80}")),
    Defect("haproxy.cfg health-checks every gateway", "checks /healthz (a draining gateway stays in)",
           lambda c: c.sub("haproxy.cfg", "uri /readyz ", "uri /healthz ")),
    Defect("haproxy.cfg health-checks every gateway", "no option httpchk",
           lambda c: c.sub("haproxy.cfg", "    option httpchk\n", "")),
    Defect("haproxy.cfg health-checks every gateway", "expects any status",
           lambda c: c.sub("haproxy.cfg", "http-check expect status 200", "http-check expect rstatus .")),
    Defect("haproxy.cfg health-checks every gateway", "default-server without check",
           lambda c: c.sub("haproxy.cfg", "default-server check inter", "default-server inter")),
    Defect("haproxy.cfg keeps idle WebSockets open", "timeout tunnel 5m",
           lambda c: c.sub("haproxy.cfg", "timeout tunnel 1h", "timeout tunnel 5m")),
    Defect("haproxy.cfg keeps idle WebSockets open", "no timeout tunnel",
           lambda c: c.sub("haproxy.cfg", "    timeout tunnel 1h\n", "")),
    Defect("haproxy.cfg keeps idle WebSockets open", "timeout tunnel 600 (milliseconds)",
           lambda c: c.sub("haproxy.cfg", "timeout tunnel 1h", "timeout tunnel 600")),
    Defect("haproxy.cfg keeps idle WebSockets open", "the gateways' backend overrides it with 30s",
           lambda c: c.sub("haproxy.cfg", "    balance leastconn\n", "    balance leastconn\n    timeout tunnel 30s\n")),
]


def run_rules(path):
    """rules.py on path: (exit status, {rule name: ok}, output)."""
    r = subprocess.run([sys.executable, RULES, path], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    return r.returncode, {m[2]: m[1] == "ok  " for m in map(LINE.match, r.stdout.splitlines()) if m}, out


def first_problem(out, rule):
    """The first "- ..." line rules.py printed under rule's FAIL line."""
    lines = out.splitlines()
    i = lines.index(f"FAIL  {rule}")
    return lines[i + 1].strip() if i + 1 < len(lines) and lines[i + 1].startswith("        - ") else ""


def resolve(prefix, names):
    hits = [n for n in names if n.startswith(prefix)]
    if len(hits) != 1:
        raise LookupError(f"{prefix!r} names {len(hits)} rules of rules.py, wanted 1")
    return hits[0]


def on_copy(mutate):
    """rules.py's verdicts on a fresh copy of SRC with mutate applied."""
    with tempfile.TemporaryDirectory(prefix="compose-selftest-") as tmp:
        c = Copy(os.path.join(tmp, "compose"))
        shutil.copytree(SRC, c.path)
        mutate(c)
        c.save()
        return run_rules(c.path)


def try_defect(d, names):
    """(True, rules.py's complaint) when d's rule, and only it (and d.also), fails; else (False, why)."""
    rule = resolve(d.rule, names)
    allowed = {rule, *(resolve(a, names) for a in d.also)}
    rc, verdicts, out = on_copy(d.mutate)
    if set(verdicts) != set(names):
        return False, f"rules.py printed other rules:\n{out}"
    if verdicts[rule] or rc == 0:
        return False, "not caught: its rule still holds"
    others = sorted(n for n, ok in verdicts.items() if not ok and n not in allowed)
    if others:
        return False, "other rules fail too: " + "; ".join(others)
    return True, first_problem(out, rule)


def main():
    rc, base, out = run_rules(SRC)
    if rc != 0 or not base or not all(base.values()):
        print(f"SELF-TEST FAIL: {SRC} itself does not pass every rule:\n{out}")
        return 1
    names = list(base)
    bad = 0
    # The YAML load/dump the defects go through changes no verdict by itself.
    rc, trip, out = on_copy(lambda c: c.doc)
    if rc != 0 or trip != base:
        print(f"SELF-TEST FAIL: a copy with docker-compose.yml only loaded and dumped fails:\n{out}")
        bad += 1
    caught, skipped = 0, 0
    for d in DEFECTS:
        try:  # every defect names one rule (a renamed rule leaves its defects naming none)
            [resolve(r, names) for r in (d.rule, *d.also)]
        except LookupError as e:
            print(f"FAIL  {d.rule}: {d.what}: {e}")
            bad += 1
            continue
        if d.needs and not os.environ.get(d.needs):
            print(f"skip  {d.rule}: {d.what} (needs {d.needs})")
            skipped += 1
            continue
        try:
            ok, why = try_defect(d, names)
        except Exception as e:  # a defect that cannot be applied proves nothing
            ok, why = False, f"{type(e).__name__}: {e}"
        if not ok:
            print(f"FAIL  {d.rule}: {d.what}: {why}")
            bad += 1
        else:
            print(f"ok    {d.rule}: {d.what}\n        {why}")
            caught += 1
    for n in names:
        if not any(n.startswith(d.rule) for d in DEFECTS):
            print(f"FAIL  no defect in DEFECTS for the rule: {n}")
            bad += 1
    print(f"self-test: {len(names)} rules, {len(DEFECTS)} defects, {caught} caught"
          f"{f', {skipped} skipped' if skipped else ''}; {bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
