import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createConnection, createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '@seahorse/runtime';
import { createRegistry } from '@seahorse/runtime/metrics';
import { LogCapture, type PostgresServer, startPostgres, waitFor } from '@seahorse/runtime/testing';
import { PostgresRelay, viaRelay } from '../test/pg-relay.ts';
import type { Database } from './db/database.ts';
import { migrate } from './db/migrations.ts';
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

type Replica = ReturnType<typeof replica>;

/** Stops each replica's leadership, in order. */
async function stopAll(...replicas: Replica[]): Promise<void> {
  for (const r of replicas) await r.leadership.stop();
}

/** Samples `condition` every `everyMs` ms until `stop()`; `seen` says whether it ever held. */
function watchFor(condition: () => boolean, everyMs: number) {
  const watch = { seen: false, stop: () => clearInterval(timer) };
  const timer = setInterval(() => {
    if (condition()) watch.seen = true;
  }, everyMs);
  return watch;
}

/** Watches for a and b leading at the same moment. */
function bothLeading(a: Replica, b: Replica, everyMs: number) {
  return watchFor(() => a.leadership.isLeader && b.leadership.isLeader, everyMs);
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
    await migrate(db); // the lease's table, as a hub migrates before it takes part
    return db;
  };
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    for (const db of dbs) await db.close();
    await pg.stop();
  });
  /** Replicas a and b, a on `dbOfA` when given, started in that order: a leads, b follows. */
  const startPair = async (dbOfA?: Database) => {
    const a = replica(dbOfA ?? (await open()));
    const b = replica(await open());
    await a.leadership.start();
    await b.leadership.start();
    return { a, b };
  };
  /** The same, with a reaching PostgreSQL through a relay the test can hang. */
  const startPairThroughRelay = async () => {
    const relay = await PostgresRelay.start(pg.port);
    return { relay, ...(await startPair(await openDatabase(relay.url(pg.url)))) };
  };

  test('one replica leads; when its session dies it stops at once and another takes over', async () => {
    const { a, b } = await startPair();
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
      await stopAll(a, b);
    }
  });

  test('a leader whose connection hangs without closing stops leading within interval + timeout, and another leads within the lease', async (t) => {
    // interval 100 ms, timeout 1 s: the term counts for 1.1 s after a proof; the lease is 2.2 s.
    const { relay, a, b } = await startPairThroughRelay();
    const both = bothLeading(a, b, 10);
    try {
      assert.equal(a.leadership.isLeader, true);
      const terms: AbortSignal[] = [];
      a.leadership.whileLeader((signal) => terms.push(signal));
      const frozenAt = performance.now();
      relay.hang();
      await waitFor('a to stop leading', () => !a.leadership.isLeader, { timeoutMs: 5000 });
      const stepped = performance.now() - frozenAt;
      assert.ok(stepped < 1500, `a stepped down after ${Math.round(stepped)} ms`);
      assert.equal(terms[0]?.aborted, true);
      assert.equal(await a.leadership.ifLeader(async () => 'ran'), undefined);
      await waitFor('b to lead', () => b.leadership.isLeader, { timeoutMs: 10_000 });
      const tookOver = performance.now() - frozenAt;
      assert.ok(tookOver < 5000, `b leads ${Math.round(tookOver)} ms after the freeze`);
      assert.ok(tookOver >= 1100, 'not before the lease could have run out');
      t.diagnostic(
        `a stopped leading ${Math.round(stepped)} ms and b led ${Math.round(tookOver)} ms after the freeze`,
      );
      assert.equal(await b.gauge(), 1);
      assert.ok(a.logs.has('this replica is no longer the leader'));
      // The frozen path stays frozen: a keeps trying, never leads again.
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(a.leadership.isLeader, false);
      assert.equal(both.seen, false, 'two leaders at once');
    } finally {
      both.stop();
      await relay.close();
      await stopAll(a, b);
    }
  });

  test('a leader whose session PostgreSQL ended without its hearing keeps no term another replica can take before it ends', async (t) => {
    const { relay, a, b } = await startPairThroughRelay();
    const both = bothLeading(a, b, 5);
    try {
      assert.equal(a.leadership.isLeader, true);
      const cutAt = performance.now();
      relay.cutServerSide();
      // PostgreSQL has ended a's session (its liveness lock is gone); a has not heard.
      await waitFor(
        'a gone from pg_locks',
        async () => !(await b.leadership.liveReplicas()).has(a.leadership.replicaId),
        {
          timeoutMs: 5000,
        },
      );
      await waitFor('b to lead', () => b.leadership.isLeader, { timeoutMs: 10_000 });
      const tookOver = performance.now() - cutAt;
      t.diagnostic(`b led ${Math.round(tookOver)} ms after the cut`);
      assert.equal(both.seen, false, 'two leaders at once');
      assert.equal(a.leadership.isLeader, false);
    } finally {
      both.stop();
      await relay.close();
      await stopAll(a, b);
    }
  });

  test('a hub of the previous version (the leader lock alone) that takes the lock after a new leader died leads alone: no new replica takes the lease run out beside it', async () => {
    const { relay, a, b } = await startPairThroughRelay();
    // The previous version's replica: it leads while it holds the leader lock, and tries it often.
    const { default: pgModule } = await import('pg');
    const old = new pgModule.Client({ connectionString: pg.url });
    await old.connect();
    let oldLeads = false;
    let polling = true;
    const oldLoop = (async () => {
      while (polling && !oldLeads) {
        const { rows } = await old.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(7262012) AS ok');
        oldLeads = rows[0]?.ok === true;
        if (!oldLeads) await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    // (a may still count its term when the old hub takes the lock: the previous version takes
    // it the moment PostgreSQL frees it, which this version cannot change.)
    const both = watchFor(() => oldLeads && b.leadership.isLeader, 5);
    try {
      assert.equal(a.leadership.isLeader, true);
      // a dies without a word (its session ends on the server; a never comes back).
      relay.cutServerSide();
      await waitFor('the old hub to take the leader lock', () => oldLeads, { timeoutMs: 5000 });
      // Past the end of a's lease: b must not lead beside the old hub.
      await new Promise((resolve) => setTimeout(resolve, 3500));
      assert.equal(b.leadership.isLeader, false);
      assert.equal(both.seen, false, 'a new replica led beside a hub of the previous version');
      // The old hub goes (the rolling upgrade ends): b leads.
      polling = false;
      await oldLoop;
      await old.end();
      await waitFor('b to lead', () => b.leadership.isLeader, { timeoutMs: 10_000 });
    } finally {
      polling = false;
      both.stop();
      await oldLoop.catch(() => undefined);
      await old.end().catch(() => undefined);
      await relay.close();
      await stopAll(a, b);
    }
  });

  test('a leader process stopped past its term: work holding the term’s signal sees it aborted before any timer runs', async () => {
    const a = replica(await open());
    await a.leadership.start();
    try {
      assert.equal(a.leadership.isLeader, true);
      const signal = a.leadership.signal;
      assert.equal(signal.aborted, false);
      // The event loop stalls inside a callback for longer than the term, 1.1 s; the rest of
      // that batch of I/O callbacks (the answer a cull pass awaited) runs before the expiry timer.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1300);
      assert.equal(signal.aborted, true, 'the term’s signal still says the term runs');
    } finally {
      await a.leadership.stop();
    }
  });

  test('a replica process stopped (SIGSTOP) between the answer that made it the leader and reading it, longer than the term, does not begin a term on that stale proof', async () => {
    const a = replica(await open());
    await a.leadership.start();
    // b is a process of its own, reaching PostgreSQL through a relay that SIGSTOPs it when it
    // sends its take of the lease, hands it the answer, and lets it run again 1.3 s later (the
    // term is 1.1 s): on SIGCONT the answer is read before any timer runs.
    const target = pg.port;
    let armed = false;
    let stopped = 0;
    let child: ChildProcess | undefined;
    const server = createServer((client) => {
      const upstream = createConnection(target, '127.0.0.1');
      let taking = false;
      client.on('data', (chunk: Buffer) => {
        if (armed && chunk.includes('term = term + 1')) {
          armed = false;
          taking = true;
          process.kill(child!.pid!, 'SIGSTOP');
          stopped++;
        }
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        client.write(chunk);
        if (taking) {
          taking = false;
          setTimeout(() => process.kill(child!.pid!, 'SIGCONT'), 1300);
        }
      });
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.on('error', () => undefined);
      upstream.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const dbUrl = viaRelay(pg.url, (server.address() as { port: number }).port);
    const script = `
      import { createLogger } from '@seahorse/runtime';
      import { createRegistry } from '@seahorse/runtime/metrics';
      import { openDatabase } from ${JSON.stringify(new URL('./db/open.ts', import.meta.url).href)};
      import { Leadership } from ${JSON.stringify(new URL('./leader.ts', import.meta.url).href)};
      const db = await openDatabase(process.env.DB_URL);
      const leadership = new Leadership(db, createLogger({ name: 'hub', level: 'debug' }), createRegistry(), {
        intervalMs: 100, timeoutMs: 1000, goneAfterMs: 300,
      });
      leadership.whileLeader((signal) => console.log(JSON.stringify({ msg: 'term began', aborted: signal.aborted })));
      process.on('SIGTERM', () => void leadership.stop().then(() => process.exit(0)));
      await leadership.start();
      console.log(JSON.stringify({ msg: 'started' }));`;
    child = spawn(process.execPath, ['--conditions=seahorse-source', '--input-type=module', '-e', script], {
      cwd: new URL('..', import.meta.url),
      env: { ...process.env, DB_URL: dbUrl },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines: Array<{ msg?: string; aborted?: boolean; reason?: string }> = [];
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const parts = buffered.split('\n');
      buffered = parts.pop()!;
      for (const line of parts) if (line.trim()) lines.push(JSON.parse(line));
    });
    try {
      await waitFor('b to follow', () => lines.some((l) => l.msg === 'started'), { timeoutMs: 20_000 });
      armed = true;
      await a.leadership.stop();
      await waitFor('b to lead', () => lines.some((l) => l.msg === 'term began'), { timeoutMs: 10_000 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(stopped, 1);
      const terms = lines.filter((l) => l.msg === 'term began');
      assert.deepEqual(
        terms.map((l) => l.aborted),
        [false],
        `b began a term on a proof older than the term: ${JSON.stringify(lines.map((l) => l.reason ?? l.msg))}`,
      );
    } finally {
      // b gives the lease back as it leaves (the next tests start with it free).
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child!.once('exit', resolve));
        process.kill(child.pid!, 'SIGCONT');
        child.kill('SIGTERM');
        await exited;
      }
      server.close();
    }
  });

  test('a leader whose PostgreSQL backend is stopped (SIGSTOP) stops leading within interval + timeout, and another leads within the lease', async (t) => {
    const { a, b } = await startPair();
    const admin = await open();
    // The backend serving a's leadership session: the one holding a's liveness lock.
    const backend = await admin.get<{ pid: number }>(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = ?::bigint::oid
         AND objid = ?::bigint::oid AND objsubid = 2 AND granted`,
      [replicaLockClass, a.leadership.replicaId],
    );
    assert.ok(backend?.pid);
    const both = bothLeading(a, b, 10);
    try {
      assert.equal(a.leadership.isLeader, true);
      const stoppedAt = performance.now();
      process.kill(backend.pid, 'SIGSTOP');
      await waitFor('a to stop leading', () => !a.leadership.isLeader, { timeoutMs: 5000 });
      const stepped = performance.now() - stoppedAt;
      assert.ok(stepped < 1500, `a stepped down after ${Math.round(stepped)} ms`);
      await waitFor('b to lead', () => b.leadership.isLeader, { timeoutMs: 10_000 });
      const tookOver = performance.now() - stoppedAt;
      t.diagnostic(
        `a stopped leading ${Math.round(stepped)} ms and b led ${Math.round(tookOver)} ms after the SIGSTOP`,
      );
      assert.ok(tookOver < 5000, `b leads ${Math.round(tookOver)} ms after the SIGSTOP`);
      // The backend runs again (and ends: its client left): a follows, b keeps leading.
      process.kill(backend.pid, 'SIGCONT');
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.equal(a.leadership.isLeader, false);
      assert.equal(b.leadership.isLeader, true);
      assert.equal(both.seen, false, 'two leaders at once');
    } finally {
      both.stop();
      try {
        process.kill(backend.pid, 'SIGCONT');
      } catch {
        // gone
      }
      await stopAll(a, b);
    }
  });

  test('a leader that stops hands over at the next try; its name is gone only after goneAfterMs', async () => {
    const { a, b } = await startPair();
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
      await stopAll(a, b);
    }
  });
});
