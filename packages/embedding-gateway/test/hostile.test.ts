// The gateway as a hostile client, a hostile upstream and a corrupt store would meet it: each
// attack ends one exchange with a clear status, stores nothing wrong, and never hangs.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { waitFor } from '@seahorse/runtime/testing';
import { cacheKey } from '../src/cache-key.ts';
import { isPyObject, parsePythonJson } from '../src/python-json.ts';
import { type FakeOpenAI, startFakeOpenAI } from './fake-openai.ts';
import { auth, call, embed, startTestGateway, type TestGateway } from './helpers.ts';

const keyOf = (body: string) => {
  const value = parsePythonJson(body);
  assert.ok(isPyObject(value));
  return cacheKey(value);
};

async function listening(server: Server | ReturnType<typeof createTcpServer>): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('a hostile client', () => {
  let upstream: FakeOpenAI;
  let gateway: TestGateway;
  before(async () => {
    upstream = await startFakeOpenAI();
    gateway = await startTestGateway(upstream.baseUrl, ['--coalesce-misses', '--max-body-size', '64kb']);
  });
  after(async () => {
    await gateway.stop();
    await upstream.close();
  });

  it('cannot make a concurrent identical request with other credentials fail by coalescing it with its own', async () => {
    upstream.delayMs = 300;
    const body = { model: 'text-embedding-3-small', input: 'coalesced across credentials', dimensions: 4 };
    const seen = upstream.requests.length;
    const bogus = embed(gateway.url, body, { 'content-type': 'application/json' });
    await waitFor('the first call', () => upstream.requests.length > seen);
    const genuine = await embed(gateway.url, body);
    upstream.delayMs = 0;
    assert.equal((await bogus).status, 401);
    assert.equal(genuine.status, 200, genuine.text);
  });

  it('a body that never ends past --max-body-size gets its 413 and its connection closed', async () => {
    const socket = connect(Number(new URL(gateway.url).port), '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(
      'POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
    );
    const chunk = `4000\r\n${'a'.repeat(0x4000)}\r\n`;
    const timer = setInterval(() => {
      if (!socket.destroyed && socket.writable) socket.write(chunk);
    }, 5);
    try {
      await waitFor('the 413', () => Buffer.concat(received).toString().startsWith('HTTP/1.1 413'));
      await Promise.race([
        closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error('the connection stayed open')), 5000)),
      ]);
    } finally {
      clearInterval(timer);
      socket.destroy();
    }
  });

  it('PURGE, DELETE and PUT on /v1/embeddings are 405 and remove nothing', async () => {
    const body = '{"model": "text-embedding-3-small", "input": "purge me"}';
    assert.equal((await embed(gateway.url, body)).status, 200);
    const path = join(gateway.cacheDir, keyOf(body));
    assert.ok(existsSync(path));
    for (const method of ['PURGE', 'DELETE', 'PUT']) {
      const answer = await call(gateway.url, { method, body, headers: auth });
      assert.equal(answer.status, 405, method);
    }
    assert.ok(existsSync(path));
    const calls = upstream.requests.length;
    assert.equal((await embed(gateway.url, body)).status, 200);
    assert.equal(upstream.requests.length, calls);
  });
});

describe('a hostile upstream', () => {
  let server: Server;
  let url: string;
  let gateway: TestGateway;
  let mode: 'endless' | 'bomb' | 'garbage-framing' = 'endless';
  let garbage: ReturnType<typeof createTcpServer>;
  let garbageUrl: string;
  const sockets = new Set<Socket>();
  // 64 MB of spaces in some 64 KB of gzip.
  const bomb = gzipSync(Buffer.alloc(64 << 20, 0x20));
  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (mode === 'bomb') {
          res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
          res.end(bomb);
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"data": [');
        const block = Buffer.from('0.1, '.repeat(20_000));
        const pump = () => {
          while (!res.destroyed && res.write(block)) {}
          if (!res.destroyed) res.once('drain', pump);
        };
        pump();
      });
    });
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    url = await listening(server);
    garbage = createTcpServer((socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: nonsense\r\n\r\n{}'));
      socket.on('error', () => {});
    });
    garbageUrl = await listening(garbage);
    gateway = await startTestGateway(`${url}/v1`, ['--max-response-size', '1mb']);
  });
  after(async () => {
    await gateway?.stop();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
    await new Promise((resolve) => garbage.close(resolve));
  });

  it('an answer that never ends is cut at --max-response-size: a 500, nothing stored', async () => {
    mode = 'endless';
    const answer = await embed(gateway.url, { model: 'm', input: 'endless' });
    assert.equal(answer.status, 500);
    assert.equal(existsSync(join(gateway.cacheDir, keyOf('{"model": "m", "input": "endless"}'))), false);
    await waitFor('the upstream connection to be closed', () => sockets.size === 0);
  });

  it('a gzip bomb is cut at --max-response-size once decompressed', async () => {
    mode = 'bomb';
    const answer = await embed(gateway.url, { model: 'm', input: 'bomb' });
    assert.equal(answer.status, 500);
    assert.match(gateway.logs.text, /larger than 1048576 bytes \(--max-response-size\)/);
  });

  it('an answer that is not HTTP is a 503 and nothing is stored', async () => {
    const target = await startTestGateway(`${garbageUrl}/v1`);
    try {
      const answer = await embed(target.url, { model: 'm', input: 'garbage' });
      assert.equal(answer.status, 503);
      assert.equal(answer.text, 'Service Unavailable');
    } finally {
      await target.stop();
    }
  });
});

describe('a corrupt filesystem store, and secrets in logs', () => {
  let upstream: FakeOpenAI;
  let gateway: TestGateway;
  before(async () => {
    upstream = await startFakeOpenAI();
    gateway = await startTestGateway(upstream.baseUrl, ['--upstream-timeout', '300ms']);
  });
  after(async () => {
    await gateway.stop();
    await upstream.close();
  });

  it('an object that is not gzip, or gzip that fails its CRC, is fetched again and replaced, never served', async () => {
    const valid = gzipSync('{"object": "list", "data": []}');
    const badCrc = Buffer.from(valid);
    badCrc[badCrc.length - 6]! ^= 0xff;
    for (const [name, bytes, acceptEncoding] of [
      ['not gzip', Buffer.from('{"not": "gzip"}'), 'gzip'],
      ['bad CRC', badCrc, 'identity'],
    ] as const) {
      const body = JSON.stringify({ model: 'text-embedding-3-small', input: name });
      const path = join(gateway.cacheDir, keyOf(body));
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, bytes);
      const calls = upstream.requests.length;
      const answer = await call(gateway.url, {
        body,
        headers: { ...auth, 'accept-encoding': acceptEncoding },
      });
      assert.equal(answer.status, 200, `${name}: ${answer.text}`);
      assert.equal(upstream.requests.length, calls + 1, `${name}: fetched again`);
      assert.equal(
        JSON.parse(gunzipSync(readFileSync(path)).toString()).data.length,
        1,
        `${name}: the object was replaced`,
      );
    }
    assert.match(gateway.logs.text, /corrupt object in the store/);
  });

  it('an upstream killed mid-call is a 503; restarted on its port, the next call is a 200', async () => {
    const port = Number(new URL(upstream.url).port);
    upstream.delayMs = 2000;
    const inFlight = call(gateway.url, {
      body: JSON.stringify({ model: 'text-embedding-3-small', input: 'killed mid-call' }),
      headers: auth,
    });
    const seen = upstream.requests.length;
    await waitFor('the call to reach the upstream', () => upstream.requests.length > seen);
    await upstream.close();
    const cut = await inFlight;
    assert.equal(cut.status, 503);
    assert.equal(cut.text, 'Service Unavailable');
    const down = await call(gateway.url, {
      body: JSON.stringify({ model: 'text-embedding-3-small', input: 'while down' }),
      headers: auth,
    });
    assert.equal(down.status, 503);
    upstream = await startFakeOpenAI(port);
    const back = await call(gateway.url, {
      body: JSON.stringify({ model: 'text-embedding-3-small', input: 'killed mid-call' }),
      headers: auth,
    });
    assert.equal(back.status, 200, back.text);
    assert.equal(
      existsSync(join(gateway.cacheDir, keyOf('{"model": "text-embedding-3-small", "input": "while down"}'))),
      false,
    );
  });

  it('API keys never reach the logs, on any path (hit, miss, upstream errors, timeouts)', async () => {
    const secret = 'sk-proj-NEVER-LOG-THIS-0123456789';
    const azure = 'azure-NEVER-LOG-THIS-abcdef';
    const headers = { ...auth, authorization: `Bearer ${secret}`, 'api-key': azure };
    const ask = (input: string) =>
      call(gateway.url, { body: JSON.stringify({ model: 'text-embedding-3-small', input }), headers });
    assert.equal((await ask('secret miss')).status, 200);
    assert.equal((await ask('secret miss')).status, 200);
    const behaviours = [
      { kind: 'status', status: 500 },
      { kind: 'status', status: 429 },
      { kind: 'error-in-200' },
      { kind: 'not-json' },
      { kind: 'no-usage' },
      { kind: 'drop' },
      { kind: 'hang' },
    ] as const;
    try {
      for (const behaviour of behaviours) {
        upstream.behave(behaviour);
        const answer = await ask(`secret ${behaviour.kind}`);
        assert.ok(answer.status >= 200, behaviour.kind);
      }
    } finally {
      upstream.behave({ kind: 'normal' });
    }
    assert.equal((await call(gateway.url, { body: '{"broken', headers })).status, 422);
    assert.ok(gateway.logs.lines.length > 5, 'the paths above did log');
    assert.ok(!gateway.logs.text.includes('NEVER-LOG-THIS'), gateway.logs.text);
  });
});
