// The OpenAI-compatible API behind the gateway: `POST {base}/embeddings` with the caller's own
// headers (its Authorization is the only credential), over keep-alive connections.
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';
import {
  ClientGoneError,
  UpstreamResponseError,
  UpstreamTimeoutError,
  UpstreamUnavailableError,
} from './errors.ts';

export interface UpstreamOptions {
  /** `OPENAI_BASE_URL`, e.g. `https://api.openai.com/v1`; requests go to `${baseUrl}/embeddings`. */
  baseUrl: string;
  /** Whole exchange, connect to last byte; the original's aiohttp default is 300 s. */
  timeoutMs: number;
  /** Largest answer read into memory, decompressed (0: no limit). */
  maxResponseBytes?: number;
  /**
   * HTTP_PROXY, HTTPS_PROXY and NO_PROXY (either case) are honoured from here, as the
   * original's aiohttp session with `trust_env=True` honours them from its environment.
   */
  proxyEnv?: NodeJS.ProcessEnv;
}

export interface UpstreamAnswer {
  status: number;
  contentType: string;
  /** Decoded (Content-Encoding undone) body; empty for statuses other than 200. */
  body: Buffer;
}

/** Hop-by-hop and framing headers never go on; `host` and `content-length` are ours to set. */
const notForwarded = new Set([
  'host',
  'content-length',
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
]);

/** The client's headers as the original passes them on: first value of each, lowercase names. */
export function forwardedHeaders(rawHeaders: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (notForwarded.has(name) || name in headers) continue;
    headers[name] = rawHeaders[i + 1]!;
  }
  return headers;
}

function decoderFor(encoding: string): NodeJS.ReadWriteStream | undefined {
  switch (encoding) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    case 'zstd':
      return 'createZstdDecompress' in zlib
        ? (zlib as unknown as { createZstdDecompress(): NodeJS.ReadWriteStream }).createZstdDecompress()
        : undefined;
    default:
      return undefined;
  }
}

export class UpstreamClient {
  readonly url: URL;
  /** `urlparse(base_url).netloc`, what the original sends as Host. */
  readonly hostHeader: string;
  readonly #options: UpstreamOptions;
  readonly #agent: HttpAgent;
  readonly #request: typeof httpRequest;

  constructor(options: UpstreamOptions) {
    this.#options = options;
    this.url = new URL(`${options.baseUrl}/embeddings`);
    this.hostHeader = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(options.baseUrl)?.[1] ?? this.url.host;
    const https = this.url.protocol === 'https:';
    const agentOptions = { keepAlive: true, maxSockets: 512, proxyEnv: options.proxyEnv ?? {} };
    this.#agent = https ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
    this.#request = https ? httpsRequest : httpRequest;
  }

  /**
   * Posts the body. An embeddings call has no side effect, so a call that failed on a reused
   * keep-alive connection before any byte of the answer came back is sent once more.
   */
  async post(body: string, headers: Record<string, string>, signal: AbortSignal): Promise<UpstreamAnswer> {
    const deadline = Date.now() + this.#options.timeoutMs;
    try {
      return await this.#attempt(body, headers, signal, deadline);
    } catch (error) {
      if ((error as { retryOnFreshConnection?: boolean }).retryOnFreshConnection && !signal.aborted) {
        return this.#attempt(body, headers, signal, deadline);
      }
      throw error;
    }
  }

  #attempt(
    body: string,
    clientHeaders: Record<string, string>,
    signal: AbortSignal,
    deadline: number,
  ): Promise<UpstreamAnswer> {
    return new Promise<UpstreamAnswer>((resolve, reject) => {
      if (signal.aborted) {
        reject(new ClientGoneError());
        return;
      }
      const payload = Buffer.from(body, 'utf8');
      const headers: Record<string, string> = {
        ...clientHeaders,
        host: this.hostHeader,
        'content-length': String(payload.length),
      };
      headers['content-type'] ??= 'application/json';
      let settled = false;
      let answered = false;
      // The decoder, when the answer is compressed: it is stopped with the request.
      let decoding: Readable | undefined;
      const finish = (error: Error | undefined, answer?: UpstreamAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (error) {
          req.destroy();
          decoding?.destroy();
          reject(error);
        } else resolve(answer!);
      };
      const onAbort = () => finish(new ClientGoneError());
      const timer = setTimeout(
        () => finish(new UpstreamTimeoutError(this.#options.timeoutMs)),
        Math.max(0, deadline - Date.now()),
      );
      signal.addEventListener('abort', onAbort, { once: true });

      const req = this.#request(this.url, { method: 'POST', headers, agent: this.#agent });
      req.on('error', (error: NodeJS.ErrnoException) => {
        const failure = new UpstreamUnavailableError(
          `the upstream ${this.url.origin} failed: ${error.code ?? error.message}`,
          { cause: error },
        );
        if (!answered && req.reusedSocket) {
          (failure as unknown as { retryOnFreshConnection: boolean }).retryOnFreshConnection = true;
        }
        finish(failure);
      });
      req.on('response', (res: IncomingMessage) => {
        answered = true;
        const status = res.statusCode ?? 0;
        const contentType = String(res.headers['content-type'] ?? '');
        if (status !== 200) {
          // Read and drop the body so the connection can serve the next call.
          res.resume();
          res.once('end', () => finish(undefined, { status, contentType, body: Buffer.alloc(0) }));
          res.once('error', (error) => finish(new UpstreamUnavailableError(error.message, { cause: error })));
          return;
        }
        const encoding = String(res.headers['content-encoding'] ?? 'identity')
          .trim()
          .toLowerCase();
        let stream: Readable = res;
        if (encoding !== 'identity' && encoding !== '') {
          const decoder = decoderFor(encoding);
          if (!decoder) {
            res.resume();
            finish(
              new UpstreamResponseError(`the upstream answered in an unknown Content-Encoding '${encoding}'`),
            );
            return;
          }
          res.once('error', (error) =>
            finish(
              new UpstreamUnavailableError(`the upstream's answer broke off: ${error.message}`, {
                cause: error,
              }),
            ),
          );
          stream = res.pipe(decoder) as unknown as Readable;
          decoding = stream;
        }
        const limit = this.#options.maxResponseBytes || Number.POSITIVE_INFINITY;
        const chunks: Buffer[] = [];
        let size = 0;
        stream.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > limit) {
            finish(
              new UpstreamResponseError(
                `the upstream's answer is larger than ${limit} bytes (--max-response-size)`,
              ),
            );
            return;
          }
          chunks.push(chunk);
        });
        stream.once('end', () => {
          if (!res.complete) {
            finish(new UpstreamUnavailableError("the upstream's answer broke off"));
            return;
          }
          finish(undefined, { status, contentType, body: Buffer.concat(chunks, size) });
        });
        stream.once('error', (error) => {
          const failure =
            stream === res
              ? new UpstreamUnavailableError(`the upstream's answer broke off: ${error.message}`, {
                  cause: error,
                })
              : new UpstreamResponseError(`the upstream's ${encoding} body is corrupt: ${error.message}`, {
                  cause: error,
                });
          finish(failure);
        });
        res.once('aborted', () => finish(new UpstreamUnavailableError("the upstream's answer broke off")));
      });
      req.end(payload);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}
