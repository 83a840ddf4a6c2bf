// The bundle's VCL in the real Varnish 7.1 in front of the real gateway (and the fake OpenAI
// behind it): hit, miss, grace while the gateway is down, each PURGE form, and each defect of
// the original VCL, fixed. Two Varnish instances: one caching per API key, one shared.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseFlags } from '@seahorse/runtime';
import { findBinary, freePort, waitFor } from '@seahorse/runtime/testing';
import { startBroadcaster, systemResolver } from '../src/broadcaster/broadcaster.ts';
import { broadcasterFlagSpecs, buildBroadcasterOptions } from '../src/broadcaster/options.ts';
import { TestDnsServer } from './dns-server.ts';
import { type FakeOpenAI, startFakeOpenAI } from './fake-openai.ts';
import { startTestGateway, type TestGateway, testLogger } from './helpers.ts';
import { startVarnish, type Varnish, vclDir } from './varnish.ts';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

function send(
  port: number,
  options: {
    host?: string;
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    localAddress?: string;
  },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: options.host ?? '127.0.0.1',
        port,
        method: options.method ?? 'GET',
        path: options.path ?? '/',
        headers: options.headers ?? {},
        localAddress: options.localAddress,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const sha256 = (text: string | Buffer) => createHash('sha256').update(text).digest('hex');

/** A POST /v1/embeddings as Envoy hands it to Varnish after the hasher: x-body-hash set. */
function embed(varnish: Varnish, input: string, key = 'sk-one', extra: Record<string, string> = {}) {
  const body = JSON.stringify({ model: 'text-embedding-3-small', input });
  return send(varnish.port, {
    method: 'POST',
    path: '/v1/embeddings',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      'x-body-hash': sha256(body),
      ...extra,
    },
    body,
  });
}

function purge(varnish: Varnish, path: string, headers: Record<string, string> = {}, localAddress?: string) {
  return send(varnish.purgePort, { host: varnish.purgeHost, method: 'PURGE', path, headers, localAddress });
}

describe('Varnish with the bundle VCL in front of the gateway', () => {
  let fake: FakeOpenAI;
  let gateway: TestGateway;
  let perKey: Varnish;
  let shared: Varnish;
  const dns = new TestDnsServer();

  before(async () => {
    fake = await startFakeOpenAI();
    gateway = await startTestGateway(fake.baseUrl);
    const backendPort = Number(new URL(gateway.url).port);
    // Both purge listeners on one port at two addresses: two "pods" for the broadcaster.
    const purgePort = await freePort('127.0.0.2');
    [perKey, shared] = await Promise.all([
      startVarnish({ backendPort, scope: 'per-key', purgeHost: '127.0.0.2', purgePort, ttl: '3s' }),
      startVarnish({ backendPort, scope: 'shared', purgeHost: '127.0.0.3', purgePort }),
    ]);
    await dns.start();
  });

  after(async () => {
    await Promise.all([perKey?.stop(), shared?.stop()]);
    await gateway?.stop();
    await fake?.close();
    await dns.close();
  });

  test('a miss goes to the gateway, the same body with the same key is a hit with the same answer', async () => {
    const calls = fake.requests.length;
    const first = await embed(perKey, 'hit and miss');
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers['x-cache'], 'MISS');
    const second = await embed(perKey, 'hit and miss');
    assert.equal(second.headers['x-cache'], 'HIT', 'an Authorization header no longer bypasses the cache');
    assert.deepEqual(JSON.parse(second.text), JSON.parse(first.text));
    assert.equal(fake.requests.length, calls + 1);
    assert.equal(second.headers['x-url'], undefined, 'internal headers stay inside');
    assert.equal((await embed(perKey, 'another body')).headers['x-cache'], 'MISS');
  });

  test('per-key scope: another API key misses; shared scope: another key hits', async () => {
    await embed(perKey, 'scoped');
    assert.equal((await embed(perKey, 'scoped', 'sk-two')).headers['x-cache'], 'MISS');
    const forged = await embed(perKey, 'scoped', 'sk-three', { 'x-cache-scope': 'shared' });
    assert.equal(forged.headers['x-cache'], 'MISS', 'a client cannot choose the shared scope');
    assert.equal((await embed(perKey, 'scoped', 'sk-two')).headers['x-cache'], 'HIT');
    assert.equal((await embed(shared, 'scoped', 'sk-one')).headers['x-cache'], 'MISS');
    assert.equal((await embed(shared, 'scoped', 'sk-two')).headers['x-cache'], 'HIT');
  });

  test('an error answer (404 model not found) is not cached', async () => {
    const body = JSON.stringify({ model: 'no-such-model', input: 'x' });
    const headers = {
      authorization: 'Bearer sk-one',
      'content-type': 'application/json',
      'x-body-hash': sha256(body),
    };
    const calls = fake.requests.length;
    for (let i = 0; i < 2; i++) {
      const answer = await send(perKey.port, { method: 'POST', path: '/v1/embeddings', headers, body });
      assert.equal(answer.status, 404);
      assert.notEqual(answer.headers['x-cache'], 'HIT');
    }
    assert.equal(fake.requests.length, calls + 2, 'each 404 was asked again');
  });

  test('a POST without a well-formed hash passes; a hashed body over 1 MB passes instead of resetting', async () => {
    for (const hash of [undefined, 'abc', 'F'.repeat(64)]) {
      const body = JSON.stringify({ model: 'text-embedding-3-small', input: `no hash ${hash}` });
      const headers: Record<string, string> = {
        authorization: 'Bearer sk-one',
        'content-type': 'application/json',
      };
      if (hash) headers['x-body-hash'] = hash;
      for (let i = 0; i < 2; i++) {
        const answer = await send(perKey.port, { method: 'POST', path: '/v1/embeddings', headers, body });
        assert.equal(answer.status, 200);
        assert.equal(answer.headers['x-cache'], 'PASS');
      }
    }
    const big = JSON.stringify({ model: 'text-embedding-3-small', input: 'x'.repeat(2 * 1024 * 1024) });
    const answer = await send(perKey.port, {
      method: 'POST',
      path: '/v1/embeddings',
      headers: {
        authorization: 'Bearer sk-one',
        'content-type': 'application/json',
        'x-body-hash': sha256(big),
      },
      body: big,
    });
    assert.equal(answer.status, 200, answer.text.slice(0, 200));
    assert.equal(answer.headers['x-cache'], 'PASS');
  });

  test('/healthz and /metrics are never cached', async () => {
    for (const path of ['/healthz', '/metrics', '/healthz']) {
      const answer = await send(perKey.port, { path });
      assert.equal(answer.status, 200);
      assert.equal(answer.headers['x-cache'], 'PASS');
    }
  });

  test('PURGE only on the purge listener and only from the ACL: others are refused and remove nothing', async () => {
    await embed(perKey, 'protected');
    const onHttp = await send(perKey.port, {
      method: 'PURGE',
      path: '/v1/embeddings',
      headers: { 'x-purge-all': 'true' },
    });
    assert.equal(onHttp.status, 405);
    const outsider = await purge(perKey, '/v1/embeddings', { 'x-purge-all': 'true' }, '127.0.0.9');
    assert.equal(outsider.status, 403);
    const getOnPurge = await send(perKey.purgePort, { host: perKey.purgeHost, path: '/v1/embeddings' });
    assert.equal(getOnPurge.status, 405);
    assert.equal((await embed(perKey, 'protected')).headers['x-cache'], 'HIT');
  });

  test('PURGE <url> removes every answer stored under that URL, for every body and key', async () => {
    await embed(perKey, 'url one');
    await embed(perKey, 'url two', 'sk-two');
    const other = await purge(perKey, '/v1/other');
    assert.equal(other.status, 200);
    assert.equal((await embed(perKey, 'url one')).headers['x-cache'], 'HIT', 'another URL is untouched');
    const answer = await purge(perKey, '/v1/embeddings');
    assert.equal(answer.status, 200);
    assert.equal(answer.text, 'Purged\n');
    assert.equal((await embed(perKey, 'url one')).headers['x-cache'], 'MISS');
    assert.equal((await embed(perKey, 'url two', 'sk-two')).headers['x-cache'], 'MISS');
  });

  test('X-Purge-All clears everything only for true or 1', async () => {
    await embed(perKey, 'all');
    assert.equal((await purge(perKey, '/elsewhere', { 'x-purge-all': 'false' })).status, 200);
    assert.equal((await purge(perKey, '/elsewhere', { 'x-purge-all': '0' })).status, 200);
    assert.equal((await embed(perKey, 'all')).headers['x-cache'], 'HIT', 'X-Purge-All: false clears nothing');
    assert.equal((await purge(perKey, '/elsewhere', { 'x-purge-all': 'yes please' })).status, 400);
    const all = await purge(perKey, '/elsewhere', { 'x-purge-all': 'TRUE' });
    assert.equal(all.status, 200);
    assert.equal((await embed(perKey, 'all')).headers['x-cache'], 'MISS');
    await embed(perKey, 'all');
    assert.equal((await purge(perKey, '/elsewhere', { 'x-purge-all': '1' })).status, 200);
    assert.equal((await embed(perKey, 'all')).headers['x-cache'], 'MISS');
  });

  test('Surrogate-Key purges whole keys (the body hash is one), and a key that could inject a ban is refused', async () => {
    const bodyA = JSON.stringify({ model: 'text-embedding-3-small', input: 'surrogate a' });
    const bodyB = JSON.stringify({ model: 'text-embedding-3-small', input: 'surrogate b' });
    await embed(perKey, 'surrogate a');
    await embed(perKey, 'surrogate a', 'sk-two');
    await embed(perKey, 'surrogate b');
    // A part of a key matches nothing.
    assert.equal((await purge(perKey, '/', { 'surrogate-key': sha256(bodyA).slice(0, 10) })).status, 200);
    assert.equal((await embed(perKey, 'surrogate a')).headers['x-cache'], 'HIT');
    for (const hostile of ['a && obj.status != 0', '.*', 'a"b']) {
      assert.equal((await purge(perKey, '/', { 'surrogate-key': hostile })).status, 400, hostile);
    }
    assert.equal((await embed(perKey, 'surrogate b')).headers['x-cache'], 'HIT');
    const answer = await purge(perKey, '/', { 'surrogate-key': sha256(bodyA) });
    assert.equal(answer.status, 200);
    assert.equal((await embed(perKey, 'surrogate a')).headers['x-cache'], 'MISS');
    assert.equal((await embed(perKey, 'surrogate a', 'sk-two')).headers['x-cache'], 'MISS');
    assert.equal((await embed(perKey, 'surrogate b')).headers['x-cache'], 'HIT');
    assert.equal(
      (await purge(perKey, '/', { 'surrogate-key': ` unknown-key  ${sha256(bodyB)} ` })).status,
      200,
    );
    assert.equal((await embed(perKey, 'surrogate b')).headers['x-cache'], 'MISS');
  });

  test('the broadcaster fans one PURGE out to both Varnish instances', async () => {
    await embed(perKey, 'broadcast');
    await embed(shared, 'broadcast');
    const service = 'embedding-gateway-varnish-headless';
    dns.records.set(service, [perKey.purgeHost, shared.purgeHost]);
    const options = buildBroadcasterOptions(
      parseFlags(
        broadcasterFlagSpecs,
        [
          '--address=127.0.0.1:0',
          `--target-service=${service}`,
          `--target-port=${perKey.purgePort}`,
          '--lameduck=0',
        ],
        {},
      ),
    );
    const broadcaster = await startBroadcaster(options, testLogger().log, systemResolver([dns.server], 1000));
    try {
      const port = 'port' in broadcaster.address ? broadcaster.address.port : 0;
      const answer = await send(port, {
        method: 'PURGE',
        path: '/v1/embeddings',
        headers: { 'x-purge-all': 'true' },
      });
      assert.deepEqual(JSON.parse(answer.text), {
        total: 2,
        success: 2,
        failed: 0,
        results: [
          { pod: '127.0.0.2', status: 200, success: true },
          { pod: '127.0.0.3', status: 200, success: true },
        ],
      });
      assert.equal((await embed(perKey, 'broadcast')).headers['x-cache'], 'MISS');
      assert.equal((await embed(shared, 'broadcast')).headers['x-cache'], 'MISS');
    } finally {
      await broadcaster.close();
    }
  });

  // Last: it stops the gateway.
  test('grace: with the gateway down, a stale answer is still served; an unknown body gets 503', async () => {
    const first = await embed(perKey, 'grace');
    assert.equal(first.status, 200);
    await gateway.close();
    const stale = await waitFor(
      'an answer older than its 3 s TTL',
      async () => {
        const answer = await embed(perKey, 'grace');
        assert.equal(answer.status, 200, answer.text);
        return Number(answer.headers.age) >= 4 ? answer : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    assert.equal(stale.headers['x-cache'], 'HIT');
    assert.deepEqual(JSON.parse(stale.text), JSON.parse(first.text));
    // The failed background refresh kept the stale object.
    assert.equal((await embed(perKey, 'grace')).status, 200);
    assert.equal((await embed(perKey, 'never asked before')).status, 503);
  });
});

test("the bundle's own settings.vcl compiles with default.vcl (backend host resolved locally)", () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-vcl-'));
  try {
    const bundled = readFileSync(join(vclDir, 'settings.vcl'), 'utf8');
    assert.match(
      bundled,
      /set req\.http\.X-Cache-Scope = "per-key";/,
      'the cache is per key unless the operator says so',
    );
    assert.match(bundled, /set beresp\.ttl = 1h;\s+set beresp\.grace = 24h;/);
    writeFileSync(join(dir, 'settings.vcl'), bundled.replace('"embedding-gateway-backend"', '"127.0.0.1"'));
    writeFileSync(join(dir, 'default.vcl'), readFileSync(join(vclDir, 'default.vcl')));
    const result = spawnSync(
      findBinary('varnishd', ['/usr/sbin']),
      ['-C', '-j', 'none', '-n', join(dir, 'work'), '-p', `vcl_path=${dir}`, '-f', join(dir, 'default.vcl')],
      { encoding: 'utf8' },
    );
    assert.equal(result.status, 0, result.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
