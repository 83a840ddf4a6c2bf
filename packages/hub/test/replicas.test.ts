// Two hub processes on one PostgreSQL: each sees what the other wrote (users, tokens, servers,
// login sessions), because nothing lives only in memory.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startPostgres, waitFor } from '@seahorse/runtime/testing';
import { signIn, startTestHub, type TestHub } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

test('a second hub on the same PostgreSQL serves the users, tokens, servers and sessions of the first', async () => {
  const pg = await startPostgres();
  let a: TestHub | undefined;
  let b: TestHub | undefined;
  try {
    a = await startTestHub({ 'JupyterHub.db_url': pg.url, 'Authenticator.allow_all': true });
    b = await startTestHub({
      'JupyterHub.db_url': pg.url,
      'Authenticator.allow_all': true,
      'JupyterHub.bind_url': a.config.bindUrl.href,
      'ConfigurableHTTPProxy.api_url': a.config.proxy.apiUrl,
    });
    assert.equal(b.proxyProcess, undefined, 'the second hub uses the proxy the first started');
    await a.api('/users/alice', { method: 'POST' });
    assert.equal((await b.api('/users/alice')).status, 200);
    const { token } = (await (await a.api('/users/alice/tokens', { method: 'POST' })).json()) as Json;
    assert.equal(((await (await b.api('/user', { token })).json()) as Json).name, 'alice');
    // A server started through one hub is stopped through the other, from the state in the database.
    await a.api('/users/alice/server', { method: 'POST' });
    await waitFor('ready', async () => ((await (await b!.api('/users/alice')).json()) as Json).server);
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
    await b?.close();
    await a?.close();
    await pg.stop();
  }
});
