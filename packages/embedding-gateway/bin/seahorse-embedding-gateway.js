#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=2
// Committed entry point, so npm can link the bin before the first build. It loads the built
// CLI into this same process: the PID the kubelet signals is the server itself.
// Measured by the bench after 200-client load: 2 MB semi-spaces (V8 sizes them from the
// machine's memory; our garbage is short-lived request data) and two malloc arenas (glibc
// keeps one per thread-pool thread otherwise) take RSS from about 150 MB to about 105 MB at
// the same CPU per request.
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(built)) {
  process.stderr.write(
    "seahorse-embedding-gateway: not built yet; run 'npm run build' in the Seahorse workspace\n",
  );
  process.exit(1);
}
await import(built.href);
