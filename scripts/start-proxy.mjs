#!/usr/bin/env node
// `npm run start:proxy`: the proxy alone on embedded defaults — on :8000 with the in-memory route
// store and its API on 127.0.0.1:8001. Prints where to point a browser once it is listening.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const port = Number(process.env.SEAHORSE_PORT ?? 8000);
const apiPort = port + 1;

// The API always wants a token. Take the operator's, or keep one for this checkout in a file
// only its owner can read, so it never appears on screen or in shell history.
let tokenHint = '$CONFIGPROXY_AUTH_TOKEN';
const env = { ...process.env };
if (!env.CONFIGPROXY_AUTH_TOKEN) {
  const file = join(root, '.seahorse', 'proxy-token');
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600 });
  }
  env.CONFIGPROXY_AUTH_TOKEN = readFileSync(file, 'utf8').trim();
  tokenHint = `$(cat ${relative(process.cwd(), file) || file})`;
}

const bin = join(root, 'node_modules', '.bin', 'configurable-http-proxy');
const args = [
  '--port',
  String(port),
  '--api-ip',
  '127.0.0.1',
  '--api-port',
  String(apiPort),
  ...process.argv.slice(2),
];
const proxy = spawn(bin, args, { stdio: ['ignore', 'inherit', 'inherit'], env });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => proxy.kill(signal));
proxy.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

async function announceWhenReady() {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/_chp_healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  process.stderr.write(`
  Seahorse proxy is running (in-memory routes; Ctrl-C stops it).

    Browse:     http://localhost:${port}/   (404 until a route exists)
    Add route:  curl -X POST -H "Authorization: token ${tokenHint}" \\
                  -d '{"target": "http://127.0.0.1:8888"}' http://127.0.0.1:${apiPort}/api/routes/demo
    List:       curl -H "Authorization: token ${tokenHint}" http://127.0.0.1:${apiPort}/api/routes
    Then:       http://localhost:${port}/demo/ is served by whatever listens on 127.0.0.1:8888
                (for instance: python3 -m http.server 8888)

`);
}
announceWhenReady();
