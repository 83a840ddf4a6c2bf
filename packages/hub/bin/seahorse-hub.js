#!/usr/bin/env -S node --max-semi-space-size=4
// Committed entry point, so npm can link the bin before the first build. It loads the built hub
// into this same process. --max-semi-space-size=4: V8 sizes the young generation from the
// machine's memory; the hub's garbage is short-lived request data, and small semi-spaces keep
// its RSS low at the same throughput (as the proxy's bin does).
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(built)) {
  process.stderr.write("seahorse-hub: not built yet; run 'npm run build' in the Seahorse workspace\n");
  process.exit(1);
}
await import(built.href);
