// Websocket upgrades: the upgrade request goes to the target through node:http (llhttp parses
// its answer); a 101 turns both sockets into one byte tunnel, anything else is relayed and the
// connection closed. Activity is read from the sockets' byte counters by a sweep, so relaying
// does no work per message.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '@seahorse/runtime';
import { connectTarget, type TargetTls } from './connect.ts';
import { BadRequestPath } from './errors.ts';
import { type HeaderPolicy, requestHeaders } from './header-policy.ts';
import type { ProxyMetrics } from './metrics.ts';
import type { Route } from './routes.ts';
import type { Router } from './routing.ts';

export interface TunnelOptions {
  policy: HeaderPolicy;
  clientTls: TargetTls;
  /** CHP's `--proxy-timeout` while waiting for the target's answer to the upgrade, 0 for none. */
  proxyTimeoutMs: number;
}

type CountingSocket = Duplex & { bytesRead: number };

// What a raw status line may carry as its reason (no CR, LF or other control characters).
const invalidReason = /[^\t\x20-\x7e\x80-\xff]/;

export class WebsocketTunnels {
  readonly #options: TunnelOptions;
  readonly #router: Router;
  readonly #metrics: ProxyMetrics;
  readonly #log: Logger;
  /** Open tunnels: client socket → its route, the target socket and the bytes seen so far. */
  readonly #open = new Map<Duplex, { route: Route; target: CountingSocket; bytes: number }>();
  #activitySweep: NodeJS.Timeout | undefined;

  constructor(options: TunnelOptions, router: Router, metrics: ProxyMetrics, log: Logger) {
    this.#options = options;
    this.#router = router;
    this.#metrics = metrics;
    this.#log = log;
  }

  get size(): number {
    return this.#open.size;
  }

  /**
   * Stamps activity on routes whose websockets moved bytes (either way) since the last sweep.
   * Runs every second and before activity is reported.
   */
  sweepActivity(): void {
    const now = Date.now();
    for (const [socket, entry] of this.#open) {
      const bytes = (socket as CountingSocket).bytesRead + entry.target.bytesRead;
      if (bytes !== entry.bytes) {
        entry.bytes = bytes;
        entry.route.lastActivity = now;
      }
    }
  }

  /** Proxies a websocket upgrade and relays bytes both ways. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    // Node hands the upgrade socket over half-open: a client that leaves only ends it.
    socket.on('end', () => socket.destroy());
    // Only websocket upgrades over GET are proxied, as CHP does; others get no answer.
    if (req.method !== 'GET' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
      socket.destroy();
      return;
    }
    this.#metrics.websocketRequest();
    const match = this.#router.matchRequest(req.url, req.headers.host);
    if (match instanceof BadRequestPath) {
      this.#metrics.proxied(400, 0);
      writeRawResponse(socket, 400, 'Bad Request', `${match.message}\n`);
      return;
    }
    if (!match) {
      this.#metrics.proxied(404, 0);
      writeRawResponse(socket, 404, 'Not Found', 'No route for this websocket path\n');
      return;
    }
    const { route } = match;
    const target = route.target;
    // A createConnection without an agent: a connection of its own, never pooled.
    const proxyReq = httpRequest({
      method: req.method,
      path: match.path,
      headers: requestHeaders(req, target, this.#options.policy, true),
      setHost: false,
      createConnection: () => connectTarget(target, this.#options.clientTls),
    });
    const timeoutMs = this.#options.proxyTimeoutMs;
    if (timeoutMs > 0) {
      proxyReq.setTimeout(timeoutMs, () => {
        proxyReq.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
      });
    }
    let answered = false;
    proxyReq.on('error', (error: NodeJS.ErrnoException) => {
      // Once an answer is being relayed, the client can only learn of a failure by the close.
      if (answered) {
        socket.destroy();
        return;
      }
      this.#metrics.proxied(503, 0);
      this.#log.warn(
        { route: route.path, target: target.href, code: error.code, err: error.message },
        'websocket proxy error',
      );
      writeRawResponse(socket, 503, 'Service Unavailable', 'The websocket target is unavailable\n');
    });
    // The target answered without upgrading (auth failure, 404): relay that answer and close.
    proxyReq.on('response', (proxyRes) => {
      this.#metrics.proxied(proxyRes.statusCode ?? 502, 0);
      answered = true;
      const reason = proxyRes.statusMessage ?? '';
      // The body arrives decoded and goes out framed by the connection closing: the target's
      // framing headers would let a chunked body pass for a second response.
      const headers: string[] = [];
      for (let i = 0; i < proxyRes.rawHeaders.length; i += 2) {
        const name = proxyRes.rawHeaders[i]!.toLowerCase();
        if (name === 'transfer-encoding' || name === 'connection' || name === 'keep-alive') continue;
        if (name === 'content-length' && proxyRes.headers['transfer-encoding'] !== undefined) continue;
        headers.push(proxyRes.rawHeaders[i]!, proxyRes.rawHeaders[i + 1]!);
      }
      headers.push('Connection', 'close');
      socket.write(
        statusAndHeaders(
          `HTTP/1.1 ${proxyRes.statusCode} ${invalidReason.test(reason) ? '' : reason}`,
          headers,
        ),
      );
      proxyRes.on('error', () => socket.destroy());
      proxyRes.pipe(socket);
    });
    proxyReq.on('upgrade', (proxyRes, proxySocket, proxyHead) => {
      answered = true;
      this.#metrics.proxied(101, 0);
      proxySocket.on('error', () => socket.destroy());
      // Either side ending ends the tunnel: a half-open pair would hold both sockets for ever.
      proxySocket.on('end', () => proxySocket.destroy());
      if (socket.destroyed) {
        proxySocket.destroy();
        return;
      }
      proxySocket.setNoDelay(true);
      proxySocket.setTimeout(0);
      proxySocket.setKeepAlive(true);
      socket.write(statusAndHeaders('HTTP/1.1 101 Switching Protocols', proxyRes.rawHeaders));
      if (proxyHead.length > 0) socket.write(proxyHead);
      if (head.length > 0) proxySocket.write(head);
      proxySocket.pipe(socket);
      socket.pipe(proxySocket);
      // Traffic either way is activity (a kernel streaming output is as alive as a user typing).
      const bytes = (socket as CountingSocket).bytesRead + proxySocket.bytesRead;
      this.#open.set(socket, { route, target: proxySocket, bytes });
      route.lastActivity = Date.now();
      if (!this.#activitySweep) {
        this.#activitySweep = setInterval(() => this.sweepActivity(), 1000);
        this.#activitySweep.unref();
      }
      const close = () => {
        this.#open.delete(socket);
        socket.destroy();
        proxySocket.destroy();
      };
      socket.once('close', close);
      proxySocket.once('close', close);
    });
    socket.once('close', () => {
      if (!proxyReq.writableFinished || !proxyReq.destroyed) proxyReq.destroy();
    });
    proxyReq.end();
  }

  /** Closes every websocket; used when draining, since they would never finish by themselves. */
  closeAll(): void {
    for (const socket of this.#open.keys()) socket.destroy();
  }

  close(): void {
    clearInterval(this.#activitySweep);
    this.closeAll();
  }
}

function statusAndHeaders(statusLine: string, rawHeaders: string[]): string {
  let text = statusLine;
  for (let i = 0; i < rawHeaders.length; i += 2) text += `\r\n${rawHeaders[i]}: ${rawHeaders[i + 1]}`;
  return `${text}\r\n\r\n`;
}

function writeRawResponse(socket: Duplex, status: number, reason: string, body: string): void {
  if (socket.destroyed) return;
  const head = `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close`;
  socket.end(`${head}\r\n\r\n${body}`);
}
