// Hostile input against a hub on a real PostgreSQL (whose text cannot hold a NUL): NUL bytes in
// names, queries, JSON and forms; JSON nested a hundred thousand deep; bodies past the limit,
// with and without a Content-Length; a hostile Host in pagination links; the same start sent
// twice at once; PATCH /hub/api/proxy pointing at nothing or with a header-breaking token.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { freePort, type PostgresServer, startPostgres, waitFor } from '@seahorse/runtime/testing';
import { signIn, startTestHub, type TestHub } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

/** A request with any Host header and body (fetch sets its own Host). */
function raw(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer | string; chunked?: boolean },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    if (options.body !== undefined) {
      if (options.chunked) {
        // Without a Content-Length: the limit must hold while reading.
        const body = Buffer.from(options.body);
        for (let at = 0; at < body.length; at += 65_536) req.write(body.subarray(at, at + 65_536));
      } else req.write(options.body);
    }
    req.end();
  });
}

describe('hostile input on PostgreSQL', () => {
  let pg: PostgresServer;
  let hub: TestHub;
  before(async () => {
    pg = await startPostgres();
    hub = await startTestHub({
      'JupyterHub.db_url': pg.url,
      'JupyterHub.allow_named_servers': true,
      'Authenticator.allow_all': true,
      'Authenticator.admin_users': ['root'],
      'PasswordAuthenticator.password': 'pw',
    });
    for (const name of ['alice', 'carol'])
      assert.equal((await hub.api(`/users/${name}`, { method: 'POST' })).status, 201);
  });
  after(async () => {
    await hub?.close();
    await pg?.stop();
  });

  const message = async (response: Response) => ((await response.json()) as Json).message as string;

  test('NUL bytes in names, server names, queries, JSON strings and keys are 400s, never 500s', async () => {
    for (const [method, path] of [
      ['GET', '/users/a%00b'],
      ['POST', '/users/a%00b'],
      ['DELETE', '/users/a%00b'],
      ['POST', '/users/alice/servers/x%00y'],
      ['GET', '/users?name_filter=a%00'],
      ['GET', '/users?state%00=ready'],
      ['GET', '/groups/g%00'],
    ] as const) {
      const response = await hub.api(path, { method });
      assert.equal(response.status, 400, `${method} ${path}`);
      assert.match(await message(response), /NUL characters are not allowed/);
    }
    for (const [path, body] of [
      ['/users/alice/tokens', { note: 'a\u0000b' }],
      ['/users/alice/tokens', { 'not\u0000e': 'x' }],
      ['/users', { usernames: ['a\u0000b'] }],
      ['/users/alice/server', { profile: 'x\u0000' }],
      ['/groups/g1', { properties: { a: 'b\u0000' } }],
    ] as const) {
      const response = await hub.api(path, { method: 'POST', body: JSON.stringify(body) });
      assert.equal(response.status, 400, `${path} ${JSON.stringify(body)}`);
      assert.match(await message(response), /^Invalid JSON in body of request: NUL characters/);
    }
    // The pages too: a form field.
    const root = await signIn(hub.url, 'root', 'pw');
    const tokenPage = await fetch(`${hub.url}/hub/token`, { headers: { cookie: root } });
    const xsrf = /name="_xsrf" value="([^"]+)"/.exec(await tokenPage.text())![1]!;
    const form = await fetch(`${hub.url}/hub/token`, {
      method: 'POST',
      headers: { cookie: root, 'content-type': 'application/x-www-form-urlencoded' },
      body: `_xsrf=${encodeURIComponent(xsrf)}&note=a%00b&expires_in=`,
      redirect: 'manual',
    });
    assert.equal(form.status, 400);
    assert.match(await form.text(), /NUL character/);
    // Nothing was stored, and the hub carries on.
    const tokens = (await (await hub.api('/users/root/tokens')).json()) as Json;
    assert.ok(!JSON.stringify(tokens).includes('\\u0000'));
    assert.equal((await hub.api('/users/alice')).status, 200);
  });

  test('JSON nested past 32 levels is a 400 (a megabyte of brackets too); 32 levels are fine', async () => {
    const deep = `${'['.repeat(500_000)}${']'.repeat(500_000)}`;
    let response = await hub.api('/users/alice/server', { method: 'POST', body: deep });
    assert.equal(response.status, 400);
    assert.match(await message(response), /nested deeper than 32 levels|Invalid JSON/);
    const objects = `${'{"a":'.repeat(40)}1${'}'.repeat(40)}`;
    response = await hub.api('/users/alice/server', { method: 'POST', body: objects });
    assert.equal(response.status, 400);
    assert.equal(await message(response), 'Invalid JSON in body of request: nested deeper than 32 levels');
    const fine = `{"x":${'{"a":'.repeat(30)}1${'}'.repeat(30)}}`;
    response = await hub.api('/users/carol/tokens', { method: 'POST', body: JSON.stringify({ note: fine }) });
    assert.equal(response.status, 201);
  });

  test('a body past 1 MiB is a 413, with a Content-Length and without one (chunked)', async () => {
    const big = JSON.stringify({ note: 'x'.repeat(2 * 1024 * 1024) });
    const url = `${hub.url}/hub/api/users/alice/tokens`;
    const headers = { authorization: `token ${hub.adminToken}`, 'content-type': 'application/json' };
    const declared = await raw(url, { method: 'POST', headers, body: big });
    assert.equal(declared.status, 413);
    const chunked = await raw(url, { method: 'POST', headers, body: big, chunked: true });
    assert.equal(chunked.status, 413);
    assert.equal((await hub.api('/users/alice')).status, 200);
  });

  test('pagination links: the Host asked for when it is a host, the hub’s own URL when it is not; offsets rewritten', async () => {
    await hub.api('/users', {
      method: 'POST',
      body: JSON.stringify({ usernames: Array.from({ length: 6 }, (_, i) => `p-${i}`) }),
    });
    const next = async (host: string, query = 'limit=2&offset=0002', extra: Record<string, string> = {}) => {
      const response = await raw(`${hub.url}/hub/api/users?${query}`, {
        headers: {
          host,
          authorization: `token ${hub.adminToken}`,
          accept: 'application/jupyterhub-pagination+json',
          ...extra,
        },
      });
      assert.equal(response.status, 200, response.body);
      return (JSON.parse(response.body) as Json)._pagination.next as Json;
    };
    let link = await next('hub.example:8443', undefined, { 'x-forwarded-proto': 'https' });
    assert.equal(link.url, 'https://hub.example:8443/hub/api/users?limit=2&offset=4');
    assert.equal(link.offset, 4);
    const own = new URL(hub.config.hubConnectUrl).origin;
    for (const hostile of ['evil.example/x?y=', 'a@evil.example', 'evil.example:99999999', 'a b', '[::1]x']) {
      link = await next(hostile);
      assert.ok(link.url.startsWith(`${own}/hub/api/users?`), `${hostile}: ${link.url}`);
    }
    // A hostile scheme is not echoed either; other arguments keep their (escaped) values.
    link = await next('hub.example', 'limit=2&offset=0&name_filter=p-%22%3E', {
      'x-forwarded-proto': 'javascript',
    });
    assert.equal(link, null);
    link = await next('hub.example', 'limit=1&offset=0&name_filter=p-', {
      'x-forwarded-proto': 'javascript',
    });
    assert.equal(link.url, 'http://hub.example/hub/api/users?limit=1&offset=1&name_filter=p-');
  });

  test('the same start sent twice at once spawns once (202 for the one that finds it pending); once running, 400', async () => {
    const start = () =>
      hub.api('/users/carol/server', { method: 'POST', body: JSON.stringify({ delay_ms: 300 }) });
    const answers = await Promise.all([start(), start(), start()]);
    for (const answer of answers) assert.ok([201, 202].includes(answer.status), String(answer.status));
    assert.ok(answers.filter((a) => a.status === 202).length >= 2);
    await waitFor('carol ready', async () => ((await (await hub.api('/users/carol')).json()) as Json).server);
    assert.equal(hub.logs.lines.filter((l) => l.msg === 'spawning server' && l.user === 'carol').length, 1);
    const again = await start();
    assert.equal(again.status, 400);
    assert.equal(await message(again), 'carol is already running');
    // Two stops at once: one stop, the server gone, the other 202 or 204.
    const stops = await Promise.all([
      hub.api('/users/carol/server', { method: 'DELETE' }),
      hub.api('/users/carol/server', { method: 'DELETE' }),
    ]);
    for (const stop of stops) assert.ok([202, 204].includes(stop.status), String(stop.status));
    await waitFor(
      'carol stopped',
      async () => ((await (await hub.api('/users/carol')).json()) as Json).server === null,
    );
    assert.equal(hub.logs.lines.filter((l) => l.msg === 'server stopped' && l.user === 'carol').length, 1);
  });

  test('PATCH /hub/api/proxy: bad types, URLs and header-breaking tokens are 400; a proxy that cannot be used leaves the old one in place', async () => {
    for (const body of [
      { api_url: 123 },
      { auth_token: ['x'] },
      { api_url: 'ftp://127.0.0.1/' },
      { api_url: 'not a url' },
      { api_url: 'http://user:pw@127.0.0.1:1/' },
      { auth_token: 'a\r\nX-Injected: 1' },
      { auth_token: 'a\u0000b' },
      { auth_token: '' },
    ]) {
      const response = await hub.api('/proxy', { method: 'PATCH', body: JSON.stringify(body) });
      assert.equal(response.status, 400, JSON.stringify(body));
    }
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    let response = await hub.api('/proxy', { method: 'PATCH', body: JSON.stringify({ api_url: nowhere }) });
    assert.equal(response.status, 400);
    assert.match(await message(response), /cannot be used .*the proxy settings are unchanged/);
    response = await hub.api('/proxy', {
      method: 'PATCH',
      body: JSON.stringify({ auth_token: 'wrong-token' }),
    });
    assert.equal(response.status, 400);
    // The hub still drives its proxy: routes read, a server started and reached through it.
    assert.equal((await hub.api('/proxy')).status, 200);
    assert.ok([201, 202].includes((await hub.api('/users/alice/server', { method: 'POST' })).status));
    await waitFor('alice ready', async () => ((await (await hub.api('/users/alice')).json()) as Json).server);
    assert.equal((await fetch(`${hub.proxyUrl}/user/alice/x`)).status, 200);
    // The same proxy again is accepted.
    response = await hub.api('/proxy', {
      method: 'PATCH',
      body: JSON.stringify({ api_url: hub.config.proxy.apiUrl }),
    });
    assert.equal(response.status, 200);
  });
});
