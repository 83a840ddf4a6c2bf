// The bench's target, run as a process of its own so it never shares the proxy's event loop:
// 100-byte answers, 8 MB downloads (`…/big`), uploads drained and counted, websocket echo.
// Usage: node bench/upstream.ts [--port N]; prints `{"port":N}` once listening.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { largeBodyBytes, smallBodyBytes } from './lib/transfer.ts';

const small = Buffer.alloc(smallBodyBytes, 'x');
const large = Buffer.alloc(largeBodyBytes, 'y');
const portFlag = process.argv.indexOf('--port');
const port = portFlag === -1 ? 0 : Number(process.argv[portFlag + 1]);

const server = createServer((req, res) => {
  if (req.method === 'POST' || req.method === 'PUT') {
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    req.on('end', () => {
      const body = `{"received":${received}}`;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    return;
  }
  if (req.url?.endsWith('/big')) {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': large.length });
    res.end(large);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': small.length });
  res.end(small);
});

const websockets = new WebSocketServer({ noServer: true, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  websockets.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => ws.terminate());
  });
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => {
  for (const ws of websockets.clients) ws.terminate();
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
