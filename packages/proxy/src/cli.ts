#!/usr/bin/env node
// `configurable-http-proxy`: parses the command line and runs the proxy in this very process,
// as JupyterHub expects of the command it starts and signals.
import cluster from 'node:cluster';
import { createLogger, formatHelp, type Lifecycle, parseFlags, runMain } from '@seahorse/runtime';
import { buildOptions, flagSpecs, version } from './options.ts';
import { startProxy } from './server.ts';

const program = 'configurable-http-proxy';

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const flags = parseFlags(flagSpecs, argv, env);
  if (flags.boolean('help')) {
    process.stdout.write(formatHelp(`${program} [options]`, flagSpecs));
    return;
  }
  if (flags.boolean('version')) {
    process.stdout.write(`${version()}\n`);
    return;
  }
  const options = buildOptions(flags, env);
  const log = createLogger({ name: 'proxy', level: flags.string('log-level') });
  // As CHP: an unexpected error in one request is logged, and every other user stays connected.
  process.on('uncaughtException', (error) => log.error({ err: error }, 'uncaught exception'));
  // Signal handlers go in before anything listens: a SIGTERM right after the "listening" line
  // must shut down gracefully, not kill the process.
  const signals = (lifecycle: Lifecycle) => lifecycle.installSignalHandlers();
  if (options.workers > 1 && cluster.isWorker) {
    await startProxy(options, log.child({ worker: cluster.worker?.id }), 'worker', signals);
  } else {
    await startProxy(options, log, options.workers > 1 ? 'primary' : 'single', signals);
  }
}

runMain(program, () => main(process.argv.slice(2), process.env));
