// Its own file, hence its own process: whether prom-client was loaded is a fact about the
// whole process, and other tests start proxies with metrics listeners.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, test } from 'node:test';
import { startTestProxy, startUpstream } from './helpers.ts';

const require = createRequire(import.meta.url);
const promClientLoaded = () => Object.keys(require.cache).some((file) => file.includes('/prom-client/'));

test('without a metrics listener the proxy serves requests and never loads prom-client; with one it does', async () => {
  const upstream = await startUpstream();
  after(() => upstream.close());
  const plain = await startTestProxy();
  try {
    await plain.addRoute('/user/a', upstream.url);
    const res = await fetch(`${plain.url}/user/a/x`);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const listed = await plain.api('GET', '/api/routes');
    assert.equal(listed.status, 200);
    await listed.arrayBuffer();
    assert.equal(promClientLoaded(), false, 'prom-client was loaded without --metrics-port');
  } finally {
    await plain.close();
  }

  const counted = await startTestProxy(['--metrics-ip', '127.0.0.1', '--metrics-port', '0']);
  try {
    assert.equal(promClientLoaded(), true);
    const port = (counted.addresses.metrics as { port: number }).port;
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^requests_web 0$/m);
  } finally {
    await counted.close();
  }
});
