// The metrics proxy beside the application: every request goes to the application's metrics
// URL, and the last good answer is kept. On SIGTERM it makes sure Prometheus gets one more
// scrape with the final numbers, even after the application has exited.
import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  request,
  type ServerResponse,
} from 'node:http';
import { performance } from 'node:perf_hooks';
import { formatAddress, Lifecycle, type ListenAddress, type Logger, listen } from '@seahorse/runtime';
import type { SidecarOptions } from './options.ts';
import type { SlotLease } from './slot-lease.ts';

const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
]);

interface TargetResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface CachedMetrics {
  body: Buffer;
  contentType: string | undefined;
  /** performance.now() when the application served it. */
  fetchedAt: number;
}

function forwardableHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const result: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !hopByHop.has(name)) result[name] = value;
  }
  return result;
}

function readAll(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

export class MetricsSidecar {
  readonly lifecycle: Lifecycle;
  readonly #options: SidecarOptions;
  readonly #log: Logger;
  readonly #lease: SlotLease | undefined;
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 4 });
  readonly #server = createServer((req, res) => void this.#handle(req, res));
  #cache: CachedMetrics | undefined;
  #lastScrapeAt: number | undefined;
  #terminating: Promise<void> | undefined;
  #scrapedSinceSignal = false;
  #onScrape: (() => void) | undefined;

  constructor(options: SidecarOptions, log: Logger, lease?: SlotLease) {
    this.#options = options;
    this.#log = log;
    this.#lease = lease;
    // The shutdown that follows the final scrape: lameduck, drain, then give the slot back.
    this.lifecycle = new Lifecycle({
      logger: log,
      lameduckMs: options.lameduckMs,
      terminationGracePeriodMs: options.lameduckMs + this.#drainReserveMs(),
    });
    this.lifecycle.track(this.#server);
    this.lifecycle.onClose(() => this.#agent.destroy());
    if (lease) this.lifecycle.onClose(() => lease.stop());
  }

  /** The metrics most recently served by the application, if any. */
  get cached(): Readonly<CachedMetrics> | undefined {
    return this.#cache;
  }

  async start(): Promise<ListenAddress> {
    const address = await listen(this.#server, this.#options.listen, '--address');
    this.#lease?.start();
    this.lifecycle.setReady(true);
    this.#log.info(
      { address: `http://${formatAddress(address)}`, target: this.#options.target.href },
      'metrics proxy serving',
    );
    return address;
  }

  /**
   * The SIGTERM sequence: fresh metrics if the last scrape is stale, then wait for one more
   * scrape (or the grace period's end), then lameduck and stop. Same promise on every call.
   */
  terminate(reason: string): Promise<void> {
    this.#terminating ??= this.#runTermination(reason);
    return this.#terminating;
  }

  #drainReserveMs(): number {
    return Math.min(2000, Math.max(100, Math.floor(this.#options.terminationGracePeriodMs / 10)));
  }

  async #runTermination(reason: string): Promise<void> {
    const { terminationGracePeriodMs, lameduckMs, scrapeWaitThresholdMs, targetTimeoutMs } = this.#options;
    const signalledAt = performance.now();
    const waitUntil = signalledAt + terminationGracePeriodMs - lameduckMs - this.#drainReserveMs();
    const sinceScrape = this.#lastScrapeAt === undefined ? undefined : signalledAt - this.#lastScrapeAt;
    this.#log.info(
      { reason, terminationGracePeriodMs, sinceLastScrapeMs: sinceScrape ?? null },
      'terminating',
    );

    if (sinceScrape === undefined || sinceScrape > scrapeWaitThresholdMs) {
      const timeout = Math.max(1, Math.min(targetTimeoutMs, waitUntil - performance.now()));
      try {
        const response = await this.#fetchTarget('GET', {}, '', timeout);
        if (response.status === 200) {
          this.#remember(response);
          this.#log.info({ bytes: response.body.length }, 'final metrics fetched');
        } else {
          this.#log.warn(
            { status: response.status },
            'final metrics fetch failed; keeping the last good metrics',
          );
        }
      } catch (error) {
        this.#log.warn(
          { err: (error as Error).message },
          'final metrics fetch failed; keeping the last good metrics',
        );
      }
    }

    if (!this.#scrapedSinceSignal) {
      const remaining = waitUntil - performance.now();
      const scraped = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), Math.max(0, remaining));
        this.#onScrape = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
      this.#onScrape = undefined;
      if (scraped) this.#log.info('final scrape served');
      else
        this.#log.warn(
          { waitedMs: Math.round(performance.now() - signalledAt) },
          'no scrape before the grace period ran out',
        );
    } else {
      this.#log.info('final scrape served');
    }
    await this.lifecycle.shutdown(reason);
  }

  #remember(response: TargetResponse): void {
    const type = response.headers['content-type'];
    this.#cache = { body: response.body, contentType: type, fetchedAt: performance.now() };
  }

  #fetchTarget(
    method: string,
    headers: OutgoingHttpHeaders,
    search: string,
    timeoutMs: number,
    body?: Buffer,
  ) {
    const url = new URL(this.#options.target);
    if (search && !url.search) url.search = search;
    return new Promise<TargetResponse>((resolve, reject) => {
      const outgoing = request(
        url,
        {
          method,
          // Ask for an uncompressed body, so the copy we keep can be served to any scraper.
          headers: { ...headers, 'accept-encoding': 'identity' },
          agent: this.#agent,
          signal: AbortSignal.timeout(Math.max(1, Math.floor(timeoutMs))),
        },
        (response) => {
          readAll(response).then(
            (buffer) =>
              resolve({ status: response.statusCode ?? 502, headers: response.headers, body: buffer }),
            reject,
          );
        },
      );
      outgoing.once('error', reject);
      outgoing.end(body);
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const search = new URL(req.url ?? '/', 'http://sidecar').search;
    let response: TargetResponse | undefined;
    let failure: Error | undefined;
    try {
      const body = method === 'GET' || method === 'HEAD' ? undefined : await readAll(req);
      response = await this.#fetchTarget(
        method,
        forwardableHeaders(req.headers),
        search,
        this.#options.targetTimeoutMs,
        body,
      );
    } catch (error) {
      failure = error as Error;
    }
    const isScrape = method === 'GET';
    if (response && response.status === 200 && isScrape) this.#remember(response);

    // Once terminating, an application that has gone (or is going) answers from the cache.
    const fromCache =
      this.#terminating !== undefined && isScrape && this.#cache !== undefined && response?.status !== 200;
    if (fromCache) {
      const cache = this.#cache!;
      this.#reply(res, 200, cache.contentType ? { 'content-type': cache.contentType } : {}, cache.body, true);
      return;
    }
    if (response) {
      const headers = forwardableHeaders(response.headers);
      this.#reply(res, response.status, headers, response.body, response.status === 200 && isScrape);
      return;
    }
    const status = this.#terminating ? 503 : 502;
    this.#log.warn(
      { target: this.#options.target.href, err: failure?.message },
      'the application did not answer',
    );
    this.#reply(
      res,
      status,
      { 'content-type': 'text/plain; charset=utf-8' },
      Buffer.from(
        `the application's metrics at ${this.#options.target.href} did not answer: ${failure?.message}\n`,
      ),
      false,
    );
  }

  #reply(
    res: ServerResponse,
    status: number,
    headers: OutgoingHttpHeaders,
    body: Buffer,
    scrape: boolean,
  ): void {
    if (scrape) {
      res.once('finish', () => {
        this.#lastScrapeAt = performance.now();
        if (this.#terminating) {
          this.#scrapedSinceSignal = true;
          this.#onScrape?.();
        }
      });
    }
    res.writeHead(status, { ...headers, 'content-length': body.length });
    res.end(body);
  }
}
