// The project's rules for deploy/k8s, checked on the rendered manifests of
// the base and of every overlay (kubectl kustomize output).
//
//   node rules.mjs DIR             DIR/base.yaml, DIR/dev.yaml, DIR/prod.yaml ...
//   node rules.mjs --self-test DIR also: each mutation in MUTATIONS (one
//                                  deliberate defect) must make its rule fail
//
// Exit 0 when every rule holds (and, with --self-test, every mutation is
// caught), 1 otherwise; each failure is one line naming the overlay, the rule
// and what is wrong.
import fs from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';

// ---- what the programs are ------------------------------------------------
const PROGRAMS = {
  'svc-gateway': { kind: 'gateway', http: 8080, admin: 7103, ports: [8080, 7103] },
  'svc-message': { kind: 'message', env: 'MESSAGE', http: 7204, admin: 7203, ports: [7201, 7202, 7203, 7204] },
  'svc-match': { kind: 'match', env: 'MATCH', http: 7304, admin: 7303, ports: [7301, 7302, 7303, 7304] },
  'svc-presence': { kind: 'presence', env: 'PRESENCE', http: 7404, admin: 7403, ports: [7401, 7402, 7403, 7404] },
};
const INTERNAL = ['svc-message', 'svc-match', 'svc-presence'];
const UID = 10001;
const GATEWAY_ID_RE = /^[A-Za-z0-9_-]{1,32}$/;
// chatctl drain waits at most --over + 15 s (docs/CHATCTL.md); the gateway
// then needs a few seconds to stop after SIGTERM.
const CHATCTL_DRAIN_SLACK_S = 15;
const STOP_MARGIN_S = 5;
// The Secrets prod creates out of band (README.md), with the keys used.
const OUT_OF_BAND = {
  'chat-secrets': ['session-secret', 'admin-token', 'pg-dsn'],
  'chat-tls': ['ca.crt', ...['gateway', 'message', 'match', 'presence', 'chatctl'].flatMap((k) => [`${k}.crt`, `${k}.key`])],
  'chat-public-tls': ['tls.crt', 'tls.key'],
};
const SECRET_NAME_RE = /(SECRET|TOKEN|PASSWORD|PASSWD|DSN|PRIVATE)/;

// ---- helpers -------------------------------------------------------------------
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const clone = (v) => JSON.parse(JSON.stringify(v));

function parseQuantity(q) {
  if (typeof q === 'number') return q;
  const m = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$/.exec(String(q));
  if (!m) return NaN;
  const mult = { n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
    Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
  const s = m[2] || '';
  return parseFloat(m[1]) * (s === '' ? 1 : /^[eE]/.test(s) ? 10 ** parseInt(s.slice(1), 10) : mult[s]);
}

function selectorMatches(sel, labels) {
  if (!isObj(sel)) return false;
  labels = labels || {};
  for (const [k, v] of Object.entries(sel.matchLabels || {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions || []) {
    const has = Object.hasOwn(labels, e.key);
    const inV = has && (e.values || []).includes(labels[e.key]);
    if (e.operator === 'In' && !inV) return false;
    if (e.operator === 'NotIn' && inV) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}
const selectorEmpty = (sel) => isObj(sel) && !Object.keys(sel.matchLabels || {}).length &&
  !(sel.matchExpressions || []).length;

// A set of rendered objects with lookups.
class Manifests {
  constructor(name, docs) {
    this.name = name;
    this.docs = docs;
  }
  all(kind) { return this.docs.filter((d) => d.kind === kind); }
  get(kind, name) { return this.docs.find((d) => d.kind === kind && d.metadata?.name === name); }
  // Deployments and StatefulSets: {obj, name, ns, labels, pod}
  get workloads() {
    return this.docs.filter((d) => ['Deployment', 'StatefulSet', 'DaemonSet', 'Job'].includes(d.kind))
      .map((d) => ({ obj: d, kind: d.kind, name: d.metadata.name, ns: d.metadata.namespace,
        labels: d.spec?.template?.metadata?.labels || {}, pod: d.spec?.template?.spec || {} }));
  }
  // A ConfigMap by the name a pod refers to (kustomize adds a hash suffix to
  // generated ones and rewrites the references, so the reference is exact).
  configMap(name) { return this.get('ConfigMap', name); }
}

function containerPorts(pod) {
  const out = [];
  for (const c of pod.containers || []) for (const p of c.ports || []) out.push({ ...p, container: c.name });
  return out;
}
// A probe's or Service's port (number or name) as a number, via the pod's ports.
function resolvePort(port, pod) {
  if (typeof port === 'number') return port;
  const p = containerPorts(pod).find((cp) => cp.name === port);
  return p ? p.containerPort : undefined;
}
function envOf(container, m) {
  // The container's environment as the program sees it: envFrom ConfigMaps,
  // then env (values; valueFrom as a marker object).
  const env = {};
  for (const ef of container.envFrom || []) {
    if (ef.configMapRef) Object.assign(env, m.configMap(ef.configMapRef.name)?.data || {});
    if (ef.secretRef) env[`<secret ${ef.secretRef.name}>`] = { secretRef: ef.secretRef.name };
  }
  for (const e of container.env || []) env[e.name] = e.valueFrom ? { valueFrom: e.valueFrom } : e.value ?? '';
  return env;
}

// ---- the rules -----------------------------------------------------------------
// Each rule: (m, ctx) => list of problems (strings); empty = holds.
const RULES = {};

RULES['deployments'] = (m) => {
  const errs = [];
  for (const [prog] of Object.entries(PROGRAMS)) {
    const d = m.get('Deployment', prog);
    if (!d) { errs.push(`no Deployment ${prog}`); continue; }
    const c = (d.spec.template.spec.containers || []).find((x) => x.name === prog);
    if (!c) { errs.push(`Deployment ${prog} has no container named ${prog}`); continue; }
    if (!Array.isArray(c.command) || c.command[0] !== prog) {
      errs.push(`Deployment ${prog}: command must be ["${prog}"] (image contract), is ${JSON.stringify(c.command)}`);
    }
    if (!/^(.*\/)?chat(:[\w.-]+)?(@sha256:[0-9a-f]+)?$/.test(c.image || '')) {
      errs.push(`Deployment ${prog}: image ${c.image} is not the chat image`);
    }
    if (!selectorMatches(d.spec.selector, d.spec.template.metadata?.labels)) {
      errs.push(`Deployment ${prog}: its selector does not match its pod labels`);
    }
  }
  return errs;
};

// Every Service with a selector reaches pods, on ports those pods have.
function serviceTargets(m, svc) {
  const sel = svc.spec?.selector;
  if (!sel || !Object.keys(sel).length) return null;
  return m.workloads.filter((w) => w.ns === svc.metadata.namespace && selectorMatches({ matchLabels: sel }, w.labels));
}
RULES['services'] = (m) => {
  const errs = [];
  const svcPort = (svc, port) => (svc?.spec?.ports || []).find((p) => p.port === port);
  for (const svc of m.all('Service')) {
    const targets = serviceTargets(m, svc);
    if (targets === null) continue;
    const n = svc.metadata.name;
    if (!targets.length) { errs.push(`Service ${n} selects no pods`); continue; }
    for (const p of svc.spec.ports || []) {
      const t = p.targetPort ?? p.port;
      for (const w of targets) {
        if (resolvePort(t, w.pod) === undefined || !containerPorts(w.pod).some((cp) => cp.containerPort === resolvePort(t, w.pod))) {
          errs.push(`Service ${n} port ${p.port}: target ${t} is not a container port of ${w.kind} ${w.name}`);
        }
      }
    }
  }
  const selects = (svc, prog) => svc && (serviceTargets(m, svc) || []).some((w) => w.name === prog && w.kind === 'Deployment');
  for (const prog of INTERNAL) {
    const p = PROGRAMS[prog];
    const main = m.get('Service', prog), admin = m.get('Service', `${prog}-admin`);
    if (!main) errs.push(`no Service ${prog}`);
    else {
      if (main.spec.clusterIP !== 'None') errs.push(`Service ${prog} must be headless (clusterIP: None) so discovery sees every pod`);
      if (!selects(main, prog)) errs.push(`Service ${prog} does not select the ${prog} pods`);
      for (const port of p.ports.slice(0, 2)) if (!svcPort(main, port)) errs.push(`Service ${prog} lacks port ${port}`);
    }
    if (!admin) errs.push(`no Service ${prog}-admin (chatctl, metrics)`);
    else {
      if (admin.spec.clusterIP !== 'None') errs.push(`Service ${prog}-admin must be headless`);
      if (admin.spec.publishNotReadyAddresses !== true) errs.push(`Service ${prog}-admin must publish not-ready pods (chatctl reaches every replica)`);
      if (!selects(admin, prog)) errs.push(`Service ${prog}-admin does not select the ${prog} pods`);
      for (const port of p.ports.slice(2)) if (!svcPort(admin, port)) errs.push(`Service ${prog}-admin lacks port ${port}`);
    }
  }
  const gw = m.get('Service', 'svc-gateway'), gwa = m.get('Service', 'svc-gateway-admin');
  if (!gw) errs.push('no Service svc-gateway');
  else {
    if (gw.spec.clusterIP === 'None') errs.push('Service svc-gateway must be a normal Service (not headless): it balances the clients');
    if (!selects(gw, 'svc-gateway')) errs.push('Service svc-gateway does not select the gateway pods');
    const ok = (gw.spec.ports || []).some((p) => resolvePort(p.targetPort ?? p.port, m.get('Deployment', 'svc-gateway')?.spec.template.spec || {}) === 8080);
    if (!ok) errs.push('Service svc-gateway has no port to the gateway\'s 8080');
  }
  if (!gwa) errs.push('no headless Service svc-gateway-admin (chatctl reaches every gateway)');
  else {
    if (gwa.spec.clusterIP !== 'None') errs.push('Service svc-gateway-admin must be headless');
    if (gwa.spec.publishNotReadyAddresses !== true) errs.push('Service svc-gateway-admin must publish not-ready pods (a draining gateway)');
    if (!svcPort(gwa, 7103)) errs.push('Service svc-gateway-admin lacks port 7103');
    if (!selects(gwa, 'svc-gateway')) errs.push('Service svc-gateway-admin does not select the gateway pods');
  }
  return errs;
};

RULES['probes'] = (m) => {
  const errs = [];
  for (const [prog, p] of Object.entries(PROGRAMS)) {
    const d = m.get('Deployment', prog);
    if (!d) continue;
    const pod = d.spec.template.spec;
    const c = pod.containers.find((x) => x.name === prog);
    if (!c) continue;
    const want = { startupProbe: '/healthz', livenessProbe: '/healthz', readinessProbe: '/readyz' };
    for (const [kind, pathWanted] of Object.entries(want)) {
      const pr = c[kind];
      if (!pr) { errs.push(`${prog}: no ${kind}`); continue; }
      if (!pr.httpGet) { errs.push(`${prog}: ${kind} is not an httpGet`); continue; }
      if (pr.httpGet.path !== pathWanted) errs.push(`${prog}: ${kind} path ${pr.httpGet.path}, must be ${pathWanted}`);
      const port = resolvePort(pr.httpGet.port, pod);
      if (port !== p.http) errs.push(`${prog}: ${kind} port ${pr.httpGet.port} (= ${port}), must be the HTTP port ${p.http}`);
      if (pr.httpGet.scheme && pr.httpGet.scheme !== 'HTTP') errs.push(`${prog}: ${kind} must be plain HTTP`);
    }
    // The HTTP port must listen on every address of the pod.
    const env = envOf(c, m);
    if (prog === 'svc-gateway') {
      if (String(env.CHAT_GATEWAY_PORT ?? '8080') !== String(p.http)) errs.push(`${prog}: CHAT_GATEWAY_PORT=${env.CHAT_GATEWAY_PORT}, probes use ${p.http}`);
      if ((env.CHAT_GATEWAY_BIND ?? '') !== '' && env.CHAT_GATEWAY_BIND !== '0.0.0.0') errs.push(`${prog}: CHAT_GATEWAY_BIND=${env.CHAT_GATEWAY_BIND}: must be empty (all addresses)`);
    } else {
      const v = env[`CHAT_${p.env}_HTTP_LISTEN`];
      if (v !== `0.0.0.0:${p.http}`) errs.push(`${prog}: CHAT_${p.env}_HTTP_LISTEN=${v ?? '(unset: 127.0.0.1)'}, must be 0.0.0.0:${p.http} for the probes`);
    }
    if (!containerPorts(pod).some((cp) => cp.containerPort === p.http)) errs.push(`${prog}: no container port ${p.http}`);
  }
  return errs;
};

RULES['resources'] = (m) => {
  const errs = [];
  for (const w of m.workloads) {
    for (const c of [...(w.pod.initContainers || []), ...(w.pod.containers || [])]) {
      const r = c.resources || {};
      for (const res of ['cpu', 'memory']) {
        const req = r.requests?.[res], lim = r.limits?.[res];
        if (req === undefined) errs.push(`${w.kind} ${w.name} container ${c.name}: no ${res} request`);
        if (lim === undefined) errs.push(`${w.kind} ${w.name} container ${c.name}: no ${res} limit`);
        if (req !== undefined && lim !== undefined && parseQuantity(req) > parseQuantity(lim)) {
          errs.push(`${w.kind} ${w.name} container ${c.name}: ${res} request ${req} above its limit ${lim}`);
        }
      }
    }
  }
  return errs;
};

RULES['rollout'] = (m) => {
  const errs = [];
  for (const d of m.all('Deployment')) {
    const s = d.spec.strategy;
    const n = d.metadata.name;
    if (!s || s.type !== 'RollingUpdate' || !s.rollingUpdate) { errs.push(`Deployment ${n}: strategy must be RollingUpdate with rollingUpdate set`); continue; }
    const mu = s.rollingUpdate.maxUnavailable;
    if (!(mu === 0 || mu === '0%')) errs.push(`Deployment ${n}: maxUnavailable is ${JSON.stringify(mu)}, must be 0`);
    const ms = s.rollingUpdate.maxSurge;
    if (ms === undefined || ms === 0 || ms === '0%') errs.push(`Deployment ${n}: maxSurge must be above 0 (with maxUnavailable 0)`);
  }
  return errs;
};

RULES['autoscaling'] = (m) => {
  const errs = [];
  for (const prog of Object.keys(PROGRAMS)) {
    const hpas = m.all('HorizontalPodAutoscaler').filter((h) => h.spec?.scaleTargetRef?.kind === 'Deployment' && h.spec.scaleTargetRef.name === prog);
    if (hpas.length !== 1) { errs.push(`${prog}: ${hpas.length} HorizontalPodAutoscalers target it, must be 1`); continue; }
    const h = hpas[0];
    if (h.apiVersion !== 'autoscaling/v2') errs.push(`HPA ${h.metadata.name}: ${h.apiVersion}, must be autoscaling/v2`);
    if (h.spec.scaleTargetRef.apiVersion !== 'apps/v1') errs.push(`HPA ${h.metadata.name}: scaleTargetRef.apiVersion must be apps/v1`);
    const min = h.spec.minReplicas ?? 1;
    if (!(min >= 1 && h.spec.maxReplicas >= min)) errs.push(`HPA ${h.metadata.name}: minReplicas ${min}, maxReplicas ${h.spec.maxReplicas}`);
    const metrics = h.spec.metrics || [];
    const cpu = metrics.find((x) => x.type === 'Resource' && x.resource?.name === 'cpu' && x.resource.target?.type === 'Utilization' && x.resource.target.averageUtilization > 0);
    if (!cpu) errs.push(`HPA ${h.metadata.name}: no Resource cpu Utilization metric${prog === 'svc-gateway' ? ' (the fallback)' : ''}`);
    if (prog === 'svc-gateway') {
      const conns = metrics.find((x) => x.type === 'Pods' && x.pods?.metric?.name === 'chat_gateway_connections_open');
      if (!conns) errs.push('HPA svc-gateway: no Pods metric chat_gateway_connections_open');
      else if (conns.pods.target?.type !== 'AverageValue' || !(parseQuantity(conns.pods.target.averageValue) > 0)) {
        errs.push('HPA svc-gateway: chat_gateway_connections_open needs an AverageValue target above 0 (connections per pod)');
      }
    }
    const d = m.get('Deployment', prog);
    if (d && d.spec.replicas !== undefined) errs.push(`Deployment ${prog} sets replicas (${d.spec.replicas}): every apply would undo its HPA`);
  }
  return errs;
};

RULES['disruption'] = (m) => {
  const errs = [];
  for (const prog of Object.keys(PROGRAMS)) {
    const d = m.get('Deployment', prog);
    if (!d) continue;
    const labels = d.spec.template.metadata.labels;
    const pdbs = m.all('PodDisruptionBudget').filter((p) => p.metadata.namespace === d.metadata.namespace && selectorMatches(p.spec?.selector, labels));
    if (pdbs.length !== 1) { errs.push(`${prog}: ${pdbs.length} PodDisruptionBudgets select its pods, must be 1`); continue; }
    const p = pdbs[0].spec;
    const hpa = m.all('HorizontalPodAutoscaler').find((h) => h.spec?.scaleTargetRef?.name === prog);
    const min = hpa?.spec.minReplicas ?? 1;
    // It must allow an eviction at the smallest size, or node drains hang.
    if (p.maxUnavailable !== undefined) {
      if (p.maxUnavailable === 0 || p.maxUnavailable === '0%') errs.push(`PDB ${pdbs[0].metadata.name}: maxUnavailable 0 blocks every eviction`);
    } else if (p.minAvailable !== undefined) {
      if (typeof p.minAvailable === 'number' && p.minAvailable >= min) errs.push(`PDB ${pdbs[0].metadata.name}: minAvailable ${p.minAvailable} blocks evictions at ${min} replicas`);
      if (p.minAvailable === '100%') errs.push(`PDB ${pdbs[0].metadata.name}: minAvailable 100% blocks every eviction`);
    } else errs.push(`PDB ${pdbs[0].metadata.name}: neither minAvailable nor maxUnavailable`);
  }
  return errs;
};

RULES['gateway-drain'] = (m) => {
  const errs = [];
  // The gateway's Deployment by what it runs (whatever an overlay named it).
  const d = m.all('Deployment').find((x) => (x.spec.template.spec.containers || []).some((c) => (c.command || [])[0] === 'svc-gateway'));
  if (!d) return ['no Deployment runs svc-gateway'];
  // The pod names are NAME-<pod-template-hash, at most 10>-<5>: the id rule
  // [A-Za-z0-9_-]{1,32} must hold for every one.
  const longest = `${d.metadata.name}-${'x'.repeat(10)}-${'x'.repeat(5)}`;
  if (!GATEWAY_ID_RE.test(longest)) {
    errs.push(`Deployment name ${d.metadata.name}: its pod names (up to ${longest.length} characters) break the gateway id rule [A-Za-z0-9_-]{1,32} (at most 15 characters of [a-z0-9-])`);
  }
  const pod = d.spec.template.spec;
  const c = pod.containers.find((x) => (x.command || [])[0] === 'svc-gateway');
  const idEnv = (c.env || []).find((e) => e.name === 'CHAT_GATEWAY_ID');
  if (idEnv?.valueFrom?.fieldRef?.fieldPath !== 'metadata.name') errs.push('CHAT_GATEWAY_ID must come from the pod name (downward API fieldRef metadata.name)');
  const cmd = c.lifecycle?.preStop?.exec?.command;
  if (!Array.isArray(cmd)) return [...errs, 'the gateway has no preStop exec hook'];
  const line = cmd.join(' ');
  const over = /\bchatctl\b.*\bdrain\b.*--over[ =](\d+)/.exec(line);
  if (!over) errs.push(`preStop must run "chatctl ... drain ID --over N": ${line}`);
  if (!/--gateways[ =]tls\+tcp:\/\/127\.0\.0\.1:7103\b/.test(line)) errs.push(`preStop chatctl must address only this gateway (--gateways tls+tcp://127.0.0.1:7103): ${line}`);
  if (!/drain\s+"?\$\{?CHAT_GATEWAY_ID\}?"?/.test(line)) errs.push(`preStop must drain "$CHAT_GATEWAY_ID" (this pod's id): ${line}`);
  if (cmd[0] === 'sh' || cmd[0] === '/bin/sh') { if (cmd[1] !== '-c') errs.push('preStop: sh needs -c'); }
  const env = envOf(c, m);
  if (env.CHAT_GATEWAY_ADMIN_LISTEN !== 'tls+tcp://0.0.0.0:7103' && env.CHAT_GATEWAY_ADMIN_LISTEN !== 'tls+tcp://127.0.0.1:7103') {
    errs.push(`CHAT_GATEWAY_ADMIN_LISTEN=${env.CHAT_GATEWAY_ADMIN_LISTEN}: preStop dials tls+tcp://127.0.0.1:7103`);
  }
  if (over) {
    const n = parseInt(over[1], 10);
    const grace = pod.terminationGracePeriodSeconds ?? 30;
    const need = n + CHATCTL_DRAIN_SLACK_S + STOP_MARGIN_S;
    if (!(grace >= need)) errs.push(`terminationGracePeriodSeconds ${grace} must be at least --over ${n} + ${CHATCTL_DRAIN_SLACK_S} (chatctl's wait) + ${STOP_MARGIN_S} = ${need}`);
    if (n < 1) errs.push('--over 0 closes every connection at once: a reconnect storm');
  }
  return errs;
};

RULES['security'] = (m) => {
  const errs = [];
  for (const prog of Object.keys(PROGRAMS)) {
    const d = m.get('Deployment', prog);
    if (!d) continue;
    const pod = d.spec.template.spec;
    const psc = pod.securityContext || {};
    const where = `${prog}`;
    if (pod.hostNetwork || pod.hostPID || pod.hostIPC) errs.push(`${where}: host namespaces`);
    if (psc.fsGroup !== UID) errs.push(`${where}: pod fsGroup ${psc.fsGroup}, must be ${UID} (the mounted secrets' group)`);
    for (const c of [...(pod.initContainers || []), ...pod.containers]) {
      const sc = c.securityContext || {};
      const eff = (k) => (sc[k] !== undefined ? sc[k] : psc[k]);
      const cw = `${where} container ${c.name}`;
      if (eff('runAsNonRoot') !== true) errs.push(`${cw}: runAsNonRoot must be true`);
      if (eff('runAsUser') !== UID) errs.push(`${cw}: runAsUser ${eff('runAsUser')}, must be ${UID}`);
      if ((eff('seccompProfile') || {}).type !== 'RuntimeDefault') errs.push(`${cw}: seccompProfile must be RuntimeDefault`);
      if (sc.allowPrivilegeEscalation !== false) errs.push(`${cw}: allowPrivilegeEscalation must be false`);
      if (sc.readOnlyRootFilesystem !== true) errs.push(`${cw}: readOnlyRootFilesystem must be true`);
      if (sc.privileged) errs.push(`${cw}: privileged`);
      if (!(sc.capabilities?.drop || []).includes('ALL')) errs.push(`${cw}: capabilities must drop ALL`);
      if ((sc.capabilities?.add || []).length) errs.push(`${cw}: adds capabilities ${sc.capabilities.add}`);
      const tmp = (c.volumeMounts || []).find((vm) => vm.mountPath === '/tmp');
      const tmpVol = tmp && (pod.volumes || []).find((v) => v.name === tmp.name);
      if (!tmpVol?.emptyDir) errs.push(`${cw}: needs an emptyDir at /tmp (the root filesystem is read-only)`);
    }
    for (const v of pod.volumes || []) {
      const modes = [];
      if (v.secret) modes.push(['defaultMode', v.secret.defaultMode ?? 0o644], ...(v.secret.items || []).filter((i) => i.mode !== undefined).map((i) => [`${i.key} mode`, i.mode]));
      if (v.projected) modes.push(['defaultMode', v.projected.defaultMode ?? 0o644]);
      for (const [what, mode] of modes) {
        const o = mode.toString(8);
        if (!(mode & 0o040)) errs.push(`${where}: volume ${v.name} ${what} 0${o}: not readable by group ${UID} (fsGroup)`);
        if (mode & 0o007) errs.push(`${where}: volume ${v.name} ${what} 0${o}: readable by others (use 0440)`);
        if (mode & 0o222) errs.push(`${where}: volume ${v.name} ${what} 0${o}: writable`);
      }
    }
  }
  return errs;
};

// NetworkPolicy semantics, for ingress: which kinds of sources reach a pod's
// port. Sources: "world" (any address: no from, an ipBlock), "cluster" (pods
// of any namespace: a namespaceSelector matching many), "monitoring" (the
// namespace named monitoring), "namespace" (a podSelector: this namespace).
function peerClass(peer) {
  if (peer.ipBlock) return 'world';
  if (peer.namespaceSelector) {
    const ml = peer.namespaceSelector.matchLabels || {};
    const keys = Object.keys(ml);
    if (keys.length === 1 && keys[0] === 'kubernetes.io/metadata.name' && !(peer.namespaceSelector.matchExpressions || []).length) {
      return ml[keys[0]] === 'monitoring' ? 'monitoring' : `namespace ${ml[keys[0]]}`;
    }
    return 'cluster';
  }
  if (peer.podSelector) return 'namespace';
  return 'world';
}
function portMatches(rulePort, cp) {
  if (rulePort.protocol && rulePort.protocol !== (cp.protocol || 'TCP')) return false;
  if (rulePort.port === undefined) return true;
  if (typeof rulePort.port === 'string') return rulePort.port === cp.name;
  const end = rulePort.endPort ?? rulePort.port;
  return cp.containerPort >= rulePort.port && cp.containerPort <= end;
}
export function ingressSources(m, w, cp) {
  const pols = m.all('NetworkPolicy').filter((p) => p.metadata.namespace === w.ns &&
    selectorMatches(p.spec.podSelector || {}, w.labels) &&
    (p.spec.policyTypes ? p.spec.policyTypes.includes('Ingress') : true));
  if (!pols.length) return new Set(['world', 'cluster', 'monitoring', 'namespace', '(no policy)']);
  const src = new Set();
  for (const p of pols) {
    for (const rule of p.spec.ingress || []) {
      if (rule.ports?.length && !rule.ports.some((rp) => portMatches(rp, cp))) continue;
      if (!rule.from?.length) { ['world', 'cluster', 'monitoring', 'namespace'].forEach((s) => src.add(s)); continue; }
      for (const peer of rule.from) src.add(peerClass(peer));
    }
  }
  return src;
}
RULES['network'] = (m) => {
  const errs = [];
  const dd = m.all('NetworkPolicy').find((p) => selectorEmpty(p.spec.podSelector) && (p.spec.policyTypes || []).includes('Ingress') && !(p.spec.ingress || []).length);
  if (!dd) errs.push('no default-deny ingress NetworkPolicy (podSelector {}, policyTypes [Ingress], no rules)');
  for (const w of m.workloads) {
    const prog = PROGRAMS[w.name] && w.kind === 'Deployment' ? PROGRAMS[w.name] : null;
    for (const cp of containerPorts(w.pod)) {
      const src = ingressSources(m, w, cp);
      const what = `${w.kind} ${w.name} port ${cp.containerPort}`;
      const list = [...src].sort().join(', ') || 'nothing';
      if (src.has('(no policy)')) { errs.push(`${what}: no NetworkPolicy selects the pod, anyone reaches it`); continue; }
      const isPublic = w.name === 'svc-gateway' && cp.containerPort === 8080;
      if (isPublic) {
        if (!src.has('world')) errs.push(`${what}: the gateway's public port must be open to clients (reached from: ${list})`);
        continue;
      }
      if (src.has('world') || src.has('cluster') || [...src].some((s) => s.startsWith('namespace '))) {
        errs.push(`${what}: reachable from outside the namespace (from: ${list}); only the gateway's 8080 may be`);
      }
      if (src.has('monitoring') && !(prog && cp.containerPort === prog.http)) errs.push(`${what}: the monitoring namespace may reach only the health/metrics ports`);
      if (prog && !src.has('namespace')) errs.push(`${what}: the namespace's pods cannot reach it (the programs need it)`);
    }
  }
  return errs;
};

// Addresses of the internal plane: TLS everywhere, pointing at the right
// Services and ports.
const ADDR_VARS = /^CHAT_(\w+_)?(LISTEN|PUB_LISTEN|ADMIN_LISTEN|ADDRS|ADMIN_ADDRS)$|^CHAT_EVENTS_ADDRS$/;
RULES['tls'] = (m) => {
  const errs = [];
  const seen = new Set();
  for (const [prog, p] of Object.entries(PROGRAMS)) {
    const d = m.get('Deployment', prog);
    if (!d) continue;
    const pod = d.spec.template.spec;
    const c = pod.containers.find((x) => x.name === prog);
    if (!c) continue;
    const env = envOf(c, m);
    for (const [k, v] of Object.entries(env)) {
      if (!ADDR_VARS.test(k) || typeof v !== 'string' || k.endsWith('HTTP_LISTEN')) continue;
      for (const a of v.split(',').map((s) => s.trim()).filter(Boolean)) {
        const key = `${k}=${a}`;
        if (!/^tls\+tcp:\/\/[^:/]+:\d+$/.test(a)) { if (!seen.has(key)) errs.push(`${k}: ${a} is not a tls+tcp://HOST:PORT address`); seen.add(key); continue; }
        const [, host, port] = /^tls\+tcp:\/\/([^:/]+):(\d+)$/.exec(a);
        if (k.endsWith('LISTEN')) {
          if (host !== '0.0.0.0' && !(prog === 'svc-gateway' && host === '127.0.0.1')) errs.push(`${k}=${a}: must listen on 0.0.0.0 (every address of the pod)`);
          continue;
        }
        const svc = m.get('Service', host);
        if (!svc) { if (!seen.has(key)) errs.push(`${k}: ${a}: no Service ${host}`); seen.add(key); continue; }
        if (svc.spec.clusterIP !== 'None' && !seen.has(key)) errs.push(`${k}: ${a}: Service ${host} is not headless (discovery needs every pod)`);
        if (!(svc.spec.ports || []).some((sp) => sp.port === +port) && !seen.has(key)) errs.push(`${k}: ${a}: Service ${host} has no port ${port}`);
        seen.add(key);
      }
    }
    // Its certificate, key and the CA: files of the mounted chat-tls.
    const files = {};
    for (const vm of c.volumeMounts || []) {
      const vol = (pod.volumes || []).find((v) => v.name === vm.name);
      const sname = vol?.secret?.secretName;
      if (!sname || !/^chat-tls(-[a-z0-9]{10})?$/.test(sname)) continue;
      const items = vol.secret.items || [];
      for (const it of items) files[`${vm.mountPath.replace(/\/$/, '')}/${it.path}`] = it.key;
      if (!items.length) files[`${vm.mountPath}/*`] = '*';
    }
    const want = { CHAT_TLS_CERT: `${p.kind}.crt`, CHAT_TLS_KEY: `${p.kind}.key`, CHAT_TLS_CA: 'ca.crt' };
    for (const [k, key] of Object.entries(want)) {
      const v = env[k];
      if (typeof v !== 'string' || !v) { errs.push(`${prog}: ${k} is not set`); continue; }
      if (files[v] !== key && !files[`${path.dirname(v)}/*`]) errs.push(`${prog}: ${k}=${v} is not the key ${key} of a mounted chat-tls Secret`);
    }
    if (env.CHAT_TLS_SERVER_NAME !== undefined && env.CHAT_TLS_SERVER_NAME !== 'chat-internal') {
      errs.push(`${prog}: CHAT_TLS_SERVER_NAME=${env.CHAT_TLS_SERVER_NAME}: the certificates of deploy/tls/gen-certs.sh name chat-internal`);
    }
  }
  return errs;
};

// Secrets: referenced where needed, never written into the base or prod.
function secretRefs(w) {
  const refs = [];
  for (const c of [...(w.pod.initContainers || []), ...(w.pod.containers || [])]) {
    for (const e of c.env || []) if (e.valueFrom?.secretKeyRef) refs.push({ name: e.valueFrom.secretKeyRef.name, key: e.valueFrom.secretKeyRef.key, what: `${c.name} env ${e.name}` });
    for (const ef of c.envFrom || []) if (ef.secretRef) refs.push({ name: ef.secretRef.name, what: `${c.name} envFrom` });
  }
  for (const v of w.pod.volumes || []) {
    if (v.secret) {
      const items = v.secret.items || [];
      if (!items.length) refs.push({ name: v.secret.secretName, what: `volume ${v.name}` });
      for (const it of items) refs.push({ name: v.secret.secretName, key: it.key, what: `volume ${v.name}` });
    }
    for (const s of v.projected?.sources || []) {
      if (s.secret) for (const it of s.secret.items || [{}]) refs.push({ name: s.secret.name, key: it.key, what: `volume ${v.name}` });
    }
  }
  return refs;
}
const baseName = (n) => n.replace(/-[a-z0-9]{10}$/, '');
RULES['secrets'] = (m, ctx) => {
  const errs = [];
  const secrets = m.all('Secret');
  if (ctx.overlay === 'base' && secrets.length) errs.push(`the base has Secrets (${secrets.map((s) => s.metadata.name)}): it must only reference them`);
  if (ctx.overlay === 'prod' && secrets.length) errs.push(`prod has Secrets (${secrets.map((s) => s.metadata.name)}): prod's are made out of band`);
  for (const cm of m.all('ConfigMap')) {
    for (const [k, v] of Object.entries(cm.data || {})) {
      if (SECRET_NAME_RE.test(k) && !/_FILE$/.test(k)) errs.push(`ConfigMap ${cm.metadata.name}: ${k} looks like a secret (secrets go into chat-secrets)`);
      if (/password=|BEGIN [A-Z ]*PRIVATE KEY/.test(String(v))) errs.push(`ConfigMap ${cm.metadata.name}: ${k} holds a secret value`);
    }
  }
  for (const d of m.all('Deployment').concat(m.all('StatefulSet'))) {
    for (const c of d.spec.template.spec.containers || []) {
      for (const e of c.env || []) {
        if (SECRET_NAME_RE.test(e.name) && e.value !== undefined && !/_FILE$/.test(e.name)) errs.push(`${d.kind} ${d.metadata.name}: env ${e.name} has a literal value (use a secretKeyRef)`);
      }
    }
  }
  // What each program must reference.
  const need = {
    'svc-gateway': [['chat-secrets', 'session-secret'], ['chat-secrets', 'admin-token'], ['chat-tls', 'gateway.key']],
    'svc-message': [['chat-secrets', 'pg-dsn'], ['chat-secrets', 'admin-token'], ['chat-tls', 'message.key']],
    'svc-match': [['chat-secrets', 'admin-token'], ['chat-tls', 'match.key']],
    'svc-presence': [['chat-secrets', 'admin-token'], ['chat-tls', 'presence.key']],
  };
  for (const w of m.workloads) {
    const refs = secretRefs(w);
    for (const [sname, key] of need[w.name] || []) {
      if (!refs.some((r) => baseName(r.name) === sname && r.key === key)) errs.push(`${w.name}: does not reference ${sname} key ${key}`);
    }
    for (const r of refs) {
      if (ctx.overlay === 'base' || ctx.overlay === 'prod') {
        const keys = OUT_OF_BAND[r.name];
        if (!keys) errs.push(`${w.kind} ${w.name} ${r.what}: Secret ${r.name} is not one of those made out of band (${Object.keys(OUT_OF_BAND)})`);
        else if (r.key && !keys.includes(r.key)) errs.push(`${w.kind} ${w.name} ${r.what}: key ${r.key} is not in the documented ${r.name}`);
      } else {
        const s = m.get('Secret', r.name);
        if (!s) errs.push(`${w.kind} ${w.name} ${r.what}: Secret ${r.name} is not in the overlay`);
        else if (r.key && !Object.hasOwn(s.data || {}, r.key) && !Object.hasOwn(s.stringData || {}, r.key)) errs.push(`${w.kind} ${w.name} ${r.what}: Secret ${r.name} has no key ${r.key}`);
      }
    }
  }
  // The admin secret is read from its file, never from the environment.
  for (const prog of Object.keys(PROGRAMS)) {
    const d = m.get('Deployment', prog);
    const c = d?.spec.template.spec.containers.find((x) => x.name === prog);
    if (!c) continue;
    const env = envOf(c, m);
    if (env.CHAT_ADMIN_TOKEN !== undefined) errs.push(`${prog}: CHAT_ADMIN_TOKEN is set; use CHAT_ADMIN_TOKEN_FILE (a mounted chat-secrets admin-token)`);
    const f = env.CHAT_ADMIN_TOKEN_FILE;
    const mounted = (c.volumeMounts || []).some((vm) => {
      const vol = (d.spec.template.spec.volumes || []).find((v) => v.name === vm.name);
      return vol?.secret && baseName(vol.secret.secretName) === 'chat-secrets' &&
        (vol.secret.items || []).some((it) => it.key === 'admin-token' && `${vm.mountPath.replace(/\/$/, '')}/${it.path}` === f);
    });
    if (!mounted) errs.push(`${prog}: CHAT_ADMIN_TOKEN_FILE=${f} is not the mounted chat-secrets admin-token`);
  }
  return errs;
};

// PostgreSQL and Redis: outside the cluster in prod, StatefulSets in dev.
RULES['datastores'] = (m, ctx) => {
  const errs = [];
  const runs = (img) => m.workloads.filter((w) => (w.pod.containers || []).some((c) => new RegExp(`(^|/)${img}(:|@|$)`).test(c.image || '')));
  const cm = m.all('ConfigMap').find((c) => c.data?.CHAT_REDIS_HOST !== undefined);
  if (!cm) errs.push('no ConfigMap sets CHAT_REDIS_HOST');
  const names = { postgres: 'postgres', redis: cm?.data?.CHAT_REDIS_HOST || 'redis' };
  for (const [store, svcName] of Object.entries(names)) {
    const svc = m.get('Service', svcName);
    if (!svc) { errs.push(`no Service ${svcName} for ${store}`); continue; }
    const ws = runs(store);
    if (ctx.overlay === 'prod') {
      if (ws.length) errs.push(`prod runs ${store} in the cluster (${ws.map((w) => `${w.kind} ${w.name}`)}): it must be external`);
      if (svc.spec.type === 'ExternalName') {
        if (!svc.spec.externalName) errs.push(`Service ${svcName}: ExternalName without externalName`);
      } else {
        if (svc.spec.selector && Object.keys(svc.spec.selector).length) errs.push(`Service ${svcName} has a selector: an external ${store} needs a Service without one`);
        const slices = m.all('EndpointSlice').filter((s) => s.metadata.labels?.['kubernetes.io/service-name'] === svcName && s.metadata.namespace === svc.metadata.namespace);
        if (!slices.length) errs.push(`Service ${svcName}: no EndpointSlice (label kubernetes.io/service-name: ${svcName}) with the external addresses`);
        for (const s of slices) {
          if (!(s.endpoints || []).some((e) => (e.addresses || []).length)) errs.push(`EndpointSlice ${s.metadata.name}: no address`);
          for (const sp of svc.spec.ports || []) {
            if (!(s.ports || []).some((p) => (p.name ?? '') === (sp.name ?? '') && p.port === (typeof sp.targetPort === 'number' ? sp.targetPort : sp.port))) {
              errs.push(`EndpointSlice ${s.metadata.name}: no port named "${sp.name ?? ''}" = ${sp.port} (the Service's)`);
            }
          }
        }
      }
    } else if (ctx.overlay === 'dev') {
      const sts = ws.filter((w) => w.kind === 'StatefulSet');
      if (!sts.length) { errs.push(`dev has no StatefulSet running ${store}`); continue; }
      for (const w of sts) {
        if (!(w.obj.spec.volumeClaimTemplates || []).length) errs.push(`StatefulSet ${w.name}: no volumeClaimTemplates (its data needs a PVC)`);
        if (!selectorMatches({ matchLabels: svc.spec.selector || {} }, w.labels) || !Object.keys(svc.spec.selector || {}).length) errs.push(`Service ${svcName} does not select StatefulSet ${w.name}`);
        if (w.obj.spec.serviceName !== svcName) errs.push(`StatefulSet ${w.name}: serviceName ${w.obj.spec.serviceName}, Service is ${svcName}`);
      }
    } else if (!ws.length && !m.all('EndpointSlice').some((s) => s.metadata.labels?.['kubernetes.io/service-name'] === svcName) && svc.spec.type !== 'ExternalName') {
      errs.push(`${store}: neither run in the overlay nor external`);
    }
  }
  if (ctx.overlay === 'dev') {
    const dsn = m.all('Secret').find((s) => baseName(s.metadata.name) === 'chat-secrets')?.data?.['pg-dsn'];
    const text = dsn ? Buffer.from(dsn.replace(/\s/g, ''), 'base64').toString() : '';
    const host = /(?:^|\s)host=(\S+)/.exec(text)?.[1];
    if (host !== names.postgres) errs.push(`dev pg-dsn host=${host}: must be the Service ${names.postgres}`);
  }
  return errs;
};

// Which rules apply where: the base has no data stores and no secrets.
const RULES_FOR = (overlay) => Object.keys(RULES).filter((r) => overlay !== 'base' || r !== 'datastores');

export function checkAll(sets, { quiet = false } = {}) {
  const failures = [];
  for (const m of sets) {
    for (const r of RULES_FOR(m.name)) {
      let errs;
      try {
        errs = RULES[r](m, { overlay: m.name });
      } catch (e) {
        errs = [`the rule crashed: ${e.stack.split('\n').slice(0, 2).join(' ')}`];
      }
      for (const e of errs) failures.push({ overlay: m.name, rule: r, msg: e });
      if (!quiet) {
        if (errs.length) for (const e of errs) console.error(`FAIL ${m.name} ${r}: ${e}`);
        else console.log(`ok   ${m.name} ${r}`);
      }
    }
  }
  return failures;
}

// ---- self-test: one defect each, and the rule that must catch it ------------
const dep = (m, n) => m.get('Deployment', n);
const ctr = (m, n) => dep(m, n).spec.template.spec.containers.find((c) => c.name === n);
const drop = (m, kind, name) => { m.docs = m.docs.filter((d) => !(d.kind === kind && d.metadata.name === name)); };
const cmOf = (m) => m.all('ConfigMap').find((c) => c.data?.CHAT_MESSAGE_ADDRS);
export const MUTATIONS = [
  ['prod', 'deployments', 'svc-match Deployment removed', (m) => drop(m, 'Deployment', 'svc-match')],
  ['prod', 'services', 'svc-message not headless', (m) => { delete m.get('Service', 'svc-message').spec.clusterIP; }],
  ['dev', 'services', 'svc-gateway-admin without publishNotReadyAddresses', (m) => { delete m.get('Service', 'svc-gateway-admin').spec.publishNotReadyAddresses; }],
  ['prod', 'probes', 'gateway readiness probe removed', (m) => { delete ctr(m, 'svc-gateway').readinessProbe; }],
  ['dev', 'probes', 'svc-match liveness probe on the rpc port', (m) => { ctr(m, 'svc-match').livenessProbe.httpGet.port = 'rpc'; }],
  ['prod', 'probes', 'svc-presence HTTP on 127.0.0.1', (m) => { cmOf(m).data.CHAT_PRESENCE_HTTP_LISTEN = '127.0.0.1:7404'; }],
  ['prod', 'resources', 'svc-match without limits', (m) => { delete ctr(m, 'svc-match').resources.limits; }],
  ['dev', 'resources', 'postgres without a memory request', (m) => { delete m.get('StatefulSet', 'postgres').spec.template.spec.containers[0].resources.requests.memory; }],
  ['prod', 'rollout', 'svc-message maxUnavailable 1', (m) => { dep(m, 'svc-message').spec.strategy.rollingUpdate.maxUnavailable = 1; }],
  ['prod', 'autoscaling', 'gateway HPA without the connections metric', (m) => {
    const h = m.get('HorizontalPodAutoscaler', 'svc-gateway'); h.spec.metrics = h.spec.metrics.filter((x) => x.type !== 'Pods'); }],
  ['dev', 'autoscaling', 'gateway HPA without the CPU fallback', (m) => {
    const h = m.get('HorizontalPodAutoscaler', 'svc-gateway'); h.spec.metrics = h.spec.metrics.filter((x) => x.type !== 'Resource'); }],
  ['prod', 'autoscaling', 'svc-presence HPA removed', (m) => drop(m, 'HorizontalPodAutoscaler', 'svc-presence')],
  ['prod', 'disruption', 'svc-presence PDB removed', (m) => drop(m, 'PodDisruptionBudget', 'svc-presence')],
  ['prod', 'gateway-drain', 'grace period 30 s for a 25 s drain', (m) => { dep(m, 'svc-gateway').spec.template.spec.terminationGracePeriodSeconds = 30; }],
  ['dev', 'gateway-drain', 'no preStop', (m) => { delete ctr(m, 'svc-gateway').lifecycle; }],
  ['prod', 'gateway-drain', 'Deployment renamed chat-prod-svc-gateway (pod names over 32)', (m) => { dep(m, 'svc-gateway').metadata.name = 'chat-prod-svc-gateway'; }, /break the gateway id rule/],
  ['prod', 'security', 'svc-message root filesystem writable', (m) => { ctr(m, 'svc-message').securityContext.readOnlyRootFilesystem = false; }],
  ['prod', 'security', 'gateway TLS files world-readable (0444)', (m) => { dep(m, 'svc-gateway').spec.template.spec.volumes.find((v) => v.name === 'tls').secret.defaultMode = 0o444; }],
  ['dev', 'security', 'svc-match as root', (m) => { ctr(m, 'svc-match').securityContext.runAsUser = 0; }],
  ['prod', 'network', 'svc-message open to every source', (m) => { m.get('NetworkPolicy', 'svc-message').spec.ingress[0].from = []; }],
  ['prod', 'network', 'svc-match and the default deny removed', (m) => { drop(m, 'NetworkPolicy', 'svc-match'); drop(m, 'NetworkPolicy', 'default-deny-ingress'); }],
  ['dev', 'network', 'gateway admin open to every namespace', (m) => { m.get('NetworkPolicy', 'svc-gateway').spec.ingress[1].from = [{ namespaceSelector: {} }]; }],
  ['dev', 'network', 'postgres open to the world', (m) => { m.get('NetworkPolicy', 'postgres').spec.ingress[0].from.push({ ipBlock: { cidr: '0.0.0.0/0' } }); }],
  ['prod', 'tls', 'CHAT_MESSAGE_ADDRS over plain tcp://', (m) => { cmOf(m).data.CHAT_MESSAGE_ADDRS = 'tcp://svc-message:7201'; }],
  ['dev', 'tls', 'svc-presence without its key file', (m) => {
    const v = dep(m, 'svc-presence').spec.template.spec.volumes.find((x) => x.name === 'tls'); v.secret.items = v.secret.items.filter((i) => !i.key.endsWith('.key')); }],
  ['prod', 'secrets', 'a Secret in prod', (m) => { m.docs.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'chat-secrets', namespace: 'chat' }, stringData: { 'admin-token': 'x' } }); }],
  ['base', 'secrets', 'CHAT_SESSION_SECRET in the ConfigMap', (m) => { cmOf(m).data.CHAT_SESSION_SECRET = 'hunter2'; }],
  ['dev', 'secrets', 'svc-message without its DSN', (m) => { ctr(m, 'svc-message').env = ctr(m, 'svc-message').env.filter((e) => e.name !== 'CHAT_PG_DSN'); }],
  ['prod', 'datastores', 'a PostgreSQL StatefulSet in prod', (m) => {
    m.docs.push({ apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'postgres', namespace: 'chat' },
      spec: { serviceName: 'postgres', selector: { matchLabels: { a: 'pg' } }, template: { metadata: { labels: { a: 'pg' } }, spec: { containers: [{ name: 'pg', image: 'postgres:16' }] } } } }); }],
  ['prod', 'datastores', 'the Redis EndpointSlice removed', (m) => drop(m, 'EndpointSlice', 'redis-external')],
  ['dev', 'datastores', 'the Redis StatefulSet removed', (m) => drop(m, 'StatefulSet', 'redis')],
];

function selfTest(sets) {
  let bad = 0;
  const byName = Object.fromEntries(sets.map((m) => [m.name, m]));
  for (const [overlay, rule, what, mutate, expect] of MUTATIONS) {
    const orig = byName[overlay];
    if (!orig) { console.error(`SELF-TEST ${overlay}: no such rendering`); bad++; continue; }
    const m = new Manifests(overlay, clone(orig.docs));
    try {
      mutate(m);
    } catch (e) {
      console.error(`SELF-TEST FAIL ${overlay} ${rule}: cannot apply "${what}": ${e.message}`);
      bad++;
      continue;
    }
    const f = checkAll([m], { quiet: true }).filter((x) => x.rule === rule && (!expect || expect.test(x.msg)));
    if (f.length) console.log(`self-test ok   ${overlay} ${rule} catches "${what}": ${f[0].msg}`);
    else { console.error(`SELF-TEST FAIL ${overlay} ${rule} did not catch "${what}"${expect ? ` (with ${expect})` : ''}`); bad++; }
  }
  return bad;
}

function load(dir) {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
  return files.map((f) => new Manifests(path.basename(f, '.yaml'),
    yaml.loadAll(fs.readFileSync(path.join(dir, f), 'utf8')).filter((d) => d !== null)));
}

function main(argv) {
  const self = argv[0] === '--self-test';
  const dir = self ? argv[1] : argv[0];
  if (!dir) { console.error('usage: node rules.mjs [--self-test] DIR'); return 2; }
  const sets = load(dir);
  const failures = checkAll(sets);
  const n = sets.reduce((a, m) => a + RULES_FOR(m.name).length, 0);
  console.log(`rules: ${n - new Set(failures.map((f) => `${f.overlay}/${f.rule}`)).size} of ${n} rule checks hold ` +
    `(${sets.map((m) => m.name).join(', ')}); ${failures.length} problems`);
  let bad = failures.length ? 1 : 0;
  if (self) {
    const missed = selfTest(sets);
    console.log(`self-test: ${MUTATIONS.length - missed} of ${MUTATIONS.length} deliberate defects caught by their rule`);
    if (missed) bad = 1;
  }
  return bad;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exit(main(process.argv.slice(2)));
