import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import { test } from 'node:test';
import { StartupError } from './errors.ts';
import { createLogger } from './log.ts';
import { Lifecycle, listen } from './serve.ts';

const quiet = () => createLogger({ name: 'test', level: 'error', destination: { write() {} } });

test('listen turns a port in use into a StartupError naming the address and the flag', async () => {
  const first = createServer();
  const address = await listen(first, { host: '127.0.0.1', port: 0 }, '--port');
  const port = 'port' in address ? address.port : 0;
  try {
    await assert.rejects(listen(createServer(), { host: '127.0.0.1', port }, '--port'), (error: unknown) => {
      assert.ok(error instanceof StartupError);
      assert.match(error.message, new RegExp(`127.0.0.1:${port} is already in use; .* --port`));
      return true;
    });
  } finally {
    first.close();
  }
});

test('shutdown turns unready first, waits the lameduck, then lets an in-flight request finish', async () => {
  const lifecycle = new Lifecycle({ logger: quiet(), lameduckMs: 100, terminationGracePeriodMs: 5000 });
  let release: (() => void) | undefined;
  const server = createServer((req, res) => {
    if (lifecycle.handleProbe(req, res)) return;
    release = () => res.end('done');
  });
  lifecycle.track(server);
  const address = await listen(server, { host: '127.0.0.1', port: 0 }, '--port');
  const port = 'port' in address ? address.port : 0;
  lifecycle.setReady(true);
  assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);

  const inflight = new Promise<string>((resolve) => {
    request(`http://127.0.0.1:${port}/slow`, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve(body));
    }).end();
  });
  while (!release) await new Promise((resolve) => setImmediate(resolve));
  const started = Date.now();
  const stopped = lifecycle.shutdown('test');
  const probe = await fetch(`http://127.0.0.1:${port}/readyz`);
  assert.equal(probe.status, 503, 'unready during the lameduck, yet still serving');
  assert.deepEqual(await probe.json(), { status: 'not ready', reason: 'shutting down' });
  release();
  assert.equal(await inflight, 'done');
  await stopped;
  assert.ok(Date.now() - started >= 100, 'waited the lameduck period');
  assert.equal(server.listening, false);
});

test('shutdown ends within the termination grace period even if a request never finishes', async () => {
  const lifecycle = new Lifecycle({ logger: quiet(), lameduckMs: 0, terminationGracePeriodMs: 300 });
  const server = createServer(() => {
    // never answers
  });
  lifecycle.track(server);
  const address = await listen(server, { host: '127.0.0.1', port: 0 }, '--port');
  const port = 'port' in address ? address.port : 0;
  const req = request(`http://127.0.0.1:${port}/hang`);
  req.on('error', () => {});
  req.end();
  await once(server, 'request');
  const started = Date.now();
  await lifecycle.shutdown('test');
  assert.ok(Date.now() - started < 2000);
});
