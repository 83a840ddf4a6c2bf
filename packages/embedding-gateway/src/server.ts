// Wires the parts behind one node:http listener: POST /v1/embeddings, /healthz, /readyz,
// /metrics, with the original's answers (FastAPI's JSON errors, 503/500 as plain text).
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { formatAddress, Lifecycle, type ListenAddress, type Logger, listen } from '@seahorse/runtime';
import { Gauge, serveMetrics } from '@seahorse/runtime/metrics';
import { EmbeddingsService } from './embeddings.ts';
import { ClientGoneError, GatewayError, RequestRejectedError, UpstreamStatusError } from './errors.ts';
import { pythonStatusPhrases } from './http-status.ts';
import { MemoryCache } from './memory-cache.ts';
import { createMetrics, type GatewayMetrics } from './metrics.ts';
import type { GatewayOptions } from './options.ts';
import { fastApiJson, readRequestBody } from './request-body.ts';
import { FilesystemStore } from './store/filesystem.ts';
import { decodeObject, type ObjectStore } from './store/store.ts';
import { currentSpan, Tracer } from './tracing.ts';
import { forwardedHeaders, UpstreamClient } from './upstream.ts';

export interface Gateway {
  server: Server;
  address: ListenAddress;
  lifecycle: Lifecycle;
  store: ObjectStore;
  metrics: GatewayMetrics;
  /** Graceful stop: unready, drain, close the store and the upstream connections. */
  close(): Promise<void>;
}

/** The S3 SDK (some 25 MB and a quarter second to load) is loaded only when the S3 store is used. */
export async function createStore(options: GatewayOptions['store']): Promise<ObjectStore> {
  if (options.kind !== 's3') return new FilesystemStore(options.directory);
  const { S3Store } = await import('./store/s3.ts');
  return new S3Store(options);
}

function sendJson(
  res: ServerResponse,
  status: number,
  json: string | Buffer,
  extra: Record<string, string> = {},
) {
  const body = typeof json === 'string' ? Buffer.from(json) : json;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length, ...extra });
  res.end(body);
}

function sendText(res: ServerResponse, status: number, text: string) {
  const body = Buffer.from(text);
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length });
  res.end(body);
}

/** Whether Accept-Encoding allows gzip (`gzip` or `*` with a q-value above 0). */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  for (const part of header.split(',')) {
    const [coding = '', ...params] = part.split(';').map((p) => p.trim().toLowerCase());
    if (coding !== 'gzip' && coding !== 'x-gzip' && coding !== '*') continue;
    const q = params.find((p) => p.startsWith('q='));
    if (!q || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

/** Set by the edge's body hasher; Varnish caches the answer under it. */
const bodyHashHeader = 'x-body-hash';

/**
 * A request that names its body's SHA-256 must name the right one. Varnish keys its cache on
 * x-body-hash as it reaches it: a client that got past the hasher with its own value could
 * otherwise store its body's answer under another body's key. The mismatch is answered 400,
 * which Varnish never caches.
 */
function checkBodyHash(header: string | string[] | undefined, raw: Buffer): void {
  if (header === undefined) return;
  const claimed = Array.isArray(header) ? header.join(', ') : header;
  if (/^[0-9a-f]{64}$/.test(claimed) && createHash('sha256').update(raw).digest('hex') === claimed) return;
  throw new RequestRejectedError(
    400,
    'x-body-hash is not the SHA-256 of the request body: leave the header to the edge, which sets it',
  );
}

/** Reads the body up to `limit` bytes; past it, answers 413 and closes the connection. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (limit > 0 && Number.isFinite(declared) && declared > limit) {
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (limit > 0 && size > limit) {
        done = true;
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks, size));
    });
    req.once('error', (error) => {
      if (done) return;
      done = true;
      reject(error);
    });
    req.once('close', () => {
      if (done) return;
      done = true;
      reject(new ClientGoneError());
    });
  });
}

export async function startGateway(
  options: GatewayOptions,
  logger: Logger,
  beforeListen?: (lifecycle: Lifecycle) => void,
): Promise<Gateway> {
  const metrics = createMetrics();
  const store = await createStore(options.store);
  const upstream = new UpstreamClient(options.upstream);
  const memory = options.memoryCacheBytes > 0 ? new MemoryCache(options.memoryCacheBytes) : undefined;
  const service = new EmbeddingsService({ store, upstream, memory, metrics, logger }, options.embeddings);
  const tracer = new Tracer(options.tracing, logger);
  new Gauge({
    name: 'embedding_gateway_coalesced_waiters',
    help: 'Clients waiting on a shared upstream call (--coalesce-misses)',
    registers: [metrics.registry],
    collect() {
      this.set(service.coalescedWaiters);
    },
  });
  const lifecycle = new Lifecycle({
    logger,
    lameduckMs: options.lameduckMs,
    terminationGracePeriodMs: options.terminationGracePeriodMs,
  });

  const embeddings = async (req: IncomingMessage, res: ServerResponse) => {
    const traceparent = req.headers.traceparent;
    const span = tracer.startServer(
      'POST /v1/embeddings',
      typeof traceparent === 'string' ? traceparent : undefined,
    );
    if (!span) return embeddingsRequest(req, res);
    span.set('http.request.method', 'POST').set('url.path', '/v1/embeddings');
    res.once('close', () => {
      span.set('http.response.status_code', res.statusCode);
      if (res.statusCode >= 500) span.fail(`answered ${res.statusCode}`);
      span.end();
    });
    return currentSpan.run(span, () => embeddingsRequest(req, res));
  };

  const embeddingsRequest = async (req: IncomingMessage, res: ServerResponse) => {
    const controller = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    const started = performance.now();
    try {
      const raw = await readBody(req, options.maxBodyBytes);
      if (raw === undefined) {
        res.setHeader('connection', 'close');
        sendJson(
          res,
          413,
          fastApiJson({
            detail: `The request body is larger than ${options.maxBodyBytes} bytes (--max-body-size); send fewer or shorter inputs per request.`,
          }),
        );
        req.resume();
        metrics.requests.inc({ outcome: 'error' });
        return;
      }
      checkBodyHash(req.headers[bodyHashHeader], raw);
      const body = readRequestBody(req.headers['content-type'], raw);
      const gzip = options.gzipResponses && acceptsGzip(req.headers['accept-encoding']);
      const answer = await service.handle(body, forwardedHeaders(req.rawHeaders), controller.signal, !gzip);
      metrics.requests.inc({ outcome: answer.outcome });
      currentSpan.getStore()?.set('embedding_gateway.outcome', answer.outcome);
      // An answer that was not stored (a 200 carrying an `error`) is not for a cache in front
      // either: Varnish's VCL passes on no-store.
      const extra: Record<string, string> = answer.gzipped ? {} : { 'cache-control': 'no-store' };
      if (options.gzipResponses) extra.vary = 'Accept-Encoding';
      if (answer.gzipped && gzip) {
        sendJson(res, 200, answer.gzipped, { ...extra, 'content-encoding': 'gzip' });
      } else {
        const json = answer.json ?? (await decodeObject('answer', answer.gzipped!));
        sendJson(res, 200, json, extra);
      }
      logger.debug({ outcome: answer.outcome, ms: Math.round(performance.now() - started) }, 'embeddings');
    } catch (error) {
      metrics.requests.inc({ outcome: 'error' });
      answerError(res, error, logger);
    }
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
    const method = req.method ?? 'GET';
    const isGet = method === 'GET' || method === 'HEAD';
    if (path === '/v1/embeddings') {
      if (method === 'POST') {
        embeddings(req, res).catch((error: unknown) => answerError(res, error, logger));
        return;
      }
      sendJson(res, 405, '{"detail":"Method Not Allowed"}', { allow: 'POST' });
      return;
    }
    if (path === '/healthz' || path === '/readyz' || path === '/metrics') {
      if (!isGet) {
        sendJson(res, 405, '{"detail":"Method Not Allowed"}', { allow: 'GET' });
        return;
      }
      if (path === '/healthz') sendJson(res, 200, '"OK"');
      else if (path === '/metrics') serveMetrics(metrics.registry, res);
      else ready(res);
      return;
    }
    const trimmed = path.replace(/\/+$/, '');
    if (trimmed !== path && ['/v1/embeddings', '/healthz', '/readyz', '/metrics'].includes(trimmed)) {
      // Starlette's redirect_slashes: a known path with a trailing slash is a 307 to the path.
      const query = (req.url ?? '').slice(path.length);
      res.writeHead(307, {
        location: `http://${req.headers.host ?? 'localhost'}${trimmed}${query}`,
        'content-length': 0,
      });
      res.end();
      return;
    }
    sendJson(res, 404, '{"detail":"Not Found"}');
  });
  // uvicorn's timeout_keep_alive: how long an idle keep-alive connection is kept.
  server.keepAliveTimeout = Math.min(options.idleTimeoutMs, 2 ** 31 - 1);

  const ready = (res: ServerResponse) => {
    if (!lifecycle.ready) {
      sendText(res, 503, lifecycle.shuttingDown ? 'shutting down' : 'starting');
      return;
    }
    const timeout = AbortSignal.timeout(5000);
    Promise.race([
      store.check(),
      new Promise<never>((_, reject) =>
        timeout.addEventListener('abort', () => reject(new Error('the store did not answer within 5 s'))),
      ),
    ]).then(
      () => sendJson(res, 200, '"OK"'),
      (error: unknown) => {
        logger.warn({ err: error, store: store.kind }, 'not ready: the store cannot serve');
        sendText(res, 503, `the ${store.kind} store cannot serve: ${(error as Error).message}`);
      },
    );
  };

  lifecycle.track(server);
  lifecycle.onClose(async () => {
    await tracer.flush();
    upstream.close();
    await store.close();
  });
  beforeListen?.(lifecycle);
  const address = await listen(server, { host: options.host, port: options.port }, '--port (PORT)');
  lifecycle.setReady(true);
  logger.info(
    {
      address: formatAddress(address),
      store: store.kind,
      upstream: upstream.url.origin,
      coalesceMisses: options.embeddings.coalesceMisses,
      perInputCache: options.embeddings.perInputCache,
      memoryCacheBytes: options.memoryCacheBytes,
    },
    'embedding gateway listening',
  );
  return { server, address, lifecycle, store, metrics, close: () => lifecycle.shutdown('close') };
}

/** The original's error contract. */
export function answerError(res: ServerResponse, error: unknown, logger: Logger): void {
  if (error instanceof ClientGoneError || res.destroyed) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (error instanceof RequestRejectedError) {
    sendJson(res, error.status, fastApiJson({ detail: error.detail }));
    return;
  }
  if (error instanceof UpstreamStatusError) {
    const phrase = pythonStatusPhrases.get(error.status);
    if (phrase !== undefined && error.status >= 200) {
      logger.warn({ status: error.status }, 'the upstream refused the request');
      if (error.status === 204 || error.status === 304) {
        res.writeHead(error.status);
        res.end();
      } else sendJson(res, error.status, fastApiJson({ detail: phrase }));
      return;
    }
    // HTTPException(status) fails for a status Python does not know; the original answers 500.
    logger.error({ status: error.status }, 'the upstream answered an unexpected status');
    sendText(res, 500, 'Internal Server Error');
    return;
  }
  if (error instanceof GatewayError && error.retryable) {
    logger.error({ err: error, code: error.code }, error.message);
    sendText(res, 503, 'Service Unavailable');
    return;
  }
  logger.error({ err: error, code: (error as { code?: string }).code }, (error as Error).message ?? 'error');
  sendText(res, 500, 'Internal Server Error');
}
