// Login through the header and password authenticators, signed-cookie sessions and logout.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { signIn, startTestHub } from './helpers.ts';

function cookieOf(response: Response): string {
  const header = response.headers.get('set-cookie') ?? '';
  return header.split(';')[0]!;
}

test('header authenticator: a trusted source logs the user in; the cookie identifies them', async () => {
  const hub = await startTestHub({
    'JupyterHub.authenticator_class': 'header',
    'Authenticator.allowed_users': ['alice'],
    'Authenticator.admin_users': ['root'],
    'HeaderAuthenticator.trusted_sources': ['127.0.0.0/8'],
  });
  try {
    let response = await fetch(`${hub.url}/hub/login?next=/hub/home`, {
      headers: { 'x-auth-request-user': 'Alice' },
      redirect: 'manual',
    });
    assert.equal(response.status, 302);
    assert.equal(response.headers.get('location'), '/hub/home');
    const cookie = cookieOf(response);
    assert.match(cookie, /^jupyterhub-hub-login=/);
    assert.match(response.headers.get('set-cookie')!, /HttpOnly/);
    response = await fetch(`${hub.url}/hub/api/user`, {
      headers: { cookie, referer: `${hub.url}/hub/home` },
    });
    assert.equal(response.status, 200);
    assert.equal(((await response.json()) as { name: string }).name, 'alice');
    // A cookie without a Referer from the hub's pages never authorizes an API call (no cross-site forms).
    response = await fetch(`${hub.url}/hub/api/users/alice/server`, { method: 'POST', headers: { cookie } });
    assert.equal(response.status, 403);
    // A user not allowed is refused; a missing header is 401.
    response = await fetch(`${hub.url}/hub/login`, {
      headers: { 'x-auth-request-user': 'mallory' },
      redirect: 'manual',
    });
    assert.equal(response.status, 403);
    response = await fetch(`${hub.url}/hub/login`, { redirect: 'manual' });
    assert.equal(response.status, 401);
    // An open redirect is not followed.
    response = await fetch(`${hub.url}/hub/login?next=https://evil.example/`, {
      headers: { 'x-auth-request-user': 'alice' },
      redirect: 'manual',
    });
    assert.equal(response.headers.get('location'), '/hub/spawn');
    // Logout ends every session of the user.
    response = await fetch(`${hub.url}/hub/logout`, { headers: { cookie }, redirect: 'manual' });
    assert.equal(response.status, 302);
    const referer = `${hub.url}/hub/home`;
    assert.equal((await fetch(`${hub.url}/hub/api/user`, { headers: { cookie, referer } })).status, 403);
    // A forged cookie is refused.
    const forged = cookie.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    assert.equal(
      (await fetch(`${hub.url}/hub/api/user`, { headers: { cookie: forged, referer } })).status,
      403,
    );
  } finally {
    await hub.close();
  }
});

test('header authenticator: the header from an untrusted source is refused', async () => {
  const hub = await startTestHub({
    'JupyterHub.authenticator_class': 'header',
    'Authenticator.allow_all': true,
    'HeaderAuthenticator.trusted_sources': ['10.0.0.0/8'],
  });
  try {
    const response = await fetch(`${hub.url}/hub/login`, {
      headers: { 'x-auth-request-user': 'admin' },
      redirect: 'manual',
    });
    assert.equal(response.status, 403);
    assert.ok(!response.headers.getSetCookie().some((c) => c.startsWith('jupyterhub-hub-login=')));
    assert.equal(await hub.db.get("SELECT id FROM users WHERE name = 'admin'"), undefined);
  } finally {
    await hub.close();
  }
});

test('password authenticator: the shared password logs in, a wrong one does not', async () => {
  const hub = await startTestHub({
    'JupyterHub.authenticator_class': 'password',
    'PasswordAuthenticator.password': 'correct horse',
    'Authenticator.allow_all': true,
  });
  try {
    await assert.rejects(signIn(hub.url, 'bob', 'wrong'), /sign-in failed: 403/);
    const cookie = await signIn(hub.url, 'bob', 'correct horse');
    const response = await fetch(`${hub.url}/hub/home`, { headers: { cookie } });
    assert.equal(response.status, 200);
    assert.match(await response.text(), /<span class="who">bob<\/span>/);
    const page = await fetch(`${hub.url}/hub/login`);
    assert.match(await page.text(), /<label for="password">/);
  } finally {
    await hub.close();
  }
});

test('the password authenticator without a password fails at start, saying what to set', async () => {
  await assert.rejects(
    startTestHub({ 'JupyterHub.authenticator_class': 'password' }),
    /the password authenticator needs a password: set JUPYTER_PASSWORD/,
  );
});
