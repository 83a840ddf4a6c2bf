#!/usr/bin/env node
// `seahorse-embedding-gateway [flags]`: the embeddings cache, configured as the original is
// (its environment variables), with the filesystem store when no S3 is configured.
import { createLogger, formatHelp, parseFlags, runMain } from '@seahorse/runtime';
import { buildOptions, flagSpecs, version } from './options.ts';
import { startGateway } from './server.ts';

const program = 'seahorse-embedding-gateway';

runMain(program, async () => {
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
