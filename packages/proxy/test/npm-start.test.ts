// `npm run start:proxy`'s script: the proxy alone on embedded defaults, with a banner once it listens.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

const script = fileURLToPath(new URL('../../../scripts/start-proxy.mjs', import.meta.url));

test('the start script runs the proxy and prints where to browse and how to add a route', async () => {
  // The API goes on port + 1, so find a port whose neighbour is free too.
  let port = await freePort();
  while (!(await canBind(port + 1))) port = await freePort();
  const start = new ManagedProcess('npm run start:proxy', process.execPath, [script], {
    env: { ...process.env, SEAHORSE_PORT: String(port), CONFIGPROXY_AUTH_TOKEN: 'start-test-token' },
  });
  try {
    await start.untilReady(
      waitFor('the banner', () => start.output.includes('Add route:'), { timeoutMs: 20_000 }),
    );
    assert.match(start.output, new RegExp(`Browse:\\s+http://localhost:${port}/`));
    assert.match(start.output, new RegExp(`http://127.0.0.1:${port + 1}/api/routes/demo`));
    assert.ok(!start.output.includes('start-test-token'), 'the token is not printed');
    const added = await fetch(`http://127.0.0.1:${port + 1}/api/routes/demo`, {
      method: 'POST',
      headers: { authorization: 'token start-test-token' },
      body: JSON.stringify({ target: 'http://127.0.0.1:9' }),
    });
    assert.equal(added.status, 201);
  } finally {
    await start.stop('SIGTERM');
  }
});
