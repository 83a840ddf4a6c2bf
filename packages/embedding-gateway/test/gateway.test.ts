// The original's contract end to end: a real gateway on loopback with the filesystem store, in
// front of the fake OpenAI upstream; keys and objects checked with python3 itself.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { freePort, waitFor } from '@seahorse/runtime/testing';
import { type FakeOpenAI, fakeVector, startFakeOpenAI } from './fake-openai.ts';
import { auth, call, embed, startTestGateway, type TestGateway } from './helpers.ts';

/** The key python3 computes the way the original does. */
function pythonKey(body: string): string {
  return execFileSync(
    'python3',
    [
      '-c',
      'import hashlib, json, sys; d = hashlib.sha256(json.dumps(json.loads(sys.stdin.buffer.read()), sort_keys=True).encode("utf-8")).hexdigest(); print(d[:4] + "/" + d)',
    ],
    { input: body, encoding: 'utf8' },
  ).trim();
}

/** Reads an object as the original does (gzip.decompress, json.loads) and writes it back with json.dumps. */
function pythonReadObject(path: string): { text: string; redumped: string } {
  const out = execFileSync(
    'python3',
    [
      '-c',
      'import gzip, json, sys; t = gzip.decompress(open(sys.argv[1], "rb").read()).decode("utf-8"); print(json.dumps([t, json.dumps(json.loads(t))]))',
      path,
    ],
    { encoding: 'utf8', maxBuffer: 1 << 26 },
  );
  const [text, redumped] = JSON.parse(out) as [string, string];
  return { text, redumped };
}

/** Writes an object the way the original does: gzip of json.dumps(answer). */
function pythonWriteObject(path: string, answer: unknown): void {
  mkdirSync(join(path, '..'), { recursive: true });
  execFileSync(
    'python3',
    [
      '-c',
      'import gzip, io, json, sys\nb = io.BytesIO()\nwith gzip.GzipFile(fileobj=b, mode="w") as f: f.write(json.dumps(json.loads(sys.stdin.read())).encode("utf-8"))\nopen(sys.argv[1], "wb").write(b.getvalue())',
      path,
    ],
    { input: JSON.stringify(answer) },
  );
}

function countObjects(dir: string): number {
  if (!existsSync(dir)) return 0;
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;
}

async function metricValue(url: string, name: string): Promise<number> {
  const text = (await call(url, { method: 'GET', path: '/metrics' })).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : Number.NaN;
}

describe('the original contract, filesystem store', () => {
  let upstream: FakeOpenAI;
  let gateway: TestGateway;
  before(async () => {
    upstream = await startFakeOpenAI();
    gateway = await startTestGateway(upstream.baseUrl, ['--max-body-size', '64kb', '--max-inputs', '4']);
  });
  after(async () => {
    await gateway.stop();
    await upstream.close();
  });

  it("a miss calls the upstream once and stores gzip(json.dumps(answer)) under python's key; a hit never calls it", async () => {
    upstream.behave({ kind: 'normal' });
    const body =
      '{"model": "text-embedding-3-small", "input": "caf\u00e9 \ud83d\ude00", "dimensions": 8, "x": 1E2}';
    const before = upstream.requests.length;
    const first = await embed(gateway.url, body);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers['content-type'], 'application/json');
    assert.equal(upstream.requests.length, before + 1);
    const answer = first.json() as { data: Array<{ embedding: number[] }>; usage: { total_tokens: number } };
    assert.deepEqual(
      answer.data[0]!.embedding,
      fakeVector('text-embedding-3-small', 8, 'caf\u00e9 \ud83d\ude00'),
    );

    const objectPath = join(gateway.cacheDir, pythonKey(body));
    assert.ok(existsSync(objectPath), `object at ${objectPath}`);
    const stored = pythonReadObject(objectPath);
    assert.equal(stored.text, stored.redumped, 'the object is byte for byte what json.dumps writes');
    assert.deepEqual(JSON.parse(stored.text), answer);

    // Same request with other key order and spacing: the same key, so a hit.
    const second = await embed(
      gateway.url,
      '{"x":100.0,"dimensions":8,"input":"caf\\u00e9 \\ud83d\\ude00","model":"text-embedding-3-small"}',
    );
    assert.equal(second.status, 200);
    assert.equal(upstream.requests.length, before + 1, 'a hit never calls the upstream');
    assert.deepEqual(second.json(), answer);
  });

  it('serves an object written the way the original writes it, without calling the upstream', async () => {
    const body = '{"input": ["written", "by python"], "model": "text-embedding-3-small"}';
    const answer = {
      object: 'list',
      data: [{ object: 'embedding', index: 0, embedding: [0.25, -1e-5] }],
      model: 'text-embedding-3-small',
      usage: { prompt_tokens: 3, total_tokens: 3 },
    };
    pythonWriteObject(join(gateway.cacheDir, pythonKey(body)), answer);
    const before = upstream.requests.length;
    const hit = await embed(gateway.url, body);
    assert.equal(hit.status, 200);
    assert.deepEqual(hit.json(), answer);
    assert.equal(upstream.requests.length, before);
  });

  it('an object that is not gzip is never served (the original answered 500 for ever): fetched again and replaced', async () => {
    const body = '{"input": "corrupt object", "model": "text-embedding-3-small"}';
    const path = join(gateway.cacheDir, pythonKey(body));
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, '{"not": "gzip"}');
    const calls = upstream.requests.length;
    const zipped = await embed(gateway.url, body, { ...auth, 'accept-encoding': 'gzip' });
    const plain = await embed(gateway.url, body);
    assert.equal(zipped.status, 200);
    assert.equal(plain.status, 200);
    assert.equal((plain.json() as { data: unknown[] }).data.length, 1);
    assert.equal(upstream.requests.length, calls + 1, 'fetched once, then served from the replaced object');
  });

  it('forwards the client headers with host rewritten and content-length recomputed, and the body as json.dumps', async () => {
    upstream.behave({ kind: 'normal' });
    const body = '{"model":"text-embedding-3-small","input":"headers","dimensions":4,"b":[1.0,2]}';
    await embed(gateway.url, body, { ...auth, 'x-custom': 'kept', 'openai-organization': 'org-1' });
    const seen = upstream.requests.at(-1)!;
    assert.equal(seen.headers.authorization, 'Bearer sk-test');
    assert.equal(seen.headers['x-custom'], 'kept');
    assert.equal(seen.headers['openai-organization'], 'org-1');
    assert.equal(seen.headers.host, new URL(upstream.url).host);
    assert.equal(seen.headers['content-length'], String(Buffer.byteLength(seen.body)));
    const pythonDumps = execFileSync(
      'python3',
      ['-c', 'import json,sys; print(json.dumps(json.loads(sys.stdin.read())), end="")'],
      {
        input: body,
        encoding: 'utf8',
      },
    );
    assert.equal(seen.body, pythonDumps);
  });

  it('an upstream status other than 200 comes back as that status with {"detail": phrase}, never stored', async () => {
    upstream.behave({ kind: 'normal' });
    const objects = countObjects(gateway.cacheDir);
    const unauthorized = await embed(
      gateway.url,
      { model: 'text-embedding-3-small', input: 'no key' },
      { 'content-type': 'application/json' },
    );
    assert.equal(unauthorized.status, 401);
    assert.deepEqual(unauthorized.json(), { detail: 'Unauthorized' });
    const missingModel = await embed(gateway.url, { model: 'no-such-model', input: 'x' });
    assert.equal(missingModel.status, 404);
    assert.equal(missingModel.text, '{"detail":"Not Found"}');
    upstream.behave({ kind: 'status', status: 413 });
    const tooLarge = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'x413' });
    assert.deepEqual(
      tooLarge.json(),
      { detail: 'Request Entity Too Large' },
      "Python 3.11's phrase, not Node's",
    );
    upstream.behave({ kind: 'status', status: 429 });
    const limited = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'x429' });
    assert.equal(limited.status, 429);
    assert.deepEqual(limited.json(), { detail: 'Too Many Requests' });
    upstream.behave({ kind: 'status', status: 599 });
    const unknown = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'x599' });
    assert.equal(unknown.status, 500);
    assert.equal(unknown.text, 'Internal Server Error');
    upstream.behave({ kind: 'normal' });
    assert.equal(countObjects(gateway.cacheDir), objects);
  });

  it('a 200 carrying an error is returned but neither stored nor counted', async () => {
    const tokens = await metricValue(gateway.url, 'processed_tokens_total');
    const objects = countObjects(gateway.cacheDir);
    upstream.behave({ kind: 'error-in-200' });
    const answer = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'error in 200' });
    upstream.behave({ kind: 'normal' });
    assert.equal(answer.status, 200);
    assert.equal((answer.json() as { error: { type: string } }).error.type, 'server_error');
    assert.equal(countObjects(gateway.cacheDir), objects);
    assert.equal(await metricValue(gateway.url, 'processed_tokens_total'), tokens);
  });

  it('processed_tokens_total counts usage.total_tokens of misses only', async () => {
    const tokens = await metricValue(gateway.url, 'processed_tokens_total');
    const body = { model: 'text-embedding-3-small', input: ['sixteen chars!!!', 'x'], dimensions: 2 };
    const miss = await embed(gateway.url, body);
    const used = (miss.json() as { usage: { total_tokens: number } }).usage.total_tokens;
    assert.ok(used > 0);
    assert.equal(await metricValue(gateway.url, 'processed_tokens_total'), tokens + used);
    await embed(gateway.url, body);
    assert.equal(
      await metricValue(gateway.url, 'processed_tokens_total'),
      tokens + used,
      'a hit adds nothing',
    );
  });

  it('an upstream that drops the connection is a 503 "Service Unavailable" in plain text', async () => {
    upstream.behave({ kind: 'drop' });
    const answer = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'dropped' });
    upstream.behave({ kind: 'normal' });
    assert.equal(answer.status, 503);
    assert.equal(answer.text, 'Service Unavailable');
    assert.match(String(answer.headers['content-type']), /^text\/plain/);
  });

  it('a 200 that is not JSON, or has no usage, is a 500 and nothing is stored', async () => {
    const objects = countObjects(gateway.cacheDir);
    upstream.behave({ kind: 'not-json' });
    const html = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'html' });
    upstream.behave({ kind: 'no-usage' });
    const noUsage = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'no usage' });
    upstream.behave({ kind: 'normal' });
    assert.equal(html.status, 500);
    assert.equal(html.text, 'Internal Server Error');
    assert.equal(noUsage.status, 500);
    assert.equal(countObjects(gateway.cacheDir), objects);
  });

  it('an answer the upstream compressed with gzip is decoded before it is stored', async () => {
    upstream.gzip = true;
    const body = { model: 'text-embedding-3-small', input: 'gzip me', dimensions: 3 };
    const answer = await embed(gateway.url, body, { ...auth, 'accept-encoding': 'gzip' });
    upstream.gzip = false;
    assert.equal(answer.status, 200);
    assert.equal(upstream.requests.at(-1)!.headers['accept-encoding'], 'gzip', 'the client header went on');
    assert.equal(answer.headers['content-encoding'], 'gzip');
    const parsed = JSON.parse(gunzipSync(answer.body).toString()) as { data: Array<{ embedding: number[] }> };
    assert.deepEqual(parsed.data[0]!.embedding, fakeVector('text-embedding-3-small', 3, 'gzip me'));
    const objectPath = join(gateway.cacheDir, pythonKey(JSON.stringify(body)));
    assert.deepEqual(JSON.parse(pythonReadObject(objectPath).text), parsed);
  });

  it('a hit goes to a client that accepts gzip as the stored object itself, to others as JSON', async () => {
    const body = { model: 'text-embedding-3-small', input: 'gzip or not', dimensions: 3 };
    await embed(gateway.url, body);
    const stored = readFileSync(join(gateway.cacheDir, pythonKey(JSON.stringify(body))));
    const zipped = await embed(gateway.url, body, { ...auth, 'accept-encoding': 'gzip, deflate, br' });
    assert.equal(zipped.headers['content-encoding'], 'gzip');
    assert.equal(zipped.headers.vary, 'Accept-Encoding');
    assert.deepEqual(zipped.body, stored);
    const refused = await embed(gateway.url, body, { ...auth, 'accept-encoding': 'gzip;q=0, identity' });
    assert.equal(refused.headers['content-encoding'], undefined);
    assert.deepEqual(refused.json(), JSON.parse(gunzipSync(stored).toString()));
  });

  it('validates the body as FastAPI does: 422 for missing, invalid JSON and non-objects; 400 for undecodable bytes', async () => {
    const missing = await call(gateway.url, { headers: { 'content-type': 'application/json' } });
    assert.equal(missing.status, 422);
    assert.equal(
      missing.text,
      '{"detail":[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]}',
    );
    const nullBody = await embed(gateway.url, 'null');
    assert.equal(nullBody.text, missing.text);
    const invalid = await embed(gateway.url, '{"input": "x",}');
    assert.equal(invalid.status, 422);
    assert.equal(
      invalid.text,
      '{"detail":[{"type":"json_invalid","loc":["body",14],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting property name enclosed in double quotes"}}]}',
    );
    const array = await embed(gateway.url, '[1, 2.50, "\u00e9"]');
    assert.equal(array.status, 422);
    assert.equal(
      array.text,
      '{"detail":[{"type":"dict_type","loc":["body"],"msg":"Input should be a valid dictionary","input":[1,2.5,"\u00e9"]}]}',
    );
    const textPlain = await call(gateway.url, {
      body: '{"input":"x"}',
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(textPlain.status, 422);
    assert.deepEqual(textPlain.json(), {
      detail: [
        {
          type: 'dict_type',
          loc: ['body'],
          msg: 'Input should be a valid dictionary',
          input: '{"input":"x"}',
        },
      ],
    });
    const badBytes = await call(gateway.url, {
      body: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]),
      headers: auth,
    });
    assert.equal(badBytes.status, 400);
    assert.deepEqual(badBytes.json(), { detail: 'There was an error parsing the body' });
  });

  it('answers routes as FastAPI does: 405 for GET /v1/embeddings, 404 elsewhere, "OK" on /healthz', async () => {
    const get = await call(gateway.url, { method: 'GET' });
    assert.equal(get.status, 405);
    assert.equal(get.text, '{"detail":"Method Not Allowed"}');
    const unknown = await call(gateway.url, { method: 'GET', path: '/v1/chat/completions' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.text, '{"detail":"Not Found"}');
    const slash = await call(gateway.url, { path: '/v1/embeddings/?x=1' });
    assert.equal(slash.status, 307, 'Starlette redirects a trailing slash');
    assert.equal(slash.headers.location, `${gateway.url}/v1/embeddings?x=1`);
    const health = await call(gateway.url, { method: 'GET', path: '/healthz' });
    assert.equal(health.status, 200);
    assert.equal(health.text, '"OK"');
    const ready = await call(gateway.url, { method: 'GET', path: '/readyz' });
    assert.equal(ready.status, 200);
    const metrics = await call(gateway.url, { method: 'GET', path: '/metrics' });
    assert.match(metrics.text, /^# TYPE processed_tokens_total counter$/m);
  });

  it('a body over --max-body-size is a 413 and more inputs than --max-inputs a 400, before any upstream call', async () => {
    const before = upstream.requests.length;
    const big = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'x'.repeat(70_000) });
    assert.equal(big.status, 413);
    assert.match((big.json() as { detail: string }).detail, /--max-body-size/);
    const many = await embed(gateway.url, {
      model: 'text-embedding-3-small',
      input: ['a', 'b', 'c', 'd', 'e'],
    });
    assert.equal(many.status, 400);
    assert.match((many.json() as { detail: string }).detail, /at most 4/);
    assert.equal(upstream.requests.length, before);
  });

  it('a client that disconnects cancels the upstream call, and nothing is stored', async () => {
    upstream.behave({ kind: 'hang' });
    const objects = countObjects(gateway.cacheDir);
    const cancelled = upstream.cancelled;
    const seen = upstream.requests.length;
    const req = request(`${gateway.url}/v1/embeddings`, { method: 'POST', headers: auth, agent: false });
    req.on('error', () => {});
    req.end(JSON.stringify({ model: 'text-embedding-3-small', input: 'goes away' }));
    await waitFor('the upstream call', () => upstream.requests.length > seen);
    req.destroy();
    await waitFor('the upstream call to be cancelled', () => upstream.cancelled > cancelled);
    upstream.behave({ kind: 'normal' });
    assert.equal(countObjects(gateway.cacheDir), objects);
  });
});

describe('limits and readiness', () => {
  it('an upstream slower than --upstream-timeout is a 503', async () => {
    const upstream = await startFakeOpenAI();
    const gateway = await startTestGateway(upstream.baseUrl, ['--upstream-timeout', '200ms']);
    try {
      upstream.behave({ kind: 'hang' });
      const answer = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'slow' });
      assert.equal(answer.status, 503);
      assert.equal(answer.text, 'Service Unavailable');
      assert.equal(countObjects(gateway.cacheDir), 0);
    } finally {
      await gateway.stop();
      await upstream.close();
    }
  });

  it('an upstream nobody listens on is a 503', async () => {
    const port = await freePort();
    const gateway = await startTestGateway(`http://127.0.0.1:${port}/v1`);
    try {
      const answer = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'refused' });
      assert.equal(answer.status, 503);
      assert.equal(answer.text, 'Service Unavailable');
    } finally {
      await gateway.stop();
    }
  });

  it('/readyz is 503 while the filesystem store cannot be written', async () => {
    const upstream = await startFakeOpenAI();
    const gateway = await startTestGateway(upstream.baseUrl);
    try {
      rmSync(gateway.cacheDir, { recursive: true, force: true });
      writeFileSync(gateway.cacheDir, 'a file where the directory should be');
      const notReady = await call(gateway.url, { method: 'GET', path: '/readyz' });
      assert.equal(notReady.status, 503);
      assert.match(notReady.text, /filesystem store cannot serve/);
      rmSync(gateway.cacheDir);
      const ready = await call(gateway.url, { method: 'GET', path: '/readyz' });
      assert.equal(ready.status, 200);
    } finally {
      await gateway.stop();
      await upstream.close();
    }
  });

  it('with --no-gzip-responses every answer is plain JSON', async () => {
    const upstream = await startFakeOpenAI();
    const gateway = await startTestGateway(upstream.baseUrl, ['--no-gzip-responses']);
    try {
      const body = { model: 'text-embedding-3-small', input: 'plain', dimensions: 2 };
      await embed(gateway.url, body);
      const hit = await embed(gateway.url, body, { ...auth, 'accept-encoding': 'gzip' });
      assert.equal(hit.headers['content-encoding'], undefined);
      assert.equal((hit.json() as { data: unknown[] }).data.length, 1);
    } finally {
      await gateway.stop();
      await upstream.close();
    }
  });

  it('the LRU serves hot keys from memory even when the store has lost the object', async () => {
    const upstream = await startFakeOpenAI();
    const gateway = await startTestGateway(upstream.baseUrl, ['--memory-cache-size', '1mb']);
    try {
      const body = { model: 'text-embedding-3-small', input: 'hot', dimensions: 4 };
      const first = await embed(gateway.url, body);
      rmSync(gateway.cacheDir, { recursive: true, force: true });
      const second = await embed(gateway.url, body);
      assert.equal(second.status, 200);
      assert.deepEqual(second.json(), first.json());
      assert.equal(upstream.requests.length, 1);
      assert.equal(
        await metricValue(gateway.url, 'embedding_gateway_requests_total{outcome="memory_hit"}'),
        1,
      );
    } finally {
      await gateway.stop();
      await upstream.close();
    }
  });
});

describe('IDLE_TIMEOUT', () => {
  it('an idle keep-alive connection is closed after --idle-timeout', async () => {
    const upstream = await startFakeOpenAI();
    const gateway = await startTestGateway(upstream.baseUrl, ['--idle-timeout', '300ms']);
    const agent = new Agent({ keepAlive: true });
    try {
      let closed = false;
      await new Promise<void>((resolve, reject) => {
        const req = request(`${gateway.url}/healthz`, { agent }, (res) => {
          res.resume();
          res.on('end', resolve);
        });
        req.on('socket', (socket) => socket.once('close', () => (closed = true)));
        req.on('error', reject);
        req.end();
      });
      assert.equal(closed, false);
      await waitFor('the idle connection to be closed', () => closed, { timeoutMs: 10_000 });
    } finally {
      agent.destroy();
      await gateway.stop();
      await upstream.close();
    }
  });
});

describe('proxies from the environment', () => {
  it('calls the upstream through HTTP_PROXY, as aiohttp with trust_env does', async () => {
    const upstream = await startFakeOpenAI();
    const seen: string[] = [];
    // A forward proxy for plain HTTP: absolute-form request targets, passed on.
    const proxy = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      const target = new URL(req.url ?? '/');
      const forward = request(target, { method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      forward.on('error', () => res.destroy());
      req.pipe(forward);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyPort = (proxy.address() as AddressInfo).port;
    const gateway = await startTestGateway(upstream.baseUrl, [], {
      HTTP_PROXY: `http://127.0.0.1:${proxyPort}`,
    });
    try {
      const answer = await embed(gateway.url, {
        model: 'text-embedding-3-small',
        input: 'proxied',
        dimensions: 2,
      });
      assert.equal(answer.status, 200, answer.text);
      assert.deepEqual(seen, [`POST ${upstream.baseUrl}/embeddings`]);
    } finally {
      await gateway.stop();
      await upstream.close();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });
});
