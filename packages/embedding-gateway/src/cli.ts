#!/usr/bin/env node
// `seahorse-embedding-gateway [flags]`: the embeddings cache, configured as the original is
// (its environment variables), with the filesystem store when no S3 is configured.
import { createLogger, formatHelp, parseFlags, runMain } from '@seahorse/runtime';
import { buildOptions, flagSpecs, version } from './options.ts';
import { startGateway } from './server.ts';

const program = 'seahorse-embedding-gateway';

runMain(program, async () => {
  // The edge of seed 004 runs from the same bin: the `broadcaster` and `hasher` subcommands.
  const [command, ...rest] = process.argv.slice(2);
  if (command === 'broadcaster') {
    const { runBroadcaster } = await import('./broadcaster/cli.ts');
    return runBroadcaster(program, rest, process.env);
  }
  if (command === 'hasher') {
    const { runHasher } = await import('./hasher/cli.ts');
    return runHasher(program, rest, process.env);
  }
  const flags = parseFlags(flagSpecs, process.argv.slice(2), process.env);
  if (flags.boolean('help')) {
    process.stdout.write(formatHelp(`${program} [options]`, flagSpecs));
    return;
  }
  if (flags.boolean('version')) {
    process.stdout.write(`${version()}\n`);
    return;
  }
  const options = buildOptions(flags, process.env);
  const logger = createLogger({ name: 'embedding-gateway', level: options.logLevel });
  // Signal handlers go in before the listener, so a SIGTERM during startup still drains.
  await startGateway(options, logger, (lifecycle) => lifecycle.installSignalHandlers());
});
