// The adversarial review of the target client (issue 10): each test is one attack with a hostile
// raw target or client on loopback — half-open websockets, splitting through a refused upgrade,
// timers after backpressure, replayed requests, clients and targets that vanish — and what held.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { PIPELINE_DEPTH } from '../src/pipelining.ts';
import { ResponseParser } from '../src/response-parser.ts';
import { startProxyProcess, startTestProxy, type TestProxy } from './helpers.ts';

interface RawTarget {
  url: string;
  /** Request heads received, in order (all connections). */
  heads: string[];
  connections: number;
  close(): Promise<void>;
}

/** A raw target: `answer` is called for each request head (by connection and index on it). */
async function rawTarget(answer: (socket: Socket, head: string, index: number) => void): Promise<RawTarget> {
  const sockets = new Set<Socket>();
  const result: RawTarget = { url: '', heads: [], connections: 0, close: async () => {} };
  const server = createServer((socket) => {
    result.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffer = '';
    let index = 0;
    socket.on('data', (data) => {
      buffer += data.toString('latin1');
      for (;;) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buffer.slice(0, end + 4);
        buffer = buffer.slice(end + 4);
        result.heads.push(head);
        answer(socket, head, index++);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  result.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  result.close = async () => {
    for (const socket of sockets) socket.destroy();
    server.close();
  };
  return result;
}

/** A raw client connection to the proxy, collecting every byte it receives. */
async function rawClient(url: string) {
  const { port } = new URL(url);
  const socket = connect(Number(port), '127.0.0.1');
  await once(socket, 'connect');
  const state = { socket, bytes: Buffer.alloc(0), closed: false };
  socket.on('data', (data: Buffer) => {
    state.bytes = Buffer.concat([state.bytes, data]);
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    state.closed = true;
  });
  return state;
}

/** Parses a byte stream the way a client would: the responses in it, and bytes left over. */
function parseResponses(bytes: Buffer, headRequest = false) {
  const responses: Array<{ status: number; body: string }> = [];
  let rest = bytes;
  for (;;) {
    if (rest.length === 0) break;
    let current: { status: number; body: string } | undefined;
    let done = false;
    const parser = new ResponseParser(
      {
        onHead: (head) => {
          current = { status: head.status, body: '' };
        },
        onBody: (chunk) => {
          current!.body += chunk.toString('latin1');
        },
        onComplete: () => {
          done = true;
        },
      },
      headRequest,
    );
    try {
      parser.execute(rest);
    } catch (error) {
      return { responses, error: String(error), rest };
    }
    if (!done) parser.finish();
    if (current) responses.push(current);
    if (!parser.doubtful) break;
    // Bytes after the first response: find where it ended by re-parsing byte by byte.
    let used = 0;
    let ended = false;
    const counter = new ResponseParser(
      { onHead: () => {}, onBody: () => {}, onComplete: () => (ended = true) },
      headRequest,
    );
    while (!ended && used < rest.length) counter.execute(rest.subarray(used, ++used));
    rest = rest.subarray(used);
  }
  return { responses, error: undefined, rest };
}

/** One proxy for a describe block, started before its tests; its raw targets, closed after. */
function proxyWithTargets(args: string[]) {
  let proxy: TestProxy | undefined;
  const targets: RawTarget[] = [];
  before(async () => {
    proxy = await startTestProxy(args);
  });
  after(async () => {
    await proxy?.close();
    for (const each of targets) await each.close();
  });
  const block = {
    get proxy(): TestProxy {
      if (proxy === undefined) throw new Error('the proxy starts before the tests');
      return proxy;
    },
    targets,
    /** A raw target answering `path`. */
    async route(path: string, answer: (socket: Socket, head: string, index: number) => void) {
      const each = await rawTarget(answer);
      targets.push(each);
      await block.proxy.addRoute(path, each.url);
      return each;
    },
  };
  return block;
}

describe('attack: hostile targets', () => {
  const block = proxyWithTargets(['--proxy-body-timeout', '500']);
  const route = block.route;

  test('--proxy-body-timeout still cuts a stalled body after the client was once slow to read', async () => {
    // The target sends 8 MB fast, then stalls forever. The client reads nothing for a second
    // (backpressure pauses the target socket and clears the body timer), then reads on.
    await route('/stall-after-backpressure', (socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n');
      socket.write(Buffer.alloc(8 * 1024 * 1024, 0x61));
    });
    const client = await rawClient(block.proxy.url);
    client.socket.pause();
    client.socket.write('GET /stall-after-backpressure HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    client.socket.resume();
    // All 8 MB arrive, then nothing: the body timeout (500 ms) must close the connection.
    await waitFor('the 8 MB', () => client.bytes.length > 8 * 1024 * 1024, { timeoutMs: 20_000 });
    const stalledAt = Date.now();
    await waitFor('the client connection closed', () => client.closed, { timeoutMs: 8_000 }).catch(() => {});
    const closed = client.closed;
    client.socket.destroy();
    assert.ok(
      closed,
      `client connection still open ${Date.now() - stalledAt} ms into a stall (body timeout 500 ms)`,
    );
  });
});

describe('attack: websocket upgrades answered without 101', () => {
  const block = proxyWithTargets([]);
  const route = block.route;
  const upgrade = (path: string) =>
    `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

  test('a chunked 403 to an upgrade reaches the client as one response, not two', async () => {
    // The decoded body of the target's chunked answer is itself a chunked end plus a response.
    const smuggled =
      '0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: session=attacker\r\n\r\nevil!';
    await route('/ws-chunked', (socket) => {
      socket.end(
        `HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`,
      );
    });
    const client = await rawClient(block.proxy.url);
    client.socket.write(upgrade('/ws-chunked'));
    await waitFor('the client connection closed', () => client.closed, { timeoutMs: 10_000 });
    const parsed = parseResponses(client.bytes);
    assert.equal(
      parsed.responses.length,
      1,
      `the client parsed ${parsed.responses.length} responses: ${JSON.stringify(client.bytes.toString('latin1'))}`,
    );
  });

  test('a target reset in the middle of a non-101 body does not append a 503 head to it', async () => {
    await route('/ws-reset', (socket) => {
      socket.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\n0123456789', () => {
        setTimeout(() => socket.resetAndDestroy(), 100);
      });
    });
    const client = await rawClient(block.proxy.url);
    client.socket.write(upgrade('/ws-reset'));
    await waitFor('the client connection closed', () => client.closed, { timeoutMs: 10_000 });
    const text = client.bytes.toString('latin1');
    assert.equal(
      text.split('HTTP/1.1 ').length - 1,
      1,
      `more than one status line on the client connection: ${JSON.stringify(text)}`,
    );
  });
});

describe('attack: replays on reused connections', () => {
  const block = proxyWithTargets([]);

  for (const [method, body] of [
    ['POST', ''],
    ['POST', 'payload'],
    ['PATCH', ''],
    ['PATCH', 'payload'],
  ] as const) {
    for (const moment of ['at-head', 'after-partial-status', 'after-full-head'] as const) {
      test(`${method} ${body ? 'with' : 'without'} a body on a reused connection killed ${moment} reaches the target once`, async () => {
        let count = 0;
        const target = await rawTarget((socket, head, index) => {
          if (head.startsWith('GET')) {
            socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
            return;
          }
          count++;
          if (index === 0) {
            socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
            return;
          }
          if (moment === 'at-head') socket.destroy();
          else if (moment === 'after-partial-status') socket.end('HTTP/1.1 2');
          else socket.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab');
        });
        block.targets.push(target);
        const path = `/replay-${method}-${body ? 'b' : 'n'}-${moment}`;
        await block.proxy.addRoute(path, target.url);
        // Warm a pooled connection, then send the request on it.
        const warm = await fetch(`${block.proxy.url}${path}`);
        assert.equal(await warm.text(), 'ok');
        try {
          await (await fetch(`${block.proxy.url}${path}`, { method, body: body || undefined })).arrayBuffer();
        } catch {
          // A cut response is fine here; only the count matters.
        }
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(count, 1, `${method} reached the target ${count} times`);
      });
    }
  }

  test('a GET is not replayed once part of its response arrived', async () => {
    let gets = 0;
    const target = await rawTarget((socket, _head, index) => {
      gets++;
      if (index === 0) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      else socket.end('HTTP/1.1 200 OK\r\nContent-Len');
    });
    block.targets.push(target);
    await block.proxy.addRoute('/replay-get', target.url);
    assert.equal(await (await fetch(`${block.proxy.url}/replay-get`)).text(), 'ok');
    const before = gets;
    const res = await fetch(`${block.proxy.url}/replay-get`);
    await res.arrayBuffer();
    assert.ok(res.status >= 502, `status ${res.status}`);
    assert.equal(gets - before, 1);
  });
});

describe('attack: interim floods, HEAD bodies, early answers', () => {
  const block = proxyWithTargets(['--proxy-headers-timeout', '1000']);
  const route = block.route;

  test('an endless flood of 100 Continue is cut by the headers timeout without buffering it', async () => {
    await route('/flood', (socket) => {
      const piece = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n'.repeat(4096));
      const pump = () => {
        while (!socket.destroyed && socket.write(piece)) {}
        if (!socket.destroyed) socket.once('drain', pump);
      };
      pump();
    });
    const rssBefore = process.memoryUsage().rss;
    const started = Date.now();
    const res = await fetch(`${block.proxy.url}/flood`);
    assert.equal(res.status, 504);
    assert.ok(Date.now() - started < 10_000);
    assert.ok(process.memoryUsage().rss - rssBefore < 100 * 1024 * 1024);
  });

  test('a body sent after a HEAD answer closes the client connection and is not relayed', async () => {
    await route('/head-body', (socket) => {
      socket.write(
        'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil',
      );
    });
    const client = await rawClient(block.proxy.url);
    client.socket.write('HEAD /head-body HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor('the answer', () => client.bytes.includes('\r\n\r\n'), { timeoutMs: 10_000 });
    client.socket.write('GET /head-body HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const text = client.bytes.toString('latin1');
    client.socket.destroy();
    assert.doesNotMatch(text, /evil/);
  });

  test('a target answering before reading a large upload leaves the client connection usable or closed, not hung', async () => {
    await route('/early', (socket, head) => {
      if (head.startsWith('GET')) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond');
      else socket.write('HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig');
      socket.pause(); // never reads the body
    });
    const client = await rawClient(block.proxy.url);
    client.socket.write('POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 52428800\r\n\r\n');
    // The client writes as much as the proxy takes.
    const chunk = Buffer.alloc(1024 * 1024, 0x62);
    let written = 0;
    const pump = () => {
      while (written < 50 && !client.closed && client.socket.write(chunk)) written++;
      if (written < 50 && !client.closed)
        client.socket.once('drain', () => {
          written++;
          pump();
        });
    };
    pump();
    await waitFor('the 413', () => client.bytes.includes('big'), { timeoutMs: 10_000 });
    // The client gave up its upload at the 413 and, per RFC 9112 §9.6 it should not reuse the
    // connection; it waits for it to close. The proxy must close or drain it, not hold it forever.
    await waitFor('the client connection closed', () => client.closed, { timeoutMs: 15_000 }).catch(() => {});
    const closed = client.closed;
    client.socket.destroy();
    assert.ok(closed, `client connection open 15 s after the 413 (${written} MB of 50 written)`);
  });
});

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
function rssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match![1]) / 1024;
}
async function addRoute(
  proxy: { api(method: string, path: string, body?: unknown): Promise<Response> },
  path: string,
  target: string,
) {
  const res = await proxy.api('POST', `/api/routes${path}`, { target });
  assert.equal(res.status, 201);
}

describe('attack: the proxy as a process (fds, RSS)', () => {
  let proxy: Awaited<ReturnType<typeof startProxyProcess>>;
  const targets: RawTarget[] = [];
  before(async () => {
    proxy = await startProxyProcess([]);
  });
  after(async () => {
    await proxy.process.stop();
    for (const each of targets) await each.close();
  });

  test('a client that never reads a 100 MB body does not make the proxy buffer it', async () => {
    const target = await rawTarget((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n');
      const chunk = Buffer.alloc(1024 * 1024, 0x63);
      let sent = 0;
      const pump = () => {
        while (sent < 100 && !socket.destroyed && socket.write(chunk)) sent++;
        if (sent < 100 && !socket.destroyed)
          socket.once('drain', () => {
            sent++;
            pump();
          });
      };
      pump();
    });
    targets.push(target);
    await addRoute(proxy, '/big', target.url);
    const rssBefore = rssMb(proxy.process.pid);
    const client = await rawClient(`http://127.0.0.1:${proxy.port}`);
    client.socket.pause();
    client.socket.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const grown = rssMb(proxy.process.pid) - rssBefore;
    client.socket.destroy();
    assert.ok(grown < 30, `proxy RSS grew ${grown.toFixed(1)} MB while the client read nothing`);
  });

  test('a 100 MB upload to a target that never reads is not buffered by the proxy', async () => {
    const target = await rawTarget((socket) => socket.pause());
    targets.push(target);
    await addRoute(proxy, '/sink', target.url);
    const rssBefore = rssMb(proxy.process.pid);
    const client = await rawClient(`http://127.0.0.1:${proxy.port}`);
    client.socket.write('POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n');
    const chunk = Buffer.alloc(1024 * 1024, 0x64);
    let written = 0;
    const pump = () => {
      while (written < 100 && !client.closed && client.socket.write(chunk)) written++;
      if (written < 100 && !client.closed)
        client.socket.once('drain', () => {
          written++;
          pump();
        });
    };
    pump();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const grown = rssMb(proxy.process.pid) - rssBefore;
    client.socket.destroy();
    assert.ok(grown < 30, `proxy RSS grew ${grown.toFixed(1)} MB (${written} MB written by the client)`);
  });

  /** A target that accepts connections and never answers; counts those open. */
  async function silentTarget() {
    const state = { open: 0, peak: 0, url: '' };
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      state.open++;
      state.peak = Math.max(state.peak, state.open);
      socket.resume(); // reads (and discards), so a close by the proxy is seen
      socket.on('error', () => {});
      socket.on('close', () => {
        state.open--;
        sockets.delete(socket);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    state.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    targets.push({
      url: state.url,
      heads: [],
      connections: 0,
      close: async () => {
        for (const socket of sockets) socket.destroy();
        server.close();
      },
    });
    return state;
  }

  test('pipelined requests whose client left close their target connections', async () => {
    const target = await silentTarget();
    await addRoute(proxy, '/pipelined-leave', target.url);
    const client = await rawClient(`http://127.0.0.1:${proxy.port}`);
    client.socket.write('GET /pipelined-leave HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(50));
    await waitFor(`${PIPELINE_DEPTH} target connections`, () => target.open === PIPELINE_DEPTH, {
      timeoutMs: 10_000,
    });
    client.socket.destroy();
    await waitFor('the target connections closed', () => target.open === 0, { timeoutMs: 10_000 }).catch(
      () => {},
    );
    assert.equal(target.open, 0, `${target.open} target connections still open after the client left`);
    // The 42 others waited their turn and were dropped with the client, never sent.
    assert.equal(target.peak, PIPELINE_DEPTH);
  });

  test('one client pipelining 2,000 requests holds at most a few target connections, answered in order', async () => {
    const target = await rawTarget((socket, head) => {
      const n = /GET \/pipelined-many\/(\d+)/.exec(head)?.[1] ?? '?';
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${n.length}\r\n\r\n${n}`);
    });
    targets.push(target);
    await addRoute(proxy, '/pipelined-many', target.url);
    const client = await rawClient(`http://127.0.0.1:${proxy.port}`);
    let requests = '';
    for (let i = 0; i < 2000; i++) requests += `GET /pipelined-many/${i} HTTP/1.1\r\nHost: x\r\n\r\n`;
    client.socket.write(requests);
    // Each answer is a 200 whose body is the request's number, so the bodies are what follows a head.
    const bodies = () =>
      client.bytes
        .toString('latin1')
        .split('HTTP/1.1 ')
        .slice(1)
        .map((response) => response.slice(response.indexOf('\r\n\r\n') + 4));
    await waitFor('2,000 answers', () => bodies().length === 2000 && bodies()[1999] === '1999', {
      timeoutMs: 60_000,
    });
    assert.deepEqual(
      bodies(),
      Array.from({ length: 2000 }, (_, i) => String(i)),
    );
    assert.ok(
      target.connections <= PIPELINE_DEPTH,
      `${target.connections} target connections for one pipelining client`,
    );
    client.socket.destroy();
  });

  test('clients vanishing mid-upload and mid-download leave no socket open in the proxy', async () => {
    const target = await rawTarget((socket, head) => {
      if (head.startsWith('GET')) {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\npartial');
      }
      // POST: read the body forever, never answer.
    });
    targets.push(target);
    await addRoute(proxy, '/vanish', target.url);
    const pid = proxy.process.pid;
    const baseline = fdCount(pid);
    for (let i = 0; i < 20; i++) {
      const up = await rawClient(`http://127.0.0.1:${proxy.port}`);
      up.socket.write('POST /vanish HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nsome of it');
      const down = await rawClient(`http://127.0.0.1:${proxy.port}`);
      down.socket.write('GET /vanish HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor('the partial body', () => down.bytes.includes('partial'), { timeoutMs: 10_000 });
      up.socket.destroy();
      down.socket.destroy();
    }
    await waitFor(`proxy fds back to ${baseline}`, () => fdCount(pid) <= baseline + 1, { timeoutMs: 10_000 });
  });

  test('requests to a target that never answers are freed when their clients leave', async () => {
    const target = await rawTarget(() => {});
    targets.push(target);
    await addRoute(proxy, '/never', target.url);
    const pid = proxy.process.pid;
    const baseline = fdCount(pid);
    const clients = [];
    for (let i = 0; i < 200; i++) {
      const client = await rawClient(`http://127.0.0.1:${proxy.port}`);
      client.socket.write('GET /never HTTP/1.1\r\nHost: x\r\n\r\n');
      clients.push(client);
    }
    await waitFor('400 more fds', () => fdCount(pid) >= baseline + 400, { timeoutMs: 10_000 });
    for (const client of clients) client.socket.destroy();
    await waitFor(`proxy fds back to ${baseline}`, () => fdCount(pid) <= baseline + 1, { timeoutMs: 10_000 });
  });
});

describe('attack: websocket resources (proxy process)', () => {
  let proxy: Awaited<ReturnType<typeof startProxyProcess>>;
  const targets: Array<{ close(): Promise<void> }> = [];
  before(async () => {
    proxy = await startProxyProcess([]);
  });
  after(async () => {
    await proxy.process.stop();
    for (const each of targets) await each.close();
  });
  const upgrade = (path: string) =>
    `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

  /** A target that keeps its half of every connection open (as a paused or hostile server does). */
  async function halfOpenTarget(answer: string) {
    const sockets = new Set<Socket>();
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
      let buffer = '';
      socket.on('data', (data) => {
        buffer += data.toString('latin1');
        if (answer && buffer.includes('\r\n\r\n')) socket.write(answer);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const each = {
      url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
      sockets,
      close: async () => {
        for (const socket of sockets) socket.destroy();
        server.close();
      },
    };
    targets.push(each);
    return each;
  }

  for (const [name, answer] of [
    ['no answer', ''],
    [
      'a 403 whose chunked body never ends',
      'HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n',
    ],
    [
      'a 101 and then silence',
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n',
    ],
  ] as const) {
    test(`websocket clients that leave an upgrade answered by ${name} leave no socket open`, async () => {
      const target = await halfOpenTarget(answer);
      const path = `/ws-${name.replaceAll(' ', '-')}`;
      await addRoute(proxy, path, target.url);
      const pid = proxy.process.pid;
      const baseline = fdCount(pid);
      for (let i = 0; i < 10; i++) {
        const client = await rawClient(`http://127.0.0.1:${proxy.port}`);
        client.socket.write(upgrade(path));
        await waitFor('the target connection', () => target.sockets.size > i, { timeoutMs: 10_000 });
        if (answer) await waitFor('an answer', () => client.bytes.length > 0, { timeoutMs: 10_000 });
        client.socket.destroy();
      }
      await waitFor('proxy fds back to the baseline', () => fdCount(pid) <= baseline + 1, {
        timeoutMs: 10_000,
      }).catch(() => {});
      assert.ok(
        fdCount(pid) <= baseline + 1,
        `proxy fds ${baseline} -> ${fdCount(pid)}, target connections still open: ${target.sockets.size}`,
      );
    });
  }
});
