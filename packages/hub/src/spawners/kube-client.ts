// A small client of the Kubernetes API: JSON over HTTPS with node's https, authenticated as
// the pod's service account (in-cluster) or as a kubeconfig user. Non-2xx answers become typed
// errors carrying the apiserver's Status; watches stream newline-delimited events.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  errorForStatus,
  KubeConfigError,
  KubeConnectionError,
  KubeGoneError,
  KubeServerError,
  type KubeStatus,
} from './kube-errors.ts';

/** Where the API is and who we are to it. */
export interface KubeConnection {
  server: URL;
  /** PEM bundle that signs the apiserver's certificate. */
  ca?: Buffer;
  /** Client certificate and key (kubeconfig users). */
  cert?: Buffer;
  key?: Buffer;
  /** A bearer token, or a file re-read while it rotates (bound service-account tokens). */
  token?: string;
  tokenFile?: string;
  insecureSkipTlsVerify?: boolean;
  /** The namespace of the hub's own pod, or the kubeconfig context's. */
  namespace: string;
}

export const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * The connection of a pod: KUBERNETES_SERVICE_HOST/PORT, the service account's token and CA,
 * and POD_NAMESPACE (else the service account's namespace file).
 */
export function inClusterConnection(env: NodeJS.ProcessEnv, dir = serviceAccountDir): KubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT || '443';
  if (!host) throw new KubeConfigError('KUBERNETES_SERVICE_HOST is not set: the hub is not running in a pod');
  const read = (name: string) => {
    try {
      return readFileSync(join(dir, name));
    } catch (error) {
      throw new KubeConfigError(
        `cannot read the service account's ${name} in ${dir} (${(error as NodeJS.ErrnoException).code}): mount the service-account token (automountServiceAccountToken) in the hub's pod`,
      );
    }
  };
  const ca = read('ca.crt');
  read('token');
  let namespace = env.POD_NAMESPACE ?? '';
  if (!namespace) namespace = read('namespace').toString('utf8').trim();
  return {
    server: new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`),
    ca,
    tokenFile: join(dir, 'token'),
    namespace: namespace || 'default',
  };
}

/** The current (or named) context of a kubeconfig file: certificate, token or token file users. */
export function kubeconfigConnection(path: string, contextName?: string): KubeConnection {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new KubeConfigError(`cannot read kubeconfig ${path}: ${(error as NodeJS.ErrnoException).code}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (error) {
    throw new KubeConfigError(`kubeconfig ${path} is not YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  const root = record(doc, path);
  const named = (list: unknown, what: string, name: string): Record<string, unknown> => {
    const entry = (Array.isArray(list) ? list : []).find(
      (item) => typeof item === 'object' && item !== null && (item as { name?: unknown }).name === name,
    ) as Record<string, unknown> | undefined;
    if (!entry) throw new KubeConfigError(`kubeconfig ${path}: no ${what} named ${JSON.stringify(name)}`);
    return record(entry[what], `${path}: ${what} ${name}`);
  };
  const current = contextName ?? root['current-context'];
  if (typeof current !== 'string' || !current) {
    throw new KubeConfigError(
      `kubeconfig ${path} has no current-context; set one with kubectl config use-context`,
    );
  }
  const context = named(root.contexts, 'context', current);
  const cluster = named(root.clusters, 'cluster', String(context.cluster));
  const user = context.user === undefined ? {} : named(root.users, 'user', String(context.user));
  const base = dirname(path);
  const file = (value: unknown) => {
    const name = String(value);
    try {
      return readFileSync(isAbsolute(name) ? name : join(base, name));
    } catch (error) {
      throw new KubeConfigError(
        `kubeconfig ${path}: cannot read ${name}: ${(error as NodeJS.ErrnoException).code}`,
      );
    }
  };
  const pem = (data: unknown, fileName: unknown): Buffer | undefined => {
    if (typeof data === 'string') return Buffer.from(data, 'base64');
    if (typeof fileName === 'string') return file(fileName);
    return undefined;
  };
  if (user.exec !== undefined || user['auth-provider'] !== undefined) {
    throw new KubeConfigError(
      `kubeconfig ${path}: user ${String(context.user)} authenticates with an exec plugin or auth provider, which the hub does not run; use a token, a token file or a client certificate`,
    );
  }
  let server: URL;
  try {
    server = new URL(String(cluster.server));
  } catch {
    throw new KubeConfigError(
      `kubeconfig ${path}: cluster ${String(context.cluster)} has no valid server URL`,
    );
  }
  const connection: KubeConnection = {
    server,
    namespace: typeof context.namespace === 'string' && context.namespace ? context.namespace : 'default',
  };
  const ca = pem(cluster['certificate-authority-data'], cluster['certificate-authority']);
  if (ca) connection.ca = ca;
  const cert = pem(user['client-certificate-data'], user['client-certificate']);
  const key = pem(user['client-key-data'], user['client-key']);
  if (cert) connection.cert = cert;
  if (key) connection.key = key;
  if (typeof user.token === 'string') connection.token = user.token;
  if (typeof user.tokenFile === 'string') connection.tokenFile = user.tokenFile;
  if (cluster['insecure-skip-tls-verify'] === true) connection.insecureSkipTlsVerify = true;
  return connection;
}

/** In a pod, the service account; elsewhere $KUBECONFIG (first file) or ~/.kube/config. */
export function loadConnection(env: NodeJS.ProcessEnv): KubeConnection {
  if (env.KUBERNETES_SERVICE_HOST) return inClusterConnection(env);
  const path = env.KUBECONFIG?.split(':').find(Boolean) ?? join(homedir(), '.kube', 'config');
  const connection = kubeconfigConnection(path);
  if (env.POD_NAMESPACE) connection.namespace = env.POD_NAMESPACE;
  return connection;
}

function record(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new KubeConfigError(`${where}: expected a mapping`);
  }
  return value as Record<string, unknown>;
}

/** One line of a watch stream. */
export interface WatchEvent<T = KubeObject> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';
  object: T;
}

/** Any API object; the fields the hub reads are checked where it reads them. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    creationTimestamp?: string;
  };
  [key: string]: unknown;
}

export interface KubeList<T = KubeObject> {
  kind?: string;
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export interface KubeClientOptions {
  /** KubeSpawner.k8s_api_request_timeout: one request, head to end of body. */
  requestTimeoutMs?: number;
  /** How often a token file is read again (kubelet rotates bound tokens); a minute by default. */
  tokenRereadMs?: number;
  /**
   * KubeSpawner.k8s_api_request_retry_timeout: how long a request is retried (429 and 5xx
   * answers, honouring Retry-After; a request that got no answer, when it is a GET or DELETE).
   */
  retryTimeoutMs?: number;
  /** First wait between retries (doubles up to 5 s); 100 ms by default. */
  retryBackoffMs?: number;
}

/** Longest Retry-After honoured; a longer one is cut to this (the retry budget bounds the rest). */
const maxRetryAfterMs = 10_000;

type Query = Record<string, string | number | boolean | undefined>;

const maxBody = 64 * 1024 * 1024;
/** Requests in flight at once (watches included); more wait for a socket rather than flood the apiserver. */
const maxSockets = 64;
const maxWatchLine = 16 * 1024 * 1024;

export class KubeClient {
  readonly connection: KubeConnection;
  readonly #timeoutMs: number;
  readonly #tokenRereadMs: number;
  readonly #retryTimeoutMs: number;
  readonly #retryBackoffMs: number;
  readonly #agent: http.Agent;
  /** Watches hold their socket for minutes: their own agent, so they never take a request's place. */
  readonly #watchAgent: http.Agent;
  #token: string | undefined;
  #tokenReadAt = 0;

  constructor(connection: KubeConnection, options: KubeClientOptions = {}) {
    this.connection = connection;
    this.#timeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#tokenRereadMs = options.tokenRereadMs ?? 60_000;
    this.#retryTimeoutMs = options.retryTimeoutMs ?? 30_000;
    this.#retryBackoffMs = options.retryBackoffMs ?? 100;
    const tls = connection.server.protocol === 'https:';
    const agent = (limit: number, keepAlive: boolean) =>
      tls
        ? new https.Agent({
            keepAlive,
            maxSockets: limit,
            ...(connection.ca ? { ca: connection.ca } : {}),
            ...(connection.cert ? { cert: connection.cert } : {}),
            ...(connection.key ? { key: connection.key } : {}),
            rejectUnauthorized: connection.insecureSkipTlsVerify !== true,
          })
        : new http.Agent({ keepAlive, maxSockets: limit });
    this.#agent = agent(maxSockets, true);
    this.#watchAgent = agent(Number.POSITIVE_INFINITY, false);
  }

  get namespace(): string {
    return this.connection.namespace;
  }

  /** Closes idle keep-alive sockets. */
  close(): void {
    this.#agent.destroy();
    this.#watchAgent.destroy();
  }

  #bearer(): string | undefined {
    const { tokenFile } = this.connection;
    if (tokenFile && (this.#token === undefined || Date.now() - this.#tokenReadAt >= this.#tokenRereadMs)) {
      try {
        this.#token = readFileSync(tokenFile, 'utf8').trim();
        this.#tokenReadAt = Date.now();
      } catch (error) {
        // Keep the last token: a rotation that replaces the file is not atomic for every writer.
        if (this.#token === undefined) {
          throw new KubeConfigError(
            `cannot read the token file ${tokenFile}: ${(error as NodeJS.ErrnoException).code}`,
          );
        }
      }
    }
    return this.#token ?? this.connection.token;
  }

  #url(path: string, query: Query = {}): URL {
    const url = new URL(path, this.connection.server);
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    return url;
  }

  #request(
    method: string,
    url: URL,
    body: string | undefined,
    signal?: AbortSignal,
    agent: http.Agent = this.#agent,
  ): http.ClientRequest {
    const headers: Record<string, string> = { accept: 'application/json' };
    const token = this.#bearer();
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    const module = url.protocol === 'https:' ? https : http;
    return module.request(url, { method, headers, agent, ...(signal ? { signal } : {}) });
  }

  /** One JSON request; resolves with the parsed body of a 2xx answer, else rejects with a typed error. */
  async call<T>(method: string, path: string, options: { query?: Query; body?: unknown } = {}): Promise<T> {
    const giveUpAt = Date.now() + this.#retryTimeoutMs;
    let backoff = this.#retryBackoffMs;
    let reconnected = false;
    for (;;) {
      try {
        return await this.#callOnce<T>(method, path, options);
      } catch (error) {
        // A reused keep-alive socket the server had closed: one immediate retry of a GET.
        if (method === 'GET' && error instanceof KubeConnectionError && error.beforeAnswer && !reconnected) {
          reconnected = true;
          continue;
        }
        const wait = this.#retryWait(method, error, backoff);
        if (wait === undefined || Date.now() + wait > giveUpAt) throw error;
        await new Promise((resolve) => setTimeout(resolve, wait));
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  /**
   * How long to wait before trying a failed request again, or undefined when it must not be:
   * a 429 (the apiserver refused it before doing anything) always; a 5xx or no answer at all
   * only for GET and DELETE, which do the same twice — a POST that may have been applied is not
   * sent again.
   */
  #retryWait(method: string, error: unknown, backoff: number): number | undefined {
    const idempotent = method === 'GET' || method === 'DELETE';
    if (error instanceof KubeServerError) {
      if (error.status !== 429 && !(idempotent && error.status >= 500)) return undefined;
      const asked = error.retryAfterSeconds;
      // Never sooner than the backoff: a Retry-After of 0 (or a fraction) must not become a
      // tight loop hammering an apiserver that is already refusing requests.
      return asked === undefined ? backoff : Math.max(backoff, Math.min(asked * 1000, maxRetryAfterMs));
    }
    if (error instanceof KubeConnectionError && idempotent) return backoff;
    return undefined;
  }

  #callOnce<T>(method: string, path: string, options: { query?: Query; body?: unknown }): Promise<T> {
    const url = this.#url(path, options.query);
    const what = `${method} ${url.pathname}`;
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    return new Promise<T>((resolve, reject) => {
      const request = this.#request(method, url, body, AbortSignal.timeout(this.#timeoutMs));
      let answered = false;
      request.on('error', (error) => {
        const timedOut = error.name === 'AbortError' || (error as NodeJS.ErrnoException).code === 'ABORT_ERR';
        const failure = new KubeConnectionError(
          timedOut
            ? `${what}: no answer from the apiserver within ${this.#timeoutMs / 1000} s (KubeSpawner.k8s_api_request_timeout)`
            : `${what}: cannot reach the apiserver at ${this.connection.server.origin}: ${error.message}`,
          { cause: error },
        );
        failure.beforeAnswer = !answered && !timedOut;
        reject(failure);
      });
      request.on('response', (response) => {
        answered = true;
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBody) {
            response.destroy();
            reject(new KubeConnectionError(`${what}: the answer is larger than ${maxBody} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        response.on('error', (error) =>
          reject(
            new KubeConnectionError(`${what}: the answer broke off: ${error.message}`, { cause: error }),
          ),
        );
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : {};
          } catch {
            parsed = undefined;
          }
          if (status >= 200 && status < 300) {
            if (typeof parsed !== 'object' || parsed === null) {
              reject(
                new KubeConnectionError(`${what}: answered ${status} with a body that is not a JSON object`),
              );
            } else resolve(parsed as T);
            return;
          }
          const kubeStatus = asStatus(parsed, status, text);
          const error = errorForStatus(what, status, kubeStatus);
          if (error instanceof KubeServerError) {
            error.retryAfterSeconds = retryAfter(response.headers['retry-after'], kubeStatus);
          }
          reject(error);
        });
      });
      request.end(body);
    });
  }

  get<T = KubeObject>(path: string, query?: Query): Promise<T> {
    return this.call<T>('GET', path, query ? { query } : {});
  }

  create<T = KubeObject>(path: string, body: unknown): Promise<T> {
    return this.call<T>('POST', path, { body });
  }

  /** DELETE; `preconditions.uid` makes it delete only that object (a 409 if the name now has another). */
  delete(
    path: string,
    options: { gracePeriodSeconds?: number; preconditions?: { uid: string } } = {},
  ): Promise<KubeObject> {
    const body: Record<string, unknown> = { kind: 'DeleteOptions', apiVersion: 'v1' };
    if (options.gracePeriodSeconds !== undefined) body.gracePeriodSeconds = options.gracePeriodSeconds;
    if (options.preconditions) body.preconditions = options.preconditions;
    return this.call('DELETE', path, { body });
  }

  /**
   * Streams `?watch=true` events from `resourceVersion` to `onEvent` until the server ends the
   * stream (resolves), the signal aborts (resolves), or the stream fails (rejects; a 410 Gone, as
   * a status or as an ERROR event, rejects with KubeGoneError so the caller lists again).
   */
  watch<T = KubeObject>(
    path: string,
    query: Query,
    onEvent: (event: WatchEvent<T>) => void,
    signal: AbortSignal,
    idleTimeoutMs: number,
  ): Promise<void> {
    const url = this.#url(path, { ...query, watch: true, allowWatchBookmarks: true });
    const what = `watch ${url.pathname}`;
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        resolve();
        return;
      }
      let settled = false;
      const finish = (error?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(idle);
        signal.removeEventListener('abort', onAbort);
        request.destroy();
        if (error) reject(error);
        else resolve();
      };
      const onAbort = () => finish();
      signal.addEventListener('abort', onAbort);
      const request = this.#request('GET', url, undefined, undefined, this.#watchAgent);
      let idle = setTimeout(() => onIdle(), idleTimeoutMs);
      const onIdle = () =>
        finish(
          new KubeConnectionError(`${what}: nothing arrived for ${idleTimeoutMs / 1000} s; watching again`),
        );
      const touch = () => {
        clearTimeout(idle);
        idle = setTimeout(onIdle, idleTimeoutMs);
      };
      request.on('error', (error) => {
        if (!settled) {
          finish(new KubeConnectionError(`${what}: ${error.message}`, { cause: error }));
        }
      });
      request.on('response', (response) => {
        touch();
        const status = response.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.length < 64 && chunks.push(chunk));
          response.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = undefined;
            }
            finish(errorForStatus(what, status, asStatus(parsed, status, text)));
          });
          response.on('error', (error) => finish(new KubeConnectionError(`${what}: ${error.message}`)));
          return;
        }
        let buffered = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          touch();
          buffered += chunk;
          let newline = buffered.indexOf('\n');
          while (newline !== -1 && !settled) {
            const line = buffered.slice(0, newline).trim();
            buffered = buffered.slice(newline + 1);
            if (line) {
              const problem = this.#dispatch(line, what, onEvent);
              if (problem) {
                finish(problem);
                return;
              }
            }
            newline = buffered.indexOf('\n');
          }
          if (buffered.length > maxWatchLine) {
            finish(new KubeConnectionError(`${what}: an event longer than ${maxWatchLine} bytes`));
          }
        });
        response.on('end', () => {
          const rest = buffered.trim();
          if (rest && !settled) {
            const problem = this.#dispatch(rest, what, onEvent);
            if (problem) {
              finish(problem);
              return;
            }
          }
          finish();
        });
        response.on('error', (error) =>
          finish(
            new KubeConnectionError(`${what}: the stream broke off: ${error.message}`, { cause: error }),
          ),
        );
      });
      request.end();
    });
  }

  /** Parses and delivers one event; returns the error that ends the watch, if any. */
  #dispatch<T>(line: string, what: string, onEvent: (event: WatchEvent<T>) => void): Error | undefined {
    let event: { type?: unknown; object?: unknown };
    try {
      event = JSON.parse(line) as typeof event;
    } catch {
      return new KubeConnectionError(`${what}: a line of the stream is not JSON`);
    }
    if (
      typeof event !== 'object' ||
      event === null ||
      typeof event.object !== 'object' ||
      event.object === null
    ) {
      return new KubeConnectionError(`${what}: an event without an object`);
    }
    if (event.type === 'ERROR') {
      const status = asStatus(event.object, 500, '');
      if (status.code === 410) return new KubeGoneError(what, status);
      return errorForStatus(what, status.code ?? 500, status);
    }
    if (
      event.type !== 'ADDED' &&
      event.type !== 'MODIFIED' &&
      event.type !== 'DELETED' &&
      event.type !== 'BOOKMARK'
    ) {
      return new KubeConnectionError(`${what}: an event of unknown type ${JSON.stringify(event.type)}`);
    }
    try {
      onEvent({ type: event.type, object: event.object as T });
    } catch (error) {
      // A listener that could not handle this object must not throw into the socket's handler
      // (that would crash the hub): the watch ends, and its owner lists again.
      return new KubeConnectionError(`${what}: an event could not be applied: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return undefined;
  }
}

/** Retry-After in seconds (a number; an HTTP date is not used), else the Status's retryAfterSeconds. */
function retryAfter(header: string | undefined, status: KubeStatus): number | undefined {
  const fromHeader =
    header !== undefined && /^\d{1,6}$/.test(header.trim()) ? Number(header.trim()) : undefined;
  if (fromHeader !== undefined) return fromHeader;
  const fromStatus = status.details?.retryAfterSeconds;
  return typeof fromStatus === 'number' && Number.isFinite(fromStatus) && fromStatus >= 0
    ? fromStatus
    : undefined;
}

function asStatus(parsed: unknown, httpStatus: number, text: string): KubeStatus {
  if (typeof parsed === 'object' && parsed !== null && (parsed as KubeStatus).kind === 'Status') {
    return parsed as KubeStatus;
  }
  // A proxy or load balancer in front of the apiserver answers in its own words.
  return { kind: 'Status', code: httpStatus, message: text.slice(0, 200).trim() || undefined };
}

/** `/api/v1/namespaces/<ns>/<resource>[/<name>]`, names percent-encoded. */
export function corePath(namespace: string, resource: string, name?: string): string {
  const base = `/api/v1/namespaces/${encodeURIComponent(namespace)}/${resource}`;
  return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
}
