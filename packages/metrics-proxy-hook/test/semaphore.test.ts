// The semaphore against three real, independent redis-server processes: majorities, nodes
// down, hung and empty, leases that expire and leases that are kept alive, and two webhook
// processes admitting the same workload at once.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { type RedisServer, startRedis, waitFor } from '@seahorse/runtime/testing';
import {
  type AcquireResult,
  applyPatch,
  LockUnavailableError,
  type PatchOperation,
  type Pod,
  RedisNodes,
  RedisSemaphore,
  Redlock,
  SemaphoreUnavailableError,
  SlotLease,
  SlotLeaseService,
} from '../src/index.ts';
import {
  fixture,
  installKubeletStyle,
  issueServingCertificate,
  makeCertificateAuthority,
  postReview,
  startCli,
  startTestWebhook,
  startWebhookProcess,
  testLogger,
} from './helpers.ts';

const lock = { ttlMs: 2000, retryCount: 20, retryDelayMs: 10, retryJitterMs: 20 };

async function startTrio(): Promise<RedisServer[]> {
  return Promise.all([startRedis(), startRedis(), startRedis()]);
}

async function stopAll(servers: RedisServer[]): Promise<void> {
  await Promise.all(servers.map((server) => server.stop()));
}

function connect(servers: RedisServer[], commandTimeoutMs = 250) {
  const { log, logs } = testLogger();
  const nodes = new RedisNodes(servers, { commandTimeoutMs, log });
  return { nodes, semaphore: new RedisSemaphore(nodes, { lock }), logs, log };
}

function mkdirIn(dir: string, name: string): string {
  mkdirSync(join(dir, name));
  return join(dir, name);
}

/** An acquire's result without its (random) fencing version. */
function counted(result: AcquireResult): Record<string, unknown> {
  const { version: _version, ...rest } = result as AcquireResult & { version?: string };
  return rest;
}

async function members(server: RedisServer, key: string): Promise<string[]> {
  return ((await server.command('ZRANGE', key, '0', '-1')) as string[]).sort();
}

describe('with three healthy nodes', () => {
  let servers: RedisServer[];
  let nodes: RedisNodes;
  let semaphore: RedisSemaphore;
  let log: ReturnType<typeof testLogger>['log'];
  before(async () => {
    servers = await startTrio();
    ({ nodes, semaphore, log } = connect(servers));
    assert.equal(await nodes.waitConnected(5000), 3);
  });
  after(async () => {
    nodes.close();
    await stopAll(servers);
  });

  test('grants up to the limit, denies the next with the count, and grants again after a release', async () => {
    const workload = 'shop/Deployment/limit';
    const ask = (slot: string) => semaphore.acquire({ workload, slot, limit: 2, leaseMs: 60_000 });
    assert.deepEqual(counted(await ask('a')), { granted: true, held: 1 });
    assert.deepEqual(counted(await ask('b')), { granted: true, held: 2 });
    assert.deepEqual(counted(await ask('c')), { granted: false, held: 2, limit: 2 });
    assert.deepEqual(
      counted(await ask('a')),
      { granted: true, held: 2 },
      'asking again for a held slot succeeds',
    );
    for (const server of servers)
      assert.deepEqual(await members(server, semaphore.slotsKey(workload)), ['a', 'b']);
    await semaphore.release(workload, 'a');
    assert.deepEqual(counted(await ask('c')), { granted: true, held: 2 });
    assert.deepEqual(counted(await ask('d')), { granted: false, held: 2, limit: 2 });
    assert.ok(
      ((await servers[0]!.command('PTTL', semaphore.slotsKey(workload))) as number) > 0,
      'the slot table expires with its last lease',
    );
  });

  test('a dry run reports room without taking a slot', async () => {
    const workload = 'shop/Deployment/dry';
    assert.deepEqual(
      await semaphore.acquire({ workload, slot: 'x', limit: 1, leaseMs: 60_000, dryRun: true }),
      { granted: true, held: 1, version: '' },
    );
    assert.equal((await semaphore.holders(workload)).size, 0);
  });

  test("a crashed pod's slot expires with its lease and frees room", async () => {
    const workload = 'shop/Deployment/crash';
    assert.equal(
      (await semaphore.acquire({ workload, slot: 'crashed', limit: 1, leaseMs: 300 })).granted,
      true,
    );
    assert.equal(
      (await semaphore.acquire({ workload, slot: 'next', limit: 1, leaseMs: 60_000 })).granted,
      false,
    );
    await waitFor('the lease to expire', async () => (await semaphore.holders(workload)).size === 0);
    assert.equal(
      (await semaphore.acquire({ workload, slot: 'next', limit: 1, leaseMs: 60_000 })).granted,
      true,
    );
  });

  test('a renewed lease outlives its TTL, a node that lost it is repaired, and stop() releases it', async () => {
    const workload = 'shop/Deployment/renew';
    const key = semaphore.slotsKey(workload);
    const granted = await semaphore.acquire({ workload, slot: 'kept', limit: 1, leaseMs: 600 });
    assert.ok(granted.granted);
    const grant = { workload, slot: 'kept', namespace: 'shop', pod: 'renew-', limit: 1, graceMs: 30_000 };
    const lease = new SlotLease(
      new SlotLeaseService(semaphore, { leaseMs: 600 }).backendFor(grant),
      { workload, slot: 'kept', leaseMs: 600, version: granted.version },
      log,
    );
    lease.start();
    try {
      const started = Date.now();
      await waitFor('renewals past the first TTL', () => lease.renewals >= 4 && Date.now() - started > 900);
      assert.deepEqual([...(await semaphore.holders(workload)).keys()], ['kept']);
      // A node restarted empty: the next renewal puts the slot back there.
      await servers[0]!.command('DEL', key);
      await waitFor('node 0 to get the slot back', async () =>
        (await members(servers[0]!, key)).includes('kept'),
      );
    } finally {
      await lease.stop();
    }
    for (const server of servers) assert.deepEqual(await members(server, key), []);
  });

  test('a lease found lost is taken again when there is room', async () => {
    const workload = 'shop/Deployment/lost';
    const grant = { workload, slot: 'late', namespace: 'shop', pod: 'lost-', limit: 1, graceMs: 30_000 };
    const lease = new SlotLease(
      new SlotLeaseService(semaphore, { leaseMs: 60_000 }).backendFor(grant),
      { workload, slot: 'late', leaseMs: 60_000, version: 'never-granted' },
      log,
    );
    lease.start();
    try {
      await waitFor('the slot to be taken again', () => lease.renewals >= 1);
      assert.deepEqual([...(await semaphore.holders(workload)).keys()], ['late']);
    } finally {
      await lease.stop();
    }
  });

  test('the Redlock lock is exclusive, and only its holder can release it', async () => {
    const redlock = new Redlock(nodes, { ttlMs: 5000, retryCount: 0, retryDelayMs: 10, retryJitterMs: 10 });
    const held = await redlock.acquire('test:lock');
    assert.ok(held.remainingMs() > 4800 && held.remainingMs() <= 5000 - 52, `validity ${held.remainingMs()}`);
    await assert.rejects(redlock.acquire('test:lock'), (error: Error) => {
      assert.ok(error instanceof LockUnavailableError);
      assert.match(error.message, /held by another admission \(0 of 3 nodes granted it, 2 needed\)/);
      return true;
    });
    await redlock.release({ resource: 'test:lock', token: 'not-the-holder', remainingMs: () => 0 });
    for (const server of servers) assert.equal(await server.command('GET', 'test:lock'), held.token);
    await redlock.release(held);
    for (const server of servers) assert.equal(await server.command('GET', 'test:lock'), null);
    await redlock.release(await redlock.acquire('test:lock'));
  });
});

test('over-grant: a renewal that lands on a minority only is lost and restores nothing; a minority copy is no grant', async () => {
  const servers = await startTrio();
  const { nodes, semaphore } = connect(servers, 150);
  try {
    assert.equal(await nodes.waitConnected(5000), 3);
    const workload = 'shop/Deployment/minority';
    const slots = semaphore.slotsKey(workload);
    const a = await semaphore.acquire({ workload, slot: 'a', limit: 1, leaseMs: 60_000 });
    assert.ok(a.granted);
    // Slot a is gone on two nodes (expired by their clocks, or a release that reached only
    // them) and survives on the third, which hangs while the next pod is admitted.
    await servers[0]!.command('ZREM', slots, 'a');
    await servers[1]!.command('ZREM', slots, 'a');
    servers[2]!.process.pause();
    let b: AcquireResult;
    try {
      b = await semaphore.acquire({ workload, slot: 'b', limit: 1, leaseMs: 60_000 });
    } finally {
      servers[2]!.process.resume();
    }
    assert.ok(b.granted, 'the majority that answered had room');
    await waitFor('node 2 to answer again', async () => (await nodes.waitConnected(100)) === 3);
    // Before: node 2's copy renewed a, and the "repair" put a back on nodes 0 and 1: two holders.
    assert.equal(await semaphore.renew(workload, 'a', a.version, 60_000), 'lost');
    assert.deepEqual(await members(servers[0]!, slots), ['b']);
    assert.deepEqual(await members(servers[1]!, slots), ['b']);
    // Before: node 2's copy of a made a's holder "find its own slot" and be granted again.
    assert.deepEqual(counted(await semaphore.acquire({ workload, slot: 'a', limit: 1, leaseMs: 60_000 })), {
      granted: false,
      held: 1,
      limit: 1,
    });
    assert.equal(await semaphore.renew(workload, 'b', b.version, 60_000), 'renewed');
  } finally {
    nodes.close();
    await stopAll(servers);
  }
});

test('fencing: renewals and releases name the grant’s version, so a stale one (retried, replayed, a failed writer cleaning up) changes nothing', async () => {
  const servers = await startTrio();
  const { nodes, semaphore } = connect(servers);
  try {
    assert.equal(await nodes.waitConnected(5000), 3);
    const workload = 'shop/Deployment/versions';
    const first = await semaphore.acquire({ workload, slot: 'p', limit: 1, leaseMs: 60_000 });
    assert.ok(first.granted);
    // The same admission retried finds its grant under the same version.
    const retried = await semaphore.acquire({ workload, slot: 'p', limit: 1, leaseMs: 60_000 });
    assert.ok(retried.granted);
    assert.equal(retried.version, first.version);
    // The slot is lost and taken again (a sidecar that found its lease gone): a new version.
    await semaphore.release(workload, 'p', first.version);
    const again = await semaphore.acquire({ workload, slot: 'p', limit: 1, leaseMs: 60_000 });
    assert.ok(again.granted);
    assert.notEqual(again.version, first.version);
    // A stale renewal and a replayed release of the first grant touch nothing.
    assert.equal(await semaphore.renew(workload, 'p', first.version, 60_000), 'lost');
    await semaphore.release(workload, 'p', first.version);
    assert.deepEqual([...(await semaphore.holders(workload)).keys()], ['p']);
    assert.equal(await semaphore.renew(workload, 'p', again.version, 60_000), 'renewed');
    assert.deepEqual(counted(await semaphore.acquire({ workload, slot: 'q', limit: 1, leaseMs: 60_000 })), {
      granted: false,
      held: 1,
      limit: 1,
    });
  } finally {
    nodes.close();
    await stopAll(servers);
  }
});

test('never more than N: contenders with retried acquires, renewals and releases, while nodes hang and restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-overgrant-'));
  const servers = await Promise.all([0, 1, 2].map((i) => persistentNode(mkdirIn(dir, `n${i}`))));
  const { nodes, semaphore } = connect(servers, 150);
  const limit = 2;
  const workload = 'shop/Deployment/stress';
  const holding = new Set<string>();
  let most = 0;
  let grants = 0;
  let stop = false;
  try {
    assert.equal(await nodes.waitConnected(5000), 3);
    const contender = async (id: number) => {
      for (let round = 0; !stop; round++) {
        const slot = `c${id}-${round}`;
        // The API server may send the same review twice at once: both must be one grant.
        const tries = await Promise.allSettled([
          semaphore.acquire({ workload, slot, limit, leaseMs: 30_000 }),
          semaphore.acquire({ workload, slot, limit, leaseMs: 30_000 }),
        ]);
        const won = tries.find(
          (t): t is PromiseFulfilledResult<AcquireResult & { granted: true }> =>
            t.status === 'fulfilled' && t.value.granted,
        );
        if (!won) {
          await new Promise((resolve) => setTimeout(resolve, 5));
          continue;
        }
        grants++;
        holding.add(slot);
        most = Math.max(most, holding.size);
        assert.ok(holding.size <= limit, `${holding.size} hold slots: ${[...holding].join(', ')}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
        try {
          if ((await semaphore.renew(workload, slot, won.value.version, 30_000)) === 'lost')
            holding.delete(slot);
        } catch {
          // A renewal that cannot be decided keeps the slot leased, and this holder holds it.
        }
        // Released before the holder stops counting itself: a release that fails keeps it held.
        for (;;) {
          try {
            await semaphore.release(workload, slot, won.value.version);
            break;
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        }
        holding.delete(slot);
      }
    };
    const running = [0, 1, 2, 3, 4].map((id) => contender(id));
    // Disturbances: one node hangs, then another restarts from its AOF, then a third hangs.
    for (const [i, action] of [
      [0, 'pause'],
      [1, 'restart'],
      [2, 'pause'],
      [0, 'restart'],
    ] as const) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const server = servers[i]!;
      if (action === 'pause') {
        server.process.pause();
        await new Promise((resolve) => setTimeout(resolve, 400));
        server.process.resume();
      } else {
        await server.stop();
        servers[i] = await persistentNode(join(dir, `n${i}`), server.port);
      }
      await nodes.waitConnected(3000);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    stop = true;
    await Promise.all(running);
    assert.ok(grants >= 10, `only ${grants} grants: the test exercised too little`);
    assert.equal(most <= limit, true);
  } finally {
    stop = true;
    for (const server of servers) server.process.resume();
    nodes.close();
    await stopAll(servers);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('with one node down, a majority still grants, counts and releases', async () => {
  const servers = await startTrio();
  const { nodes, semaphore } = connect(servers);
  try {
    assert.equal(await nodes.waitConnected(5000), 3);
    const workload = 'shop/Deployment/minority-down';
    const ask = (slot: string) => semaphore.acquire({ workload, slot, limit: 2, leaseMs: 60_000 });
    await servers[2]!.stop();
    assert.deepEqual(counted(await ask('a')), { granted: true, held: 1 });
    assert.deepEqual(counted(await ask('b')), { granted: true, held: 2 });
    assert.deepEqual(counted(await ask('c')), { granted: false, held: 2, limit: 2 });
    for (const server of servers.slice(0, 2)) {
      assert.deepEqual(await members(server, semaphore.slotsKey(workload)), ['a', 'b']);
    }
    await semaphore.release(workload, 'a');
    assert.deepEqual(counted(await ask('c')), { granted: true, held: 2 });
  } finally {
    nodes.close();
    await stopAll(servers);
  }
});

test('a hung node (SIGSTOP) counts as down after --redis-timeout, and the majority decides', async () => {
  const servers = await startTrio();
  const { nodes, semaphore } = connect(servers, 200);
  try {
    assert.equal(await nodes.waitConnected(5000), 3);
    const workload = 'shop/Deployment/hung';
    servers[0]!.process.pause();
    const started = Date.now();
    assert.deepEqual(counted(await semaphore.acquire({ workload, slot: 'a', limit: 1, leaseMs: 60_000 })), {
      granted: true,
      held: 1,
    });
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    assert.deepEqual(counted(await semaphore.acquire({ workload, slot: 'b', limit: 1, leaseMs: 60_000 })), {
      granted: false,
      held: 1,
      limit: 1,
    });
    servers[0]!.process.resume();
    // Whatever the woken node made of the commands queued while it hung, the new majority
    // {0, 2} still counts slot a.
    await servers[1]!.stop();
    assert.deepEqual(counted(await semaphore.acquire({ workload, slot: 'b', limit: 1, leaseMs: 60_000 })), {
      granted: false,
      held: 1,
      limit: 1,
    });
  } finally {
    nodes.close();
    await stopAll(servers);
  }
});

test('with two nodes down the semaphore refuses to decide', async () => {
  const servers = await startTrio();
  const { log } = testLogger();
  const nodes = new RedisNodes(servers, { commandTimeoutMs: 200, log });
  const semaphore = new RedisSemaphore(nodes, { lock: { ...lock, retryCount: 2 } });
  try {
    assert.equal(await nodes.waitConnected(5000), 3);
    await servers[1]!.stop();
    await servers[2]!.stop();
    await assert.rejects(
      semaphore.acquire({ workload: 'shop/Deployment/majority-down', slot: 'a', limit: 5, leaseMs: 60_000 }),
      (error: Error) => {
        assert.ok(error instanceof SemaphoreUnavailableError);
        assert.match(error.message, /only 1 of 3 Redis nodes answered \(a majority of 2 is needed\)/);
        return true;
      },
    );
    await assert.rejects(
      semaphore.renew('shop/Deployment/majority-down', 'a', 'v', 1000),
      SemaphoreUnavailableError,
    );
  } finally {
    nodes.close();
    await stopAll(servers);
  }
});

describe('with two of three nodes down', () => {
  let servers: RedisServer[];
  let dir: string;
  before(async () => {
    servers = await startTrio();
    dir = mkdtempSync(join(tmpdir(), 'seahorse-semaphore-'));
    makeCertificateAuthority(dir);
    installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  });
  after(async () => {
    await stopAll(servers);
    rmSync(dir, { recursive: true, force: true });
  });

  test('the semaphore fails closed: limited pods are denied with a clear reason, others still admitted', async () => {
    const webhook = await startTestWebhook(join(dir, 'certs'), [
      ...servers.flatMap((server) => ['--redis', `${server.host}:${server.port}`]),
      '--semaphore-lock-retries=2',
      '--redis-timeout=200ms',
    ]);
    const ca = readFileSync(join(dir, 'ca.crt'));
    try {
      await servers[1]!.stop();
      await servers[2]!.stop();
      const review = fixture('review-deployment-pod.json');
      (review.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] =
        '3';
      const answer = JSON.parse((await postReview(webhook.url, ca, review)).body).response;
      assert.equal(answer.allowed, false);
      assert.equal(answer.status.code, 503);
      assert.match(
        answer.status.message,
        /^shop\/Deployment\/checkout allows at most 3 pods at once .*only 1 of 3 Redis nodes answered \(a majority of 2 is needed\).* The pod is denied so the limit cannot be exceeded/,
      );
      const unlimited = JSON.parse(
        (await postReview(webhook.url, ca, fixture('review-deployment-pod.json'))).body,
      );
      assert.equal(unlimited.response.allowed, true, 'pods without a limit do not need Redis');
      const metrics = await (await fetch(webhook.metricsUrl)).text();
      assert.match(metrics, /denials_total\{reason="semaphore_unavailable"\} 1/);
    } finally {
      await webhook.close();
    }
  });
});

describe('two webhook processes admitting one workload at once', () => {
  let servers: RedisServer[];
  let dir: string;
  let ca: Buffer;
  let webhooks: Array<Awaited<ReturnType<typeof startWebhookProcess>>>;
  const limit = 3;
  const workload = 'shop/Deployment/checkout';
  let admitted: PatchOperation[][] = [];

  before(async () => {
    servers = await startTrio();
    dir = mkdtempSync(join(tmpdir(), 'seahorse-semaphore-'));
    makeCertificateAuthority(dir);
    ca = readFileSync(join(dir, 'ca.crt'));
    installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
    const args = [
      ...servers.map((server) => `--redis=${server.host}:${server.port}`),
      '--semaphore-lock-retries=100',
      '--semaphore-lock-retry-delay=5ms',
      '--semaphore-lease-ttl=1s',
    ];
    webhooks = await Promise.all([
      startWebhookProcess(join(dir, 'certs'), args),
      startWebhookProcess(join(dir, 'certs'), args),
    ]);
  });
  after(async () => {
    await Promise.all((webhooks ?? []).map((webhook) => webhook.process.stop()));
    await stopAll(servers);
    rmSync(dir, { recursive: true, force: true });
  });

  test(`never admit more than max-concurrent pods of the workload`, async () => {
    const reviews = Array.from({ length: 12 }, (_, i) => {
      const review = fixture('review-deployment-pod.json');
      review.request.uid = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
      (review.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] =
        String(limit);
      return review;
    });
    const answers = await Promise.all(
      reviews.map(async (review, i) => {
        const res = await postReview(webhooks[i % 2]!.url, ca, review);
        assert.equal(res.status, 200, res.body);
        return JSON.parse(res.body).response;
      }),
    );
    const allowed = answers.filter((answer) => answer.allowed);
    assert.equal(allowed.length, limit, JSON.stringify(answers.filter((answer) => !answer.allowed)));
    for (const denied of answers.filter((answer) => !answer.allowed)) {
      assert.equal(denied.status.code, 403);
      assert.match(
        denied.status.message,
        new RegExp(`${workload} already runs ${limit} of at most ${limit} pods`),
      );
    }
    admitted = allowed.map((answer) => JSON.parse(Buffer.from(answer.patch, 'base64').toString()));
    // Each granted slot is on a majority of the nodes (a node where a contender held the lock at
    // that moment refused the write: fencing), and there are exactly `limit` of them.
    const copies = new Map<string, number>();
    for (const server of servers) {
      for (const slot of await members(server, `seahorse:metrics-proxy-hook:slots:${workload}`)) {
        copies.set(slot, (copies.get(slot) ?? 0) + 1);
      }
    }
    assert.equal(copies.size, limit);
    for (const [slot, count] of copies) assert.ok(count >= 2, `${slot} is on ${count} nodes`);
  });

  test("an admitted pod's sidecar takes over its slot's lease and gives the slot back on SIGTERM", async () => {
    assert.ok(admitted.length > 0, 'needs the admissions of the previous test');
    const pod = applyPatch(fixture('review-deployment-pod.json').request.object as Pod, admitted[0]!);
    const sidecar = pod.spec!.containers.at(-1)!;
    const env = Object.fromEntries(sidecar.env!.map(({ name, value }) => [name, value!]));
    const slot = env.METRICS_PROXY_HOOK_SEMAPHORE_SLOT!;
    assert.equal(pod.metadata!.annotations!['prometheus-metrics-proxy-hook/slot'], `${workload}#${slot}`);
    const key = `seahorse:metrics-proxy-hook:slots:${workload}`;
    // The longest lease any node has for the slot (a node may have missed the grant).
    const leaseLeft = async () => {
      let longest = Number.NEGATIVE_INFINITY;
      for (const server of servers) {
        const now = Number(((await server.command('TIME')) as string[])[0]) * 1000;
        const score = await server.command('ZSCORE', key, slot);
        if (score !== null) longest = Math.max(longest, Number(score) - now);
      }
      return longest;
    };
    assert.ok((await leaseLeft()) > 60_000, 'the admission lease covers scheduling and image pulls');

    // As the kubelet would start it: the injected args and env, with a short grace period.
    const process = startCli(
      'sidecar',
      [
        ...sidecar.args!.filter((arg) => !arg.startsWith('--address') && !arg.startsWith('--termination')),
        '--address=127.0.0.1:0',
        '--termination-grace-period=600ms',
        '--lameduck=0s',
        // Stopped after the application, as a native sidecar is: it releases at once.
        '--native-sidecar',
      ],
      env,
    );
    try {
      await waitFor('the sidecar to renew with its own lease', async () => (await leaseLeft()) <= 2000, {
        timeoutMs: 10_000,
      });
      await waitFor('a second renewal', () => process.output.includes('semaphore slot lease renewed'));
      process.signal('SIGTERM');
      assert.equal(await process.exited, 0, process.output);
      assert.ok(process.output.includes('semaphore slot released'));
      const left = new Set<string>();
      for (const server of servers) {
        const members = (await server.command('ZRANGE', key, '0', '-1')) as string[];
        assert.ok(!members.includes(slot));
        for (const member of members) left.add(member);
      }
      assert.equal(left.size, limit - 1);
    } finally {
      await process.stop();
    }
  });
});

test('nodes that require a password grant with it and refuse without it (the semaphore then fails closed)', async () => {
  const password = 'a-long-random-password-from-a-secret';
  const servers = await startTrio();
  // Set after start: the test helper's readiness PING does not authenticate.
  for (const server of servers)
    assert.equal(await server.command('CONFIG', 'SET', 'requirepass', password), 'OK');
  const { log, logs } = testLogger();
  const withPassword = new RedisNodes(servers, { commandTimeoutMs: 250, log, password });
  const without = new RedisNodes(servers, { commandTimeoutMs: 250, log });
  try {
    assert.equal(await withPassword.waitConnected(5000), 3);
    const granted = await new RedisSemaphore(withPassword, { lock }).acquire({
      workload: 'shop/Deployment/auth',
      slot: 'a',
      limit: 1,
      leaseMs: 60_000,
    });
    assert.equal(granted.granted, true);
    await assert.rejects(
      new RedisSemaphore(without, { lock: { ...lock, retryCount: 0 } }).acquire({
        workload: 'shop/Deployment/auth',
        slot: 'b',
        limit: 5,
        leaseMs: 60_000,
      }),
      SemaphoreUnavailableError,
    );
    assert.ok(!logs.text.includes(password), 'the password is never logged');
  } finally {
    withPassword.close();
    without.close();
    await stopAll(servers);
  }
});

test('the same AdmissionReview answered three times (API server retries) takes one slot: allowed each time', async () => {
  const servers = await startTrio();
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-semaphore-'));
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  const webhook = await startTestWebhook(
    join(dir, 'certs'),
    servers.map((server) => `--redis=${server.host}:${server.port}`),
  );
  const ca = readFileSync(join(dir, 'ca.crt'));
  const workload = 'shop/Deployment/checkout';
  const review = fixture('review-deployment-pod.json');
  (review.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] = '1';
  try {
    const slots: string[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const answer = JSON.parse((await postReview(webhook.url, ca, review)).body).response;
      assert.equal(answer.allowed, true, `attempt ${attempt + 1}: ${answer.status?.message}`);
      const pod = applyPatch(
        structuredClone(review.request.object as Pod),
        JSON.parse(Buffer.from(answer.patch, 'base64').toString()),
      );
      slots.push(pod.metadata!.annotations!['prometheus-metrics-proxy-hook/slot']!);
    }
    assert.deepEqual(
      slots,
      Array(3).fill(`${workload}#${review.request.uid}`),
      'the slot id is the request uid',
    );
    for (const server of servers) {
      assert.deepEqual(await members(server, `seahorse:metrics-proxy-hook:slots:${workload}`), [
        review.request.uid,
      ]);
    }
    const other = structuredClone(review);
    other.request.uid = '11111111-2222-4333-8444-555555555555';
    const denied = JSON.parse((await postReview(webhook.url, ca, other)).body).response;
    assert.equal(denied.allowed, false);
    assert.equal(denied.status.code, 403);
  } finally {
    await webhook.close();
    await stopAll(servers);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fencing: a writer paused past its lock after the check cannot add a slot once another writer took the lock', async () => {
  const servers = await startTrio();
  const { log } = testLogger();
  const workload = 'shop/Deployment/fenced';
  const lockTtl = { ...lock, ttlMs: 600, retryCount: 200, retryDelayMs: 20, retryJitterMs: 10 };
  let bGranted: (() => void) | undefined;
  const bHasGranted = new Promise<void>((resolve) => {
    bGranted = resolve;
  });
  const nodesA = new RedisNodes(servers, { commandTimeoutMs: 250, log });
  const nodesB = new RedisNodes(servers, { commandTimeoutMs: 250, log });
  // Replica A passes the validity check, then freezes until replica B has taken the expired
  // lock and granted the last slot (a 3.2 s GC pause in the issue's reproduction).
  const a = new RedisSemaphore(nodesA, { lock: lockTtl, beforeWrite: () => bHasGranted });
  const b = new RedisSemaphore(nodesB, { lock: lockTtl });
  try {
    assert.equal(await nodesA.waitConnected(5000), 3);
    assert.equal(await nodesB.waitConnected(5000), 3);
    const first = a.acquire({ workload, slot: 'a', limit: 1, leaseMs: 60_000 });
    const second = b.acquire({ workload, slot: 'b', limit: 1, leaseMs: 60_000 });
    assert.deepEqual(counted(await second), { granted: true, held: 1 });
    bGranted!();
    await assert.rejects(first, (error: Error) => {
      assert.ok(error instanceof SemaphoreUnavailableError);
      assert.match(
        error.message,
        /was lost before the slot was written \(3 of 3 Redis nodes refused the stale lock token\)/,
      );
      return true;
    });
    for (const server of servers) {
      assert.deepEqual(await members(server, `seahorse:metrics-proxy-hook:slots:${workload}`), ['b']);
    }
  } finally {
    nodesA.close();
    nodesB.close();
    await stopAll(servers);
  }
});

test('a lock with less validity left than the Redis timeout plus drift is not written under', async () => {
  const servers = await startTrio();
  const { log } = testLogger();
  const nodes = new RedisNodes(servers, { commandTimeoutMs: 250, log });
  // 200 ms of lock can never cover a 250 ms command timeout.
  const semaphore = new RedisSemaphore(nodes, { lock: { ...lock, ttlMs: 200 } });
  try {
    assert.equal(await nodes.waitConnected(5000), 3);
    await assert.rejects(
      semaphore.acquire({ workload: 'shop/Deployment/short-lock', slot: 'a', limit: 1, leaseMs: 60_000 }),
      /too little of the lock on shop\/Deployment\/short-lock is left to write the slot safely \(\d+ ms, 254 ms needed/,
    );
    for (const server of servers) {
      assert.deepEqual(
        await members(server, 'seahorse:metrics-proxy-hook:slots:shop/Deployment/short-lock'),
        [],
      );
    }
  } finally {
    nodes.close();
    await stopAll(servers);
  }
});

/** A node as the dev overlay runs it: AOF, fsync before every acknowledged write, in `dir`. */
function persistentNode(dir: string, port?: number): Promise<RedisServer> {
  return startRedis({
    ...(port === undefined ? {} : { port }),
    args: ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir],
  });
}

describe('nodes that persist what they acknowledge (AOF, appendfsync always)', () => {
  const workload = 'shop/Deployment/persisted';
  const key = `seahorse:metrics-proxy-hook:slots:${workload}`;
  let dirs: string[] = [];
  let servers: RedisServer[] = [];
  let nodes: RedisNodes | undefined;

  before(() => {
    dirs = [0, 1, 2].map(() => mkdtempSync(join(tmpdir(), 'seahorse-aof-')));
  });
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    nodes?.close();
    await stopAll(servers);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    dirs = [0, 1, 2].map(() => mkdtempSync(join(tmpdir(), 'seahorse-aof-')));
  });

  /** SIGKILL (no shutdown save) and start again on the same port, from `dir` or empty. */
  async function restart(index: number, keep: boolean): Promise<void> {
    const old = servers[index]!;
    await old.stop();
    const dir = keep ? dirs[index]! : mkdtempSync(join(tmpdir(), 'seahorse-aof-empty-'));
    if (!keep) dirs.push(dir);
    servers[index] = await persistentNode(dir, old.port);
  }

  async function connected(): Promise<RedisNodes> {
    const { log } = testLogger();
    nodes = new RedisNodes(servers, { commandTimeoutMs: 250, log });
    assert.equal(await nodes.waitConnected(5000), 3);
    return nodes;
  }

  test('a rolling restart, one node at a time, never loses a granted slot: no second pod is admitted', async () => {
    servers = await Promise.all(dirs.map((dir) => persistentNode(dir)));
    const semaphore = new RedisSemaphore(await connected(), { lock });
    assert.equal(
      (await semaphore.acquire({ workload, slot: 'first', limit: 1, leaseMs: 300_000 })).granted,
      true,
    );
    for (const index of [0, 1, 2]) {
      await restart(index, true);
      await waitFor(`node ${index} back`, async () => (await nodes!.waitConnected(100)) === 3);
      const second = await semaphore.acquire({
        workload,
        slot: `second-${index}`,
        limit: 1,
        leaseMs: 300_000,
      });
      assert.deepEqual(second, { granted: false, held: 1, limit: 1 }, `after restarting node ${index}`);
    }
    for (const server of servers) assert.deepEqual(await members(server, key), ['first']);
  });

  /**
   * A grant written while node 2 is down (so on nodes 0 and 1 only); node 2 comes back empty,
   * node 1 restarts (from its AOF when `persist`), node 0 hangs: what a second acquire gets.
   */
  async function secondAfterPartialWrite(persist: boolean) {
    servers = await Promise.all(dirs.map((dir) => persistentNode(dir)));
    const semaphore = new RedisSemaphore(await connected(), { lock: { ...lock, retryCount: 3 } });
    const third = servers[2]!;
    await third.stop();
    assert.equal(
      (await semaphore.acquire({ workload, slot: 'first', limit: 1, leaseMs: 300_000 })).granted,
      true,
    );
    servers[2] = await persistentNode(mkdtempSync(join(tmpdir(), 'seahorse-aof-empty-')), third.port);
    await restart(1, persist);
    servers[0]!.process.pause();
    try {
      await waitFor('nodes 1 and 2 back', async () => (await nodes!.waitConnected(100)) >= 2);
      return await semaphore.acquire({ workload, slot: 'second', limit: 1, leaseMs: 300_000 });
    } finally {
      servers[0]!.process.resume();
    }
  }

  test('a write on two nodes survives one of them restarting while the third hangs: persisted, the slot still counts', async () => {
    assert.deepEqual(await secondAfterPartialWrite(true), { granted: false, held: 1, limit: 1 });
  });

  test('the same sequence with a node restarted empty (nothing persisted) admits a second pod: why the manifests persist', async () => {
    const second = await secondAfterPartialWrite(false);
    assert.equal(second.granted, true, 'the majority that answers has never seen the first slot');
  });
});

test('a sidecar frozen past its lease (SIGSTOP) reports the overrun when it resumes: a log line and the webhook metric', async () => {
  const servers = await startTrio();
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-semaphore-'));
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  const webhook = await startTestWebhook(join(dir, 'certs'), [
    ...servers.map((server) => `--redis=${server.host}:${server.port}`),
    '--semaphore-lease-ttl=1s',
  ]);
  const ca = readFileSync(join(dir, 'ca.crt'));
  const workload = 'shop/Deployment/checkout';
  const key = `seahorse:metrics-proxy-hook:slots:${workload}`;
  const limitedReview = (uid: string) => {
    const review = fixture('review-deployment-pod.json');
    review.request.uid = uid;
    (review.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] =
      '1';
    return review;
  };
  const first = limitedReview('00000000-0000-4000-8000-0000000000f1');
  const answer = JSON.parse((await postReview(webhook.url, ca, first)).body).response;
  assert.equal(answer.allowed, true);
  const pod = applyPatch(
    structuredClone(first.request.object as Pod),
    JSON.parse(Buffer.from(answer.patch, 'base64').toString()),
  );
  const container = pod.spec!.containers.at(-1)!;
  const env = Object.fromEntries(container.env!.map(({ name, value }) => [name, value ?? '']));
  const sidecar = startCli(
    'frozen sidecar',
    [
      'sidecar',
      '--target=http://127.0.0.1:9/metrics',
      '--address=127.0.0.1:0',
      '--termination-grace-period=1s',
    ],
    env,
  );
  try {
    await waitFor('the first renewal', () => sidecar.output.includes('semaphore slot lease renewed'));
    sidecar.pause();
    await waitFor(
      'the frozen pod’s lease to run out',
      async () => {
        for (const server of servers) {
          const [seconds, micros] = (await server.command('TIME')) as string[];
          const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
          const score = await server.command('ZSCORE', key, first.request.uid);
          if (score !== null && Number(score) >= now) return false;
        }
        return true;
      },
      { timeoutMs: 10_000 },
    );
    const second = JSON.parse(
      (await postReview(webhook.url, ca, limitedReview('00000000-0000-4000-8000-0000000000f2'))).body,
    ).response;
    assert.equal(second.allowed, true, 'the slot expired, so a second pod got it');
    sidecar.resume();
    await waitFor('the overrun to be reported', () => sidecar.output.includes('slot lease overran'));
    assert.match(
      sidecar.output,
      /"level":"error".*"sinceRenewedMs":\d+,"leaseMs":1000.*"msg":"slot lease overran/,
    );
    await waitFor('the webhook metric', async () =>
      /seahorse_metrics_proxy_hook_lease_overruns 1\b/.test(await (await fetch(webhook.metricsUrl)).text()),
    );
  } finally {
    sidecar.resume();
    await sidecar.stop('SIGKILL');
    await webhook.close();
    await stopAll(servers);
    rmSync(dir, { recursive: true, force: true });
  }
});
