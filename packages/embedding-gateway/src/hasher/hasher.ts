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
import {
  bufferedBodyMode,
  decodeProcessingRequest,
  encodeProcessingResponse,
  type ProcessingRequest,
  type ProcessingResponse,
  processMethodPath,
} from './ext-proc.ts';
import { ProtobufError } from './protobuf.ts';

export interface HasherOptions {
  host: string;
  port: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Bodies announced larger than this are not buffered nor hashed (Varnish would pass them). */
  maxBodyBytes: number;
  lameduckMs: number;
  terminationGracePeriodMs: number;
}

export const bodyHashHeader = 'x-body-hash';
const healthCheckPath = '/grpc.health.v1.Health/Check';

/** gRPC status codes used here. */
const grpcStatus = { ok: 0, invalidArgument: 3, resourceExhausted: 8, unimplemented: 12, internal: 13 };

/** The processing of one HTTP request's messages: a pure state machine, tested alone. */
export class BodyHashProcessor {
  readonly #maxBodyBytes: number;
  #hash: Hash | undefined;
  #size = 0;
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
        if (!request.endOfStream && declared > 0 && declared <= this.#maxBodyBytes) {
          response.requestBodyMode = bufferedBodyMode;
          this.#hash = createHash('sha256');
          this.#size = 0;
        }
        return response;
      }
      case 'requestBody': {
        // Envoy configured to send bodies without headers: hash them all, as the original does.
        if (!this.#headersSeen) {
          this.#headersSeen = true;
          this.#hash = createHash('sha256');
        }
        if (!this.#hash) return { phase: 'requestBody' };
        this.#size += request.body.length;
        if (this.#size > this.#maxBodyBytes) {
          // More than was announced: no hash rather than the hash of a prefix.
          this.#hash = undefined;
          return { phase: 'requestBody' };
        }
        this.#hash.update(request.body);
        if (!request.endOfStream) return { phase: 'requestBody' };
        const digest = this.#hash.digest('hex');
        this.#hash = undefined;
        return { phase: 'requestBody', setHeaders: [{ key: bodyHashHeader, value: digest }] };
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

/** Splits a stream's DATA into gRPC messages, refusing compressed or oversized ones. */
class MessageReader {
  readonly #maxMessageBytes: number;
  #buffer: Buffer = Buffer.alloc(0);

  constructor(maxMessageBytes: number) {
    this.#maxMessageBytes = maxMessageBytes;
  }

  push(chunk: Buffer): Buffer[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const messages: Buffer[] = [];
    while (this.#buffer.length >= 5) {
      if (this.#buffer[0] !== 0) {
        throw new GrpcStreamError(grpcStatus.unimplemented, 'compressed messages are not accepted');
      }
      const length = this.#buffer.readUInt32BE(1);
      if (length > this.#maxMessageBytes) {
        throw new GrpcStreamError(
          grpcStatus.resourceExhausted,
          `message of ${length} bytes is larger than ${this.#maxMessageBytes}`,
        );
      }
      if (this.#buffer.length < 5 + length) break;
      messages.push(this.#buffer.subarray(5, 5 + length));
      this.#buffer = this.#buffer.subarray(5 + length);
    }
    return messages;
  }

  get pending(): boolean {
    return this.#buffer.length > 0;
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
  const sessions = new Set<Http2Session>();

  const process = (stream: ServerHttp2Stream) => {
    const reader = new MessageReader(maxMessageBytes);
    const processor = new BodyHashProcessor(options.maxBodyBytes);
    let finished = false;
    const finish = (status: number, message = '') => {
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
  };

  const server = createServer({ maxSessionMemory: 64 });
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
