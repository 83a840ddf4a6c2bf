// The purge broadcaster against several real HTTP servers on loopback (127.0.0.2, .3, ...: one
// "pod" per address, all on one port, as pods behind a headless Service), found through a DNS
// server the test controls.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseFlags } from '@seahorse/runtime';
import { freePort } from '@seahorse/runtime/testing';
import { type Broadcaster, startBroadcaster, systemResolver } from '../src/broadcaster/broadcaster.ts';
import { broadcasterFlagSpecs, buildBroadcasterOptions } from '../src/broadcaster/options.ts';
import { TestDnsServer } from './dns-server.ts';
import { call as callGateway, testLogger } from './helpers.ts';

/** One exchange: GET unless `method` says otherwise. */
const call = (
  base: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
) => callGateway(base, { method: 'GET', path, ...options });

interface Seen {
  pod: string;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

const service = 'embedding-gateway-varnish-headless.test.svc.cluster.local';

describe('purge broadcaster', () => {
  const dns = new TestDnsServer();
  const pods: Server[] = [];
  const seen: Seen[] = [];
  const behaviour = new Map<
    string,
    'ok' | 'notFound' | 'hang' | 'slow' | 'dropReused' | 'garbage' | 'endless'
  >();
  const requestsOnSocket = new WeakMap<object, number>();
  let inFlight = 0;
  let maxInFlight = 0;
  let port = 0;
  let broadcaster: Broadcaster;
  let url = '';

  async function start(args: string[] = []): Promise<{ broadcaster: Broadcaster; url: string }> {
    const flags = parseFlags(
      broadcasterFlagSpecs,
      [
        '--address=127.0.0.1:0',
        `--target-service=${service}`,
        `--target-port=${port}`,
        `--dns-server=${dns.server}`,
        '--pod-timeout=500ms',
        '--lameduck=0',
        ...args,
      ],
      {},
    );
    const options = buildBroadcasterOptions(flags);
    const started = await startBroadcaster(
      options,
      testLogger().log,
      systemResolver(options.dnsServers, 1000),
    );
    const bound = 'port' in started.address ? started.address.port : 0;
    return { broadcaster: started, url: `http://127.0.0.1:${bound}` };
  }

  before(async () => {
    await dns.start();
    port = await freePort('127.0.0.2');
    for (const pod of ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']) {
      behaviour.set(pod, 'ok');
      const server = createServer((req, res) => {
        const count = (requestsOnSocket.get(req.socket) ?? 0) + 1;
        requestsOnSocket.set(req.socket, count);
        const mode = behaviour.get(pod);
        // A pod that closed a kept-alive connection while the broadcaster was about to reuse it.
        if (mode === 'dropReused' && count > 1) {
          req.socket.destroy();
          return;
        }
        if (mode === 'garbage') {
          req.socket.end('SMTP ready\r\n\r\n');
          return;
        }
        if (mode === 'endless') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          const pump = () => {
            while (!res.destroyed && res.write('x'.repeat(16384))) {}
            if (!res.destroyed) res.once('drain', pump);
          };
          pump();
          return;
        }
        const chunks: Buffer[] = [];
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.on('end', () => {
          seen.push({
            pod,
            method: req.method!,
            url: req.url!,
            headers: req.headers,
            body: Buffer.concat(chunks).toString(),
          });
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          const answer = () => {
            inFlight--;
            res.writeHead(mode === 'notFound' ? 404 : 200, { 'content-type': 'text/plain' });
            res.end(mode === 'notFound' ? 'Not Found' : 'Purged');
          };
          if (mode === 'hang') {
            res.once('close', () => inFlight--);
            return;
          }
          setTimeout(answer, mode === 'slow' ? 50 : 0);
        });
      });
      await new Promise<void>((resolve) => server.listen(port, pod, resolve));
      pods.push(server);
    }
    dns.records.set(service, ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    ({ broadcaster, url } = await start());
  });

  after(async () => {
    await broadcaster.close();
    for (const server of pods) {
      server.closeAllConnections();
      server.close();
    }
    await dns.close();
  });

  function reset() {
    seen.length = 0;
    maxInFlight = 0;
    for (const pod of behaviour.keys()) behaviour.set(pod, 'ok');
    dns.records.set(service, ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
  }

  test('a PURGE reaches every pod the Service resolves to, and the answer is the original JSON', async () => {
    reset();
    const answer = await call(url, '/v1/embeddings?x=1', {
      method: 'PURGE',
      headers: {
        expect: '100-continue',
        'x-purge-all': 'true',
        'surrogate-key': 'model:a',
        connection: 'keep-alive, x-drop-me',
        'x-drop-me': '1',
      },
    });
    assert.equal(answer.status, 200, answer.text);
    assert.equal(answer.headers['content-type'], 'application/json');
    assert.equal(
      answer.text,
      '{"total":3,"success":3,"failed":0,"results":[{"pod":"127.0.0.2","status":200,"success":true},{"pod":"127.0.0.3","status":200,"success":true},{"pod":"127.0.0.4","status":200,"success":true}]}\n',
    );
    assert.deepEqual(seen.map((s) => s.pod).sort(), ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    for (const request of seen) {
      assert.equal(request.method, 'PURGE');
      assert.equal(request.url, '/v1/embeddings?x=1');
      assert.equal(request.headers.host, service, 'Host is the Service name, as the original sets it');
      assert.equal(request.headers['x-purge-all'], 'true');
      assert.equal(request.headers['surrogate-key'], 'model:a');
      assert.equal(request.headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(request.headers['x-drop-me'], undefined, 'headers named by Connection are hop-by-hop');
      assert.equal(request.headers.expect, undefined);
    }
  });

  test('the Service is looked up on every request: a pod added to DNS gets the next PURGE', async () => {
    reset();
    dns.records.set(service, ['127.0.0.5']);
    const answer = await call(url, '/', { method: 'PURGE' });
    assert.equal((answer.json() as { total: number }).total, 1);
    assert.deepEqual(
      seen.map((s) => s.pod),
      ['127.0.0.5'],
    );
  });

  test('success means 0 < status < 400: a 404 pod and an unreachable pod are failures with the reason', async () => {
    reset();
    behaviour.set('127.0.0.3', 'notFound');
    dns.records.set(service, ['127.0.0.2', '127.0.0.3', '127.0.0.9']);
    const answer = await call(url, '/x', { method: 'PURGE' });
    const body = answer.json() as {
      total: number;
      success: number;
      failed: number;
      results: Array<Record<string, unknown>>;
    };
    assert.equal(answer.status, 200);
    assert.equal(body.total, 3);
    assert.equal(body.success, 1);
    assert.equal(body.failed, 2);
    assert.deepEqual(body.results[1], { pod: '127.0.0.3', status: 404, success: false });
    assert.equal(body.results[2]!.pod, '127.0.0.9');
    assert.equal(body.results[2]!.status, 0);
    assert.match(String(body.results[2]!.error), /ECONNREFUSED/);
  });

  test('a pod that never answers fails after --pod-timeout; the others are reported', async () => {
    reset();
    behaviour.set('127.0.0.4', 'hang');
    const started = Date.now();
    const answer = await call(url, '/', { method: 'PURGE' });
    const elapsed = Date.now() - started;
    const body = answer.json() as { success: number; results: Array<Record<string, unknown>> };
    assert.equal(body.success, 2);
    assert.deepEqual(body.results[2], {
      pod: '127.0.0.4',
      status: 0,
      success: false,
      error: 'no answer within 500 ms (--pod-timeout)',
    });
    assert.ok(elapsed >= 450 && elapsed < 5000, `answered after ${elapsed} ms`);
  });

  test('a kept-alive connection the pod dropped (idle timeout, restart) is retried once on a new one', async () => {
    reset();
    assert.equal((await call(url, '/warm', { method: 'PURGE' })).status, 200);
    behaviour.set('127.0.0.2', 'dropReused');
    const answer = await call(url, '/again', { method: 'PURGE' });
    const body = answer.json() as { success: number; results: unknown[] };
    assert.equal(body.success, 3, JSON.stringify(body));
    assert.equal(seen.filter((s) => s.pod === '127.0.0.2' && s.url === '/again').length, 1);
  });

  test('hostile pods (not HTTP, an answer without end) are failures with a reason; the others succeed', async () => {
    reset();
    behaviour.set('127.0.0.3', 'garbage');
    behaviour.set('127.0.0.4', 'endless');
    const answer = await call(url, '/', { method: 'PURGE' });
    const body = answer.json() as { success: number; results: Array<Record<string, unknown>> };
    assert.equal(body.success, 1);
    assert.equal(body.results[1]!.success, false);
    assert.match(String(body.results[1]!.error), /parse|HPE|Parse/i);
    assert.deepEqual(body.results[2], {
      pod: '127.0.0.4',
      status: 0,
      success: false,
      error: 'no answer within 500 ms (--pod-timeout)',
    });
  });

  test('a pod named twice in the DNS answer gets one PURGE and is reported once', async () => {
    reset();
    dns.records.set(service, ['127.0.0.2', '127.0.0.3', '127.0.0.2']);
    const answer = await call(url, '/twice', { method: 'PURGE' });
    const body = answer.json() as { total: number; results: Array<{ pod: string }> };
    assert.equal(body.total, 2);
    assert.deepEqual(
      body.results.map((r) => r.pod),
      ['127.0.0.2', '127.0.0.3'],
    );
    assert.equal(seen.filter((s) => s.url === '/twice').length, 2);
  });

  test('other methods answer 405 and reach no pod; Node refuses BAN before any handler', async () => {
    reset();
    for (const method of ['GET', 'POST', 'DELETE', 'PUT']) {
      const answer = await call(url, '/v1/embeddings', { method, body: method === 'GET' ? undefined : '{}' });
      assert.equal(answer.status, 405, method);
      assert.equal(answer.headers.allow, 'PURGE');
      assert.deepEqual(answer.json(), { error: `${method} is not broadcast; send PURGE` });
    }
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(url).port), '127.0.0.1');
      let text = '';
      socket.on('data', (chunk) => (text += chunk));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
      socket.end('BAN / HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    assert.match(raw, /^HTTP\/1\.1 400 /);
    assert.equal(seen.length, 0);
  });

  test('GET /healthz answers OK as the original does, and /readyz says ready', async () => {
    const health = await call(url, '/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.text, 'OK');
    assert.equal(health.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal((await call(url, '/readyz')).status, 200);
  });

  test('GET /metrics counts broadcasts and pod answers by outcome', async () => {
    const metrics = await call(url, '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /embedding_gateway_broadcasts_total\{result="complete"\} [1-9]/);
    assert.match(metrics.text, /embedding_gateway_broadcasts_total\{result="partial"\} [1-9]/);
    assert.match(metrics.text, /embedding_gateway_broadcast_pod_requests_total\{outcome="error"\} [1-9]/);
    assert.match(metrics.text, /embedding_gateway_broadcast_pod_requests_total\{outcome="status"\} [1-9]/);
    assert.match(metrics.text, /embedding_gateway_broadcast_duration_seconds_count [1-9]/);
  });

  test('a name that does not resolve is a 502 with the original message, reaching no pod', async () => {
    reset();
    dns.records.delete(service);
    const answer = await call(url, '/', { method: 'PURGE' });
    assert.equal(answer.status, 502);
    assert.deepEqual(answer.json(), { error: 'service discovery failed' });
    dns.failing.add(service);
    assert.equal((await call(url, '/', { method: 'PURGE' })).status, 502);
    dns.failing.delete(service);
    dns.records.set(service, ['127.0.0.2']);
    dns.silent.add(service);
    const started = Date.now();
    const silent = await call(url, '/', { method: 'PURGE' });
    dns.silent.delete(service);
    assert.equal(silent.status, 502);
    assert.ok(
      Date.now() - started < 900,
      'a silent DNS server costs --pod-timeout, not the resolver retries',
    );
    assert.equal(seen.length, 0);
  });

  test('a body over --max-body-size is a 413 reaching no pod; a small one reaches every pod', async () => {
    reset();
    const big = await call(url, '/', { method: 'PURGE', body: 'x'.repeat(70_000) });
    assert.equal(big.status, 413);
    assert.equal(seen.length, 0);
    const small = await call(url, '/', { method: 'PURGE', body: 'hello' });
    assert.equal(small.status, 200);
    assert.deepEqual(
      seen.map((s) => s.body),
      ['hello', 'hello', 'hello'],
    );
    assert.ok(seen.every((s) => s.headers['content-length'] === '5'));
  });

  test('--concurrency bounds the pods contacted at once', async () => {
    reset();
    const limited = await start(['--concurrency=2']);
    try {
      for (const pod of behaviour.keys()) behaviour.set(pod, 'slow');
      dns.records.set(service, ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']);
      const answer = await call(limited.url, '/', { method: 'PURGE' });
      assert.equal((answer.json() as { success: number }).success, 4);
      assert.equal(maxInFlight, 2);
    } finally {
      await limited.broadcaster.close();
    }
  });

  test('--methods widens what is broadcast', async () => {
    reset();
    const widened = await start(['--methods=PURGE,POST']);
    try {
      const answer = await call(widened.url, '/', { method: 'POST', body: '{}' });
      assert.equal((answer.json() as { total: number }).total, 3);
    } finally {
      await widened.broadcaster.close();
    }
  });
});

test('the bin: `broadcaster` without TARGET_SERVICE exits 2 with the original message', () => {
  const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
  const result = spawnSync(process.execPath, ['--conditions=seahorse-source', cli, 'broadcaster'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH },
  });
  assert.equal(result.status, 2, result.stderr);
  assert.match(result.stderr, /--target-service or TARGET_SERVICE is required/);
  const help = spawnSync(process.execPath, ['--conditions=seahorse-source', cli, 'broadcaster', '--help'], {
    encoding: 'utf8',
  });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /TARGET_PORT/);
});
