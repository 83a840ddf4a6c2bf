// The objects the Kubernetes spawner creates — a pod, a service and a PVC per server — from
// KubeSpawner's traits, named and labelled as KubeSpawner names them (its 'safe' slug scheme by
// default, 'escape' on request), with the seed's DynamicKubeSpawner built in: {user},
// {is_admin} and {is_not_admin} in volumes, volume mounts and init containers' mounts, and a
// readOnly that renders to a string becomes a boolean.
import { createHash } from 'node:crypto';
import { serverEnvironment } from './environment.ts';
import type { JsonObject, JsonValue, ServerSpec } from './spawner.ts';
import { TemplateError } from './spawner-errors.ts';
import { escapeName, formatTemplate, type TemplateNamespace, templateBoolean } from './templating.ts';

// ---------------------------------------------------------------------------------------------
// Slugs (KubeSpawner's slugs.py, reimplemented from its documented rules)

/** KubeSpawner's legacy 'escape' slug: escapism with [a-z0-9] safe and '-' as the escape character. */
export const escapeSlug = escapeName;

const hashLength = 8;
const objectPattern = /^[a-z0-9-]+$/;
const labelPattern = /^[a-z0-9._-]+$/i;

/** A DNS label (RFC 1035 and 1123): ≤63, [a-z0-9-], starts with a letter, ends alphanumeric. */
export function isValidObjectName(name: string): boolean {
  return (
    name.length >= 1 &&
    name.length <= 63 &&
    /^[a-z]/.test(name) &&
    /[a-z0-9]$/.test(name) &&
    objectPattern.test(name)
  );
}

/** A label value: empty, or ≤63 of [A-Za-z0-9._-] starting and ending alphanumeric. */
export function isValidLabel(value: string): boolean {
  if (value === '') return true;
  return (
    value.length <= 63 && /^[A-Za-z0-9]/.test(value) && /[A-Za-z0-9]$/.test(value) && labelPattern.test(value)
  );
}

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Lower-case, runs of other characters as one '-', trimmed to maxLength, starting with a letter. */
function extractSafeName(name: string, maxLength: number): string {
  let safe = name.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  safe = safe.replace(/^-+/, '').slice(0, maxLength).replace(/-+$/, '');
  if (safe && !/^[a-z]/.test(safe)) safe = `x-${safe.slice(0, maxLength - 2)}`;
  return safe || 'x';
}

/** `<safe part>---<8 hex of sha256(name)>`, at most maxLength characters. */
export function stripAndHash(name: string, maxLength = 32): string {
  const nameLength = maxLength - (hashLength + 3);
  if (nameLength < 1) throw new RangeError(`cannot make safe names shorter than ${hashLength + 4}`);
  return `${extractSafeName(name, nameLength)}---${sha256Hex(Buffer.from(name, 'utf8')).slice(0, hashLength)}`;
}

/** The name itself when it is already valid (and holds no '--'), else strip-and-hash. */
export function safeSlug(
  name: string,
  isValid: (s: string) => boolean = isValidObjectName,
  maxLength?: number,
): string {
  if (name.includes('--')) return stripAndHash(name, maxLength ?? 32);
  if (isValid(name) && (maxLength === undefined || name.length <= maxLength)) return name;
  return stripAndHash(name, maxLength ?? 32);
}

/** `<a>--<b>---<hash>` with one hash over all parts (0xFF between them), at most maxLength. */
export function multiSlug(names: string[], maxLength = 48): string {
  const hash = createHash('sha256');
  names.forEach((name, i) => {
    if (i > 0) hash.update(Buffer.from([0xff]));
    hash.update(Buffer.from(name, 'utf8'));
  });
  const perName = Math.floor((maxLength - (hashLength + 1)) / names.length);
  const nameMax = perName - 2;
  if (nameMax < 2) throw new RangeError(`not enough characters for ${names.length} names: ${maxLength}`);
  const parts = names.map((name) => extractSafeName(name, nameMax));
  return `${parts.join('--')}---${hash.digest('hex').slice(0, hashLength)}`;
}

// ---------------------------------------------------------------------------------------------
// Traits

/**
 * KubeSpawner's traits by KubeSpawner's own names (snake_case, so a profile's
 * kubespawner_override applies key for key). Memory sizes are bytes, CPU in cores.
 */
export interface KubeTraits {
  namespace: string;
  image: string;
  image_pull_policy: string | null;
  image_pull_secrets: JsonValue[];
  cmd: string[] | null;
  args: string[];
  port: number;
  ip: string;
  environment: Record<string, JsonValue>;
  default_url: string;
  notebook_dir: string;
  debug: boolean;
  start_timeout: number;
  http_timeout: number;
  cpu_guarantee: number | null;
  cpu_limit: number | null;
  mem_guarantee: number | null;
  mem_limit: number | null;
  extra_resource_guarantees: Record<string, JsonValue>;
  extra_resource_limits: Record<string, JsonValue>;
  service_account: string | null;
  automount_service_account_token: boolean | null;
  priority_class_name: string;
  scheduler_name: string | null;
  node_selector: Record<string, JsonValue>;
  tolerations: JsonValue[];
  node_affinity_required: JsonValue[];
  node_affinity_preferred: JsonValue[];
  pod_affinity_required: JsonValue[];
  pod_affinity_preferred: JsonValue[];
  pod_anti_affinity_required: JsonValue[];
  pod_anti_affinity_preferred: JsonValue[];
  init_containers: JsonValue[];
  extra_containers: JsonValue[];
  volumes: JsonValue[];
  volume_mounts: JsonValue[];
  extra_labels: Record<string, JsonValue>;
  extra_annotations: Record<string, JsonValue>;
  common_labels: Record<string, JsonValue>;
  component_label: string;
  extra_pod_config: Record<string, JsonValue>;
  extra_container_config: Record<string, JsonValue>;
  lifecycle_hooks: Record<string, JsonValue>;
  working_dir: string | null;
  uid: number | null;
  gid: number | null;
  fs_gid: number | null;
  supplemental_gids: number[];
  privileged: boolean;
  allow_privilege_escalation: boolean | null;
  container_security_context: Record<string, JsonValue>;
  pod_security_context: Record<string, JsonValue>;
  services_enabled: boolean;
  pod_name_template: string;
  dns_name_template: string;
  slug_scheme: 'safe' | 'escape';
  storage_pvc_ensure: boolean;
  pvc_name_template: string;
  storage_capacity: string | null;
  storage_access_modes: string[];
  storage_class: string | null;
  storage_selector: Record<string, JsonValue>;
  storage_extra_labels: Record<string, JsonValue>;
  storage_extra_annotations: Record<string, JsonValue>;
  remember_pvc_name: boolean;
  delete_pvc: boolean;
  delete_grace_period: number;
  delete_stopped_pods: boolean;
  events_enabled: boolean;
  k8s_api_request_timeout: number;
  k8s_api_request_retry_timeout: number;
}

/** KubeSpawner's defaults (namespace is filled from POD_NAMESPACE by the config). */
export const defaultKubeTraits: KubeTraits = {
  namespace: 'default',
  image: 'quay.io/jupyterhub/singleuser:latest',
  image_pull_policy: null,
  image_pull_secrets: [],
  cmd: null,
  args: [],
  port: 8888,
  ip: '0.0.0.0',
  environment: {},
  default_url: '',
  notebook_dir: '',
  debug: false,
  start_timeout: 60,
  http_timeout: 30,
  cpu_guarantee: null,
  cpu_limit: null,
  mem_guarantee: null,
  mem_limit: null,
  extra_resource_guarantees: {},
  extra_resource_limits: {},
  service_account: null,
  automount_service_account_token: null,
  priority_class_name: '',
  scheduler_name: null,
  node_selector: {},
  tolerations: [],
  node_affinity_required: [],
  node_affinity_preferred: [],
  pod_affinity_required: [],
  pod_affinity_preferred: [],
  pod_anti_affinity_required: [],
  pod_anti_affinity_preferred: [],
  init_containers: [],
  extra_containers: [],
  volumes: [],
  volume_mounts: [],
  extra_labels: {},
  extra_annotations: {},
  common_labels: {
    'app.kubernetes.io/name': 'jupyterhub',
    'app.kubernetes.io/managed-by': 'kubespawner',
    app: 'jupyterhub',
    heritage: 'jupyterhub',
  },
  component_label: 'singleuser-server',
  extra_pod_config: {},
  extra_container_config: {},
  lifecycle_hooks: {},
  working_dir: null,
  uid: null,
  gid: null,
  fs_gid: null,
  supplemental_gids: [],
  privileged: false,
  allow_privilege_escalation: false,
  container_security_context: {},
  pod_security_context: {},
  services_enabled: false,
  pod_name_template: 'jupyter-{user_server}',
  dns_name_template: '{name}.{namespace}.svc.cluster.local',
  slug_scheme: 'safe',
  storage_pvc_ensure: false,
  pvc_name_template: 'claim-{user_server}',
  storage_capacity: null,
  storage_access_modes: ['ReadWriteOnce'],
  storage_class: null,
  storage_selector: {},
  storage_extra_labels: {},
  storage_extra_annotations: {},
  remember_pvc_name: true,
  delete_pvc: true,
  delete_grace_period: 1,
  delete_stopped_pods: true,
  events_enabled: true,
  k8s_api_request_timeout: 3,
  k8s_api_request_retry_timeout: 30,
};

type Kind =
  | 'string'
  | 'string?'
  | 'number'
  | 'number?'
  | 'int'
  | 'int?'
  | 'bool'
  | 'bool?'
  | 'bytes?'
  | 'list'
  | 'strings'
  | 'strings?'
  | 'dict'
  | 'slug';

const kinds: Record<keyof KubeTraits, Kind> = {
  namespace: 'string',
  image: 'string',
  image_pull_policy: 'string?',
  image_pull_secrets: 'list',
  cmd: 'strings?',
  args: 'strings',
  port: 'int',
  ip: 'string',
  environment: 'dict',
  default_url: 'string',
  notebook_dir: 'string',
  debug: 'bool',
  start_timeout: 'number',
  http_timeout: 'number',
  cpu_guarantee: 'number?',
  cpu_limit: 'number?',
  mem_guarantee: 'bytes?',
  mem_limit: 'bytes?',
  extra_resource_guarantees: 'dict',
  extra_resource_limits: 'dict',
  service_account: 'string?',
  automount_service_account_token: 'bool?',
  priority_class_name: 'string',
  scheduler_name: 'string?',
  node_selector: 'dict',
  tolerations: 'list',
  node_affinity_required: 'list',
  node_affinity_preferred: 'list',
  pod_affinity_required: 'list',
  pod_affinity_preferred: 'list',
  pod_anti_affinity_required: 'list',
  pod_anti_affinity_preferred: 'list',
  init_containers: 'list',
  extra_containers: 'list',
  volumes: 'list',
  volume_mounts: 'list',
  extra_labels: 'dict',
  extra_annotations: 'dict',
  common_labels: 'dict',
  component_label: 'string',
  extra_pod_config: 'dict',
  extra_container_config: 'dict',
  lifecycle_hooks: 'dict',
  working_dir: 'string?',
  uid: 'int?',
  gid: 'int?',
  fs_gid: 'int?',
  supplemental_gids: 'list',
  privileged: 'bool',
  allow_privilege_escalation: 'bool?',
  container_security_context: 'dict',
  pod_security_context: 'dict',
  services_enabled: 'bool',
  pod_name_template: 'string',
  dns_name_template: 'string',
  slug_scheme: 'slug',
  storage_pvc_ensure: 'bool',
  pvc_name_template: 'string',
  storage_capacity: 'string?',
  storage_access_modes: 'strings',
  storage_class: 'string?',
  storage_selector: 'dict',
  storage_extra_labels: 'dict',
  storage_extra_annotations: 'dict',
  remember_pvc_name: 'bool',
  delete_pvc: 'bool',
  delete_grace_period: 'int',
  delete_stopped_pods: 'bool',
  events_enabled: 'bool',
  k8s_api_request_timeout: 'number',
  k8s_api_request_retry_timeout: 'number',
};

/** The trait names KubeSpawner (and so DynamicKubeSpawner) accepts. */
export const kubeTraitNames = Object.keys(kinds) as Array<keyof KubeTraits>;

/** A problem with one trait; the config turns it into a ConfigError naming where it was set. */
export class KubeTraitError extends Error {}

const byteUnits: Record<string, number> = { K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** JupyterHub's ByteSpecification: an integer, or a number with K, M, G or T (powers of 1024). */
export function parseBytes(value: unknown): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return Math.floor(value);
  if (typeof value === 'string') {
    const match = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)\s*$/.exec(value);
    if (match) return Math.floor(Number(match[1]) * (match[2] ? byteUnits[match[2]]! : 1));
  }
  throw new KubeTraitError(
    `expected bytes such as 256M or 32G (K, M, G, T: powers of 1024), got ${JSON.stringify(value)}`,
  );
}

function isRecord(value: unknown): value is Record<string, JsonValue> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks one trait's value against KubeSpawner's type; returns it in the typed shape. */
export function checkKubeTrait(name: string, value: unknown): unknown {
  const kind = kinds[name as keyof KubeTraits];
  if (!kind) throw new KubeTraitError(`unknown KubeSpawner trait '${name}'`);
  const fail = (expected: string): never => {
    throw new KubeTraitError(`expected ${expected}, got ${JSON.stringify(value)}`);
  };
  const nullable = kind.endsWith('?');
  if (nullable && (value === null || value === undefined)) return null;
  switch (kind) {
    case 'string':
    case 'string?':
      return typeof value === 'string' ? value : fail('a string');
    case 'number':
    case 'number?':
      return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : fail('a number ≥ 0');
    case 'int':
    case 'int?':
      return Number.isInteger(value) ? value : fail('an integer');
    case 'bool':
    case 'bool?':
      return typeof value === 'boolean' ? value : fail('true or false');
    case 'bytes?':
      return parseBytes(value);
    case 'list':
      return Array.isArray(value) ? value : fail('a list');
    case 'strings':
    case 'strings?':
      if (typeof value === 'string') return [value];
      return Array.isArray(value) && value.every((item) => typeof item === 'string')
        ? value
        : fail('a list of strings');
    case 'dict':
      return isRecord(value) ? value : fail('a mapping');
    case 'slug':
      return value === 'safe' || value === 'escape' ? value : fail("'safe' or 'escape'");
  }
}

/** Merges a dict as KubeSpawner's recursive_update: nested dicts merge, null deletes a key. */
function recursiveUpdate(
  target: Record<string, JsonValue>,
  changes: Record<string, JsonValue>,
): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = { ...target };
  for (const [key, value] of Object.entries(changes)) {
    if (isRecord(value)) out[key] = recursiveUpdate(isRecord(out[key]) ? out[key] : {}, value);
    else if (value === null) delete out[key];
    else out[key] = value;
  }
  return out;
}

/**
 * A profile's kubespawner_override applied as KubeSpawner applies it: a mapping merges into a
 * mapping trait (so a GPU profile adds nvidia.com/gpu to the requests), anything else replaces.
 */
export function applyKubeOverride(base: KubeTraits, override: Record<string, unknown>): KubeTraits {
  const traits: Record<string, unknown> = { ...base };
  for (const [name, raw] of Object.entries(override)) {
    let value: unknown;
    try {
      value = isRecord(raw) && isRecord(traits[name]) ? raw : checkKubeTrait(name, raw);
    } catch (error) {
      throw new KubeTraitError(`kubespawner_override.${name}: ${(error as Error).message}`);
    }
    traits[name] = isRecord(value) && isRecord(traits[name]) ? recursiveUpdate(traits[name], value) : value;
  }
  return traits as unknown as KubeTraits;
}

// ---------------------------------------------------------------------------------------------
// Names and templates

export interface KubeNames {
  podName: string;
  pvcName: string;
  dnsName: string;
  namespace: string;
}

/**
 * The fields of KubeSpawner's templates for this server, plus the seed's {user}, {is_admin}
 * and {is_not_admin}. {user} is the escaped name ([a-z0-9-] only), never the raw one, so a user
 * called '../etc' gets '-2e-2e-2fetc' and cannot leave the directory a path puts them in.
 */
export function kubeTemplateNamespace(
  spec: Pick<ServerSpec, 'user' | 'serverName'> & { userId?: number },
  traits: Pick<KubeTraits, 'slug_scheme' | 'namespace'>,
  names?: Partial<KubeNames>,
): TemplateNamespace {
  const rawUser = spec.user.name;
  const rawServer = spec.serverName;
  const maxLength = 48;
  const safeServer = rawServer ? safeSlug(rawServer, isValidObjectName, maxLength) : '';
  const safeUser = safeSlug(rawUser, isValidObjectName, maxLength);
  let safeUserServer: string;
  if (safeUser.length + safeServer.length + 2 > maxLength)
    safeUserServer = multiSlug([rawUser, rawServer], maxLength);
  else safeUserServer = rawServer ? `${safeUser}--${safeServer}` : safeUser;
  const escapedUser = escapeSlug(rawUser);
  const escapedServer = escapeSlug(rawServer);
  const safe = traits.slug_scheme === 'safe';
  const namespace: Record<string, string> = {
    userid: spec.userId === undefined ? '' : String(spec.userId),
    unescaped_username: rawUser,
    unescaped_servername: rawServer,
    hubnamespace: traits.namespace === 'default' ? 'user' : traits.namespace,
    username: safe ? safeUser : escapedUser,
    servername: safe ? safeServer : escapedServer,
    user_server: safe ? safeUserServer : rawServer ? `${escapedUser}--${escapedServer}` : escapedUser,
    safe_username: safeUser,
    safe_servername: safeServer,
    safe_user_server: safeUserServer,
    escaped_username: escapedUser,
    escaped_servername: escapedServer,
    escaped_user_server: `${escapedUser}--${escapedServer}`,
    // The seed's DynamicKubeSpawner.
    user: escapedUser,
    is_admin: spec.user.admin ? 'True' : 'False',
    is_not_admin: spec.user.admin ? 'False' : 'True',
  };
  for (const key of ['podName', 'pvcName', 'namespace'] as const) {
    const field = key === 'podName' ? 'pod_name' : key === 'pvcName' ? 'pvc_name' : 'namespace';
    namespace[field] = names?.[key] ?? traits.namespace;
  }
  return namespace;
}

/** KubeSpawner's _expand_user_properties: render, then drop a '-' the rendering left at the end. */
export function expandName(template: string, namespace: TemplateNamespace): string {
  const rendered = formatTemplate(template, namespace);
  return template.endsWith('-') ? rendered : rendered.replace(/-+$/, '');
}

function expandAll<T extends JsonValue>(value: T, namespace: TemplateNamespace): T {
  if (typeof value === 'string') return expandName(value, namespace) as T;
  if (Array.isArray(value)) return value.map((item) => expandAll(item, namespace)) as T;
  if (isRecord(value)) {
    const out: Record<string, JsonValue> = {};
    for (const [key, item] of Object.entries(value)) out[key] = expandAll(item, namespace);
    return out as T;
  }
  return value;
}

/** The pod, PVC and DNS names of a server, and its namespace. */
export function kubeNames(spec: Pick<ServerSpec, 'user' | 'serverName'>, traits: KubeTraits): KubeNames {
  const namespace = kubeTemplateNamespace(spec, traits);
  const podName = expandName(traits.pod_name_template, namespace);
  const pvcName = expandName(traits.pvc_name_template, namespace);
  if (!isValidObjectName(podName)) {
    throw new TemplateError(
      `KubeSpawner.pod_name_template ${JSON.stringify(traits.pod_name_template)} gives ${JSON.stringify(podName)}, not a valid pod name (≤63 of a-z, 0-9, '-'); use {user_server}, which is always safe`,
    );
  }
  const dnsName = formatTemplate(traits.dns_name_template, { name: podName, namespace: traits.namespace });
  return { podName, pvcName, dnsName, namespace: traits.namespace };
}

/**
 * Whether an object read from the API carries this server's labels: the user's (and for a pod,
 * the server's) name as the hub labels them — the 'safe' slug, or the legacy 'escape' one of
 * KubeSpawner before 7 — and the component. What a saved state names is trusted only then (or
 * when it is the name the templates give), so a forged state cannot make the hub poll, adopt or
 * delete another user's pod or mount or delete another user's PVC.
 */
export function isServersObject(
  object: { metadata?: { labels?: unknown } } | undefined,
  spec: Pick<ServerSpec, 'user' | 'serverName'>,
  traits: Pick<KubeTraits, 'component_label'>,
  kind: 'pod' | 'pvc',
): boolean {
  const labels: unknown = object?.metadata?.labels;
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) return false;
  const label = (key: string): unknown => (labels as Record<string, unknown>)[key];
  const either = (value: unknown, name: string) =>
    typeof value === 'string' && (value === safeSlug(name, isValidLabel) || value === escapeSlug(name));
  if (!either(label('hub.jupyter.org/username'), spec.user.name)) return false;
  if (kind === 'pvc') return label('component') === 'singleuser-storage';
  return (
    label('component') === traits.component_label &&
    either(label('hub.jupyter.org/servername') ?? '', spec.serverName)
  );
}

// ---------------------------------------------------------------------------------------------
// Manifests

function stringMap(value: Record<string, JsonValue>, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, item] of Object.entries(value)) {
    if (item === null) continue;
    if (typeof item === 'object') throw new KubeTraitError(`${what}.${key}: expected a string`);
    out[key] = String(item);
  }
  return out;
}

function quantity(value: JsonValue, what: string): string {
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'string' && value.trim()) return value.trim();
  throw new KubeTraitError(
    `${what}: expected a quantity such as "1", "500m" or "1G", got ${JSON.stringify(value)}`,
  );
}

function labelsOf(
  spec: Pick<ServerSpec, 'user' | 'serverName'>,
  traits: KubeTraits,
  extra: Record<string, JsonValue>,
  ns: TemplateNamespace,
): Record<string, string> {
  return {
    'hub.jupyter.org/username': safeSlug(spec.user.name, isValidLabel),
    ...stringMap(expandAll(extra, ns), 'KubeSpawner.extra_labels'),
    ...stringMap(traits.common_labels, 'KubeSpawner.common_labels'),
  };
}

function podLabels(
  spec: Pick<ServerSpec, 'user' | 'serverName'>,
  traits: KubeTraits,
  ns: TemplateNamespace,
): Record<string, string> {
  return {
    ...labelsOf(spec, traits, traits.extra_labels, ns),
    'app.kubernetes.io/component': traits.component_label,
    component: traits.component_label,
    'hub.jupyter.org/servername': safeSlug(spec.serverName, isValidLabel),
  };
}

function annotationsOf(
  spec: Pick<ServerSpec, 'user' | 'serverName'>,
  extra: Record<string, JsonValue>,
  ns: TemplateNamespace,
): Record<string, string> {
  const annotations: Record<string, string> = { 'hub.jupyter.org/username': spec.user.name };
  if (spec.serverName) annotations['hub.jupyter.org/servername'] = spec.serverName;
  return { ...annotations, ...stringMap(expandAll(extra, ns), 'KubeSpawner.extra_annotations') };
}

/** Mounts as the DynamicKubeSpawner leaves them: a readOnly that is a (rendered) string becomes a boolean. */
function mounts(value: JsonValue, ns: TemplateNamespace, what: string): JsonValue[] {
  if (!Array.isArray(value)) throw new KubeTraitError(`${what}: expected a list of mounts`);
  return value.map((raw, i) => {
    if (!isRecord(raw)) throw new KubeTraitError(`${what}[${i}]: expected a mapping`);
    const mount = expandAll(raw, ns);
    if (typeof mount.readOnly === 'string') mount.readOnly = templateBoolean(mount.readOnly);
    return mount;
  });
}

function containers(value: JsonValue[], ns: TemplateNamespace, what: string): JsonValue[] {
  return value.map((raw, i) => {
    if (!isRecord(raw)) throw new KubeTraitError(`${what}[${i}]: expected a container mapping`);
    const container = expandAll(raw, ns);
    if (container.volumeMounts !== undefined) {
      container.volumeMounts = mounts(container.volumeMounts, ns, `${what}[${i}].volumeMounts`);
    }
    return container;
  });
}

function snakeToCamel(key: string): string {
  return key.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

/** KubeSpawner's update_k8s_model: each key (camelCase or snake_case) replaces that field. */
function updateModel(target: JsonObject, changes: Record<string, JsonValue>): JsonObject {
  const out = { ...target };
  for (const [key, value] of Object.entries(changes)) out[snakeToCamel(key)] = value;
  return out;
}

/** Sorts the environment by name, a variable after those its $(NAME) references need. */
function orderEnvironment(env: Record<string, JsonValue>): JsonValue[] {
  const entries = Object.entries(env).map(([key, value]) => {
    const item: JsonObject = isRecord(value)
      ? { ...value, name: typeof value.name === 'string' ? value.name : key }
      : { name: key, value: String(value) };
    const text = typeof item.value === 'string' ? item.value : '';
    const deps = new Set([...text.matchAll(/\$\(([^)]+)\)/g)].map((match) => match[1]!));
    deps.delete(String(item.name));
    return { key, item, deps };
  });
  const sorted: JsonObject[] = [];
  let pending = entries;
  for (;;) {
    const resolved = new Set(sorted.map((item) => String(item.name)));
    const ready = pending.filter((entry) => [...entry.deps].every((dep) => resolved.has(dep)));
    pending = pending.filter((entry) => !ready.includes(entry));
    const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    if (ready.length > 0) {
      sorted.push(...ready.sort(byKey).map((entry) => entry.item));
      continue;
    }
    sorted.push(...pending.sort(byKey).map((entry) => entry.item));
    return sorted;
  }
}

/** The environment of the notebook container: JupyterHub's, JUPYTER_IMAGE, then KubeSpawner.environment. */
export function podEnvironment(
  spec: ServerSpec,
  traits: KubeTraits,
  ns: TemplateNamespace,
): Record<string, JsonValue> {
  const base = serverEnvironment(spec, {
    ip: traits.ip,
    port: traits.port,
    environment: {},
    envKeep: [],
    defaultUrl: traits.default_url,
    notebookDir: traits.notebook_dir,
    debug: traits.debug,
    parentEnv: {},
  });
  const env: Record<string, JsonValue> = {
    ...base,
    JUPYTER_IMAGE_SPEC: traits.image,
    JUPYTER_IMAGE: traits.image,
  };
  for (const [key, value] of Object.entries(traits.environment)) {
    if (typeof value === 'string' || Array.isArray(value) || isRecord(value)) env[key] = expandAll(value, ns);
    else if (value !== null) env[key] = String(value);
  }
  return env;
}

export interface PodInput {
  spec: ServerSpec;
  traits: KubeTraits;
  names: KubeNames;
  userId?: number;
}

/** The pod of one server, as KubeSpawner's make_pod builds it from the same traits. */
export function podManifest({ spec, traits, names, userId }: PodInput): JsonObject {
  const ns = kubeTemplateNamespace({ ...spec, ...(userId === undefined ? {} : { userId }) }, traits, names);
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  if (traits.cpu_guarantee) requests.cpu = quantity(traits.cpu_guarantee, 'cpu_guarantee');
  if (traits.mem_guarantee) requests.memory = String(traits.mem_guarantee);
  for (const [key, value] of Object.entries(traits.extra_resource_guarantees)) {
    if (value !== null) requests[key] = quantity(value, `extra_resource_guarantees.${key}`);
  }
  if (traits.cpu_limit) limits.cpu = quantity(traits.cpu_limit, 'cpu_limit');
  if (traits.mem_limit) limits.memory = String(traits.mem_limit);
  for (const [key, value] of Object.entries(traits.extra_resource_limits)) {
    if (value !== null) limits[key] = quantity(value, `extra_resource_limits.${key}`);
  }
  const securityContext: JsonObject = {};
  if (traits.uid !== null) securityContext.runAsUser = traits.uid;
  if (traits.gid !== null) securityContext.runAsGroup = traits.gid;
  if (traits.privileged) securityContext.privileged = true;
  if (traits.allow_privilege_escalation !== null)
    securityContext.allowPrivilegeEscalation = traits.allow_privilege_escalation;
  Object.assign(securityContext, traits.container_security_context);
  let container: JsonObject = {
    name: 'notebook',
    image: traits.image,
    ports: [{ name: 'notebook-port', containerPort: traits.port }],
    env: orderEnvironment(podEnvironment(spec, traits, ns)),
    resources: { requests, limits },
    volumeMounts: mounts(traits.volume_mounts, ns, 'KubeSpawner.volume_mounts'),
  };
  if (traits.cmd) container.args = [...traits.cmd, ...traits.args];
  if (traits.image_pull_policy) container.imagePullPolicy = traits.image_pull_policy;
  if (traits.working_dir) container.workingDir = expandName(traits.working_dir, ns);
  if (Object.keys(traits.lifecycle_hooks).length > 0) container.lifecycle = traits.lifecycle_hooks;
  if (Object.keys(securityContext).length > 0) container.securityContext = securityContext;
  container = updateModel(container, traits.extra_container_config);

  let podSpec: JsonObject = {
    containers: [container, ...containers(traits.extra_containers, ns, 'KubeSpawner.extra_containers')],
    restartPolicy: 'OnFailure',
    volumes: expandAll(traits.volumes, ns),
  };
  const podSecurity: JsonObject = {};
  if (traits.fs_gid !== null) podSecurity.fsGroup = traits.fs_gid;
  if (traits.supplemental_gids.length > 0) podSecurity.supplementalGroups = traits.supplemental_gids;
  Object.assign(podSecurity, traits.pod_security_context);
  if (Object.keys(podSecurity).length > 0) podSpec.securityContext = podSecurity;
  if (Object.keys(traits.node_selector).length > 0) podSpec.nodeSelector = traits.node_selector;
  if (traits.image_pull_secrets.length > 0) {
    podSpec.imagePullSecrets = traits.image_pull_secrets.map((ref) =>
      typeof ref === 'string' ? { name: ref } : ref,
    );
  }
  const serviceAccount = traits.service_account === null ? null : expandName(traits.service_account, ns);
  if (serviceAccount !== null) podSpec.serviceAccountName = serviceAccount;
  if (traits.automount_service_account_token !== null) {
    podSpec.automountServiceAccountToken = traits.automount_service_account_token;
  } else if (serviceAccount === null) podSpec.automountServiceAccountToken = false;
  if (traits.init_containers.length > 0) {
    podSpec.initContainers = containers(traits.init_containers, ns, 'KubeSpawner.init_containers');
  }
  if (traits.tolerations.length > 0) podSpec.tolerations = traits.tolerations;
  const affinity = affinityOf(traits);
  if (affinity) podSpec.affinity = affinity;
  if (traits.scheduler_name) podSpec.schedulerName = traits.scheduler_name;
  if (traits.priority_class_name) podSpec.priorityClassName = traits.priority_class_name;
  podSpec = updateModel(podSpec, expandAll(traits.extra_pod_config, ns));
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: names.podName,
      labels: podLabels(spec, traits, ns),
      annotations: annotationsOf(spec, traits.extra_annotations, ns),
    },
    spec: podSpec,
  };
}

/**
 * What KubeSpawner's callable traits receive as `spawner` (from a JS/TS config module): the
 * server they are asked about, with KubeSpawner's attribute names.
 */
export interface KubeSpawnerView {
  user: { name: string; admin: boolean; groups: string[] };
  /** The server's name; '' for the default server. */
  name: string;
  user_options: JsonObject;
  namespace: string;
  pod_name: string;
  pvc_name: string;
}

type Maybe<T> = T | Promise<T>;

/** KubeSpawner's traits that may be functions of the spawner (only from a JS/TS config module). */
export interface KubeCallables {
  /** Called with the pod manifest before it is created; returns the pod to create. */
  modify_pod_hook?: (spawner: KubeSpawnerView, pod: JsonObject) => Maybe<JsonObject>;
  uid?: (spawner: KubeSpawnerView) => Maybe<number | null>;
  gid?: (spawner: KubeSpawnerView) => Maybe<number | null>;
  fs_gid?: (spawner: KubeSpawnerView) => Maybe<number | null>;
  /** The profiles for this spawner, in profile_list's shape. */
  profile_list?: (spawner: KubeSpawnerView) => Maybe<unknown>;
}

export const kubeCallableNames = new Set(['modify_pod_hook', 'uid', 'gid', 'fs_gid', 'profile_list']);

/** KubeSpawner's affinity traits as the pod's `affinity`; only the parts that are set. */
function affinityOf(traits: KubeTraits): JsonObject | undefined {
  const required = 'requiredDuringSchedulingIgnoredDuringExecution';
  const preferred = 'preferredDuringSchedulingIgnoredDuringExecution';
  const affinity: JsonObject = {};
  const node: JsonObject = {};
  if (traits.node_affinity_required.length > 0) {
    node[required] = { nodeSelectorTerms: traits.node_affinity_required };
  }
  if (traits.node_affinity_preferred.length > 0) node[preferred] = traits.node_affinity_preferred;
  if (Object.keys(node).length > 0) affinity.nodeAffinity = node;
  for (const [key, req, pref] of [
    ['podAffinity', traits.pod_affinity_required, traits.pod_affinity_preferred],
    ['podAntiAffinity', traits.pod_anti_affinity_required, traits.pod_anti_affinity_preferred],
  ] as const) {
    const part: JsonObject = {};
    if (req.length > 0) part[required] = req;
    if (pref.length > 0) part[preferred] = pref;
    if (Object.keys(part).length > 0) affinity[key] = part;
  }
  return Object.keys(affinity).length > 0 ? affinity : undefined;
}

/** The service in front of a pod (services_enabled), owned by the pod so it goes with it. */
export function serviceManifest(
  { spec, traits, names }: PodInput,
  pod: { name: string; uid: string },
): JsonObject {
  const ns = kubeTemplateNamespace(spec, traits, names);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: names.podName,
      labels: labelsOf(spec, traits, traits.extra_labels, ns),
      annotations: annotationsOf(spec, traits.extra_annotations, ns),
      ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid }],
    },
    spec: {
      type: 'ClusterIP',
      ports: [{ name: 'http', port: traits.port, targetPort: traits.port }],
      selector: podLabels(spec, traits, ns),
    },
  };
}

/** The user's PVC (storage_pvc_ensure). */
export function pvcManifest({ spec, traits, names }: PodInput): JsonObject {
  const ns = kubeTemplateNamespace(spec, traits, names);
  if (!traits.storage_capacity) {
    throw new KubeTraitError('KubeSpawner.storage_pvc_ensure needs KubeSpawner.storage_capacity (e.g. 10Gi)');
  }
  const annotations = annotationsOf(spec, traits.storage_extra_annotations, ns);
  const pvcSpec: JsonObject = {
    accessModes: traits.storage_access_modes,
    resources: { requests: { storage: traits.storage_capacity } },
  };
  if (traits.storage_class !== null) {
    annotations['volume.beta.kubernetes.io/storage-class'] = traits.storage_class;
    pvcSpec.storageClassName = traits.storage_class;
  }
  if (Object.keys(traits.storage_selector).length > 0)
    pvcSpec.selector = expandAll(traits.storage_selector, ns);
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name: names.pvcName,
      labels: {
        ...labelsOf(spec, traits, traits.storage_extra_labels, ns),
        'app.kubernetes.io/component': traits.component_label,
        component: 'singleuser-storage',
      },
      annotations,
    },
    spec: pvcSpec,
  };
}
