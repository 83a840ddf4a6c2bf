// The bundle's VCL in the real Varnish 7.1 in front of the real gateway (and the fake OpenAI
// behind it): hit, miss, grace while the gateway is down, each PURGE form, and each defect of
// the original VCL, fixed. Two Varnish instances: one caching per API key, one shared.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { connect } from 'node:net';
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
    headers?: Record<string, string | string[]>;
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

/** Raw bytes to Varnish on one connection; everything it answers until it closes or goes quiet. */
function exchangeRaw(port: number, bytes: string, quietMs = 1500): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(done, quietMs);
    };
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      arm();
    });
    socket.on('end', done);
    socket.on('error', (error) => (received ? done() : reject(error)));
    socket.write(bytes);
    arm();
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

  /** A broadcaster whose headless service resolves to both Varnish purge listeners. */
  function broadcastToBoth(flags: string[] = []) {
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
          ...flags,
        ],
        {},
      ),
    );
    return startBroadcaster(options, testLogger().log, systemResolver([dns.server], 1000));
  }

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

  test('per-key scope: every credential header keys the cache (api-key, OpenAI-Organization, OpenAI-Project)', async () => {
    const viaApiKey = (key: string, extra: Record<string, string> = {}) => {
      const body = JSON.stringify({ model: 'text-embedding-3-small', input: 'azure style' });
      return send(perKey.port, {
        method: 'POST',
        path: '/v1/embeddings',
        headers: {
          // The fake OpenAI wants a bearer token; the one here is the same for both callers.
          authorization: 'Bearer sk-common',
          'api-key': key,
          'content-type': 'application/json',
          'x-body-hash': sha256(body),
          ...extra,
        },
        body,
      });
    };
    assert.equal((await viaApiKey('azure-one')).headers['x-cache'], 'MISS');
    assert.equal((await viaApiKey('azure-one')).headers['x-cache'], 'HIT');
    const other = await viaApiKey('azure-two');
    assert.equal(other.headers['x-cache'], 'MISS', "another api-key does not get the first one's answer");
    await embed(perKey, 'organizations', 'sk-one', { 'openai-organization': 'org-a' });
    const variants: Record<string, string>[] = [
      { 'openai-organization': 'org-b' },
      { 'openai-project': 'proj-a' },
      {},
    ];
    for (const extra of variants) {
      const answer = await embed(perKey, 'organizations', 'sk-one', {
        'openai-organization': 'org-a',
        ...extra,
      });
      const expected = Object.keys(extra).length === 0 ? 'HIT' : 'MISS';
      assert.equal(answer.headers['x-cache'], expected, JSON.stringify(extra));
    }
  });

  test("a client's own x-body-hash naming another body is refused by the gateway and caches nothing", async () => {
    // As a client that reached Varnish past the hasher: body X under the hash of body Y, on the
    // shared cache, where a poisoned object would answer everyone.
    const victim = JSON.stringify({ model: 'text-embedding-3-small', input: 'the victim body' });
    const forged = JSON.stringify({ model: 'text-embedding-3-small', input: 'the forger body' });
    const post = (body: string, hash: string | string[]) =>
      send(shared.port, {
        method: 'POST',
        path: '/v1/embeddings',
        headers: {
          authorization: 'Bearer sk-forger',
          'content-type': 'application/json',
          'x-body-hash': hash,
        },
        body,
      });
    const calls = fake.requests.length;
    for (const hash of [sha256(victim), [sha256(victim), sha256(forged)], [sha256(forged), sha256(victim)]]) {
      const answer = await post(forged, hash);
      assert.equal(answer.status, 400, answer.text);
      assert.match(answer.text, /x-body-hash is not the SHA-256 of the request body/);
      assert.notEqual(answer.headers['x-cache'], 'HIT');
    }
    assert.equal(fake.requests.length, calls, 'a forged hash never reaches the upstream');
    const real = await embed(shared, 'the victim body', 'sk-victim');
    assert.equal(real.status, 200, real.text);
    assert.equal(real.headers['x-cache'], 'MISS', 'nothing was stored under the victim body');
    const direct = await send(Number(new URL(gateway.url).port), {
      method: 'POST',
      path: '/v1/embeddings',
      headers: { 'content-type': 'application/json' },
      body: victim,
    });
    assert.deepEqual(JSON.parse(real.text), JSON.parse(direct.text), "the victim gets its own body's answer");
  });

  test('a 200 that carries an error (not stored by the gateway) is not cached by Varnish either', async () => {
    fake.behave({ kind: 'error-in-200' });
    try {
      const calls = fake.requests.length;
      for (let i = 0; i < 2; i++) {
        const answer = await embed(perKey, 'an error inside a 200');
        assert.equal(answer.status, 200);
        assert.ok(JSON.parse(answer.text).error, answer.text);
        assert.equal(answer.headers['cache-control'], 'no-store');
        assert.notEqual(answer.headers['x-cache'], 'HIT');
      }
      assert.equal(fake.requests.length, calls + 2);
    } finally {
      fake.behave({ kind: 'normal' });
    }
    const fine = await embed(perKey, 'an error inside a 200');
    assert.equal(fine.status, 200);
    assert.equal(JSON.parse(fine.text).error, undefined, 'the error answer was not kept');
  });

  test('unknown methods are refused, not piped: a request behind one on the connection still goes through the VCL', async () => {
    const answer = await exchangeRaw(
      perKey.port,
      'PROPFIND /v1/embeddings HTTP/1.1\r\nHost: gw\r\n\r\nGET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n',
    );
    const [first = '', second = ''] = answer.split(/(?=HTTP\/1\.1 )/);
    assert.match(first, /^HTTP\/1\.1 405 Method not allowed\r\n/, answer);
    assert.match(second, /^HTTP\/1\.1 200 /, answer);
    assert.match(second, /\r\nX-Cache: PASS\r\n/i, 'the second request went through the VCL, not a pipe');
  });

  test('request smuggling: a body framed both by Content-Length and chunked never reaches the gateway as a request', async () => {
    const marker = `smuggled ${Date.now()}`;
    const inner = JSON.stringify({ model: 'text-embedding-3-small', input: marker });
    const smuggled = `POST /v1/embeddings HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: ${inner.length}\r\n\r\n${inner}`;
    const calls = fake.requests.length;
    for (const framing of [
      `Content-Length: 5\r\nTransfer-Encoding: chunked`,
      `Transfer-Encoding: chunked\r\nContent-Length: 5`,
      `Transfer-Encoding: chunked, identity`,
      `Content-Length: 5\r\nContent-Length: ${5 + smuggled.length}`,
    ]) {
      const answer = await exchangeRaw(
        perKey.port,
        `POST /v1/embeddings HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n${framing}\r\n\r\n0\r\n\r\n${smuggled}`,
        800,
      );
      assert.match(answer, /^HTTP\/1\.1 4\d\d /, `${framing}: ${answer.slice(0, 200)}`);
    }
    assert.ok(
      fake.requests.slice(calls).every((r) => !r.body.includes(marker)),
      'the smuggled request never reached the upstream',
    );
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
    // The ACL reads the connection's address, never what a client says about itself.
    const claims = {
      'x-purge-all': 'true',
      'x-forwarded-for': '127.0.0.1',
      'x-real-ip': '127.0.0.1',
      forwarded: 'for=127.0.0.1',
    };
    assert.equal((await purge(perKey, '/v1/embeddings', claims, '127.0.0.9')).status, 403);
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
    const broadcaster = await broadcastToBoth();
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

  test('a paused Varnish (SIGSTOP) is a failure after --pod-timeout, the other is purged; after SIGCONT both are', async () => {
    const broadcaster = await broadcastToBoth(['--pod-timeout=700ms']);
    const port = 'port' in broadcaster.address ? broadcaster.address.port : 0;
    const broadcast = async () =>
      JSON.parse(
        (await send(port, { method: 'PURGE', path: '/v1/embeddings', headers: { 'x-purge-all': 'true' } }))
          .text,
      );
    try {
      await embed(perKey, 'paused pod');
      await embed(shared, 'paused pod');
      shared.pause();
      let paused: { success: number; results: Array<Record<string, unknown>> };
      try {
        paused = await broadcast();
      } finally {
        shared.resume();
      }
      assert.equal(paused.success, 1);
      assert.deepEqual(paused.results[1], {
        pod: '127.0.0.3',
        status: 0,
        success: false,
        error: 'no answer within 700 ms (--pod-timeout)',
      });
      assert.equal((await embed(perKey, 'paused pod')).headers['x-cache'], 'MISS');
      // Back: the next PURGE reaches both. (The paused one may also have applied the first
      // PURGE late, from its socket buffer: "no answer" does not mean "not done".)
      await embed(shared, 'paused pod');
      assert.equal((await embed(shared, 'paused pod')).headers['x-cache'], 'HIT');
      const again = await waitFor('both pods to answer', async () => {
        const answer = await broadcast();
        return answer.success === 2 ? answer : undefined;
      });
      assert.equal(again.failed, 0);
      assert.equal((await embed(shared, 'paused pod')).headers['x-cache'], 'MISS');
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

test('cache keys: text moved between URL, Host and the body hash never reaches another request’s object', async () => {
  // A backend that answers 200 to everything, so a colliding GET would be stored.
  const backend = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, url: req.url }));
    });
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const backendPort = (backend.address() as { port: number }).port;
  const varnishes = await Promise.all([
    startVarnish({ backendPort, scope: 'shared' }),
    startVarnish({ backendPort, scope: 'per-key' }),
  ]);
  try {
    for (const varnish of varnishes) {
      const body = JSON.stringify({ model: 'text-embedding-3-small', input: `collide ${varnish.port}` });
      const hash = sha256(body);
      for (const [path, headers] of [
        ['/v1/embeddings', { host: 'gw', 'x-original-host': `gw#POST#${hash}` }],
        ['/v1/embeddings', { host: 'gw', 'x-original-host': `gwPOST${hash}` }],
        ['/v1/embeddings', { host: `gwPOST${hash}authorizationBearer sk-a` }],
        ['/v1/embeddings#gw#POST', { host: hash }],
        ['/v1/embeddingsgwPOST', { host: hash }],
        ['/v1/embeddingsgw', { host: `POST${hash}` }],
      ] as const) {
        const planted = await send(varnish.port, {
          path,
          headers: { ...headers, authorization: 'Bearer sk-a' },
        });
        assert.equal(planted.status, 200);
      }
      const victim = await send(varnish.port, {
        method: 'POST',
        path: '/v1/embeddings',
        headers: {
          host: 'gw',
          'x-original-host': 'gw',
          authorization: 'Bearer sk-a',
          'content-type': 'application/json',
          'x-body-hash': hash,
        },
        body,
      });
      assert.equal(victim.headers['x-cache'], 'MISS', victim.text);
      assert.deepEqual(JSON.parse(victim.text), { method: 'POST', url: '/v1/embeddings' });
    }
  } finally {
    await Promise.all(varnishes.map((varnish) => varnish.stop()));
    backend.close();
  }
});
