// The REST API against a real hub, our real proxy and real server processes, on SQLite and on
// a real PostgreSQL: status codes, JSON fields and messages as JupyterHub's.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type PostgresServer, startPostgres, waitFor } from '@seahorse/runtime/testing';
import { startTestHub, type TestHub } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, unknown> & { [key: string]: any };

async function json(response: Response): Promise<Json> {
  return (await response.json()) as Json;
}

const backends: Array<[string, () => Promise<{ url?: string; stop(): Promise<void> }>]> = [
  ['SQLite', async () => ({ stop: async () => undefined })],
  [
    'PostgreSQL',
    async () => {
      const pg: PostgresServer = await startPostgres();
      return { url: pg.url, stop: () => pg.stop() };
    },
  ],
];

for (const [backend, startBackend] of backends) {
  describe(`REST API on ${backend}`, () => {
    let hub: TestHub;
    let database: { url?: string; stop(): Promise<void> };
    before(async () => {
      database = await startBackend();
      hub = await startTestHub({
        ...(database.url ? { 'JupyterHub.db_url': database.url } : {}),
        'JupyterHub.allow_named_servers': true,
        'JupyterHub.named_server_limit_per_user': 2,
        'JupyterHub.slow_spawn_timeout': 0.2,
        'JupyterHub.load_roles': [
          {
            name: 'culler',
            scopes: ['list:users', 'read:users:activity', 'read:servers', 'delete:servers'],
            services: ['culler'],
          },
        ],
        'JupyterHub.services': [
          { name: 'admin-service', api_token: 'admin-service-token-0123456789abcdef', admin: true },
          { name: 'culler', api_token: 'culler-token-0123456789' },
        ],
      });
    });
    after(async () => {
      await hub?.close();
      await database?.stop();
    });

    test('GET /hub/api/ answers the version without a token', async () => {
      const response = await hub.api('/', { token: '' });
      assert.equal(response.status, 200);
      assert.match((await json(response)).version, /^\d+\.\d+\.\d+$/);
    });

    test('no token or an unknown one is 403 with JupyterHub’s message', async () => {
      for (const token of ['', 'not-a-token']) {
        const response = await hub.api('/users', { token });
        assert.equal(response.status, 403);
        assert.deepEqual(await json(response), {
          status: 403,
          message: 'Action is not authorized with current scopes; requires any of [list:users]',
        });
      }
    });

    test('bulk create: 201 with user models; again 409; an invalid name 400', async () => {
      let response = await hub.api('/users', {
        method: 'POST',
        body: JSON.stringify({ usernames: ['alice', 'bob', 'carol'] }),
      });
      assert.equal(response.status, 201);
      const created = (await response.json()) as Json[];
      assert.deepEqual(
        created.map((u) => u.name),
        ['alice', 'bob', 'carol'],
      );
      const alice = created[0]!;
      assert.equal(alice.kind, 'user');
      assert.equal(alice.admin, false);
      assert.deepEqual(alice.roles, ['user']);
      assert.deepEqual(alice.groups, []);
      assert.equal(alice.server, null);
      assert.equal(alice.pending, null);
      assert.equal(alice.last_activity, null);
      assert.match(alice.created, /^\d{4}-\d\d-\d\dT/);
      assert.deepEqual(alice.servers, {});
      response = await hub.api('/users', {
        method: 'POST',
        body: JSON.stringify({ usernames: ['alice', 'bob'] }),
      });
      assert.equal(response.status, 409);
      assert.equal((await json(response)).message, 'All 2 users already exist');
      response = await hub.api('/users', {
        method: 'POST',
        body: JSON.stringify({ usernames: ['bad/name'] }),
      });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).message, 'Invalid username: bad/name');
      response = await hub.api('/users', { method: 'POST', body: JSON.stringify({}) });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).message, 'Must specify at least one user to create');
    });

    test('POST /users/{name}: 201, then 409 for a duplicate; unknown user 404', async () => {
      let response = await hub.api('/users/dave', { method: 'POST', body: JSON.stringify({ admin: true }) });
      assert.equal(response.status, 201);
      const dave = await json(response);
      assert.equal(dave.admin, true);
      assert.deepEqual(dave.roles, ['admin', 'user']);
      response = await hub.api('/users/dave', { method: 'POST' });
      assert.equal(response.status, 409);
      assert.equal((await json(response)).message, 'User dave already exists');
      response = await hub.api('/users/nobody');
      assert.equal(response.status, 404);
      assert.deepEqual(await json(response), { status: 404, message: 'Not Found' });
      response = await hub.api('/users/Bad%20Name', { method: 'POST' });
      assert.equal(response.status, 400);
    });

    test('malformed JSON is 400 saying so; an oversized body 413; a wrong field type 400', async () => {
      let response = await hub.api('/users', { method: 'POST', body: '{"usernames": [' });
      assert.equal(response.status, 400);
      assert.match((await json(response)).message, /^Invalid JSON in body of request: /);
      response = await hub.api('/users', {
        method: 'POST',
        body: JSON.stringify({ usernames: ['x'.repeat(2_000_000)] }),
      });
      assert.equal(response.status, 413);
      response = await hub.api('/users/alice', { method: 'PATCH', body: JSON.stringify({ admin: 'yes' }) });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).message, 'user.admin must be a bool, not string');
    });

    test('PATCH renames and sets admin; a taken name is 400', async () => {
      await hub.api('/users/erin', { method: 'POST' });
      let response = await hub.api('/users/erin', {
        method: 'PATCH',
        body: JSON.stringify({ name: 'erin2', admin: true }),
      });
      assert.equal(response.status, 200);
      const model = await json(response);
      assert.equal(model.name, 'erin2');
      assert.equal(model.admin, true);
      response = await hub.api('/users/erin2', { method: 'PATCH', body: JSON.stringify({ name: 'alice' }) });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).message, 'User alice already exists, username must be unique');
      response = await hub.api('/users/erin2', { method: 'DELETE' });
      assert.equal(response.status, 204);
      assert.equal((await hub.api('/users/erin2')).status, 404);
      assert.equal((await hub.api('/users/erin2', { method: 'DELETE' })).status, 404);
    });

    test('pagination: the media type gives items and _pagination with a next link', async () => {
      await hub.api('/users', {
        method: 'POST',
        body: JSON.stringify({ usernames: Array.from({ length: 12 }, (_, i) => `page-${i}`) }),
      });
      const accept = { accept: 'application/jupyterhub-pagination+json' };
      let response = await hub.api('/users?limit=5&offset=2', { headers: accept });
      assert.equal(response.status, 200);
      const page = await json(response);
      assert.equal(page.items.length, 5);
      assert.equal(page._pagination.offset, 2);
      assert.equal(page._pagination.limit, 5);
      assert.ok(page._pagination.total >= 15);
      assert.equal(page._pagination.next.offset, 7);
      assert.match(page._pagination.next.url, /offset=7/);
      response = await hub.api('/users?limit=5&offset=2');
      const plain = (await response.json()) as Json[];
      assert.ok(Array.isArray(plain));
      assert.deepEqual(
        plain.map((u) => u.name),
        page.items.map((u: Json) => u.name),
      );
      response = await hub.api('/users?limit=abc');
      assert.equal(response.status, 400);
      assert.equal(
        (await json(response)).message,
        'Invalid argument type, offset and limit must be integers',
      );
      response = await hub.api('/users?state=sleeping');
      assert.equal(response.status, 400);
      assert.equal((await json(response)).message, "Unrecognized state filter: 'sleeping'");
      response = await hub.api('/users?name_filter=page-1');
      const filtered = (await response.json()) as Json[];
      assert.deepEqual(filtered.map((u) => u.name).sort(), ['page-1', 'page-10', 'page-11']);
    });

    test('pagination: the total counts the filtered users, also on a page past the end', async () => {
      await hub.api('/users', {
        method: 'POST',
        body: JSON.stringify({ usernames: Array.from({ length: 7 }, (_, i) => `total-${i}`) }),
      });
      const accept = { accept: 'application/jupyterhub-pagination+json' };
      let page = await json(await hub.api('/users?name_filter=total-&limit=3&offset=3', { headers: accept }));
      assert.deepEqual(
        page.items.map((u: Json) => u.name),
        ['total-3', 'total-4', 'total-5'],
      );
      assert.deepEqual(page._pagination, {
        offset: 3,
        limit: 3,
        total: 7,
        next: {
          offset: 6,
          limit: 3,
          url: page._pagination.next.url,
        },
      });
      page = await json(await hub.api('/users?name_filter=total-&limit=3&offset=6', { headers: accept }));
      assert.deepEqual(page._pagination, { offset: 6, limit: 3, total: 7, next: null });
      page = await json(await hub.api('/users?name_filter=total-&limit=3&offset=50', { headers: accept }));
      assert.deepEqual(page, { items: [], _pagination: { offset: 50, limit: 3, total: 7, next: null } });
    });

    test('tokens: created once shown, stored hashed, listed, expire, deleted', async () => {
      let response = await hub.api('/users/alice/tokens', {
        method: 'POST',
        body: JSON.stringify({ note: 'for tests', expires_in: 3600 }),
      });
      assert.equal(response.status, 201);
      const created = await json(response);
      assert.match(created.token, /^[0-9a-f]{48}$/);
      assert.match(created.id, /^a\d+$/);
      assert.equal(created.user, 'alice');
      assert.equal(created.kind, 'api_token');
      assert.equal(created.note, 'for tests');
      assert.ok(created.expires_at > new Date().toISOString());
      assert.ok(created.scopes.includes('read:users!user=alice'));
      const stored = await hub.db.get<{ hashed: string }>('SELECT hashed FROM api_tokens WHERE id = ?', [
        Number(created.id.slice(1)),
      ]);
      assert.notEqual(stored?.hashed, created.token);
      assert.ok(!JSON.stringify(await (await hub.api('/users/alice/tokens')).json()).includes(created.token));
      // The user's own token reads itself but not other users: 404 as JupyterHub hides them.
      response = await hub.api('/user', { token: created.token });
      assert.equal(response.status, 200);
      const self = await json(response);
      assert.equal(self.name, 'alice');
      assert.ok(self.scopes.includes('access:servers!user=alice'));
      assert.equal((await hub.api('/users/alice', { token: created.token })).status, 200);
      response = await hub.api('/users/bob', { token: created.token });
      assert.equal(response.status, 404);
      assert.equal((await json(response)).message, 'No access to resources or resources not found');
      response = await hub.api('/users', { token: created.token });
      assert.equal(response.status, 403);
      response = await hub.api(`/users/alice/tokens/${created.id}`, {
        method: 'DELETE',
        token: created.token,
      });
      assert.equal(response.status, 204);
      assert.equal((await hub.api('/user', { token: created.token })).status, 403);
      response = await hub.api(`/users/alice/tokens/${created.id}`);
      assert.equal(response.status, 404);
      assert.equal((await json(response)).message, `No such token ${created.id} for user alice`);
    });

    test('an expired token is refused with 403; a negative expires_in is 400 (JupyterHub: 500)', async () => {
      const response = await hub.api('/users/bob/tokens', {
        method: 'POST',
        body: JSON.stringify({ expires_in: 1 }),
      });
      const { token, id } = await json(response);
      assert.equal((await hub.api('/user', { token })).status, 200);
      await hub.db.run("UPDATE api_tokens SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = ?", [
        Number(id.slice(1)),
      ]);
      assert.equal((await hub.api('/user', { token })).status, 403);
      const listed = await json(await hub.api('/users/bob/tokens'));
      assert.ok(!listed.api_tokens.some((t: Json) => t.id === id), 'expired tokens are not listed');
      const negative = await hub.api('/users/bob/tokens', {
        method: 'POST',
        body: JSON.stringify({ expires_in: -5 }),
      });
      assert.equal(negative.status, 400);
      assert.equal((await json(negative)).message, 'expires_in must be a positive number of seconds');
    });

    test('a token limited by scopes holds only those; more than the owner holds is 403', async () => {
      let response = await hub.api('/users/bob/tokens', {
        method: 'POST',
        body: JSON.stringify({ scopes: ['read:users:activity!user=bob'] }),
      });
      assert.equal(response.status, 201);
      const limited = await json(response);
      const model = await json(await hub.api('/users/bob', { token: limited.token }));
      assert.deepEqual(Object.keys(model).sort(), ['kind', 'last_activity', 'name']);
      assert.equal(
        (await hub.api('/users/bob/server', { method: 'POST', token: limited.token })).status,
        403,
      );
      const bobToken = (await json(await hub.api('/users/bob/tokens', { method: 'POST' }))).token;
      response = await hub.api('/users/bob/tokens', {
        method: 'POST',
        token: bobToken,
        body: JSON.stringify({ scopes: ['admin:users'] }),
      });
      assert.equal(response.status, 403);
      assert.match((await json(response)).message, /^Not assigning requested scopes .*admin:users/);
      response = await hub.api('/users/alice/tokens', { method: 'POST', token: bobToken });
      assert.equal(response.status, 403);
      assert.equal(
        (await json(response)).message,
        'User alice not found or no permissions to generate tokens',
      );
    });

    test('activity: moves forward only; bad timestamps and unknown servers are 400', async () => {
      const when = new Date(Date.now() - 60_000).toISOString();
      let response = await hub.api('/users/carol/activity', {
        method: 'POST',
        body: JSON.stringify({ last_activity: when }),
      });
      assert.equal(response.status, 200);
      assert.equal((await json(await hub.api('/users/carol'))).last_activity, when);
      await hub.api('/users/carol/activity', {
        method: 'POST',
        body: JSON.stringify({ last_activity: '2001-01-01T00:00:00Z' }),
      });
      assert.equal((await json(await hub.api('/users/carol'))).last_activity, when);
      response = await hub.api('/users/carol/activity', {
        method: 'POST',
        body: JSON.stringify({ last_activity: 'soon' }),
      });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).message, "Not a valid timestamp: 'soon'");
      response = await hub.api('/users/carol/activity', {
        method: 'POST',
        body: JSON.stringify({ servers: { nope: { last_activity: when } } }),
      });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).message, "No such server 'nope' for user carol");
      response = await hub.api('/users/carol/activity', { method: 'POST', body: JSON.stringify({}) });
      assert.equal(response.status, 400);
      response = await hub.api('/users/nobody/activity', {
        method: 'POST',
        body: JSON.stringify({ last_activity: when }),
      });
      assert.equal(response.status, 404);
      assert.equal((await json(response)).message, "No such user: 'nobody'");
      // An unknown user is a 404 whatever the body holds, as in JupyterHub (the user is looked up first).
      for (const body of ['{not json', '[]', JSON.stringify({ last_activity: 'soon' })]) {
        response = await hub.api('/users/nobody/activity', { method: 'POST', body });
        assert.equal(response.status, 404, body);
      }
      response = await hub.api('/users/carol/activity', { method: 'POST', body: '{not json' });
      assert.equal(response.status, 400);
      assert.match((await json(response)).message, /^Invalid JSON in body of request/);
    });

    test('servers: start 201, reached through the proxy, listed, start again 400, stop 204', async () => {
      let response = await hub.api('/users/alice/server', {
        method: 'POST',
        body: JSON.stringify({ profile: 'small' }),
      });
      assert.ok(response.status === 201 || response.status === 202, `status ${response.status}`);
      await waitFor(
        'alice ready',
        async () => (await json(await hub.api('/users/alice'))).server === '/user/alice/',
      );
      const model = await json(await hub.api('/users/alice'));
      const server = model.servers[''];
      assert.equal(server.ready, true);
      assert.equal(server.stopped, false);
      assert.equal(server.pending, null);
      assert.equal(server.url, '/user/alice/');
      assert.deepEqual(server.user_options, { profile: 'small' });
      assert.equal(server.progress_url, '/hub/api/users/alice/server/progress');
      assert.equal(typeof server.state.pid, 'number');
      const proxied = await fetch(`${hub.proxyUrl}/user/alice/api/status`);
      assert.equal(proxied.status, 200);
      assert.equal((await json(proxied)).user, 'alice');
      const routes = await json(await hub.api('/proxy'));
      // JupyterHub's own shape, not CHP's: routespec, target, data (without the jupyterhub flag).
      const route = routes['/user/alice/'];
      assert.equal(route.routespec, '/user/alice/');
      assert.equal(route.target, `http://127.0.0.1:${server.state.port}`);
      assert.deepEqual(
        { ...route.data, last_activity: undefined },
        { user: 'alice', server_name: '', last_activity: undefined },
      );
      assert.deepEqual(routes['/'].data.hub, true);
      response = await hub.api('/users/alice/server', { method: 'POST' });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).message, 'alice is already running');
      const active = (await (await hub.api('/users?state=active')).json()) as Json[];
      assert.deepEqual(
        active.map((u) => u.name),
        ['alice'],
      );
      const inactive = (await (await hub.api('/users?state=inactive')).json()) as Json[];
      assert.ok(!inactive.some((u) => u.name === 'alice'));
      const progress = await hub.api('/users/alice/server/progress');
      assert.equal(progress.headers.get('content-type'), 'text/event-stream');
      const events = (await progress.text()).trim().split('\n\n');
      assert.deepEqual(JSON.parse(events.at(-1)!.slice('data: '.length)), {
        progress: 100,
        ready: true,
        message: 'Server ready at /user/alice/',
        html_message: 'Server ready at <a href="/user/alice/">/user/alice/</a>',
        url: '/user/alice/',
      });
      response = await hub.api('/users/alice/server', { method: 'DELETE' });
      assert.ok(response.status === 204 || response.status === 202);
      await waitFor('alice stopped', async () => (await json(await hub.api('/users/alice'))).server === null);
      await waitFor('route gone', async () => !(await json(await hub.api('/proxy')))['/user/alice/']);
      // The hub answers now: it sends the browser to /hub/user/… (its pages), as JupyterHub does.
      const gone = await fetch(`${hub.proxyUrl}/user/alice/api/status`, { redirect: 'manual' });
      assert.equal(gone.status, 302);
      assert.equal(gone.headers.get('location'), '/hub/user/alice/api/status');
    });

    test('the culler service’s role: list users and stop servers, not create users', async () => {
      const token = 'culler-token-0123456789';
      const list = (await (await hub.api('/users', { token })).json()) as Json[];
      assert.ok(list.length > 3);
      assert.deepEqual(Object.keys(list[0]!).sort(), ['admin', 'kind', 'last_activity', 'name', 'servers']);
      const response = await hub.api('/users/zed', { method: 'POST', token });
      assert.equal(response.status, 403);
      assert.equal(
        (await json(response)).message,
        'Action is not authorized with current scopes; requires any of [admin:users]',
      );
      assert.equal((await hub.api('/users/bob/server', { method: 'DELETE', token })).status, 204);
    });

    test('named servers up to the limit, the next refused; remove deletes it', async () => {
      for (const name of ['one', 'two']) {
        const response = await hub.api(`/users/carol/servers/${name}`, { method: 'POST' });
        assert.ok([201, 202].includes(response.status), `${name}: ${response.status}`);
      }
      let response = await hub.api('/users/carol/servers/three', { method: 'POST' });
      assert.equal(response.status, 400);
      assert.equal(
        (await json(response)).message,
        'User carol already has the maximum of 2 named servers.  One must be deleted before a new server can be created',
      );
      await waitFor('named servers ready', async () => {
        const servers = (await json(await hub.api('/users/carol'))).servers;
        return servers.one?.ready && servers.two?.ready;
      });
      assert.equal((await fetch(`${hub.proxyUrl}/user/carol/two/x`)).status, 200);
      response = await hub.api('/users/carol/servers/two', {
        method: 'DELETE',
        body: JSON.stringify({ remove: true }),
      });
      assert.ok([202, 204].includes(response.status));
      await waitFor('two removed', async () => {
        const row = await hub.db.get("SELECT id FROM spawners WHERE name = 'two'");
        return row === undefined;
      });
      response = await hub.api('/users/carol/servers/three', { method: 'POST' });
      assert.ok([201, 202].includes(response.status));
      response = await hub.api('/users/carol/servers/nope', { method: 'DELETE' });
      assert.equal(response.status, 404);
      assert.equal((await json(response)).message, "carol has no server named 'nope'");
      response = await hub.api('/users/carol/server', {
        method: 'DELETE',
        body: JSON.stringify({ remove: true }),
      });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).message, 'Cannot delete the default server');
    });

    test('a spawner that fails: a clear message in the API and in the progress stream', async () => {
      const response = await hub.api('/users/dave/server', {
        method: 'POST',
        body: JSON.stringify({ fail: 'no GPU left' }),
      });
      // A failure within slow_spawn_timeout is the start request's answer; a later one (a
      // loaded machine) is seen in the progress stream only.
      if (response.status === 500) {
        assert.match(
          (await json(response)).message,
          /^Spawn failed: server exited with status 3: cannot start: no GPU left/,
        );
      } else {
        assert.equal(response.status, 202);
        await waitFor('spawn over', async () => (await json(await hub.api('/users/dave'))).pending === null);
      }
      const progress = await hub.api('/users/dave/server/progress');
      assert.equal(progress.status, 200);
      const last = (await progress.text()).trim().split('\n\n').at(-1)!;
      const event = JSON.parse(last.slice('data: '.length));
      assert.equal(event.failed, true);
      assert.match(event.message, /^Spawn failed: .*no GPU left/);
      const model = await json(await hub.api('/users/dave'));
      assert.equal(model.server, null);
      assert.equal(model.pending, null);
    });

    test('start while pending answers 202 again; progress streams until the ready event', async () => {
      let response = await hub.api('/users/page-3/server', {
        method: 'POST',
        body: JSON.stringify({ delay_ms: 1500 }),
      });
      assert.equal(response.status, 202);
      const model = await json(await hub.api('/users/page-3'));
      assert.equal(model.pending, 'spawn');
      assert.equal(model.servers[''].pending, 'spawn');
      assert.equal(model.servers[''].ready, false);
      response = await hub.api('/users/page-3/server', { method: 'POST' });
      assert.equal(response.status, 202);
      response = await hub.api('/users/page-3/server', { method: 'DELETE' });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).message, 'page-3 is pending spawn, please wait');
      const progress = await hub.api('/users/page-3/server/progress');
      const events = (await progress.text())
        .trim()
        .split('\n\n')
        .map((chunk) => JSON.parse(chunk.slice('data: '.length)));
      assert.ok(events.some((e) => e.message === 'waiting as asked'));
      assert.equal(events.at(-1).ready, true);
      assert.equal(events.at(-1).url, '/user/page-3/');
      assert.equal((await hub.api('/users/page-3/server', { method: 'DELETE' })).status, 204);
    });

    test('DELETE of the server of an unknown user is 404 (JupyterHub: 500)', async () => {
      const response = await hub.api('/users/ghost/server', { method: 'DELETE' });
      assert.equal(response.status, 404);
    });

    test('groups: create, add members, shown in user models, delete', async () => {
      let response = await hub.api('/groups/team', {
        method: 'POST',
        body: JSON.stringify({ users: ['alice'] }),
      });
      assert.equal(response.status, 201);
      assert.deepEqual(await json(response), {
        kind: 'group',
        name: 'team',
        roles: [],
        users: ['alice'],
        properties: {},
      });
      assert.equal((await hub.api('/groups/team', { method: 'POST' })).status, 409);
      response = await hub.api('/groups/team/users', {
        method: 'POST',
        body: JSON.stringify({ users: ['bob'] }),
      });
      assert.deepEqual((await json(response)).users, ['alice', 'bob']);
      assert.deepEqual((await json(await hub.api('/users/bob'))).groups, ['team']);
      // A page of the list shows every user as GET /users/{name} does (groups, roles, servers).
      for (const headers of [{}, { accept: 'application/jupyterhub-pagination+json' }]) {
        for (const query of ['', '&include_stopped_servers']) {
          const body = await json(await hub.api(`/users?limit=200${query}`, { headers }));
          const items = (Array.isArray(body) ? body : body.items) as Json[];
          assert.ok(items.some((u) => u.name === 'bob' && u.groups.includes('team')));
          for (const item of items) {
            assert.deepEqual(item, await json(await hub.api(`/users/${item.name}?${query.slice(1)}`)));
          }
        }
      }
      const groups = (await (await hub.api('/groups')).json()) as Json[];
      assert.deepEqual(
        groups.map((g) => g.name),
        ['team'],
      );
      assert.equal((await hub.api('/groups/team', { method: 'DELETE' })).status, 204);
      assert.equal((await hub.api('/groups/team')).status, 404);
    });

    test('services are listed with JupyterHub’s fields', async () => {
      const services = await json(await hub.api('/services'));
      assert.deepEqual(Object.keys(services).sort(), ['admin-service', 'culler']);
      assert.equal(services.culler.kind, 'service');
      assert.deepEqual(services.culler.roles, ['culler']);
      const self = await json(await hub.api('/user', { token: 'culler-token-0123456789' }));
      assert.equal(self.kind, 'service');
      assert.ok(self.scopes.includes('list:users'));
      assert.equal((await hub.api('/services/nope')).status, 404);
    });

    test('unknown API paths are 404 and wrong methods 405, as JSON', async () => {
      let response = await hub.api('/nothing/here');
      assert.equal(response.status, 404);
      assert.equal(response.headers.get('content-type'), 'application/json');
      response = await hub.api('/users', { method: 'PUT' });
      assert.equal(response.status, 405);
    });

    test('health and metrics: /hub/metrics needs read:metrics, then has JupyterHub’s names', async () => {
      assert.equal((await fetch(`${hub.url}/hub/health`)).status, 200);
      assert.equal((await fetch(`${hub.url}/hub/metrics`)).status, 403);
      const response = await fetch(`${hub.url}/hub/metrics`, {
        headers: { authorization: `token ${hub.adminToken}` },
      });
      assert.equal(response.status, 200);
      const text = await response.text();
      for (const name of [
        'jupyterhub_total_users',
        'jupyterhub_running_servers',
        'jupyterhub_server_spawn_duration_seconds',
        'jupyterhub_proxy_poll_duration_seconds',
        'jupyterhub_request_duration_seconds',
        'jupyterhub_check_routes_duration_seconds',
      ]) {
        assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
      }
      assert.match(text, /^jupyterhub_server_spawn_duration_seconds_count\{status="failure"\} [1-9]/m);
    });

    test('the route check restores a missing route and removes a stale one', async () => {
      await hub.api('/users/bob/server', { method: 'POST' });
      await waitFor(
        'bob ready',
        async () => (await json(await hub.api('/users/bob'))).server === '/user/bob/',
      );
      await hub.hub.proxy.deleteRoute('/user/bob/');
      await hub.hub.proxy.addRoute('/user/ghost/', 'http://127.0.0.1:9', {
        user: 'ghost',
        server_name: '',
        jupyterhub: true,
      });
      assert.equal((await hub.api('/proxy', { method: 'POST' })).status, 200);
      const routes = await json(await hub.api('/proxy'));
      assert.ok(routes['/user/bob/'], 'bob restored');
      assert.equal(routes['/user/ghost/'], undefined);
    });

    test('the route check leaves the route of a server whose spawn or stop is pending (added before the spawn is marked ready), as JupyterHub', async () => {
      await hub.api('/users/pat', { method: 'POST' });
      await hub.api('/users/pat/server', { method: 'POST' });
      await waitFor(
        'pat ready',
        async () => (await json(await hub.api('/users/pat'))).server === '/user/pat/',
      );
      // The moment between the spawn's route and its markReady: the row is still pending.
      const id = (await hub.hub.db.get<{ id: number }>(
        "SELECT s.id FROM spawners s JOIN users u ON u.id = s.user_id WHERE u.name = 'pat' AND s.name = ''",
      ))!.id;
      await hub.hub.db.run("UPDATE spawners SET pending = 'spawn', ready = 0 WHERE id = ?", [id]);
      try {
        assert.equal((await hub.api('/proxy', { method: 'POST' })).status, 200);
        assert.ok(
          (await json(await hub.api('/proxy')))['/user/pat/'],
          'the route of a pending spawn is kept',
        );
      } finally {
        await hub.hub.db.run('UPDATE spawners SET pending = NULL, ready = 1 WHERE id = ?', [id]);
      }
      await hub.api('/users/pat/server', { method: 'DELETE' });
      await waitFor('pat stopped', async () => (await json(await hub.api('/users/pat'))).server === null);
    });
  });
}
