// `seahorse-embedding-gateway broadcaster [flags]`: fans a PURGE out to every Varnish pod.
import { createLogger, formatHelp, parseFlags } from '@seahorse/runtime';
import { startBroadcaster } from './broadcaster.ts';
import { broadcasterFlagSpecs, buildBroadcasterOptions } from './options.ts';

export async function runBroadcaster(program: string, argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const flags = parseFlags(broadcasterFlagSpecs, argv, env);
  if (flags.boolean('help')) {
    process.stdout.write(formatHelp(`${program} broadcaster [options]`, broadcasterFlagSpecs));
    return;
  }
  const options = buildBroadcasterOptions(flags);
  const logger = createLogger({ name: 'embedding-gateway-broadcaster', level: options.logLevel });
  await startBroadcaster(options, logger, undefined, (lifecycle) => lifecycle.installSignalHandlers());
}
