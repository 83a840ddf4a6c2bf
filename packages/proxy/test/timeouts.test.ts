// The target timeouts: --proxy-timeout (CHP's: the target connection idle, whichever way the
// bytes flow), --proxy-headers-timeout and --proxy-body-timeout (ours, as undici's).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request } from 'node:http';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { rawRequest, startTestProxy, type TestProxy } from './helpers.ts';

/** A target that lets `answer` drive each connection (a single request per connection). */
async function target(answer: (socket: Socket, head: string) => void) {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffer = '';
    let answered = false;
    socket.on('data', (data) => {
      buffer += data.toString('latin1');
      if (!answered && buffer.includes('\r\n\r\n')) {
        answered = true;
        answer(socket, buffer);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/** A proxy started with `args` for the enclosing describe, and raw targets routed through it. */
function proxyWithTargets(args: string[]) {
  const state = { proxy: undefined as TestProxy | undefined };
  const targets: Array<{ close(): Promise<void> }> = [];
  before(async () => {
    state.proxy = await startTestProxy(args);
  });
  after(async () => {
    await state.proxy?.close();
    for (const each of targets) await each.close();
  });
  return {
    proxy: {
      get url() {
        return state.proxy!.url;
      },
      get logs() {
        return state.proxy!.logs;
      },
    },
    async route(path: string, answer: (socket: Socket, head: string) => void) {
      const each = await target(answer);
      targets.push(each);
      await state.proxy!.addRoute(path, each.url);
    },
  };
}

/** Uploads `pieces` chunks `everyMs` apart and reads the answer. */
function slowUpload(url: string, pieces: number, everyMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    let sent = 0;
    const timer = setInterval(() => {
      req.write('x'.repeat(100));
      if (++sent === pieces) {
        clearInterval(timer);
        req.end();
      }
    }, everyMs);
  });
}

describe('--proxy-timeout 300 (idle over the whole exchange)', () => {
  const { proxy, route } = proxyWithTargets(['--proxy-timeout', '300']);

  test('a steady upload lasting longer than the timeout is not cut: every piece is activity', async () => {
    await route('/upload', (socket) => {
      // Answer once the chunked body has ended.
      let seen = '';
      const onData = (data: Buffer) => {
        seen += data.toString('latin1');
        if (seen.includes('0\r\n\r\n')) {
          socket.off('data', onData);
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone');
        }
      };
      socket.on('data', onData);
    });
    const res = await slowUpload(`${proxy.url}/upload`, 12, 100);
    assert.deepEqual(res, { status: 200, body: 'done' });
  });

  test('a target that never answers gets 504', async () => {
    await route('/silent', () => {});
    const res = await rawRequest(`${proxy.url}/silent`);
    assert.equal(res.status, 504);
    assert.match(proxy.logs.text, /CHP_TARGET_IDLE_TIMEOUT/);
  });

  test('a target that sends its head and then stalls has the client connection closed', async () => {
    await route('/stall', (socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome');
    });
    const started = Date.now();
    await assert.rejects(rawRequest(`${proxy.url}/stall`), /aborted|ECONNRESET|socket hang up/);
    assert.ok(Date.now() - started < 10_000);
  });

  test('a slow but steady body is not cut', async () => {
    await route('/drip', (socket) => {
      socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
      let sent = 0;
      const timer = setInterval(() => {
        if (socket.destroyed) return clearInterval(timer);
        socket.write('1\r\nx\r\n');
        if (++sent === 10) {
          clearInterval(timer);
          socket.write('0\r\n\r\n');
        }
      }, 100);
    });
    const res = await rawRequest(`${proxy.url}/drip`);
    assert.equal(res.body.toString(), 'x'.repeat(10));
  });
});

describe('--proxy-headers-timeout and --proxy-body-timeout', () => {
  const { proxy, route } = proxyWithTargets([
    '--proxy-headers-timeout',
    '400',
    '--proxy-body-timeout',
    '300',
  ]);

  test('no head in time: 504 naming the headers timeout', async () => {
    await route('/no-head', () => {});
    const res = await rawRequest(`${proxy.url}/no-head`);
    assert.equal(res.status, 504);
    assert.match(proxy.logs.text, /CHP_TARGET_HEADERS_TIMEOUT/);
  });

  test('the headers timer is refreshed while the request uploads', async () => {
    await route('/upload', (socket) => {
      let seen = '';
      socket.on('data', (data: Buffer) => {
        seen += data.toString('latin1');
        if (seen.includes('0\r\n\r\n')) socket.write('HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n');
      });
    });
    assert.equal((await slowUpload(`${proxy.url}/upload`, 8, 100)).status, 201);
  });

  test('a body that stops after the head closes the client connection, naming the body timeout', async () => {
    await route('/body-stall', (socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    });
    await assert.rejects(rawRequest(`${proxy.url}/body-stall`));
    assert.match(proxy.logs.text, /CHP_TARGET_BODY_TIMEOUT/);
  });
});
