// Wires the webhook: the HTTPS listener for POST /mutate and, with the semaphore, the sidecars'
// POST /semaphore/lease (HTTP/1.1, or HTTP/2 as well with --enable-http2), the certificate
// reloader, the optional Redis semaphore, and the probe and metrics listeners, all under one
// lifecycle.
import {
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http';
import { createSecureServer as createHttp2SecureServer } from 'node:http2';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Server as NetServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { formatAddress, Lifecycle, type ListenAddress, type Logger, listen } from '@seahorse/runtime';
import { createRegistry, metricsListener, type Registry } from '@seahorse/runtime/metrics';
import { BadAdmissionRequest, parseAdmissionReview, reviewResponse } from './admission.ts';
import { CertificateReloader } from './certificate.ts';
import {
  answerLease,
  authenticate,
  type LeaseAnswer,
  LeaseRateLimiter,
  LeaseRequestError,
  leasePath,
  maxLeaseBodyBytes,
  parseLeaseRequest,
} from './lease-endpoint.ts';
import { SlotLeaseService } from './lease-service.ts';
import { LeaseTokens } from './lease-token.ts';
import { type AdmissionOutcome, WebhookMetrics } from './metrics.ts';
import { PodMutator } from './mutator.ts';
import type { ClientAuthentication, WebhookOptions } from './options.ts';
import { PodEvidence } from './pod-evidence.ts';
import { RedisNodes } from './redis-nodes.ts';
import { RedisSemaphore } from './semaphore.ts';

export interface RunningWebhook {
  readonly lifecycle: Lifecycle;
  readonly registry: Registry;
  readonly certificates: CertificateReloader;
  readonly addresses: { webhook: ListenAddress; metrics?: ListenAddress; probe?: ListenAddress };
  close(): Promise<void>;
}

/** What the handler needs of a request or response, from node:http and node:http2 alike. */
type WebhookRequest = Readable & {
  socket: unknown;
  method?: string;
  url?: string;
  headers: IncomingHttpHeaders;
  httpVersionMajor: number;
};
type WebhookResponse = {
  writeHead(status: number, headers?: OutgoingHttpHeaders): unknown;
  end(body: string): unknown;
};

// Kubernetes' StatusReason for each status we answer with, so the API server shows our message.
const statusReasons: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  408: 'Timeout',
  413: 'RequestEntityTooLarge',
  415: 'UnsupportedMediaType',
  500: 'InternalError',
  503: 'ServiceUnavailable',
};

class HttpFailure extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: OutgoingHttpHeaders;
  /** The request body was not read to its end: on HTTP/1.1 the connection cannot be reused. */
  readonly unreadBody: boolean;
  constructor(
    status: number,
    code: string,
    message: string,
    headers: OutgoingHttpHeaders = {},
    unreadBody = false,
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
    this.unreadBody = unreadBody;
  }
}

/**
 * Request bodies held in memory at once, across all requests. Anything in the cluster can reach
 * the webhook's port, and each body may be up to 3 MiB: sixty clients holding one open each
 * would take 180 MiB of a 256Mi container. The API server's reviews are a few KiB each.
 */
export class BodyBudget {
  readonly maxBytes: number;
  #used = 0;
  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }
  take(bytes: number): boolean {
    if (this.#used + bytes > this.maxBytes) return false;
    this.#used += bytes;
    return true;
  }
  give(bytes: number): void {
    this.#used -= bytes;
  }
}

function readBody(
  req: WebhookRequest,
  limits: { maxBytes: number; budget: BodyBudget; timeoutMs: number; what?: 'review' | 'lease' },
): Promise<string> {
  const { maxBytes, budget, timeoutMs } = limits;
  const lease = limits.what === 'lease';
  const what = lease ? 'the lease request' : 'the AdmissionReview';
  const tooLarge = () =>
    new HttpFailure(
      413,
      'BODY_TOO_LARGE',
      lease
        ? `the lease request is larger than ${maxBytes} bytes; a lease request is a small JSON object (slot, version, action)`
        : `the AdmissionReview is larger than ${maxBytes} bytes; no Pod is that large, so this is not an admission request`,
      {},
      true,
    );
  const busy = () =>
    new HttpFailure(
      503,
      'TOO_MANY_BODIES',
      `more than ${budget.maxBytes} bytes of request bodies are being received at once; retry`,
      { 'retry-after': '1' },
      true,
    );
  const declared = Number(req.headers['content-length']);
  if (declared > maxBytes) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (error?: HttpFailure | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.off('data', onData);
      budget.give(size);
      if (error) {
        req.resume();
        reject(error);
      } else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const onData = (chunk: Buffer) => {
      if (size + chunk.length > maxBytes) return settle(tooLarge());
      if (!budget.take(chunk.length)) return settle(busy());
      size += chunk.length;
      chunks.push(chunk);
    };
    // The API server sends a review at once; a body still arriving after this is not one.
    const timer = setTimeout(
      () =>
        settle(
          new HttpFailure(
            408,
            'BODY_TIMEOUT',
            `${what} body did not arrive within ${timeoutMs} ms`,
            {},
            true,
          ),
        ),
      timeoutMs,
    );
    req.on('data', onData);
    req.once('end', () => settle());
    req.once('error', (error) => settle(error));
    req.once('close', () => settle(new Error('the client went away before sending the whole body')));
  });
}

/**
 * The webhook entry for namespaces not labelled for the semaphore calls this path: pods there
 * get the sidecar as anywhere, but a max-concurrent pod is denied (the semaphore is a cluster
 * admin's opt-in per namespace).
 */
export const semaphoreNotEnabledPath = '/mutate/semaphore-not-enabled';

/** mTLS on /mutate: the client's certificate chains to --client-ca-file and carries an allowed name. */
function checkClient(socket: TLSSocket, auth: ClientAuthentication): void {
  if (!socket.authorized) {
    const reason = socket.authorizationError ? ` (${String(socket.authorizationError)})` : '';
    throw new HttpFailure(
      401,
      'CLIENT_CERTIFICATE_REQUIRED',
      `the webhook takes only clients with a certificate signed by its --client-ca-file${reason}; configure the API server's AdmissionConfiguration kubeConfigFile with that client certificate`,
      {},
      true,
    );
  }
  if (auth.names.length === 0) return;
  const peer = socket.getPeerCertificate();
  const names = [
    ...(typeof peer.subject?.CN === 'string' ? [peer.subject.CN] : []),
    ...(peer.subjectaltname ?? '')
      .split(', ')
      .filter((entry) => entry.startsWith('DNS:'))
      .map((entry) => entry.slice(4)),
  ];
  if (!names.some((name) => auth.names.includes(name))) {
    throw new HttpFailure(
      403,
      'CLIENT_CERTIFICATE_NOT_ALLOWED',
      `the client certificate (${names.join(', ') || 'no name'}) is not one of --client-cert-name ${auth.names.join(', ')}`,
      {},
      true,
    );
  }
}

export async function startWebhook(
  options: WebhookOptions,
  log: Logger,
  /** Called with the lifecycle before anything listens (the CLI installs signal handlers). */
  onLifecycle?: (lifecycle: Lifecycle) => void,
): Promise<RunningWebhook> {
  const lifecycle = new Lifecycle({
    logger: log,
    lameduckMs: options.lameduckMs,
    terminationGracePeriodMs: options.lameduckMs + 10_000,
  });
  onLifecycle?.(lifecycle);
  const registry = createRegistry();
  const metrics = new WebhookMetrics(registry);
  const certificates = new CertificateReloader(options.certDir, {
    pollIntervalMs: options.certPollIntervalMs,
    log,
    onReload: (ok) => metrics.certificateReloaded(ok),
  });
  const keyPair = certificates.load();

  let semaphore: RedisSemaphore | undefined;
  let leases: { service: SlotLeaseService; tokens: LeaseTokens; limiter: LeaseRateLimiter } | undefined;
  let closeSemaphore: (() => void) | undefined;
  if (options.semaphore) {
    const nodes = new RedisNodes(options.semaphore.redis, {
      commandTimeoutMs: options.semaphore.commandTimeoutMs,
      username: options.semaphore.username,
      password: options.semaphore.password,
      log,
    });
    lifecycle.onClose(() => nodes.close());
    closeSemaphore = () => nodes.close();
    const connected = await nodes.waitConnected(2000);
    const entry = { redis: nodes.names, connected, quorum: nodes.quorum };
    if (connected < nodes.quorum)
      log.warn(entry, 'too few Redis nodes reachable: limited pods are denied until a majority is');
    else log.info(entry, 'semaphore on');
    semaphore = new RedisSemaphore(nodes, { lock: options.semaphore.lock });
    const counted = semaphore;
    metrics.leaseOverruns(() => counted.overruns(), registry);
    leases = {
      service: new SlotLeaseService(semaphore, { leaseMs: options.semaphore.leaseMs }),
      tokens: new LeaseTokens(options.semaphore.lease.tokenKeys),
      limiter: new LeaseRateLimiter(),
    };
  }
  const mutator = new PodMutator(
    {
      injection: options.injection,
      semaphore:
        options.semaphore && semaphore
          ? {
              ...options.semaphore,
              client: semaphore,
              evidence: options.semaphore.apiServer && new PodEvidence(options.semaphore.apiServer),
              lease: {
                tokens: leases!.tokens,
                url: options.semaphore.lease.url,
                caFile: options.semaphore.lease.caFile,
              },
            }
          : undefined,
    },
    log,
    metrics,
  );

  const budget = new BodyBudget(options.maxBodyBytesInFlight);
  const send = (
    req: WebhookRequest,
    res: WebhookResponse,
    status: number,
    body: unknown,
    headers: OutgoingHttpHeaders = {},
    unreadBody = false,
  ) => {
    const text = JSON.stringify(body);
    // HTTP/2 forbids connection headers; on HTTP/1.1 an unread body means the connection is done.
    const close = unreadBody && req.httpVersionMajor === 1 ? { connection: 'close' } : {};
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...close,
      ...headers,
    });
    res.end(text);
  };

  /** POST /semaphore/lease: a sidecar renews, holds or releases its own slot with its token. */
  const handleLease = async (req: WebhookRequest, res: WebhookResponse) => {
    let answer: LeaseAnswer | undefined;
    let action = 'invalid';
    let bodyRead = false;
    try {
      if (!leases) {
        throw new LeaseRequestError(
          404,
          'SEMAPHORE_OFF',
          `this webhook runs without --redis: there is no semaphore, so no slot leases at ${leasePath}`,
        );
      }
      if (req.method !== 'POST') {
        throw new LeaseRequestError(405, 'METHOD_NOT_ALLOWED', `${leasePath} takes POST, not ${req.method}`, {
          allow: 'POST',
        });
      }
      const type = req.headers['content-type'] ?? '';
      if (!/^application\/json\b/i.test(type)) {
        throw new LeaseRequestError(
          415,
          'UNSUPPORTED_MEDIA_TYPE',
          `${leasePath} takes application/json, got ${type ? `'${type}'` : 'no content-type'}`,
        );
      }
      if (Number(req.headers['content-length']) > maxLeaseBodyBytes) {
        throw new LeaseRequestError(
          413,
          'BODY_TOO_LARGE',
          `the lease request is larger than ${maxLeaseBodyBytes} bytes; a lease request is a small JSON object (slot, version, action)`,
        );
      }
      const grant = authenticate(req.headers, leases.tokens);
      leases.limiter.take(grant.slot);
      const text = await readBody(req, {
        maxBytes: maxLeaseBodyBytes,
        budget,
        timeoutMs: options.bodyTimeoutMs,
        what: 'lease',
      });
      bodyRead = true;
      const request = parseLeaseRequest(text);
      action = request.action;
      answer = await answerLease(grant, request, leases.service);
      if (answer.status === 200 && request.action !== 'renew') {
        log.info(
          { workload: grant.workload, slot: grant.slot, action, state: answer.body.state },
          'slot lease',
        );
      } else if (answer.status !== 200) {
        log.info(
          { workload: grant.workload, slot: grant.slot, action, state: answer.body.state },
          'slot lease refused',
        );
      }
      send(req, res, answer.status, answer.body, answer.headers);
    } catch (error) {
      const failure =
        error instanceof LeaseRequestError
          ? new HttpFailure(error.status, error.code, error.message, error.headers, !bodyRead)
          : error instanceof HttpFailure
            ? error
            : new HttpFailure(
                500,
                'INTERNAL',
                `the webhook failed: ${(error as Error).message}`,
                {},
                !bodyRead,
              );
      answer = { status: failure.status, action, body: {} };
      if (failure.status >= 500 && failure.status !== 503) log.error({ err: error }, 'lease request failed');
      else
        log.info(
          { status: failure.status, code: failure.code, err: failure.message },
          'lease request refused',
        );
      send(
        req,
        res,
        failure.status,
        { code: failure.code, message: failure.message },
        failure.headers,
        failure.unreadBody,
      );
    } finally {
      metrics.leaseAnswered(action, answer?.status ?? 500);
    }
  };

  const handle = async (req: WebhookRequest, res: WebhookResponse) => {
    const started = performance.now();
    let outcome: AdmissionOutcome = 'error';
    let status = 200;
    try {
      if (options.clientAuth) checkClient(req.socket as TLSSocket, options.clientAuth);
      const path = (req.url ?? '/').split('?', 1)[0];
      if (path !== '/mutate' && path !== semaphoreNotEnabledPath)
        throw new HttpFailure(404, 'NOT_FOUND', `nothing at ${path}: the webhook serves POST /mutate`);
      if (req.method !== 'POST') {
        throw new HttpFailure(405, 'METHOD_NOT_ALLOWED', `/mutate takes POST, not ${req.method}`, {
          allow: 'POST',
        });
      }
      const type = req.headers['content-type'] ?? '';
      if (!/^application\/json\b/i.test(type)) {
        throw new HttpFailure(
          415,
          'UNSUPPORTED_MEDIA_TYPE',
          `/mutate takes application/json, got ${type ? `'${type}'` : 'no content-type'}`,
        );
      }
      const review = parseAdmissionReview(
        await readBody(req, { maxBytes: options.maxBodyBytes, budget, timeoutMs: options.bodyTimeoutMs }),
      );
      const decision = await mutator.review(review, { semaphoreEnabled: path === '/mutate' });
      outcome = decision.outcome;
      send(req, res, 200, reviewResponse(decision.response));
    } catch (error) {
      const failure =
        error instanceof HttpFailure
          ? error
          : error instanceof BadAdmissionRequest
            ? new HttpFailure(error.status, error.code, error.message)
            : new HttpFailure(500, 'INTERNAL', `the webhook failed: ${(error as Error).message}`);
      status = failure.status;
      if (status === 500) log.error({ err: error }, 'admission failed');
      else log.info({ status, code: failure.code, err: failure.message }, 'bad admission request');
      send(
        req,
        res,
        status,
        {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Failure',
          message: failure.message,
          reason: statusReasons[status] ?? 'Unknown',
          details: { causes: [{ reason: failure.code, message: failure.message }] },
          code: status,
        },
        failure.headers,
        failure.unreadBody,
      );
    } finally {
      metrics.answered(status, outcome, (performance.now() - started) / 1000);
    }
  };
  const onRequest = (req: WebhookRequest, res: WebhookResponse) => {
    // Sidecars call the lease path with their token, not the API server's client certificate.
    if ((req.url ?? '/').split('?', 1)[0] === leasePath) void handleLease(req, res);
    else void handle(req, res);
  };

  const tlsOptions = { ...keyPair, minVersion: 'TLSv1.2' as const };
  // With --client-ca-file the handshake asks for a certificate but lets a client without one
  // through, so it gets a 401 Status that says what is missing instead of a bare TLS alert.
  const clientCa = options.clientAuth?.ca;
  const webhookTls = clientCa
    ? { ...tlsOptions, ca: clientCa, requestCert: true, rejectUnauthorized: false }
    : tlsOptions;
  const server = options.enableHttp2
    ? createHttp2SecureServer({ ...webhookTls, allowHTTP1: true }, onRequest)
    : createHttpsServer(webhookTls, onRequest);
  server.on('tlsClientError', (error) => log.debug({ err: error.message }, 'TLS handshake failed'));
  // A rotated serving certificate keeps the client CA: the new context replaces the whole one.
  certificates.watch(
    clientCa ? { setSecureContext: (pair) => server.setSecureContext({ ...pair, ca: clientCa }) } : server,
  );
  lifecycle.onClose(() => certificates.close());
  lifecycle.track(server as NetServer);

  const servers: NetServer[] = [server as NetServer];
  let addresses: RunningWebhook['addresses'];
  try {
    addresses = { webhook: await listen(server as NetServer, options.listen, '--host/--port') };
    if (options.probeListen) {
      const probeServer = createHttpServer((req, res) => {
        if (lifecycle.handleProbe(req, res)) return;
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found: probes are /healthz and /readyz\n');
      });
      servers.push(probeServer);
      lifecycle.track(probeServer);
      addresses.probe = await listen(probeServer, options.probeListen, '--probe-address');
    }
    if (options.metricsListen) {
      // --metrics-secure (the original's flag): HTTPS with the webhook's own certificate.
      const metricsServer = options.metricsSecure
        ? createHttpsServer(tlsOptions, metricsListener(registry))
        : createHttpServer(metricsListener(registry));
      if (options.metricsSecure) certificates.watch(metricsServer as HttpsServer);
      servers.push(metricsServer);
      lifecycle.track(metricsServer);
      addresses.metrics = await listen(metricsServer, options.metricsListen, '--metrics-address');
    }
  } catch (error) {
    // Nothing may outlive a failed start: listeners, the watcher, Redis connections.
    for (const opened of servers) opened.close();
    certificates.close();
    closeSemaphore?.();
    throw error;
  }
  lifecycle.setReady(true);
  log.info(
    {
      webhook: `https://${formatAddress(addresses.webhook)}/mutate`,
      http2: options.enableHttp2,
      probes: addresses.probe ? `http://${formatAddress(addresses.probe)}` : null,
      metrics: addresses.metrics
        ? `${options.metricsSecure ? 'https' : 'http'}://${formatAddress(addresses.metrics)}/metrics`
        : null,
      semaphore: semaphore !== undefined,
    },
    'webhook serving',
  );
  return { lifecycle, registry, certificates, addresses, close: () => lifecycle.shutdown('close') };
}
