// Validates rendered Kubernetes manifests offline against the API models of
// Kubernetes 1.32: the classes of @kubernetes/client-node 1.1 (generated from
// the OpenAPI spec v1.32.0). Each object is walked field by field:
//   - an apiVersion/kind not in KINDS below is an error (no schema known);
//   - a field its model does not have is an error (as kubectl's strict
//     field validation is);
//   - a value of the wrong type is an error: string, integer (int32/int64,
//     with the int32 range), number, boolean, date-time, int-or-string,
//     base64 (format byte), quantity, arrays, maps, nested models;
//   - a field the model requires (non-optional in the generated .d.ts) that
//     is missing or null is an error.
// null is accepted for optional fields (the API reads it as absent).
//
//   node schema.mjs FILE.yaml...     exit 0 all valid, 1 errors (listed), 2 usage
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import yaml from 'js-yaml';
import * as models from '@kubernetes/client-node/dist/gen/models/all.js';

const require = createRequire(import.meta.url);
const MODELS_DIR = path.dirname(require.resolve('@kubernetes/client-node/dist/gen/models/all.js'));
const CLIENT_VERSION = JSON.parse(
  fs.readFileSync(path.join(MODELS_DIR, '../../../package.json'), 'utf8')).version;

// apiVersion/kind -> model class. Only what a chat deployment may contain;
// anything else fails until it is added here.
const KINDS = {
  'v1/Namespace': 'V1Namespace',
  'v1/ConfigMap': 'V1ConfigMap',
  'v1/Secret': 'V1Secret',
  'v1/Service': 'V1Service',
  'v1/ServiceAccount': 'V1ServiceAccount',
  'v1/PersistentVolumeClaim': 'V1PersistentVolumeClaim',
  'v1/Pod': 'V1Pod',
  'apps/v1/Deployment': 'V1Deployment',
  'apps/v1/StatefulSet': 'V1StatefulSet',
  'apps/v1/DaemonSet': 'V1DaemonSet',
  'batch/v1/Job': 'V1Job',
  'batch/v1/CronJob': 'V1CronJob',
  'autoscaling/v2/HorizontalPodAutoscaler': 'V2HorizontalPodAutoscaler',
  'policy/v1/PodDisruptionBudget': 'V1PodDisruptionBudget',
  'networking.k8s.io/v1/NetworkPolicy': 'V1NetworkPolicy',
  'networking.k8s.io/v1/Ingress': 'V1Ingress',
  'discovery.k8s.io/v1/EndpointSlice': 'V1EndpointSlice',
  'rbac.authorization.k8s.io/v1/Role': 'V1Role',
  'rbac.authorization.k8s.io/v1/RoleBinding': 'V1RoleBinding',
};

// Fields whose OpenAPI type is resource.Quantity (the generated models say
// "string"; the API takes a quantity string or a JSON number).
const QUANTITY = {
  V1ResourceRequirements: ['limits', 'requests'],
  V1VolumeResourceRequirements: ['limits', 'requests'],
  V1EmptyDirVolumeSource: ['sizeLimit'],
  V1ResourceFieldSelector: ['divisor'],
  V2MetricTarget: ['averageValue', 'value'],
  V1LimitRangeItem: ['_default', 'defaultRequest', 'max', 'maxLimitRequestRatio', 'min'],
  V1ResourceQuotaSpec: ['hard'],
  V1PersistentVolumeSpec: ['capacity'],
  V1PersistentVolumeClaimStatus: ['capacity', 'allocatedResources'],
  V1Overhead: ['podFixed'],
};
const QUANTITY_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$/;
const DATE_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const requiredCache = new Map();
// The fields a model requires: its non-optional properties in the .d.ts.
function requiredOf(cls) {
  if (requiredCache.has(cls)) return requiredCache.get(cls);
  const req = new Set();
  const file = path.join(MODELS_DIR, cls + '.d.ts');
  if (fs.existsSync(file)) {
    const text = fs.readFileSync(file, 'utf8');
    const byName = new Map(models[cls].attributeTypeMap.map((a) => [a.name, a.baseName]));
    for (const m of text.matchAll(/^\s*'([^']+)'(\?)?:/gm)) {
      if (!m[2] && byName.has(m[1])) req.add(byName.get(m[1]));
    }
  }
  requiredCache.set(cls, req);
  return req;
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const show = (v) => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + '...' : s;
};

// Checks value against type (a model-map type string); errors go to out.
function check(value, type, format, where, out, quantity = false) {
  if (value === null || value === undefined) return;
  let m;
  if ((m = /^Array<(.+)>$/.exec(type))) {
    if (!Array.isArray(value)) return out.push(`${where}: ${show(value)} is not a list (${type})`);
    value.forEach((v, i) => check(v, m[1], format, `${where}[${i}]`, out, quantity));
    return;
  }
  if ((m = /^\{ \[key: string\]: (.+); \}$/.exec(type))) {
    if (!isObject(value)) return out.push(`${where}: ${show(value)} is not a map (${type})`);
    for (const [k, v] of Object.entries(value)) check(v, m[1], format, `${where}.${k}`, out, quantity);
    return;
  }
  if (quantity) {
    const ok = (typeof value === 'number' && Number.isFinite(value)) ||
      (typeof value === 'string' && QUANTITY_RE.test(value));
    if (!ok) out.push(`${where}: ${show(value)} is not a quantity (e.g. 250m, 1Gi)`);
    return;
  }
  switch (type) {
    case 'any':
      return;
    case 'string':
      if (typeof value !== 'string') return out.push(`${where}: ${show(value)} is not a string`);
      // Go's base64 decoder (the API's) skips \r and \n.
      if (format === 'byte' && !BASE64_RE.test(value.replace(/[\r\n]/g, ''))) {
        out.push(`${where}: not base64`);
      }
      return;
    case 'boolean':
      if (typeof value !== 'boolean') out.push(`${where}: ${show(value)} is not a boolean`);
      return;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        return out.push(`${where}: ${show(value)} is not a number (${format || 'number'})`);
      }
      if ((format === 'int32' || format === 'int64') && !Number.isInteger(value)) {
        return out.push(`${where}: ${show(value)} is not an integer (${format})`);
      }
      if (format === 'int32' && (value < -2147483648 || value > 2147483647)) {
        out.push(`${where}: ${value} is out of the int32 range`);
      }
      return;
    case 'Date':
      if (typeof value !== 'string' || !DATE_RE.test(value)) out.push(`${where}: ${show(value)} is not an RFC 3339 time`);
      return;
    case 'IntOrString':
      if (!(typeof value === 'string' || Number.isInteger(value))) {
        out.push(`${where}: ${show(value)} is neither an integer nor a string`);
      }
      return;
  }
  const cls = models[type];
  if (!cls || !cls.attributeTypeMap) return out.push(`${where}: no model ${type} (checker bug)`);
  if (!isObject(value)) return out.push(`${where}: ${show(value)} is not an object (${type})`);
  const attrs = new Map(cls.attributeTypeMap.map((a) => [a.baseName, a]));
  const quantities = new Set((QUANTITY[type] || []).map(
    (n) => (cls.attributeTypeMap.find((a) => a.name === n) || {}).baseName));
  for (const [k, v] of Object.entries(value)) {
    const a = attrs.get(k);
    const sub = where ? `${where}.${k}` : k;
    if (!a) {
      out.push(`${sub}: unknown field "${k}" (${type} has no such field)`);
      continue;
    }
    check(v, a.type, a.format, sub, out, quantities.has(k));
  }
  for (const k of requiredOf(type)) {
    if (value[k] === undefined || value[k] === null) {
      out.push(`${where ? where + '.' : ''}${k}: required by ${type}, missing`);
    }
  }
}

export function validateObject(obj) {
  const out = [];
  if (!isObject(obj)) return ['the document is not an object'];
  const key = `${obj.apiVersion}/${obj.kind}`;
  const cls = KINDS[key];
  if (!cls) return [`apiVersion/kind ${key}: no Kubernetes 1.32 schema known (see KINDS in schema.mjs)`];
  check(obj, cls, '', '', out);
  return out;
}

function main(files) {
  if (files.length === 0) {
    console.error('usage: node schema.mjs FILE.yaml...');
    return 2;
  }
  let bad = 0, total = 0;
  for (const file of files) {
    let docs;
    try {
      docs = yaml.loadAll(fs.readFileSync(file, 'utf8')).filter((d) => d !== null);
    } catch (e) {
      console.error(`${file}: not YAML: ${e.message}`);
      bad++;
      continue;
    }
    let fileBad = 0;
    for (const obj of docs) {
      total++;
      const name = `${obj?.kind}/${obj?.metadata?.namespace ? obj.metadata.namespace + '/' : ''}${obj?.metadata?.name}`;
      const errs = validateObject(obj);
      if (errs.length) {
        fileBad++;
        for (const e of errs) console.error(`${path.basename(file)}: ${name}: ${e}`);
      }
    }
    bad += fileBad;
    console.log(`${path.basename(file)}: ${docs.length} objects, ${fileBad ? fileBad + ' invalid' : 'all valid'}`);
  }
  console.log(`schema: Kubernetes 1.32 models of @kubernetes/client-node ${CLIENT_VERSION}: ` +
    `${total} objects, ${bad} invalid`);
  return bad ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exit(main(process.argv.slice(2)));
