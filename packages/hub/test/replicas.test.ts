// Two hub processes on one PostgreSQL: each sees what the other wrote (users, tokens, servers,
// login sessions), because nothing lives only in memory.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type PostgresServer, startPostgres, waitFor } from '@seahorse/runtime/testing';
import pg from 'pg';
import { latestVersion } from '../src/db/migrations.ts';
import { signIn, startTestHub, type TestHub } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

/** PostgreSQL and the hubs a test starts on it, the second and later on the first one's proxy. */
class HubsOnPostgres {
  readonly pg: PostgresServer;
  readonly #hubs: TestHub[] = [];
  private constructor(pg: PostgresServer) {
    this.pg = pg;
  }
  static async start(): Promise<HubsOnPostgres> {
    return new HubsOnPostgres(await startPostgres());
  }
  /** A hub on this PostgreSQL with `traits`; after the first, one using the first one's proxy. */
  async start(traits: Record<string, unknown>): Promise<TestHub> {
    const first = this.#hubs[0];
    const hub = await startTestHub({
      'JupyterHub.db_url': this.pg.url,
      ...traits,
      ...(first && {
        'JupyterHub.bind_url': first.config.bindUrl.href,
        'ConfigurableHTTPProxy.api_url': first.config.proxy.apiUrl,
      }),
    });
    this.#hubs.push(hub);
    return hub;
  }
  async close(hub: TestHub): Promise<void> {
    this.#hubs.splice(this.#hubs.indexOf(hub), 1);
    await hub.close();
  }
  /** Closes the hubs (those on the first one's proxy before the first), then PostgreSQL. */
  async stop(): Promise<void> {
    const [first, ...others] = this.#hubs.splice(0);
    for (const hub of others) await hub.close();
    await first?.close();
    await this.pg.stop();
  }
}

test('a second hub on the same PostgreSQL serves the users, tokens, servers and sessions of the first', async () => {
  const hubs = await HubsOnPostgres.start();
  try {
    const a = await hubs.start({ 'Authenticator.allow_all': true });
    const b = await hubs.start({ 'Authenticator.allow_all': true });
    assert.equal(b.proxyProcess, undefined, 'the second hub uses the proxy the first started');
    await a.api('/users/alice', { method: 'POST' });
    assert.equal((await b.api('/users/alice')).status, 200);
    const { token } = (await (await a.api('/users/alice/tokens', { method: 'POST' })).json()) as Json;
    assert.equal(((await (await b.api('/user', { token })).json()) as Json).name, 'alice');
    // A server started through one hub is stopped through the other, from the state in the database.
    await a.api('/users/alice/server', { method: 'POST' });
    await waitFor('ready', async () => ((await (await b.api('/users/alice')).json()) as Json).server);
    const pid = ((await (await b.api('/users/alice')).json()) as Json).servers[''].state.pid as number;
    assert.equal((await fetch(`${b.proxyUrl}/user/alice/`)).status, 200);
    const stop = await b.api('/users/alice/server', { method: 'DELETE' });
    assert.ok([202, 204].includes(stop.status));
    await waitFor('stopped', () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    // A login cookie from one hub is accepted by the other (the secret is in the database).
    const cookie = await signIn(a.url, 'alice', 'x');
    // (With a Referer of the hub's pages, as a browser sends: JupyterHub 3.0's rule for cookies.)
    const self = await fetch(`${b.url}/hub/api/user`, { headers: { cookie, referer: `${b.url}/hub/home` } });
    assert.equal(self.status, 200);
  } finally {
    await hubs.stop();
  }
});

test('the login throttle is shared: 10 failed sign-ins spread over two hubs on one PostgreSQL lock the client out of both', async () => {
  const hubs = await HubsOnPostgres.start();
  try {
    const traits = { 'Authenticator.allow_all': true, 'PasswordAuthenticator.password': 'correct-pw' };
    const a = await hubs.start(traits);
    const b = await hubs.start(traits);
    /** One sign-in attempt as a browser behind the proxy at `client` (the proxy's X-Forwarded-For). */
    const attempt = async (hub: TestHub, password: string, client: string) => {
      const headers = { 'x-forwarded-for': client };
      const form = await fetch(`${hub.url}/hub/login`, { headers });
      const cookie = form.headers
        .getSetCookie()
        .map((line) => line.split(';')[0]!)
        .join('; ');
      const xsrf = /name="_xsrf" value="([^"]+)"/.exec(await form.text())![1]!;
      const response = await fetch(`${hub.url}/hub/login`, {
        method: 'POST',
        headers: { ...headers, cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ username: 'alice', password, _xsrf: xsrf }),
        redirect: 'manual',
      });
      await response.body?.cancel();
      return response;
    };
    // Five through each hub, two of them at the same moment: every one counts.
    for (let i = 0; i < 4; i++) {
      assert.equal((await attempt(a, `guess-a${i}`, '198.51.100.7')).status, 403);
      assert.equal((await attempt(b, `guess-b${i}`, '198.51.100.7')).status, 403);
    }
    const both = await Promise.all([attempt(a, 'x', '198.51.100.7'), attempt(b, 'y', '198.51.100.7')]);
    assert.deepEqual(
      both.map((r) => r.status),
      [403, 403],
    );
    for (const hub of [a, b]) {
      const blocked = await attempt(hub, 'correct-pw', '198.51.100.7');
      assert.equal(blocked.status, 429);
      assert.ok(Number(blocked.headers.get('retry-after')) > 200);
    }
    // Another client is not locked out, and its success through one hub clears only its own count.
    assert.equal((await attempt(b, 'correct-pw', '198.51.100.8')).status, 302);
    assert.equal((await attempt(a, 'correct-pw', '198.51.100.7')).status, 429);
    // With the first hub gone, the other still refuses: the count is in the database, not in a process.
    await hubs.close(a);
    assert.equal((await attempt(b, 'correct-pw', '198.51.100.7')).status, 429);
  } finally {
    await hubs.stop();
  }
});

test('three hubs started at once on an empty PostgreSQL database all come up, with one schema and the configuration written once', async () => {
  const postgres = await startPostgres();
  const sql = new pg.Client({ connectionString: postgres.url });
  await sql.connect();
  const schemaOf = async (database: string) => {
    const client = new pg.Client({ connectionString: postgres.url.replace(/\/postgres$/, `/${database}`) });
    await client.connect();
    try {
      const columns = await client.query<{ t: string; c: string; type: string }>(
        `SELECT table_name AS t, column_name AS c, data_type AS type FROM information_schema.columns
         WHERE table_schema = 'public' ORDER BY 1, 2`,
      );
      const indexes = await client.query<{ name: string }>(
        `SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`,
      );
      const versions = await client.query<{ version: number }>(
        'SELECT version FROM schema_migrations ORDER BY 1',
      );
      const count = async (query: string) => Number((await client.query<{ n: string }>(query)).rows[0]!.n);
      return {
        columns: columns.rows.map((row) => `${row.t}.${row.c} ${row.type}`),
        indexes: indexes.rows.map((row) => row.name),
        versions: versions.rows.map((row) => row.version),
        admins: await count(`SELECT COUNT(*) AS n FROM users WHERE name = 'root-admin'`),
        secrets: await count(`SELECT COUNT(*) AS n FROM hub_secrets WHERE name = 'cookie_secret'`),
      };
    } finally {
      await client.end();
    }
  };
  // The schema one hub alone makes.
  await sql.query('CREATE DATABASE alone');
  const alone = await startTestHub({ 'JupyterHub.db_url': postgres.url.replace(/\/postgres$/, '/alone') });
  await alone.close();
  const expected = await schemaOf('alone');
  assert.deepEqual(
    expected.versions,
    Array.from({ length: latestVersion }, (_, i) => i + 1),
  );
  const hubs: TestHub[] = [];
  try {
    for (const round of [1, 2, 3]) {
      const database = `race${round}`;
      await sql.query(`CREATE DATABASE ${database}`);
      const traits = {
        'JupyterHub.db_url': postgres.url.replace(/\/postgres$/, `/${database}`),
        'Authenticator.allow_all': true,
        'Authenticator.admin_users': ['root-admin'],
        'Authenticator.allowed_users': ['alice', 'bob'],
        'JupyterHub.load_roles': [{ name: 'readers', scopes: ['read:users'], users: ['alice'] }],
      };
      // Started in the same tick: their migrations and configuration writes overlap.
      const started = await Promise.allSettled([1, 2, 3].map(() => startTestHub(traits)));
      for (const result of started) if (result.status === 'fulfilled') hubs.push(result.value);
      const failures = started.flatMap((result) =>
        result.status === 'rejected' ? [String((result.reason as Error).stack ?? result.reason)] : [],
      );
      assert.deepEqual(failures, [], `round ${round}: every hub starts`);
      const schema = await schemaOf(database);
      assert.deepEqual(schema.columns, expected.columns, `round ${round}: the same tables and columns`);
      assert.deepEqual(schema.indexes, expected.indexes, `round ${round}: the same indexes`);
      assert.deepEqual(schema.versions, expected.versions, `round ${round}: each migration once`);
      assert.equal(schema.admins, 1);
      assert.equal(schema.secrets, 1);
      // Each serves: the admin service's token (written by all three) and the users.
      for (const hub of hubs) {
        const answer = await hub.api('/users/alice');
        assert.equal(answer.status, 200);
        assert.deepEqual(((await answer.json()) as Json).roles.sort(), ['readers', 'user']);
      }
      // A login through one hub is accepted by the others: one cookie secret.
      const cookie = await signIn(hubs[0]!.url, 'alice', 'x');
      for (const hub of hubs.slice(1)) {
        const self = await fetch(`${hub.url}/hub/api/user`, {
          headers: { cookie, referer: `${hub.url}/hub/home` },
        });
        assert.equal(self.status, 200);
      }
      for (const hub of hubs.splice(0)) await hub.close();
    }
  } finally {
    for (const hub of hubs) await hub.close();
    await sql.end();
    await postgres.stop();
  }
});

test('first sign-ins of new users at once through two hubs on one PostgreSQL all succeed (the user is created once)', async () => {
  const hubs = await HubsOnPostgres.start();
  try {
    const a = await hubs.start({ 'Authenticator.allow_all': true });
    const b = await hubs.start({ 'Authenticator.allow_all': true });
    const both = [a, b];
    const failures: string[] = [];
    for (let round = 0; round < 5; round++) {
      const name = `newbie${round}`;
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => signIn(both[i % 2]!.url, name, 'x')),
      );
      for (const result of results)
        if (result.status === 'rejected') failures.push(`${name}: ${result.reason}`);
      assert.equal(((await (await a.api(`/users/${name}`)).json()) as Json).name, name);
    }
    assert.deepEqual(failures, []);
  } finally {
    await hubs.stop();
  }
});

test('a replica starting writes load_roles without a moment in which a running replica finds the role’s members without it', async () => {
  const hubs = await HubsOnPostgres.start();
  const traits = {
    'Authenticator.allow_all': true,
    'JupyterHub.load_roles': [
      {
        name: 'auditor',
        scopes: ['list:users'],
        users: ['ruth', ...Array.from({ length: 300 }, (_, i) => `member${i}`)],
      },
    ],
  };
  try {
    const a = await hubs.start(traits);
    const { token } = (await (await a.api('/users/ruth/tokens', { method: 'POST' })).json()) as Json;
    assert.equal((await a.api('/users', { token })).status, 200);
    let polling = true;
    const statuses = new Map<number, number>();
    const poller = (async () => {
      while (polling) {
        const status = (await a.api('/users?limit=1', { token })).status;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    })();
    for (let i = 0; i < 2; i++) await hubs.start(traits);
    polling = false;
    await poller;
    assert.deepEqual([...statuses.keys()], [200], JSON.stringify([...statuses]));
  } finally {
    await hubs.stop();
  }
});
