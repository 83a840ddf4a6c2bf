// concurrent_spawn_limit and active_server_limit answer 429 as JupyterHub does.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { startTestHub } from './helpers.ts';

test('a spawn past concurrent_spawn_limit is 429 with Retry-After; past active_server_limit 429', async () => {
  const hub = await startTestHub({
    'JupyterHub.concurrent_spawn_limit': 1,
    'JupyterHub.active_server_limit': 1,
    'JupyterHub.slow_spawn_timeout': 0.1,
  });
  try {
    await hub.api('/users', { method: 'POST', body: JSON.stringify({ usernames: ['a', 'b'] }) });
    assert.equal(
      (await hub.api('/users/a/server', { method: 'POST', body: JSON.stringify({ delay_ms: 1000 }) })).status,
      202,
    );
    let response = await hub.api('/users/b/server', { method: 'POST' });
    assert.equal(response.status, 429);
    assert.match(response.headers.get('retry-after') ?? '', /^\d+$/);
    assert.match(
      ((await response.json()) as { message: string }).message,
      /^Too many users trying to log in right now\. Try again in \d+0 seconds\.$/,
    );
    await waitFor(
      'a ready',
      async () => ((await (await hub.api('/users/a')).json()) as { server: string }).server,
    );
    response = await hub.api('/users/b/server', { method: 'POST' });
    assert.equal(response.status, 429);
    assert.equal(
      ((await response.json()) as { message: string }).message,
      'Active user limit exceeded. Try again in a few minutes.',
    );
  } finally {
    await hub.close();
  }
});

test('hostile paths end with a clear status, not a crash', async () => {
  const hub = await startTestHub();
  try {
    assert.equal((await hub.api('/users/%E0%A4%A')).status, 404);
    assert.equal((await hub.api('/users/a/b/c/d/e/f')).status, 404);
    // A body declared far over the limit is refused before it is read, and the connection closed.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(hub.url).port), '127.0.0.1', () => {
        socket.write(
          `POST /hub/api/users HTTP/1.1\r\nhost: hub\r\nauthorization: token ${hub.adminToken}\r\ncontent-length: ${50 * 1024 * 1024}\r\n\r\nx`,
        );
      });
      let data = '';
      socket.on('data', (chunk) => {
        data += chunk.toString();
      });
      socket.on('close', () => resolve(data));
      socket.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 413 /);
    assert.match(answer, /"status":413/);
    assert.equal((await hub.api('/')).status, 200, 'the hub still answers');
  } finally {
    await hub.close();
  }
});
