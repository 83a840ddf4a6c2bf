// The upstream client against real HTTP servers on loopback: keep-alive reuse, the one retry
// on a reused connection that died before answering, encodings, limits.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, it } from 'node:test';
import { brotliCompressSync, deflateSync } from 'node:zlib';
import {
  ClientGoneError,
  UpstreamResponseError,
  UpstreamTimeoutError,
  UpstreamUnavailableError,
} from './errors.ts';
import { forwardedHeaders, UpstreamClient } from './upstream.ts';

const servers: Array<() => Promise<void>> = [];
after(async () => {
  for (const close of servers) await close();
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse, nth: number) => void) {
  const perSocket = new WeakMap<Socket, number>();
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer((req, res) => {
    const nth = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, nth);
    req.resume();
    req.on('end', () => handler(req, res, nth));
  });
  server.on('connection', (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  servers.push(
    () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return { baseUrl: `http://127.0.0.1:${port}/v1`, connections: () => connections };
}

const json = (res: ServerResponse, body: string | Buffer, headers: Record<string, string> = {}) => {
  res.writeHead(200, { 'content-type': 'application/json', ...headers });
  res.end(body);
};

it('reuses one keep-alive connection for consecutive calls', async () => {
  const upstream = await serve((_req, res) => json(res, '{"ok": true}'));
  const client = new UpstreamClient({ baseUrl: upstream.baseUrl, timeoutMs: 5000 });
  for (let i = 0; i < 3; i++) {
    const answer = await client.post('{}', {}, new AbortController().signal);
    assert.equal(answer.body.toString(), '{"ok": true}');
  }
  assert.equal(upstream.connections(), 1);
  client.close();
});

it('sends a call once more on a fresh connection when a reused one dies before answering', async () => {
  // The second request on any connection is dropped unanswered, as a server closing an idle
  // keep-alive connection at the moment the request arrives would.
  const upstream = await serve((req, res, nth) => {
    if (nth === 2) req.socket.destroy();
    else json(res, `{"n": ${nth}}`);
  });
  const client = new UpstreamClient({ baseUrl: upstream.baseUrl, timeoutMs: 5000 });
  await client.post('{}', {}, new AbortController().signal);
  const second = await client.post('{}', {}, new AbortController().signal);
  assert.equal(second.status, 200);
  assert.equal(second.body.toString(), '{"n": 1}', 'answered on a new connection');
  assert.equal(upstream.connections(), 2);
  client.close();
});

it('does not send again when the first connection of a call dies', async () => {
  const upstream = await serve((req) => req.socket.destroy());
  const client = new UpstreamClient({ baseUrl: upstream.baseUrl, timeoutMs: 5000 });
  await assert.rejects(client.post('{}', {}, new AbortController().signal), UpstreamUnavailableError);
  assert.equal(upstream.connections(), 1);
  client.close();
});

it('undoes br and deflate encodings; an unknown encoding is an UpstreamResponseError', async () => {
  const body = '{"data": [1.5]}';
  const upstream = await serve((req, res) => {
    const encoding = String(req.headers['x-encoding']);
    if (encoding === 'br') json(res, brotliCompressSync(body), { 'content-encoding': 'br' });
    else if (encoding === 'deflate') json(res, deflateSync(body), { 'content-encoding': 'deflate' });
    else json(res, body, { 'content-encoding': 'compress' });
  });
  const client = new UpstreamClient({ baseUrl: upstream.baseUrl, timeoutMs: 5000 });
  const signal = new AbortController().signal;
  assert.equal((await client.post('{}', { 'x-encoding': 'br' }, signal)).body.toString(), body);
  assert.equal((await client.post('{}', { 'x-encoding': 'deflate' }, signal)).body.toString(), body);
  await assert.rejects(client.post('{}', { 'x-encoding': 'compress' }, signal), UpstreamResponseError);
  client.close();
});

it('a call past its timeout is an UpstreamTimeoutError; an aborted one a ClientGoneError', async () => {
  const upstream = await serve(() => {});
  const client = new UpstreamClient({ baseUrl: upstream.baseUrl, timeoutMs: 100 });
  await assert.rejects(client.post('{}', {}, new AbortController().signal), UpstreamTimeoutError);
  const slow = new UpstreamClient({ baseUrl: upstream.baseUrl, timeoutMs: 10_000 });
  const controller = new AbortController();
  const pending = slow.post('{}', {}, controller.signal);
  controller.abort();
  await assert.rejects(pending, ClientGoneError);
  client.close();
  slow.close();
});

it('forwards the first value of each client header and none of the hop-by-hop ones', () => {
  assert.deepEqual(
    forwardedHeaders([
      'Authorization',
      'Bearer a',
      'authorization',
      'Bearer b',
      'Host',
      'gateway',
      'Content-Length',
      '10',
      'Connection',
      'keep-alive',
      'Transfer-Encoding',
      'chunked',
      'X-Trace',
      't',
    ]),
    { authorization: 'Bearer a', 'x-trace': 't' },
  );
});
