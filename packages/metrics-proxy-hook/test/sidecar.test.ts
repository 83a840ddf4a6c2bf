// The sidecar as the kubelet runs it, beside a real application process that exits on SIGTERM.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { parseFlags } from '@seahorse/runtime';
import {
  freePort,
  issueCertificate,
  type ManagedProcess,
  makeCertificateAuthority,
  waitFor,
} from '@seahorse/runtime/testing';
import { measureSidecarRss } from '../bench/rss.ts';
import { buildSidecarOptions, MetricsSidecar, sidecarFlagSpecs } from '../src/index.ts';
import { applyPatch, type PatchOperation } from '../src/json-patch.ts';
import type { Pod } from '../src/kubernetes.ts';
import { PodMutator } from '../src/mutator.ts';
import { sidecarNodeOptions, sidecarResources } from '../src/pod-patch.ts';
import { fixture, type MetricsApp, startCli, startMetricsApp, testLogger } from './helpers.ts';

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

/** An application and the sidecar in front of it, both stopped when `body` is done. */
async function withSidecar(
  args: string[],
  body: (app: MetricsApp, sidecar: Awaited<ReturnType<typeof startSidecar>>) => Promise<void>,
): Promise<void> {
  const app = await startMetricsApp();
  const sidecar = await startSidecar(app.port, args);
  try {
    await body(app, sidecar);
  } finally {
    await sidecar.process.stop();
    await app.process.stop();
  }
}

async function scrape(url: string): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

const logged = (process: ManagedProcess, msg: string) => process.output.includes(`"msg":"${msg}"`);

/** The exit time after SIGTERM, in ms. */
async function exitAfterSignal(sidecar: ManagedProcess): Promise<{ code: number | null; ms: number }> {
  const started = performance.now();
  sidecar.signal('SIGTERM');
  const code = await sidecar.exited;
  return { code, ms: performance.now() - started };
}

test('a pod Prometheus never scraped exits within lameduck + 1 s of SIGTERM, without a final fetch', async () => {
  // The default 30s grace and 1s lameduck, as the webhook injects them.
  await withSidecar([], async (_app, sidecar) => {
    const { code, ms } = await exitAfterSignal(sidecar.process);
    assert.equal(code, 0, sidecar.process.output);
    assert.ok(ms < 1000 + 1000, `exited ${Math.round(ms)} ms after SIGTERM (lameduck 1s)`);
    assert.ok(!logged(sidecar.process, 'final metrics fetched'));
    assert.match(sidecar.process.output, /"path":"never-scraped"/);
  });
});

test('a pod scraped within --scrape-wait-threshold exits within lameduck + 1 s; that scrape was the last', async () => {
  await withSidecar(
    ['--scrape-wait-threshold=1h', '--termination-grace-period=10s'],
    async (app, sidecar) => {
      await app.work();
      assert.match((await scrape(sidecar.url)).body, /^app_requests_total 1$/m);
      const { code, ms } = await exitAfterSignal(sidecar.process);
      assert.equal(code, 0, sidecar.process.output);
      assert.ok(ms < 1000 + 1000, `exited ${Math.round(ms)} ms after SIGTERM (lameduck 1s)`);
      assert.ok(!logged(sidecar.process, 'final metrics fetched'));
      assert.match(sidecar.process.output, /"path":"scraped-recently"/);
    },
  );
});

test('a pod scraped longer ago is fetched once more; the next scraper gets the final numbers after the app exited, then the sidecar exits', async () => {
  await withSidecar(
    ['--scrape-wait-threshold=0s', '--termination-grace-period=20s', '--lameduck=100ms'],
    async (app, sidecar) => {
      for (let i = 0; i < 3; i++) await app.work();
      const early = await scrape(sidecar.url);
      assert.equal(early.status, 200);
      assert.match(early.body, /^app_requests_total 3$/m);

      // Work Prometheus has not seen yet, in the pod's last moments.
      await app.work();
      await app.work();
      sidecar.process.signal('SIGTERM');
      await waitFor('the final fetch', () => logged(sidecar.process, 'final metrics fetched'));
      app.process.signal('SIGTERM');
      assert.equal(await app.process.exited, 0);
      assert.ok(sidecar.process.alive, 'the sidecar waits for a last scrape');

      const last = await scrape(sidecar.url);
      const scrapedAt = performance.now();
      assert.equal(last.status, 200, last.body);
      assert.match(last.body, /^app_requests_total 5$/m);
      assert.equal(last.type, 'text/plain; version=0.0.4; charset=utf-8');
      assert.equal(await sidecar.process.exited, 0, sidecar.process.output);
      assert.ok(performance.now() - scrapedAt < 100 + 1000, 'the scrape ended the wait');
      assert.match(sidecar.process.output, /"path":"scraped-after-signal"/);
    },
  );
});

test('a pod scraped longer ago that is not scraped again exits within its grace period', async () => {
  await withSidecar(
    ['--scrape-wait-threshold=0s', '--termination-grace-period=2s', '--lameduck=100ms'],
    async (_app, sidecar) => {
      await scrape(sidecar.url);
      const { code, ms } = await exitAfterSignal(sidecar.process);
      assert.equal(code, 0, sidecar.process.output);
      assert.ok(ms >= 1500 && ms < 2000 + 500, `exited ${Math.round(ms)} ms after SIGTERM (grace 2s)`);
      assert.ok(logged(sidecar.process, 'final metrics fetched'));
      assert.match(sidecar.process.output, /"path":"grace-period-ran-out"/);
    },
  );
});

test('a failed final fetch with nothing kept does not wait: there is nothing to serve', async () => {
  // A 1-byte cache keeps nothing, so once the app is gone there is no body to wait with.
  await withSidecar(
    ['--scrape-wait-threshold=0s', '--termination-grace-period=30s', '--max-cached-body=1'],
    async (app, sidecar) => {
      assert.equal((await scrape(sidecar.url)).status, 200);
      await waitFor('the log to say the body was not kept', () =>
        logged(
          sidecar.process,
          'metrics body larger than --max-cached-body: streamed but not kept for after the application exits',
        ),
      );
      app.process.signal('SIGTERM');
      await app.process.exited;
      const { code, ms } = await exitAfterSignal(sidecar.process);
      assert.equal(code, 0, sidecar.process.output);
      assert.ok(ms < 1000 + 1000, `exited ${Math.round(ms)} ms after SIGTERM`);
      assert.match(sidecar.process.output, /"path":"nothing-to-serve"/);
    },
  );
});

test('as a native sidecar the app has exited before SIGTERM: the kept body answers the last scrape, then the sidecar exits', async () => {
  await withSidecar(
    ['--scrape-wait-threshold=0s', '--termination-grace-period=20s', '--lameduck=100ms'],
    async (app, sidecar) => {
      await app.work();
      await app.work();
      assert.match((await scrape(sidecar.url)).body, /^app_requests_total 2$/m);
      // The kubelet stops a native sidecar only after the main containers (a Job's work) are done.
      app.process.signal('SIGTERM');
      await app.process.exited;
      sidecar.process.signal('SIGTERM');
      await waitFor('the failed final fetch', () => logged(sidecar.process, 'final metrics fetch failed'));
      const last = await scrape(sidecar.url);
      assert.equal(last.status, 200);
      assert.match(last.body, /^app_requests_total 2$/m);
      assert.equal(await sidecar.process.exited, 0, sidecar.process.output);
      assert.match(sidecar.process.output, /"path":"scraped-after-signal"/);
    },
  );
});

test('later SIGTERMs are logged and ignored: the final scrape still happens and the exit is 0', async () => {
  await withSidecar(
    ['--scrape-wait-threshold=0s', '--termination-grace-period=20s', '--lameduck=100ms'],
    async (app, sidecar) => {
      await app.work();
      await scrape(sidecar.url);
      await app.work();
      sidecar.process.signal('SIGTERM');
      await waitFor('the final fetch', () => logged(sidecar.process, 'final metrics fetched'));
      sidecar.process.signal('SIGTERM');
      sidecar.process.signal('SIGINT');
      await waitFor(
        'both later signals logged',
        () => sidecar.process.output.split('signal ignored: already terminating').length === 3,
      );
      assert.ok(sidecar.process.alive);
      app.process.signal('SIGTERM');
      await app.process.exited;
      const last = await scrape(sidecar.url);
      assert.match(last.body, /^app_requests_total 2$/m);
      assert.equal(await sidecar.process.exited, 0, sidecar.process.output);
    },
  );
});

test('the original command line works: sidecar TARGET_URL --address --lameduck --termination-grace-period', async () => {
  const app = await startMetricsApp();
  const port = await freePort();
  const sidecar = startCli(`sidecar :${port}`, [
    'sidecar',
    `http://127.0.0.1:${app.port}/metrics`,
    '--address',
    `127.0.0.1:${port}`,
    '--lameduck',
    '1s',
    '--termination-grace-period',
    '30s',
  ]);
  try {
    await sidecar.untilReady(waitFor('sidecar', () => sidecar.output.includes('metrics proxy serving')));
    await app.work();
    assert.match((await scrape(`http://127.0.0.1:${port}/metrics`)).body, /^app_requests_total 1$/m);
  } finally {
    await sidecar.stop();
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

async function inProcessSidecar(
  upstreamPort: number,
  args: string[] = [],
  { scheme = 'http', env = {} }: { scheme?: 'http' | 'https'; env?: NodeJS.ProcessEnv } = {},
) {
  const flags = parseFlags(sidecarFlagSpecs, [
    '--address=127.0.0.1:0',
    `--target=${scheme}://127.0.0.1:${upstreamPort}/metrics`,
    '--termination-grace-period=500ms',
    '--lameduck=0s',
    ...args,
  ]);
  const { log, logs } = testLogger();
  const sidecar = new MetricsSidecar(buildSidecarOptions(flags, env), log);
  const address = (await sidecar.start()) as { port: number };
  return { sidecar, logs, url: `http://127.0.0.1:${address.port}/metrics` };
}

async function listenUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const upstream = createServer(handler);
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  return { upstream, port: (upstream.address() as AddressInfo).port };
}

test('the body is streamed: the scraper reads the first bytes before the application has finished', async () => {
  let finish: (() => void) | undefined;
  const { upstream, port } = await listenUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first_metric 1\n');
    finish = () => res.end('last_metric 2\n');
  });
  const { sidecar, url } = await inProcessSidecar(port);
  try {
    const res = await fetch(url);
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.equal(
      Buffer.from(first.value!).toString(),
      'first_metric 1\n',
      'arrived while the app still writes',
    );
    finish!();
    let rest = '';
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      rest += Buffer.from(chunk.value).toString();
    }
    assert.equal(rest, 'last_metric 2\n');
    await waitFor('the body to be kept', () => sidecar.cached !== undefined);
    assert.equal(sidecar.cached?.body.toString(), 'first_metric 1\nlast_metric 2\n');
  } finally {
    upstream.close();
    upstream.closeAllConnections();
    await sidecar.terminate('test');
  }
});

test('a body over --max-cached-body reaches the scraper whole but is not kept, and the log says so', async () => {
  const small = 'small_metric 1\n';
  const big = `${'big_metric 1\n'.repeat(100_000)}`;
  let body = small;
  const { upstream, port } = await listenUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(body);
  });
  const { sidecar, logs, url } = await inProcessSidecar(port, ['--max-cached-body=64Ki']);
  try {
    assert.equal(await (await fetch(url)).text(), small);
    await waitFor('the small body to be kept', () => sidecar.cached !== undefined);
    body = big;
    const got = await (await fetch(url)).text();
    assert.equal(got.length, big.length);
    await waitFor('the log line', () =>
      logs.text.includes('metrics body larger than --max-cached-body: streamed but not kept'),
    );
    assert.equal(
      sidecar.cached,
      undefined,
      'the older, smaller body is dropped too: it would be a step back',
    );
    assert.match(logs.text, /"maxCachedBytes":65536/);
  } finally {
    upstream.close();
    upstream.closeAllConnections();
    await sidecar.terminate('test');
  }
});

test('an https target is proxied when its certificate chains to SSL_CERT_FILE (as Go verifies), and is a 502 naming the failure when it does not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-sidecar-tls-'));
  makeCertificateAuthority(dir);
  const upstream = createHttpsServer(issueCertificate(dir, 'app'), (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('tls_metric 1\n');
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const { port } = upstream.address() as AddressInfo;
  const trusted = await inProcessSidecar(port, [], {
    scheme: 'https',
    env: { SSL_CERT_FILE: join(dir, 'ca.crt') },
  });
  // No SSL_CERT_FILE: the system's roots, which do not include the test CA.
  const untrusted = await inProcessSidecar(port, [], { scheme: 'https' });
  try {
    const good = await fetch(trusted.url);
    assert.equal(good.status, 200);
    assert.equal(await good.text(), 'tls_metric 1\n');
    const bad = await fetch(untrusted.url);
    assert.equal(bad.status, 502);
    assert.match(await bad.text(), /did not answer: .*(certificate|issuer)/);
    assert.throws(
      () =>
        buildSidecarOptions(parseFlags(sidecarFlagSpecs, [`--target=https://127.0.0.1:${port}/`]), {
          SSL_CERT_FILE: join(dir, 'missing.crt'),
        }),
      /SSL_CERT_FILE: cannot read .*missing\.crt \(ENOENT\)/,
    );
  } finally {
    upstream.close();
    upstream.closeAllConnections();
    await trusted.sidecar.terminate('test');
    await untrusted.sidecar.terminate('test');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a pod annotated prometheus.io/scheme: https is scraped through the injected sidecar with a self-signed certificate', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-sidecar-selfsigned-'));
  // A self-signed certificate for 127.0.0.1, as an application would make for itself.
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=app',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      join(dir, 'app.key'),
      '-out',
      join(dir, 'app.crt'),
    ],
    { stdio: 'ignore' },
  );
  const upstream = createHttpsServer(
    { cert: readFileSync(join(dir, 'app.crt')), key: readFileSync(join(dir, 'app.key')) },
    (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('https_app_metric 7\n');
    },
  );
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const { port } = upstream.address() as AddressInfo;
  // The webhook's own patch decides the sidecar's target.
  const review = fixture('review-deployment-pod.json');
  const pod = review.request.object as Pod;
  pod.metadata!.annotations!['prometheus.io/port'] = String(port);
  pod.metadata!.annotations!['prometheus.io/scheme'] = 'https';
  pod.metadata!.annotations!['prometheus.io/path'] = '/metrics';
  const mutator = new PodMutator(
    {
      injection: { sidecarImage: 'x', imagePullPolicy: 'IfNotPresent', terminationGracePeriodSeconds: 30 },
      semaphore: undefined,
    },
    testLogger().log,
  );
  const { response } = await mutator.review(review);
  const ops = JSON.parse(Buffer.from(response.patch!, 'base64').toString()) as PatchOperation[];
  const injected = applyPatch(pod, ops);
  assert.equal(injected.metadata!.annotations!['prometheus.io/scheme'], 'http');
  const target = injected.spec!.containers.at(-1)!.args!.find((arg) => arg.startsWith('--target='))!;
  assert.equal(target, `--target=https://127.0.0.1:${port}/metrics`);
  const flags = parseFlags(sidecarFlagSpecs, ['--address=127.0.0.1:0', target, '--lameduck=0s']);
  const { log } = testLogger();
  const sidecar = new MetricsSidecar(
    buildSidecarOptions(flags, { SSL_CERT_FILE: join(dir, 'app.crt') }),
    log,
  );
  const address = (await sidecar.start()) as { port: number };
  try {
    // Prometheus scrapes the sidecar over plain http, as the rewritten annotation says.
    const res = await fetch(`http://127.0.0.1:${address.port}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'https_app_metric 7\n');
  } finally {
    upstream.close();
    upstream.closeAllConnections();
    await sidecar?.terminate('test');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an application slower than --target-timeout gets a 502 that says "timed out after N ms"', async () => {
  const { upstream, port } = await listenUpstream(() => {
    // Never answers.
  });
  const { sidecar, url } = await inProcessSidecar(port, ['--target-timeout=200ms']);
  try {
    const res = await fetch(url);
    assert.equal(res.status, 502);
    assert.match(await res.text(), /did not answer: timed out after 200 ms/);
  } finally {
    upstream.close();
    upstream.closeAllConnections();
    await sidecar.terminate('test');
  }
});

test('with a 20 MB body and two concurrent scrapes the sidecar stays well inside its memory limit', async () => {
  // The injected container's settings (pod-patch.ts); the built bin, as the image runs it.
  const result = await measureSidecarRss({
    bodyBytes: 20_000_000,
    concurrency: 2,
    rounds: 3,
    nodeOptions: sidecarNodeOptions,
    maxCachedBody: '32Mi',
  });
  const limitMiB = Number.parseInt(sidecarResources.limits.memory, 10);
  const requestMiB = Number.parseInt(sidecarResources.requests.memory, 10);
  assert.ok(result.idleMiB < requestMiB, `idle ${result.idleMiB} MiB within the ${requestMiB}Mi request`);
  assert.ok(result.peakMiB < limitMiB * 0.85, `peak ${result.peakMiB} MiB, limit ${limitMiB}Mi`);
});
