// Leaked slots come back on the API server's word, within one admission, instead of after
// their lease. The API server is a stand-in on loopback (a cluster we cannot run here) that
// answers the one call the webhook makes exactly as the real one does: GET
// /api/v1/namespaces/<ns>/pods?labelSelector=... with a bearer token, a v1 PodList or a Status.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type RedisServer, startRedis } from '@seahorse/runtime/testing';
import { applyPatch, type Pod } from '../src/index.ts';
import {
  containerEnv,
  fixture,
  httpsCall,
  installKubeletStyle,
  issueServingCertificate,
  makeCertificateAuthority,
  postReview,
  startTestWebhook,
} from './helpers.ts';

const token = 'service-account-token-of-the-webhook';
const workload = 'shop/Deployment/checkout';
const slotsKey = `seahorse:metrics-proxy-hook:slots:${workload}`;

interface FakeApiServer {
  url: string;
  server: Server;
  /** Pods of namespace shop, as the API server stores them. */
  pods: Array<{ name: string; slot: string; phase: string }>;
  requests: string[];
  rejectToken: boolean;
  /** Answer a continue token with 410 Expired, as after etcd compacted the list's revision. */
  expireContinue: boolean;
}

async function startFakeApiServer(): Promise<FakeApiServer> {
  const state: Omit<FakeApiServer, 'url' | 'server'> = {
    pods: [],
    requests: [],
    rejectToken: false,
    expireContinue: false,
  };
  const status = (code: number, reason: string, message: string) =>
    JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message,
      reason,
      code,
    });
  const server = createServer((req, res) => {
    state.requests.push(`${req.method} ${req.url} ${req.headers.authorization}`);
    const url = new URL(req.url ?? '/', 'http://apiserver');
    res.setHeader('content-type', 'application/json');
    if (state.rejectToken || req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401);
      res.end(status(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    const match = /^\/api\/v1\/namespaces\/([^/]+)\/pods$/.exec(url.pathname);
    if (req.method !== 'GET' || !match) {
      res.writeHead(404);
      res.end(status(404, 'NotFound', 'the server could not find the requested resource'));
      return;
    }
    const selector = url.searchParams.get('labelSelector');
    // limit/continue as the API server pages a list: the token says where the next page starts.
    const limit = Number(url.searchParams.get('limit') ?? '0');
    const continueToken = url.searchParams.get('continue');
    if (continueToken !== null && state.expireContinue) {
      res.writeHead(410);
      res.end(
        status(
          410,
          'Expired',
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
        ),
      );
      return;
    }
    const start = continueToken === null ? 0 : Number(Buffer.from(continueToken, 'base64').toString());
    const all =
      match[1] === 'shop' && selector === 'prometheus-metrics-proxy-hook/semaphore=true' ? state.pods : [];
    const end = limit > 0 ? Math.min(all.length, start + limit) : all.length;
    const items = all.slice(start, end).map((pod) => ({
      metadata: {
        name: pod.name,
        namespace: match[1],
        uid: `pod-uid-${pod.name}`,
        resourceVersion: '4711',
        labels: { 'app.kubernetes.io/name': 'checkout', 'prometheus-metrics-proxy-hook/semaphore': 'true' },
        annotations: { 'prometheus-metrics-proxy-hook/slot': pod.slot, 'prometheus.io/port': '65532' },
      },
      spec: { containers: [{ name: 'checkout', image: 'shop/checkout:1' }] },
      status: { phase: pod.phase },
    }));
    res.writeHead(200);
    res.end(
      JSON.stringify({
        kind: 'PodList',
        apiVersion: 'v1',
        metadata: {
          resourceVersion: '4712',
          ...(end < all.length ? { continue: Buffer.from(String(end)).toString('base64') } : {}),
        },
        items,
      }),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return Object.assign(state, {
    server,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
  }) as FakeApiServer;
}

let servers: RedisServer[];
let dir: string;
let ca: Buffer;
let apiServer: FakeApiServer;

before(async () => {
  servers = await Promise.all([startRedis(), startRedis(), startRedis()]);
  dir = mkdtempSync(join(tmpdir(), 'seahorse-reclaim-'));
  makeCertificateAuthority(dir);
  ca = readFileSync(join(dir, 'ca.crt'));
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  writeFileSync(join(dir, 'token'), `${token}\n`);
  apiServer = await startFakeApiServer();
});
after(async () => {
  apiServer.server.close();
  await Promise.all(servers.map((server) => server.stop()));
  rmSync(dir, { recursive: true, force: true });
});

function review(uid: string) {
  const next = fixture('review-deployment-pod.json');
  next.request.uid = uid;
  (next.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] = '1';
  return next;
}

async function startWebhook(grace: string) {
  for (const server of servers) await server.command('DEL', slotsKey);
  return startTestWebhook(join(dir, 'certs'), [
    ...servers.map((server) => `--redis=${server.host}:${server.port}`),
    `--kube-api-server=${apiServer.url}`,
    `--kube-token-file=${join(dir, 'token')}`,
    `--semaphore-reclaim-grace=${grace}`,
  ]);
}

const uid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

test('slots no running pod holds are reclaimed on the API server’s word at the next admission, not after their lease', async () => {
  const webhook = await startWebhook('0s');
  const admit = async (n: number) =>
    JSON.parse((await postReview(webhook.url, ca, review(uid(n)))).body).response;
  try {
    const first = await admit(1);
    assert.equal(first.allowed, true);
    // Pod 1 was never created (a later admission plugin refused it): the API server has no pod.
    const second = await admit(2);
    assert.equal(second.allowed, true, second.status?.message);
    for (const server of servers)
      assert.deepEqual(await server.command('ZRANGE', slotsKey, '0', '-1'), [uid(2)]);
    // The reclaimed slot is retired: pod 1's token (in a spec someone kept) cannot take it back.
    const env = containerEnv(
      applyPatch(
        structuredClone(review(uid(1)).request.object as Pod),
        JSON.parse(Buffer.from(first.patch, 'base64').toString()),
      ).spec!.containers.at(-1)!,
    );
    const replay = await httpsCall(webhook.leaseUrl, {
      ca,
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${env.METRICS_PROXY_HOOK_LEASE_TOKEN}`,
      },
      body: JSON.stringify({
        action: 'renew',
        slot: uid(1),
        version: env.METRICS_PROXY_HOOK_SEMAPHORE_VERSION,
      }),
    });
    assert.equal(replay.status, 404, replay.body);
    assert.equal(JSON.parse(replay.body).code, 'SLOT_RELEASED');
    for (const server of servers)
      assert.deepEqual(await server.command('ZRANGE', slotsKey, '0', '-1'), [uid(2)]);
    assert.match(await (await fetch(webhook.metricsUrl)).text(), /slots_reclaimed_total 1/);
    assert.ok(
      apiServer.requests.includes(
        `GET /api/v1/namespaces/shop/pods?labelSelector=prometheus-metrics-proxy-hook%2Fsemaphore%3Dtrue&limit=500 Bearer ${token}`,
      ),
      apiServer.requests.join('\n'),
    );

    // Pod 2 exists and runs: its slot is kept and the next pod is denied.
    apiServer.pods = [{ name: 'checkout-2', slot: `${workload}#${uid(2)}`, phase: 'Running' }];
    const third = await admit(3);
    assert.equal(third.allowed, false);
    assert.equal(third.status.code, 403);

    // Pod 2 finished (a Job's pod with a native sidecar): its slot is free.
    apiServer.pods = [{ name: 'checkout-2', slot: `${workload}#${uid(2)}`, phase: 'Succeeded' }];
    assert.equal((await admit(4)).allowed, true);

    // Without evidence (the API server refuses us) nothing is reclaimed: the limit holds.
    apiServer.pods = [];
    apiServer.rejectToken = true;
    const fifth = await admit(5);
    assert.equal(fifth.allowed, false);
    assert.equal(fifth.status.code, 403);
    for (const server of servers)
      assert.deepEqual(await server.command('ZRANGE', slotsKey, '0', '-1'), [uid(4)]);
  } finally {
    apiServer.rejectToken = false;
    await webhook.close();
  }
});

test('a slot younger than --semaphore-reclaim-grace is kept even without a pod: its admission may still be in flight', async () => {
  apiServer.pods = [];
  const webhook = await startWebhook('1m');
  try {
    assert.equal(JSON.parse((await postReview(webhook.url, ca, review(uid(6)))).body).response.allowed, true);
    const second = JSON.parse((await postReview(webhook.url, ca, review(uid(7)))).body).response;
    assert.equal(second.allowed, false);
    assert.equal(second.status.code, 403);
  } finally {
    await webhook.close();
  }
});

test('the pod list is read in pages (limit/continue): a slot held by a pod on the third page is kept, an expired continue token reclaims nothing', async () => {
  // 1,200 other pods of the namespace first, then the one that holds the slot.
  const others = Array.from({ length: 1200 }, (_, i) => ({
    name: `other-${i}`,
    slot: `shop/Deployment/other#${i}`,
    phase: 'Running',
  }));
  apiServer.pods = [];
  const webhook = await startWebhook('0s');
  try {
    const admit = async (n: number) =>
      JSON.parse((await postReview(webhook.url, ca, review(uid(n)))).body).response;
    assert.equal((await admit(8)).allowed, true);
    apiServer.pods = [...others, { name: 'checkout-8', slot: `${workload}#${uid(8)}`, phase: 'Running' }];
    apiServer.requests.length = 0;
    const denied = await admit(9);
    assert.equal(denied.allowed, false, 'the slot of the pod on the third page was reclaimed');
    assert.equal(denied.status.code, 403);
    const pages = apiServer.requests.filter((line) => line.includes('/namespaces/shop/pods'));
    assert.equal(pages.length, 3, pages.join('\n'));
    assert.ok(
      pages.every((line) => line.includes('&limit=500')),
      pages.join('\n'),
    );
    assert.ok(!pages[0]!.includes('continue='));
    assert.ok(pages[1]!.includes('continue=') && pages[2]!.includes('continue='));

    // The holder is gone, but the list's snapshot expired between pages: no evidence, no reclaim.
    apiServer.pods = others;
    apiServer.expireContinue = true;
    const stillDenied = await admit(10);
    assert.equal(stillDenied.allowed, false);
    for (const server of servers)
      assert.deepEqual(await server.command('ZRANGE', slotsKey, '0', '-1'), [uid(8)]);

    // A whole list without the holder: its slot is reclaimed.
    apiServer.expireContinue = false;
    assert.equal((await admit(11)).allowed, true);
    for (const server of servers)
      assert.deepEqual(await server.command('ZRANGE', slotsKey, '0', '-1'), [uid(11)]);
  } finally {
    apiServer.pods = [];
    apiServer.expireContinue = false;
    await webhook.close();
  }
});

test('the entry for namespaces not enabled for the semaphore (/mutate/semaphore-not-enabled) denies a limited pod and takes no slot', async () => {
  const webhook = await startWebhook('0s');
  try {
    const res = await postReview(`${webhook.url}/semaphore-not-enabled`, ca, review(uid(12)));
    assert.equal(res.status, 200);
    const { response } = JSON.parse(res.body);
    assert.equal(response.allowed, false);
    assert.equal(response.status.code, 403);
    assert.match(
      response.status.message,
      /namespace shop is not enabled for prometheus-metrics-proxy-hook\/max-concurrent/,
    );
    for (const server of servers) assert.deepEqual(await server.command('ZRANGE', slotsKey, '0', '-1'), []);
    assert.match(
      await (await fetch(webhook.metricsUrl)).text(),
      /denials_total\{reason="semaphore_not_enabled"\} 1/,
    );
  } finally {
    await webhook.close();
  }
});

test('holding a gone pod’s slot again and again (its token replayed) cannot keep it past the grace period of the first hold, so reclaim and new admissions get it', async () => {
  for (const server of servers) await server.command('DEL', slotsKey);
  apiServer.pods = [];
  // Reclaim spares slots with more than admission-ttl − reclaim-grace (2s) left; a hold of the
  // pod's 3s grace period is longer than that, so a held slot looks like a young one.
  const webhook = await startTestWebhook(join(dir, 'certs'), [
    ...servers.map((server) => `--redis=${server.host}:${server.port}`),
    `--kube-api-server=${apiServer.url}`,
    `--kube-token-file=${join(dir, 'token')}`,
    '--semaphore-reclaim-grace=0s',
    '--semaphore-admission-ttl=2s',
    '--semaphore-lease-ttl=1s',
    '--termination-grace-period=3s',
  ]);
  try {
    const first = review(uid(20));
    (first.request.object as Pod).spec!.terminationGracePeriodSeconds = 3;
    const { response } = JSON.parse((await postReview(webhook.url, ca, first)).body);
    assert.equal(response.allowed, true, response.status?.message);
    const env = containerEnv(
      applyPatch(
        structuredClone(first.request.object as Pod),
        JSON.parse(Buffer.from(response.patch, 'base64').toString()),
      ).spec!.containers.at(-1)!,
    );
    const hold = () =>
      httpsCall(webhook.leaseUrl, {
        ca,
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${env.METRICS_PROXY_HOOK_LEASE_TOKEN}`,
        },
        body: JSON.stringify({
          action: 'hold',
          slot: uid(20),
          version: env.METRICS_PROXY_HOOK_SEMAPHORE_VERSION,
          holdMs: 3000,
        }),
      });
    // The pod is gone (the API server lists none); its token keeps holding for 4.5 s.
    const started = performance.now();
    const firstHold = await hold();
    assert.equal(firstHold.status, 200, firstHold.body);
    let last = firstHold;
    while (performance.now() - started < 4500) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      last = await hold();
      if (performance.now() - started < 2500) assert.equal(last.status, 200, last.body);
    }
    assert.equal(last.status, 409, `a hold 4.5 s after a 3 s hold still held the slot: ${last.body}`);
    assert.equal(JSON.parse(last.body).state, 'gone');
    const next = JSON.parse((await postReview(webhook.url, ca, review(uid(21)))).body).response;
    assert.equal(next.allowed, true, next.status?.message);
    for (const server of servers)
      assert.deepEqual(await server.command('ZRANGE', slotsKey, '0', '-1'), [uid(21)]);
  } finally {
    await webhook.close();
  }
});
