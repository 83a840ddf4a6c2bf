// Debian's jupyterhub-singleuser (JupyterHub 3.0), unmodified, spawned through the API and
// reached through our proxy with a token; its activity reaches the hub.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { WebSocket } from 'ws';
import { signIn, startTestHub } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

test('jupyterhub-singleuser starts through the API: /user/<u>/api/status 200 with a token, a kernel computes 1+1 over the proxied websocket, activity reaches the hub, a browser logs in through OAuth', async () => {
  const hub = await startTestHub(
    {
      'JupyterHub.slow_spawn_timeout': 0.1,
      'Spawner.start_timeout': 90,
      'Authenticator.allow_all': true,
      // Tests run as root here; jupyterhub-singleuser refuses that without the flag.
      'Spawner.args': ['--allow-root'],
      'Spawner.notebook_dir': '/tmp',
      'Spawner.environment': { JUPYTERHUB_ACTIVITY_INTERVAL: '1' },
    },
    { spawnerFactory: 'configured' },
  );
  try {
    await hub.api('/users/alice', { method: 'POST' });
    const created = (await (await hub.api('/users/alice/tokens', { method: 'POST' })).json()) as {
      token: string;
    };
    const start = await hub.api('/users/alice/server', { method: 'POST' });
    assert.ok([201, 202].includes(start.status), `start: ${start.status}`);
    const model = await waitFor(
      'alice’s spawn to finish',
      async () => {
        const user = (await (await hub.api('/users/alice')).json()) as {
          server: string | null;
          pending: string | null;
        };
        return user.pending === null ? user : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 200 },
    );
    assert.equal(model.server, '/user/alice/', hub.logs.text.slice(-3000));
    const status = await fetch(`${hub.proxyUrl}/user/alice/api/status`, {
      headers: { authorization: `token ${created.token}` },
    });
    assert.equal(status.status, 200, await status.clone().text());
    const body = (await status.json()) as { started: string };
    assert.ok(body.started);
    // Without a token the server sends the browser to the hub's OAuth flow, not the content.
    const anonymous = await fetch(`${hub.proxyUrl}/user/alice/api/status`, { redirect: 'manual' });
    assert.notEqual(anonymous.status, 200);
    // Another user's token is refused by the server after asking the hub who it is.
    await hub.api('/users/bob', { method: 'POST' });
    const bob = (await (await hub.api('/users/bob/tokens', { method: 'POST' })).json()) as { token: string };
    const foreign = await fetch(`${hub.proxyUrl}/user/alice/api/status`, {
      headers: { authorization: `token ${bob.token}` },
      redirect: 'manual',
    });
    assert.equal(foreign.status, 403);
    // A kernel computes 1+1 over the websocket, through the proxy.
    const kernel = (await (
      await fetch(`${hub.proxyUrl}/user/alice/api/kernels`, {
        method: 'POST',
        headers: { authorization: `token ${created.token}`, 'content-type': 'application/json' },
        body: '{}',
      })
    ).json()) as { id: string };
    assert.ok(kernel.id);
    const socket = new WebSocket(
      `${hub.proxyUrl.replace('http', 'ws')}/user/alice/api/kernels/${kernel.id}/channels?token=${created.token}`,
    );
    const result = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no execute_result within 60 s')), 60_000);
      socket.on('error', reject);
      socket.on('open', () => {
        socket.send(
          JSON.stringify({
            header: {
              msg_id: 'm1',
              msg_type: 'execute_request',
              username: 'alice',
              session: 's1',
              version: '5.3',
            },
            parent_header: {},
            metadata: {},
            content: {
              code: '1+1',
              silent: false,
              store_history: false,
              user_expressions: {},
              allow_stdin: false,
            },
            channel: 'shell',
            buffers: [],
          }),
        );
      });
      socket.on('message', (data) => {
        const message = JSON.parse(String(data)) as Json;
        if (message.msg_type === 'execute_result' && message.parent_header.msg_id === 'm1') {
          clearTimeout(timer);
          resolve(message.content.data['text/plain']);
        }
      });
    });
    socket.close();
    assert.equal(result, '2');
    // The server reports activity to the hub with its own token (users:activity!user=alice).
    await waitFor(
      'activity from the server',
      async () => {
        const user = (await (await hub.api('/users/alice')).json()) as Json;
        return user.servers['']?.last_activity > user.servers['']?.started;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    // A browser: logged in at the hub, sent through the hub's OAuth provider to the server.
    const jar = new Map<string, string>();
    const browse = async (path: string) => {
      const response = await fetch(`${hub.proxyUrl}${path}`, {
        headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') },
        redirect: 'manual',
      });
      for (const line of response.headers.getSetCookie()) {
        const [pair] = line.split(';');
        const eq = pair!.indexOf('=');
        jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
      }
      return response;
    };
    for (const pair of (await signIn(hub.proxyUrl, 'alice', 'any')).split('; ')) {
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    let page = await browse('/user/alice/tree');
    const hops: string[] = [];
    while (page.status === 302 && hops.length < 6) {
      const location = page.headers.get('location')!;
      hops.push(location.split('?')[0]!);
      page = await browse(
        location.startsWith('http') ? new URL(location).pathname + new URL(location).search : location,
      );
    }
    assert.deepEqual(hops.slice(0, 2), ['/hub/api/oauth2/authorize', '/user/alice/oauth_callback']);
    assert.equal(page.status, 200, `after ${hops.join(' -> ')}`);
    const contents = await browse('/user/alice/api/contents');
    assert.equal(contents.status, 200);
    assert.equal(((await contents.json()) as Json).type, 'directory');
    const stop = await hub.api('/users/alice/server', { method: 'DELETE' });
    assert.ok([202, 204].includes(stop.status));
    await waitFor(
      'stopped',
      async () => {
        const user = (await (await hub.api('/users/alice')).json()) as Json;
        return user.server === null && user.pending === null;
      },
      { timeoutMs: 30_000 },
    );
  } finally {
    await hub.close();
  }
});
