// `--workers N`: several processes share the public port, each with the full routing table.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort, waitFor } from '@seahorse/runtime/testing';
import { rawRequest, startProxyProcess, startUpstream } from './helpers.ts';

const token = 'workers-test-token';

function childrenOf(pid: number): number[] {
  const result = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  return result.stdout.split('\n').filter(Boolean).map(Number);
}

test('--workers 2 serves every route from every worker, aggregates activity and metrics, and stops cleanly', async () => {
  const upstream = await startUpstream();
  const metricsPort = await freePort();
  const pidFile = join(mkdtempSync(join(tmpdir(), 'seahorse-workers-')), 'proxy.pid');
  const started = await startProxyProcess(
    [
      ...['--workers', '2', '--metrics-ip', '127.0.0.1', '--metrics-port', String(metricsPort)],
      ...['--pid-file', pidFile, '--default-target', upstream.url],
    ],
    { name: 'proxy --workers 2', token, ready: async (proxy) => childrenOf(proxy.process.pid).length === 2 },
  );
  const { process: proxy, port, apiPort } = started;
  const api = (method: string, path: string, body?: unknown) =>
    fetch(`http://127.0.0.1:${apiPort}${path}`, {
      method,
      headers: { authorization: `token ${token}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  // Fresh connections, so the kernel hands them to either worker. The route /user/w targets
  // <upstream>/via-w, so the echoed path tells which route served: /user/w or the default.
  const servedByW = async (path: string, count: number) =>
    Promise.all(
      Array.from({ length: count }, async () => {
        const res = await rawRequest(`http://127.0.0.1:${port}${path}`);
        return (
          res.status === 200 && (JSON.parse(res.body.toString()) as { url: string }).url.startsWith('/via-w/')
        );
      }),
    );
  try {
    assert.equal((await api('POST', '/api/routes/user/w', { target: `${upstream.url}/via-w` })).status, 201);
    await waitFor('every worker to have the route', async () =>
      (await servedByW('/user/w/x', 30)).every(Boolean),
    );

    // Activity seen by a worker is in the primary's answer at once.
    const before = Date.now();
    await rawRequest(`http://127.0.0.1:${port}/user/w/busy`);
    const listed = (await (await api('GET', '/api/routes')).json()) as Record<
      string,
      { last_activity: string }
    >;
    assert.ok(Date.parse(listed['/user/w']!.last_activity) >= before - 1);
    assert.ok(listed['/'], 'the default route is listed');

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const served = Number(/^requests_web (\d+)/m.exec(metrics)?.[1]);
    assert.ok(served >= 31, `requests_web sums both workers (got ${served})`);
    assert.match(metrics, /^api_route_add 1$/m, 'the primary counts API writes');

    // A worker that dies is replaced, and the new one gets the table.
    const [first] = childrenOf(proxy.pid);
    process.kill(first!, 'SIGKILL');
    await waitFor('a replacement worker', () => {
      const now = childrenOf(proxy.pid);
      return now.length === 2 && !now.includes(first!);
    });
    await waitFor('the replacement to serve the route', async () =>
      (await servedByW('/user/w/y', 30)).every(Boolean),
    );

    assert.equal((await api('DELETE', '/api/routes/user/w')).status, 204);
    await waitFor('every worker to drop the route', async () =>
      (await servedByW('/user/w/x', 30)).every((byW) => !byW),
    );

    const workers = childrenOf(proxy.pid);
    proxy.signal('SIGTERM');
    assert.equal(await proxy.exited, 0);
    assert.equal(existsSync(pidFile), false);
    for (const pid of workers) assert.throws(() => process.kill(pid, 0), 'worker exited with the primary');
  } finally {
    await proxy.stop();
    await upstream.close();
  }
});
