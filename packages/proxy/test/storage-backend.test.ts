import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startTestProxy, startUpstream } from './helpers.ts';

const modulePath = fileURLToPath(new URL('./fixtures/chp-storage.js', import.meta.url));

type Stored = Map<string, Record<string, unknown>>;

test('--storage-backend loads a CHP storage module: it seeds the table, takes writes and activity', async () => {
  const upstream = await startUpstream();
  const seeded: Stored = new Map([['/user/seeded', { target: upstream.url, last_activity: new Date(0) }]]);
  (globalThis as { chpStorageRoutes?: Stored }).chpStorageRoutes = seeded;
  const proxy = await startTestProxy(['--storage-backend', modulePath, '--activity-flush-interval', '50ms']);
  try {
    assert.equal(
      (await fetch(`${proxy.url}/user/seeded/x`)).status,
      200,
      'routes already in the store are served',
    );
    await proxy.addRoute('/user/new', upstream.url, { user: 'new' });
    assert.equal(seeded.get('/user/new')?.user, 'new', 'API writes reach the module');
    await (await fetch(`${proxy.url}/user/new/api`)).text();
    const { waitFor } = await import('@seahorse/runtime/testing');
    await waitFor('activity to be flushed to the module', () => {
      const at = seeded.get('/user/new')?.last_activity;
      return at instanceof Date && Date.now() - at.getTime() < 5000;
    });
    assert.equal((await proxy.api('DELETE', '/api/routes/user/new')).status, 204);
    assert.equal(seeded.has('/user/new'), false);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('--storage-backend with a module that does not exist fails with a clear message', async () => {
  await assert.rejects(
    startTestProxy(['--storage-backend', './no/such/module.js']),
    /cannot find module '.\/no\/such\/module.js'/,
  );
});
