// DockerSpawner's traits: their names, defaults and checks (at the config's edge, once), and the
// translation of its docker-py keyword dicts (extra_host_config, extra_create_kwargs: snake_case
// as docker-py takes them) into the Engine API's JSON (PascalCase), which we send directly.
import type { JsonObject, JsonValue } from './spawner.ts';

export type PullPolicy = 'ifnotpresent' | 'always' | 'never' | 'skip';

/** A `volumes` value: the mount point, or {bind, mode} as DockerSpawner takes it. */
export type VolumeTarget = string | { bind: string; mode?: string };

/**
 * allowed_images after DockerSpawner's validator: display name → image (a list becomes a
 * mapping of each image to itself), or '*' for any image.
 */
export type AllowedImages = Record<string, string> | '*';

export interface DockerTraits {
  image: string;
  /** Images a user may choose with user_options.image; {} (the default) allows none but `image`. */
  allowed_images: AllowedImages;
  network_name: string;
  host_ip: string;
  /** null: DockerSpawner's default — true unless network_name is bridge or host. */
  use_internal_ip: boolean | null;
  volumes: Record<string, VolumeTarget>;
  read_only_volumes: Record<string, string>;
  remove: boolean;
  extra_host_config: JsonObject;
  extra_create_kwargs: JsonObject;
  pull_policy: PullPolicy;
  prefix: string;
  /** '' is DockerSpawner's default: {prefix}-{username}, or {prefix}-{username}--{servername} for a named server. */
  name_template: string;
  /** A command run in the container once started (docker exec); a string runs as DockerSpawner's does, split like a shell. */
  post_start_cmd: string | string[] | null;
  /** The server's port in its container; null: 8888, or a free host port on the host network. */
  port: number | null;
  /** docker-py TLSConfig keywords (client_cert, ca_cert, verify, assert_hostname); DOCKER_* env wins. */
  tls_config: JsonObject;
  /** docker-py APIClient keywords (base_url, tls, timeout, version); they win over tls_config and env. */
  client_kwargs: JsonObject;
}

export const defaultDockerTraits: DockerTraits = {
  image: 'quay.io/jupyterhub/singleuser:latest',
  allowed_images: {},
  network_name: 'bridge',
  host_ip: '127.0.0.1',
  use_internal_ip: null,
  volumes: {},
  read_only_volumes: {},
  remove: false,
  extra_host_config: {},
  extra_create_kwargs: {},
  pull_policy: 'ifnotpresent',
  prefix: 'jupyter',
  name_template: '',
  post_start_cmd: null,
  port: null,
  tls_config: {},
  client_kwargs: {},
};

export const dockerTraitNames = Object.keys(defaultDockerTraits) as Array<keyof DockerTraits>;

export class DockerTraitError extends Error {}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const volumeMode = /^[a-zA-Z,]{0,40}$/;

/** What the engine takes as an image reference: name[:tag][@digest], a registry host and port allowed. */
export const imageReference = /^[\w][\w.\-/:@]{0,255}$/;

// Docker's reference grammar (distribution/reference): [domain[:port]/]path[:tag][@digest].
const domainPart = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const pathPart = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
// A first part is a registry only with a '.' or a port, or as 'localhost' (else it is a path part).
const domain = `(?:localhost(?::[0-9]+)?|${domainPart}(?:\\.${domainPart})+(?::[0-9]+)?|${domainPart}:[0-9]+)`;
const referenceGrammar = new RegExp(
  `^((?:${domain}/)?${pathPart}(?:/${pathPart})*)` +
    '(?::[\\w][\\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$',
);

/**
 * An image a user names under allowed_images '*', held to Docker's reference grammar (a name of
 * at most 255 characters): what the engine would refuse ('a/../b', 'Upper', 'a:b:c') is refused
 * before a spawn is claimed, and nothing reaches the engine's paths that its router would rewrite.
 */
export function isDockerReference(image: string): boolean {
  const match = referenceGrammar.exec(image);
  return match !== null && match[1]!.length <= 255;
}

/** DockerSpawner's _validate_allowed_images: a list becomes {image: image}; '*' is the only string. */
function checkAllowedImages(value: unknown): AllowedImages {
  if (typeof value === 'string') {
    if (value === '*') return '*';
    throw new DockerTraitError(
      `'*' (all images) is the only accepted string value for allowed_images, got ${JSON.stringify(value)}. Use a list: [${JSON.stringify(value)}] if you want to allow just one image.`,
    );
  }
  if (!Array.isArray(value) && !isRecord(value)) {
    throw new DockerTraitError(
      `expected a list of images, a mapping of display name → image, or '*', got ${JSON.stringify(value)}`,
    );
  }
  const entries: Array<[string, unknown]> = Array.isArray(value)
    ? value.map((item) => [String(item), item])
    : Object.entries(value);
  const out: Array<[string, string]> = [];
  for (const [name, image] of entries) {
    if (typeof image !== 'string' || !imageReference.test(image)) {
      throw new DockerTraitError(
        `${JSON.stringify(name)}: expected an image reference, got ${JSON.stringify(image)}`,
      );
    }
    if (!name.trim()) throw new DockerTraitError(`an empty display name for ${JSON.stringify(image)}`);
    out.push([name, image]);
  }
  // fromEntries: a name such as '__proto__' stays a name (an assignment would drop it silently).
  return Object.fromEntries(out);
}

/** The TLSConfig keywords the Docker spawner maps (docker.tls.TLSConfig's, as DockerSpawner passes tls_config). */
const tlsConfigKeys = new Set(['client_cert', 'ca_cert', 'verify', 'assert_hostname']);
/** The docker.APIClient keywords the Docker spawner maps from client_kwargs. */
const clientKwargKeys = new Set(['base_url', 'tls', 'timeout', 'version']);

function checkTlsConfig(value: unknown): JsonObject {
  if (!isRecord(value)) throw new DockerTraitError('expected a mapping (docker.tls.TLSConfig keywords)');
  for (const [key, item] of Object.entries(value)) {
    const fail = (expected: string): never => {
      throw new DockerTraitError(`${key}: expected ${expected}, got ${JSON.stringify(item)}`);
    };
    switch (key) {
      case 'client_cert':
        if (
          !Array.isArray(item) ||
          item.length !== 2 ||
          !item.every((path) => typeof path === 'string' && path.startsWith('/'))
        )
          fail('[cert.pem, key.pem] (two absolute paths)');
        break;
      case 'ca_cert':
        if (typeof item !== 'string' || !item.startsWith('/')) fail('an absolute path of a CA file');
        break;
      case 'verify':
        if (typeof item !== 'boolean' && !(typeof item === 'string' && item.startsWith('/')))
          fail('true, false, or an absolute path of a CA file');
        break;
      case 'assert_hostname':
        if (item !== false && item !== null && typeof item !== 'string') fail('a host name or false');
        break;
      default:
        throw new DockerTraitError(
          `${JSON.stringify(key)} is not supported; the Docker spawner maps ${[...tlsConfigKeys].join(', ')}`,
        );
    }
  }
  return value as JsonObject;
}

function checkClientKwargs(value: unknown): JsonObject {
  if (!isRecord(value)) throw new DockerTraitError('expected a mapping (docker.APIClient keywords)');
  for (const [key, item] of Object.entries(value)) {
    const fail = (expected: string): never => {
      throw new DockerTraitError(`${key}: expected ${expected}, got ${JSON.stringify(item)}`);
    };
    switch (key) {
      case 'base_url':
        if (typeof item !== 'string' || !/^(unix|tcp|https?):\/\//.test(item))
          fail('unix:///path or tcp://host:port');
        break;
      case 'tls':
        if (typeof item !== 'boolean') fail('true or false (a TLSConfig is tls_config)');
        break;
      case 'timeout':
        if (typeof item !== 'number' || !(item > 0) || item > 3600) fail('seconds (0–3600)');
        break;
      case 'version':
        // The spawner speaks v1.41, which engines 20.10 and later serve; "auto" negotiates the same.
        if (item !== 'auto' && item !== '1.41' && item !== null) fail("'auto' or '1.41'");
        break;
      default:
        throw new DockerTraitError(
          `${JSON.stringify(key)} is not supported; the Docker spawner maps ${[...clientKwargKeys].join(', ')}`,
        );
    }
  }
  return value as JsonObject;
}

/** Checks one DockerSpawner trait; returns it in the typed shape or throws naming what was expected. */
export function checkDockerTrait(name: string, value: unknown): unknown {
  const fail = (expected: string): never => {
    throw new DockerTraitError(`expected ${expected}, got ${JSON.stringify(value)}`);
  };
  switch (name as keyof DockerTraits) {
    case 'image':
    case 'prefix':
    case 'network_name':
    case 'host_ip':
    case 'name_template':
      if (typeof value !== 'string') return fail('a string');
      if (name === 'image' && !imageReference.test(value)) return fail('an image reference');
      if (name === 'network_name' && !/^[\w][\w.-]{0,127}$/.test(value)) return fail('a network name');
      return value;
    case 'allowed_images':
      return checkAllowedImages(value);
    case 'tls_config':
      return checkTlsConfig(value);
    case 'client_kwargs':
      return checkClientKwargs(value);
    case 'use_internal_ip':
      if (value === null) return null;
      return typeof value === 'boolean' ? value : fail('true or false');
    case 'remove':
      return typeof value === 'boolean' ? value : fail('true or false');
    case 'pull_policy': {
      const policy = typeof value === 'string' ? value.toLowerCase() : '';
      return ['ifnotpresent', 'always', 'never', 'skip'].includes(policy)
        ? policy
        : fail("'ifnotpresent', 'always', 'never' or 'skip'");
    }
    case 'port':
      if (value === null) return null;
      return Number.isInteger(value) && (value as number) > 0 && (value as number) < 65536
        ? value
        : fail('a port (1–65535)');
    case 'post_start_cmd':
      if (value === null || value === false || value === '') return null;
      if (typeof value === 'string') return value;
      return Array.isArray(value) && value.length > 0 && value.every((item) => typeof item === 'string')
        ? value
        : fail('a command (a string or a list of strings)');
    case 'volumes': {
      if (!isRecord(value))
        return fail('a mapping of volume name or host path → mount point or {bind, mode}');
      for (const [source, target] of Object.entries(value)) {
        if (!source) fail('no empty volume names');
        if (typeof target === 'string') continue;
        if (
          isRecord(target) &&
          typeof target.bind === 'string' &&
          (target.mode === undefined || (typeof target.mode === 'string' && volumeMode.test(target.mode)))
        ) {
          continue;
        }
        fail(`a mount point or {bind, mode} for volume ${JSON.stringify(source)}`);
      }
      return value;
    }
    case 'read_only_volumes':
      if (!isRecord(value) || !Object.values(value).every((target) => typeof target === 'string')) {
        return fail('a mapping of volume name or host path → mount point');
      }
      return value;
    case 'extra_host_config':
      if (!isRecord(value)) return fail('a mapping (docker-py create_host_config keywords)');
      checkHostPaths(hostConfigFromKwargs(value as JsonObject));
      return value;
    case 'extra_create_kwargs': {
      if (!isRecord(value)) return fail('a mapping (docker-py create_container keywords)');
      const hostConfig = createBodyFromKwargs(value as JsonObject).HostConfig;
      if (isRecord(hostConfig)) checkHostPaths(hostConfig as JsonObject, 'host_config.');
      return value;
    }
    default:
      throw new DockerTraitError(`unknown DockerSpawner trait '${name}'`);
  }
}

/**
 * The image of a start, as DockerSpawner's start() and check_allowed: user_options.image when
 * given (a key of allowed_images, resolved to its image), else `image`. A refusal is the
 * message DockerSpawner's HTTP 400 carries.
 */
export function imageForSpawn(
  traits: Pick<DockerTraits, 'image' | 'allowed_images'>,
  userOptions: JsonObject,
): { image: string } | { refused: string } {
  const asked = userOptions.image;
  // Python's `if image_option:` — an empty or absent choice is no choice.
  if (asked === undefined || asked === null || asked === '' || asked === false)
    return { image: traits.image };
  if (typeof asked !== 'string') {
    return {
      refused: `user_options.image must be a string (an image's name), got ${JSON.stringify(asked).slice(0, 100)}`,
    };
  }
  const shown = asked.length > 200 ? `${asked.slice(0, 200)}…` : asked;
  const allowed = traits.allowed_images;
  if (allowed === '*') {
    return isDockerReference(asked)
      ? { image: asked }
      : { refused: `Image ${JSON.stringify(shown)} is not an image reference` };
  }
  const names = Object.keys(allowed);
  if (names.length === 0) return { refused: 'Specifying image to launch is not allowed' };
  if (!Object.hasOwn(allowed, asked))
    return { refused: `Image ${shown} not in allowed list: ${names.join(', ')}` };
  return { image: allowed[asked]! };
}

/** The choices of DockerSpawner's options form: allowed_images' names, when there are two or more. */
export function imageChoices(traits: Pick<DockerTraits, 'allowed_images'>): string[] {
  const allowed = traits.allowed_images;
  if (allowed === '*') return [];
  const names = Object.keys(allowed);
  return names.length > 1 ? names : [];
}

/** A path with a '.' or '..' segment: rendered from a raw name ('..'), it would climb out of its directory. */
function climbs(path: string): boolean {
  return path.split('/').some((part) => part === '..' || part === '.');
}

/** A bind's or mount's source: a volume name, or an absolute host path that does not climb. */
function isHostSource(source: string): boolean {
  return /^(\/[^:]*|[a-zA-Z0-9][a-zA-Z0-9_.-]*)$/.test(source) && !climbs(source);
}

/** A mount's source (an object, so ':' is only a character): a volume name, or an absolute host path. */
function isMountSource(source: string): boolean {
  return /^(\/.*|[a-zA-Z0-9][a-zA-Z0-9_.-]*)$/.test(source) && !climbs(source);
}

/** An absolute path in the container; in a 'src:dst:mode' bind also free of ':'. */
function isMountPoint(target: unknown, inBind = false): boolean {
  return typeof target === 'string' && (inBind ? /^\/[^:]*$/ : /^\//).test(target) && !climbs(target);
}

/**
 * The host paths of a HostConfig's Binds and Mounts (extra_host_config's `binds`, `mounts`), as
 * `volumes` is held: 'source:target[:mode]' with a volume name or absolute host path mounted at
 * an absolute path, no '.' or '..' segment, no extra ':' field (a raw name holding ':' would
 * otherwise add one). Checked on the config as written and again once its templates are rendered.
 */
export function checkHostPaths(hostConfig: JsonObject, prefix = ''): void {
  const binds = hostConfig.Binds;
  if (binds !== undefined && binds !== null) {
    if (!Array.isArray(binds)) throw new DockerTraitError(`${prefix}binds: expected a list`);
    for (const bind of binds) {
      const parts = typeof bind === 'string' ? bind.split(':') : [];
      const [source = '', target, mode] = parts;
      if (
        parts.length < 2 ||
        parts.length > 3 ||
        !isHostSource(source) ||
        !isMountPoint(target, true) ||
        (mode !== undefined && !volumeMode.test(mode))
      ) {
        throw new DockerTraitError(
          `${prefix}binds: ${JSON.stringify(bind)} is not source:target[:mode] with a volume name or absolute host path mounted at an absolute path (no '.' or '..' segments)`,
        );
      }
    }
  }
  const mounts = hostConfig.Mounts;
  if (mounts !== undefined && mounts !== null) {
    if (!Array.isArray(mounts)) throw new DockerTraitError(`${prefix}mounts: expected a list`);
    for (const mount of mounts) {
      const fail = (): never => {
        throw new DockerTraitError(
          `${prefix}mounts: ${JSON.stringify(mount)} is not a mount of a volume name or absolute host path at an absolute target (no '.' or '..' segments)`,
        );
      };
      if (!isRecord(mount)) fail();
      const { Type: type, Source: source, Target: target } = mount as JsonObject;
      if (!isMountPoint(target)) fail();
      if (
        type === 'bind' &&
        (typeof source !== 'string' || !source.startsWith('/') || !isMountSource(source))
      )
        fail();
      if (type !== 'bind' && source !== undefined && source !== null && source !== '') {
        if (typeof source !== 'string' || !isMountSource(source)) fail();
      }
    }
  }
}

const byteUnits: Record<string, number> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** docker-py's byte sizes: a number, or '512m', '2g', '1024k' (units b, k, m, g; case-insensitive). */
export function dockerBytes(value: JsonValue, key: string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?)\s*([bkmgt])?b?\s*$/i.exec(value);
    if (match) return Math.floor(Number(match[1]) * byteUnits[(match[2] ?? 'b').toLowerCase()]!);
  }
  throw new DockerTraitError(`${key}: expected bytes such as 512m or 2g, got ${JSON.stringify(value)}`);
}

function pascal(key: string): string {
  if (/^[A-Z]/.test(key)) return key;
  return key
    .split('_')
    .map((part) => (part ? part[0]!.toUpperCase() + part.slice(1) : ''))
    .join('');
}

/** Host-config keywords whose Engine name is not the plain PascalCase of the keyword. */
const hostConfigNames: Record<string, string> = {
  mem_limit: 'Memory',
  memswap_limit: 'MemorySwap',
  mem_reservation: 'MemoryReservation',
  mem_swappiness: 'MemorySwappiness',
  read_only: 'ReadonlyRootfs',
  dns_opt: 'DnsOptions',
  uts_mode: 'UTSMode',
  cgroupns: 'CgroupnsMode',
};

const byteKeys = new Set(['mem_limit', 'memswap_limit', 'mem_reservation', 'shm_size', 'kernel_memory']);

function strings(value: JsonValue, key: string): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return value as string[];
  throw new DockerTraitError(`${key}: expected a list of strings, got ${JSON.stringify(value)}`);
}

function pascalKeys(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(pascalKeys);
  if (value === null || typeof value !== 'object') return value;
  const out: JsonObject = {};
  for (const [key, item] of Object.entries(value))
    out[key === 'device_ids' ? 'DeviceIDs' : pascal(key)] = pascalKeys(item);
  return out;
}

/** `volumes`-style binds (docker-py's `binds`): a list of 'src:dst[:mode]' or {src: {bind, mode}}. */
function bindsOf(value: JsonValue): string[] {
  if (Array.isArray(value)) return strings(value, 'binds');
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).map(([source, target]) => {
      if (typeof target === 'string') return `${source}:${target}`;
      if (
        target !== null &&
        typeof target === 'object' &&
        !Array.isArray(target) &&
        typeof target.bind === 'string'
      ) {
        return `${source}:${target.bind}:${typeof target.mode === 'string' ? target.mode : 'rw'}`;
      }
      throw new DockerTraitError(`binds.${source}: expected a mount point or {bind, mode}`);
    });
  }
  throw new DockerTraitError(`binds: expected a list or a mapping, got ${JSON.stringify(value)}`);
}

function portKey(port: string): string {
  return port.includes('/') ? port : `${port}/tcp`;
}

function portBindingsOf(value: JsonValue): JsonObject {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new DockerTraitError(
      'port_bindings: expected a mapping of container port → host port or (ip, port)',
    );
  }
  const out: JsonObject = {};
  for (const [port, target] of Object.entries(value)) {
    const one = (item: JsonValue): JsonObject => {
      if (typeof item === 'number' || typeof item === 'string') return { HostIp: '', HostPort: String(item) };
      if (item === null) return { HostIp: '', HostPort: '' };
      if (Array.isArray(item) && item.length >= 1 && item.length <= 2) {
        return { HostIp: String(item[0] ?? ''), HostPort: item[1] === undefined ? '' : String(item[1]) };
      }
      throw new DockerTraitError(`port_bindings.${port}: expected a port, (ip,) or (ip, port)`);
    };
    const many =
      Array.isArray(target) && target.some((item) => Array.isArray(item) || typeof item === 'number');
    out[portKey(port)] = many ? (target as JsonValue[]).map(one) : [one(target)];
  }
  return out;
}

/** A mapping (`{host: ip}`, `{name: alias}`) as docker-py writes it, `key:value`; or a list of those. */
function colonPairs(value: JsonValue, key: string): string[] {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? Object.entries(value).map(([name, to]) => `${name}:${String(to)}`)
    : strings(value, key);
}

/** docker-py's create_host_config keywords → the Engine API's HostConfig. */
export function hostConfigFromKwargs(kwargs: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(kwargs)) {
    if (/^[A-Z]/.test(key)) {
      out[key] = value;
      continue;
    }
    if (!/^[a-z][a-z0-9_]*$/.test(key))
      throw new DockerTraitError(`unknown host config key ${JSON.stringify(key)}`);
    if (byteKeys.has(key)) out[hostConfigNames[key] ?? pascal(key)] = dockerBytes(value, key);
    else if (key === 'binds') out.Binds = bindsOf(value);
    else if (key === 'port_bindings') out.PortBindings = portBindingsOf(value);
    else if (key === 'extra_hosts') {
      out.ExtraHosts = colonPairs(value, key);
    } else if (key === 'devices') {
      out.Devices = strings(value, key).map((spec) => {
        const [host, container, permissions] = spec.split(':');
        return {
          PathOnHost: host ?? '',
          PathInContainer: container || host || '',
          CgroupPermissions: permissions || 'rwm',
        };
      });
    } else if (key === 'links') {
      out.Links = colonPairs(value, key);
    } else if (key === 'tmpfs') {
      out.Tmpfs = Array.isArray(value)
        ? Object.fromEntries(
            strings(value, key).map((spec) => [spec.split(':')[0]!, spec.split(':')[1] ?? '']),
          )
        : value;
    } else out[hostConfigNames[key] ?? pascal(key)] = pascalKeys(value);
  }
  return out;
}

/** Splits a command line as Python's shlex.split does for the common cases (quotes, backslashes). */
export function shellSplit(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const char = line[i]!;
    if (quote) {
      if (char === quote) quote = undefined;
      else if (char === '\\' && quote === '"' && (line[i + 1] === '"' || line[i + 1] === '\\'))
        word += line[++i];
      else word += char;
    } else if (char === "'" || char === '"') {
      quote = char;
      inWord = true;
    } else if (char === '\\' && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (/\s/.test(char)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += char;
      inWord = true;
    }
  }
  if (quote) throw new DockerTraitError(`unclosed quote in ${JSON.stringify(line)}`);
  if (inWord) words.push(word);
  return words;
}

/**
 * docker-py's create_container keywords → the create body's fields (Engine names);
 * `environment` becomes `Env` lines and `host_config` a HostConfig, both merged by the caller.
 */
export function createBodyFromKwargs(kwargs: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(kwargs)) {
    if (/^[A-Z]/.test(key)) {
      out[key] = value;
      continue;
    }
    if (!/^[a-z][a-z0-9_]*$/.test(key))
      throw new DockerTraitError(`unknown create key ${JSON.stringify(key)}`);
    switch (key) {
      case 'user':
        out.User = typeof value === 'number' ? String(value) : (value as JsonValue);
        break;
      case 'command':
      case 'entrypoint':
        out[key === 'command' ? 'Cmd' : 'Entrypoint'] =
          typeof value === 'string' ? shellSplit(value) : strings(value, key);
        break;
      case 'environment':
        out.Env =
          value !== null && typeof value === 'object' && !Array.isArray(value)
            ? Object.entries(value).map(([name, item]) => `${name}=${String(item)}`)
            : strings(value, key);
        break;
      case 'labels':
        out.Labels = Array.isArray(value)
          ? Object.fromEntries(strings(value, key).map((label) => [label, '']))
          : (value as JsonValue);
        break;
      case 'stdin_open':
        out.OpenStdin = value;
        break;
      case 'volumes':
        out.Volumes = Object.fromEntries(strings(value, key).map((path) => [path, {}]));
        break;
      case 'ports':
        out.ExposedPorts = Object.fromEntries(
          (Array.isArray(value) ? value : [value]).map((port) => [portKey(String(port)), {}]),
        );
        break;
      case 'host_config':
        if (value === null || typeof value !== 'object' || Array.isArray(value)) {
          throw new DockerTraitError('host_config: expected a mapping');
        }
        out.HostConfig = hostConfigFromKwargs(value);
        break;
      case 'runtime':
        out.HostConfig = { ...((out.HostConfig as JsonObject | undefined) ?? {}), Runtime: value };
        break;
      default:
        out[pascal(key)] = pascalKeys(value);
    }
  }
  return out;
}
