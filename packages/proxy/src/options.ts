// CHP's command line (same flags, same defaults) turned into one typed options object.
import { readFileSync } from 'node:fs';
import type { ServerOptions as TlsServerOptions } from 'node:https';
import {
  type FlagKind,
  type FlagName,
  type FlagSpec,
  type ListenAddress,
  type ParsedFlags,
  StartupError,
  UsageError,
} from '@seahorse/runtime';
import { bundledErrorPath } from './error-pages.ts';
import { redisOptions } from './redis-url.ts';
import type { ProxyOptions } from './server.ts';
import type { StoreOptions } from './store.ts';

type TlsPrefix = '' | 'api-' | 'client-';

const tlsFlags = <P extends TlsPrefix>(prefix: P, what: string) =>
  [
    { name: `${prefix}ssl-key`, kind: 'string', arg: '<keyfile>', help: `SSL key to use, if any${what}` },
    {
      name: `${prefix}ssl-cert`,
      kind: 'string',
      arg: '<certfile>',
      help: `SSL certificate to use, if any${what}`,
    },
    {
      name: `${prefix}ssl-ca`,
      kind: 'string',
      arg: '<ca-file>',
      help: `SSL certificate authority, if any${what}`,
    },
    {
      name: `${prefix}ssl-request-cert`,
      kind: 'boolean',
      help: `Request SSL certs to authenticate clients${what}`,
    },
    {
      name: `${prefix}ssl-reject-unauthorized`,
      kind: 'boolean',
      help: `Reject unauthorized SSL connections (only meaningful with --${prefix}ssl-request-cert)`,
    },
  ] as const satisfies readonly FlagSpec[];

/** CHP's flags and ours; each default is written here only, and typed from here (as const). */
export const flagSpecs = [
  { name: 'version', short: 'V', kind: 'boolean', help: 'output the version number' },
  {
    name: 'ip',
    kind: 'string',
    arg: '<ip-address>',
    help: 'Public-facing IP of the proxy (default: all interfaces)',
  },
  {
    name: 'port',
    kind: 'integer',
    arg: '<n>',
    min: 0,
    max: 65535,
    default: 8000,
    help: 'Public-facing port of the proxy',
  },
  {
    name: 'socket',
    kind: 'string',
    arg: '<path>',
    help: 'UNIX domain socket for the proxy, instead of --ip and --port',
  },
  ...tlsFlags('', ''),
  {
    name: 'ssl-protocol',
    kind: 'string',
    arg: '<ssl-protocol>',
    help: 'Set specific SSL protocol, e.g. TLSv1_2',
  },
  {
    name: 'ssl-ciphers',
    kind: 'string',
    arg: '<ciphers>',
    help: '`:`-separated ssl cipher list. Default excludes RC4',
  },
  { name: 'ssl-allow-rc4', kind: 'boolean', help: 'Allow RC4 cipher for SSL (disabled by default)' },
  {
    name: 'ssl-dhparam',
    kind: 'string',
    arg: '<dhparam-file>',
    help: 'SSL Diffie-Hellman parameters pem file, if any',
  },
  {
    name: 'api-ip',
    kind: 'string',
    arg: '<ip>',
    default: 'localhost',
    help: 'Inward-facing IP for API requests',
  },
  {
    name: 'api-port',
    kind: 'integer',
    arg: '<n>',
    min: 0,
    max: 65535,
    help: 'Inward-facing port for API requests (default: --port + 1)',
  },
  {
    name: 'api-socket',
    kind: 'string',
    arg: '<path>',
    help: 'UNIX domain socket for the API, instead of --api-ip/--api-port',
  },
  ...tlsFlags('api-', ', for API requests'),
  ...tlsFlags('client-', ', for proxy to target requests').map((spec) =>
    spec.kind === 'boolean'
      ? { ...spec, help: 'Accepted for compatibility; has no effect (as in CHP)' }
      : spec,
  ),
  {
    name: 'default-target',
    kind: 'string',
    arg: '<host>',
    help: 'Default proxy target (proto://host[:port])',
  },
  {
    name: 'error-target',
    kind: 'string',
    arg: '<host>',
    help: 'Server for error pages: GET <host>/<code>?url=<path> (proto://host[:port])',
  },
  {
    name: 'error-path',
    kind: 'string',
    arg: '<path>',
    help: 'Directory of error pages: <code>.html or error.html',
  },
  {
    name: 'redirect-port',
    kind: 'integer',
    arg: '<redirect-port>',
    min: 1,
    max: 65535,
    help: 'Redirect HTTP requests on this port to the server on HTTPS',
  },
  {
    name: 'redirect-to',
    kind: 'integer',
    arg: '<port>',
    min: 1,
    max: 65535,
    help: 'Redirect HTTP requests from --redirect-port to this port',
  },
  { name: 'pid-file', kind: 'string', arg: '<pid-file>', help: 'Write our PID to a file' },
  {
    name: 'x-forward',
    kind: 'boolean',
    default: true,
    help: "Don't add 'X-Forwarded-' headers to proxied requests",
  },
  {
    name: 'prepend-path',
    kind: 'boolean',
    default: true,
    help: 'Avoid prepending target paths to proxied requests',
  },
  {
    name: 'include-prefix',
    kind: 'boolean',
    default: true,
    help: "Don't include the routing prefix in proxied requests",
  },
  {
    name: 'auto-rewrite',
    kind: 'boolean',
    help: 'Rewrite the Location header host/port in redirect responses',
  },
  { name: 'change-origin', kind: 'boolean', help: 'Changes the origin of the host header to the target URL' },
  {
    name: 'protocol-rewrite',
    kind: 'string',
    arg: '<proto>',
    help: 'Rewrite the Location header protocol in redirect responses to the specified protocol',
  },
  {
    name: 'custom-header',
    kind: 'list',
    arg: '<header>',
    help: 'Custom header to add to proxied requests, as "Name: value"; repeat for several',
  },
  { name: 'insecure', kind: 'boolean', help: 'Disable SSL cert verification of https targets' },
  { name: 'host-routing', kind: 'boolean', help: 'Use host routing (host as first level of path)' },
  {
    name: 'metrics-ip',
    kind: 'string',
    arg: '<ip>',
    help: 'IP for metrics server (default: all interfaces)',
  },
  {
    name: 'metrics-port',
    kind: 'integer',
    arg: '<n>',
    min: 0,
    max: 65535,
    help: 'Port of metrics server. Defaults to no metrics server',
  },
  {
    name: 'metrics-socket',
    kind: 'string',
    arg: '<path>',
    help: 'UNIX domain socket for the metrics server',
  },
  {
    name: 'log-level',
    kind: 'string',
    arg: '<loglevel>',
    default: 'info',
    choices: ['debug', 'info', 'warn', 'error'],
    help: 'Log level (debug, info, warn, error)',
  },
  {
    name: 'timeout',
    kind: 'integer',
    arg: '<n>',
    min: 0,
    help: 'Timeout (in millis) when proxy drops connection for a request',
  },
  {
    name: 'proxy-timeout',
    kind: 'integer',
    arg: '<n>',
    min: 0,
    help: 'Timeout (in millis) when proxy receives no response from target',
  },
  {
    name: 'proxy-headers-timeout',
    kind: 'integer',
    arg: '<n>',
    min: 0,
    default: 0,
    help: 'Timeout (in millis) for a target to send its response head, refreshed while uploading; 0 for none',
  },
  {
    name: 'proxy-body-timeout',
    kind: 'integer',
    arg: '<n>',
    min: 0,
    default: 0,
    help: 'Timeout (in millis) between two pieces of a target response body; 0 for none',
  },
  {
    name: 'storage-backend',
    kind: 'string',
    arg: '<storage-class>',
    help: "Route store: 'memory' (default), 'redis' (alias: configurable-http-proxy-redis-backend), or a path to a CHP storage module",
  },
  {
    name: 'redis-url',
    kind: 'string',
    arg: '<url>',
    env: 'CONFIGURABLE_PROXY_REDIS_URI',
    help: 'Redis for --storage-backend redis: redis://, rediss:// or sentinel://[:password@]host:port,host:port/master',
  },
  {
    name: 'redis-key-prefix',
    kind: 'string',
    arg: '<prefix>',
    default: 'seahorse:proxy',
    help: 'Prefix of the Redis keys holding the routes',
  },
  {
    name: 'redis-changes-max',
    kind: 'integer',
    arg: '<n>',
    min: 10,
    default: 10000,
    help: 'Route changes kept in Redis for replicas catching up (older gaps reload the table)',
  },
  {
    name: 'redis-wait-replicas',
    kind: 'integer',
    arg: '<n>',
    min: 0,
    default: 0,
    help: 'Acknowledge route writes only once this many Redis replicas have them',
  },
  {
    name: 'keep-alive-timeout',
    kind: 'integer',
    arg: '<timeout>',
    min: 0,
    default: 5000,
    help: 'Set timeout (in milliseconds) for Keep-Alive connections',
  },
  {
    name: 'workers',
    kind: 'integer',
    arg: '<n>',
    min: 1,
    max: 256,
    default: 1,
    help: 'Processes serving the public port together (the API and metrics stay in the first)',
  },
  {
    name: 'lameduck',
    kind: 'duration',
    arg: '<duration>',
    default: '0s',
    help: 'On SIGTERM, keep serving (unready) this long before draining',
  },
  {
    name: 'termination-grace-period',
    kind: 'duration',
    arg: '<duration>',
    default: '30s',
    help: 'On SIGTERM, exit within this time even if connections remain',
  },
  {
    name: 'activity-flush-interval',
    kind: 'duration',
    arg: '<duration>',
    default: '5s',
    help: 'How often activity is written to a shared route store',
  },
  { name: 'help', short: 'h', kind: 'boolean', help: 'display help for command' },
] as const satisfies readonly FlagSpec[];

/** The proxy's parsed flags: names checked, and flags with a default typed as always set. */
export type ProxyFlags = ParsedFlags<typeof flagSpecs>;
type Name<K extends FlagKind> = FlagName<typeof flagSpecs, K>;

// CHP's default cipher list: modern AEAD suites first, no RC4.
const defaultCiphers = [
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'DHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-SHA256',
  'DHE-RSA-AES128-SHA256',
  'ECDHE-RSA-AES256-SHA384',
  'DHE-RSA-AES256-SHA384',
  'ECDHE-RSA-AES256-SHA256',
  'DHE-RSA-AES256-SHA256',
  'HIGH',
  '!aNULL',
  '!eNULL',
  '!EXPORT',
  '!DES',
  '!RC4',
  '!MD5',
  '!PSK',
  '!SRP',
  '!CAMELLIA',
].join(':');

function readFlagFile(flags: ProxyFlags, name: Name<'string'>): Buffer | undefined {
  const path = flags.string(name);
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (error) {
    throw new StartupError(
      `--${name}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
}

function serverTls(flags: ProxyFlags, prefix: '' | 'api-', passphraseEnv: string, env: NodeJS.ProcessEnv) {
  const key = readFlagFile(flags, `${prefix}ssl-key`);
  const cert = readFlagFile(flags, `${prefix}ssl-cert`);
  if (!key && !cert) return undefined;
  if (!key || !cert)
    throw new UsageError(`--${prefix}ssl-key and --${prefix}ssl-cert must be given together`);
  const ca = readFlagFile(flags, `${prefix}ssl-ca`);
  const dhparam = readFlagFile(flags, 'ssl-dhparam');
  const protocol = flags.string('ssl-protocol');
  const options: TlsServerOptions = {
    key,
    cert,
    ...(ca ? { ca } : {}),
    ...(dhparam ? { dhparam } : {}),
    ...(protocol ? { secureProtocol: `${protocol}_method` } : {}),
    passphrase: env[passphraseEnv],
    requestCert: flags.boolean(`${prefix}ssl-request-cert`),
    rejectUnauthorized: flags.boolean(`${prefix}ssl-reject-unauthorized`),
    ciphers: flags.string('ssl-ciphers') ?? defaultCiphers,
    honorCipherOrder: true,
  };
  return options;
}

function parseCustomHeaders(values: string[]): Array<[string, string]> {
  const headers = new Map<string, [string, string]>();
  for (const raw of values) {
    const trimmed = raw.trim();
    const colon = trimmed.indexOf(':');
    if (colon <= 0) {
      throw new UsageError(
        `A colon was expected in custom header: ${trimmed} (write it as --custom-header "Name: value")`,
      );
    }
    const name = trimmed.slice(0, colon).trim();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
      throw new UsageError(`--custom-header: '${name}' is not a valid header name`);
    }
    const value = trimmed.slice(colon + 1).trim();
    if (/[\r\n\0]/.test(value))
      throw new UsageError(`--custom-header: the value of '${name}' contains a line break`);
    headers.set(name.toLowerCase(), [name.toLowerCase(), value]);
  }
  return [...headers.values()];
}

function listenAddress(
  flags: ProxyFlags,
  socket: Name<'string'>,
  ip: Name<'string'>,
  port: Name<'integer'>,
  portWhenUnset: number,
): ListenAddress {
  const path = flags.string(socket);
  if (path !== undefined) {
    for (const other of [ip, port]) {
      if (flags.has(other)) throw new UsageError(`--${socket} cannot be used with --${other}`);
    }
    return { path };
  }
  let host = flags.string(ip) ?? '';
  if (host === '*') host = '';
  return { host, port: flags.integer(port) ?? portWhenUnset };
}

function authToken(env: NodeJS.ProcessEnv): string | undefined {
  if (env.CONFIGPROXY_AUTH_TOKEN) return env.CONFIGPROXY_AUTH_TOKEN;
  const file = env.CONFIGPROXY_AUTH_TOKEN_FILE;
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch (error) {
    throw new StartupError(
      `CONFIGPROXY_AUTH_TOKEN_FILE: cannot read ${file} (${(error as NodeJS.ErrnoException).code})`,
    );
  }
}

const redisNames = new Set(['redis', 'configurable-http-proxy-redis-backend']);

/** The route store `--storage-backend` names; throws UsageError when its settings are missing. */
function storeOptions(flags: ProxyFlags): StoreOptions {
  const activityFlushMs = flags.duration('activity-flush-interval');
  const spec = flags.string('storage-backend');
  if (spec === undefined || spec === 'memory') return { backend: { kind: 'memory' }, activityFlushMs };
  if (!redisNames.has(spec)) return { backend: { kind: 'module', module: spec }, activityFlushMs };
  const url = flags.string('redis-url');
  if (!url) {
    throw new UsageError(
      `--storage-backend ${spec} needs --redis-url or CONFIGURABLE_PROXY_REDIS_URI, e.g. redis://redis:6379`,
    );
  }
  try {
    redisOptions(url);
  } catch (error) {
    throw new UsageError(`--redis-url: ${(error as Error).message}`);
  }
  const redis = {
    url,
    keyPrefix: flags.string('redis-key-prefix'),
    changesMax: flags.integer('redis-changes-max'),
    waitReplicas: flags.integer('redis-wait-replicas'),
    commandTimeoutMs: 2000,
  };
  return { backend: { kind: 'redis', redis }, activityFlushMs };
}

/** Turns flags and environment into the proxy's options; throws UsageError on mistakes. */
export function buildOptions(flags: ProxyFlags, env: NodeJS.ProcessEnv): ProxyOptions {
  // --port has a default, so the API's default port (--port + 1) exists even with --socket.
  const publicPort = flags.integer('port');
  const listen = listenAddress(flags, 'socket', 'ip', 'port', publicPort);
  const apiListen = listenAddress(flags, 'api-socket', 'api-ip', 'api-port', publicPort + 1);
  const metricsListen =
    flags.has('metrics-port') || flags.has('metrics-socket')
      ? listenAddress(flags, 'metrics-socket', 'metrics-ip', 'metrics-port', 0)
      : undefined;
  const tls = serverTls(flags, '', 'CONFIGPROXY_SSL_KEY_PASSPHRASE', env);
  const apiTls = serverTls(flags, 'api-', 'CONFIGPROXY_API_SSL_KEY_PASSPHRASE', env);

  const errorTarget = flags.string('error-target');
  if (errorTarget !== undefined && flags.has('error-path')) {
    throw new UsageError('Cannot specify both --error-target and --error-path. Pick one.');
  }
  if (errorTarget !== undefined && !URL.canParse(errorTarget)) {
    throw new UsageError(
      `--error-target expects a URL such as http://127.0.0.1:8081/hub/error, got '${errorTarget}'`,
    );
  }
  const defaultTarget = flags.string('default-target');
  if (defaultTarget !== undefined && !/^(https?|wss?|http\+unix|unix\+http):\/\/./.test(defaultTarget)) {
    throw new UsageError(
      `--default-target expects a URL such as http://127.0.0.1:8081, got '${defaultTarget}'`,
    );
  }
  let redirect: ProxyOptions['redirect'];
  const redirectPort = flags.integer('redirect-port');
  if (redirectPort !== undefined) {
    if (!tls)
      throw new UsageError('--redirect-port redirects to HTTPS, which needs --ssl-key and --ssl-cert');
    redirect = { port: redirectPort, to: flags.integer('redirect-to') ?? publicPort };
  }

  const clientCa = readFlagFile(flags, 'client-ssl-ca');
  const clientKey = readFlagFile(flags, 'client-ssl-key');
  const clientCert = readFlagFile(flags, 'client-ssl-cert');
  const clientTls = {
    ...(clientKey ? { key: clientKey } : {}),
    ...(clientCert ? { cert: clientCert } : {}),
    ...(clientCa ? { ca: [clientCa] } : {}),
    rejectUnauthorized: !flags.boolean('insecure'),
  };

  return {
    listen,
    apiListen,
    metricsListen,
    tls,
    apiTls,
    redirect,
    defaultTarget,
    errorTarget,
    errorPath: flags.string('error-path') ?? bundledErrorPath,
    pidFile: flags.string('pid-file'),
    keepAliveTimeoutMs: flags.integer('keep-alive-timeout'),
    lameduckMs: flags.duration('lameduck'),
    terminationGracePeriodMs: flags.duration('termination-grace-period'),
    workers: flags.integer('workers'),
    store: storeOptions(flags),
    api: { authToken: authToken(env), hostRouting: flags.boolean('host-routing'), maxBodyBytes: 1024 * 1024 },
    forward: {
      xForward: flags.boolean('x-forward'),
      prependPath: flags.boolean('prepend-path'),
      includePrefix: flags.boolean('include-prefix'),
      hostRouting: flags.boolean('host-routing'),
      changeOrigin: flags.boolean('change-origin'),
      autoRewrite: flags.boolean('auto-rewrite'),
      protocolRewrite: flags.string('protocol-rewrite'),
      customHeaders: parseCustomHeaders(flags.list('custom-header')),
      timeoutMs: flags.integer('timeout') ?? 0,
      proxyTimeoutMs: flags.integer('proxy-timeout') ?? 0,
      proxyHeadersTimeoutMs: flags.integer('proxy-headers-timeout'),
      proxyBodyTimeoutMs: flags.integer('proxy-body-timeout'),
      clientTls,
    },
  };
}

export function version(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return manifest.version;
}
