// Managed services: started with JupyterHub's service environment, their token works against
// the API with the roles load_roles gives them, their output is in the hub's log.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { startTestHub } from './helpers.ts';

const script = `
const url = process.env.JUPYTERHUB_API_URL;
const headers = { authorization: 'token ' + process.env.JUPYTERHUB_API_TOKEN };
(async () => {
  const self = await (await fetch(url + '/user', { headers })).json();
  const users = await fetch(url + '/users', { headers });
  console.log(JSON.stringify({ who: self.name, kind: self.kind, users: users.status, prefix: process.env.JUPYTERHUB_SERVICE_PREFIX }));
  setInterval(() => {}, 1000);
})();
`;

test('a managed service starts with its environment and a token holding its role’s scopes', async () => {
  const hub = await startTestHub({
    'JupyterHub.services': [
      { name: 'admin-service', api_token: 'admin-service-token-0123456789abcdef', admin: true },
      { name: 'culler', command: [process.execPath, '-e', script] },
    ],
    'JupyterHub.load_roles': [{ name: 'culler-role', scopes: ['list:users'], services: ['culler'] }],
  });
  try {
    const line = await waitFor(
      'the service’s report',
      () => hub.logs.lines.find((l) => l.msg === 'service output' && String(l.line).startsWith('{')),
      { timeoutMs: 20_000 },
    );
    assert.equal(line.service, 'culler');
    assert.deepEqual(JSON.parse(String(line.line)), {
      who: 'culler',
      kind: 'service',
      users: 200,
      prefix: '/services/culler/',
    });
  } finally {
    await hub.close();
  }
  assert.ok(hub.logs.has('service started'));
});
