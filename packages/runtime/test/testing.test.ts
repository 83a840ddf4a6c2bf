import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { startPostgres, startRedis, startRedisWithReplica, startSentinels, waitFor } from '../src/testing.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('startRedis serves commands on its own port and stop() ends the process', async () => {
  const redis = await startRedis();
  assert.equal(await redis.command('SET', 'k', 'v'), 'OK');
  assert.equal(await redis.command('GET', 'k'), 'v');
  const pid = redis.process.pid;
  await redis.stop();
  assert.equal(alive(pid), false);
});

test('a replica follows its primary', async () => {
  const pair = await startRedisWithReplica();
  try {
    await pair.primary.command('SET', 'shared', '1');
    await waitFor(
      'replica to see the key',
      async () => (await pair.replica.command('GET', 'shared')) === '1',
    );
    assert.equal(await pair.replica.command('ROLE').then((role) => (role as string[])[0]), 'slave');
  } finally {
    await pair.stop();
  }
});

test('Sentinels report the primary and promote the replica when it dies', async () => {
  const pair = await startRedisWithReplica();
  const sentinels = await startSentinels(pair.primary, { count: 3, downAfterMs: 500 });
  try {
    const [first] = sentinels.sentinels;
    const address = await first!.command('SENTINEL', 'get-master-addr-by-name', sentinels.masterName);
    assert.deepEqual(address, ['127.0.0.1', String(pair.primary.port)]);
    // Sentinels must learn about the replica before they can fail over to it.
    await waitFor('sentinel to discover the replica', async () => {
      const replicas = (await first!.command('SENTINEL', 'replicas', sentinels.masterName)) as unknown[];
      return replicas.length === 1;
    });
    await pair.primary.stop();
    await waitFor(
      'failover to the replica',
      async () => {
        const now = (await first!.command(
          'SENTINEL',
          'get-master-addr-by-name',
          sentinels.masterName,
        )) as string[];
        return now[1] === String(pair.replica.port);
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  } finally {
    await sentinels.stop();
    await pair.stop();
  }
});

test('startPostgres runs a throwaway cluster that accepts queries', async () => {
  const pg = await startPostgres();
  try {
    const psql = spawnSync('psql', [pg.url, '-tAc', 'select 40 + 2'], { encoding: 'utf8' });
    assert.equal(psql.stdout.trim(), '42', psql.stderr);
  } finally {
    const pid = pg.process.pid;
    await pg.stop();
    assert.equal(alive(pid), false);
  }
});
