// The body hasher: an Envoy ext_proc v3 server over gRPC (HTTP/2 cleartext, the framing done
// here). For each request it strips a client-sent x-body-hash, asks Envoy for the buffered body
// when one is announced, and answers the end of the body with x-body-hash = hex SHA-256 of the
// raw bytes, as the original envoy-request-hasher does. Envoy runs the filter failure-open
// (failure_mode_allow), so an error here ends one stream and the request goes on unhashed.
import { createHash, type Hash } from 'node:crypto';
import {
  createServer,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import { formatAddress, Lifecycle, type ListenAddress, type Logger, listen } from '@seahorse/runtime';
import { ProtobufError } from '../protobuf.ts';
import {
  bufferedBodyMode,
  decodeProcessingRequest,
  encodeProcessingResponse,
  type ProcessingRequest,
  type ProcessingResponse,
  processMethodPath,
} from './ext-proc.ts';

export interface HasherOptions {
  host: string;
  port: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Bodies announced larger than this are not buffered nor hashed (Varnish would pass them). */
  maxBodyBytes: number;
  /** Bytes of unfinished gRPC messages held across all streams; a stream past it is refused. */
  maxBufferedBytes: number;
  /** How long a message may stay unfinished (Envoy sends each whole, at once). */
  messageTimeoutMs: number;
  lameduckMs: number;
  terminationGracePeriodMs: number;
}

export const bodyHashHeader = 'x-body-hash';
const healthCheckPath = '/grpc.health.v1.Health/Check';

/** gRPC status codes used here. */
const grpcStatus = {
  ok: 0,
  invalidArgument: 3,
  deadlineExceeded: 4,
  resourceExhausted: 8,
  unimplemented: 12,
  internal: 13,
};

/** Streams at once on one connection: Envoy opens another connection past it. */
const maxConcurrentStreams = 1024;

/** The processing of one HTTP request's messages: a pure state machine, tested alone. */
export class BodyHashProcessor {
  readonly #maxBodyBytes: number;
  #hash: Hash | undefined;
  #size = 0;
  /** The announced length; the limit when the body came without headers. */
  #declared = 0;
  #headersSeen = false;

  constructor(maxBodyBytes: number) {
    this.#maxBodyBytes = maxBodyBytes;
  }

  process(request: ProcessingRequest): ProcessingResponse | undefined {
    switch (request.phase) {
      case 'requestHeaders': {
        this.#headersSeen = true;
        const response: ProcessingResponse = { phase: 'requestHeaders', removeHeaders: [bodyHashHeader] };
        const length = request.headers.find((h) => h.key === 'content-length')?.value.trim() ?? '';
        const declared = /^\d{1,15}$/.test(length) ? Number(length) : 0;
        this.#hash = undefined;
        if (!request.endOfStream && declared > 0 && declared <= this.#maxBodyBytes) {
          response.requestBodyMode = bufferedBodyMode;
          this.#hash = createHash('sha256');
          this.#size = 0;
          this.#declared = declared;
        }
        return response;
      }
      case 'requestBody': {
        // Envoy configured to send bodies without headers: hash them all, as the original does.
        if (!this.#headersSeen) {
          this.#headersSeen = true;
          this.#hash = createHash('sha256');
          this.#declared = this.#maxBodyBytes;
        }
        if (!this.#hash) return { phase: 'requestBody' };
        this.#size += request.body.length;
        if (this.#size > this.#declared) {
          // More than was announced: no hash rather than the hash of a prefix.
          this.#hash = undefined;
          return { phase: 'requestBody' };
        }
        this.#hash.update(request.body);
        if (!request.endOfStream) return { phase: 'requestBody' };
        const hash = this.#hash;
        this.#hash = undefined;
        // Less than was announced (a body cut short): no hash either. Without headers the length
        // was never announced.
        if (this.#size !== this.#declared && this.#declared !== this.#maxBodyBytes) {
          return { phase: 'requestBody' };
        }
        return { phase: 'requestBody', setHeaders: [{ key: bodyHashHeader, value: hash.digest('hex') }] };
      }
      case 'none':
        return undefined;
      default:
        return { phase: request.phase };
    }
  }
}

/** A gRPC length-prefixed message: compressed flag, 4-byte big-endian length, payload. */
export function frame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

class GrpcStreamError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** The bytes of unfinished messages held across every stream, against --max-buffered. */
class BufferBudget {
  readonly limit: number;
  held = 0;
  constructor(limit: number) {
    this.limit = limit;
  }
}

/**
 * Splits a stream's DATA into gRPC messages, refusing compressed or oversized ones. Chunks are
 * kept as they come and joined once a message is whole: a 1 MB body arrives in some 64 HTTP/2
 * frames, and joining at every frame copied it 32 times over.
 */
class MessageReader {
  readonly #maxMessageBytes: number;
  readonly #budget: BufferBudget;
  #chunks: Buffer[] = [];
  #length = 0;

  constructor(maxMessageBytes: number, budget: BufferBudget) {
    this.#maxMessageBytes = maxMessageBytes;
    this.#budget = budget;
  }

  push(chunk: Buffer): Buffer[] {
    if (this.#budget.held + chunk.length > this.#budget.limit) {
      throw new GrpcStreamError(
        grpcStatus.resourceExhausted,
        `unfinished messages on all streams would pass ${this.#budget.limit} bytes (--max-buffered)`,
      );
    }
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    this.#budget.held += chunk.length;
    const messages: Buffer[] = [];
    while (this.#length >= 5) {
      const head = this.#chunks[0]!.length >= 5 ? this.#chunks[0]! : this.#join();
      if (head[0] !== 0) {
        throw new GrpcStreamError(grpcStatus.unimplemented, 'compressed messages are not accepted');
      }
      const length = head.readUInt32BE(1);
      if (length > this.#maxMessageBytes) {
        throw new GrpcStreamError(
          grpcStatus.resourceExhausted,
          `message of ${length} bytes is larger than ${this.#maxMessageBytes}`,
        );
      }
      if (this.#length < 5 + length) break;
      const all = this.#join();
      messages.push(all.subarray(5, 5 + length));
      this.#drop(5 + length, all);
    }
    return messages;
  }

  #join(): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks, this.#length)];
    return this.#chunks[0]!;
  }

  #drop(count: number, all: Buffer): void {
    this.#chunks = count < all.length ? [all.subarray(count)] : [];
    this.#length -= count;
    this.#budget.held -= count;
  }

  get pending(): boolean {
    return this.#length > 0;
  }

  /** Gives the unfinished bytes back to the budget (the stream is over). */
  release(): void {
    this.#budget.held -= this.#length;
    this.#chunks = [];
    this.#length = 0;
  }
}

export interface Hasher {
  server: Http2Server;
  address: ListenAddress;
  lifecycle: Lifecycle;
  close(): Promise<void>;
}

function trailersOnly(stream: ServerHttp2Stream, status: number, message: string): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc',
      'grpc-status': String(status),
      'grpc-message': encodeURIComponent(message),
    },
    { endStream: true },
  );
}

export async function startHasher(
  options: HasherOptions,
  logger: Logger,
  beforeListen?: (lifecycle: Lifecycle) => void,
): Promise<Hasher> {
  const lifecycle = new Lifecycle({
    logger,
    lameduckMs: options.lameduckMs,
    terminationGracePeriodMs: options.terminationGracePeriodMs,
  });
  // Room for the largest body hashed plus the message's own fields (headers, flags).
  const maxMessageBytes = options.maxBodyBytes + 1024 * 1024;
  const budget = new BufferBudget(options.maxBufferedBytes);
  const sessions = new Set<Http2Session>();

  const process = (stream: ServerHttp2Stream) => {
    const reader = new MessageReader(maxMessageBytes, budget);
    const processor = new BodyHashProcessor(options.maxBodyBytes);
    let finished = false;
    // Armed while a message is unfinished: a stream that sends half a message and waits holds
    // the budget no longer than this.
    let stalled: NodeJS.Timeout | undefined;
    const finish = (status: number, message = '') => {
      clearTimeout(stalled);
      reader.release();
      if (finished || stream.destroyed) return;
      finished = true;
      if (!stream.headersSent) {
        trailersOnly(stream, status, message);
        return;
      }
      stream.once('wantTrailers', () => {
        const trailers: Record<string, string> = { 'grpc-status': String(status) };
        if (message) trailers['grpc-message'] = encodeURIComponent(message);
        stream.sendTrailers(trailers);
      });
      stream.end();
    };
    stream.on('data', (chunk: Buffer) => {
      if (finished) return;
      try {
        for (const message of reader.push(chunk)) {
          const response = processor.process(decodeProcessingRequest(message));
          if (!response) continue;
          if (!stream.headersSent) {
            stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          }
          stream.write(frame(encodeProcessingResponse(response)));
        }
        clearTimeout(stalled);
        if (reader.pending) {
          stalled = setTimeout(() => {
            logger.warn({ ms: options.messageTimeoutMs }, 'ext_proc message left unfinished; stream ended');
            finish(
              grpcStatus.deadlineExceeded,
              `a message stayed unfinished for ${options.messageTimeoutMs} ms`,
            );
          }, options.messageTimeoutMs);
        }
      } catch (error) {
        const status =
          error instanceof GrpcStreamError
            ? error.status
            : error instanceof ProtobufError
              ? grpcStatus.invalidArgument
              : grpcStatus.internal;
        const message = error instanceof Error ? error.message : String(error);
        logger.warn({ status, err: message }, 'ext_proc stream refused; Envoy goes on without a hash');
        finish(status, message);
      }
    });
    stream.on('end', () => {
      if (reader.pending) finish(grpcStatus.invalidArgument, 'the stream ended inside a message');
      else finish(grpcStatus.ok);
    });
    // Reset by the peer, or the session gone: the unfinished bytes go back to the budget.
    stream.once('close', () => {
      clearTimeout(stalled);
      reader.release();
    });
  };

  const server = createServer({ maxSessionMemory: 64, settings: { maxConcurrentStreams } });
  server.on('session', (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', (error) => logger.debug({ err: error.message }, 'http2 session error'));
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', (error) => logger.debug({ err: error.message }, 'http2 stream error'));
    const path = headers[':path'];
    const type = String(headers['content-type'] ?? '');
    if (headers[':method'] !== 'POST' || !/^application\/grpc(\+proto)?(;|$)/.test(type)) {
      if (!stream.headersSent)
        stream.respond({ ':status': 415, 'content-type': 'text/plain' }, { endStream: false });
      stream.end('a gRPC server: POST application/grpc only\n');
      return;
    }
    if (path === processMethodPath) {
      process(stream);
      return;
    }
    if (path === healthCheckPath) {
      // grpc.health.v1 HealthCheckResponse: status = 1, SERVING (1) or NOT_SERVING (2).
      stream.resume();
      stream.on('end', () => {
        if (stream.destroyed) return;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(frame(Buffer.from([0x08, lifecycle.ready ? 1 : 2])));
      });
      return;
    }
    stream.resume();
    trailersOnly(stream, grpcStatus.unimplemented, `unknown method ${String(path)}`);
  });
  server.setTimeout(10 * 60_000, () => undefined);
  lifecycle.track(server);
  // GOAWAY: Envoy opens new streams elsewhere; the streams in flight finish.
  lifecycle.onDrain(() => {
    for (const session of sessions) session.close();
  });
  beforeListen?.(lifecycle);
  const address = await listen(server, { host: options.host, port: options.port }, '--address (ADDRESS)');
  lifecycle.setReady(true);
  logger.info(
    { address: formatAddress(address), maxBodyBytes: options.maxBodyBytes },
    'ext_proc body hasher listening',
  );
  return { server, address, lifecycle, close: () => lifecycle.shutdown('close') };
}
