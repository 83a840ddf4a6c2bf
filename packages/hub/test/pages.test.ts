// The pages over real HTTP, as a browser without JavaScript uses them: forms with the `_xsrf`
// token, cookies, redirects. Security headers, CSRF refusals, escaping, the spawn form with
// profile_list reaching a real local server, the pending page and its event stream, admin
// paging/search/actions, tokens, and the proxy's error target.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@seahorse/runtime/testing';
import type { Spawner, SpawnerContext } from '../src/spawners/spawner.ts';
import type { BoundSpawnerFactory } from '../src/spawns.ts';
import { processSpawnerFactory, startTestHub } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

const tinyServer = fileURLToPath(new URL('./fixtures/tiny-server.py', import.meta.url));

/** A cookie jar and the last form token: a browser without JavaScript. */
class Browser {
  readonly base: string;
  readonly cookies = new Map<string, string>();
  xsrf = '';
  constructor(base: string) {
    this.base = base;
  }
  get cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  async request(path: string, init: RequestInit = {}): Promise<Response & { body_text: string }> {
    const headers = new Headers(init.headers);
    if (this.cookies.size) headers.set('cookie', this.cookieHeader);
    const response = await fetch(`${this.base}${path}`, { ...init, headers, redirect: 'manual' });
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq);
      if (attributes.some((a) => a.trim().toLowerCase() === 'max-age=0')) this.cookies.delete(name);
      else this.cookies.set(name, pair!.slice(eq + 1));
    }
    const text = await response.text();
    const token = /name="_xsrf" value="([^"]+)"/.exec(text)?.[1];
    if (token) this.xsrf = token;
    return Object.assign(response, { body_text: text });
  }
  get(path: string) {
    return this.request(path);
  }
  post(path: string, fields: Record<string, string> = {}, extra: Record<string, string> = {}) {
    return this.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...extra },
      body: new URLSearchParams({ _xsrf: this.xsrf, ...fields }),
    });
  }
  async signIn(name: string, password = 'pw'): Promise<void> {
    await this.get('/hub/login');
    const response = await this.post('/hub/login', { username: name, password });
    assert.equal(response.status, 302, response.body_text);
    // Where the browser lands; its forms carry the signed-in session's token. With no server
    // running that is /hub/spawn, which starts one (no options form, as in 3.0): these tests
    // start servers themselves, so they go home instead.
    const location = response.headers.get('location')!;
    await this.get(location.endsWith('/hub/spawn') ? '/hub/home' : location);
  }
}

test('login: security headers, _xsrf required, cookies HttpOnly and SameSite (Secure under TLS), open redirects refused', async () => {
  const hub = await startTestHub({ 'Authenticator.allow_all': true, 'PasswordAuthenticator.password': 'pw' });
  try {
    const browser = new Browser(hub.url);
    const form = await browser.get('/hub/login?next=/hub/token');
    assert.equal(form.status, 200);
    const csp = form.headers.get('content-security-policy') ?? '';
    assert.match(csp, /frame-ancestors 'self'/);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal(form.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(form.headers.get('x-frame-options'), 'SAMEORIGIN');
    const xsrfCookie = form.headers.getSetCookie().find((c) => c.startsWith('_xsrf='))!;
    assert.match(xsrfCookie, /HttpOnly/);
    assert.match(xsrfCookie, /SameSite=Lax/);
    assert.doesNotMatch(xsrfCookie, /Secure/);
    assert.match(form.body_text, /<label for="username">Username<\/label><input type="text" id="username"/);
    assert.match(form.body_text, /<link rel="stylesheet" href="\/hub\/static\/hub.css">/);
    // The stylesheet is served by the hub.
    const css = await fetch(`${hub.url}/hub/static/hub.css`);
    assert.equal(css.status, 200);
    assert.match(css.headers.get('content-type')!, /^text\/css/);
    assert.match(await css.text(), /:focus-visible/);

    // Without the token, with another browser's token, or from another origin: refused.
    const bare = await fetch(`${hub.url}/hub/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ username: 'eve', password: 'pw' }),
      redirect: 'manual',
    });
    assert.equal(bare.status, 403);
    assert.equal(bare.headers.getSetCookie().filter((c) => c.startsWith('jupyterhub-hub-login=')).length, 0);
    const other = new Browser(hub.url);
    await other.get('/hub/login');
    const swapped = new Browser(hub.url);
    await swapped.get('/hub/login');
    swapped.xsrf = other.xsrf;
    assert.equal((await swapped.post('/hub/login', { username: 'eve', password: 'pw' })).status, 403);
    const crossSite = await browser.post(
      '/hub/login',
      { username: 'eve', password: 'pw' },
      { origin: 'https://evil.example' },
    );
    assert.equal(crossSite.status, 403);

    const wrong = await browser.post('/hub/login?next=/hub/token', { username: 'alice', password: 'nope' });
    assert.equal(wrong.status, 403);
    assert.match(wrong.body_text, /role="alert">Invalid username or password/);
    const ok = await browser.post('/hub/login?next=/hub/token', { username: 'alice', password: 'pw' });
    assert.equal(ok.status, 302);
    assert.equal(ok.headers.get('location'), '/hub/token');
    const session = ok.headers.getSetCookie().find((c) => c.startsWith('jupyterhub-hub-login='))!;
    assert.match(session, /HttpOnly/);
    assert.match(session, /SameSite=Lax/);
    assert.doesNotMatch(session, /Secure/);
    // The token of the anonymous form is not valid for the signed-in session.
    const stale = await browser.post('/hub/token', { note: 'x' });
    assert.equal(stale.status, 403);

    // Under TLS (the proxy says https), cookies are Secure.
    const tls = await fetch(`${hub.url}/hub/login`, { headers: { 'x-forwarded-proto': 'https' } });
    assert.match(tls.headers.getSetCookie().find((c) => c.startsWith('_xsrf='))!, /; Secure/);

    // next= to another site ends at home.
    const away = new Browser(hub.url);
    await away.get('/hub/login');
    const redirected = await away.post('/hub/login?next=//evil.example/', {
      username: 'bob',
      password: 'pw',
    });
    // JupyterHub 3.0's default after login: the spawn page (the server is not running).
    assert.equal(redirected.headers.get('location'), '/hub/spawn');

    // Sign out is a form; it ends the session.
    const home = await browser.get('/hub/home');
    assert.equal(home.status, 200);
    const forgedOut = await fetch(`${hub.url}/hub/logout`, {
      method: 'POST',
      headers: { cookie: browser.cookieHeader, 'content-type': 'application/x-www-form-urlencoded' },
      body: '',
      redirect: 'manual',
    });
    assert.equal(forgedOut.status, 403);
    assert.equal((await browser.get('/hub/home')).status, 200);
    const out = await browser.post('/hub/logout');
    assert.equal(out.status, 302);
    assert.equal((await browser.get('/hub/home')).status, 302);
  } finally {
    await hub.close();
  }
});

test('home: start, stop, named servers with the limit shown, delete; every action a form with the token', async () => {
  const hub = await startTestHub({
    'Authenticator.allow_all': true,
    'PasswordAuthenticator.password': 'pw',
    'JupyterHub.allow_named_servers': true,
    'JupyterHub.named_server_limit_per_user': 1,
  });
  try {
    const browser = new Browser(hub.url);
    await browser.signIn('alice');
    let home = await browser.get('/hub/home');
    assert.match(home.body_text, /Status: <span>Stopped<\/span>/);
    assert.match(home.body_text, /You have 0 of at most 1 named servers\./);
    // Start without the token: refused, nothing started.
    const forged = await fetch(`${hub.url}/hub/spawn/alice`, {
      method: 'POST',
      headers: { cookie: browser.cookieHeader, 'content-type': 'application/x-www-form-urlencoded' },
      body: '',
      redirect: 'manual',
    });
    assert.equal(forged.status, 403);
    assert.equal(((await (await hub.api('/users/alice')).json()) as Json).server, null);
    // Without an options form (no profile_list) a GET starts the server, as in JupyterHub 3.0,
    // and sends the browser to the pending page, which sends it on once the server is ready.
    const direct = await browser.get('/hub/spawn');
    assert.equal(direct.status, 302, direct.body_text);
    assert.equal(direct.headers.get('location'), '/hub/spawn-pending/alice');
    await waitFor('the server started by the GET is ready', async () => {
      const model = (await (await hub.api('/users/alice')).json()) as Json;
      return model.servers['']?.ready === true ? true : undefined;
    });
    const pendingDone = await browser.get('/hub/spawn-pending/alice');
    assert.equal(pendingDone.headers.get('location'), '/user/alice/');
    // Once running, the GET opens it (and a safe next wins), starting nothing more.
    assert.equal((await browser.get('/hub/spawn')).headers.get('location'), '/user/alice/');
    assert.equal((await browser.get('/hub/spawn?next=/hub/token')).headers.get('location'), '/hub/token');

    const started = await browser.post('/hub/spawn/alice', { next: '/hub/home' });
    assert.equal(started.status, 302, started.body_text);
    assert.equal(started.headers.get('location'), '/user/alice/');
    home = await browser.get('/hub/home');
    assert.match(home.body_text, /class="status-running">Running/);
    assert.match(home.body_text, /<a class="button" href="\/user\/alice\/">Open<\/a>/);
    // The server is reachable through the proxy.
    assert.equal((await fetch(`${hub.proxyUrl}/user/alice/x`)).status, 200);

    const named = await browser.post('/hub/spawn/alice', { server_name: 'scratch' });
    assert.equal(named.headers.get('location'), '/user/alice/scratch/');
    home = await browser.get('/hub/home');
    assert.match(home.body_text, /You have 1 of at most 1 named servers\./);
    assert.match(home.body_text, /Delete a named server before creating another/);
    assert.match(home.body_text, /<th scope="row">scratch<\/th>/);
    // Over the limit through a crafted form: the API's limit message, as a page.
    const over = await browser.post('/hub/spawn/alice', { server_name: 'second' });
    assert.equal(over.status, 400);
    assert.match(over.body_text, /already has the maximum of 1 named servers/);

    const stopped = await browser.post('/hub/stop/alice', { next: '/hub/home' });
    assert.equal(stopped.status, 302);
    const removed = await browser.post('/hub/stop/alice/scratch', { remove: '1', next: '/hub/home' });
    assert.equal(removed.status, 302);
    await waitFor('both servers gone', async () => {
      const model = (await (await hub.api('/users/alice?include_stopped_servers=1')).json()) as Json;
      return model.server === null && model.servers.scratch === undefined ? true : undefined;
    });
    home = await browser.get('/hub/home');
    assert.match(home.body_text, /You have 0 of at most 1 named servers\./);
    // Another user's server cannot be started from a page.
    await hub.api('/users/bob', { method: 'POST' });
    const foreign = await browser.post('/hub/spawn/bob');
    assert.equal(foreign.status, 404);
    assert.match(foreign.body_text, /No access to resources or resources not found/);
  } finally {
    await hub.close();
  }
});

test('spawn form: profile_list (escaped) and the choice reaching a real local server as user_options.profile with its overrides', async () => {
  const hub = await startTestHub(
    {
      'Authenticator.allow_all': true,
      'PasswordAuthenticator.password': 'pw',
      'Spawner.cmd': ['python3', tinyServer],
      'Spawner.args': ['serve'],
      'Spawner.start_timeout': 20,
      'KubeSpawner.profile_list': [
        {
          display_name: 'Small',
          slug: 'small',
          description: 'One core.',
          kubespawner_override: { environment: { JUPYTERHUB_TEST_PROFILE: 'small' }, cpu_limit: 1 },
        },
        {
          display_name: 'Big <GPU>',
          description: '<script>alert(1)</script> & more',
          default: true,
          kubespawner_override: { environment: { JUPYTERHUB_TEST_PROFILE: 'big' } },
        },
      ],
    },
    { spawnerFactory: 'configured' },
  );
  try {
    const browser = new Browser(hub.url);
    await browser.signIn('alice');
    const home = await browser.get('/hub/home');
    assert.match(home.body_text, /<a class="button" href="\/hub\/spawn\/alice">Start my server<\/a>/);
    const form = await browser.get('/hub/spawn/alice');
    assert.match(form.body_text, /<legend>Server options<\/legend>/);
    assert.match(form.body_text, /<input type="radio" name="profile" id="profile-small" value="small"/);
    // The default profile is checked; its slug comes from the display name; text is escaped.
    assert.match(form.body_text, /id="profile-big-gpu" value="big-gpu" checked/);
    assert.match(form.body_text, /<strong>Big &lt;GPU&gt;<\/strong>/);
    assert.match(form.body_text, /&lt;script&gt;alert\(1\)&lt;\/script&gt; &amp; more/);
    assert.doesNotMatch(form.body_text, /<script>alert/);
    const unknown = await browser.post('/hub/spawn/alice', { profile: 'huge' });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body_text, /Unknown profile: huge/);

    const started = await browser.post('/hub/spawn/alice', { profile: 'small' });
    assert.equal(started.status, 302, started.body_text);
    const model = (await (await hub.api('/users/alice')).json()) as Json;
    assert.deepEqual(model.servers[''].user_options, { profile: 'small' });
    const served = (await (await fetch(`${hub.proxyUrl}/user/alice/`)).json()) as Json;
    assert.equal(
      JSON.stringify(served).includes('"JUPYTERHUB_TEST_PROFILE":"small"'),
      true,
      JSON.stringify(served),
    );
    // Through the API, an unknown profile fails the spawn saying which exist.
    await hub.api('/users/alice/server', { method: 'DELETE' });
    await waitFor('stopped', async () =>
      ((await (await hub.api('/users/alice')).json()) as Json).server === null ? true : undefined,
    );
    const bad = await hub.api('/users/alice/server', {
      method: 'POST',
      body: JSON.stringify({ profile: 'huge' }),
    });
    assert.equal(bad.status, 500);
    assert.match(
      ((await bad.json()) as Json).message,
      /unknown profile "huge"; choose one of small, big-gpu/,
    );
  } finally {
    await hub.close();
  }
});

/** The test spawner, slowed down by 1.5 s so the pending page is seen. */
function slowSpawner(): BoundSpawnerFactory {
  const inner = processSpawnerFactory();
  return (context: SpawnerContext): Spawner => {
    const spawner = inner(context);
    return {
      ...spawner,
      start: async () => {
        context.progress({ progress: 30, message: 'Pulling <the> image' });
        await new Promise((resolve) => setTimeout(resolve, 1500));
        return spawner.start();
      },
      poll: () => spawner.poll(),
      stop: (now) => spawner.stop(now),
      state: () => spawner.state(),
    };
  };
}

test('pending page: progress so far rendered (escaped), the event stream with the cookie, a no-JS refresh; then it sends the browser to the server', async () => {
  const hub = await startTestHub(
    {
      'Authenticator.allow_all': true,
      'PasswordAuthenticator.password': 'pw',
      'JupyterHub.slow_spawn_timeout': 0.05,
    },
    { spawnerFactory: slowSpawner() },
  );
  try {
    const browser = new Browser(hub.url);
    await browser.signIn('alice');
    const started = await browser.post('/hub/spawn/alice');
    assert.equal(started.headers.get('location'), '/hub/spawn-pending/alice', started.body_text);
    const pendingPage = await browser.get('/hub/spawn-pending/alice');
    assert.equal(pendingPage.status, 200);
    assert.match(pendingPage.body_text, /data-progress-url="\/hub\/api\/users\/alice\/server\/progress"/);
    assert.match(pendingPage.body_text, /<progress id="progress-bar" max="100" value="30">/);
    assert.match(pendingPage.body_text, /Pulling &lt;the&gt; image/);
    assert.match(pendingPage.body_text, /<noscript>.*<meta http-equiv="refresh" content="3">/s);
    assert.match(pendingPage.body_text, /<script src="\/hub\/static\/progress.js" defer><\/script>/);
    const script = await fetch(`${hub.url}/hub/static/progress.js`);
    assert.match(await script.text(), /EventSource/);
    // The stream the script follows answers the cookie (with the page as Referer, as a browser
    // sends it; without one, as in JupyterHub 3.0, the cookie does not count) and ends with ready.
    const bare = await fetch(`${hub.url}/hub/api/users/alice/server/progress`, {
      headers: { cookie: browser.cookieHeader },
    });
    assert.equal(bare.status, 403);
    const stream = await fetch(`${hub.url}/hub/api/users/alice/server/progress`, {
      headers: { cookie: browser.cookieHeader, referer: `${hub.url}/hub/spawn-pending/alice` },
    });
    assert.equal(stream.headers.get('content-type'), 'text/event-stream');
    const events = (await stream.text())
      .split('\n\n')
      .filter((e) => e.startsWith('data: '))
      .map((e) => JSON.parse(e.slice(6)) as Json);
    assert.equal(events.at(-1)?.ready, true);
    assert.equal(events.at(-1)?.url, '/user/alice/');
    // Ready: the pending page (and a no-JS refresh of it) sends the browser on.
    const after = await browser.get('/hub/spawn-pending/alice');
    assert.equal(after.status, 302);
    assert.equal(after.headers.get('location'), '/user/alice/');
  } finally {
    await hub.close();
  }
});

test('admin: refused to non-admins; users paged and searched (names escaped); add, make admin, delete; start and stop any server', async () => {
  const hub = await startTestHub({
    'Authenticator.allow_all': true,
    'Authenticator.admin_users': ['root'],
    'PasswordAuthenticator.password': 'pw',
  });
  try {
    const names = Array.from({ length: 60 }, (_, i) => `user${String(i).padStart(2, '0')}`);
    await hub.api('/users', { method: 'POST', body: JSON.stringify({ usernames: [...names, 'x<img>'] }) });
    const alice = new Browser(hub.url);
    await alice.signIn('alice');
    const refused = await alice.get('/hub/admin');
    assert.equal(refused.status, 403);
    assert.match(refused.body_text, /Only administrators/);
    assert.doesNotMatch((await alice.get('/hub/home')).body_text, /href="\/hub\/admin"/);
    const forged = await alice.post('/hub/admin/users/user01/delete');
    assert.equal(forged.status, 403);

    const root = new Browser(hub.url);
    await root.signIn('root');
    let page = await root.get('/hub/admin');
    assert.equal(page.status, 200);
    assert.match(page.body_text, /6[23] users; showing 1–50/);
    assert.match(page.body_text, /<a href="\/hub\/admin\?offset=50" rel="next">Next<\/a>/);
    page = await root.get('/hub/admin?offset=50');
    assert.match(page.body_text, /showing 51–6[23]/);
    assert.match(page.body_text, /<th scope="row">x&lt;img&gt;<\/th>/);
    assert.doesNotMatch(page.body_text, /<img>/);
    page = await root.get('/hub/admin?search=user5');
    assert.match(page.body_text, /10 users matching “user5”/);

    let action = await root.post('/hub/admin/users', {
      usernames: 'carol\ndave',
      admin: '1',
      next: '/hub/admin',
    });
    assert.equal(action.status, 302, action.body_text);
    assert.equal(((await (await hub.api('/users/carol')).json()) as Json).admin, true);
    action = await root.post('/hub/admin/users/carol/admin', { admin: '0' });
    assert.equal(action.status, 302);
    assert.equal(((await (await hub.api('/users/carol')).json()) as Json).admin, false);
    action = await root.post('/hub/admin/users/dave/delete');
    assert.equal(action.status, 302);
    assert.equal((await hub.api('/users/dave')).status, 404);

    action = await root.post('/hub/spawn/user01', { next: '/hub/admin?search=user01' });
    assert.equal(action.status, 302);
    assert.equal(action.headers.get('location'), '/hub/admin?search=user01');
    page = await root.get('/hub/admin?search=user01');
    assert.match(page.body_text, /class="status-running">running/);
    action = await root.post('/hub/stop/user01', { next: '/hub/admin?search=user01' });
    assert.equal(action.status, 302);
    await waitFor('user01 stopped', async () =>
      ((await (await hub.api('/users/user01')).json()) as Json).server === null ? true : undefined,
    );
  } finally {
    await hub.close();
  }
});

test('token page: create with a note (escaped) and an expiry, shown once, usable; revoke', async () => {
  const hub = await startTestHub({ 'Authenticator.allow_all': true, 'PasswordAuthenticator.password': 'pw' });
  try {
    const browser = new Browser(hub.url);
    await browser.signIn('alice');
    const page = await browser.get('/hub/token');
    assert.match(page.body_text, /<label for="note">Note<\/label>/);
    const created = await browser.post('/hub/token', { note: '<b>laptop</b>', expires_in: '3600' });
    assert.equal(created.status, 201, created.body_text);
    assert.equal(created.headers.get('cache-control'), 'no-store');
    const token = /<p class="token" id="new-token">([0-9a-f]+)<\/p>/.exec(created.body_text)?.[1];
    assert.ok(token);
    assert.match(created.body_text, /&lt;b&gt;laptop&lt;\/b&gt;/);
    const me = await fetch(`${hub.url}/hub/api/user`, { headers: { authorization: `token ${token}` } });
    assert.equal(((await me.json()) as Json).name, 'alice');
    const list = (await (await hub.api('/users/alice/tokens')).json()) as Json;
    const entry = list.api_tokens.find((t: Json) => t.note === '<b>laptop</b>');
    assert.ok(entry.expires_at);
    assert.ok(Math.abs(Date.parse(entry.expires_at) - Date.now() - 3600_000) < 60_000);
    // Listed again without the secret.
    const again = await browser.get('/hub/token');
    assert.doesNotMatch(again.body_text, new RegExp(token));
    const revoked = await browser.post(`/hub/token/${entry.id}/revoke`);
    assert.equal(revoked.status, 302);
    const after = await fetch(`${hub.url}/hub/api/user`, { headers: { authorization: `token ${token}` } });
    assert.equal(after.status, 403);
  } finally {
    await hub.close();
  }
});

test('error pages: the proxy error target offers to start one’s own server (503); others see no button; unknown pages are HTML 404s', async () => {
  const hub = await startTestHub({ 'Authenticator.allow_all': true, 'PasswordAuthenticator.password': 'pw' });
  try {
    const alice = new Browser(hub.url);
    await alice.signIn('alice');
    let page = await alice.get('/hub/error/503?url=%2Fuser%2Falice%2Flab%2Ftree');
    assert.equal(page.status, 503);
    assert.match(page.body_text, /Your server is not running\. Would you like to start it\?/);
    assert.match(page.body_text, /<form method="post" action="\/hub\/spawn\/alice"/);
    assert.match(page.body_text, /name="next" value="\/user\/alice\/lab\/tree"/);
    // The launch button starts it and lands where the browser was going.
    const launched = await alice.post('/hub/spawn/alice', { next: '/user/alice/lab/tree' });
    assert.equal(launched.headers.get('location'), '/user/alice/lab/tree');
    await hub.api('/users/bob', { method: 'POST' });
    page = await alice.get('/hub/error/503?url=%2Fuser%2Fbob%2F');
    assert.equal(page.status, 503);
    assert.match(page.body_text, /The server of bob is not running\./);
    assert.doesNotMatch(page.body_text, /Launch server/);
    // The hub's own /user/ fallback (no route) answers the same.
    page = await alice.get('/user/bob/tree?x=1');
    assert.equal(page.status, 302);
    assert.equal(page.headers.get('location'), '/hub/user/bob/tree?x=1');
    page = await alice.get('/hub/user/bob/tree');
    assert.equal(page.status, 503);
    assert.match(page.body_text, /The server of bob is not running\./);
    page = await alice.get('/hub/error/502?url=%2Fservices%2Fx%2F');
    assert.equal(page.status, 502);
    assert.match(page.headers.get('content-type')!, /^text\/html/);
    page = await alice.get('/hub/nowhere');
    assert.equal(page.status, 404);
    assert.match(page.body_text, /<h1>Page not found<\/h1>/);
    // A malformed error code is not echoed as a status.
    page = await alice.get('/hub/error/99999?url=x');
    assert.equal(page.status, 500);
  } finally {
    await hub.close();
  }
});

test('hostile input ends in a clear page: malformed paths, absurd offsets, oversized or mistyped forms', async () => {
  const hub = await startTestHub({
    'Authenticator.allow_all': true,
    'Authenticator.admin_users': ['root'],
    'PasswordAuthenticator.password': 'pw',
  });
  try {
    const root = new Browser(hub.url);
    await root.signIn('root');
    let page = await root.get('/hub/spawn-pending/%E0%A4%A');
    assert.equal(page.status, 400);
    assert.match(page.body_text, /Malformed URL/);
    page = await root.get('/hub/admin?offset=99999999999999999999999&search=%00%27%22');
    assert.equal(page.status, 200);
    assert.match(page.body_text, /showing 0–/);
    page = await root.post('/hub/admin/users', { usernames: 'x'.repeat(70 * 1024) });
    assert.equal(page.status, 413);
    const typed = await fetch(`${hub.url}/hub/token`, {
      method: 'POST',
      headers: { cookie: root.cookieHeader, 'content-type': 'application/json' },
      body: JSON.stringify({ _xsrf: root.xsrf, note: 'x' }),
      redirect: 'manual',
    });
    assert.equal(typed.status, 415);
    page = await root.post('/hub/admin/users', { usernames: 'has/slash' });
    assert.equal(page.status, 400);
    assert.match(page.body_text, /Invalid username: has\/slash/);
    page = await root.post('/hub/token', { expires_in: '-5' });
    assert.equal(page.status, 400);
    // The hub still serves.
    assert.equal((await root.get('/hub/home')).status, 200);
  } finally {
    await hub.close();
  }
});
