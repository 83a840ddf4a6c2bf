#!/usr/bin/env node
// Committed entry point, so npm can link the bin before the first build.
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(built)) {
  process.stderr.write("seahorse-hub: not built yet; run 'npm run build' in the Seahorse workspace\n");
  process.exit(1);
}
await import(built.href);
