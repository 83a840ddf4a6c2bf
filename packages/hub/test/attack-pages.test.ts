// The OAuth provider and the pages, attacked: redirect_uri games, codes replayed or taken to
// another client, tokens for another user, markup in names. Each test keeps a behaviour found
// safe (or made safe) by attacking it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { SpawnerContext } from '../src/spawners/spawner.ts';
import { processSpawnerFactory, signIn, startTestHub, type TestHub } from './helpers.ts';

describe('the OAuth provider of single-user servers, attacked', () => {
  let hub: TestHub;
  // What each server was given: its client id, callback and secret (its API token).
  const clients = new Map<string, { id: string; callback: string; secret: string }>();
  let alice = '';
  let bob = '';
  before(async () => {
    const inner = processSpawnerFactory();
    hub = await startTestHub(
      {
        'Authenticator.allow_all': true,
        'PasswordAuthenticator.password': 'pw',
        'JupyterHub.allow_named_servers': true,
      },
      {
        spawnerFactory: (context: SpawnerContext) => {
          const { spec } = context;
          clients.set(spec.user.name, {
            id: spec.oauthClientId,
            callback: spec.oauthCallbackUrl,
            secret: spec.apiToken,
          });
          return inner(context);
        },
      },
    );
    for (const name of ['alice', 'bob']) {
      assert.equal((await hub.api(`/users/${name}`, { method: 'POST' })).status, 201);
      assert.ok([201, 202].includes((await hub.api(`/users/${name}/server`, { method: 'POST' })).status));
    }
    alice = await signIn(hub.url, 'alice', 'pw');
    bob = await signIn(hub.url, 'bob', 'pw');
  });
  after(() => hub?.close());

  const authorize = (cookie: string, params: Record<string, string>) =>
    fetch(
      `${hub.url}/hub/api/oauth2/authorize?${new URLSearchParams({ response_type: 'code', ...params })}`,
      {
        headers: { cookie },
        redirect: 'manual',
      },
    );
  const codeOf = (response: Response) =>
    new URL(response.headers.get('location')!, 'http://x.invalid').searchParams.get('code')!;
  const exchange = (params: Record<string, string>) =>
    fetch(`${hub.url}/hub/api/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', ...params }),
    });

  test('redirect_uri must be the client’s own: no open redirect, no path games', async () => {
    const client = clients.get('alice')!;
    for (const redirect of [
      'http://evil.example/cb',
      '//evil.example/cb',
      `${client.callback}/../../evil`,
      `${client.callback}x`,
      `${client.callback}?next=//evil.example`,
      `http://127.0.0.1${client.callback}`,
    ]) {
      const response = await authorize(alice, { client_id: client.id, redirect_uri: redirect, state: 's' });
      assert.equal(response.status, 400, redirect);
      assert.equal(response.headers.get('location'), null, redirect);
    }
    // The state comes back as sent, escaped: no header or parameter injection.
    const response = await authorize(alice, { client_id: client.id, state: 'a&code=forged\r\nX: 1' });
    assert.equal(response.status, 302);
    const location = new URL(response.headers.get('location')!, 'http://x.invalid');
    assert.equal(location.pathname, client.callback);
    assert.equal(location.searchParams.getAll('code').length, 1);
    assert.equal(location.searchParams.get('state'), 'a&code=forged\r\nX: 1');
  });

  test('a code is used once, only by its client; another user’s server cannot be authorized', async () => {
    const mine = clients.get('alice')!;
    const theirs = clients.get('bob')!;
    // Bob's server, with its own secret, presents a code issued to alice's server: refused, and
    // the code is spent (the legitimate client cannot use it afterwards either).
    let code = codeOf(await authorize(alice, { client_id: mine.id }));
    let response = await exchange({ code, client_id: theirs.id, client_secret: theirs.secret });
    assert.equal(response.status, 400);
    response = await exchange({ code, client_id: mine.id, client_secret: mine.secret });
    assert.equal(response.status, 400);
    // A wrong secret for the right client: refused before the code is looked at.
    code = codeOf(await authorize(alice, { client_id: mine.id }));
    response = await exchange({ code, client_id: mine.id, client_secret: theirs.secret });
    assert.equal(response.status, 403);
    // The exchange works once; a replay is refused.
    response = await exchange({ code, client_id: mine.id, client_secret: mine.secret });
    assert.equal(response.status, 200);
    const { access_token: token } = (await response.json()) as { access_token: string };
    assert.equal(
      (await exchange({ code, client_id: mine.id, client_secret: mine.secret })).status,
      400,
      'a replayed code',
    );
    // The token is alice's, and it reaches alice's server only.
    const me = await fetch(`${hub.url}/hub/api/user`, { headers: { authorization: `token ${token}` } });
    assert.equal(((await me.json()) as { name: string }).name, 'alice');
    const bobs = await fetch(`${hub.url}/hub/api/users/bob`, {
      headers: { authorization: `token ${token}` },
    });
    assert.ok([403, 404].includes(bobs.status));
    // Bob's browser asking for a code for alice's server gets JupyterHub's 403 page, no code.
    response = await authorize(bob, { client_id: mine.id });
    assert.equal(response.status, 403);
    assert.equal(response.headers.get('location'), null);
    assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
    // A token instead of a cookie does not authorize a browser flow (a leaked token is not a login).
    response = await fetch(
      `${hub.url}/hub/api/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: mine.id })}`,
      { headers: { authorization: `token ${hub.adminToken}` }, redirect: 'manual' },
    );
    assert.match(response.headers.get('location') ?? '', /^\/hub\/login\?next=/);
  });
});

describe('markup in names, on every page that shows them', () => {
  let hub: TestHub;
  before(async () => {
    hub = await startTestHub({
      'Authenticator.allow_all': true,
      'Authenticator.admin_users': ['root'],
      'PasswordAuthenticator.password': 'pw',
      'JupyterHub.allow_named_servers': true,
    });
  });
  after(() => hub?.close());

  test('a user and a server named with markup are text, never HTML, in home, admin, spawn and pending pages', async () => {
    const name = '<svg/onload=alert(1)>"\'&';
    const evil = '<i>eve"\'';
    assert.equal((await hub.api(`/users/${encodeURIComponent(evil)}`, { method: 'POST' })).status, 201);
    const server = await hub.api(
      `/users/${encodeURIComponent(evil)}/servers/${encodeURIComponent(name.replace('/', ''))}`,
      { method: 'POST' },
    );
    assert.ok([201, 202].includes(server.status));
    const root = await signIn(hub.url, 'root', 'pw');
    const eve = await signIn(hub.url, evil, 'pw');
    const pages: Array<[string, string]> = [
      [root, '/hub/admin'],
      [root, `/hub/admin?search=${encodeURIComponent('<i>')}`],
      [eve, '/hub/home'],
      [eve, `/hub/spawn/${encodeURIComponent(evil)}/${encodeURIComponent('<x>')}`],
      [
        eve,
        `/hub/error/503?url=${encodeURIComponent(`/user/${encodeURIComponent(evil)}/${encodeURIComponent('<y>')}/`)}`,
      ],
    ];
    for (const [cookie, first] of pages) {
      let path = first;
      let response = await fetch(`${hub.url}${path}`, { headers: { cookie }, redirect: 'manual' });
      while (response.status === 302) {
        // The spawn page without an options form starts the server (3.0) and redirects to the
        // pending page: the Location is escaped, and the pending page is checked too.
        const location = response.headers.get('location') ?? '';
        for (const raw of ['<', '>', '"', "'"]) assert.ok(!location.includes(raw), `${path} → ${location}`);
        await response.body?.cancel();
        // A ready server's pending page sends the browser on to the server (the proxy's side).
        if (location.includes('/user/')) break;
        path = location;
        response = await fetch(`${hub.url}${path}`, { headers: { cookie }, redirect: 'manual' });
      }
      if (response.status === 302) continue;
      const text = await response.text();
      assert.notEqual(response.status, 500, path);
      assert.match(response.headers.get('content-type') ?? '', /^text\/html/, path);
      for (const raw of ['<i>', '<svg', '<x>', '<y>']) assert.ok(!text.includes(raw), `${path} holds ${raw}`);
    }
  });
});

describe('password guessing', () => {
  let hub: TestHub;
  before(async () => {
    hub = await startTestHub({
      'Authenticator.allow_all': true,
      'PasswordAuthenticator.password': 'correct-pw',
    });
  });
  after(() => hub?.close());

  /** One sign-in attempt as a browser behind the proxy at `client` (the proxy's X-Forwarded-For). */
  async function attempt(password: string, client: string) {
    const headers = { 'x-forwarded-for': client };
    const form = await fetch(`${hub.url}/hub/login`, { headers });
    const cookie = form.headers
      .getSetCookie()
      .map((line) => line.split(';')[0]!)
      .join('; ');
    const xsrf = /name="_xsrf" value="([^"]+)"/.exec(await form.text())![1]!;
    return fetch(`${hub.url}/hub/login`, {
      method: 'POST',
      headers: { ...headers, cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ username: 'alice', password, _xsrf: xsrf }),
      redirect: 'manual',
    });
  }

  test('after 10 wrong passwords a client is answered 429 with Retry-After, even with the right one; other clients are not; no password is logged', async () => {
    for (let i = 0; i < 10; i++) assert.equal((await attempt(`guess-${i}`, '203.0.113.5')).status, 403);
    const blocked = await attempt('correct-pw', '203.0.113.5');
    assert.equal(blocked.status, 429);
    assert.ok(Number(blocked.headers.get('retry-after')) > 0);
    assert.match(await blocked.text(), /Too many failed sign-ins/);
    assert.ok(!blocked.headers.getSetCookie().some((c) => c.startsWith('jupyterhub-hub-login=')));
    // Another client behind the same proxy is not locked out.
    assert.equal((await attempt('correct-pw', '203.0.113.6')).status, 302);
    for (const secret of ['guess-3', 'correct-pw']) assert.ok(!hub.logs.text.includes(secret), secret);
  });
});

describe('cookies behind a chain of proxies', () => {
  let hub: TestHub;
  before(async () => {
    hub = await startTestHub({ 'Authenticator.allow_all': true, 'PasswordAuthenticator.password': 'pw' });
  });
  after(() => hub?.close());

  test('TLS ended by a front proxy before ours (X-Forwarded-Proto: https, http) still makes the cookies Secure', async () => {
    for (const proto of ['https', 'https, http', 'HTTPS,http']) {
      const response = await fetch(`${hub.url}/hub/login`, { headers: { 'x-forwarded-proto': proto } });
      const cookie = response.headers.getSetCookie().find((c) => c.startsWith('_xsrf='))!;
      assert.match(cookie, /; Secure/, proto);
      assert.match(cookie, /HttpOnly/);
      assert.match(cookie, /SameSite=Lax/);
      assert.match(cookie, /Path=\/hub\//);
    }
    const plain = await fetch(`${hub.url}/hub/login`, { headers: { 'x-forwarded-proto': 'http, https' } });
    assert.doesNotMatch(plain.headers.getSetCookie().find((c) => c.startsWith('_xsrf='))!, /Secure/);
  });
});
