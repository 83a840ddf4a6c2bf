// The hub's configuration: a YAML file (or a JS/TS module) keyed by JupyterHub's own
// `Class.trait` names, as Zero to JupyterHub's `hub.config` is, plus secrets from the
// environment, into one typed, validated HubConfig.
import { readFileSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from './errors.ts';
import { type Profile, parseProfiles } from './profiles.ts';
import {
  checkDockerTrait,
  type DockerTraits,
  defaultDockerTraits,
  dockerTraitNames,
} from './spawners/docker-options.ts';
import {
  applyKubeOverride,
  checkKubeTrait,
  defaultKubeTraits,
  type KubeCallables,
  type KubeTraits,
  kubeCallableNames,
  kubeTraitNames,
} from './spawners/kube-objects.ts';

type TraitType =
  | 'bool'
  | 'int'
  | 'number'
  | 'string'
  | 'list'
  | 'command'
  | 'dict'
  | 'services'
  | 'roles'
  | 'profiles'
  | 'kube'
  | 'docker';

interface TraitSpec {
  type: TraitType;
  default: unknown;
  help: string;
}

const t = (type: TraitType, value: unknown, help: string): TraitSpec => ({ type, default: value, help });

/** Traits KubeSpawner adds to Spawner's (the others, e.g. start_timeout, are Spawner's own). */
const inheritedBySpawner = new Set([
  'cmd',
  'args',
  'environment',
  'start_timeout',
  'http_timeout',
  'default_url',
  'notebook_dir',
  'debug',
  'cpu_guarantee',
  'cpu_limit',
  'mem_guarantee',
  'mem_limit',
]);

function kubeSpawnerTraits(): Record<string, TraitSpec> {
  const out: Record<string, TraitSpec> = {};
  for (const name of kubeTraitNames) {
    if (inheritedBySpawner.has(name)) continue;
    out[`KubeSpawner.${name}`] = t(
      'kube',
      name === 'namespace' ? '' : defaultKubeTraits[name],
      name === 'namespace'
        ? 'Namespace of the servers’ pods; default POD_NAMESPACE, else the hub’s own.'
        : `KubeSpawner.${name} (KubeSpawner’s meaning and default).`,
    );
  }
  return out;
}

function dockerSpawnerTraits(): Record<string, TraitSpec> {
  const out: Record<string, TraitSpec> = {};
  for (const name of dockerTraitNames) {
    out[`DockerSpawner.${name}`] = t(
      'docker',
      defaultDockerTraits[name],
      `DockerSpawner.${name} (DockerSpawner’s meaning and default).`,
    );
  }
  return out;
}

/** Every trait the hub accepts, with JupyterHub's name, type and default. */
export const traits: Record<string, TraitSpec> = {
  'JupyterHub.bind_url': t(
    'string',
    'http://:8000',
    'Public URL the proxy listens on (ip, port and base_url).',
  ),
  'JupyterHub.base_url': t('string', '/', 'Prefix of every URL of the hub and of user servers.'),
  'JupyterHub.hub_bind_url': t(
    'string',
    '',
    'URL the hub itself listens on (default http://127.0.0.1:8081).',
  ),
  'JupyterHub.hub_connect_url': t(
    'string',
    '',
    'URL servers and the proxy use to reach the hub, when not hub_bind_url.',
  ),
  'JupyterHub.hub_ip': t('string', '127.0.0.1', 'Address the hub listens on when hub_bind_url is not set.'),
  'JupyterHub.hub_port': t('int', 8081, 'Port the hub listens on when hub_bind_url is not set.'),
  'JupyterHub.db_url': t(
    'string',
    'sqlite:///jupyterhub.sqlite',
    'sqlite:///path or postgresql://user@host/db.',
  ),
  'JupyterHub.admin_access': t('bool', false, 'Whether admins may access the servers of other users.'),
  'JupyterHub.allow_named_servers': t(
    'bool',
    false,
    'Whether users may run servers other than their default one.',
  ),
  'JupyterHub.named_server_limit_per_user': t('int', 0, 'Maximum named servers per user; 0 is no limit.'),
  'JupyterHub.concurrent_spawn_limit': t('int', 100, 'Maximum spawns pending at once; 0 is no limit.'),
  'JupyterHub.active_server_limit': t('int', 0, 'Maximum running servers; 0 is no limit.'),
  'JupyterHub.cleanup_servers': t('bool', true, 'Stop the servers when the hub stops.'),
  'JupyterHub.cleanup_proxy': t('bool', true, 'Stop the proxy the hub started when the hub stops.'),
  'JupyterHub.services': t(
    'services',
    [],
    'Services: [{name, api_token, admin, url, oauth_client_id, display, info}].',
  ),
  'JupyterHub.load_roles': t('roles', [], 'Roles: [{name, description, scopes, users, services, groups}].'),
  'JupyterHub.last_activity_interval': t('int', 300, 'Seconds between reads of activity from the proxy.'),
  'JupyterHub.authenticate_prometheus': t(
    'bool',
    true,
    'Require a token with read:metrics for /hub/metrics.',
  ),
  'JupyterHub.authenticator_class': t('string', 'password', 'header, password or dummy.'),
  'JupyterHub.spawner_class': t(
    'string',
    'localprocess',
    'localprocess (jupyterhub-singleuser on this machine), KubeSpawner / DynamicKubeSpawner (a pod per server), or DockerSpawner (a container per server).',
  ),
  'JupyterHub.cookie_secret_file': t(
    'string',
    '',
    'File holding the cookie secret (hex); default: kept in the database.',
  ),
  'JupyterHub.cookie_max_age_days': t('number', 14, 'Lifetime of login cookies, in days.'),
  'JupyterHub.api_page_default_limit': t('int', 50, 'Page size of paginated lists when none is asked.'),
  'JupyterHub.api_page_max_limit': t('int', 200, 'Largest page size of paginated lists.'),
  'JupyterHub.slow_spawn_timeout': t('number', 10, 'Seconds the start request waits before answering 202.'),
  'JupyterHub.default_url': t('string', '', 'Where /hub/ sends a logged-in user.'),
  'JupyterHub.redirect_to_server': t(
    'bool',
    true,
    'After login (no next), send users to their server, or to the spawn page when it is not running; false: home.',
  ),
  'JupyterHub.log_level': t('string', 'info', 'debug, info, warn or error.'),
  'JupyterHub.shutdown_on_logout': t('bool', false, 'Stop a user’s servers when they log out.'),
  'Authenticator.admin_users': t('list', [], 'Users who are admins.'),
  'Authenticator.allowed_users': t('list', [], 'Users allowed to log in (with allow_all false).'),
  'Authenticator.blocked_users': t('list', [], 'Users never allowed to log in.'),
  'Authenticator.allow_all': t('bool', false, 'Allow every user the authenticator accepts.'),
  'Authenticator.auto_login': t('bool', false, 'Log in without showing the login page.'),
  'Authenticator.delete_invalid_users': t('bool', false, 'Delete users no longer allowed at start.'),
  'HeaderAuthenticator.header_name': t('string', 'X-Auth-Request-User', 'Header carrying the user name.'),
  'HeaderAuthenticator.trusted_sources': t(
    'list',
    ['127.0.0.1', '::1'],
    'Source addresses (IPs or CIDRs) whose user header is trusted; requests from others are refused.',
  ),
  'HeaderAuthenticator.shared_secret': t(
    'string',
    '',
    'Secret the front proxy sends in secret_header_name; when set, a user header without it is refused.',
  ),
  'HeaderAuthenticator.shared_secret_file': t('string', '', 'File holding shared_secret (trimmed).'),
  'HeaderAuthenticator.secret_header_name': t(
    'string',
    'X-Seahorse-Proxy-Secret',
    'Header carrying the front proxy’s shared secret.',
  ),
  'PasswordAuthenticator.password': t('string', '', 'Shared password; default from JUPYTER_PASSWORD.'),
  'ConfigurableHTTPProxy.should_start': t('bool', true, 'Start configurable-http-proxy, else use api_url.'),
  'ConfigurableHTTPProxy.auth_token': t(
    'string',
    '',
    'Proxy API token; default from CONFIGPROXY_AUTH_TOKEN.',
  ),
  'ConfigurableHTTPProxy.api_url': t('string', 'http://127.0.0.1:8001', 'URL of the proxy’s REST API.'),
  'ConfigurableHTTPProxy.command': t(
    'command',
    ['configurable-http-proxy'],
    'Command that starts the proxy.',
  ),
  'ConfigurableHTTPProxy.pid_file': t(
    'string',
    'jupyterhub-proxy.pid',
    'Where the PID of the proxy the hub started is kept.',
  ),
  'ConfigurableHTTPProxy.debug': t('bool', false, 'Start the proxy with --log-level debug.'),
  'ConfigurableHTTPProxy.check_running_interval': t('number', 5, 'Seconds between route checks.'),
  'Spawner.cmd': t('command', ['jupyterhub-singleuser'], 'Command that starts a single-user server.'),
  'Spawner.args': t('list', [], 'Extra arguments of the single-user server.'),
  'Spawner.environment': t('dict', {}, 'Extra environment of servers; values may use {username}.'),
  'Spawner.start_timeout': t('number', 60, 'Seconds a server may take to start.'),
  'Spawner.http_timeout': t('number', 30, 'Seconds a started server may take to answer HTTP.'),
  'Spawner.poll_interval': t('number', 30, 'Seconds between polls of running servers.'),
  'Spawner.default_url': t('string', '', 'Path the single-user server opens, e.g. /lab.'),
  'Spawner.notebook_dir': t('string', '', 'Directory servers start in; may use {username}.'),
  'Spawner.ip': t('string', '127.0.0.1', 'Address single-user servers listen on.'),
  'Spawner.server_token_scopes': t('list', [], 'Extra scopes of a server’s API token.'),
  'Spawner.profile_list': t(
    'profiles',
    [],
    'Profiles offered on the spawn page (KubeSpawner’s shape); the choice is user_options.profile.',
  ),
  'Spawner.debug': t('bool', false, 'JUPYTERHUB_DEBUG=1 in the servers’ environment.'),
  'Spawner.cpu_guarantee': t(
    'kube',
    null,
    'CPU cores guaranteed to a server (KubeSpawner: resources.requests.cpu).',
  ),
  'Spawner.cpu_limit': t('kube', null, 'CPU cores a server may use (KubeSpawner: resources.limits.cpu).'),
  'Spawner.mem_guarantee': t(
    'kube',
    null,
    'Memory guaranteed to a server, e.g. 256M (K, M, G, T: powers of 1024).',
  ),
  'Spawner.mem_limit': t('kube', null, 'Memory a server may use, e.g. 32G (K, M, G, T: powers of 1024).'),
  ...kubeSpawnerTraits(),
  'Leadership.interval': t(
    'number',
    1,
    'Seconds between lease rounds: a follower tries the leader lock, the leader proves its session (replicas on PostgreSQL).',
  ),
  'Leadership.timeout': t(
    'number',
    2,
    'Seconds a leadership query may take; a leader whose connection hangs longer ends its term. A term counts interval + timeout after its last proof; PostgreSQL ends a leadership session idle for twice that.',
  ),
  'Leadership.gone_after': t(
    'number',
    3,
    'Seconds a replica must be missing before the leader takes over its pending spawns and stops.',
  ),
  ...dockerSpawnerTraits(),
  'IdleCuller.enabled': t(
    'bool',
    false,
    'Run the built-in idle culler (jupyterhub-idle-culler’s options below).',
  ),
  'IdleCuller.timeout': t('number', 3600, 'Seconds of inactivity after which a server is stopped; 0: never.'),
  'IdleCuller.cull_every': t('number', 600, 'Seconds between culling passes.'),
  'IdleCuller.concurrency': t('int', 10, 'Servers (and users) culled at once.'),
  'IdleCuller.max_age': t(
    'number',
    0,
    'Seconds after its start a server is stopped even if active; 0: never.',
  ),
  'IdleCuller.cull_users': t(
    'bool',
    false,
    'Also delete users inactive for timeout seconds with no server running.',
  ),
  'IdleCuller.remove_named_servers': t(
    'bool',
    false,
    'Delete named servers when culling them, not only stop them.',
  ),
};

/** Spawner classes whose traits are KubeSpawner's (and, through it, Spawner's). */
const kubeClasses = new Set(['KubeSpawner', 'DynamicKubeSpawner']);

/** Subclass names a jupyterhub_config.py may use for the same traits. */
const classAliases: Record<string, string> = {
  LocalProcessSpawner: 'Spawner',
  SimpleLocalProcessSpawner: 'Spawner',
  Proxy: 'ConfigurableHTTPProxy',
  DummyAuthenticator: 'PasswordAuthenticator',
};

export interface ServiceConfig {
  name: string;
  apiToken?: string;
  admin: boolean;
  url?: string;
  oauthClientId?: string;
  display: boolean;
  info: Record<string, unknown>;
  command?: string[];
  environment: Record<string, string>;
  cwd?: string;
}

export interface RoleConfig {
  name: string;
  description?: string;
  scopes: string[];
  users: string[];
  services: string[];
  groups: string[];
}

export interface HubConfig {
  /** Flat `Class.trait` → value, every trait present (defaults filled in). */
  traits: Record<string, unknown>;
  bindUrl: URL;
  baseUrl: string;
  hubBind: { host: string; port: number };
  hubConnectUrl: string;
  dbUrl: string;
  adminAccess: boolean;
  allowNamedServers: boolean;
  namedServerLimitPerUser: number;
  concurrentSpawnLimit: number;
  activeServerLimit: number;
  cleanupServers: boolean;
  cleanupProxy: boolean;
  services: ServiceConfig[];
  loadRoles: RoleConfig[];
  lastActivityIntervalMs: number;
  authenticatePrometheus: boolean;
  authenticatorClass: 'header' | 'password' | 'dummy';
  spawnerClass: string;
  cookieSecretFile: string;
  cookieMaxAgeMs: number;
  pageDefaultLimit: number;
  pageMaxLimit: number;
  slowSpawnTimeoutMs: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  auth: {
    adminUsers: string[];
    allowedUsers: string[];
    blockedUsers: string[];
    allowAll: boolean;
    autoLogin: boolean;
    headerName: string;
    trustedSources: string[];
    /** The front proxy's secret; '' when none is configured. */
    sharedSecret: string;
    secretHeaderName: string;
    password: string;
  };
  proxy: {
    shouldStart: boolean;
    authToken: string;
    apiUrl: string;
    command: string[];
    debug: boolean;
    checkIntervalMs: number;
    pidFile: string;
  };
  spawner: {
    cmd: string[];
    args: string[];
    environment: Record<string, string>;
    startTimeoutMs: number;
    httpTimeoutMs: number;
    pollIntervalMs: number;
    defaultUrl: string;
    notebookDir: string;
    ip: string;
    serverTokenScopes: string[];
    profileList: Profile[];
  };
  /** KubeSpawner's traits when spawner_class is KubeSpawner (namespace '' until the API connection says). */
  kube: KubeTraits | undefined;
  /** DockerSpawner's traits when spawner_class is DockerSpawner; cmd and ip null unless Spawner.cmd / Spawner.ip are set. */
  docker:
    | (DockerTraits & {
        cmd: string[] | null;
        ip: string | null /** DockerSpawner.host_ip was set. */;
        hostIpSet: boolean;
      })
    | undefined;
  /** Hub replicas' leadership (src/leader.ts), in milliseconds. */
  leadership: { intervalMs: number; timeoutMs: number; goneAfterMs: number };
  /** The built-in idle culler (jupyterhub-idle-culler's options, in milliseconds). */
  culler: {
    enabled: boolean;
    timeoutMs: number;
    cullEveryMs: number;
    concurrency: number;
    maxAgeMs: number;
    cullUsers: boolean;
    removeNamedServers: boolean;
  };
  /** Hooks a JS/TS config module may export (never from YAML). */
  hooks: ConfigHooks;
}

export interface ConfigHooks {
  /** Called before each spawn with the server's spec; may change its environment or options. */
  preSpawnHook?: (spawn: {
    user: string;
    serverName: string;
    environment: Record<string, string>;
  }) => unknown;
  /** KubeSpawner's callable traits (modify_pod_hook; uid, gid, fs_gid, profile_list as functions). */
  kube?: KubeCallables;
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}

export function nearestTrait(key: string): string {
  let best = '';
  let bestDistance = Number.POSITIVE_INFINITY;
  const lower = key.toLowerCase();
  for (const name of Object.keys(traits)) {
    const d = distance(lower, name.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = name;
    }
  }
  return best;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'a mapping' : `a ${typeof value}`;
}

function fail(path: string, expected: string, value: unknown): never {
  throw new ConfigError(`${path}: expected ${expected}, got ${typeName(value)} (${JSON.stringify(value)})`);
}

function stringList(path: string, value: unknown): string[] {
  if (!Array.isArray(value)) fail(path, 'a list of strings', value);
  return value.map((item, i) => {
    if (typeof item !== 'string') fail(`${path}[${i}]`, 'a string', item);
    return item;
  });
}

function optionalString(path: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') fail(path, 'a string', value);
  return value;
}

function checkKeys(path: string, object: Record<string, unknown>, known: string[]): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) {
      const nearest = known.reduce((a, b) => (distance(key, a) <= distance(key, b) ? a : b));
      throw new ConfigError(`${path}: unknown key '${key}'; did you mean '${nearest}'?`);
    }
  }
}

const namePattern = /^[^/\s?#]+$/;

function parseServices(path: string, value: unknown): ServiceConfig[] {
  if (!Array.isArray(value)) fail(path, 'a list of services', value);
  return value.map((raw, i) => {
    const at = `${path}[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(at, 'a mapping', raw);
    const entry = raw as Record<string, unknown>;
    checkKeys(at, entry, [
      'name',
      'api_token',
      'admin',
      'url',
      'oauth_client_id',
      'oauth_no_confirm',
      'oauth_redirect_uri',
      'display',
      'info',
      'command',
      'environment',
      'user',
      'cwd',
    ]);
    const name = optionalString(`${at}.name`, entry.name);
    if (!name || !namePattern.test(name))
      fail(`${at}.name`, 'a service name without / or spaces', entry.name);
    if (entry.admin !== undefined && typeof entry.admin !== 'boolean')
      fail(`${at}.admin`, 'a boolean', entry.admin);
    if (entry.display !== undefined && typeof entry.display !== 'boolean') {
      fail(`${at}.display`, 'a boolean', entry.display);
    }
    const info = entry.info ?? {};
    if (typeof info !== 'object' || info === null || Array.isArray(info))
      fail(`${at}.info`, 'a mapping', info);
    const service: ServiceConfig = {
      name,
      admin: entry.admin === true,
      display: entry.display !== false,
      info: info as Record<string, unknown>,
      environment: checkValue(
        `${at}.environment`,
        traits['Spawner.environment']!,
        entry.environment ?? {},
      ) as Record<string, string>,
    };
    const apiToken = optionalString(`${at}.api_token`, entry.api_token);
    if (apiToken !== undefined) {
      if (apiToken.length < 8) fail(`${at}.api_token`, 'a token of at least 8 characters', '(too short)');
      service.apiToken = apiToken;
    }
    const url = optionalString(`${at}.url`, entry.url);
    if (url !== undefined) service.url = url;
    const client = optionalString(`${at}.oauth_client_id`, entry.oauth_client_id);
    if (client !== undefined) service.oauthClientId = client;
    if (entry.command !== undefined) service.command = parseCommand(`${at}.command`, entry.command);
    const cwd = optionalString(`${at}.cwd`, entry.cwd);
    if (cwd !== undefined) service.cwd = cwd;
    return service;
  });
}

function parseRoles(path: string, value: unknown): RoleConfig[] {
  if (!Array.isArray(value)) fail(path, 'a list of roles', value);
  return value.map((raw, i) => {
    const at = `${path}[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(at, 'a mapping', raw);
    const entry = raw as Record<string, unknown>;
    checkKeys(at, entry, ['name', 'description', 'scopes', 'users', 'services', 'groups']);
    const name = optionalString(`${at}.name`, entry.name);
    if (!name) fail(`${at}.name`, 'a role name', entry.name);
    const role: RoleConfig = {
      name,
      scopes: stringList(`${at}.scopes`, entry.scopes ?? []),
      users: stringList(`${at}.users`, entry.users ?? []),
      services: stringList(`${at}.services`, entry.services ?? []),
      groups: stringList(`${at}.groups`, entry.groups ?? []),
    };
    const description = optionalString(`${at}.description`, entry.description);
    if (description !== undefined) role.description = description;
    return role;
  });
}

function parseCommand(path: string, value: unknown): string[] {
  if (typeof value === 'string') return [value];
  const list = stringList(path, value);
  if (list.length === 0) fail(path, 'a non-empty command', value);
  return list;
}

function checkValue(path: string, spec: TraitSpec, value: unknown): unknown {
  switch (spec.type) {
    case 'bool':
      if (typeof value !== 'boolean') fail(path, 'a boolean (true or false)', value);
      return value;
    case 'int':
      if (typeof value !== 'number' || !Number.isInteger(value)) fail(path, 'an integer', value);
      return value;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) fail(path, 'a number', value);
      return value;
    case 'string':
      if (typeof value !== 'string') fail(path, 'a string', value);
      return value;
    case 'list':
      return stringList(path, value);
    case 'command':
      return parseCommand(path, value);
    case 'dict': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        fail(path, 'a mapping of strings', value);
      }
      const out: Record<string, string> = {};
      for (const [key, item] of Object.entries(value)) {
        if (typeof item === 'number' || typeof item === 'boolean') out[key] = String(item);
        else if (typeof item === 'string') out[key] = item;
        else fail(`${path}.${key}`, 'a string', item);
      }
      return out;
    }
    case 'services':
      return parseServices(path, value);
    case 'roles':
      return parseRoles(path, value);
    case 'profiles':
      return parseProfiles(path, value);
    case 'kube':
      try {
        return checkKubeTrait(path.slice(path.lastIndexOf('.') + 1), value);
      } catch (error) {
        throw new ConfigError(`${path}: ${(error as Error).message}`);
      }
    case 'docker':
      try {
        return checkDockerTrait(path.slice(path.lastIndexOf('.') + 1), value);
      } catch (error) {
        throw new ConfigError(`${path}: ${(error as Error).message}`);
      }
  }
}

/**
 * Flattens `{JupyterHub: {bind_url: x}}` and `{'JupyterHub.bind_url': x}` alike into
 * `Class.trait` keys, checking each against the table.
 */
export function flattenConfig(
  raw: unknown,
  source: string,
): { values: Record<string, unknown>; hooks: ConfigHooks } {
  const values: Record<string, unknown> = {};
  const hooks: ConfigHooks = {};
  if (raw === null || raw === undefined) return { values, hooks };
  if (typeof raw !== 'object' || Array.isArray(raw)) fail(source, 'a mapping of Class: {trait: value}', raw);
  // As traitlets: a value given to the subclass (KubeSpawner.x) wins over one given to Spawner.x.
  const fromSubclass = new Set<string>();
  const set = (className: string, trait: string, value: unknown) => {
    let canonical = `${classAliases[className] ?? className}.${trait}`;
    if (kubeClasses.has(className)) {
      canonical = traits[`KubeSpawner.${trait}`] ? `KubeSpawner.${trait}` : `Spawner.${trait}`;
      fromSubclass.add(canonical);
    } else if (className === 'DockerSpawner') {
      // An unknown name stays DockerSpawner's, so the hint is the DockerSpawner trait it resembles.
      canonical =
        traits[`DockerSpawner.${trait}`] || !traits[`Spawner.${trait}`]
          ? `DockerSpawner.${trait}`
          : `Spawner.${trait}`;
      fromSubclass.add(canonical);
    } else if (fromSubclass.has(canonical)) return;
    const written = `${className}.${trait}`;
    if (
      typeof value === 'function' &&
      kubeCallableNames.has(trait) &&
      (kubeClasses.has(className) || canonical === 'Spawner.profile_list')
    ) {
      hooks.kube = { ...hooks.kube, [trait]: value };
      return;
    }
    if (trait === 'modify_pod_hook' && kubeClasses.has(className)) {
      fail(written, 'a function (spawner, pod) => pod, from a JS/TS config module', value);
    }
    if (canonical === 'Spawner.pre_spawn_hook') {
      if (typeof value !== 'function') fail(written, 'a function (from a JS/TS config module)', value);
      hooks.preSpawnHook = value as ConfigHooks['preSpawnHook'];
      return;
    }
    const spec = traits[canonical];
    if (!spec) {
      throw new ConfigError(
        `${source}: unknown key '${written}'; did you mean '${nearestTrait(canonical)}'?`,
      );
    }
    values[canonical] = checkValue(written, spec, value);
  };
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const dot = key.indexOf('.');
    if (dot > 0) {
      set(key.slice(0, dot), key.slice(dot + 1), value);
      continue;
    }
    const knownClass =
      kubeClasses.has(key) ||
      Object.keys(traits).some((name) => name.startsWith(`${classAliases[key] ?? key}.`));
    if (value === null && knownClass) continue; // a class whose traits are all commented out
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !knownClass) {
      const nearest = nearestTrait(key);
      throw new ConfigError(
        `${source}: unknown key '${key}'; keys are Class.trait names or Class: {trait: value}, e.g. '${nearest}'`,
      );
    }
    for (const [trait, item] of Object.entries(value as Record<string, unknown>)) set(key, trait, item);
  }
  return { values, hooks };
}

function parseBindUrl(path: string, value: string): URL {
  try {
    // JupyterHub's 'http://:8000' means every address.
    return new URL(value.replace('://:', '://0.0.0.0:'));
  } catch {
    throw new ConfigError(
      `${path}: expected a URL such as http://127.0.0.1:8081, got ${JSON.stringify(value)}`,
    );
  }
}

function normalizeBaseUrl(value: string): string {
  let base = value.startsWith('/') ? value : `/${value}`;
  if (!base.endsWith('/')) base += '/';
  return base;
}

/** Builds the typed config from flattened trait values and the environment. */
export function buildConfig(
  values: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  hooks: ConfigHooks = {},
): HubConfig {
  const all: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(traits)) all[name] = values[name] ?? spec.default;
  const get = <T>(name: string) => all[name] as T;
  const baseUrl = normalizeBaseUrl(get<string>('JupyterHub.base_url'));
  const bindUrl = parseBindUrl('JupyterHub.bind_url', get<string>('JupyterHub.bind_url'));
  let hubBindText = get<string>('JupyterHub.hub_bind_url');
  if (!hubBindText) {
    const ip = get<string>('JupyterHub.hub_ip') || '127.0.0.1';
    hubBindText = `http://${ip.includes(':') ? `[${ip}]` : ip}:${get<number>('JupyterHub.hub_port')}`;
  }
  const hubBindUrl = parseBindUrl('JupyterHub.hub_bind_url', hubBindText);
  const hubHost = hubBindUrl.hostname.replace(/^\[|\]$/g, '');
  const hubPort = Number(hubBindUrl.port || 80);
  let hubConnectUrl = get<string>('JupyterHub.hub_connect_url');
  if (!hubConnectUrl) {
    const connectHost = hubHost === '0.0.0.0' || hubHost === '' ? '127.0.0.1' : hubBindUrl.hostname;
    hubConnectUrl = `http://${connectHost}:${hubPort}`;
  }
  hubConnectUrl = hubConnectUrl.replace(/\/+$/, '');
  const authenticatorClass = normalizeAuthenticator(get<string>('JupyterHub.authenticator_class'));
  const spawnerClass = normalizeSpawner(get<string>('JupyterHub.spawner_class'));
  const logLevel = get<string>('JupyterHub.log_level').toLowerCase();
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) {
    fail('JupyterHub.log_level', 'one of debug, info, warn, error', logLevel);
  }
  const dbUrl = env.JUPYTERHUB_DB_URL || get<string>('JupyterHub.db_url');
  if (!/^(sqlite:\/\/|postgres(ql)?(\+\w+)?:\/\/)/.test(dbUrl)) {
    fail('JupyterHub.db_url', 'sqlite:///path or postgresql://user@host/db', dbUrl);
  }
  const seconds = (name: string) => {
    const value = get<number>(name);
    if (value < 0) fail(name, 'a number of seconds ≥ 0', value);
    return value * 1000;
  };
  const positive = (name: string) => {
    const value = get<number>(name);
    if (!(value > 0)) fail(name, 'a number of seconds > 0', value);
    return value * 1000;
  };
  for (const name of ['JupyterHub.named_server_limit_per_user', 'JupyterHub.concurrent_spawn_limit']) {
    if (get<number>(name) < 0) fail(name, 'an integer ≥ 0', get<number>(name));
  }
  const services = get<ServiceConfig[]>('JupyterHub.services');
  const seen = new Set<string>();
  for (const service of services) {
    if (seen.has(service.name)) throw new ConfigError(`JupyterHub.services: service '${service.name}' twice`);
    seen.add(service.name);
  }
  return {
    traits: all,
    bindUrl,
    baseUrl,
    hubBind: { host: hubHost === '0.0.0.0' ? '' : hubHost, port: hubPort },
    hubConnectUrl,
    dbUrl,
    adminAccess: get('JupyterHub.admin_access'),
    allowNamedServers: get('JupyterHub.allow_named_servers'),
    namedServerLimitPerUser: get('JupyterHub.named_server_limit_per_user'),
    concurrentSpawnLimit: get('JupyterHub.concurrent_spawn_limit'),
    activeServerLimit: get('JupyterHub.active_server_limit'),
    cleanupServers: get('JupyterHub.cleanup_servers'),
    cleanupProxy: get('JupyterHub.cleanup_proxy'),
    services,
    loadRoles: get('JupyterHub.load_roles'),
    lastActivityIntervalMs: seconds('JupyterHub.last_activity_interval'),
    authenticatePrometheus: get('JupyterHub.authenticate_prometheus'),
    authenticatorClass,
    spawnerClass,
    cookieSecretFile: get('JupyterHub.cookie_secret_file'),
    cookieMaxAgeMs: seconds('JupyterHub.cookie_max_age_days') * 86_400,
    pageDefaultLimit: get('JupyterHub.api_page_default_limit'),
    pageMaxLimit: get('JupyterHub.api_page_max_limit'),
    slowSpawnTimeoutMs: seconds('JupyterHub.slow_spawn_timeout'),
    logLevel: logLevel as HubConfig['logLevel'],
    auth: {
      adminUsers: get('Authenticator.admin_users'),
      allowedUsers: get('Authenticator.allowed_users'),
      blockedUsers: get('Authenticator.blocked_users'),
      allowAll: get('Authenticator.allow_all'),
      autoLogin: get('Authenticator.auto_login'),
      headerName: get<string>('HeaderAuthenticator.header_name').toLowerCase(),
      trustedSources: get('HeaderAuthenticator.trusted_sources'),
      sharedSecret: sharedSecret(
        get<string>('HeaderAuthenticator.shared_secret'),
        get<string>('HeaderAuthenticator.shared_secret_file'),
      ),
      secretHeaderName: get<string>('HeaderAuthenticator.secret_header_name').toLowerCase(),
      password: get<string>('PasswordAuthenticator.password') || env.JUPYTER_PASSWORD || '',
    },
    proxy: {
      shouldStart: get('ConfigurableHTTPProxy.should_start'),
      authToken: get<string>('ConfigurableHTTPProxy.auth_token') || env.CONFIGPROXY_AUTH_TOKEN || '',
      apiUrl: get<string>('ConfigurableHTTPProxy.api_url').replace(/\/+$/, ''),
      command: get('ConfigurableHTTPProxy.command'),
      debug: get('ConfigurableHTTPProxy.debug'),
      pidFile: get('ConfigurableHTTPProxy.pid_file'),
      checkIntervalMs: seconds('ConfigurableHTTPProxy.check_running_interval'),
    },
    spawner: {
      cmd: get('Spawner.cmd'),
      args: get('Spawner.args'),
      environment: get('Spawner.environment'),
      startTimeoutMs: seconds('Spawner.start_timeout'),
      httpTimeoutMs: seconds('Spawner.http_timeout'),
      pollIntervalMs: seconds('Spawner.poll_interval'),
      defaultUrl: get('Spawner.default_url'),
      notebookDir: get('Spawner.notebook_dir'),
      ip: get('Spawner.ip'),
      serverTokenScopes: get('Spawner.server_token_scopes'),
      profileList: get('Spawner.profile_list'),
    },
    leadership: {
      intervalMs: positive('Leadership.interval'),
      timeoutMs: positive('Leadership.timeout'),
      goneAfterMs: positive('Leadership.gone_after'),
    },
    culler: cullerConfig(get, seconds),
    kube: spawnerClass === 'kubernetes' ? kubeConfig(get, values, env) : undefined,
    docker: spawnerClass === 'docker' ? dockerConfig(get, values) : undefined,
    hooks,
  };
}

/** KubeSpawner's traits from the config (Spawner's where KubeSpawner inherits them); profiles checked. */
function kubeConfig(
  get: <T>(name: string) => T,
  explicit: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): KubeTraits {
  const kube: Record<string, unknown> = { ...defaultKubeTraits };
  for (const name of kubeTraitNames) {
    if (!inheritedBySpawner.has(name)) kube[name] = get(`KubeSpawner.${name}`);
    else if (`Spawner.${name}` in explicit) kube[name] = get(`Spawner.${name}`);
  }
  if (explicit['Spawner.cmd'] === undefined) kube.cmd = null; // the image's own command, as KubeSpawner
  kube.namespace = get<string>('KubeSpawner.namespace') || env.POD_NAMESPACE || '';
  const traits = kube as unknown as KubeTraits;
  const profiles = get<Profile[]>('Spawner.profile_list');
  for (const profile of profiles) {
    try {
      applyKubeOverride(traits, profile.override);
    } catch (error) {
      throw new ConfigError(`Spawner.profile_list '${profile.slug}': ${(error as Error).message}`);
    }
  }
  return traits;
}

/** DockerSpawner's traits; the image's own command unless Spawner.cmd is set, as DockerSpawner. */
function dockerConfig(get: <T>(name: string) => T, explicit: Record<string, unknown>): HubConfig['docker'] {
  const docker: Record<string, unknown> = {};
  for (const name of dockerTraitNames) docker[name] = get(`DockerSpawner.${name}`);
  docker.cmd = explicit['Spawner.cmd'] === undefined ? null : get('Spawner.cmd');
  docker.ip = explicit['Spawner.ip'] === undefined ? null : get('Spawner.ip');
  // DockerSpawner's host_ip default follows a tcp:// DOCKER_HOST; the spawner factory applies it.
  docker.hostIpSet = explicit['DockerSpawner.host_ip'] !== undefined;
  return docker as unknown as HubConfig['docker'];
}

function cullerConfig(get: <T>(name: string) => T, seconds: (name: string) => number): HubConfig['culler'] {
  const concurrency = get<number>('IdleCuller.concurrency');
  if (concurrency < 1) fail('IdleCuller.concurrency', 'an integer ≥ 1', concurrency);
  const enabled = get<boolean>('IdleCuller.enabled');
  const cullEveryMs = seconds('IdleCuller.cull_every');
  if (enabled && cullEveryMs === 0) fail('IdleCuller.cull_every', 'a number of seconds > 0', 0);
  return {
    enabled,
    timeoutMs: seconds('IdleCuller.timeout'),
    cullEveryMs,
    concurrency,
    maxAgeMs: seconds('IdleCuller.max_age'),
    cullUsers: get('IdleCuller.cull_users'),
    removeNamedServers: get('IdleCuller.remove_named_servers'),
  };
}

function normalizeAuthenticator(value: string): HubConfig['authenticatorClass'] {
  const name = value
    .split('.')
    .pop()!
    .toLowerCase()
    .replace(/authenticator$/, '');
  if (name === 'header' || name === 'password' || name === 'dummy') return name;
  fail('JupyterHub.authenticator_class', "one of 'header', 'password', 'dummy'", value);
}

function normalizeSpawner(value: string): string {
  const name = value
    .split('.')
    .pop()!
    .toLowerCase()
    .replace(/spawner$/, '');
  if (name === 'localprocess' || name === 'simplelocalprocess' || name === 'local') return 'localprocess';
  if (name === 'kube' || name === 'dynamickube' || name === 'kubernetes') return 'kubernetes';
  if (name === 'docker') return 'docker';
  fail(
    'JupyterHub.spawner_class',
    "'localprocess', 'KubeSpawner', 'DynamicKubeSpawner' or 'DockerSpawner'",
    value,
  );
}

/** Reads a YAML file, or imports a .js/.mjs/.ts module whose default export is the same object. */
export async function loadConfigFile(file: string, env: NodeJS.ProcessEnv): Promise<HubConfig> {
  const path = resolve(file);
  const ext = extname(path);
  let raw: unknown;
  if (['.js', '.mjs', '.ts', '.mts'].includes(ext)) {
    try {
      const module = (await import(pathToFileURL(path).href)) as { default?: unknown };
      raw = module.default;
    } catch (error) {
      throw new ConfigError(`cannot load config module ${file}: ${(error as Error).message}`);
    }
  } else {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read config file ${file}: ${(error as NodeJS.ErrnoException).code}`);
    }
    try {
      raw = parseYaml(text);
    } catch (error) {
      throw new ConfigError(`${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  const { values, hooks } = flattenConfig(substituteEnv(raw, env, file), file);
  return buildConfig(values, env, hooks);
}

/** A string that is exactly `${NAME}` becomes the environment variable NAME (secrets stay out of files). */
export function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, source: string, path = ''): unknown {
  if (typeof value === 'string') {
    const match = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(value);
    if (!match) return value;
    const name = match[1]!;
    const resolved = env[name];
    if (resolved === undefined || resolved === '') {
      throw new ConfigError(
        `${source}: ${path || 'a value'} refers to \${${name}}, which is not set in the environment`,
      );
    }
    return resolved;
  }
  if (Array.isArray(value)) return value.map((item, i) => substituteEnv(item, env, source, `${path}[${i}]`));
  if (typeof value === 'object' && value !== null && typeof value !== 'function') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      out[key] = substituteEnv(item, env, source, path ? `${path}.${key}` : key);
    }
    return out;
  }
  return value;
}

/** The commented example `--generate-config` writes. */
export function generateConfig(): string {
  const lines = [
    '# seahorse-hub configuration: JupyterHub’s Class.trait names, as in jupyterhub_config.py',
    '# (c.JupyterHub.bind_url = ... becomes JupyterHub: {bind_url: ...}). Uncomment to change.',
    '# Secrets come from the environment: CONFIGPROXY_AUTH_TOKEN, JUPYTER_PASSWORD, JUPYTERHUB_DB_URL.',
  ];
  let currentClass = '';
  for (const [name, spec] of Object.entries(traits)) {
    const [className, trait] = name.split('.') as [string, string];
    if (className !== currentClass) {
      lines.push('', `${className}:`);
      currentClass = className;
    }
    lines.push(`  # ${spec.help}`, `  # ${trait}: ${JSON.stringify(spec.default)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The header authenticator's shared secret: the trait (maybe `${ENV}`), else the file's content. */
function sharedSecret(value: string, file: string): string {
  if (value && file) {
    throw new ConfigError('HeaderAuthenticator: set shared_secret or shared_secret_file, not both');
  }
  if (!file) return value;
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new ConfigError(
      `HeaderAuthenticator.shared_secret_file: cannot read ${file}: ${(error as NodeJS.ErrnoException).code}`,
    );
  }
  if (!text) throw new ConfigError(`HeaderAuthenticator.shared_secret_file: ${file} is empty`);
  return text;
}
