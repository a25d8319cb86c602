#!/usr/bin/python3
"""Turns the rendered dev overlay (kubectl kustomize deploy/k8s/overlays/dev)
into what podman kube play (4.3) can run on one machine, for
deploy/images/kube-play.sh:

    kube_play_yaml.py RENDERED.yaml OUT_DIR PORTS_JSON PG_PORT REDIS_PORT

Keeps the four Deployments (one pod each) and the ConfigMap, as they are but
for what podman or a single machine cannot do:
  - hostNetwork: true (no containerPorts: podman refuses them with it; the
    probes get the port numbers), every address 127.0.0.1, every port of the ConfigMap
    (and the preStop hook) moved to a free one (PORTS_JSON: {"7201": 23456,
    ...}), the Service names (svc-message, svc-match-admin, ...) made
    127.0.0.1 by the programs' hosts file (CHAT_HOSTS_FILE, a hostPath
    volume: there is no cluster DNS, and podman ignores hostAliases with host
    networking);
  - PostgreSQL and Redis: this machine's (the StatefulSets' images are not
    here), so CHAT_REDIS_HOST/PORT and the pg-dsn secret point at them;
  - Secrets: podman 4.3 plays no Secret objects, so each secret volume becomes
    a hostPath directory under OUT_DIR/secrets/NAME holding the keys it
    selects (owner 10001, mode 0400, as defaultMode 0440 with fsGroup 10001
    gives), and each secretKeyRef the value itself;
  - dropped: Namespace, Service, NetworkPolicy, PodDisruptionBudget,
    HorizontalPodAutoscaler, StatefulSet (nothing in podman plays them).
Writes OUT_DIR/play.yaml and prints what it dropped or changed.
"""

import base64
import json
import os
import re
import sys

import yaml

rendered, out_dir, ports_json, pg_port, redis_port = sys.argv[1:6]
ports = {int(k): int(v) for k, v in json.loads(ports_json).items()}
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
secrets = {d["metadata"]["name"]: {k: base64.b64decode(v) for k, v in d.get("data", {}).items()}
           for d in docs if d["kind"] == "Secret"}
SERVICE_NAMES = sorted({d["metadata"]["name"] for d in docs if d["kind"] == "Service"} | {"redis", "postgres"})


def move_ports(text):
    """host:PORT / :PORT of the manifests' ports -> 127.0.0.1:free port."""
    def sub(m):
        port = int(m.group(2))
        return f"{m.group(1)}:{ports.get(port, port)}"
    text = re.sub(r"0\.0\.0\.0:", "127.0.0.1:", text)
    return re.sub(r"([A-Za-z0-9.\-]+):(\d{2,5})\b", sub, text)


os.makedirs(os.path.join(out_dir, "hosts"), exist_ok=True)
with open(os.path.join(out_dir, "hosts", "hosts"), "w") as f:
    f.write("# The Service names of deploy/k8s, all on this machine (CHAT_HOSTS_FILE)\n")
    f.writelines(f"{name} 127.0.0.1\n" for name in SERVICE_NAMES)
os.chmod(os.path.join(out_dir, "hosts"), 0o755)

out, dropped = [], {}
for d in docs:
    kind = d["kind"]
    if kind == "ConfigMap":
        data = d["data"]
        for k, v in list(data.items()):
            data[k] = move_ports(v)
        if "CHAT_GATEWAY_PORT" in data:
            data["CHAT_GATEWAY_PORT"] = str(ports[int(data["CHAT_GATEWAY_PORT"])])
        data["CHAT_GATEWAY_BIND"] = "127.0.0.1"
        data["CHAT_REDIS_HOST"] = "127.0.0.1"
        data["CHAT_REDIS_PORT"] = str(redis_port)
        data["CHAT_HOSTS_FILE"] = "/etc/chat/hosts/hosts"
        out.append(d)
    elif kind == "Deployment":
        spec = d["spec"]["template"]["spec"]
        spec["hostNetwork"] = True
        # podman 4.3 ignores hostAliases with host networking: the programs'
        # own hosts file (CHAT_HOSTS_FILE, read by every dialer) names them.
        spec.setdefault("volumes", []).append({"name": "chat-hosts", "hostPath": {
            "path": os.path.join(out_dir, "hosts"), "type": "Directory"}})
        for c in spec["containers"]:
            c.setdefault("volumeMounts", []).append(
                {"name": "chat-hosts", "mountPath": "/etc/chat/hosts", "readOnly": True})
        for vol in spec.get("volumes", []):
            if "secret" in vol:
                src = vol.pop("secret")
                path = os.path.join(out_dir, "secrets", d["metadata"]["name"], vol["name"])
                os.makedirs(path, exist_ok=True)
                os.chown(path, 10001, 10001)
                os.chmod(path, 0o500)
                items = src.get("items") or [{"key": k, "path": k} for k in secrets[src["secretName"]]]
                for it in items:
                    f = os.path.join(path, it["path"])
                    with open(f, "wb") as fh:
                        fh.write(secrets[src["secretName"]][it["key"]])
                    os.chown(f, 10001, 10001)
                    os.chmod(f, 0o400)
                vol["hostPath"] = {"path": path, "type": "Directory"}
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    value = secrets[ref["name"]][ref["key"]].decode()
                    if ref["key"] == "pg-dsn":
                        value = (f"host=127.0.0.1 port={pg_port} dbname=chat user=chat "
                                 "sslmode=disable connect_timeout=5")
                    e.pop("valueFrom")
                    e["value"] = value
            # podman 4.3 turns containerPorts into port mappings, which it
            # refuses with host networking; the probes name them.
            names = {p.get("name"): p["containerPort"] for p in c.pop("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                get = c.get(probe, {}).get("httpGet")
                if get:
                    port = names.get(get["port"], get["port"])
                    get["port"] = ports.get(port, port)
                    get["host"] = "127.0.0.1"
            pre = c.get("lifecycle", {}).get("preStop", {}).get("exec")
            if pre:
                pre["command"] = [move_ports(x) for x in pre["command"]]
        out.append(d)
    else:
        dropped[kind] = dropped.get(kind, 0) + 1

with open(os.path.join(out_dir, "play.yaml"), "w") as f:
    yaml.safe_dump_all(out, f, sort_keys=False)
print("kube_play_yaml: kept " + ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in out))
print("kube_play_yaml: dropped " + ", ".join(f"{n} {k}" for k, n in sorted(dropped.items())))
