#!/usr/bin/python3
"""deploy.compose_rules: deploy/compose/ follows the project's rules, one by one.

Reads docker-compose.yml (python3-yaml; the x- anchors and << merges resolved
as compose resolves them), .env.example, .gitignore and haproxy.cfg, and checks
each rule separately: every failing rule is reported (FAIL: what, where, why),
not only the first. Exit status 0 when every rule holds.

    tests/deploy/compose/rules.py [COMPOSE_DIR]     (default: deploy/compose)

With CHAT_BIN_DIR (the build's bin dir; ctest sets it) the CHAT_* names of
.env.example are also checked against the programs' --help.
"""

import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DIR = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "deploy", "compose")

# Service -> its kind (certificate name, variable prefix) and the port of its
# health endpoint (services: CHAT_<KIND>_HTTP_LISTEN, the gateway: its own port).
CHAT = {"svc-message": "message", "svc-match": "match", "svc-presence": "presence",
        "svc-gateway": "gateway"}
ONE_SHOT = ("certs", "chatctl")         # the other services built from the image
IMAGE = "chat:latest"
BUILD = {"context": "../..", "dockerfile": "deploy/images/Dockerfile"}
LB = "lb"
LB_PORT = 8080
CERTS_DIR = "/certs"
CHAT_UID = 10001
SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|PASS)$|^PGPASSWORD$")
NNG_VAR = re.compile(r"^CHAT_[A-Z]+_(LISTEN|PUB_LISTEN|ADMIN_LISTEN|ADDRS|ADMIN_ADDRS)$|^CHAT_EVENTS_ADDRS$")

results = []  # (ok, rule, detail)


def rule(name):
    def wrap(fn):
        try:
            problems = fn() or []
        except Exception as e:  # a rule that cannot even be evaluated fails, saying why
            problems = [f"{type(e).__name__}: {e}"]
        results.append((not problems, name, problems))
        return fn
    return wrap


def read(name):
    with open(os.path.join(DIR, name)) as f:
        return f.read()


RAW = read("docker-compose.yml")
DOC = yaml.safe_load(RAW)
SERVICES = DOC.get("services") or {}
ENV_EXAMPLE = {}
for line in read(".env.example").splitlines():
    line = line.strip()
    if line and not line.startswith("#"):
        k, sep, v = line.partition("=")
        ENV_EXAMPLE[k.strip()] = v if sep else None


def env_of(svc):
    """A service's environment as a dict (the list form too)."""
    env = SERVICES[svc].get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def env_files(svc):
    ef = SERVICES[svc].get("env_file")
    return [ef] if isinstance(ef, str) else list(ef or [])


def hostport(addr):
    """tls+tcp://HOST:PORT -> (scheme, host, port)."""
    m = re.fullmatch(r"([a-z+]+)://(.+):(\d+)", addr)
    if not m:
        raise ValueError(f"not an nng URL: {addr!r}")
    return m.group(1), m.group(2), int(m.group(3))


def listen_port(svc, var):
    return hostport(env_of(svc)[var])[2]


def health_port(svc):
    kind = CHAT[svc]
    env = env_of(svc)
    if kind == "gateway":
        return int(env.get("CHAT_GATEWAY_PORT", "8080"))
    return int(env[f"CHAT_{kind.upper()}_HTTP_LISTEN"].rsplit(":", 1)[1])


def volumes_of(svc):
    out = []
    for v in SERVICES[svc].get("volumes") or []:
        if isinstance(v, dict):
            out.append((v.get("source"), v.get("target"), bool(v.get("read_only"))))
        else:
            parts = v.split(":")
            out.append((parts[0], parts[1] if len(parts) > 1 else parts[0],
                        len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


# ---- the services -------------------------------------------------------------

@rule("every service the stack needs is there (PostgreSQL, Redis, certs, the four chat services, lb, chatctl)")
def _():
    want = {"postgres", "redis", "certs", LB, "chatctl", *CHAT}
    return [f"service {s!r} missing" for s in sorted(want - set(SERVICES))]


@rule(f"every chat service, certs and chatctl is built from deploy/images/Dockerfile (context ../..) as {IMAGE}")
def _():
    p = []
    for s in [*CHAT, *ONE_SHOT]:
        svc = SERVICES.get(s, {})
        if svc.get("image") != IMAGE:
            p.append(f"{s}: image {svc.get('image')!r}, wanted {IMAGE!r}")
        if svc.get("build") != BUILD:
            p.append(f"{s}: build {svc.get('build')!r}, wanted {BUILD!r}")
    return p


@rule("every chat service runs its program by name (command: [svc-...]: the image has no entrypoint wrapper)")
def _():
    return [f"{s}: command {SERVICES[s].get('command')!r}, wanted [{s!r}]"
            for s in CHAT if SERVICES[s].get("command") != [s]]


@rule("every chat service has a healthcheck running chat-healthcheck on its own /healthz or /readyz")
def _():
    p = []
    for s in CHAT:
        hc = SERVICES[s].get("healthcheck")
        if not hc or hc.get("disable"):
            p.append(f"{s}: no healthcheck")
            continue
        test = hc.get("test")
        want = re.compile(rf"http://(127\.0\.0\.1|localhost):{health_port(s)}/(healthz|readyz)")
        if not (isinstance(test, list) and test[:2] == ["CMD", "chat-healthcheck"] and len(test) == 3
                and want.fullmatch(test[2])):
            p.append(f"{s}: healthcheck test {test!r}, wanted [CMD, chat-healthcheck, "
                     f"http://127.0.0.1:{health_port(s)}/healthz or /readyz]")
        for k in ("interval", "timeout", "retries"):
            if k not in hc:
                p.append(f"{s}: healthcheck has no {k}")
    for s in ("postgres", "redis"):
        if not (SERVICES[s].get("healthcheck") or {}).get("test"):
            p.append(f"{s}: no healthcheck (svc-message waits for it to be healthy)")
    return p


@rule("every long-running service restarts (restart: unless-stopped); the one-shots do not (restart: \"no\")")
def _():
    p = []
    for s, svc in SERVICES.items():
        want = "no" if s in ONE_SHOT else "unless-stopped"
        if str(svc.get("restart")) != want:
            p.append(f"{s}: restart {svc.get('restart')!r}, wanted {want!r}")
    return p


@rule("no container_name, hostname or fixed host port on any service but the LB (every one can be scaled)")
def _():
    p = []
    for s, svc in SERVICES.items():
        for k in ("container_name", "hostname"):
            if k in svc:
                p.append(f"{s}: has {k}: {svc[k]!r}")
        if svc.get("network_mode") == "host":
            p.append(f"{s}: network_mode host (every port would be the host's)")
        if s != LB and svc.get("ports"):
            p.append(f"{s}: publishes ports {svc['ports']!r} (only {LB} may)")
    return p


@rule(f"the LB publishes exactly one port, its {LB_PORT}")
def _():
    ports = SERVICES[LB].get("ports") or []
    if len(ports) != 1:
        return [f"{LB}: ports {ports!r}, wanted one mapping to container port {LB_PORT}"]
    p = ports[0]
    target = p.get("target") if isinstance(p, dict) else str(p).rsplit(":", 1)[-1].split("/")[0]
    if str(target) != str(LB_PORT):
        return [f"{LB}: publishes {p!r}: container port {target}, wanted {LB_PORT}"]
    return []


@rule("the four chat services have replicas (deploy.replicas) and can be scaled")
def _():
    p = []
    for s in CHAT:
        r = (SERVICES[s].get("deploy") or {}).get("replicas")
        if not isinstance(r, int) or r < 1:
            p.append(f"{s}: deploy.replicas {r!r}, wanted a number >= 1")
    return p


# ---- the internal plane: TLS and addresses ----------------------------------------

@rule("every internal address is tls+tcp:// (listen, callers, events, admin; chatctl's too)")
def _():
    p = []
    for s in [*CHAT, "chatctl"]:
        for k, v in env_of(s).items():
            if NNG_VAR.match(k) and not k.endswith("HTTP_LISTEN"):
                for a in v.split(","):
                    if not a.strip().startswith("tls+tcp://"):
                        p.append(f"{s}: {k}={a.strip()!r} is not tls+tcp://")
    return p


@rule("every chat service and chatctl set CHAT_TLS_CERT/KEY/CA to their kind's files in /certs")
def _():
    p = []
    for s, kind in [*CHAT.items(), ("chatctl", "chatctl")]:
        env = env_of(s)
        want = {"CHAT_TLS_CERT": f"{CERTS_DIR}/{kind}.crt", "CHAT_TLS_KEY": f"{CERTS_DIR}/{kind}.key",
                "CHAT_TLS_CA": f"{CERTS_DIR}/ca.crt"}
        for k, v in want.items():
            if env.get(k) != v:
                p.append(f"{s}: {k}={env.get(k)!r}, wanted {v!r}")
    return p


@rule("every chat service and chatctl mount the certs volume read-only at /certs; only certs writes it")
def _():
    p = []
    for s in [*CHAT, "chatctl"]:
        if ("certs", CERTS_DIR, True) not in volumes_of(s):
            p.append(f"{s}: volumes {volumes_of(s)!r}: no certs:{CERTS_DIR}:ro")
    if ("certs", CERTS_DIR, False) not in volumes_of("certs"):
        p.append(f"certs: volumes {volumes_of('certs')!r}: no writable certs:{CERTS_DIR}")
    for s, svc in SERVICES.items():
        if s != "certs" and any(src == "certs-ca" for src, _, _ in volumes_of(s)):
            p.append(f"{s}: mounts certs-ca (the CA's key is for the certs service only)")
    return p


@rule("the certs service runs chat-gen-certs and leaves each kind's key readable by uid 10001 only (0600)")
def _():
    svc = SERVICES["certs"]
    script = " ".join(svc.get("command") or []) + " " + " ".join(svc.get("entrypoint") or [])
    p = []
    if "chat-gen-certs" not in script:
        p.append("certs: its command does not run chat-gen-certs")
    user = str(svc.get("user", "")).split(":")[0]
    if user not in ("0", "root", str(CHAT_UID)):
        p.append(f"certs: user {svc.get('user')!r}: must be root (to chown) or {CHAT_UID}")
    # Root must hand each key to 10001; run as 10001 the files are its own. Either way 0600.
    owner = f"-o {CHAT_UID} -g {CHAT_UID} " if user in ("0", "root") else f"(?:-o {CHAT_UID} -g {CHAT_UID} )?"
    key = re.compile(rf"install {owner}-m 0?600 \S*?(?:\$\$(?P<var>\w+)|\b(?P<kind>[a-z]+))\.key\S* "
                     rf"\S*{CERTS_DIR}/")
    # A key installed in a loop ("$$k.key") is installed only for the kinds the loop names.
    loops = {}
    for var, words in re.findall(r"\bfor (\w+) in ([^;\n]*)", script):
        loops.setdefault(var, []).extend(words.split())
    installed = set()
    for m in key.finditer(script):
        installed |= set(loops.get(m["var"], [])) if m["var"] else {m["kind"]}
    for kind in [*CHAT.values(), "chatctl"]:
        if kind not in installed:
            p.append(f"certs: does not install {kind}.key into {CERTS_DIR} as {CHAT_UID}, mode 0600")
    for s in CHAT:
        dep = (SERVICES[s].get("depends_on") or {}).get("certs")
        if not isinstance(dep, dict) or dep.get("condition") != "service_completed_successfully":
            p.append(f"{s}: does not wait for certs (depends_on certs: service_completed_successfully)")
    return p


@rule("every caller's address names a compose service and the port that service listens on")
def _():
    p = []
    listen = {}  # (service name, port) of every nng listener
    for s, kind in CHAT.items():
        for k, v in env_of(s).items():
            if re.fullmatch(rf"CHAT_{kind.upper()}_(LISTEN|PUB_LISTEN|ADMIN_LISTEN)", k):
                sch, host, port = hostport(v)
                if host != "0.0.0.0":
                    p.append(f"{s}: {k}={v!r} binds {host}: other containers cannot reach it (0.0.0.0)")
                listen[(s, port)] = k
        http = env_of(s).get(f"CHAT_{kind.upper()}_HTTP_LISTEN")
        if kind != "gateway" and (not http or not http.startswith("0.0.0.0:")):
            p.append(f"{s}: CHAT_{kind.upper()}_HTTP_LISTEN={http!r}: wanted 0.0.0.0:PORT")
        if kind != "gateway" and f"CHAT_{kind.upper()}_ADMIN_LISTEN" not in env_of(s):
            p.append(f"{s}: no CHAT_{kind.upper()}_ADMIN_LISTEN (chatctl could not reach it)")
    if "CHAT_GATEWAY_ADMIN_LISTEN" not in env_of("svc-gateway"):
        p.append("svc-gateway: no CHAT_GATEWAY_ADMIN_LISTEN (chatctl could not reach it)")
    for s in [*CHAT, "chatctl"]:
        for k, v in env_of(s).items():
            if k.endswith("_ADDRS"):
                for a in v.split(","):
                    _, host, port = hostport(a.strip())
                    if (host, port) not in listen:
                        p.append(f"{s}: {k} has {a.strip()!r}, which no service listens on")
    need = {"svc-gateway": ["CHAT_MESSAGE_ADDRS", "CHAT_MATCH_ADDRS", "CHAT_PRESENCE_ADDRS", "CHAT_EVENTS_ADDRS"],
            "svc-match": ["CHAT_MESSAGE_ADDRS"], "svc-presence": ["CHAT_MATCH_ADDRS", "CHAT_MESSAGE_ADDRS"],
            "chatctl": [f"CHAT_{k}_ADMIN_ADDRS" for k in ("GATEWAY", "MESSAGE", "MATCH", "PRESENCE")]}
    for s, vars_ in need.items():
        for k in vars_:
            if k not in env_of(s):
                p.append(f"{s}: {k} not set")
    return p


@rule("chatctl is a tools-profile service (docker compose run --rm chatctl status)")
def _():
    svc = SERVICES["chatctl"]
    p = []
    if "tools" not in (svc.get("profiles") or []):
        p.append(f"chatctl: profiles {svc.get('profiles')!r}, wanted tools (so up does not start it)")
    ep = svc.get("entrypoint")
    if ep not in (["chatctl"], "chatctl"):
        p.append(f"chatctl: entrypoint {ep!r}, wanted [chatctl] (run's arguments become chatctl's)")
    if ".env" not in env_files("chatctl"):
        p.append("chatctl: no env_file .env (the admin secret)")
    return p


# ---- data ------------------------------------------------------------------------------

@rule("PostgreSQL and Redis keep their data in named volumes (Redis with its append-only file)")
def _():
    p = []
    top = DOC.get("volumes") or {}
    for s, target in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
        vols = [src for src, tgt, _ in volumes_of(s) if tgt == target]
        if not vols:
            p.append(f"{s}: nothing mounted at {target}")
        elif vols[0] not in top:
            p.append(f"{s}: {vols[0]!r} at {target} is not a named volume (top-level volumes)")
    cmd = SERVICES["redis"].get("command") or []
    cmd = cmd if isinstance(cmd, list) else cmd.split()
    if "--appendonly" not in cmd or cmd[cmd.index("--appendonly") + 1:][:1] != ["yes"]:
        p.append(f"redis: command {cmd!r} without --appendonly yes (the volume would hold no data)")
    return p


@rule("svc-message waits for a healthy PostgreSQL (and Redis); the gateway for healthy services")
def _():
    p = []
    want = {"svc-message": ["postgres", "redis"], "svc-match": ["redis", "svc-message"],
            "svc-presence": ["redis", "svc-match"],
            "svc-gateway": ["svc-message", "svc-match", "svc-presence"]}
    for s, deps in want.items():
        have = SERVICES[s].get("depends_on") or {}
        for d in deps:
            cond = have.get(d, {}).get("condition") if isinstance(have, dict) else None
            if cond != "service_healthy":
                p.append(f"{s}: depends_on {d}: condition {cond!r}, wanted service_healthy")
    return p


# ---- secrets ------------------------------------------------------------------------

@rule("no secret value inline in docker-compose.yml: secrets come from .env (env_file, or ${VAR} from it)")
def _():
    p = []
    for s in SERVICES:
        for k, v in env_of(s).items():
            if SECRET_NAME.search(k) and not re.fullmatch(r"\$\{[A-Z0-9_]+(:?\?[^}]*)?\}", v):
                p.append(f"{s}: {k} is set inline ({'<empty>' if v == '' else 'a value'}); "
                         f"put it in .env (env_file) or use ${{{k}:?...}}")
            if k.endswith("_DSN") and re.search(r"password\s*=", v, re.I):
                p.append(f"{s}: {k} holds a password (use PGPASSWORD=${{...}} from .env)")
    for k, v in ENV_EXAMPLE.items():
        if SECRET_NAME.search(k) and v and v in RAW:
            p.append(f".env.example's value of {k} appears in docker-compose.yml")
    for s in CHAT:
        if ".env" not in env_files(s):
            p.append(f"{s}: no env_file .env")
    for var, who in (("CHAT_SESSION_SECRET", ["svc-gateway"]),
                     ("CHAT_ADMIN_TOKEN", [*CHAT, "chatctl"])):
        if var not in ENV_EXAMPLE:
            p.append(f".env.example has no {var} (needed by {', '.join(who)})")
        for s in who:
            if ".env" not in env_files(s) and var not in env_of(s):
                p.append(f"{s}: gets no {var}")
    return p


@rule(".env.example lists every variable docker-compose.yml references, with placeholder (change-me) secrets")
def _():
    p = []
    refs = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", RAW))
    refs |= set(re.findall(r"(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)", RAW))
    for v in sorted(refs - set(ENV_EXAMPLE)):
        p.append(f"docker-compose.yml uses ${{{v}}}, which .env.example does not list")
    for k, v in ENV_EXAMPLE.items():
        if SECRET_NAME.search(k) and not (v or "").startswith("change-me"):
            p.append(f".env.example: {k}={v!r} is not a change-me placeholder (a real secret committed?)")
        if SECRET_NAME.search(k) and not re.search(rf"(?m)^#.*(openssl rand|head -c|/dev/urandom)", read(".env.example")):
            p.append(".env.example does not say how to make good secret values")
            break
    # The certs service refuses placeholders: it must check every secret.
    script = " ".join(SERVICES["certs"].get("command") or [])
    for k in ENV_EXAMPLE:
        if SECRET_NAME.search(k) and k not in script:
            p.append(f"certs does not refuse a placeholder {k}")
    if not re.search(r"change-me\*[|)]", script):
        p.append("certs does not refuse change-me* values (no case pattern change-me*)")
    return p


@rule(".env.example's CHAT_* settings are ones the programs know (their --help)")
def _():
    bin_dir = os.environ.get("CHAT_BIN_DIR")
    if not bin_dir:
        print("  (CHAT_BIN_DIR not set: the programs' --help not checked)")
        return []
    known = set()
    for prog in ("svc-gateway", "svc-message", "svc-match", "svc-presence", "chatctl"):
        out = subprocess.run([os.path.join(bin_dir, prog), "--help"], capture_output=True, text=True,
                             timeout=10)
        known |= set(re.findall(r"CHAT_[A-Z0-9_]+", out.stdout + out.stderr))
    return [f".env.example sets {k}, which no program knows and docker-compose.yml does not use"
            for k in ENV_EXAMPLE if k.startswith("CHAT_") and k not in known and "${" + k not in RAW]


@rule(".env is git-ignored (deploy/compose/.gitignore)")
def _():
    try:
        lines = [l.strip() for l in read(".gitignore").splitlines()]
    except OSError as e:
        return [f"no .gitignore: {e}"]
    if ".env" not in lines and "/.env" not in lines:
        return [f".gitignore {lines!r} does not name .env"]
    if os.path.realpath(DIR) == os.path.realpath(os.path.join(ROOT, "deploy", "compose")):
        r = subprocess.run(["git", "-C", ROOT, "check-ignore", "-q", "deploy/compose/.env"])
        if r.returncode != 0:
            return ["git check-ignore: deploy/compose/.env is not ignored"]
    return []


# ---- the load balancer --------------------------------------------------------------

HAPROXY = read("haproxy.cfg")


def hp_default(var):
    m = re.search(r'"\$\{' + var + r'-([^}"]*)\}"', HAPROXY)
    return m.group(1) if m else None


@rule("the LB depends on the gateways and mounts this directory's haproxy.cfg")
def _():
    p = []
    deps = SERVICES[LB].get("depends_on") or {}
    if "svc-gateway" not in deps:
        p.append(f"{LB}: depends_on {deps!r} lacks svc-gateway")
    mounted = [src for src, tgt, _ in volumes_of(LB) if tgt.endswith("haproxy.cfg")]
    if mounted != ["./haproxy.cfg"]:
        p.append(f"{LB}: mounts {mounted!r} as its config, wanted ./haproxy.cfg")
    return p


@rule("haproxy.cfg finds every gateway replica by name through Docker's DNS, on the gateway's port")
def _():
    p = []
    if not re.search(r"(?m)^\s*server-template\s+\S+\s+\S+\s+\"\$\{CHAT_LB_GATEWAYS-", HAPROXY):
        p.append("no server-template over \"${CHAT_LB_GATEWAYS-...}\"")
    gw = hp_default("CHAT_LB_GATEWAYS")
    want = f"svc-gateway:{health_port('svc-gateway')}"
    if gw != want:
        p.append(f"CHAT_LB_GATEWAYS defaults to {gw!r}, wanted {want!r}")
    if hp_default("CHAT_LB_DNS") != "127.0.0.11:53":
        p.append(f"CHAT_LB_DNS defaults to {hp_default('CHAT_LB_DNS')!r}, wanted Docker's 127.0.0.11:53")
    if not re.search(r"(?m)^\s*default-server\b.*\bresolvers\s+\S+", HAPROXY):
        p.append("the servers do not use the resolvers (no re-resolution: scaled gateways unseen)")
    if hp_default("CHAT_LB_BIND") != f":{LB_PORT}":
        p.append(f"CHAT_LB_BIND defaults to {hp_default('CHAT_LB_BIND')!r}, wanted :{LB_PORT}")
    return p


@rule("haproxy.cfg health-checks every gateway on /readyz (a draining gateway, 503, gets nothing new)")
def _():
    p = []
    if not re.search(r"(?m)^\s*option\s+httpchk\b", HAPROXY):
        p.append("no option httpchk")
    if not re.search(r"(?m)^\s*http-check\s+send\b.*\buri\s+/readyz\b", HAPROXY):
        p.append("no http-check send ... uri /readyz")
    if not re.search(r"(?m)^\s*http-check\s+expect\s+status\s+200\b", HAPROXY):
        p.append("no http-check expect status 200")
    if not re.search(r"(?m)^\s*default-server\b.*\bcheck\b", HAPROXY):
        p.append("default-server without check")
    return p


@rule("haproxy.cfg keeps idle WebSockets open (timeout tunnel of 10 minutes or more)")
def _():
    # Every one: a backend's own timeout tunnel overrides the defaults' one.
    found = re.findall(r"(?m)^\s*timeout\s+tunnel\s+(\d+)(ms|s|m|h|d)?\s*$", HAPROXY)
    if not found:
        return ["no timeout tunnel: an idle WebSocket would be cut after timeout client/server"]
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "": 0.001}
    return [f"timeout tunnel {n}{u} is under 10 minutes" for n, u in found if int(n) * unit[u] < 600]


def main():
    print(f"compose rules for {DIR}:")
    bad = 0
    for ok, name, problems in results:
        print(f"{'ok  ' if ok else 'FAIL'}  {name}")
        for pb in problems:
            print(f"        - {pb}")
        bad += not ok
    print(f"{len(results) - bad} of {len(results)} rules hold")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
