// The metrics proxy beside the application: every request is streamed to the application's
// metrics URL and back, and the last good body (up to --max-cached-body) is kept. On SIGTERM it
// follows the original's rule: only a pod whose last scrape is older than
// --scrape-wait-threshold gets a final fetch and a wait for one more scrape.
import {
  Agent,
  type ClientRequest,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  request,
  type Server,
  type ServerResponse,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { formatAddress, Lifecycle, type ListenAddress, type Logger, listen } from '@seahorse/runtime';
import { TargetTimeoutError } from './errors.ts';
import { BodyCollector, type CachedMetrics } from './metrics-cache.ts';
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
]);

function forwardableHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const result: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !hopByHop.has(name)) result[name] = value;
  }
  return result;
}

/**
 * The origin-form path and query of a request target, from the raw string: never `new URL()`,
 * which throws on a malformed absolute-form target (`GET http://[ HTTP/1.1`) that the HTTP
 * parser lets through. An absolute-form target gives its path; `*` and the like give `/`.
 */
function requestPath(target: string): string {
  if (target.startsWith('/') && !target.startsWith('//')) return target;
  const absolute = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*(\/[^#]*)?(\?[^#]*)?/i.exec(target);
  if (absolute) return `${absolute[1] ?? '/'}${absolute[2] ?? ''}`.replace(/^\/+/, '/');
  return `/${target.replace(/^\/+/, '')}`;
}

/**
 * A delay setTimeout can hold: past 2^31-1 ms (24.8 days) Node fires after 1 ms instead, and a
 * pod may have a grace period of 30 days.
 */
function timerMs(ms: number): number {
  return Math.min(2 ** 31 - 1, Math.max(0, ms));
}

/** Why the sidecar did or did not wait for a scrape after SIGTERM (logged, and for tests). */
export type TerminationPath =
  | 'never-scraped'
  | 'scraped-recently'
  | 'nothing-to-serve'
  | 'scraped-after-signal'
  | 'grace-period-ran-out';

export class MetricsSidecar {
  readonly lifecycle: Lifecycle;
  readonly #options: SidecarOptions;
  readonly #log: Logger;
  readonly #lease: SlotLease | undefined;
  /**
   * Connections to the application, without a cap: a shared pool of a few sockets let four
   * stalled clients (a request body that never arrives, a response nobody reads) hold every
   * socket and queue real scrapes behind them until --target-timeout.
   */
  readonly #agent: Agent;
  readonly #server: Server;
  #cache: CachedMetrics | undefined;
  /** Only one body is collected at a time: concurrent scrapes stream without a second copy. */
  #collecting = false;
  #warnedOversize = false;
  #lastScrapeAt: number | undefined;
  #terminating: Promise<TerminationPath> | undefined;
  #scrapedSinceSignal = false;
  /** Ends the wait after SIGTERM: a scrape got a body, or found nothing left to serve. */
  #onScrape: ((path: 'scraped-after-signal' | 'nothing-to-serve') => void) | undefined;
  /** Path and query of the last scrape, for the final fetch when the target names no path. */
  #lastScrapePath: string | undefined;
  /** performance.now() at SIGTERM: the kubelet kills the pod a grace period later. */
  #signalledAt: number | undefined;

  constructor(options: SidecarOptions, log: Logger, lease?: SlotLease) {
    this.#options = options;
    this.#log = log;
    this.#lease = lease;
    this.#agent =
      options.target.protocol === 'https:'
        ? new HttpsAgent({ keepAlive: true, maxFreeSockets: 4, ca: options.targetCa })
        : new Agent({ keepAlive: true, maxFreeSockets: 4 });
    // Each client on its own clock, never a shared one: a head still arriving, a request body
    // still arriving or a connection where nothing moved (a response nobody reads) for
    // --target-timeout is cut off, and with it its connection to the application.
    const clientTimeoutMs = timerMs(options.targetTimeoutMs);
    this.#server = createServer(
      {
        headersTimeout: clientTimeoutMs,
        requestTimeout: clientTimeoutMs,
        connectionsCheckingInterval: Math.min(1000, clientTimeoutMs),
        keepAliveTimeout: 5000,
      },
      (req, res) => this.#handle(req, res),
    );
    this.#server.setTimeout(clientTimeoutMs);
    // The shutdown that follows the final scrape: lameduck, drain, then give the slot back.
    this.lifecycle = new Lifecycle({
      logger: log,
      lameduckMs: options.lameduckMs,
      terminationGracePeriodMs: options.lameduckMs + this.#drainReserveMs(),
    });
    this.lifecycle.track(this.#server);
    this.lifecycle.onClose(() => this.#agent.destroy());
    if (lease) {
      this.lifecycle.onClose(async () => {
        await this.#whileApplicationListens();
        // A native sidecar is stopped only after the application has exited: the slot is free.
        // Otherwise the kubelet signalled the application at the same moment, and one that has
        // closed its metrics port may still be draining: its pod runs until the grace period
        // ends, so the slot stays leased until then (the webhook reclaims it sooner once the
        // API server shows the pod gone).
        const holdMs = options.nativeSidecar
          ? 0
          : (this.#signalledAt ?? performance.now()) + options.terminationGracePeriodMs - performance.now();
        await lease.stop(holdMs);
      });
    }
  }

  /** The metrics most recently served by the application, if kept. */
  get cached(): { body: Buffer; contentType: string | undefined } | undefined {
    const cache = this.#cache;
    return cache && { body: Buffer.concat(cache.chunks), contentType: cache.contentType };
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

  /** Whether a termination has started (a later signal is then ignored). */
  get terminating(): boolean {
    return this.#terminating !== undefined;
  }

  /**
   * The SIGTERM sequence; the same promise on every call. Never scraped, or scraped within
   * --scrape-wait-threshold: lameduck and exit. Scraped longer ago: fetch once more, wait for
   * one scrape that gets a body (bounded by the grace period), then lameduck and exit.
   */
  terminate(reason: string): Promise<TerminationPath> {
    this.#terminating ??= this.#runTermination(reason);
    return this.#terminating;
  }

  #drainReserveMs(): number {
    return Math.min(2000, Math.max(100, Math.floor(this.#options.terminationGracePeriodMs / 10)));
  }

  async #runTermination(reason: string): Promise<TerminationPath> {
    const { terminationGracePeriodMs, lameduckMs, scrapeWaitThresholdMs, targetTimeoutMs } = this.#options;
    const signalledAt = performance.now();
    this.#signalledAt = signalledAt;
    const waitUntil = signalledAt + terminationGracePeriodMs - lameduckMs - this.#drainReserveMs();
    const sinceScrape = this.#lastScrapeAt === undefined ? undefined : signalledAt - this.#lastScrapeAt;
    this.#log.info(
      { reason, terminationGracePeriodMs, sinceLastScrapeMs: sinceScrape ?? null },
      'terminating',
    );
    const path = await this.#finalScrape(sinceScrape, scrapeWaitThresholdMs, waitUntil, targetTimeoutMs);
    this.#log.info({ path, waitedMs: Math.round(performance.now() - signalledAt) }, 'final scrape decided');
    await this.lifecycle.shutdown(reason);
    return path;
  }

  async #finalScrape(
    sinceScrape: number | undefined,
    thresholdMs: number,
    waitUntil: number,
    targetTimeoutMs: number,
  ): Promise<TerminationPath> {
    // Prometheus never came by: no one will scrape this pod, do not hold it.
    if (sinceScrape === undefined) return 'never-scraped';
    // The last scrape is fresh enough: Prometheus already has (nearly) the final numbers.
    if (sinceScrape <= thresholdMs) return 'scraped-recently';

    const timeout = Math.max(1, Math.min(targetTimeoutMs, waitUntil - performance.now()));
    let fetched = false;
    try {
      fetched = await this.#refetch(timeout);
    } catch (error) {
      this.#log.warn({ err: (error as Error).message }, 'final metrics fetch failed');
    }
    if (this.#scrapedSinceSignal) return 'scraped-after-signal';
    if (!fetched && this.#cache === undefined) {
      this.#log.warn('nothing to serve a last scrape with (final fetch failed, nothing kept); not waiting');
      return 'nothing-to-serve';
    }
    const ended = await new Promise<TerminationPath>((resolve) => {
      const timer = setTimeout(() => resolve('grace-period-ran-out'), timerMs(waitUntil - performance.now()));
      this.#onScrape = (path) => {
        clearTimeout(timer);
        resolve(path);
      };
    });
    this.#onScrape = undefined;
    if (ended === 'grace-period-ran-out') this.#log.warn('no scrape before the grace period ran out');
    if (ended === 'nothing-to-serve') {
      this.#log.warn(
        'a scrape found the application gone and nothing kept (the final body was too big to keep); not waiting',
      );
    }
    return ended;
  }

  /**
   * The kubelet signals every container at once, and an application may drain long after this
   * sidecar is done; its pod still runs, so the slot stays held (the lease keeps being renewed)
   * while the application still accepts connections on its metrics port, up to the grace period.
   * An application that closes its port before it exits is not seen: the README says so.
   */
  async #whileApplicationListens(): Promise<void> {
    const deadline =
      (this.#signalledAt ?? performance.now()) +
      this.#options.terminationGracePeriodMs -
      this.#drainReserveMs();
    let logged = false;
    while (performance.now() < deadline && (await this.#applicationListens())) {
      if (!logged) {
        logged = true;
        this.#log.info('the application still runs: holding the semaphore slot until it stops');
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Whether the target's port accepts a connection now (a frozen process's port still does). */
  #applicationListens(): Promise<boolean> {
    const { hostname, port } = this.#options.target;
    return new Promise((resolve) => {
      const defaultPort = this.#options.target.protocol === 'https:' ? 443 : 80;
      const socket = connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) || defaultPort });
      const done = (listening: boolean) => {
        clearTimeout(timer);
        socket.destroy();
        resolve(listening);
      };
      // No answer at all within this is a hung network path, not a listening application.
      const timer = setTimeout(() => done(false), 1000);
      socket.once('connect', () => done(true));
      socket.once('error', () => done(false));
    });
  }

  /** GETs the target once and keeps the body; true when the application answered 200. */
  #refetch(timeoutMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      // Without a path in the target (the original's form), what Prometheus last scraped.
      const outgoing = this.#request('GET', {}, this.#lastScrapePath ?? '/', timeoutMs, (upstream) => {
        const status = upstream.statusCode ?? 502;
        const collector = status === 200 ? new BodyCollector(this.#options.maxCachedBytes) : undefined;
        upstream.on('data', (chunk: Buffer) => collector?.add(chunk));
        upstream.once('end', () => {
          if (!collector) {
            this.#log.warn({ status }, 'final metrics fetch failed; keeping the last good metrics');
            resolve(false);
            return;
          }
          this.#keep(collector, upstream.headers['content-type']);
          this.#log.info({ bytes: collector.bytes }, 'final metrics fetched');
          resolve(true);
        });
        upstream.once('error', reject);
      });
      outgoing.once('error', reject);
      outgoing.end();
    });
  }

  #keep(collector: BodyCollector, contentType: string | undefined): void {
    const kept = collector.finish(contentType, performance.now());
    if (kept) {
      this.#cache = kept;
      return;
    }
    // An older body would be a step back in time after the app exits: drop it too.
    this.#cache = undefined;
    const fields = { bytes: collector.bytes, maxCachedBytes: this.#options.maxCachedBytes };
    if (!this.#warnedOversize) {
      this.#warnedOversize = true;
      this.#log.warn(
        fields,
        'metrics body larger than --max-cached-body: streamed but not kept for after the application exits',
      );
    } else {
      this.#log.debug(fields, 'metrics body not kept: over --max-cached-body');
    }
  }

  /**
   * The path asked of the application. A target with a path (ours: `--target=http://127.0.0.1:8080/metrics`)
   * is asked that path for every request, with the request's query when it has none. A target
   * without one (the original's `sidecar http://127.0.0.1:8080`, as its webhook injects it) is
   * asked the path that was requested, as the original's reverse proxy does.
   */
  #upstreamPath(url: URL, pathAndQuery: string): string {
    const query = pathAndQuery.indexOf('?');
    if (url.pathname === '/' && !url.search) return pathAndQuery;
    return `${url.pathname}${url.search || (query === -1 ? '' : pathAndQuery.slice(query))}`;
  }

  /** A request to the target with one deadline for the whole exchange, body included. */
  #request(
    method: string,
    headers: OutgoingHttpHeaders,
    pathAndQuery: string,
    timeoutMs: number,
    onResponse: (upstream: IncomingMessage) => void,
  ): ClientRequest {
    const url = new URL(this.#options.target);
    const send = url.protocol === 'https:' ? httpsRequest : request;
    const outgoing = send(url, {
      method,
      path: this.#upstreamPath(url, pathAndQuery),
      // Ask for an uncompressed body, so the copy we keep can be served to any scraper.
      headers: { ...headers, 'accept-encoding': 'identity' },
      agent: this.#agent,
    });
    const limitMs = Math.max(1, Math.floor(timeoutMs));
    const timer = setTimeout(() => outgoing.destroy(new TargetTimeoutError(limitMs)), timerMs(limitMs));
    outgoing.once('close', () => clearTimeout(timer));
    outgoing.once('response', (upstream) => {
      upstream.once('close', () => clearTimeout(timer));
      onResponse(upstream);
    });
    return outgoing;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET';
    const isScrape = method === 'GET';
    const pathAndQuery = requestPath(req.url ?? '/');
    if (isScrape) this.#lastScrapePath = pathAndQuery;
    let answered = false;
    let outgoing: ClientRequest;
    try {
      outgoing = this.#request(
        method,
        forwardableHeaders(req.headers),
        pathAndQuery,
        this.#options.targetTimeoutMs,
        (upstream) => {
          answered = true;
          this.#relay(res, upstream, isScrape);
        },
      );
    } catch (error) {
      // Node refuses to send what it parsed (a path or header it will not write): a bad request,
      // never an exception out of this callback.
      const body = `the request cannot be forwarded to the application: ${(error as Error).message}\n`;
      res.writeHead(400, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
      return;
    }
    outgoing.once('error', (error) => {
      if (answered) {
        // Already answered in full (a bad status turned into a 502): nothing left to cut.
        if (res.writableEnded) return;
        // The body broke off midway: the client must not take a truncated body for a whole one.
        this.#log.warn({ err: error.message }, 'the application broke off its answer');
        res.destroy(error);
        return;
      }
      this.#failed(res, error, isScrape);
    });
    req.once('error', () => outgoing.destroy());
    res.once('close', () => {
      if (!res.writableFinished) outgoing.destroy();
    });
    if (method === 'GET' || method === 'HEAD') outgoing.end();
    else req.pipe(outgoing);
  }

  #relay(res: ServerResponse, upstream: IncomingMessage, isScrape: boolean): void {
    const status = upstream.statusCode ?? 502;
    // The parser takes any three digits; writeHead throws outside 100-999, out of this callback.
    if (status < 100 || status > 599) {
      upstream.destroy();
      const digits = String(status).padStart(3, '0');
      this.#failed(res, new Error(`answered with status ${digits}, which is not an HTTP status`), isScrape);
      return;
    }
    // Once terminating, an application that is going away answers from the cache.
    if (this.terminating && isScrape && status !== 200 && this.#cache) {
      upstream.resume();
      this.#serveCache(res);
      return;
    }
    const collector =
      isScrape && status === 200 && !this.#collecting
        ? new BodyCollector(this.#options.maxCachedBytes)
        : undefined;
    if (collector) {
      this.#collecting = true;
      upstream.on('data', (chunk: Buffer) => collector.add(chunk));
    }
    if (isScrape) this.#countScrape(res, status === 200);
    res.writeHead(status, forwardableHeaders(upstream.headers));
    pipeline(upstream, res)
      .then(
        () => {
          if (collector) this.#keep(collector, upstream.headers['content-type']);
        },
        (error: Error) => {
          this.#log.warn({ err: error.message }, 'metrics response not completed');
        },
      )
      .finally(() => {
        if (collector) this.#collecting = false;
      });
  }

  #failed(res: ServerResponse, error: Error, isScrape: boolean): void {
    if (this.terminating && isScrape && this.#cache) {
      this.#serveCache(res);
      return;
    }
    const status = this.terminating ? 503 : 502;
    this.#log.warn(
      { target: this.#options.target.href, err: error.message },
      'the application did not answer',
    );
    if (isScrape) this.#countScrape(res, false);
    // After SIGTERM, with the application gone and nothing kept, no later scrape can get a body:
    // waiting on would only hold the pod for the rest of its grace period.
    if (this.terminating && isScrape) this.#onScrape?.('nothing-to-serve');
    const body = `the application's metrics at ${this.#options.target.href} did not answer: ${error.message}\n`;
    res.writeHead(status, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }

  #serveCache(res: ServerResponse): void {
    const cache = this.#cache!;
    this.#countScrape(res, true);
    res.writeHead(200, {
      ...(cache.contentType ? { 'content-type': cache.contentType } : {}),
      'content-length': cache.bytes,
    });
    for (const chunk of cache.chunks) res.write(chunk);
    res.end();
  }

  /** A GET answered: it is the last scrape; after SIGTERM, a body served ends the wait. */
  #countScrape(res: ServerResponse, gotBody: boolean): void {
    res.once('finish', () => {
      this.#lastScrapeAt = performance.now();
      if (this.terminating && gotBody) {
        this.#scrapedSinceSignal = true;
        this.#onScrape?.('scraped-after-signal');
      }
    });
  }
}
