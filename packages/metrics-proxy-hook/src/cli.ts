#!/usr/bin/env node
// `seahorse-metrics-proxy-hook webhook|sidecar [flags]`: one image, one bin, two roles.
import {
  createLogger,
  formatHelp,
  type Logger,
  type LogLevel,
  type ParsedFlags,
  parseFlags,
  runMain,
  UsageError,
} from '@seahorse/runtime';
import { normalizeArgv, sidecarCommandLine, webhookCommandLine } from './command-line.ts';
import {
  buildSidecarOptions,
  buildWebhookOptions,
  sidecarFlagSpecs,
  version,
  webhookFlagSpecs,
} from './options.ts';
import { MetricsSidecar } from './sidecar.ts';

const program = 'seahorse-metrics-proxy-hook';

const usage = `Usage: ${program} <command> [options]
       ${program} sidecar TARGET_URL [options]   (the original's form)

Commands:
  webhook   the mutating admission webhook that injects the metrics proxy into annotated pods
  sidecar   the metrics proxy itself, beside the application in each annotated pod

Run '${program} <command> --help' for a command's options.
`;

function logger(flags: ParsedFlags, name: string): Logger {
  return createLogger({ name, level: flags.string('log-level') as LogLevel });
}

async function webhook(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const flags = parseFlags(webhookFlagSpecs, normalizeArgv(webhookFlagSpecs, webhookCommandLine, argv), env);
  if (flags.boolean('help')) {
    process.stdout.write(
      `${formatHelp(`${program} webhook [options]`, webhookFlagSpecs)}\nAlso accepted, the original's names: ${Object.entries(
        webhookCommandLine.aliases,
      )
        .map(([original, preferred]) => `--${original} (= --${preferred})`)
        .join(', ')}\n`,
    );
    return;
  }
  if (flags.boolean('version')) {
    process.stdout.write(`${version()}\n`);
    return;
  }
  const options = buildWebhookOptions(flags, env);
  const { startWebhook } = await import('./webhook.ts');
  const log = logger(flags, 'metrics-proxy-hook');
  // Signal handlers go in before anything listens (see the sidecar below). A later signal is
  // logged and ignored, as in the sidecar: exiting at once would cut admissions in flight (a
  // limited pod's slot written but never answered, an unlimited pod started without the proxy).
  await startWebhook(options, log, (lifecycle) =>
    onFirstSignal(log, (signal) =>
      lifecycle.shutdown(signal).then(
        () => process.exit(0),
        (error: unknown) => {
          log.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      ),
    ),
  );
}

/**
 * Runs `terminate` on the first SIGTERM or SIGINT; the kubelet signals again when a deletion is
 * re-issued with a shorter grace period, and those later signals are logged and change nothing.
 * SIGKILL at the grace period's end remains the hard stop.
 */
function onFirstSignal(log: Logger, terminate: (signal: NodeJS.Signals) => void): void {
  let first: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (first !== undefined) {
      log.info({ signal, first }, 'signal ignored: already terminating');
      return;
    }
    first = signal;
    terminate(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

async function sidecar(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const flags = parseFlags(sidecarFlagSpecs, normalizeArgv(sidecarFlagSpecs, sidecarCommandLine, argv), env);
  if (flags.boolean('help')) {
    process.stdout.write(formatHelp(`${program} sidecar [TARGET_URL] [options]`, sidecarFlagSpecs));
    return;
  }
  const options = buildSidecarOptions(flags, env);
  const log = logger(flags, 'metrics-proxy');
  let lease: import('./slot-lease.ts').SlotLease | undefined;
  let client: import('./lease-client.ts').WebhookLeaseClient | undefined;
  if (options.semaphore) {
    // Loaded only for a pod with a slot. The slot is renewed through the webhook, never Redis.
    const [{ WebhookLeaseClient }, { SlotLease }] = await Promise.all([
      import('./lease-client.ts'),
      import('./slot-lease.ts'),
    ]);
    const { semaphore } = options;
    client = new WebhookLeaseClient({ ...semaphore.lease, slot: semaphore.slot });
    lease = new SlotLease(client, semaphore, log);
  }
  const proxy = new MetricsSidecar(options, log, lease);
  // Runs after the lease has given the slot back.
  if (client) proxy.lifecycle.onClose(() => client.close());
  // Handlers go in before the listener announces itself: a SIGTERM that arrives in between
  // would otherwise kill the process without the final scrape.
  const started = proxy.start();
  // The final scrape is already under way and bounded when a later signal comes, so it changes
  // nothing (as in the original).
  onFirstSignal(log, (signal) => {
    started
      .then(() => proxy.terminate(signal))
      .then(
        () => process.exit(0),
        (error: unknown) => {
          log.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
  });
  await started;
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'webhook') return webhook(rest, env);
  if (command === 'sidecar') return sidecar(rest, env);
  if (command === '--help' || command === '-h') {
    process.stdout.write(usage);
    return;
  }
  if (command === '--version' || command === '-V') {
    process.stdout.write(`${version()}\n`);
    return;
  }
  if (command === undefined) throw new UsageError('missing command: webhook or sidecar');
  throw new UsageError(`unknown command '${command}'; the commands are webhook and sidecar`);
}

runMain(program, () => main(process.argv.slice(2), process.env));
