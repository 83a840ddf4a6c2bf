#!/usr/bin/env node
// Committed entry point, so npm can link the bin before the first build. It loads the built
// proxy into this same process: the PID JupyterHub signals is the server itself.
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(built)) {
  process.stderr.write(
    "configurable-http-proxy: not built yet; run 'npm run build' in the Seahorse workspace\n",
  );
  process.exit(1);
}
await import(built.href);
