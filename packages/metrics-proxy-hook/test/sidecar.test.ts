// The sidecar as the kubelet runs it, beside a real application process that exits on SIGTERM.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseFlags } from '@seahorse/runtime';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';
import { buildSidecarOptions, MetricsSidecar, sidecarFlagSpecs } from '../src/index.ts';
import { packageRoot, startCli, testLogger } from './helpers.ts';

async function startApp(): Promise<{ process: ManagedProcess; port: number; work(): Promise<void> }> {
  const port = await freePort();
  const app = new ManagedProcess(`metrics app :${port}`, process.execPath, [
    join(packageRoot, 'test', 'fixtures', 'metrics-app.ts'),
    String(port),
  ]);
  await app.untilReady(waitFor(`app on ${port}`, () => app.output.includes('listening')));
  return {
    process: app,
    port,
    work: async () => {
      const res = await fetch(`http://127.0.0.1:${port}/work`, { method: 'POST' });
      await res.text();
    },
  };
}

async function startSidecar(appPort: number, args: string[]) {
  const port = await freePort();
  const sidecar = startCli(`sidecar :${port}`, [
    'sidecar',
    `--address=127.0.0.1:${port}`,
    `--target=http://127.0.0.1:${appPort}/metrics`,
    ...args,
  ]);
  await sidecar.untilReady(
    waitFor(`sidecar on ${port}`, () => sidecar.output.includes('metrics proxy serving')),
  );
  return { process: sidecar, url: `http://127.0.0.1:${port}/metrics` };
}

async function scrape(url: string): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

const logged = (process: ManagedProcess, msg: string) => process.output.includes(`"msg":"${msg}"`);

test('a scraper arriving after the application exited gets the final numbers, then the sidecar exits 0', async () => {
  const app = await startApp();
  const sidecar = await startSidecar(app.port, [
    '--scrape-wait-threshold=0s',
    '--termination-grace-period=20s',
    '--lameduck=100ms',
  ]);
  try {
    for (let i = 0; i < 3; i++) await app.work();
    const early = await scrape(sidecar.url);
    assert.equal(early.status, 200);
    assert.match(early.body, /^app_requests_total 3$/m);

    // Work Prometheus has not seen yet, in the pod's last moments.
    await app.work();
    await app.work();
    // The kubelet signals every container; the sidecar fetches once more before the app is gone.
    sidecar.process.signal('SIGTERM');
    await waitFor('the final fetch', () => logged(sidecar.process, 'final metrics fetched'));
    app.process.signal('SIGTERM');
    assert.equal(await app.process.exited, 0);
    assert.ok(sidecar.process.alive, 'the sidecar waits for a last scrape');

    const last = await scrape(sidecar.url);
    assert.equal(last.status, 200, last.body);
    assert.match(last.body, /^app_requests_total 5$/m);
    assert.equal(last.type, 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(await sidecar.process.exited, 0, sidecar.process.output);
    assert.ok(logged(sidecar.process, 'final scrape served'));
  } finally {
    await sidecar.process.stop();
    await app.process.stop();
  }
});

test('a recent scrape makes the final fetch unnecessary; the cached body is what the last scraper gets', async () => {
  const app = await startApp();
  const sidecar = await startSidecar(app.port, [
    '--scrape-wait-threshold=1h',
    '--termination-grace-period=20s',
    '--lameduck=0s',
  ]);
  try {
    await app.work();
    assert.match((await scrape(sidecar.url)).body, /^app_requests_total 1$/m);
    await app.work();
    sidecar.process.signal('SIGTERM');
    await waitFor('termination to start', () => logged(sidecar.process, 'terminating'));
    app.process.signal('SIGTERM');
    await app.process.exited;
    const last = await scrape(sidecar.url);
    assert.equal(last.status, 200);
    assert.match(last.body, /^app_requests_total 1$/m, 'the scrape within the threshold is the final one');
    assert.equal(await sidecar.process.exited, 0);
    assert.ok(!logged(sidecar.process, 'final metrics fetched'));
  } finally {
    await sidecar.process.stop();
    await app.process.stop();
  }
});

test('without a scrape the sidecar gives up within the termination grace period and exits 0', async () => {
  const app = await startApp();
  const sidecar = await startSidecar(app.port, ['--termination-grace-period=1500ms', '--lameduck=100ms']);
  try {
    const started = Date.now();
    sidecar.process.signal('SIGTERM');
    assert.equal(await sidecar.process.exited, 0);
    const took = Date.now() - started;
    assert.ok(took >= 1000 && took < 1500 + 1000, `exited after ${took} ms`);
    assert.ok(logged(sidecar.process, 'final metrics fetched'), 'no scrape yet: it fetched once more');
    assert.ok(logged(sidecar.process, 'no scrape before the grace period ran out'));
  } finally {
    await sidecar.process.stop();
    await app.process.stop();
  }
});

test('while the pod runs, the sidecar proxies status, headers, body and query; a dead application is a 502', async () => {
  const seen: string[] = [];
  let status = 200;
  const upstream = createServer((req, res) => {
    seen.push(`${req.method} ${req.url} ${req.headers['accept-encoding']} ${req.headers.accept}`);
    res.writeHead(status, { 'content-type': 'application/openmetrics-text; version=1.0.0', 'x-app': 'yes' });
    res.end(status === 200 ? 'app_up 1\n# EOF\n' : 'broken\n');
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const port = (upstream.address() as AddressInfo).port;
  const flags = parseFlags(sidecarFlagSpecs, [
    '--address=127.0.0.1:0',
    `--target=http://127.0.0.1:${port}/metrics`,
    '--termination-grace-period=500ms',
    '--lameduck=0s',
  ]);
  const { log } = testLogger();
  const sidecar = new MetricsSidecar(buildSidecarOptions(flags), log);
  const address = (await sidecar.start()) as { port: number };
  const url = `http://127.0.0.1:${address.port}`;
  try {
    const res = await fetch(`${url}/anything?match[]=up`, {
      headers: { accept: 'application/openmetrics-text', 'accept-encoding': 'gzip' },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-app'), 'yes');
    assert.equal(await res.text(), 'app_up 1\n# EOF\n');
    assert.deepEqual(seen, ['GET /metrics?match[]=up identity application/openmetrics-text']);
    assert.equal(sidecar.cached?.body.toString(), 'app_up 1\n# EOF\n');

    status = 500;
    const failing = await fetch(url);
    assert.equal(failing.status, 500, 'errors pass through while the pod runs');
    assert.equal(await failing.text(), 'broken\n');
    assert.equal(sidecar.cached?.body.toString(), 'app_up 1\n# EOF\n', 'only good bodies are kept');

    upstream.close();
    upstream.closeAllConnections();
    const dead = await fetch(url);
    assert.equal(dead.status, 502);
    assert.match(await dead.text(), /did not answer/);
  } finally {
    upstream.close();
    await sidecar.terminate('test');
  }
});
