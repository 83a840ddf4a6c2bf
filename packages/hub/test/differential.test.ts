// The same requests to the real JupyterHub 3.0 (Debian) and to seahorse-hub, where a user or a
// single-user server can tell the difference: how user and server names are escaped in URLs,
// routes and a server's environment; where a browser lands after signing in; which API requests
// a login cookie authenticates.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@seahorse/runtime/testing';
import { startTestHub, type TestHub } from './helpers.ts';
import { type JupyterHub, startJupyterHub } from './jupyterhub.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

const tinyServer = fileURLToPath(new URL('./fixtures/tiny-server.py', import.meta.url));

interface Side {
  name: string;
  url: string;
  proxyUrl: string;
  api(path: string, init?: RequestInit): Promise<Response>;
}

/** Signs in through the password form as a browser does (the `_xsrf` token where there is one). */
async function login(side: Side, name: string, query = '') {
  const form = await fetch(`${side.url}/hub/login`);
  const cookies = form.headers.getSetCookie().map((line) => line.split(';')[0]!);
  const xsrf = /name="_xsrf" value="([^"]+)"/.exec(await form.text())?.[1];
  const response = await fetch(`${side.url}/hub/login${query}`, {
    method: 'POST',
    headers: { cookie: cookies.join('; '), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username: name, password: 'any', ...(xsrf ? { _xsrf: xsrf } : {}) }),
    redirect: 'manual',
  });
  const session = response.headers
    .getSetCookie()
    .map((line) => line.split(';')[0]!)
    .find((pair) => pair.startsWith('jupyterhub-hub-login='));
  return { status: response.status, location: response.headers.get('location'), cookie: session ?? '' };
}

const names = ['a@b.c', "o'b(x)*!", 'ü~z', 'x&y'];
const serverName = 's@1(x)';
const quoted = (name: string) => encodeURIComponent(name);

describe('seahorse-hub and JupyterHub 3.0, side by side', () => {
  let jupyterhub: JupyterHub;
  let ours: TestHub;
  let sides: Side[];
  before(async () => {
    jupyterhub = await startJupyterHub(
      ['python3', tinyServer, 'serve'],
      ['c.JupyterHub.allow_named_servers = True'],
    );
    ours = await startTestHub(
      {
        'Authenticator.allow_all': true,
        'JupyterHub.allow_named_servers': true,
        'Spawner.cmd': ['python3', tinyServer],
        'Spawner.args': ['serve'],
        'Spawner.start_timeout': 30,
      },
      { spawnerFactory: 'configured' },
    );
    sides = [
      { name: 'JupyterHub 3.0', url: jupyterhub.url, proxyUrl: jupyterhub.proxyUrl, api: jupyterhub.api },
      { name: 'seahorse-hub', url: ours.url, proxyUrl: ours.proxyUrl, api: ours.api },
    ];
  });
  after(async () => {
    await ours?.close();
    await jupyterhub?.stop();
  });

  /** Runs `probe` on both hubs and asserts the same answer. */
  async function same<T>(what: string, probe: (side: Side) => Promise<T>): Promise<T> {
    const [theirs, mine] = [await probe(sides[0]!), await probe(sides[1]!)];
    assert.deepEqual(mine, theirs, `${what}: seahorse-hub differs from JupyterHub 3.0`);
    return mine;
  }

  async function ready(side: Side, name: string, server: string) {
    const path = `/users/${quoted(name)}${server ? `/servers/${quoted(server)}` : '/server'}`;
    const started = await side.api(path, { method: 'POST' });
    assert.ok([201, 202].includes(started.status), `${side.name} ${path}: ${started.status}`);
    await waitFor(
      `${side.name}: ${name}/${server} ready`,
      async () => {
        const user = (await (await side.api(`/users/${quoted(name)}`)).json()) as Json;
        return user.servers?.[server]?.ready === true;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  }

  test('user and server names in URLs, routes and the server’s environment are escaped as JupyterHub escapes them (quote(name, safe="@~"))', async () => {
    for (const name of names) {
      await same(
        `create ${name}`,
        async (side) => (await side.api(`/users/${quoted(name)}`, { method: 'POST' })).status,
      );
      for (const side of sides) {
        await ready(side, name, '');
        await ready(side, name, serverName);
      }
      await same(`the servers of ${name} in the user model`, async (side) => {
        const user = (await (await side.api(`/users/${quoted(name)}`)).json()) as Json;
        return Object.fromEntries(
          Object.entries(user.servers as Record<string, Json>).map(([key, s]) => [
            key,
            { url: s.url, progress_url: s.progress_url },
          ]),
        );
      });
      for (const server of ['', serverName]) {
        await same(`${name}/${server}: the environment, through the proxy`, async (side) => {
          const user = (await (await side.api(`/users/${quoted(name)}`)).json()) as Json;
          const response = await fetch(`${side.proxyUrl}${user.servers[server].url}`);
          assert.equal(response.status, 200, `${side.name} ${user.servers[server].url}`);
          const env = (await response.json()) as Json;
          return {
            prefix: env.JUPYTERHUB_SERVICE_PREFIX,
            client: env.JUPYTERHUB_CLIENT_ID,
            callback: env.JUPYTERHUB_OAUTH_CALLBACK_URL,
            activity: new URL(env.JUPYTERHUB_ACTIVITY_URL).pathname,
            user: env.JUPYTERHUB_USER,
            server: env.JUPYTERHUB_SERVER_NAME,
          };
        });
      }
    }
    await same('the proxy’s routes', async (side) => {
      const routes = (await (await side.api('/proxy')).json()) as Json;
      return Object.keys(routes)
        .filter((spec) => spec.startsWith('/user/'))
        .sort();
    });
  });

  test('after signing in: the spawn page, or the running server; a /user/ next goes through /hub/user/; a foreign next is dropped', async () => {
    await same('no next, no server', async (side) => {
      const { status, location } = await login(side, 'lander');
      return { status, location };
    });
    await same('a foreign next', async (side) => {
      const { status, location } = await login(side, 'lander', '?next=//evil.example/x');
      return { status, location };
    });
    await same('next to a user URL', async (side) => {
      const { status, location } = await login(side, 'lander', '?next=%2Fuser%2Flander%2Flab');
      return { status, location };
    });
    await same('next with CR LF is not followed', async (side) => {
      const { location } = await login(side, 'lander', '?next=%2Fhub%2Fx%0d%0aSet-Cookie:%20a=1');
      return location === null || !location.includes('\n');
    });
    for (const side of sides) await ready(side, 'lander', '');
    await same('no next, the server running', async (side) => {
      const { status, location } = await login(side, 'lander');
      return { status, location };
    });
    await same('/hub/ for a signed-in user', async (side) => {
      const { cookie } = await login(side, 'lander');
      const response = await fetch(`${side.url}/hub/`, { headers: { cookie }, redirect: 'manual' });
      return { status: response.status, location: response.headers.get('location') };
    });
  });

  test('GET /hub/spawn without an options form starts the server and sends the browser to the pending page', async () => {
    const cookies = new Map<string, string>();
    for (const side of sides) cookies.set(side.name, (await login(side, 'direct')).cookie);
    const get = async (side: Side, path: string) => {
      const response = await fetch(`${side.url}${path}`, {
        headers: { cookie: cookies.get(side.name)! },
        redirect: 'manual',
      });
      await response.body?.cancel();
      return { status: response.status, location: response.headers.get('location') };
    };
    await same('the default server', (side) => get(side, '/hub/spawn'));
    await same('a named server, with a next', (side) =>
      get(side, '/hub/spawn/direct/nb1?next=%2Fhub%2Ftoken'),
    );
    for (const side of sides) {
      await waitFor(
        `${side.name}: both servers ready`,
        async () => {
          const user = (await (await side.api('/users/direct')).json()) as Json;
          return user.servers?.['']?.ready === true && user.servers?.nb1?.ready === true;
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );
    }
    await same('the default server, running', (side) => get(side, '/hub/spawn'));
    await same('the pending page of a ready server', (side) => get(side, '/hub/spawn-pending/direct/nb1'));
    await same('another user’s server', async (side) => {
      await side.api('/users/someone-else', { method: 'POST' });
      return (await get(side, '/hub/spawn/someone-else')).status;
    });
  });

  test('an API request with only the login cookie counts only with a Referer from the hub’s own pages', async () => {
    const cookies = new Map<string, string>();
    for (const side of sides) cookies.set(side.name, (await login(side, 'cookie-user')).cookie);
    const withCookie = (side: Side, headers: Record<string, string>) =>
      fetch(`${side.url}/hub/api/user`, { headers: { cookie: cookies.get(side.name)!, ...headers } });
    await same('no Referer', async (side) => (await withCookie(side, {})).status);
    await same(
      'a Referer of another site',
      async (side) => (await withCookie(side, { referer: 'http://evil.example/hub/home' })).status,
    );
    await same('a Referer of another port', async (side) => {
      const other = new URL(side.url);
      other.port = String(Number(other.port) + 1);
      return (await withCookie(side, { referer: `${other.origin}/hub/home` })).status;
    });
    await same('a Referer of the hub', async (side) => {
      const response = await withCookie(side, { referer: `${side.url}/hub/home` });
      return { status: response.status, name: ((await response.json()) as Json).name };
    });
    // Any method, as in 3.0: a Referer under <base_url>hub/ and, for a POST, a JSON (or no)
    // Content-Type — which a cross-site form cannot send.
    const send = (side: Side, method: string, path: string, headers: Record<string, string>, body?: string) =>
      fetch(`${side.url}/hub/api${path}`, {
        method,
        headers: { cookie: cookies.get(side.name)!, ...headers },
        ...(body === undefined ? {} : { body }),
      }).then((response) => response.status);
    const json = { 'content-type': 'application/json' };
    await same('a cross-site POST', (side) =>
      send(
        side,
        'POST',
        '/users/cookie-user/tokens',
        { referer: 'http://evil.example/hub/home', ...json },
        '{}',
      ),
    );
    await same('a POST from a hub page, JSON', (side) =>
      send(side, 'POST', '/users/cookie-user/tokens', { referer: `${side.url}/hub/token`, ...json }, '{}'),
    );
    await same('a POST from a hub page, no body and no Content-Type', (side) =>
      send(side, 'POST', '/users/cookie-user/tokens', { referer: `${side.url}/hub/token` }),
    );
    await same('a POST from a hub page, a form’s Content-Type', (side) =>
      send(
        side,
        'POST',
        '/users/cookie-user/tokens',
        { referer: `${side.url}/hub/token`, 'content-type': 'application/x-www-form-urlencoded' },
        'a=1',
      ),
    );
    await same('a POST from a hub page, text/plain', (side) =>
      send(
        side,
        'POST',
        '/users/cookie-user/tokens',
        { referer: `${side.url}/hub/token`, 'content-type': 'text/plain' },
        '{}',
      ),
    );
    await same('a POST with the Referer of a user server (outside /hub/)', (side) =>
      send(
        side,
        'POST',
        '/users/cookie-user/tokens',
        { referer: `${side.url}/user/cookie-user/lab`, ...json },
        '{}',
      ),
    );
    await same('a POST with an https Referer to an http hub', (side) =>
      send(
        side,
        'POST',
        '/users/cookie-user/tokens',
        { referer: `${side.url.replace('http:', 'https:')}/hub/token`, ...json },
        '{}',
      ),
    );
    await same('a POST behind a proxy saying https (X-Forwarded-Proto), https Referer', (side) =>
      send(
        side,
        'POST',
        '/users/cookie-user/tokens',
        {
          referer: `${side.url.replace('http:', 'https:')}/hub/token`,
          'x-forwarded-proto': 'https',
          ...json,
        },
        '{}',
      ),
    );
    await same('a POST with a Referer /hubx (not under /hub/)', (side) =>
      send(side, 'POST', '/users/cookie-user/tokens', { referer: `${side.url}/hubx`, ...json }, '{}'),
    );
    await same('a DELETE of the (stopped) server from a hub page', (side) =>
      send(side, 'DELETE', '/users/cookie-user/server', { referer: `${side.url}/hub/home` }),
    );
    await same('a DELETE with no Referer', (side) => send(side, 'DELETE', '/users/cookie-user/server', {}));
    const created = await same('the tokens the cookie created', async (side) => {
      const response = await side.api('/users/cookie-user/tokens');
      return ((await response.json()) as Json).api_tokens.length;
    });
    // The JSON POST, the bodiless POST and the one behind a proxy saying https: three tokens.
    assert.equal(created, 3);
  });
});
