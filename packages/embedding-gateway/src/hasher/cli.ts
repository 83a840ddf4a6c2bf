// `seahorse-embedding-gateway hasher [flags]`: the ext_proc body hasher beside Envoy.
import { createLogger, type FlagSpec, formatHelp, parseFlags } from '@seahorse/runtime';
import { exitFlagSpecs, parseHostPort } from '../broadcaster/options.ts';
import { parseSize } from '../options.ts';
import { type HasherOptions, startHasher } from './hasher.ts';

export const hasherFlagSpecs = [
  {
    name: 'address',
    kind: 'string',
    arg: '<host:port>',
    env: 'ADDRESS',
    default: '0.0.0.0:50051',
    help: 'gRPC (HTTP/2 cleartext) address Envoy connects to',
  },
  {
    name: 'enable-body-hash',
    kind: 'boolean',
    default: true,
    help: "Accepted for the original's command line; the body hash is always on",
  },
  {
    name: 'max-body-size',
    kind: 'string',
    arg: '<size>',
    env: 'MAX_BODY_SIZE',
    default: '1mb',
    help: "Largest body buffered and hashed; larger ones go through unhashed (keep it at the VCL's limit)",
  },
  {
    name: 'max-buffered',
    kind: 'string',
    arg: '<size>',
    env: 'MAX_BUFFERED',
    default: '64mb',
    help: 'Bytes of unfinished gRPC messages held across all streams; a stream past it goes on unhashed',
  },
  {
    name: 'message-timeout',
    kind: 'duration',
    arg: '<duration>',
    env: 'MESSAGE_TIMEOUT',
    default: '10s',
    help: 'How long a gRPC message may stay unfinished before its stream is ended',
  },
  {
    name: 'lameduck',
    kind: 'duration',
    arg: '<duration>',
    env: 'LAMEDUCK',
    default: '1s',
    help: 'Time spent unready but serving after SIGTERM',
  },
  ...exitFlagSpecs,
] as const satisfies readonly FlagSpec[];

export function buildHasherOptions(argv: string[], env: NodeJS.ProcessEnv): HasherOptions | undefined {
  const flags = parseFlags(hasherFlagSpecs, argv, env);
  if (flags.boolean('help')) return undefined;
  const { host, port } = parseHostPort(flags.string('address'), '--address (ADDRESS)');
  return {
    host,
    port,
    logLevel: flags.string('log-level'),
    maxBodyBytes: parseSize(flags.string('max-body-size'), '--max-body-size'),
    maxBufferedBytes: parseSize(flags.string('max-buffered'), '--max-buffered'),
    messageTimeoutMs: flags.duration('message-timeout'),
    lameduckMs: flags.duration('lameduck'),
    terminationGracePeriodMs: flags.duration('termination-grace-period'),
  };
}

export async function runHasher(program: string, argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const options = buildHasherOptions(argv, env);
  if (!options) {
    process.stdout.write(formatHelp(`${program} hasher [options]`, hasherFlagSpecs));
    return;
  }
  const logger = createLogger({ name: 'embedding-gateway-hasher', level: options.logLevel });
  await startHasher(options, logger, (lifecycle) => lifecycle.installSignalHandlers());
}
