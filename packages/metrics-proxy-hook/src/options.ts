// The two subcommands' command lines (each flag also read from METRICS_PROXY_HOOK_<FLAG>),
// turned into one typed options object each, with every mistake reported as a UsageError.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getCACertificates } from 'node:tls';
import { type FlagSpec, type ListenAddress, type ParsedFlags, UsageError } from '@seahorse/runtime';
import { sidecarPort } from './annotations.ts';
import { parseLeaseTokenKeys } from './lease-token.ts';
import { parseByteSize } from './metrics-cache.ts';
import type { ApiServerConnection } from './pod-evidence.ts';
import type { RedisAddress } from './redis-nodes.ts';
import type { RedlockOptions } from './redlock.ts';

/** The environment variable that stands in for a flag: `--cert-dir` ↔ METRICS_PROXY_HOOK_CERT_DIR. */
export function envName(flag: string): string {
  return `METRICS_PROXY_HOOK_${flag.toUpperCase().replaceAll('-', '_')}`;
}

/** Gives every flag but --help and --version its environment variable. */
function withEnv(specs: FlagSpec[]): FlagSpec[] {
  return specs.map((spec) =>
    spec.name === 'help' || spec.name === 'version' ? spec : { ...spec, env: envName(spec.name) },
  );
}

export function version(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return manifest.version;
}

export const defaultSidecarImage = `ghcr.io/seahorse/metrics-proxy-hook:${version()}`;

/** The webhook's Service in the manifests (base/service.yaml: 443 → 9443). */
export const defaultLeaseUrl =
  'https://prometheus-metrics-proxy-hook.prometheus-metrics-proxy-hook.svc:443/semaphore/lease';

/** The environment variable holding the lease token key(s) themselves (a Secret's key). */
export const leaseTokenKeyEnv = 'METRICS_PROXY_HOOK_LEASE_TOKEN_KEY';

const common = {
  logLevel: {
    name: 'log-level',
    kind: 'string',
    arg: '<level>',
    default: 'info',
    choices: ['debug', 'info', 'warn', 'error'],
    help: 'Log level',
  },
  help: { name: 'help', short: 'h', kind: 'boolean', help: 'Show this help' },
  redisTimeout: {
    name: 'redis-timeout',
    kind: 'duration',
    arg: '<duration>',
    default: '250ms',
    help: 'A Redis node slower than this counts as down for that command',
  },
  lockTtl: {
    name: 'semaphore-lock-ttl',
    kind: 'duration',
    arg: '<duration>',
    default: '3s',
    help: 'Validity of the Redlock lock guarding a workload slot table',
  },
  lockRetries: {
    name: 'semaphore-lock-retries',
    kind: 'integer',
    arg: '<n>',
    min: 0,
    max: 1000,
    // 5 left about half of ten concurrent admissions refused as busy with one node hung (each
    // attempt then waits out --redis-timeout); 12 decide them all and stay well within the
    // API server's 10 s webhook timeout (12 x (100-200 ms + 250 ms) is about 5 s at worst).
    default: 12,
    help: 'Further attempts to take a busy lock before denying',
  },
  lockRetryDelay: {
    name: 'semaphore-lock-retry-delay',
    kind: 'duration',
    arg: '<duration>',
    default: '100ms',
    help: 'Pause between lock attempts, plus up to as much again of random jitter',
  },
  redisUsername: {
    name: 'redis-username',
    kind: 'string',
    arg: '<user>',
    help: "Redis ACL user to log in as (default: Redis's default user)",
  },
  redisPasswordFile: {
    name: 'redis-password-file',
    kind: 'string',
    arg: '<path>',
    help: 'File holding the Redis password (a mounted Secret); METRICS_PROXY_HOOK_REDIS_PASSWORD works too',
  },
  leaseTtl: {
    name: 'semaphore-lease-ttl',
    kind: 'duration',
    arg: '<duration>',
    default: '30s',
    help: "A running pod's slot lease; its sidecar renews it (through the webhook) every third of this",
  },
} as const satisfies Record<string, Omit<FlagSpec, 'env'>>;

export const webhookFlagSpecs: FlagSpec[] = withEnv([
  { name: 'host', kind: 'string', arg: '<ip>', default: '0.0.0.0', help: 'Address the webhook listens on' },
  {
    name: 'port',
    kind: 'integer',
    arg: '<n>',
    min: 0,
    max: 65535,
    default: 9443,
    help: 'HTTPS port of the webhook (POST /mutate)',
  },
  {
    name: 'cert-dir',
    kind: 'string',
    arg: '<dir>',
    default: '/var/k8s-webhook-server/serving-certs',
    help: 'Directory holding tls.crt and tls.key; reloaded when they change',
  },
  {
    name: 'client-ca-file',
    kind: 'string',
    arg: '<path>',
    help: "Require a client certificate on /mutate that chains to this CA (the API server's, from its AdmissionConfiguration kubeConfigFile); without it any TLS client is answered",
  },
  {
    name: 'client-cert-name',
    kind: 'list',
    arg: '<name>',
    help: "With --client-ca-file: the client certificate's CN or a DNS SAN must be one of these (repeat; e.g. the name in the API server's client certificate)",
  },
  {
    name: 'cert-poll-interval',
    kind: 'duration',
    arg: '<duration>',
    default: '10s',
    help: 'Also re-read the certificate this often, in case a change notification is missed',
  },
  {
    name: 'metrics-address',
    kind: 'string',
    arg: '<host:port>',
    default: '0.0.0.0:8080',
    help: 'Prometheus metrics listener (0 disables it)',
  },
  {
    name: 'probe-address',
    kind: 'string',
    arg: '<host:port>',
    default: '0.0.0.0:8081',
    help: '/healthz and /readyz listener (0 disables it)',
  },
  {
    name: 'sidecar-image',
    kind: 'string',
    arg: '<image>',
    default: defaultSidecarImage,
    help: 'Image of the injected prometheus-metrics-proxy container',
  },
  {
    name: 'sidecar-image-pull-policy',
    kind: 'string',
    arg: '<policy>',
    default: 'IfNotPresent',
    choices: ['Always', 'IfNotPresent', 'Never'],
    help: 'imagePullPolicy of the injected container',
  },
  {
    name: 'termination-grace-period',
    kind: 'duration',
    arg: '<duration>',
    default: '30s',
    help: 'Annotated pods get at least this terminationGracePeriodSeconds (whole seconds, rounded up)',
  },
  {
    name: 'native-sidecar',
    kind: 'boolean',
    help: 'Inject the proxy as a native sidecar (init container, restartPolicy Always; Kubernetes 1.29+): Job pods complete and release their slot',
  },
  {
    name: 'metrics-secure',
    kind: 'boolean',
    help: "Serve /metrics over HTTPS with the webhook's certificate (the original's flag)",
  },
  { name: 'enable-http2', kind: 'boolean', help: 'Serve HTTP/2 as well as HTTP/1.1 (off: HTTP/1.1 only)' },
  {
    name: 'lameduck',
    kind: 'duration',
    arg: '<duration>',
    default: '0s',
    help: 'On SIGTERM, keep serving (unready) this long before draining',
  },
  {
    name: 'redis',
    kind: 'list',
    arg: '<host:port>',
    help: 'Independent Redis node for the max-concurrent semaphore; repeat (3 recommended) or comma-separate in the env. Without it the semaphore is off',
  },
  common.redisTimeout,
  common.redisUsername,
  common.redisPasswordFile,
  {
    name: 'lease-token-key-file',
    kind: 'string',
    arg: '<path>',
    help: "File (a mounted Secret) holding the key that signs each limited pod's lease token, one key per line, at least 32 bytes each (openssl rand -hex 32); the first signs, all verify. Required with --redis; METRICS_PROXY_HOOK_LEASE_TOKEN_KEY works too",
  },
  {
    name: 'lease-url',
    kind: 'string',
    arg: '<url>',
    default: defaultLeaseUrl,
    help: "Where sidecars renew and release their slots: this webhook's Service, https, path /semaphore/lease",
  },
  {
    name: 'lease-ca-file',
    kind: 'string',
    arg: '<path>',
    help: "CA bundle (PEM) that signed this webhook's serving certificate, handed to each limited pod's sidecar to verify --lease-url (default: ca.crt in --cert-dir, as cert-manager writes it); read at each admission",
  },
  {
    name: 'sidecar-redis-secret',
    kind: 'string',
    arg: '<name>',
    help: 'Removed: sidecars no longer reach Redis (they renew through the webhook); giving it is an error saying what to do instead',
  },
  common.lockTtl,
  common.lockRetries,
  common.lockRetryDelay,
  {
    name: 'semaphore-admission-ttl',
    kind: 'duration',
    arg: '<duration>',
    default: '5m',
    help: "A new pod's slot lease, until its sidecar starts renewing it (covers scheduling and image pulls)",
  },
  common.leaseTtl,
  {
    name: 'kube-api-server',
    kind: 'string',
    arg: '<url>',
    help: 'API server asked which slots still have a pod (default in a cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT); without one, leaked slots wait for their lease',
  },
  {
    name: 'kube-token-file',
    kind: 'string',
    arg: '<path>',
    default: '/var/run/secrets/kubernetes.io/serviceaccount/token',
    help: 'Service account token for --kube-api-server (re-read on every request)',
  },
  {
    name: 'kube-ca-file',
    kind: 'string',
    arg: '<path>',
    default: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
    help: "CA of --kube-api-server's certificate",
  },
  {
    name: 'semaphore-reclaim-grace',
    kind: 'duration',
    arg: '<duration>',
    default: '60s',
    help: "A slot without a pod is reclaimed once it is this old (an admission still in flight has no pod yet; the API server's request timeout, 60s by default, bounds it)",
  },
  common.logLevel,
  { name: 'version', short: 'V', kind: 'boolean', help: 'Print the version' },
  common.help,
]);

export const sidecarFlagSpecs: FlagSpec[] = withEnv([
  {
    name: 'address',
    kind: 'string',
    arg: '<host:port>',
    default: `0.0.0.0:${sidecarPort}`,
    help: 'Where the sidecar serves the metrics it proxies',
  },
  {
    name: 'target',
    kind: 'string',
    arg: '<url>',
    help: "The application's metrics URL, e.g. http://127.0.0.1:8080/metrics (required; the original's positional TARGET_URL works too)",
  },
  {
    name: 'max-cached-body',
    kind: 'string',
    arg: '<size>',
    default: '32Mi',
    help: 'Keep the last metrics body for after the application exits when it is at most this big (e.g. 8Mi); larger bodies are streamed but not kept',
  },
  {
    name: 'termination-grace-period',
    kind: 'duration',
    arg: '<duration>',
    default: '30s',
    help: "The pod's termination grace period: the sidecar exits within it after SIGTERM",
  },
  {
    name: 'lameduck',
    kind: 'duration',
    arg: '<duration>',
    default: '1s',
    help: 'After the last scrape, keep serving this long before shutting down',
  },
  {
    name: 'scrape-wait-threshold',
    kind: 'duration',
    arg: '<duration>',
    default: '1s',
    help: 'On SIGTERM, fetch the metrics once more if the last scrape is older than this',
  },
  {
    name: 'target-timeout',
    kind: 'duration',
    arg: '<duration>',
    default: '10s',
    help: 'Give up on a request to the target after this long',
  },
  {
    name: 'native-sidecar',
    kind: 'boolean',
    help: "Set by the webhook when injected as a native sidecar (stopped after the application): the slot is released at exit instead of held to the grace period's end",
  },
  {
    name: 'lease-url',
    kind: 'string',
    arg: '<url>',
    help: "The webhook's lease endpoint the slot is renewed and released at (set by the webhook)",
  },
  {
    name: 'lease-token',
    kind: 'string',
    arg: '<token>',
    help: 'The token that lets this pod renew and release its own slot, and nothing else (set by the webhook)',
  },
  {
    name: 'lease-ca',
    kind: 'string',
    arg: '<pem>',
    help: "The CA (PEM text) the webhook's certificate is verified against (set by the webhook)",
  },
  {
    name: 'lease-timeout',
    kind: 'duration',
    arg: '<duration>',
    default: '5s',
    help: 'A lease request to the webhook that takes longer fails and is retried at the next renewal',
  },
  {
    name: 'semaphore-key',
    kind: 'string',
    arg: '<workload>',
    help: 'Workload key of the slot (set by the webhook)',
  },
  { name: 'semaphore-slot', kind: 'string', arg: '<id>', help: 'Slot id (set by the webhook)' },
  {
    name: 'semaphore-version',
    kind: 'string',
    arg: '<version>',
    default: '',
    help: "The grant's fencing version, named by every renewal and the release (set by the webhook)",
  },
  common.leaseTtl,
  common.logLevel,
  common.help,
]);

/** `host:port`, `:port` or `[v6]:port`; `0` disables the listener when `allowOff`. */
export function parseListenAddress(text: string, flag: string, allowOff: true): ListenAddress | undefined;
export function parseListenAddress(text: string, flag: string, allowOff?: false): ListenAddress;
export function parseListenAddress(text: string, flag: string, allowOff = false): ListenAddress | undefined {
  if (allowOff && text.trim() === '0') return undefined;
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : Number.NaN;
  if (!match || port > 65535) {
    throw new UsageError(
      `${flag} expects host:port such as 0.0.0.0:8080 or :8080${allowOff ? ' (0 turns it off)' : ''}, got '${text}'`,
    );
  }
  return { host: match[1] ?? match[2] ?? '', port };
}

/** `host:port`, `host` (port 6379) or `redis://host:port`; credentials are refused. */
export function parseRedisAddress(text: string, flag: string): RedisAddress {
  let rest = text.trim();
  if (rest.startsWith('redis://')) {
    rest = rest.slice('redis://'.length).replace(/\/$/, '');
  }
  if (rest.includes('@')) {
    throw new UsageError(
      `${flag}: '${text}' carries credentials, which would sit in the webhook's command line and pod spec; give the password with --redis-password-file (a mounted Secret) or METRICS_PROXY_HOOK_REDIS_PASSWORD instead`,
    );
  }
  const match = /^(?:\[([^\]]+)\]|([^:/[\]]+))(?::(\d{1,5}))?$/.exec(rest);
  const port = match?.[3] === undefined ? 6379 : Number(match[3]);
  if (!match || port < 1 || port > 65535) {
    throw new UsageError(`${flag} expects a Redis address such as redis-0.redis:6379, got '${text}'`);
  }
  return { host: match[1] ?? match[2]!, port };
}

function redisAddresses(flags: ParsedFlags, name: string): RedisAddress[] {
  const addresses = flags
    .list(name)
    .flatMap((value) => value.split(','))
    .map((value) => value.trim())
    .filter((value) => value !== '')
    .map((value) => parseRedisAddress(value, `--${name}`));
  const seen = new Set<string>();
  for (const { host, port } of addresses) {
    const key = `${host}:${port}`;
    if (seen.has(key)) {
      throw new UsageError(`--${name} lists ${key} twice; Redlock needs independent nodes, each once`);
    }
    seen.add(key);
  }
  return addresses;
}

function lockOptions(flags: ParsedFlags): RedlockOptions {
  const retryDelayMs = flags.duration('semaphore-lock-retry-delay')!;
  return {
    ttlMs: flags.duration('semaphore-lock-ttl')!,
    retryCount: flags.integer('semaphore-lock-retries')!,
    retryDelayMs,
    retryJitterMs: retryDelayMs,
  };
}

function positive(flags: ParsedFlags, name: string): number {
  const value = flags.duration(name)!;
  if (value <= 0) throw new UsageError(`--${name} must be longer than 0`);
  return value;
}

/** The Redis password: METRICS_PROXY_HOOK_REDIS_PASSWORD, or the file --redis-password-file names. */
function redisPassword(flags: ParsedFlags, env: NodeJS.ProcessEnv): string | undefined {
  const direct = env[passwordEnv];
  if (direct) return direct;
  const file = flags.string('redis-password-file');
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(
      `--redis-password-file: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'}); mount the Redis password Secret there`,
    );
  }
  const password = text.replace(/\r?\n$/, '');
  if (password === '') throw new UsageError(`--redis-password-file: ${file} is empty`);
  return password;
}

/** The environment variable holding the Redis password (a Secret's key, never a flag). */
export const passwordEnv = 'METRICS_PROXY_HOOK_REDIS_PASSWORD';

export interface SemaphoreConnection {
  redis: RedisAddress[];
  /** Redis ACL user; undefined: the default user. */
  username?: string | undefined;
  /** Redis's requirepass (or the user's password); never logged. */
  password?: string | undefined;
  commandTimeoutMs: number;
  lock: RedlockOptions;
}

export interface InjectionSettings {
  sidecarImage: string;
  imagePullPolicy: string;
  /** The floor for annotated pods' terminationGracePeriodSeconds. */
  terminationGracePeriodSeconds: number;
  /** Inject as an init container with restartPolicy Always (Kubernetes 1.29+). */
  nativeSidecar?: boolean;
}

/** How sidecars reach the webhook to renew their slots. */
export interface LeaseSettings {
  /** Keys that sign (the first) and verify (all) lease tokens. */
  tokenKeys: Buffer[];
  /** https URL of the webhook's lease endpoint, as sidecars reach it (its Service). */
  url: string;
  /** PEM bundle sidecars verify the webhook's certificate against; read at each admission. */
  caFile: string;
}

/** mTLS on /mutate: who may call the webhook (the API server, by its client certificate). */
export interface ClientAuthentication {
  /** PEM bundle the client's certificate must chain to. */
  ca: Buffer;
  /** Allowed subject CNs or DNS SANs; empty: any certificate the CA signed. */
  names: string[];
}

export interface WebhookOptions {
  listen: ListenAddress;
  certDir: string;
  clientAuth: ClientAuthentication | undefined;
  certPollIntervalMs: number;
  metricsListen: ListenAddress | undefined;
  probeListen: ListenAddress | undefined;
  /** Serve /metrics over HTTPS with the webhook's certificate. */
  metricsSecure: boolean;
  enableHttp2: boolean;
  lameduckMs: number;
  /** Larger AdmissionReview bodies are refused with 413. */
  maxBodyBytes: number;
  /** Bodies held in memory at once, across requests; past it a request is refused with 503. */
  maxBodyBytesInFlight: number;
  /** A body still arriving after this is refused with 408. */
  bodyTimeoutMs: number;
  injection: InjectionSettings;
  semaphore:
    | (SemaphoreConnection & {
        /** Lease of a slot granted at admission, until the sidecar first renews it. */
        admissionLeaseMs: number;
        /** Lease the sidecar keeps renewing. */
        leaseMs: number;
        /** Where to read which slots still have a pod; undefined: no reclaim. */
        apiServer: ApiServerConnection | undefined;
        reclaimGraceMs: number;
        lease: LeaseSettings;
      })
    | undefined;
}

export function buildWebhookOptions(flags: ParsedFlags, env: NodeJS.ProcessEnv = {}): WebhookOptions {
  const host = flags.string('host')!;
  const redis = redisAddresses(flags, 'redis');
  const image = flags.string('sidecar-image')!.trim();
  if (image === '') throw new UsageError('--sidecar-image must name an image');
  const graceMs = flags.duration('termination-grace-period')!;
  if (graceMs < 1000) throw new UsageError('--termination-grace-period must be at least 1s');
  const leaseMs = positive(flags, 'semaphore-lease-ttl');
  if (leaseMs < 1000)
    throw new UsageError('--semaphore-lease-ttl must be at least 1s (it is renewed every third)');
  if (flags.has('sidecar-redis-secret')) {
    throw new UsageError(
      `--sidecar-redis-secret was removed: sidecars no longer reach Redis, they renew their slots through the webhook (${leasePathName}) with a token it signs. Drop the flag (and the Secret's copies in enabled namespaces) and give the webhook --lease-token-key-file`,
    );
  }
  const password = redis.length > 0 ? redisPassword(flags, env) : undefined;
  const certDir = flags.string('cert-dir')!;
  const lease = redis.length > 0 ? leaseSettings(flags, env, certDir) : undefined;
  return {
    listen: { host: host === '*' ? '' : host, port: flags.integer('port')! },
    certDir,
    clientAuth: clientAuthentication(flags),
    certPollIntervalMs: positive(flags, 'cert-poll-interval'),
    metricsListen: parseListenAddress(flags.string('metrics-address')!, '--metrics-address', true),
    probeListen: parseListenAddress(flags.string('probe-address')!, '--probe-address', true),
    metricsSecure: flags.boolean('metrics-secure'),
    enableHttp2: flags.boolean('enable-http2'),
    lameduckMs: flags.duration('lameduck')!,
    maxBodyBytes: 3 * 1024 * 1024,
    maxBodyBytesInFlight: 16 * 1024 * 1024,
    bodyTimeoutMs: 10_000,
    injection: {
      sidecarImage: image,
      imagePullPolicy: flags.string('sidecar-image-pull-policy')!,
      terminationGracePeriodSeconds: Math.ceil(graceMs / 1000),
      nativeSidecar: flags.boolean('native-sidecar'),
    },
    semaphore:
      redis.length === 0
        ? undefined
        : {
            redis,
            username: flags.string('redis-username'),
            password,
            commandTimeoutMs: positive(flags, 'redis-timeout'),
            lock: lockOptions(flags),
            admissionLeaseMs: positive(flags, 'semaphore-admission-ttl'),
            leaseMs,
            apiServer: apiServerConnection(flags, env),
            reclaimGraceMs: flags.duration('semaphore-reclaim-grace')!,
            lease: lease!,
          },
  };
}

const leasePathName = 'POST /semaphore/lease';

/** The lease token keys, URL and CA the semaphore needs; every gap is a UsageError saying what to do. */
function leaseSettings(flags: ParsedFlags, env: NodeJS.ProcessEnv, certDir: string): LeaseSettings {
  const file = flags.string('lease-token-key-file');
  let text = env[leaseTokenKeyEnv];
  let source = leaseTokenKeyEnv;
  if (!text && file !== undefined) {
    source = `--lease-token-key-file ${file}`;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new UsageError(
        `--lease-token-key-file: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'}); mount the lease token key Secret there`,
      );
    }
  }
  if (!text) {
    throw new UsageError(
      `the semaphore (--redis) needs a lease token key: sidecars renew their slots through the webhook with a token it signs. Create a Secret with a key from 'openssl rand -hex 32' and give its file as --lease-token-key-file (or its value as ${leaseTokenKeyEnv}); every replica needs the same key`,
    );
  }
  let tokenKeys: Buffer[];
  try {
    tokenKeys = parseLeaseTokenKeys(text, source);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const raw = flags.string('lease-url')!;
  const url = URL.canParse(raw) ? new URL(raw) : undefined;
  if (url?.protocol !== 'https:' || url.pathname !== '/semaphore/lease' || url.search || url.username) {
    throw new UsageError(
      `--lease-url expects the webhook's Service as sidecars reach it, https with the path /semaphore/lease, such as ${defaultLeaseUrl}; got '${raw}'`,
    );
  }
  const caFile = flags.string('lease-ca-file') ?? join(certDir, 'ca.crt');
  readLeaseCa(caFile);
  return { tokenKeys, url: url.href, caFile };
}

/** The PEM certificates in the lease CA file; a UsageError when there are none. */
export function readLeaseCa(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(
      `--lease-ca-file: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'}); sidecars need the CA of the webhook's certificate to verify --lease-url (cert-manager writes it as ca.crt beside tls.crt)`,
    );
  }
  const certificates = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (certificates.length === 0) throw new UsageError(`--lease-ca-file: ${file} holds no PEM certificate`);
  return `${certificates.join('\n')}\n`;
}

function clientAuthentication(flags: ParsedFlags): ClientAuthentication | undefined {
  const file = flags.string('client-ca-file');
  const names = flags
    .list('client-cert-name')
    .flatMap((value) => value.split(','))
    .map((value) => value.trim())
    .filter((value) => value !== '');
  if (file === undefined) {
    if (names.length > 0)
      throw new UsageError(
        '--client-cert-name needs --client-ca-file (the CA that signs those certificates)',
      );
    return undefined;
  }
  let ca: Buffer;
  try {
    ca = readFileSync(file);
  } catch (error) {
    throw new UsageError(
      `--client-ca-file: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'}); mount the CA of the API server's client certificate there`,
    );
  }
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
    throw new UsageError(`--client-ca-file: ${file} holds no PEM certificate`);
  }
  return { ca, names };
}

function apiServerConnection(flags: ParsedFlags, env: NodeJS.ProcessEnv): ApiServerConnection | undefined {
  let raw = flags.string('kube-api-server');
  if (raw === undefined && env.KUBERNETES_SERVICE_HOST) {
    const host = env.KUBERNETES_SERVICE_HOST;
    raw = `https://${host.includes(':') ? `[${host}]` : host}:${env.KUBERNETES_SERVICE_PORT || '443'}`;
  }
  if (raw === undefined || raw === '') return undefined;
  const url = URL.canParse(raw) ? new URL(raw) : undefined;
  if (url?.protocol !== 'https:' && url?.protocol !== 'http:') {
    throw new UsageError(`--kube-api-server expects a URL such as https://10.96.0.1:443, got '${raw}'`);
  }
  return {
    url,
    tokenFile: flags.string('kube-token-file')!,
    caFile: url.protocol === 'https:' ? flags.string('kube-ca-file') : undefined,
    timeoutMs: 2000,
  };
}

export interface SidecarOptions {
  listen: ListenAddress;
  target: URL;
  terminationGracePeriodMs: number;
  lameduckMs: number;
  scrapeWaitThresholdMs: number;
  targetTimeoutMs: number;
  /** Larger bodies are streamed through but not kept for after the application exits. */
  maxCachedBytes: number;
  /** Stopped by the kubelet only after the application exited (a native sidecar). */
  nativeSidecar: boolean;
  /** For an https target: the roots its certificate must chain to (always verified, name included). */
  targetCa: string[] | undefined;
  semaphore:
    | {
        workload: string;
        slot: string;
        leaseMs: number;
        version: string;
        /** The webhook's lease endpoint, its CA (PEM), this slot's token, and a request deadline. */
        lease: { url: URL; ca: string; token: string; timeoutMs: number };
      }
    | undefined;
}

/**
 * The roots an https target's certificate is verified against, as Go's default transport (the
 * original's reverse proxy) does: SSL_CERT_FILE alone when set, else the system's roots (plus
 * Node's bundled ones and NODE_EXTRA_CA_CERTS). There is no switch to skip verification.
 */
function targetTrust(env: NodeJS.ProcessEnv): string[] {
  const file = env.SSL_CERT_FILE;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new UsageError(
        `SSL_CERT_FILE: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'}); it names the CA bundle an https --target is verified against`,
      );
    }
    const roots = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (roots.length === 0) throw new UsageError(`SSL_CERT_FILE: ${file} holds no PEM certificate`);
    return roots;
  }
  return [...new Set([...getCACertificates('default'), ...getCACertificates('system')])];
}

const semaphoreSidecarFlags = ['semaphore-key', 'semaphore-slot', 'lease-url', 'lease-token', 'lease-ca'];

export function buildSidecarOptions(flags: ParsedFlags, env: NodeJS.ProcessEnv = {}): SidecarOptions {
  const rawTarget = flags.string('target');
  if (rawTarget === undefined) {
    throw new UsageError(
      `the application's metrics URL is required: 'sidecar http://127.0.0.1:8080/metrics', --target or ${envName('target')}`,
    );
  }
  const target = URL.canParse(rawTarget) ? new URL(rawTarget) : undefined;
  if (target?.protocol !== 'http:' && target?.protocol !== 'https:') {
    throw new UsageError(
      `--target expects an http or https URL such as http://127.0.0.1:8080/metrics, got '${rawTarget}'`,
    );
  }
  const given = semaphoreSidecarFlags.filter((name) => flags.has(name));
  if (given.length > 0 && given.length < semaphoreSidecarFlags.length) {
    const missing = semaphoreSidecarFlags.filter((name) => !flags.has(name));
    throw new UsageError(
      `the semaphore needs --${semaphoreSidecarFlags.join(', --')} together; missing --${missing.join(', --')}${missing.includes('lease-url') ? ' (a pod admitted by an older webhook, whose sidecar reached Redis itself, must be created again)' : ''}`,
    );
  }
  const leaseUrl = flags.has('lease-url') ? flags.string('lease-url')! : '';
  const parsedLeaseUrl = URL.canParse(leaseUrl) ? new URL(leaseUrl) : undefined;
  if (given.length > 0 && parsedLeaseUrl?.protocol !== 'https:') {
    throw new UsageError(`--lease-url expects the webhook's https lease URL, got '${leaseUrl}'`);
  }
  const leaseCa = flags.string('lease-ca') ?? '';
  if (given.length > 0 && !leaseCa.includes('-----BEGIN CERTIFICATE-----')) {
    throw new UsageError("--lease-ca expects the PEM of the webhook's CA (-----BEGIN CERTIFICATE-----…)");
  }
  const leaseMs = positive(flags, 'semaphore-lease-ttl');
  const maxCachedBytes = parseByteSize(flags.string('max-cached-body')!);
  if (maxCachedBytes === undefined) {
    throw new UsageError(
      `--max-cached-body expects a size such as 32Mi, 512Ki or 1000000, got '${flags.string('max-cached-body')}'`,
    );
  }
  return {
    listen: parseListenAddress(flags.string('address')!, '--address'),
    maxCachedBytes,
    target,
    terminationGracePeriodMs: positive(flags, 'termination-grace-period'),
    lameduckMs: flags.duration('lameduck')!,
    scrapeWaitThresholdMs: flags.duration('scrape-wait-threshold')!,
    targetTimeoutMs: positive(flags, 'target-timeout'),
    targetCa: target.protocol === 'https:' ? targetTrust(env) : undefined,
    nativeSidecar: flags.boolean('native-sidecar'),
    semaphore:
      given.length === 0
        ? undefined
        : {
            workload: flags.string('semaphore-key')!,
            slot: flags.string('semaphore-slot')!,
            version: flags.string('semaphore-version') ?? '',
            leaseMs,
            lease: {
              url: parsedLeaseUrl!,
              ca: leaseCa,
              token: flags.string('lease-token')!,
              timeoutMs: positive(flags, 'lease-timeout'),
            },
          },
  };
}
