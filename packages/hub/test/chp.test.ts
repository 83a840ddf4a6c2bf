// The hub with configurable-http-proxy 4.6.1 from npm as its proxy (started by the hub), as a
// JupyterHub user may keep it: routes added with the hub's data, servers reached, the route
// check and activity reads working against CHP's API.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { repoRoot, startTestHub } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

const chp = join(
  repoRoot,
  'packages/proxy/bench/node_modules/configurable-http-proxy/bin/configurable-http-proxy',
);
const skip = existsSync(chp)
  ? false
  : 'CHP 4.6.1 is not installed: npm install --prefix packages/proxy/bench';

test('with CHP 4.6.1 as the proxy, servers are routed, checked and their activity read', {
  skip,
}, async () => {
  const hub = await startTestHub({
    'ConfigurableHTTPProxy.command': [process.execPath, chp],
    'JupyterHub.allow_named_servers': true,
    'JupyterHub.last_activity_interval': 1,
  });
  try {
    await hub.api('/users/alice', { method: 'POST' });
    await hub.api('/users/alice/servers/lab', { method: 'POST' });
    await waitFor(
      'ready',
      async () => ((await (await hub.api('/users/alice')).json()) as Json).servers.lab?.ready,
    );
    const proxied = await fetch(`${hub.proxyUrl}/user/alice/lab/api/status`);
    assert.equal(proxied.status, 200);
    assert.equal(((await proxied.json()) as Json).path, '/user/alice/lab/api/status');
    // The proxy saw the request; the hub reads that into the server's and the user's activity.
    const started = ((await (await hub.api('/users/alice')).json()) as Json).servers.lab.started as string;
    await new Promise((resolve) => setTimeout(resolve, 20));
    await fetch(`${hub.proxyUrl}/user/alice/lab/`);
    await waitFor(
      'activity from the proxy',
      async () => {
        const model = (await (await hub.api('/users/alice')).json()) as Json;
        return model.servers.lab.last_activity > started && model.last_activity > started;
      },
      { timeoutMs: 15_000 },
    );
    const routes = (await (await hub.api('/proxy')).json()) as Json;
    assert.deepEqual(routes['/user/alice/lab/'].data.server_name, 'lab');
    assert.equal(routes['/'].data.hub, true);
    // A route lost by the proxy comes back with the check.
    await hub.hub.proxy.deleteRoute('/user/alice/lab/');
    await hub.api('/proxy', { method: 'POST' });
    assert.ok(((await (await hub.api('/proxy')).json()) as Json)['/user/alice/lab/']);
    assert.equal((await hub.api('/users/alice/servers/lab', { method: 'DELETE' })).status, 204);
    assert.equal(((await (await hub.api('/proxy')).json()) as Json)['/user/alice/lab/'], undefined);
  } finally {
    await hub.close();
  }
});
