// A lean keep-alive HTTP/1.1 client for route churn: raw sockets and pre-formatted requests, so
// that adding 100k routes measures the proxy's API rather than the client's HTTP stack.
import { connect, type Socket } from 'node:net';

export interface BatchResult {
  seconds: number;
  /** Responses by status code. */
  statuses: Record<number, number>;
}

/**
 * Sends `count` requests built by `build(i)` over `concurrency` keep-alive connections, one in
 * flight per connection, and resolves when every response has arrived.
 */
export function sendRequests(
  base: string,
  count: number,
  build: (index: number) => string,
  concurrency = 32,
): Promise<BatchResult> {
  const { hostname, port } = new URL(base);
  const statuses: Record<number, number> = {};
  const started = performance.now();
  let nextIndex = 0;
  let done = 0;
  return new Promise((resolve, reject) => {
    if (count === 0) {
      resolve({ seconds: 0, statuses });
      return;
    }
    const runConnection = () => {
      let socket: Socket | undefined;
      let buffer: Buffer = Buffer.alloc(0);
      let current = -1;
      const open = () => {
        socket = connect(Number(port), hostname);
        socket.setNoDelay(true);
        socket.on('data', onData);
        socket.on('error', (error) => reject(new Error(`API request failed: ${error.message}`)));
        socket.on('close', () => {
          // The server closed a keep-alive connection: resend what was in flight on a new one.
          if (current !== -1) {
            buffer = Buffer.alloc(0);
            open();
            socket!.write(build(current));
          }
        });
      };
      const sendNext = () => {
        if (nextIndex >= count) {
          current = -1;
          socket?.end();
          return;
        }
        current = nextIndex++;
        socket!.write(build(current));
      };
      const onData = (chunk: Buffer) => {
        buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
        for (;;) {
          const length = responseLength(buffer);
          if (length === undefined) return;
          const status = Number(buffer.toString('latin1', 9, 12));
          statuses[status] = (statuses[status] ?? 0) + 1;
          buffer = buffer.subarray(length);
          done++;
          if (done === count) {
            current = -1;
            socket!.end();
            resolve({ seconds: (performance.now() - started) / 1000, statuses });
            return;
          }
          sendNext();
        }
      };
      open();
      sendNext();
    };
    for (let i = 0; i < Math.min(concurrency, count); i++) runConnection();
  });
}

/** Bytes of the first complete response in `buffer`, or undefined if it is not complete yet. */
function responseLength(buffer: Buffer): number | undefined {
  const headerEnd = buffer.indexOf('\r\n\r\n');
  if (headerEnd === -1) return undefined;
  const head = buffer.toString('latin1', 0, headerEnd);
  const bodyStart = headerEnd + 4;
  const lengthHeader = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (lengthHeader) {
    const end = bodyStart + Number(lengthHeader[1]);
    return buffer.length >= end ? end : undefined;
  }
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
    const last = buffer.indexOf('0\r\n\r\n', bodyStart);
    return last === -1 ? undefined : last + 5;
  }
  return bodyStart;
}

/** A formatted `POST /api/routes<path>` adding a route to `target`. */
export function addRouteRequest(host: string, token: string, path: string, target: string): string {
  const body = `{"target":"${target}"}`;
  return `POST /api/routes${path} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: token ${token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

export function deleteRouteRequest(host: string, token: string, path: string): string {
  return `DELETE /api/routes${path} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: token ${token}\r\nContent-Length: 0\r\n\r\n`;
}
