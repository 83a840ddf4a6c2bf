// Attacks on the webhook and the sidecar as a hostile cluster would make them: bytes no parser
// expects, processes killed and frozen mid-flight, requests retried and duplicated. Each test
// here failed before the fix it names in its commit.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { parseFlags } from '@seahorse/runtime';
import { freePort, ManagedProcess, startRedis, waitFor } from '@seahorse/runtime/testing';
import { Redis } from 'ioredis';
import {
  applyPatch,
  buildWebhookOptions,
  type Pod,
  RedisNodes,
  RedisSemaphore,
  startWebhook,
  webhookFlagSpecs,
} from '../src/index.ts';
import { sidecarNodeOptions } from '../src/pod-patch.ts';
import {
  containerEnv,
  fixture,
  httpsCall,
  installKubeletStyle,
  issueServingCertificate,
  makeCertificateAuthority,
  packageRoot,
  postReview,
  startCli,
  startMetricsApp,
  startTestWebhook,
  startWebhookProcess,
  testLogger,
} from './helpers.ts';

/** An application that answers every request on a connection with `respond`, as raw bytes. */
async function rawApp(respond: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    socket.on('data', () => respond(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port };
}

async function startSidecarProcess(
  targetPort: number,
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<{ process: ManagedProcess; port: number; url: string }> {
  const port = await freePort();
  const child = startCli(
    `sidecar :${port}`,
    ['sidecar', `--address=127.0.0.1:${port}`, `http://127.0.0.1:${targetPort}/metrics`, ...args],
    env,
  );
  await child.untilReady(waitFor(`sidecar on ${port}`, () => child.output.includes('metrics proxy serving')));
  return { process: child, port, url: `http://127.0.0.1:${port}/metrics` };
}

/** Writes raw bytes to a server and returns what it answered before closing (or 500 ms). */
async function rawExchange(port: number, bytes: string): Promise<string> {
  const { connect } = await import('node:net');
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  let answer = '';
  socket.on('data', (chunk: Buffer) => {
    answer += chunk.toString('latin1');
  });
  socket.write(bytes);
  await Promise.race([once(socket, 'close'), new Promise((resolve) => setTimeout(resolve, 500))]);
  socket.destroy();
  return answer;
}

const goodMetrics = (socket: Socket) =>
  socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\napp_up 1\n\n\n\n');

test('a scrape with a malformed absolute-form target (GET http://[) is answered, and the sidecar keeps serving', async () => {
  const app = await rawApp(goodMetrics);
  const sidecar = await startSidecarProcess(app.port);
  try {
    for (const target of ['http://[', 'http://a:99999/x', 'http://%zz']) {
      const answer = await rawExchange(sidecar.port, `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.ok(sidecar.process.alive, `the sidecar died on 'GET ${target}':\n${sidecar.process.output}`);
      assert.match(answer, /^HTTP\/1\.1 (400|200) /, `answer to 'GET ${target}'`);
    }
    const res = await fetch(sidecar.url);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'app_up 1\n\n\n\n');
  } finally {
    await sidecar.process.stop();
    app.server.close();
  }
});

test('an application answering with a status outside 100-599 gets a 502 naming it; the sidecar keeps serving', async () => {
  let status = '000';
  const app = await rawApp((socket) => {
    if (status === '200') goodMetrics(socket);
    else socket.write(`HTTP/1.1 ${status} Odd\r\nContent-Length: 2\r\n\r\nok`);
  });
  const sidecar = await startSidecarProcess(app.port);
  try {
    for (const odd of ['000', '099', '600', '999']) {
      status = odd;
      const res = await fetch(sidecar.url).catch((error: Error) => error);
      assert.ok(sidecar.process.alive, `the sidecar died on status ${odd}:\n${sidecar.process.output}`);
      assert.ok(!(res instanceof Error), `status ${odd}: ${res}`);
      assert.equal(res.status, 502, `status ${odd}`);
      assert.match(await res.text(), new RegExp(`status ${odd}`));
    }
    status = '200';
    const res = await fetch(sidecar.url);
    assert.equal(res.status, 200);
  } finally {
    await sidecar.process.stop();
    app.server.close();
  }
});

test('a 5 MB body sent as 60-byte HTTP chunks is kept without one object per chunk: the sidecar survives repeated scrapes under the injected heap cap', async () => {
  // An application that writes each line on its own (res.write per line) sends a chunk per
  // line; the kept copy must not cost a JavaScript object per chunk, or the heap cap is hit.
  const line = `${'a'.repeat(59)}\n`;
  const lines = 83_333;
  const chunk = `3c\r\n${line}\r\n`;
  const encoded = Buffer.from(`${chunk.repeat(lines)}0\r\n\r\n`);
  const app = await rawApp((socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n');
    socket.write(encoded);
  });
  const sidecar = await startSidecarProcess(app.port, [], { NODE_OPTIONS: sidecarNodeOptions });
  try {
    for (let round = 0; round < 4; round++) {
      const res = await fetch(sidecar.url).catch((error: Error) => error);
      assert.ok(!(res instanceof Error), `round ${round}: ${res}\n${sidecar.process.output}`);
      assert.equal((await res.arrayBuffer()).byteLength, line.length * lines, `round ${round}`);
    }
    assert.ok(sidecar.process.alive, sidecar.process.output);
  } finally {
    await sidecar.process.stop();
    app.server.close();
  }
});

/** Three real Redis nodes and an in-process webhook using them, over HTTPS with its own CA. */
async function webhookWithRedis(args: string[] = []) {
  const servers = await Promise.all([startRedis(), startRedis(), startRedis()]);
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-attack-'));
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  const webhook = await startTestWebhook(join(dir, 'certs'), [
    ...servers.map((server) => `--redis=${server.host}:${server.port}`),
    ...args,
  ]);
  return {
    servers,
    webhook,
    ca: readFileSync(join(dir, 'ca.crt')),
    async close() {
      await webhook.close();
      await Promise.all(servers.map((server) => server.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A limited pod's review (max-concurrent) with the field at `path` set to `value` (deleted if undefined). */
function limitedReview(path: string[], value: unknown): unknown {
  const review = fixture('review-deployment-pod.json') as unknown as Record<string, unknown>;
  const pod = (review.request as { object: { metadata: { annotations: Record<string, string> } } }).object;
  pod.metadata.annotations['prometheus-metrics-proxy-hook/max-concurrent'] = '5';
  let parent = review;
  for (const name of path.slice(0, -1)) parent = parent[name] as Record<string, unknown>;
  if (value === undefined) delete parent[path.at(-1)!];
  else parent[path.at(-1)!] = value;
  return review;
}

test('wrongly typed fields of an AdmissionReview or its Pod are a 400 naming the field, never a 500', async () => {
  const env = await webhookWithRedis();
  const metadata = ['request', 'object', 'metadata'];
  const owners = [...metadata, 'ownerReferences'];
  const cases: Array<[string, unknown, RegExp]> = [
    ['ownerReferences a string', limitedReview(owners, 'x'), /ownerReferences/],
    ['ownerReferences an object', limitedReview(owners, { a: 1 }), /ownerReferences/],
    ['an ownerReference null', limitedReview(owners, [null]), /ownerReferences/],
    [
      'an ownerReference without a name',
      limitedReview(owners, [{ kind: 'ReplicaSet', controller: true }]),
      /ownerReferences/,
    ],
    [
      'an ownerReference whose name is a number',
      limitedReview(owners, [{ kind: 'ReplicaSet', name: 5, controller: true }]),
      /ownerReferences/,
    ],
    ['labels a string', limitedReview([...metadata, 'labels'], 'x'), /labels/],
    ['namespace a number', limitedReview(['request', 'namespace'], 5), /namespace/],
    ['dryRun a string', limitedReview(['request', 'dryRun'], 'true'), /dryRun/],
    ['kind without a group', limitedReview(['request', 'kind', 'group'], undefined), /group/],
    ['a 2 MB uid', limitedReview(['request', 'uid'], 'u'.repeat(2_000_000)), /uid/],
    ['a uid with a newline', limitedReview(['request', 'uid'], 'a\nb'), /uid/],
  ];
  try {
    for (const [what, review, message] of cases) {
      const res = await postReview(env.webhook.url, env.ca, review);
      assert.equal(res.status, 400, `${what}: ${res.status} ${res.body.slice(0, 300)}`);
      const body = JSON.parse(res.body);
      assert.equal(body.kind, 'Status', what);
      assert.match(body.message, message, what);
    }
    // Nothing was taken for any of them.
    for (const server of env.servers) {
      assert.deepEqual(await server.command('KEYS', 'seahorse:metrics-proxy-hook:slots:*'), []);
    }
    const good = await postReview(env.webhook.url, env.ca, limitedReview(['request', 'dryRun'], false));
    assert.equal(JSON.parse(good.body).response.allowed, true);
  } finally {
    await env.close();
  }
});

test('a sidecar that finds its slot gone and the workload full (admission lease ran out during a slow image pull) reports the overrun: a log line and the webhook metric', async () => {
  // A one-second admission lease stands for one that ran out during a slow image pull.
  const env = await webhookWithRedis(['--semaphore-admission-ttl=1s', '--semaphore-lease-ttl=1s']);
  const workload = 'shop/Deployment/checkout';
  const { log } = testLogger();
  const nodes = new RedisNodes(env.servers, { commandTimeoutMs: 250, log });
  const semaphore = new RedisSemaphore(nodes, {
    lock: { ttlMs: 2000, retryCount: 20, retryDelayMs: 10, retryJitterMs: 20 },
  });
  const review = fixture('review-deployment-pod.json');
  (review.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] = '1';
  const answer = JSON.parse((await postReview(env.webhook.url, env.ca, review)).body).response;
  assert.equal(answer.allowed, true);
  const pod = applyPatch(
    structuredClone(review.request.object as Pod),
    JSON.parse(Buffer.from(answer.patch, 'base64').toString()),
  );
  await waitFor('the admission lease to run out', async () => (await semaphore.holders(workload)).size === 0);
  // Another pod took the only slot meanwhile.
  assert.equal(
    (await semaphore.acquire({ workload, slot: 'the-other-pod', limit: 1, leaseMs: 60_000 })).granted,
    true,
  );
  const sidecar = startCli(
    'late sidecar',
    ['sidecar', '--target=http://127.0.0.1:9/metrics', '--address=127.0.0.1:0'],
    containerEnv(pod.spec!.containers.at(-1)!),
  );
  try {
    await waitFor('the sidecar to find the workload full', () =>
      sidecar.output.includes('runs on without one'),
    );
    await waitFor('the webhook metric', async () =>
      /seahorse_metrics_proxy_hook_lease_overruns 1\b/.test(
        await (await fetch(env.webhook.metricsUrl)).text(),
      ),
    );
    assert.match(sidecar.output, /"level":"error".*"msg":"slot lease overran/);
    // Reported once for the episode, not at every retry.
    await waitFor('two more retries', () => sidecar.output.split('runs on without one').length >= 4, {
      timeoutMs: 5000,
    });
    assert.match(
      await (await fetch(env.webhook.metricsUrl)).text(),
      /seahorse_metrics_proxy_hook_lease_overruns 1\b/,
    );
    // The pod's token never took the other pod's slot or a second one.
    assert.deepEqual([...(await semaphore.holders(workload)).keys()], ['the-other-pod']);
  } finally {
    await sidecar.stop('SIGKILL');
    nodes.close();
    await env.close();
  }
});

/**
 * A limited pod whose application drains for 2.5 s after SIGTERM, its metrics port open or
 * (`close-first`) closed at once. No second pod may be admitted before the first has stopped.
 */
async function drainingPodKeepsItsSlot(mode: 'open' | 'close-first') {
  const graceMs = 5000;
  const env = await webhookWithRedis(['--semaphore-lease-ttl=1s']);
  const review = (uid: string) => {
    const one = fixture('review-deployment-pod.json');
    one.request.uid = uid;
    (one.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] = '1';
    return one;
  };
  const admit = async (uid: string) =>
    JSON.parse((await postReview(env.webhook.url, env.ca, review(uid))).body).response;
  const first = await admit('00000000-0000-4000-8000-00000000d001');
  assert.equal(first.allowed, true);
  const pod = applyPatch(
    structuredClone(review('x').request.object as Pod),
    JSON.parse(Buffer.from(first.patch, 'base64').toString()),
  );
  const slotEnv = Object.fromEntries(
    pod.spec!.containers.at(-1)!.env!.map(({ name, value }) => [name, value ?? '']),
  );
  const appPort = await freePort();
  const app = new ManagedProcess('draining app', process.execPath, [
    join(packageRoot, 'test', 'fixtures', 'draining-app.ts'),
    String(appPort),
    '2500',
    mode,
  ]);
  await app.untilReady(waitFor('the app', () => app.output.includes('listening')));
  const sidecar = startCli(
    'sidecar',
    [
      'sidecar',
      `--target=http://127.0.0.1:${appPort}/metrics`,
      '--address=127.0.0.1:0',
      `--termination-grace-period=${graceMs}ms`,
      '--lameduck=0s',
    ],
    slotEnv,
  );
  try {
    await waitFor('the first renewal', () => sidecar.output.includes('semaphore slot lease renewed'));
    // The kubelet signals every container of the pod at once.
    const signalledAt = performance.now();
    app.signal('SIGTERM');
    sidecar.signal('SIGTERM');
    await waitFor('the app to drain', () => app.output.includes('draining'));
    let attempt = 0;
    while (app.alive) {
      const second = await admit(`00000000-0000-4000-8000-00000000d1${String(attempt++).padStart(2, '0')}`);
      if (!app.alive) break;
      assert.equal(second.allowed, false, 'a second pod was admitted while the first one still runs');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.ok(attempt >= 5, `asked ${attempt} times while the app drained`);
    assert.equal(await sidecar.exited, 0, sidecar.output);
    // Not a native sidecar: the application may still run, so the slot stays leased to the
    // end of the grace period, when the kubelet has killed whatever still ran.
    assert.ok(
      sidecar.output.includes("semaphore slot held until the pod's grace period ends"),
      sidecar.output,
    );
    const after = await waitFor(
      'a pod admitted once the grace period is over',
      async () => {
        const answer = await admit(`00000000-0000-4000-8000-00000000d2${String(attempt++).padStart(2, '0')}`);
        if (answer.allowed) return answer;
        assert.ok(performance.now() - signalledAt < graceMs, 'denied after the grace period ended');
        return undefined;
      },
      { timeoutMs: graceMs + 5000, intervalMs: 200 },
    );
    assert.ok(performance.now() - signalledAt >= 2500, 'admitted while the first pod still ran');
    assert.equal(after.allowed, true);
  } finally {
    await sidecar.stop();
    await app.stop();
    await env.close();
  }
}

test('a sidecar holds its slot while the application still drains after SIGTERM with its metrics port open: no second pod is admitted before the first has stopped', async () => {
  await drainingPodKeepsItsSlot('open');
});

test('an application that closes its metrics port at SIGTERM and then drains keeps its slot too: the sidecar leaves it leased to the end of the grace period', async () => {
  await drainingPodKeepsItsSlot('close-first');
});

test('a pod with a grace period past 24.8 days (the timer limit) still waits for its last scrape after SIGTERM', async () => {
  const app = await rawApp(goodMetrics);
  // terminationGracePeriodSeconds: 2592000 (30 days) is legal; the webhook passes it on as is.
  const sidecar = await startSidecarProcess(app.port, [
    '--scrape-wait-threshold=0s',
    '--termination-grace-period=720h',
    '--lameduck=0s',
  ]);
  try {
    assert.equal((await fetch(sidecar.url)).status, 200);
    sidecar.process.signal('SIGTERM');
    await waitFor('the final fetch', () => sidecar.process.output.includes('final metrics fetched'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(sidecar.process.alive, `it stopped waiting at once:\n${sidecar.process.output}`);
    assert.equal((await fetch(sidecar.url)).status, 200);
    assert.equal(await sidecar.process.exited, 0);
    assert.match(sidecar.process.output, /"path":"scraped-after-signal"/);
  } finally {
    await sidecar.process.stop();
    app.server.close();
  }
});

test('a limited pod copied from a running one (sidecar, slot annotation and env included) does not share its slot: it is counted, and denied when the workload is full', async () => {
  const env = await webhookWithRedis();
  const review = (uid: string, object?: Pod) => {
    const one = fixture('review-deployment-pod.json');
    one.request.uid = uid;
    if (object) one.request.object = object;
    (one.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] = '1';
    return one;
  };
  const admit = async (one: ReturnType<typeof review>) =>
    JSON.parse((await postReview(env.webhook.url, env.ca, one)).body).response;
  const slotOf = (pod: Pod) =>
    pod
      .spec!.containers.find((container) => container.name === 'prometheus-metrics-proxy')!
      .env!.find(({ name }) => name === 'METRICS_PROXY_HOOK_SEMAPHORE_SLOT')!.value;
  try {
    const original = review('00000000-0000-4000-8000-00000000c001');
    const first = await admit(original);
    assert.equal(first.allowed, true);
    // `kubectl get pod -o yaml`, edited and created again (or restored from a backup).
    const copy = applyPatch(
      structuredClone(original.request.object as Pod),
      JSON.parse(Buffer.from(first.patch, 'base64').toString()),
    );
    const denied = await admit(review('00000000-0000-4000-8000-00000000c002', structuredClone(copy)));
    assert.equal(denied.allowed, false, `the copy ran on the original pod’s slot: ${JSON.stringify(denied)}`);
    assert.equal(denied.status.code, 403);

    await env.servers[0]!.command('FLUSHALL');
    await env.servers[1]!.command('FLUSHALL');
    await env.servers[2]!.command('FLUSHALL');
    const third = review('00000000-0000-4000-8000-00000000c003', structuredClone(copy));
    const allowed = await admit(third);
    assert.equal(allowed.allowed, true);
    const pod = applyPatch(
      structuredClone(third.request.object as Pod),
      JSON.parse(Buffer.from(allowed.patch, 'base64').toString()),
    );
    assert.equal(slotOf(pod), third.request.uid, 'the copy gets a slot of its own');
    assert.equal(
      pod.metadata!.annotations!['prometheus-metrics-proxy-hook/slot'],
      `shop/Deployment/checkout#${third.request.uid}`,
    );
    assert.equal(
      pod.spec!.containers.filter((container) => container.name === 'prometheus-metrics-proxy').length,
      1,
    );
  } finally {
    await env.close();
  }
});

test('a second SIGTERM to the webhook (a deletion re-issued) is logged and ignored: admissions during the lameduck are still answered, and the exit is 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-attack-'));
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  const ca = readFileSync(join(dir, 'ca.crt'));
  const webhook = await startWebhookProcess(join(dir, 'certs'), ['--lameduck=1500ms']);
  try {
    webhook.process.signal('SIGTERM');
    await waitFor('unready', async () => (await fetch(`${webhook.probeUrl}/readyz`)).status === 503);
    webhook.process.signal('SIGTERM');
    webhook.process.signal('SIGINT');
    await waitFor(
      'both later signals logged',
      () => webhook.process.output.split('signal ignored: already terminating').length === 3,
    );
    assert.ok(webhook.process.alive, webhook.process.output);
    const res = await postReview(webhook.url, ca, fixture('review-deployment-pod.json'));
    assert.equal(res.status, 200, 'an admission in the lameduck is still answered');
    assert.equal(await webhook.process.exited, 0, webhook.process.output);
  } finally {
    await webhook.process.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the original webhook's injected command line (sidecar http://127.0.0.1:PORT, no path) proxies the scraped path, and the final fetch gets it too", async () => {
  const app = await startMetricsApp();
  const appPort = app.port;
  const port = await freePort();
  // Exactly the args the original Go webhook injects (pkg/webhook/webhook.go), plus the threshold.
  const sidecar = startCli('sidecar', [
    'sidecar',
    `http://127.0.0.1:${appPort}`,
    '--address',
    `127.0.0.1:${port}`,
    '--lameduck',
    '1s',
    '--termination-grace-period',
    '20s',
    '--scrape-wait-threshold=0s',
  ]);
  try {
    await sidecar.untilReady(waitFor('the sidecar', () => sidecar.output.includes('metrics proxy serving')));
    await app.work();
    const first = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(first.status, 200);
    assert.match(await first.text(), /^app_requests_total 1$/m);
    await app.work();
    sidecar.signal('SIGTERM');
    await waitFor('the final fetch', () => sidecar.output.includes('final metrics fetched'));
    app.process.signal('SIGTERM');
    await app.process.exited;
    const last = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(last.status, 200);
    assert.match(await last.text(), /^app_requests_total 2$/m);
    assert.equal(await sidecar.exited, 0, sidecar.output);
  } finally {
    await sidecar.stop();
    await app.process.stop();
  }
});

/** A client that opens a connection to the sidecar, writes `bytes`, and then neither writes nor reads. */
async function stalledClient(port: number, bytes: string): Promise<Socket> {
  const { connect } = await import('node:net');
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  if (bytes) socket.write(bytes);
  socket.pause();
  return socket;
}

test('stalled clients on the sidecar (bodies that never arrive, heads never finished, silent connections) do not delay a concurrent scrape, and are cut off on their own', async () => {
  const app = await startMetricsApp();
  const targetTimeoutMs = 6000;
  const sidecar = await startSidecarProcess(app.port, [`--target-timeout=${targetTimeoutMs}ms`]);
  const timeScrape = async () => {
    const started = performance.now();
    const res = await fetch(sidecar.url);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /^app_requests_total 0$/m);
    return performance.now() - started;
  };
  const stalled: Socket[] = [];
  try {
    const baseline = await timeScrape();
    // Before: a pool of four sockets to the application, each held by a POST whose body never came.
    for (let i = 0; i < 8; i++) {
      stalled.push(
        await stalledClient(
          sidecar.port,
          'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\nab',
        ),
      );
    }
    for (let i = 0; i < 4; i++) {
      stalled.push(await stalledClient(sidecar.port, 'GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: '));
      stalled.push(await stalledClient(sidecar.port, ''));
    }
    const withStalls = await timeScrape();
    assert.ok(
      stalled.every((socket) => !socket.destroyed && socket.readyState === 'open'),
      'the stalled clients are still connected: the scrape did not wait for them to be cut off',
    );
    assert.ok(
      withStalls < targetTimeoutMs / 3,
      `a scrape beside 16 stalled clients took ${Math.round(withStalls)} ms (alone: ${Math.round(baseline)} ms; --target-timeout ${targetTimeoutMs} ms)`,
    );
    const closed = (socket: Socket) =>
      socket.destroyed || socket.readableEnded || socket.readyState !== 'open';
    for (const socket of stalled) {
      socket.resume();
      socket.on('end', () => socket.destroy());
    }
    await waitFor('every stalled client cut off by its own timeout', () => stalled.every(closed), {
      timeoutMs: targetTimeoutMs * 3,
    });
    assert.ok(sidecar.process.alive, sidecar.process.output);
    await timeScrape();
  } finally {
    for (const socket of stalled) socket.destroy();
    await sidecar.process.stop();
    await app.process.stop();
  }
});

/** Opens a TLS connection and sends a POST /mutate head and all but one byte of its body. */
function holdBody(
  url: string,
  ca: Buffer,
  bytes: number,
): Promise<{ socket: TLSSocket; answer: () => string }> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    let answer = '';
    const socket = tlsConnect({ host: '127.0.0.1', port: Number(port), ca }, () => {
      socket.write(
        `POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${bytes}\r\n\r\n`,
      );
      socket.write(Buffer.alloc(bytes - 1, 0x20), () => resolve({ socket, answer: () => answer }));
    });
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString();
    });
    socket.on('error', () => resolve({ socket, answer: () => answer }));
  });
}

test('sixty clients each holding a 3 MiB AdmissionReview body open cannot run the webhook out of memory: the bytes in flight are bounded and the excess answered 503', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-attack-'));
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  const ca = readFileSync(join(dir, 'ca.crt'));
  const webhook = await startWebhookProcess(join(dir, 'certs'), []);
  const status = (field: 'VmRSS' | 'VmHWM') =>
    Number(
      new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
        readFileSync(`/proc/${webhook.process.pid}/status`, 'utf8'),
      )?.[1],
    ) / 1024;
  const held: Array<Awaited<ReturnType<typeof holdBody>>> = [];
  try {
    // Warm: one ordinary admission, so the idle figure includes what serving costs.
    assert.equal((await postReview(webhook.url, ca, fixture('review-deployment-pod.json'))).status, 200);
    const idle = status('VmRSS');
    for (let i = 0; i < 60; i++) held.push(await holdBody(webhook.url, ca, 3 * 1024 * 1024 - 64));
    await waitFor(
      'the excess to be refused',
      () => held.filter((client) => client.answer().startsWith('HTTP/1.1 503')).length >= 40,
    );
    const grown = status('VmHWM') - idle;
    assert.ok(grown < 96, `grew ${Math.round(grown)} MiB holding 60 bodies of 3 MiB (limit 256Mi)`);
    assert.ok(webhook.process.alive);
    for (const client of held) client.socket.destroy();
    await waitFor(
      'an ordinary admission to be answered again',
      async () => (await postReview(webhook.url, ca, fixture('review-deployment-pod.json'))).status === 200,
    );
  } finally {
    for (const client of held) client.socket.destroy();
    await webhook.process.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a body that stops arriving is answered 408 after the body timeout, and its bytes are given back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-attack-'));
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  const ca = readFileSync(join(dir, 'ca.crt'));
  const flags = parseFlags(webhookFlagSpecs, [
    '--host=127.0.0.1',
    '--port=0',
    '--metrics-address=0',
    '--probe-address=0',
    `--cert-dir=${join(dir, 'certs')}`,
  ]);
  const options = { ...buildWebhookOptions(flags), bodyTimeoutMs: 300, maxBodyBytesInFlight: 1024 * 1024 };
  const { log } = testLogger();
  const webhook = await startWebhook(options, log);
  const url = `https://127.0.0.1:${(webhook.addresses.webhook as { port: number }).port}/mutate`;
  try {
    const stalled = await holdBody(url, ca, 1024 * 1024 - 64);
    await waitFor('the 408', () => stalled.answer().startsWith('HTTP/1.1 408'));
    assert.match(stalled.answer(), /did not arrive within 300 ms/);
    stalled.socket.destroy();
    // The stalled body's bytes were given back: a review of nearly the whole budget fits again.
    const res = await postReview(url, ca, fixture('review-deployment-pod.json'));
    assert.equal(res.status, 200);
  } finally {
    await webhook.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an admission still in flight after 20 s (a slower webhook after ours) keeps its slot from reclaim under the default grace: the API server bounds an admission by its 60 s request timeout', async () => {
  // A stand-in API server that has no pods yet: the first pod's admission has not finished.
  const apiServer = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items: [] }));
  });
  apiServer.listen(0, '127.0.0.1');
  await once(apiServer, 'listening');
  const tokenDir = mkdtempSync(join(tmpdir(), 'seahorse-attack-'));
  writeFileSync(join(tokenDir, 'token'), 'token\n');
  const env = await webhookWithRedis([
    `--kube-api-server=http://127.0.0.1:${(apiServer.address() as { port: number }).port}`,
    `--kube-token-file=${join(tokenDir, 'token')}`,
  ]);
  const workload = 'shop/Deployment/checkout';
  const key = `seahorse:metrics-proxy-hook:slots:${workload}`;
  const review = (uid: string) => {
    const one = fixture('review-deployment-pod.json');
    one.request.uid = uid;
    (one.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] = '1';
    return one;
  };
  try {
    const first = '00000000-0000-4000-8000-0000000000a1';
    assert.equal(
      JSON.parse((await postReview(env.webhook.url, env.ca, review(first))).body).response.allowed,
      true,
    );
    // Twenty seconds later by the nodes' clocks: the admission lease (5m) has 4m40s left.
    for (const server of env.servers) {
      const [seconds, micros] = (await server.command('TIME')) as string[];
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      await server.command('ZADD', key, String(now + 300_000 - 20_000), first);
    }
    const second = JSON.parse(
      (await postReview(env.webhook.url, env.ca, review('00000000-0000-4000-8000-0000000000a2'))).body,
    ).response;
    assert.equal(
      second.allowed,
      false,
      'the in-flight admission’s slot was reclaimed: two pods for a limit of 1',
    );
    assert.equal(second.status.code, 403);
  } finally {
    await env.close();
    apiServer.close();
    rmSync(tokenDir, { recursive: true, force: true });
  }
});

test('held up: the same AdmissionReview sent twelve times at once across two webhook replicas is allowed every time and takes one slot', async () => {
  const servers = await Promise.all([startRedis(), startRedis(), startRedis()]);
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-attack-'));
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  const ca = readFileSync(join(dir, 'ca.crt'));
  const args = servers.map((server) => `--redis=${server.host}:${server.port}`);
  const replicas = await Promise.all([
    startWebhookProcess(join(dir, 'certs'), args),
    startWebhookProcess(join(dir, 'certs'), args),
  ]);
  try {
    const review = fixture('review-deployment-pod.json');
    (review.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] =
      '1';
    const answers = await Promise.all(
      Array.from(
        { length: 12 },
        async (_, i) => JSON.parse((await postReview(replicas[i % 2]!.url, ca, review)).body).response,
      ),
    );
    assert.deepEqual(
      answers.map((answer) => answer.allowed),
      Array(12).fill(true),
      JSON.stringify(answers.filter((answer) => !answer.allowed)),
    );
    // One slot, written to a majority (a node where a contender held the lock refused the write).
    let copies = 0;
    for (const server of servers) {
      const members = (await server.command(
        'ZRANGE',
        'seahorse:metrics-proxy-hook:slots:shop/Deployment/checkout',
        '0',
        '-1',
      )) as string[];
      assert.ok(
        members.every((member) => member === review.request.uid),
        String(members),
      );
      if (members.length === 1) copies++;
    }
    assert.ok(copies >= 2, `the slot is on ${copies} of 3 nodes`);
  } finally {
    await Promise.all(replicas.map((replica) => replica.process.stop()));
    await Promise.all(servers.map((server) => server.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('held up: JSON nested half a million deep, duplicated keys and a byte-order mark are answered quickly with the right status', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-attack-'));
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  const ca = readFileSync(join(dir, 'ca.crt'));
  const webhook = await startTestWebhook(join(dir, 'certs'));
  const head =
    '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"d","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":';
  const good = JSON.stringify(fixture('review-deployment-pod.json'));
  const cases: Array<[string, string, number]> = [
    ['deep arrays', `${head}${'['.repeat(500_000)}${']'.repeat(500_000)}}}`, 400],
    [
      'deep objects in an annotation',
      `${head}{"metadata":{"annotations":{"x":${'{"a":'.repeat(300_000)}1${'}'.repeat(300_000)}}}}}}`,
      200,
    ],
    [
      'a duplicated uid (the last one wins, and is answered)',
      good.replace('"uid":', '"uid":"first","uid":'),
      200,
    ],
    ['a byte-order mark', `\ufeff${good}`, 400],
  ];
  try {
    for (const [what, body, status] of cases) {
      const started = performance.now();
      const res = await postReview(webhook.url, ca, body);
      assert.equal(res.status, status, `${what}: ${res.body.slice(0, 200)}`);
      assert.ok(
        performance.now() - started < 2000,
        `${what} took ${Math.round(performance.now() - started)} ms`,
      );
    }
  } finally {
    await webhook.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a final body too big to keep, then the application gone: the next scrape finds nothing to serve and ends the wait instead of the grace period', async () => {
  const app = await startMetricsApp();
  const appPort = app.port;
  // Bodies over --max-cached-body are streamed but never kept.
  const sidecar = await startSidecarProcess(appPort, [
    '--scrape-wait-threshold=0s',
    '--termination-grace-period=20s',
    '--lameduck=100ms',
    '--max-cached-body=16',
  ]);
  try {
    assert.equal((await fetch(sidecar.url)).status, 200);
    sidecar.process.signal('SIGTERM');
    await waitFor('the final fetch', () => sidecar.process.output.includes('final metrics fetched'));
    app.process.signal('SIGTERM');
    await app.process.exited;
    const started = performance.now();
    const last = await fetch(sidecar.url);
    assert.equal(last.status, 503, 'nothing kept, nothing live');
    assert.equal(await sidecar.process.exited, 0, sidecar.process.output);
    const waited = performance.now() - started;
    assert.ok(waited < 2000, `exited ${Math.round(waited)} ms after a scrape it could not serve (grace 20s)`);
  } finally {
    await sidecar.process.stop();
    await app.process.stop();
  }
});

test('with one of three Redis nodes hung (SIGSTOP), ten concurrent limited admissions on two replicas are decided (granted or full), not refused as busy', async () => {
  const servers = await Promise.all([startRedis(), startRedis(), startRedis()]);
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-attack-'));
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  const ca = readFileSync(join(dir, 'ca.crt'));
  const args = servers.map((server) => `--redis=${server.host}:${server.port}`);
  const replicas = await Promise.all([
    startWebhookProcess(join(dir, 'certs'), args),
    startWebhookProcess(join(dir, 'certs'), args),
  ]);
  servers[2]!.process.pause();
  try {
    const answers = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const review = fixture('review-deployment-pod.json');
        review.request.uid = `00000000-0000-4000-8000-0000000000${String(10 + i)}`;
        (review.request.object as Pod).metadata!.annotations![
          'prometheus-metrics-proxy-hook/max-concurrent'
        ] = '3';
        return JSON.parse((await postReview(replicas[i % 2]!.url, ca, review)).body).response;
      }),
    );
    const allowed = answers.filter((answer) => answer.allowed).length;
    const busy = answers.filter((answer) => answer.status?.code === 503);
    assert.ok(allowed <= 3, `${allowed} allowed for a limit of 3`);
    // Measured before the default went from 5 to 12 lock retries: 4 or 5 of 10 were 503.
    assert.ok(busy.length <= 1, `${busy.length} of 10 refused as busy: ${busy[0]?.status.message}`);
  } finally {
    servers[2]!.process.resume();
    await Promise.all(replicas.map((replica) => replica.process.stop()));
    await Promise.all(servers.map((server) => server.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a limited pod's spec carries no Redis address or credential, and its lease token cannot touch another pod's slot", async () => {
  const adminPassword = 'admin-password-in-the-hook-namespace-only';
  const servers = await Promise.all([0, 1, 2].map(() => startRedis()));
  for (const server of servers) await server.command('CONFIG', 'SET', 'requirepass', adminPassword);
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-attack-'));
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  writeFileSync(join(dir, 'redis-password'), `${adminPassword}\n`);
  const webhook = await startTestWebhook(join(dir, 'certs'), [
    ...servers.map((server) => `--redis=${server.host}:${server.port}`),
    `--redis-password-file=${join(dir, 'redis-password')}`,
    // Renewed every second: the first renewal comes soon after the sidecar starts.
    '--semaphore-lease-ttl=3s',
  ]);
  const ca = readFileSync(join(dir, 'ca.crt'));
  const admin = servers.map(
    (server) =>
      new Redis({ host: server.host, port: server.port, password: adminPassword, maxRetriesPerRequest: 0 }),
  );
  const app = await startMetricsApp();
  let sidecar: ManagedProcess | undefined;
  try {
    const admit = async (uid: string) => {
      const review = fixture('review-deployment-pod.json');
      review.request.uid = uid;
      (review.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] =
        '2';
      const { response } = JSON.parse((await postReview(webhook.url, ca, review)).body);
      assert.equal(response.allowed, true, response.status?.message);
      return applyPatch(
        structuredClone(review.request.object as Pod),
        JSON.parse(Buffer.from(response.patch, 'base64').toString()),
      );
    };
    const mine = await admit('00000000-0000-4000-8000-0000000000e1');
    const theirs = await admit('00000000-0000-4000-8000-0000000000e2');
    // Everything a reader of the pod spec (or code in the pod) sees: no Redis at all.
    const spec = JSON.stringify(mine);
    for (const leak of [
      adminPassword,
      ...servers.map((server) => String(server.port)),
      'secretKeyRef',
      'REDIS',
    ]) {
      assert.ok(!spec.includes(leak), `the pod spec holds ${leak}`);
    }
    const env = containerEnv(mine.spec!.containers.at(-1)!);
    const other = containerEnv(theirs.spec!.containers.at(-1)!);
    assert.equal(env.METRICS_PROXY_HOOK_LEASE_URL, webhook.leaseUrl);
    const workload = env.METRICS_PROXY_HOOK_SEMAPHORE_KEY!;
    const slotsKey = `seahorse:metrics-proxy-hook:slots:${workload}`;
    const versionsKey = `seahorse:metrics-proxy-hook:versions:${workload}`;
    const snapshot = async () =>
      Promise.all(
        admin.map(async (client) => ({
          slots: await client.zrange(slotsKey, '0', '-1', 'WITHSCORES'),
          versions: await client.hgetall(versionsKey),
          keys: (await client.keys('seahorse:*')).sort(),
        })),
      );
    sidecar = startCli(
      'sidecar',
      [
        'sidecar',
        `--target=http://127.0.0.1:${app.port}/metrics`,
        '--address=127.0.0.1:0',
        '--lameduck=0s',
        // Released at exit (as a native sidecar is), so the release goes through the webhook too.
        '--native-sidecar',
      ],
      env,
    );
    await waitFor('the first renewal', () => sidecar!.output.includes('semaphore slot lease renewed'));

    // My token against the other pod's slot: refused, whatever the action, and nothing moves.
    const before = await snapshot();
    const theirSlot = other.METRICS_PROXY_HOOK_SEMAPHORE_SLOT!;
    for (const body of [
      { action: 'renew', slot: theirSlot, version: other.METRICS_PROXY_HOOK_SEMAPHORE_VERSION },
      {
        action: 'hold',
        slot: theirSlot,
        version: other.METRICS_PROXY_HOOK_SEMAPHORE_VERSION,
        holdMs: 600_000,
      },
      { action: 'release', slot: theirSlot, version: other.METRICS_PROXY_HOOK_SEMAPHORE_VERSION },
    ]) {
      const res = await httpsCall(webhook.leaseUrl, {
        ca,
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${env.METRICS_PROXY_HOOK_LEASE_TOKEN}`,
        },
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 403, `${body.action}: ${res.body}`);
      assert.match(JSON.parse(res.body).message, /a token renews or releases only its own slot/);
    }
    const after = await snapshot();
    assert.deepEqual(
      after.map((node) => node.versions),
      before.map((node) => node.versions),
    );
    assert.deepEqual(
      after.map((node) => node.keys),
      before.map((node) => node.keys),
    );
    for (const client of admin) assert.ok((await client.zscore(slotsKey, theirSlot)) !== null);

    sidecar.signal('SIGTERM');
    app.process.signal('SIGTERM');
    assert.equal(await sidecar.exited, 0, sidecar.output);
    assert.ok(sidecar.output.includes('semaphore slot released'), sidecar.output);
    for (const client of admin) assert.deepEqual(await client.zrange(slotsKey, '0', '-1'), [theirSlot]);
  } finally {
    await sidecar?.stop();
    await app.process.stop();
    for (const client of admin) client.disconnect();
    await webhook.close();
    await Promise.all(servers.map((server) => server.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
});
