// Hostile input against a real hub on loopback (our proxy, real server processes, a real
// PostgreSQL where it matters): each test is a defect found by attacking the hub, kept so it
// stays fixed.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startTestHub, type TestHub } from './helpers.ts';

describe('header authenticator behind the hub’s own proxy', () => {
  let hub: TestHub;
  before(async () => {
    hub = await startTestHub({
      'JupyterHub.authenticator_class': 'header',
      'Authenticator.allow_all': true,
      'Authenticator.admin_users': ['boss'],
    });
  });
  after(() => hub?.close());

  const login = (base: string, headers: Record<string, string>, query = '') =>
    fetch(`${base}/hub/login${query}`, { headers, redirect: 'manual' });

  /** A request from 127.0.0.2: a client that is not in trusted_sources (127.0.0.1, ::1). */
  const fromElsewhere = (base: string, headers: Record<string, string>) =>
    new Promise<{ status: number; cookie: string | undefined }>((resolve, reject) => {
      request(`${base}/hub/login`, { headers, localAddress: '127.0.0.2' }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, cookie: res.headers['set-cookie']?.[0] });
      })
        .on('error', reject)
        .end();
    });

  test('the user header sent by anyone to the public proxy port is refused', async () => {
    // The proxy is on loopback, so the hub sees every request come from a trusted address;
    // the address that reached the proxy is the last X-Forwarded-For entry.
    let response = await fromElsewhere(hub.proxyUrl, { 'x-auth-request-user': 'boss' });
    assert.equal(response.status, 403);
    assert.equal(response.cookie, undefined);
    response = await fromElsewhere(hub.proxyUrl, {
      'x-auth-request-user': 'boss',
      'x-forwarded-for': '127.0.0.1',
    });
    assert.equal(response.status, 403);
    // The same client straight to the hub is refused as before.
    assert.equal((await fromElsewhere(hub.url, { 'x-auth-request-user': 'boss' })).status, 403);
  });

  test('a trusted relay reporting an untrusted client is refused; a trusted one is accepted', async () => {
    let response = await login(hub.url, { 'x-auth-request-user': 'boss', 'x-forwarded-for': '203.0.113.9' });
    assert.equal(response.status, 403);
    response = await login(hub.url, {
      'x-auth-request-user': 'boss',
      'x-forwarded-for': '203.0.113.9, 127.0.0.1',
    });
    assert.equal(response.status, 302);
    response = await login(hub.url, { 'x-auth-request-user': 'boss' });
    assert.equal(response.status, 302);
  });

  test('next= with control characters is not followed (browsers drop tabs: /\\t/evil is //evil)', async () => {
    for (const next of ['/%09/evil.example', '/%0a/evil.example', '/%0d%0aSet-Cookie:%20x=1', '/%00x']) {
      const response = await login(hub.url, { 'x-auth-request-user': 'alice' }, `?next=${next}`);
      assert.equal(response.status, 302, next);
      assert.equal(response.headers.get('location'), '/hub/home', next);
    }
  });
});
