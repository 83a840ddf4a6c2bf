// Streams one target response to the client: status and headers (through the header policy),
// then the body with backpressure, then activity and metrics — or, when the exchange fails,
// the error page (before the head went out) or a cut connection (after).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '@seahorse/runtime';
import type { ErrorPages } from './error-pages.ts';
import type { TargetError } from './errors.ts';
import { type HeaderPolicy, responseHeaders } from './header-policy.ts';
import type { ProxyMetrics } from './metrics.ts';
import type { ResponseHead } from './response-parser.ts';
import type { Route } from './routes.ts';
import type { Exchange, UpstreamHandler } from './upstream.ts';

export interface RelayContext {
  policy: HeaderPolicy;
  metrics: ProxyMetrics;
  errors: ErrorPages;
  log: Logger;
}

// What Node's ServerResponse accepts in a reason phrase; anything else gets the standard one.
const invalidReason = /[^\t\x20-\x7e\x80-\xff]/;

export class ResponseRelay implements UpstreamHandler {
  readonly #context: RelayContext;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #route: Route;
  readonly #started: number;
  exchange: Exchange | undefined;
  #status = 0;
  #draining = false;

  constructor(
    context: RelayContext,
    req: IncomingMessage,
    res: ServerResponse,
    route: Route,
    started: number,
  ) {
    this.#context = context;
    this.#req = req;
    this.#res = res;
    this.#route = route;
    this.#started = started;
  }

  onHeaders(head: ResponseHead): void {
    this.#status = head.status;
    const headers = responseHeaders(
      head.rawHeaders,
      head.status,
      this.#req.headers.host,
      this.#route.target,
      this.#context.policy,
    );
    // A target that framed its answer wrongly may have meant the extra bytes for the next
    // response: this client connection carries nothing after it.
    if (head.doubtful) this.#res.shouldKeepAlive = false;
    // No reason phrase, or one Node would refuse to write: the standard one, as Node's own.
    const reason = head.reason === '' || invalidReason.test(head.reason) ? undefined : head.reason;
    this.#res.writeHead(head.status, reason, headers);
    // Event streams must reach the client as they are written.
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i]!.length === 12 && headers[i]!.toLowerCase() === 'content-type') {
        if (headers[i + 1]!.startsWith('text/event-stream')) this.#res.flushHeaders();
        break;
      }
    }
  }

  onData(chunk: Buffer): boolean {
    if (this.#res.write(chunk)) return true;
    if (!this.#draining) {
      this.#draining = true;
      this.#res.on('drain', () => this.exchange?.resume());
    }
    return false;
  }

  onComplete(doubtful: boolean): void {
    this.#res.end();
    // Doubtful bytes that came after the head went out: close the client connection anyway.
    if (doubtful && this.#res.shouldKeepAlive) this.#req.socket.end();
    // As CHP: only successful responses count as a user's activity.
    if (this.#status < 300) this.#route.lastActivity = Date.now();
    const started = this.#started;
    this.#context.metrics.proxied(this.#status, started > 0 ? (performance.now() - started) / 1000 : 0);
  }

  onError(error: TargetError): void {
    const res = this.#res;
    // The client left first: nobody to answer. (req.destroyed is no sign: a read request is.)
    if (res.writableEnded || res.destroyed || this.#req.socket.destroyed) return;
    const { metrics, log, errors } = this.#context;
    metrics.proxied(error.status, 0);
    log.warn(
      { route: this.#route.path, target: this.#route.target.href, code: error.code, err: error.message },
      'proxy error',
    );
    // After the head went out the client can only learn of the failure by the connection closing.
    if (res.headersSent) res.destroy();
    else errors.send(this.#req, res, error.status);
  }
}
