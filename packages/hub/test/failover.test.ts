// Three `seahorse-hub` processes on one PostgreSQL behind one proxy process, spawning real local
// processes: any replica serves any user, spawns and stops cross replicas, two stops at once
// through two replicas stop once, and when the leader is SIGKILLed mid-run another replica
// leads within seconds, finishes the spawn the dead one left half done, and culls — each
// server started once and stopped once, the running ones untouched.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort, ManagedProcess, startPostgres, waitFor } from '@seahorse/runtime/testing';
import pg from 'pg';
import { proxySource, signIn } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

const cli = new URL('../src/cli.ts', import.meta.url).pathname;
const fixture = new URL('./fixtures/counting-server.mjs', import.meta.url).pathname;
const token = 'failover-test-admin-token-0123456789';
const proxyToken = 'failover-test-proxy-token-0123456789';

interface Replica {
  index: number;
  url: string;
  proc: ManagedProcess;
}

const env = { ...process.env, CONFIGPROXY_AUTH_TOKEN: proxyToken };

/** The proxy process, serving on `proxyPort` with its REST API on `apiPort`. */
function startProxy(proxyPort: number, apiPort: number): ManagedProcess {
  return new ManagedProcess(
    'proxy',
    process.execPath,
    [
      '--conditions=seahorse-source',
      proxySource,
      '--ip',
      '127.0.0.1',
      '--port',
      String(proxyPort),
      '--api-ip',
      '127.0.0.1',
      '--api-port',
      String(apiPort),
    ],
    { env },
  );
}

/** Writes `hub-<index>.yaml` in `dir` from `config` (given the replica's own URL) and starts that hub. */
async function startReplica(dir: string, index: number, config: (url: string) => Json): Promise<Replica> {
  const url = `http://127.0.0.1:${await freePort()}`;
  writeFileSync(join(dir, `hub-${index}.yaml`), JSON.stringify(config(url)));
  const proc = new ManagedProcess(
    `hub-${index}`,
    process.execPath,
    ['--conditions=seahorse-source', cli, '--config', `hub-${index}.yaml`],
    { cwd: dir, env },
  );
  return { index, url, proc };
}

/** Waits for every replica to answer its health check. */
async function untilHealthy(replicas: Replica[]): Promise<void> {
  await Promise.all(
    replicas.map((r) =>
      r.proc.untilReady(
        waitFor(`hub ${r.index}`, async () => (await fetch(`${r.url}/hub/health`)).ok, {
          timeoutMs: 60_000,
        }),
      ),
    ),
  );
}

/** `error` with what each hub said last, for the failure message. */
function withHubOutput(error: unknown, replicas: Replica[]): Error {
  const said = replicas
    .map((r) => `--- hub ${r.index} (alive: ${r.proc.alive})\n${r.proc.output}`)
    .join('\n');
  return new Error(`${(error as Error).message}\n${said}`, { cause: error });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('three hub replicas on one PostgreSQL: the leader SIGKILLed mid-run, another leads within seconds, nothing lost, nothing spawned or stopped twice', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-failover-'));
  const spawnLog = join(dir, 'spawns.log');
  writeFileSync(spawnLog, '');
  const postgres = await startPostgres();
  const [proxyPort, apiPort] = [await freePort(), await freePort()];
  const proxyUrl = `http://127.0.0.1:${proxyPort}`;
  const proxy = startProxy(proxyPort, apiPort);
  const replicas: Replica[] = [];
  const keepAlive: NodeJS.Timeout[] = [];
  const sql = new pg.Client({ connectionString: postgres.url });
  try {
    await proxy.untilReady(
      waitFor(
        'the proxy',
        async () =>
          (
            await fetch(`http://127.0.0.1:${apiPort}/api/routes`, {
              headers: { authorization: `token ${proxyToken}` },
            })
          ).ok,
        { timeoutMs: 30_000 },
      ),
    );
    await sql.connect();
    for (const index of [0, 1, 2]) {
      // Started at once: they also race for the migrations.
      replicas.push(
        await startReplica(dir, index, (url) => ({
          JupyterHub: {
            hub_bind_url: url,
            bind_url: proxyUrl,
            db_url: postgres.url,
            authenticator_class: 'dummy',
            cleanup_servers: false,
            authenticate_prometheus: false,
            slow_spawn_timeout: 3,
            last_activity_interval: 1,
            services: [{ name: 'admin', api_token: token, admin: true }],
          },
          Authenticator: { allow_all: true },
          ConfigurableHTTPProxy: {
            should_start: false,
            api_url: `http://127.0.0.1:${apiPort}`,
            check_running_interval: 1,
          },
          Spawner: {
            cmd: [process.execPath, fixture],
            environment: { SPAWN_LOG: spawnLog, STOP_DELAY_MS: '1000' },
            poll_interval: 1,
            profile_list: [
              { display_name: 'Default', default: true },
              {
                display_name: 'Slow',
                slug: 'slow',
                kubespawner_override: { environment: { START_DELAY_MS: '120000' } },
              },
            ],
          },
          IdleCuller: { enabled: true, timeout: 5, cull_every: 0.5 },
        })),
      );
    }
    await untilHealthy(replicas);
    const api = (r: Replica, path: string, init: RequestInit = {}) =>
      fetch(`${r.url}/hub/api${path}`, { ...init, headers: { authorization: `token ${token}` } });
    const model = async (r: Replica, user: string) => (await (await api(r, `/users/${user}`)).json()) as Json;
    const metric = async (r: Replica, name: string) => {
      const text = await (await fetch(`${r.url}/hub/metrics`)).text();
      return text
        .split('\n')
        .filter((line) => line.startsWith(name))
        .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
    };
    const leaders = async (among: Replica[]) => {
      const flags = await Promise.all(among.map((r) => metric(r, 'seahorse_hub_leader ').catch(() => 0)));
      return among.filter((_, i) => flags[i] === 1);
    };
    const spawns = () =>
      readFileSync(spawnLog, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [pid, what, user] = line.split(' ');
          return { pid: Number(pid), what, user };
        });
    const started = (user: string) => spawns().filter((s) => s.what === 'start' && s.user === user);
    const terms = (pid: number) => spawns().filter((s) => s.what === 'term' && s.pid === pid).length;

    const [leader] = await waitFor('exactly one leader', async () => {
      const found = await leaders(replicas);
      return found.length === 1 ? found : undefined;
    });
    assert.ok(leader);
    const followers = replicas.filter((r) => r !== leader) as [Replica, Replica];
    const users = ['keep0', 'keep1', 'keep2', 'dup', 'idle0', 'idle1', 'slow'];
    assert.equal(
      (await api(followers[0], '/users', { method: 'POST', body: JSON.stringify({ usernames: users }) }))
        .status,
      201,
    );

    // A spawn through each replica, seen through the next one and reached through the proxy.
    const keepPids: number[] = [];
    for (const [i, r] of replicas.entries()) {
      assert.equal((await api(r, `/users/keep${i}/server`, { method: 'POST' })).status, 201);
      const seen = await model(replicas[(i + 1) % 3]!, `keep${i}`);
      assert.equal(seen.server, `/user/keep${i}/`);
      keepPids.push(seen.servers[''].state.pid);
      const answer = (await (await fetch(`${proxyUrl}/user/keep${i}/`)).json()) as Json;
      assert.equal(answer.user, `keep${i}`);
    }
    // The kept servers report activity through whichever replica answers.
    keepAlive.push(
      setInterval(() => {
        for (const user of ['keep0', 'keep1', 'keep2', 'slow']) {
          const r = replicas.find((x) => x.proc.alive)!;
          const now = new Date().toISOString();
          api(r, `/users/${user}/activity`, {
            method: 'POST',
            body: JSON.stringify({ last_activity: now, servers: { '': { last_activity: now } } }),
          }).then(
            (response) => response.body?.cancel(),
            () => undefined,
          );
        }
      }, 500),
    );
    // The pages too: a session made on one replica shows the user's server on another.
    const cookie = await signIn(followers[0].url, 'keep1', 'any');
    const home = await fetch(`${followers[1].url}/hub/home`, { headers: { cookie } });
    assert.equal(home.status, 200);
    assert.match(await home.text(), /keep1/);

    // Two stops at once through two replicas: one stops the server (204 once it is stopped), the
    // other is told it is stopping (202); the server gets one SIGTERM.
    assert.equal((await api(followers[0], '/users/dup/server', { method: 'POST' })).status, 201);
    const dupPid = (await model(followers[1], 'dup')).servers[''].state.pid as number;
    // Both read the server as running before either claims it: the test holds the row's lock
    // until both claims wait on it (reads do not wait), then lets them race.
    await sql.query('BEGIN');
    const testPid = (await sql.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    await sql.query(
      "SELECT s.id FROM spawners s JOIN users u ON u.id = s.user_id WHERE u.name = 'dup' FOR UPDATE OF s",
    );
    const early: string[] = [];
    const stopping = Promise.all(
      followers.map(async (r) => {
        try {
          const response = await api(r, '/users/dup/server', { method: 'DELETE' });
          early.push(`hub ${r.index}: ${response.status} ${await response.text()}`);
          return { status: response.status, aliveThen: alive(dupPid) };
        } catch (error) {
          early.push(`hub ${r.index}: ${error} ${(error as Error).cause}`);
          throw error;
        }
      }),
    );
    stopping.catch(() => undefined); // awaited below; a failure is reported there
    // The second claim queues behind the first on the row's tuple lock (its query text in
    // pg_stat_activity may still be its previous statement's): count who waits on us, directly
    // or behind another waiter.
    await waitFor(`both claims to wait on the row`, async () => {
      if (early.length) throw new Error(early.join('; '));
      const { rows } = await sql.query<{ pid: number; by: number[] }>(
        "SELECT pid, pg_blocking_pids(pid) AS by FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
      );
      const waiting = new Set<number>([testPid]);
      for (let grew = true; grew; ) {
        grew = false;
        for (const row of rows) {
          if (!waiting.has(row.pid) && row.by.some((pid) => waiting.has(pid))) {
            waiting.add(row.pid);
            grew = true;
          }
        }
      }
      return waiting.size - 1 >= 2;
    });
    await sql.query('COMMIT');
    const stops = await stopping;
    assert.deepEqual(stops.map((s) => s.status).sort(), [202, 204]);
    assert.equal(
      stops.find((s) => s.status === 204)?.aliveThen,
      false,
      'a 204 came while the server still ran',
    );
    await waitFor('dup stopped', async () => (await model(leader, 'dup')).server === null);
    assert.equal(terms(dupPid), 1);

    // Through the leader: a server left idle, and a spawn still starting when the leader dies.
    assert.equal((await api(leader, '/users/idle0/server', { method: 'POST' })).status, 201);
    const idle0Pid = (await model(followers[0], 'idle0')).servers[''].state.pid as number;
    assert.equal(
      (await api(leader, '/users/slow/server', { method: 'POST', body: JSON.stringify({ profile: 'slow' }) }))
        .status,
      202,
    );
    // Its process runs, and the state naming it is in the database.
    const slowPid = await waitFor('the slow server process', async () => {
      const { rows } = await sql.query<{ state: string }>(
        "SELECT s.state FROM spawners s JOIN users u ON u.id = s.user_id WHERE u.name = 'slow' AND s.pending = 'spawn'",
      );
      const pid = rows[0] ? (JSON.parse(rows[0].state) as Json).pid : undefined;
      return typeof pid === 'number' && started('slow').some((s) => s.pid === pid) ? pid : undefined;
    });

    // Its progress, followed through a replica that is not running it (from the database).
    const progress = (async () => {
      const response = await api(followers[0], '/users/slow/server/progress');
      assert.equal(response.status, 200);
      const events: Json[] = [];
      const decoder = new TextDecoder();
      let text = '';
      for await (const chunk of response.body!) {
        text += decoder.decode(chunk, { stream: true });
        const blocks = text.split('\n\n');
        text = blocks.pop()!;
        for (const block of blocks) if (block.startsWith('data: ')) events.push(JSON.parse(block.slice(6)));
      }
      return events;
    })();
    progress.catch(() => undefined); // awaited below

    const killedAt = performance.now();
    leader.proc.signal('SIGKILL');
    await leader.proc.exited;
    const [next] = await waitFor(
      'a new leader',
      async () => {
        const found = await leaders(followers);
        return found.length === 1 ? found : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 25 },
    );
    const failoverMs = Math.round(performance.now() - killedAt);
    t.diagnostic(`failover: a new leader ${failoverMs} ms after the SIGKILL`);
    assert.ok(failoverMs < 5000, `failover took ${failoverMs} ms`);
    assert.ok(next);
    const other = followers.find((r) => r !== next)!;
    assert.deepEqual(await leaders(followers), [next]);

    // The half-done spawn: failed in the database, its process stopped, startable again elsewhere.
    const failed = await waitFor(
      'the interrupted spawn to be failed',
      async () => {
        const m = await model(other, 'slow');
        return m.pending === null ? m : undefined;
      },
      { timeoutMs: 20_000 },
    );
    assert.equal(failed.server, null);
    const events = await progress;
    assert.ok(
      events.some((e) => String(e.message).startsWith(`Server process ${slowPid} started`)),
      JSON.stringify(events),
    );
    assert.deepEqual(events.at(-1), {
      progress: 100,
      failed: true,
      message: 'Spawn failed: the hub stopped while the server was starting',
    });
    await waitFor('the interrupted spawn’s process to be gone', () => !alive(slowPid));
    t.diagnostic(
      `the interrupted spawn failed and its process stopped ${Math.round(performance.now() - killedAt)} ms after the SIGKILL`,
    );
    assert.equal((await api(other, '/users/slow/server', { method: 'POST' })).status, 201);

    // Idle servers are culled by the new leader: idle0 (started before the kill) and idle1.
    assert.equal((await api(other, '/users/idle1/server', { method: 'POST' })).status, 201);
    const idle1Pid = (await model(next, 'idle1')).servers[''].state.pid as number;
    await waitFor(
      'idle0 and idle1 culled',
      async () =>
        (await model(next, 'idle0')).server === null && (await model(next, 'idle1')).server === null,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    assert.equal(terms(idle0Pid), 1, 'idle0 stopped once');
    assert.equal(terms(idle1Pid), 1, 'idle1 stopped once');
    assert.ok(!alive(idle0Pid) && !alive(idle1Pid));
    const culls = async (r: Replica) =>
      metric(r, 'seahorse_hub_idle_culls_total{kind="server",reason="inactive"}');
    assert.equal(await culls(other), 0, 'a follower culled');
    assert.ok((await culls(next)) >= 1);

    // Nothing lost: the kept servers run on, as the same processes, through the proxy, and the
    // proxy's hub route now leads to a live replica.
    for (const [i, pid] of keepPids.entries()) {
      const m = await model(other, `keep${i}`);
      assert.equal(m.servers[''].state.pid, pid);
      assert.ok(alive(pid));
      assert.equal(terms(pid), 0);
      assert.equal(((await (await fetch(`${proxyUrl}/user/keep${i}/`)).json()) as Json).user, `keep${i}`);
    }
    await waitFor('the hub through the proxy', async () => (await fetch(`${proxyUrl}/hub/api/`)).ok);
    // Nothing twice: one start per server asked for (slow: the interrupted one and the retry).
    const counts = Object.fromEntries(users.map((u) => [u, started(u).length]));
    assert.deepEqual(counts, { keep0: 1, keep1: 1, keep2: 1, dup: 1, idle0: 1, idle1: 1, slow: 2 });
    for (const user of users) {
      assert.ok(started(user).filter((s) => alive(s.pid)).length <= 1, `${user} runs twice`);
    }
  } catch (error) {
    throw withHubOutput(error, replicas);
  } finally {
    for (const timer of keepAlive) clearInterval(timer);
    await Promise.all(replicas.map((r) => r.proc.stop()));
    for (const { pid } of readFileSync(spawnLog, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => ({ pid: Number(line.split(' ')[0]) }))) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await sql.end().catch(() => undefined);
    await proxy.stop();
    await postgres.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a leader process frozen (SIGSTOP) with its PostgreSQL session open loses the lead to another replica within the lease; resumed, it follows', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-frozen-'));
  const postgres = await startPostgres();
  const [proxyPort, apiPort] = [await freePort(), await freePort()];
  const proxy = startProxy(proxyPort, apiPort);
  const replicas: Replica[] = [];
  try {
    for (const index of [0, 1]) {
      replicas.push(
        await startReplica(dir, index, (url) => ({
          JupyterHub: {
            hub_bind_url: url,
            bind_url: `http://127.0.0.1:${proxyPort}`,
            db_url: postgres.url,
            authenticator_class: 'dummy',
            cleanup_servers: false,
            authenticate_prometheus: false,
          },
          ConfigurableHTTPProxy: { should_start: false, api_url: `http://127.0.0.1:${apiPort}` },
          // A term counts 1.25 s after its last proof; PostgreSQL ends a session idle for 2.5 s.
          Leadership: { interval: 0.25, timeout: 1 },
        })),
      );
    }
    await untilHealthy(replicas);
    const leads = async (r: Replica) => {
      const text = await (await fetch(`${r.url}/hub/metrics`, { signal: AbortSignal.timeout(2000) })).text();
      return /^seahorse_hub_leader 1$/m.test(text);
    };
    const [leader] = await waitFor('one leader', async () => {
      const flags = await Promise.all(replicas.map((r) => leads(r).catch(() => false)));
      const found = replicas.filter((_, i) => flags[i]);
      return found.length === 1 ? found : undefined;
    });
    const other = replicas.find((r) => r !== leader)!;
    const frozenAt = performance.now();
    leader!.proc.pause();
    await waitFor('the other replica to lead', () => leads(other), { timeoutMs: 20_000, intervalMs: 50 });
    const tookOver = performance.now() - frozenAt;
    t.diagnostic(`frozen leader: another replica leads ${Math.round(tookOver)} ms after the SIGSTOP`);
    assert.ok(tookOver < 10_000, `${Math.round(tookOver)} ms`);
    leader!.proc.resume();
    // Resumed, it finds its term over (no proof for longer than it may count) and follows.
    await waitFor('the resumed replica to say its term ended', () =>
      /this replica is no longer the leader/.test(leader!.proc.output),
    );
    for (let i = 0; i < 10; i++) {
      assert.deepEqual(await Promise.all([leads(leader!), leads(other)]), [false, true]);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (error) {
    throw withHubOutput(error, replicas);
  } finally {
    for (const r of replicas) r.proc.resume();
    await Promise.all(replicas.map((r) => r.proc.stop()));
    await proxy.stop();
    await postgres.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
