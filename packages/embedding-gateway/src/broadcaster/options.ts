// The purge broadcaster's command line: the original endpoint-broadcaster's flags and
// environment (ADDRESS, TARGET_SERVICE, TARGET_PORT, LAMEDUCK, TERMINATION_GRACE_PERIOD,
// HTTP_KEEPALIVE), plus the limits it lacked.
import { type FlagSpec, type LogLevel, type ParsedFlags, UsageError } from '@seahorse/runtime';

export interface BroadcasterOptions {
  host: string;
  port: number;
  logLevel: LogLevel;
  /** Headless Service name whose addresses are the pods to broadcast to. */
  targetService: string;
  targetPort: number;
  /** DNS servers (`ip` or `ip:port`) to ask instead of the system resolver. */
  dnsServers: string[];
  /** Longest time one pod may take to answer, connect to last byte. */
  podTimeoutMs: number;
  /** Most pods contacted at once for one broadcast. */
  concurrency: number;
  /** Methods fanned out; any other answers 405 and reaches no pod. */
  methods: string[];
  maxBodyBytes: number;
  keepAlive: boolean;
  lameduckMs: number;
  terminationGracePeriodMs: number;
}

/** The flags every subcommand of this bin ends with: how it exits and logs, and help. */
export const exitFlagSpecs = [
  {
    name: 'termination-grace-period',
    kind: 'duration',
    arg: '<duration>',
    env: 'TERMINATION_GRACE_PERIOD',
    default: '10s',
    help: 'Longest time from SIGTERM to exit',
  },
  {
    name: 'log-level',
    kind: 'string',
    arg: '<level>',
    env: 'LOG_LEVEL',
    default: 'info',
    choices: ['debug', 'info', 'warn', 'error'],
    help: 'Log level',
  },
  { name: 'help', short: 'h', kind: 'boolean', help: 'Show this help' },
] as const satisfies readonly FlagSpec[];

export const broadcasterFlagSpecs = [
  {
    name: 'address',
    kind: 'string',
    arg: '<host:port>',
    env: 'ADDRESS',
    default: '0.0.0.0:8080',
    help: 'HTTP server address',
  },
  {
    name: 'target-service',
    kind: 'string',
    arg: '<name>',
    env: 'TARGET_SERVICE',
    help: 'Headless Service FQDN to broadcast to (required)',
  },
  {
    name: 'target-port',
    kind: 'integer',
    arg: '<port>',
    env: 'TARGET_PORT',
    default: 80,
    min: 1,
    max: 65535,
    help: 'Port on each pod',
  },
  {
    name: 'dns-server',
    kind: 'list',
    arg: '<ip[:port]>',
    env: 'DNS_SERVERS',
    help: 'Ask these DNS servers (repeat or comma-separate) instead of the system resolver',
  },
  {
    name: 'pod-timeout',
    kind: 'duration',
    arg: '<duration>',
    env: 'POD_TIMEOUT',
    default: '5s',
    help: 'Longest time one pod may take to answer; past it that pod counts as failed',
  },
  {
    name: 'concurrency',
    kind: 'integer',
    arg: '<n>',
    env: 'CONCURRENCY',
    default: 16,
    min: 1,
    max: 1024,
    help: 'Most pods contacted at once for one broadcast',
  },
  {
    name: 'methods',
    kind: 'list',
    arg: '<method>',
    env: 'METHODS',
    help: 'Methods broadcast (repeat or comma-separate; default PURGE); others answer 405',
  },
  {
    name: 'max-body-size',
    kind: 'integer',
    arg: '<bytes>',
    env: 'MAX_BODY_SIZE',
    default: 65536,
    min: 0,
    max: 64 * 1024 * 1024,
    help: 'Largest request body broadcast; larger answers 413',
  },
  {
    name: 'http-keepalive',
    kind: 'boolean',
    env: 'HTTP_KEEPALIVE',
    default: true,
    help: 'Keep client connections alive',
  },
  {
    name: 'lameduck',
    kind: 'duration',
    arg: '<duration>',
    env: 'LAMEDUCK',
    default: '1s',
    help: 'Time spent unready but serving after SIGTERM, before draining',
  },
  ...exitFlagSpecs,
] as const satisfies readonly FlagSpec[];

const methodToken = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `host:port`, `[v6]:port` or `:port` (every address, as Go's net.Listen takes it). */
export function parseHostPort(text: string, source: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new UsageError(`${source} expects host:port, got '${text}'`);
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

/** Repeated flags and comma-separated values alike. */
function splitList(values: string[]): string[] {
  return values
    .flatMap((value) => value.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
}

export function buildBroadcasterOptions(flags: ParsedFlags<typeof broadcasterFlagSpecs>): BroadcasterOptions {
  const targetService = flags.string('target-service');
  if (!targetService) throw new UsageError('--target-service or TARGET_SERVICE is required');
  const { host, port } = parseHostPort(flags.string('address'), '--address (ADDRESS)');
  const methods = splitList(flags.list('methods')).map((m) => m.toUpperCase());
  for (const method of methods) {
    if (!methodToken.test(method)) throw new UsageError(`--methods: '${method}' is not an HTTP method`);
  }
  return {
    host,
    port,
    logLevel: flags.string('log-level'),
    targetService,
    targetPort: flags.integer('target-port'),
    dnsServers: splitList(flags.list('dns-server')),
    podTimeoutMs: flags.duration('pod-timeout'),
    concurrency: flags.integer('concurrency'),
    methods: methods.length > 0 ? methods : ['PURGE'],
    maxBodyBytes: flags.integer('max-body-size'),
    keepAlive: flags.boolean('http-keepalive'),
    lameduckMs: flags.duration('lameduck'),
    terminationGracePeriodMs: flags.duration('termination-grace-period'),
  };
}
