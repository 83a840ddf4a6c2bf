// The command line and the original's environment variables (HOST, PORT, LOG_LEVEL,
// IDLE_TIMEOUT, TERMINATION_GRACE_PERIOD_SECONDS, OPENAI_BASE_URL, S3_ENDPOINT_URL, S3_BUCKET)
// turned into one typed options object; flags win over the environment.
import { readFileSync } from 'node:fs';
import { type FlagSpec, type LogLevel, type ParsedFlags, UsageError } from '@seahorse/runtime';
import type { EmbeddingsOptions } from './embeddings.ts';
import type { S3StoreOptions } from './store/s3.ts';
import { type TracingOptions, tracingOptionsFromEnv } from './tracing.ts';
import type { UpstreamOptions } from './upstream.ts';

export type StoreOptions = { kind: 'filesystem'; directory: string } | ({ kind: 's3' } & S3StoreOptions);

export interface GatewayOptions {
  host: string;
  port: number;
  logLevel: LogLevel;
  idleTimeoutMs: number;
  terminationGracePeriodMs: number;
  lameduckMs: number;
  upstream: UpstreamOptions;
  store: StoreOptions;
  /** Bytes of decoded answers kept in memory in front of the store; 0 turns the LRU off. */
  memoryCacheBytes: number;
  /** Largest request body; 0: no limit. */
  maxBodyBytes: number;
  /** Answer clients that accept gzip with the stored gzip object as it is. */
  gzipResponses: boolean;
  embeddings: EmbeddingsOptions;
  /** From the standard OTEL_* variables; off unless an OTLP endpoint is set. */
  tracing: TracingOptions;
}

export function version(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return manifest.version;
}

export const flagSpecs: FlagSpec[] = [
  {
    name: 'host',
    kind: 'string',
    arg: '<address>',
    env: 'HOST',
    default: '127.0.0.1',
    help: 'Address to listen on',
  },
  {
    name: 'port',
    kind: 'integer',
    arg: '<port>',
    env: 'PORT',
    default: 8080,
    min: 0,
    max: 65535,
    help: 'Port to listen on',
  },
  {
    name: 'log-level',
    kind: 'string',
    arg: '<level>',
    env: 'LOG_LEVEL',
    default: 'info',
    choices: [
      'debug',
      'info',
      'warning',
      'warn',
      'error',
      'critical',
      'DEBUG',
      'INFO',
      'WARNING',
      'WARN',
      'ERROR',
      'CRITICAL',
    ],
    help: 'Log level (Python names are accepted: warning, critical)',
  },
  {
    name: 'idle-timeout',
    kind: 'duration',
    arg: '<duration>',
    env: 'IDLE_TIMEOUT',
    default: '86400',
    help: 'How long an idle keep-alive connection stays open (bare numbers are seconds)',
  },
  {
    name: 'termination-grace-period',
    kind: 'duration',
    arg: '<duration>',
    env: 'TERMINATION_GRACE_PERIOD_SECONDS',
    default: '10',
    help: 'Longest time from SIGTERM to exit, draining requests in flight',
  },
  {
    name: 'lameduck',
    kind: 'duration',
    arg: '<duration>',
    env: 'LAMEDUCK',
    default: '0',
    help: 'Time spent unready but serving after SIGTERM, before draining',
  },
  {
    name: 'openai-base-url',
    kind: 'string',
    arg: '<url>',
    env: 'OPENAI_BASE_URL',
    default: 'https://api.openai.com/v1',
    help: 'The OpenAI-compatible API; requests go to <url>/embeddings',
  },
  {
    name: 'upstream-timeout',
    kind: 'duration',
    arg: '<duration>',
    env: 'UPSTREAM_TIMEOUT',
    default: '300s',
    help: 'Longest upstream call, connect to last byte; past it the client gets 503',
  },
  {
    name: 'store',
    kind: 'string',
    arg: '<kind>',
    env: 'STORE',
    choices: ['filesystem', 's3'],
    help: 'Where answers are kept (default: s3 when S3_ENDPOINT_URL, S3_ENDPOINT or S3_BUCKET is set, else filesystem)',
  },
  {
    name: 'cache-dir',
    kind: 'string',
    arg: '<dir>',
    env: 'CACHE_DIR',
    default: '.seahorse/embedding-gateway',
    help: 'Directory of the filesystem store (same layout as the bucket)',
  },
  {
    name: 's3-endpoint-url',
    kind: 'string',
    arg: '<url>',
    env: 'S3_ENDPOINT_URL',
    help: 'S3-compatible endpoint such as MinIO (S3_ENDPOINT is accepted too); AWS when absent',
  },
  {
    name: 's3-bucket',
    kind: 'string',
    arg: '<name>',
    env: 'S3_BUCKET',
    default: 'embedding-gateway',
    help: 'Bucket',
  },
  {
    name: 's3-region',
    kind: 'string',
    arg: '<region>',
    env: 'AWS_REGION',
    help: 'Region (AWS_DEFAULT_REGION is read too; default us-east-1)',
  },
  {
    name: 's3-force-path-style',
    kind: 'boolean',
    env: 'S3_FORCE_PATH_STYLE',
    help: 'Address the bucket in the path, not the host name (default: on with an endpoint URL)',
  },
  {
    name: 's3-max-attempts',
    kind: 'integer',
    arg: '<n>',
    env: 'S3_MAX_ATTEMPTS',
    default: 3,
    min: 1,
    max: 20,
    help: 'Attempts per S3 call, with backoff, before answering 503',
  },
  {
    name: 's3-timeout',
    kind: 'duration',
    arg: '<duration>',
    env: 'S3_TIMEOUT',
    default: '60s',
    help: 'Connect and read timeout per S3 attempt (botocore default: 60 s)',
  },
  {
    name: 'coalesce-misses',
    kind: 'boolean',
    env: 'COALESCE_MISSES',
    help: 'Concurrent identical misses share one upstream call (the original calls once per request)',
  },
  {
    name: 'per-input-cache',
    kind: 'boolean',
    env: 'PER_INPUT_CACHE',
    help: 'Also cache each input alone; a partly cached request calls the upstream only for the rest',
  },
  {
    name: 'memory-cache-size',
    kind: 'string',
    arg: '<size>',
    env: 'MEMORY_CACHE_SIZE',
    default: '0',
    help: 'In-memory LRU of answers in front of the store, e.g. 256mb (0: off)',
  },
  {
    name: 'max-body-size',
    kind: 'string',
    arg: '<size>',
    env: 'MAX_BODY_SIZE',
    default: '32mb',
    help: 'Largest request body; larger is a 413 (0: no limit, as the original)',
  },
  {
    name: 'max-response-size',
    kind: 'string',
    arg: '<size>',
    env: 'MAX_RESPONSE_SIZE',
    default: '256mb',
    help: "Largest upstream answer, decompressed; larger is a 500, never stored (OpenAI's largest is about 140 MB)",
  },
  {
    name: 'max-inputs',
    kind: 'integer',
    arg: '<n>',
    env: 'MAX_INPUTS',
    default: 2048,
    min: 0,
    max: 1_000_000,
    help: "Most inputs per request, OpenAI's own limit by default; more is a 400 (0: no limit)",
  },
  {
    name: 'gzip-responses',
    kind: 'boolean',
    env: 'GZIP_RESPONSES',
    default: true,
    help: 'Send stored answers gzip-compressed, as stored, to clients that accept gzip',
  },
  { name: 'help', short: 'h', kind: 'boolean', help: 'Show this help' },
  { name: 'version', kind: 'boolean', help: 'Print the version' },
];

const sizeUnits: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1024,
  k: 1024,
  mb: 1024 ** 2,
  m: 1024 ** 2,
  gb: 1024 ** 3,
  g: 1024 ** 3,
};

/** `0`, `65536`, `64kb`, `256mb`, `1gb` (binary units) into bytes. */
export function parseSize(text: string, source: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = sizeUnits[match?.[2]?.toLowerCase() ?? 'x'];
  if (!match || unit === undefined) {
    throw new UsageError(`${source} expects a size such as 65536, 64kb or 256mb, got '${text}'`);
  }
  return Math.floor(Number(match[1]) * unit);
}

function toLogLevel(raw: string): LogLevel {
  const level = raw.toLowerCase();
  if (level === 'warning') return 'warn';
  if (level === 'critical') return 'error';
  return level as LogLevel;
}

function checkUrl(raw: string, source: string): string {
  try {
    const url = new URL(raw);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    throw new UsageError(`${source} expects an http:// or https:// URL, got '${raw}'`);
  }
  return raw;
}

export function buildOptions(flags: ParsedFlags, env: NodeJS.ProcessEnv): GatewayOptions {
  const endpointRaw = flags.string('s3-endpoint-url') ?? (env.S3_ENDPOINT || undefined);
  const endpoint = endpointRaw ? checkUrl(endpointRaw, '--s3-endpoint-url (S3_ENDPOINT_URL)') : undefined;
  const kind =
    (flags.string('store') as 'filesystem' | 's3' | undefined) ??
    (endpoint || flags.has('s3-bucket') ? 's3' : 'filesystem');
  const s3Timeout = flags.duration('s3-timeout')!;
  const store: StoreOptions =
    kind === 's3'
      ? {
          kind,
          bucket: flags.string('s3-bucket')!,
          ...(endpoint ? { endpoint } : {}),
          region: flags.string('s3-region') ?? (env.AWS_DEFAULT_REGION || 'us-east-1'),
          forcePathStyle: flags.has('s3-force-path-style')
            ? flags.boolean('s3-force-path-style')
            : Boolean(endpoint),
          maxAttempts: flags.integer('s3-max-attempts')!,
          connectTimeoutMs: s3Timeout,
          requestTimeoutMs: s3Timeout,
          proxyEnv: env,
        }
      : { kind, directory: flags.string('cache-dir')! };
  return {
    host: flags.string('host')!,
    port: flags.integer('port')!,
    logLevel: toLogLevel(flags.string('log-level')!),
    idleTimeoutMs: flags.duration('idle-timeout')!,
    terminationGracePeriodMs: flags.duration('termination-grace-period')!,
    lameduckMs: flags.duration('lameduck')!,
    upstream: {
      baseUrl: checkUrl(flags.string('openai-base-url')!, '--openai-base-url (OPENAI_BASE_URL)'),
      timeoutMs: flags.duration('upstream-timeout')!,
      maxResponseBytes: parseSize(flags.string('max-response-size')!, '--max-response-size'),
      proxyEnv: env,
    },
    store,
    memoryCacheBytes: parseSize(flags.string('memory-cache-size')!, '--memory-cache-size'),
    maxBodyBytes: parseSize(flags.string('max-body-size')!, '--max-body-size'),
    gzipResponses: flags.boolean('gzip-responses'),
    embeddings: {
      coalesceMisses: flags.boolean('coalesce-misses'),
      perInputCache: flags.boolean('per-input-cache'),
      maxInputs: flags.integer('max-inputs')!,
    },
    tracing: tracingOptionsFromEnv(env),
  };
}
