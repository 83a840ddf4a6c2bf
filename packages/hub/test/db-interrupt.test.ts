// A stop or a spawn whose end could not be recorded because PostgreSQL went away (its
// connections cut by a TCP relay between the hub and the database, which the test controls) is
// finished once the database answers again — never a server stuck in "stopping" or "pending" —
// and a database that hangs fails requests within the query timeout instead of holding them.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type PostgresServer, startPostgres, waitFor } from '@seahorse/runtime/testing';
import type { JsonObject, Spawner, SpawnerContext } from '../src/spawners/spawner.ts';
import type { BoundSpawnerFactory } from '../src/spawns.ts';
import { startTestHub, type TestHub } from './helpers.ts';
import { PostgresRelay } from './pg-relay.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

/** Gates the test opens: a spawn or a stop waits at its gate while the database is cut. */
class Gates {
  start: Promise<void> | undefined;
  stop: Promise<void> | undefined;
  readonly servers = new Map<number, Server>();
  hold(which: 'start' | 'stop'): () => void {
    let open: () => void = () => undefined;
    this[which] = new Promise<void>((resolve) => {
      open = resolve;
    });
    return () => {
      this[which] = undefined;
      open();
    };
  }
}

function gatedSpawner(gates: Gates): BoundSpawnerFactory {
  return (context: SpawnerContext): Spawner => {
    let port = typeof context.state?.port === 'number' ? context.state.port : 0;
    return {
      async start() {
        await gates.start;
        const server = createServer((_req, res) => res.end('ok'));
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        port = (server.address() as { port: number }).port;
        gates.servers.set(port, server);
        context.progress({ progress: 50, message: 'listening' });
        return `http://127.0.0.1:${port}`;
      },
      async poll() {
        return gates.servers.has(port) ? null : 0;
      },
      async stop() {
        await gates.stop;
        const server = gates.servers.get(port);
        gates.servers.delete(port);
        if (server) await new Promise((resolve) => server.close(resolve));
      },
      state(): JsonObject {
        return port ? { port } : {};
      },
    };
  };
}

describe('PostgreSQL cut in the middle of a stop or a spawn', () => {
  let pg: PostgresServer;
  let relay: PostgresRelay;
  let hub: TestHub;
  const gates = new Gates();
  before(async () => {
    pg = await startPostgres();
    relay = await PostgresRelay.start(pg.port);
    hub = await startTestHub(
      {
        'JupyterHub.db_url': `postgres://postgres@127.0.0.1:${relay.port}/postgres?query_timeout=1500`,
        'JupyterHub.slow_spawn_timeout': 0.2,
      },
      { spawnerFactory: gatedSpawner(gates) },
    );
    for (const name of ['alice', 'bob', 'carol'])
      assert.equal((await hub.api(`/users/${name}`, { method: 'POST' })).status, 201);
  });
  after(async () => {
    relay?.pass();
    await hub?.close();
    await relay?.close();
    await pg?.stop();
  });

  const serverOf = async (name: string) => {
    const response = await hub.api(`/users/${name}?include_stopped_servers=1`);
    // Undefined when stopped and gone; while the database is still away, a 503 (a Json too).
    return response.status === 200 ? (((await response.json()) as Json).servers[''] as Json | undefined) : {};
  };
  /** Waits, for as long as the sweep may take once the database is back, until `name`'s server is `done`. */
  const untilServer = (what: string, name: string, done: (model: Json | undefined) => boolean) =>
    waitFor(what, async () => done(await serverOf(name)), { timeoutMs: 15_000, intervalMs: 200 });

  test('a stop whose end is lost with the database is finished once it answers; the server can start again', async () => {
    assert.equal((await hub.api('/users/alice/server', { method: 'POST' })).status, 201);
    const release = gates.hold('stop');
    assert.equal((await hub.api('/users/alice/server', { method: 'DELETE' })).status, 202);
    assert.equal((await serverOf('alice'))?.pending, 'stop');
    relay.cut();
    release();
    await waitFor('the lost write logged', () =>
      hub.logs.lines.some(
        (l) => String(l.msg).startsWith('recording the end of a pending action failed') && l.user === 'alice',
      ),
    );
    relay.pass();
    // Still "stopping" in the database until the sweep finishes it.
    assert.equal((await serverOf('alice'))?.pending, 'stop');
    await untilServer('the stop finished', 'alice', (model) =>
      model !== undefined && Object.keys(model).length > 0 ? model.pending === null : model === undefined,
    );
    assert.equal(gates.servers.size, 0);
    assert.ok(
      hub.logs.lines.some((l) => l.msg === 'finishing a pending action the database failure interrupted'),
    );
    assert.equal((await hub.api('/users/alice/server', { method: 'POST' })).status, 201);
    assert.equal(((await serverOf('alice')) as Json).ready, true);
    assert.equal((await hub.api('/users/alice/server', { method: 'DELETE' })).status, 204);
  });

  test('a spawn whose end is lost with the database is failed, what it started stopped; it can start again', async () => {
    const release = gates.hold('start');
    assert.equal((await hub.api('/users/bob/server', { method: 'POST' })).status, 202);
    relay.cut();
    release();
    await waitFor('the spawn failed on the database', () =>
      hub.logs.lines.some((l) => l.msg === 'spawn failed' && l.user === 'bob'),
    );
    // Its attempt to record the failure is over (and lost) before the database comes back.
    await waitFor('the spawn’s own cleanup over', () => hub.hub.spawns.pendingCount === 0);
    relay.pass();
    assert.equal((await serverOf('bob'))?.pending, 'spawn');
    await untilServer(
      'the spawn no longer pending',
      'bob',
      (model) => model !== undefined && model.pending === null,
    );
    assert.equal(gates.servers.size, 0, 'nothing the failed spawn started still runs');
    assert.ok(
      hub.logs.lines.some(
        (l) => l.msg === 'finishing a pending action the database failure interrupted' && l.user === 'bob',
      ),
    );
    const pending = await fetch(`${hub.url}/hub/api/users/bob/server/progress`, {
      headers: { authorization: `token ${hub.adminToken}` },
    });
    assert.match(await pending.text(), /database failed while the server was starting|Spawn failed/);
    assert.equal((await hub.api('/users/bob/server', { method: 'POST' })).status, 201);
    assert.equal((await hub.api('/users/bob/server', { method: 'DELETE' })).status, 204);
  });

  test('a database that hangs fails requests within the query timeout (503), and the hub carries on after', async () => {
    assert.equal((await hub.api('/users/carol')).status, 200);
    relay.hang();
    const began = performance.now();
    const response = await hub.api('/users/carol');
    const ms = performance.now() - began;
    assert.equal(response.status, 503);
    assert.ok(ms < 12_000, `answered after ${Math.round(ms)} ms`);
    relay.pass();
    await waitFor('the API answers again', async () => (await hub.api('/users/carol')).status === 200, {
      timeoutMs: 20_000,
      intervalMs: 200,
    });
  });
});
