// Several proxy replicas sharing one routing table through real Redis processes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  freePort,
  type RedisServer,
  startRedis,
  startRedisWithReplica,
  startSentinels,
  waitFor,
} from '@seahorse/runtime/testing';
import {
  startProxyProcess,
  startTestProxy,
  startUpstream,
  type TestProxy,
  type Upstream,
} from './helpers.ts';

async function startReplica(url: string, extra: string[] = []): Promise<TestProxy> {
  const proxy = await startTestProxy(['--storage-backend', 'redis', '--redis-url', url, ...extra]);
  await waitFor(
    `replica on ${proxy.url} to load the table`,
    async () => (await fetch(`${proxy.url}/_chp_healthz`)).ok,
  );
  return proxy;
}

async function routeKeys(proxy: TestProxy): Promise<string[]> {
  return Object.keys((await (await proxy.api('GET', '/api/routes')).json()) as object).sort();
}

describe('three replicas on one Redis', () => {
  let redis: RedisServer;
  let upstream: Upstream;
  let replicas: TestProxy[];
  before(async () => {
    redis = await startRedis();
    upstream = await startUpstream();
    replicas = [];
    for (let i = 0; i < 3; i++)
      replicas.push(await startReplica(redis.url, ['--activity-flush-interval', '100ms']));
  });
  after(async () => {
    for (const replica of replicas) await replica.close();
    await upstream.close();
    await redis.stop();
  });

  test('a route written through one replica is served by every replica', async () => {
    const [a, b, c] = replicas as [TestProxy, TestProxy, TestProxy];
    await a.addRoute('/user/shared', upstream.url, { user: 'shared' });
    for (const replica of [b, c]) {
      await waitFor('the route to propagate', () => replica.table.get('/user/shared'));
      const res = await fetch(`${replica.url}/user/shared/api`);
      assert.equal(res.status, 200);
      const route = (await (await replica.api('GET', '/api/routes/user/shared')).json()) as { user: string };
      assert.equal(route.user, 'shared', 'extra keys propagate too');
    }
    assert.equal((await b.api('DELETE', '/api/routes/user/shared')).status, 204);
    for (const replica of [a, c])
      await waitFor('the delete to propagate', () => !replica.table.get('/user/shared'));
    assert.equal((await fetch(`${a.url}/user/shared/api`)).status, 404);
  });

  test('concurrent writers through different replicas lose none of each other’s routes', async () => {
    const writes: Array<Promise<void>> = [];
    for (let i = 0; i < 150; i++) {
      for (const [index, replica] of replicas.entries())
        writes.push(replica.addRoute(`/w${index}/r${i}`, upstream.url));
    }
    await Promise.all(writes);
    const expected = replicas.flatMap((_r, index) =>
      Array.from({ length: 150 }, (_x, i) => `/w${index}/r${i}`),
    );
    for (const replica of replicas) {
      await waitFor('every replica to hold all 450 routes', () =>
        expected.every((path) => replica.table.get(path)),
      );
    }
    const keys = await routeKeys(replicas[0]!);
    assert.deepEqual(await routeKeys(replicas[1]!), keys);
    assert.deepEqual(await routeKeys(replicas[2]!), keys);
  });

  test('last_activity reported by any replica is the latest seen by the whole fleet', async () => {
    const [a, b] = replicas as [TestProxy, TestProxy, TestProxy];
    await a.addRoute('/user/busy', upstream.url);
    await waitFor('b to have the route', () => b.table.get('/user/busy'));
    const written = Date.parse(
      ((await (await a.api('GET', '/api/routes/user/busy')).json()) as { last_activity: string })
        .last_activity,
    );
    await waitFor('a clock tick', () => Date.now() > written + 5);
    await (await fetch(`${b.url}/user/busy/x`)).text();
    const seenByB = b.table.get('/user/busy')!.lastActivity;
    assert.ok(seenByB > written);
    await waitFor('a to report the activity b saw', async () => {
      const all = (await (await a.api('GET', '/api/routes')).json()) as Record<
        string,
        { last_activity: string }
      >;
      return Date.parse(all['/user/busy']!.last_activity) >= seenByB;
    });
    const since = new Date(seenByB).toISOString();
    const idle = (await (
      await a.api('GET', `/api/routes?inactive_since=${encodeURIComponent(since)}`)
    ).json()) as object;
    assert.equal(Object.hasOwn(idle, '/user/busy'), false, 'not idle anywhere in the fleet');
  });
});

test('Redis unreachable at start: unready with the reason, 503 on writes, then ready once Redis comes', async () => {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const proxy = await startTestProxy(['--storage-backend', 'redis', '--redis-url', url]);
  let redis: RedisServer | undefined;
  try {
    const health = await fetch(`${proxy.url}/_chp_healthz`);
    assert.equal(health.status, 503);
    assert.match(
      ((await health.json()) as { reason: string }).reason,
      /route store: (connecting|redis unreachable)/,
    );
    const write = await proxy.api('POST', '/api/routes/user/x', { target: 'http://127.0.0.1:9' });
    assert.equal(write.status, 503);
    assert.match(await write.text(), /unavailable.*nothing was changed/);
    redis = await startRedis({ port });
    await waitFor(
      'the proxy to connect and load',
      async () => (await fetch(`${proxy.url}/_chp_healthz`)).ok,
      {
        timeoutMs: 15_000,
      },
    );
    assert.equal(
      (await proxy.api('POST', '/api/routes/user/x', { target: 'http://127.0.0.1:9' })).status,
      201,
    );
  } finally {
    await proxy.close();
    await redis?.stop();
  }
});

test('Redis lost while serving: proxying goes on from the local table, writes get 503, then resume', async () => {
  const redis = await startRedis();
  const upstream = await startUpstream();
  const proxy = await startReplica(redis.url);
  try {
    await proxy.addRoute('/user/kept', upstream.url);
    redis.process.pause();
    assert.equal((await fetch(`${proxy.url}/user/kept/x`)).status, 200, 'requests do not wait on Redis');
    const write = await proxy.api('POST', '/api/routes/user/late', { target: upstream.url });
    assert.equal(write.status, 503);
    assert.match(await write.text(), /retry/);
    redis.process.resume();
    await waitFor(
      'writes to work again',
      async () => (await proxy.api('POST', '/api/routes/user/late', { target: upstream.url })).status === 201,
    );
    assert.equal((await fetch(`${proxy.url}/user/late/x`)).status, 200);
  } finally {
    await proxy.close();
    await upstream.close();
    await redis.stop();
  }
});

test('a replica paused through many changes catches up with a full resync', async () => {
  const redis = await startRedis();
  const upstream = await startUpstream();
  const writer = await startReplica(redis.url, ['--redis-changes-max', '10']);
  const replica = await startProxyProcess(
    ['--storage-backend', 'redis', '--redis-url', redis.url, '--redis-changes-max', '10'],
    { name: 'paused replica', token: writer.token },
  );
  const { process: paused, port } = replica;
  const tableOfPaused = async () =>
    Object.keys((await (await replica.api('GET', '/api/routes')).json()) as object).sort();
  try {
    await writer.addRoute('/before', upstream.url);
    await waitFor('the replica to follow', async () => (await tableOfPaused()).includes('/before'));
    paused.pause();
    // Enough changes that the stream (trimmed in nodes of ~100 entries) loses some unread ones.
    for (let i = 0; i < 300; i++) await writer.addRoute(`/during/${i}`, upstream.url);
    assert.equal((await writer.api('DELETE', '/api/routes/before')).status, 204);
    paused.resume();
    const expected = await routeKeys(writer);
    await waitFor(
      'the resumed replica to converge',
      async () => JSON.stringify(await tableOfPaused()) === JSON.stringify(expected),
      {
        timeoutMs: 15_000,
      },
    );
    assert.equal((await fetch(`http://127.0.0.1:${port}/during/299/x`)).status, 200);
    assert.match(paused.output, /missed route changes, reloading the table from redis/);
    assert.equal((await fetch(`http://127.0.0.1:${port}/before`)).status, 404);
  } finally {
    await paused.stop();
    await writer.close();
    await upstream.close();
    await redis.stop();
  }
});

test('routes written by configurable-http-proxy-redis-backend are read on first start', async () => {
  const redis = await startRedis();
  const upstream = await startUpstream();
  await redis.command(
    'HSET',
    'configurable-proxy-redis-storage',
    '/user/legacy',
    JSON.stringify({ target: upstream.url, user: 'legacy', last_activity: '2026-01-02T03:04:05.000Z' }),
    '/',
    JSON.stringify({ target: upstream.url }),
  );
  const proxy = await startReplica(redis.url, ['--storage-backend', 'configurable-http-proxy-redis-backend']);
  try {
    const route = (await (await proxy.api('GET', '/api/routes/user/legacy')).json()) as Record<
      string,
      unknown
    >;
    assert.equal(route.user, 'legacy');
    assert.equal(route.last_activity, '2026-01-02T03:04:05.000Z');
    assert.equal((await fetch(`${proxy.url}/user/legacy/x`)).status, 200);
  } finally {
    await proxy.close();
    await upstream.close();
    await redis.stop();
  }
});

test('a Sentinel failover keeps the routes and writes resume on the new primary', async () => {
  const pair = await startRedisWithReplica();
  const sentinels = await startSentinels(pair.primary, { count: 3, downAfterMs: 500 });
  const upstream = await startUpstream();
  const hosts = sentinels.sentinels.map((s) => `127.0.0.1:${s.port}`).join(',');
  const proxy = await startReplica(`sentinel://${hosts}/${sentinels.masterName}`);
  try {
    await proxy.addRoute('/user/survivor', upstream.url);
    // The write is acknowledged by the primary; wait until the replica holds it before the crash.
    await waitFor(
      'the replica to hold the route',
      async () => (await pair.replica.command('HEXISTS', 'seahorse:proxy:routes', '/user/survivor')) === 1,
    );
    await waitFor('sentinels to know the replica', async () => {
      const replicas = (await sentinels.sentinels[0]!.command(
        'SENTINEL',
        'replicas',
        sentinels.masterName,
      )) as unknown[];
      return replicas.length === 1;
    });
    await pair.primary.stop();
    await waitFor(
      'a write to succeed on the promoted replica',
      async () =>
        (await proxy.api('POST', '/api/routes/user/after', { target: upstream.url })).status === 201,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    assert.equal(await pair.replica.command('ROLE').then((role) => (role as string[])[0]), 'master');
    assert.ok(proxy.table.get('/user/survivor'), 'routes survive the failover');
    assert.equal((await fetch(`${proxy.url}/user/after/x`)).status, 200);
  } finally {
    await proxy.close();
    await upstream.close();
    await sentinels.stop();
    await pair.stop();
  }
});

test('--storage-backend redis without a Redis URL is a usage error naming both ways to give it', async () => {
  await assert.rejects(
    startTestProxy(['--storage-backend', 'redis']),
    /needs --redis-url or CONFIGURABLE_PROXY_REDIS_URI/,
  );
});
