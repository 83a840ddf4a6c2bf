// The purge broadcaster: one request in, the same request to every pod behind a headless
// Service (looked up per request), one JSON summary out. The original endpoint-broadcaster's
// API and answers, with a per-pod timeout, bounded concurrency and only PURGE fanned out.
import { promises as dns } from 'node:dns';
import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http';
import { formatAddress, Lifecycle, type ListenAddress, type Logger, listen } from '@seahorse/runtime';
import { Counter, createRegistry, Histogram, type Registry, serveMetrics } from '@seahorse/runtime/metrics';
import type { BroadcasterOptions } from './options.ts';

/** Turns a Service name into the addresses of its pods; rejects when the name does not resolve. */
export type Resolve = (name: string) => Promise<string[]>;

export interface PodResult {
  pod: string;
  status: number;
  success: boolean;
  error?: string;
}

export interface BroadcastResponse {
  total: number;
  success: number;
  failed: number;
  results: PodResult[];
}

export interface Broadcaster {
  server: Server;
  registry: Registry;
  address: ListenAddress;
  lifecycle: Lifecycle;
  close(): Promise<void>;
}

/**
 * The system resolver (getaddrinfo, as Go's LookupHost uses), or, with `servers`, those DNS
 * servers asked for A and AAAA records.
 */
export function systemResolver(servers: string[], timeoutMs: number): Resolve {
  if (servers.length === 0) {
    return async (name) => (await dns.lookup(name, { all: true, verbatim: true })).map((a) => a.address);
  }
  const resolver = new dns.Resolver({ timeout: Math.max(1, timeoutMs), tries: 2 });
  resolver.setServers(servers);
  return async (name) => {
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
    if (v4.status === 'rejected' && v6.status === 'rejected') throw v4.reason;
    return [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
  };
}

// RFC 9110 §7.6.1: never forwarded, plus whatever Connection names.
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  // Node answered the client's 100-continue itself; the pods get the whole body at once.
  'expect',
]);

function forwardHeaders(
  req: IncomingMessage,
  host: string,
  bodyLength: number,
): Record<string, string | string[]> {
  const named = new Set(
    String(req.headers.connection ?? '')
      .split(',')
      .map((token) => token.trim().toLowerCase())
      .filter(Boolean),
  );
  const headers: Record<string, string | string[]> = {};
  const incoming: IncomingHttpHeaders = req.headers;
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || hopByHop.has(name) || named.has(name)) continue;
    headers[name] = value;
  }
  const client = req.socket.remoteAddress;
  if (client) {
    const prior = headers['x-forwarded-for'];
    headers['x-forwarded-for'] = prior ? `${[prior].flat().join(', ')}, ${client}` : client;
  }
  headers.host = host;
  headers['content-length'] = String(bodyLength);
  return headers;
}

/** Go's json.Encoder output: HTML-safe escapes and a trailing newline. */
function goJson(value: unknown): string {
  return `${JSON.stringify(value)
    .replaceAll('<', '\\u003c')
    .replaceAll('>', '\\u003e')
    .replaceAll('&', '\\u0026')
    .replaceAll('\u2028', '\\u2028')
    .replaceAll('\u2029', '\\u2029')}\n`;
}

function send(
  res: ServerResponse,
  status: number,
  body: string,
  type: string,
  extra: Record<string, string> = {},
) {
  const bytes = Buffer.from(body);
  res.writeHead(status, { 'content-type': type, 'content-length': bytes.length, ...extra });
  res.end(bytes);
}

function sendError(res: ServerResponse, status: number, message: string, extra: Record<string, string> = {}) {
  send(res, status, goJson({ error: message }), 'application/json', extra);
}

type BodyResult = { body: Buffer } | { tooLarge: true } | { failed: Error };

function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  return new Promise((resolve) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      resolve({ tooLarge: true });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (result: BodyResult) => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) settle({ tooLarge: true });
      else chunks.push(chunk);
    });
    req.on('end', () => settle({ body: Buffer.concat(chunks) }));
    req.on('error', (error) => settle({ failed: error }));
    req.on('close', () => settle({ failed: new Error('the client closed the connection') }));
  });
}

/** Runs `work` over `items` with at most `limit` in flight; results keep the items' order. */
async function mapBounded<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export async function startBroadcaster(
  options: BroadcasterOptions,
  logger: Logger,
  resolve: Resolve = systemResolver(options.dnsServers, options.podTimeoutMs),
  beforeListen?: (lifecycle: Lifecycle) => void,
): Promise<Broadcaster> {
  const lifecycle = new Lifecycle({
    logger,
    lameduckMs: options.lameduckMs,
    terminationGracePeriodMs: options.terminationGracePeriodMs,
  });
  const registry = createRegistry();
  const broadcasts = new Counter({
    name: 'embedding_gateway_broadcasts_total',
    help: 'Requests fanned out, by result: complete (every pod succeeded), partial, refused (nothing sent)',
    labelNames: ['result'],
    registers: [registry],
  });
  const podRequests = new Counter({
    name: 'embedding_gateway_broadcast_pod_requests_total',
    help: 'Requests sent to pods, by outcome: success (status < 400), status (400 and up), error (no answer)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'embedding_gateway_broadcast_duration_seconds',
    help: 'Time from the lookup to the last pod answer',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const agent = new Agent({
    keepAlive: true,
    maxSockets: options.concurrency,
    maxFreeSockets: options.concurrency,
  });
  const methods = new Set(options.methods);
  const allow = options.methods.join(', ');

  const sendToPod = (
    pod: string,
    req: IncomingMessage,
    path: string,
    body: Buffer,
    cancelled: AbortSignal,
  ): Promise<PodResult> =>
    new Promise((settle) => {
      const signal = AbortSignal.any([cancelled, AbortSignal.timeout(options.podTimeoutMs)]);
      const fail = (error: unknown) => {
        const reason = signal.aborted
          ? cancelled.aborted
            ? 'the client closed the connection'
            : `no answer within ${options.podTimeoutMs} ms (--pod-timeout)`
          : error instanceof Error
            ? error.message
            : String(error);
        settle({ pod, status: 0, success: false, error: reason });
      };
      const attempt = (retry: boolean) => {
        let answered = false;
        const outgoing = request(
          {
            host: pod,
            port: options.targetPort,
            method: req.method,
            path,
            headers: forwardHeaders(req, options.targetService, body.length),
            agent,
            signal,
          },
          (response) => {
            answered = true;
            const status = response.statusCode ?? 0;
            response.on('error', fail);
            // The answer counts once it is read to the end, as Go's ReverseProxy copies it.
            response.on('end', () => settle({ pod, status, success: status > 0 && status < 400 }));
            response.resume();
          },
        );
        outgoing.on('error', (error) => {
          // A kept-alive connection the pod closed meanwhile (an idle timeout, a restart) fails
          // before any answer: a PURGE is idempotent, so it goes once more on a new connection.
          if (!retry && !answered && outgoing.reusedSocket && !signal.aborted) attempt(true);
          else fail(error);
        });
        outgoing.end(body);
      };
      attempt(false);
    });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? '';
    const path = req.url ?? '/';
    const bare = path.split('?', 1)[0];
    if ((method === 'GET' || method === 'HEAD') && (bare === '/healthz' || bare === '/readyz')) {
      const ok = bare === '/healthz' || lifecycle.ready;
      send(res, ok ? 200 : 503, ok ? 'OK' : 'Service Unavailable', 'text/plain; charset=utf-8');
      return;
    }
    if (method === 'GET' && bare === '/metrics' && !methods.has('GET')) {
      serveMetrics(registry, res);
      return;
    }
    if (!methods.has(method)) {
      broadcasts.inc({ result: 'refused' });
      sendError(res, 405, `${method} is not broadcast; send ${allow}`, { allow });
      return;
    }
    if (!path.startsWith('/')) {
      sendError(res, 400, 'the request target must be a path (origin-form)');
      return;
    }
    const read = await readBody(req, options.maxBodyBytes);
    if ('tooLarge' in read) {
      sendError(res, 413, `the body is larger than ${options.maxBodyBytes} bytes (--max-body-size)`, {
        connection: 'close',
      });
      return;
    }
    if ('failed' in read) {
      if (!res.destroyed) sendError(res, 500, 'failed to read request body');
      return;
    }
    let pods: string[];
    let timer: NodeJS.Timeout | undefined;
    try {
      // getaddrinfo has no timeout of its own: a silent resolver must not hold the request.
      pods = await Promise.race([
        resolve(options.targetService),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${options.podTimeoutMs} ms`)),
            options.podTimeoutMs,
          );
        }),
      ]);
    } catch (error) {
      broadcasts.inc({ result: 'refused' });
      logger.warn({ service: options.targetService, err: error }, 'service discovery failed');
      sendError(res, 502, 'service discovery failed');
      return;
    } finally {
      clearTimeout(timer);
    }
    // One PURGE per pod, however often an answer names it.
    pods = [...new Set(pods)];
    if (pods.length === 0) {
      broadcasts.inc({ result: 'refused' });
      sendError(res, 502, 'no pods found for service');
      return;
    }
    const gone = new AbortController();
    res.once('close', () => gone.abort());
    const started = Date.now();
    const results = await mapBounded(pods, options.concurrency, (pod) =>
      sendToPod(pod, req, path, read.body, gone.signal),
    );
    const success = results.filter((result) => result.success).length;
    duration.observe((Date.now() - started) / 1000);
    broadcasts.inc({ result: success === results.length ? 'complete' : 'partial' });
    for (const result of results) {
      podRequests.inc({ outcome: result.success ? 'success' : result.status > 0 ? 'status' : 'error' });
    }
    const summary: BroadcastResponse = {
      total: results.length,
      success,
      failed: results.length - success,
      results,
    };
    logger.info(
      { method, path: bare, pods: results.length, success, failed: summary.failed, ms: Date.now() - started },
      'broadcast',
    );
    if (!res.destroyed) send(res, 200, goJson(summary), 'application/json');
  };

  const server = createServer({ keepAlive: options.keepAlive }, (req, res) => {
    if (!options.keepAlive) res.shouldKeepAlive = false;
    handle(req, res).catch((error: unknown) => {
      logger.error({ err: error }, 'broadcast failed');
      if (!res.headersSent) sendError(res, 500, 'internal error');
      else res.destroy();
    });
  });
  lifecycle.track(server);
  lifecycle.onClose(() => agent.destroy());
  beforeListen?.(lifecycle);
  const address = await listen(server, { host: options.host, port: options.port }, '--address (ADDRESS)');
  lifecycle.setReady(true);
  logger.info(
    {
      address: formatAddress(address),
      targetService: options.targetService,
      targetPort: options.targetPort,
      methods: options.methods,
      concurrency: options.concurrency,
      podTimeoutMs: options.podTimeoutMs,
    },
    'purge broadcaster listening',
  );
  return { server, registry, address, lifecycle, close: () => lifecycle.shutdown('close') };
}
