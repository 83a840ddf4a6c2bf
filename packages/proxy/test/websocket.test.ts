import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { type WebSocket as ServerSocket, WebSocketServer } from 'ws';
import { startTestProxy, type TestProxy } from './helpers.ts';

describe('websockets', () => {
  let proxy: TestProxy;
  let wss: WebSocketServer;
  let wsPort: number;
  const serverSockets = new Set<ServerSocket>();
  const upgradeHeaders: Array<Record<string, string | string[] | undefined>> = [];
  const pushRequests: string[] = [];
  before(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    wsPort = (wss.address() as { port: number }).port;
    wss.on('connection', (socket, req) => {
      upgradeHeaders.push(req.headers);
      serverSockets.add(socket);
      socket.on('close', () => serverSockets.delete(socket));
      socket.on('message', (data, binary) => {
        const text = data.toString();
        if (text.startsWith('push:')) {
          pushRequests.push(text);
          // The server talks on its own, as a kernel streaming output does.
          setTimeout(() => socket.send(`pushed ${text.slice(5)}`), Number(text.slice(5)));
        } else {
          socket.send(data, { binary });
        }
      });
    });
    proxy = await startTestProxy();
    await proxy.addRoute('/user/a', `http://127.0.0.1:${wsPort}`);
  });
  after(async () => {
    await proxy.close();
    for (const socket of serverSockets) socket.terminate();
    wss.close();
  });

  function open(path: string): Promise<WebSocket> {
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}${path}`);
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error(`websocket to ${path} failed`));
    });
  }

  function nextMessage(ws: WebSocket): Promise<string> {
    return new Promise((resolve) => {
      ws.onmessage = (event) => resolve(typeof event.data === 'string' ? event.data : String(event.data));
    });
  }

  test('messages echo through the proxy, with X-Forwarded-Proto ws and the Host unchanged', async () => {
    const ws = await open('/user/a/api/kernels/1/channels?token=t');
    const reply = nextMessage(ws);
    ws.send('1+1');
    assert.equal(await reply, '1+1');
    const headers = upgradeHeaders.at(-1)!;
    assert.equal(headers['x-forwarded-proto'], 'ws');
    assert.equal(headers.host, `127.0.0.1:${new URL(proxy.url).port}`);
    assert.equal(headers['x-forwarded-host'], undefined);
    ws.close();
  });

  test('traffic in either direction updates last_activity', async () => {
    const route = proxy.table.get('/user/a')!;
    // Listing routes is what the hub's idle culler does; it reads the latest activity.
    const listedActivity = async () => {
      const all = (await (await proxy.api('GET', '/api/routes')).json()) as Record<
        string,
        { last_activity: string }
      >;
      return Date.parse(all['/user/a']!.last_activity);
    };
    const ws = await open('/user/a/channels');
    await listedActivity();
    route.lastActivity = 0;
    ws.send('x');
    await nextMessage(ws);
    assert.ok(Date.now() - (await listedActivity()) < 5000, 'client to server traffic counts');
    const pushed = nextMessage(ws);
    ws.send('push:300');
    // Once the server has the request and a listing has counted those bytes, only the
    // server's later push can move the activity again.
    await waitFor('the push request to reach the server', () => pushRequests.includes('push:300'));
    await listedActivity();
    route.lastActivity = 0;
    assert.equal(await pushed, 'pushed 300');
    assert.ok(Date.now() - (await listedActivity()) < 5000, 'server to client traffic counts');
    ws.close();
  });

  test('a websocket without a route gets a 404 response and a closed socket', async () => {
    const port = Number(new URL(proxy.url).port);
    const socket = connect(port, '127.0.0.1');
    socket.write(
      'GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    let text = '';
    socket.on('data', (chunk) => (text += chunk));
    await once(socket, 'close');
    assert.match(text, /^HTTP\/1.1 404 Not Found/);
  });

  test('a target that refuses the upgrade has its answer relayed', async () => {
    const { createServer } = await import('node:http');
    const refusing = createServer((_req, res) => {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('no token');
    });
    refusing.listen(0, '127.0.0.1');
    await once(refusing, 'listening');
    await proxy.addRoute('/plain', `http://127.0.0.1:${(refusing.address() as { port: number }).port}`);
    const socket = connect(Number(new URL(proxy.url).port), '127.0.0.1');
    socket.write(
      'GET /plain/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    let text = '';
    socket.on('data', (chunk) => (text += chunk));
    await waitFor('the refusal to arrive', () => text.includes('no token'));
    assert.match(text, /^HTTP\/1.1 403 Forbidden/);
    socket.destroy();
    refusing.close();
  });

  test('a websocket to a target that is down gets 503', async () => {
    await proxy.addRoute('/down', 'http://127.0.0.1:9');
    await assert.rejects(open('/down/ws'));
  });

  test('closing either side closes the other and nothing stays open', async () => {
    const ws = await open('/user/a/x');
    await waitFor('the server to hold the websocket', () => serverSockets.size > 0);
    for (const socket of serverSockets) socket.close();
    await new Promise<void>((resolve) => {
      ws.onclose = () => resolve();
    });
    await waitFor('no websockets left open in the server', () => serverSockets.size === 0);
    const res = await fetch(`${proxy.url}/_chp_healthz`);
    assert.equal(res.status, 200);
  });

  test('draining on shutdown closes open websockets', async () => {
    const own = await startTestProxy();
    await own.addRoute('/', `http://127.0.0.1:${wsPort}`);
    const ws = new WebSocket(`${own.url.replace('http', 'ws')}/k`);
    await new Promise((resolve) => {
      ws.onopen = resolve;
    });
    const closed = new Promise((resolve) => {
      ws.onclose = resolve;
    });
    await own.close();
    await closed;
    assert.equal(ws.readyState, WebSocket.CLOSED);
  });
});
