import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '@seahorse/runtime';
import { createRegistry } from '@seahorse/runtime/metrics';
import { LogCapture, type PostgresServer, startPostgres, waitFor } from '@seahorse/runtime/testing';
import type { Database } from './db/database.ts';
import { openDatabase } from './db/open.ts';
import { Leadership, replicaLockClass } from './leader.ts';

function replica(db: Database, options = {}) {
  const logs = new LogCapture();
  const registry = createRegistry();
  const leadership = new Leadership(
    db,
    createLogger({ name: 'hub', level: 'debug', destination: logs }),
    registry,
    {
      intervalMs: 100,
      timeoutMs: 1000,
      goneAfterMs: 300,
      ...options,
    },
  );
  const gauge = async () => {
    const line = (await registry.metrics()).split('\n').find((l) => l.startsWith('seahorse_hub_leader '));
    return Number(line?.split(' ')[1]);
  };
  return { leadership, logs, gauge };
}

test('on SQLite the hub is the leader from its first round, and leaves on stop', async () => {
  const db = await openDatabase('sqlite:///:memory:');
  const { leadership, gauge } = replica(db);
  const changes: boolean[] = [];
  leadership.on('change', (leader) => changes.push(leader));
  await leadership.start();
  assert.equal(leadership.isLeader, true);
  assert.equal(await gauge(), 1);
  assert.equal(await leadership.ifLeader(async () => 'ran'), 'ran');
  assert.deepEqual([...(await leadership.liveReplicas())], [leadership.replicaId]);
  await leadership.stop();
  assert.equal(leadership.isLeader, false);
  assert.equal(leadership.signal.aborted, true);
  assert.equal(await leadership.ifLeader(async () => 'ran'), undefined);
  assert.deepEqual(changes, [true, false]);
  await db.close();
});

describe('on PostgreSQL', () => {
  let pg: PostgresServer;
  const dbs: Database[] = [];
  const open = async () => {
    const db = await openDatabase(pg.url);
    dbs.push(db);
    return db;
  };
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    for (const db of dbs) await db.close();
    await pg.stop();
  });

  test('one replica leads; when its session dies it stops at once and another takes over', async () => {
    const a = replica(await open());
    const b = replica(await open());
    await a.leadership.start();
    await b.leadership.start();
    try {
      assert.equal(a.leadership.isLeader, true);
      assert.equal(b.leadership.isLeader, false);
      assert.equal(await b.gauge(), 0);
      assert.equal(a.logs.has('this replica is now the leader'), true);
      assert.equal(b.logs.has('another replica is the leader; following'), true);
      assert.deepEqual(
        [...(await b.leadership.liveReplicas())].sort(),
        [a.leadership.replicaId, b.leadership.replicaId].sort(),
      );
      // A job started with a's term (a watch, say) learns when the term ends.
      const terms: AbortSignal[] = [];
      a.leadership.whileLeader((signal) => terms.push(signal));
      assert.equal(terms.length, 1);
      const lostAt = new Promise<number>((resolve) =>
        a.leadership.once('change', (leader) => {
          if (!leader) resolve(performance.now());
        }),
      );
      // Another session ends a's (as a failover of PostgreSQL or a dropped connection would).
      const admin = await open();
      const killedAt = performance.now();
      const killed = await admin.get<{ n: number }>(
        `SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_locks
         WHERE locktype = 'advisory' AND classid = ?::bigint::oid AND objid = ?::bigint::oid AND objsubid = 2`,
        [replicaLockClass, a.leadership.replicaId],
      );
      assert.equal(killed?.n, 1);
      // Immediately: the connection's end is the end of the term, with no tick to wait for.
      assert.ok((await lostAt) - killedAt < 1000);
      assert.equal(terms[0]?.aborted, true);
      await waitFor('b to lead', () => b.leadership.isLeader, { timeoutMs: 5000 });
      assert.equal(await b.gauge(), 1);
      // a comes back as a follower, under the same name (its pending work stays its own).
      const id = a.leadership.replicaId;
      await waitFor('a back in the database', async () => (await b.leadership.liveReplicas()).has(id));
      assert.equal(a.leadership.isLeader, false);
      assert.equal(a.leadership.replicaId, id);
      assert.equal(terms.length, 1);
    } finally {
      await a.leadership.stop();
      await b.leadership.stop();
    }
  });

  test('a leader that stops hands over at the next try; its name is gone only after goneAfterMs', async () => {
    const a = replica(await open());
    const b = replica(await open());
    await a.leadership.start();
    await b.leadership.start();
    try {
      assert.equal(a.leadership.isLeader, true);
      const id = a.leadership.replicaId;
      assert.deepEqual([...(await b.leadership.goneOwners([id, null, b.leadership.replicaId]))], ['']);
      await a.leadership.stop();
      await waitFor('b to lead', () => b.leadership.isLeader, { timeoutMs: 5000 });
      // Missing once is not gone: a replica whose connection blinked keeps its pending work.
      assert.equal((await b.leadership.goneOwners([id])).has(id), false);
      await waitFor('a to count as gone', async () => (await b.leadership.goneOwners([id])).has(id), {
        timeoutMs: 5000,
      });
    } finally {
      await a.leadership.stop();
      await b.leadership.stop();
    }
  });
});
