// Traces as the original's OpenTelemetry instrumentation gives them: a server span that
// continues the caller's W3C `traceparent`, child spans for the store and the upstream call,
// and the upstream told our span as its parent. Exported in batches when an OTLP endpoint is
// configured — over gRPC as the original's exporter does, or OTLP/HTTP with protobuf or JSON;
// without one, nothing is recorded and the caller's `traceparent` goes to the upstream unchanged.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect as http2Connect } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { type Logger, UsageError } from '@seahorse/runtime';
import { MessageWriter } from './protobuf.ts';

export interface SpanContext {
  traceId: string;
  spanId: string;
  /** Two hex digits; bit 0 is "sampled". */
  flags: string;
}

const traceparentPattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;

/** A valid W3C `traceparent`, or undefined (a bad one starts a new trace, as the spec says). */
export function parseTraceparent(header: string | undefined): SpanContext | undefined {
  const match = traceparentPattern.exec(header?.trim() ?? '');
  if (!match) return undefined;
  const [, version, traceId, spanId, flags] = match;
  if (version === 'ff' || (version === '00' && header!.trim().length !== 55)) return undefined;
  if (/^0+$/.test(traceId!) || /^0+$/.test(spanId!)) return undefined;
  return { traceId: traceId!, spanId: spanId!, flags: flags! };
}

export function formatTraceparent(context: SpanContext): string {
  return `00-${context.traceId}-${context.spanId}-${context.flags}`;
}

export const spanKinds = { internal: 1, server: 2, client: 3 } as const;
type Attribute = string | number | boolean;

export class Span {
  readonly context: SpanContext;
  readonly parentSpanId: string | undefined;
  readonly name: string;
  readonly kind: number;
  readonly attributes = new Map<string, Attribute>();
  readonly #startNs: bigint;
  readonly #tracer: Tracer;
  #error: string | undefined;
  #ended = false;

  constructor(tracer: Tracer, name: string, kind: number, context: SpanContext, parentSpanId?: string) {
    this.#tracer = tracer;
    this.name = name;
    this.kind = kind;
    this.context = context;
    this.parentSpanId = parentSpanId;
    this.#startNs = nowNs();
  }

  get recording(): boolean {
    return (Number.parseInt(this.context.flags, 16) & 1) === 1;
  }

  set(key: string, value: Attribute | undefined): this {
    if (value !== undefined) this.attributes.set(key, value);
    return this;
  }

  fail(error: unknown): this {
    this.#error = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return this;
  }

  child(name: string, kind: number = spanKinds.internal): Span {
    return this.#tracer.start(name, kind, this.context);
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.recording) this.#tracer.record(this, this.#startNs, nowNs(), this.#error);
  }
}

const epochOffsetNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
const nowNs = () => process.hrtime.bigint() + epochOffsetNs;
const hex = (bytes: number) => randomBytes(bytes).toString('hex');

/** OTEL_EXPORTER_OTLP_PROTOCOL's values. */
export const otlpProtocols = ['grpc', 'http/protobuf', 'http/json'] as const;
export type OtlpProtocol = (typeof otlpProtocols)[number];

export interface TracingOptions {
  /**
   * Where spans go; undefined turns tracing off. gRPC: the collector's origin
   * (`http://collector:4317`, https for TLS); OTLP/HTTP: the traces URL
   * (`http://collector:4318/v1/traces`).
   */
  endpoint?: string;
  protocol: OtlpProtocol;
  serviceName: string;
  /** OTEL_BSP_SCHEDULE_DELAY: most time a finished span waits before it is sent. */
  scheduleDelayMs: number;
  /** OTEL_BSP_MAX_QUEUE_SIZE: spans past this are dropped while the collector is slow. */
  maxQueueSize: number;
}

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Array<[string, Attribute]>;
  status: { code: number; message?: string };
}

function otlpValue(value: Attribute): Record<string, unknown> {
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  return Number.isInteger(value) ? { intValue: String(value) } : { doubleValue: value };
}

/** ExportTraceServiceRequest in OTLP's JSON mapping (ids in hex, times as strings). */
function otlpJson(serviceName: string, spans: OtlpSpan[]): string {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: serviceName } }] },
        scopeSpans: [
          {
            scope: { name: scopeName },
            spans: spans.map((span) => ({
              traceId: span.traceId,
              spanId: span.spanId,
              ...(span.parentSpanId ? { parentSpanId: span.parentSpanId } : {}),
              name: span.name,
              kind: span.kind,
              startTimeUnixNano: String(span.startNs),
              endTimeUnixNano: String(span.endNs),
              attributes: span.attributes.map(([key, value]) => ({ key, value: otlpValue(value) })),
              status: span.status,
            })),
          },
        ],
      },
    ],
  });
}

function keyValue(key: string, value: Attribute): MessageWriter {
  // opentelemetry.proto.common.v1: KeyValue{key 1, value 2}, AnyValue{string 1, bool 2, int 3, double 4}.
  const any = new MessageWriter();
  if (typeof value === 'string') any.bytes(1, value);
  else if (typeof value === 'boolean') any.varint(2, value ? 1 : 0);
  else if (Number.isSafeInteger(value)) any.int64(3, value);
  else any.double(4, value);
  return new MessageWriter().bytes(1, key).message(2, any);
}

/**
 * ExportTraceServiceRequest in protobuf, field numbers from opentelemetry-proto's documented
 * messages: request{resource_spans 1}; ResourceSpans{resource 1, scope_spans 2};
 * Resource{attributes 1}; ScopeSpans{scope 1, spans 2}; InstrumentationScope{name 1};
 * Span{trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, start 7 and end 8 (fixed64),
 * attributes 9, status 15}; Status{message 2, code 3}.
 */
export function otlpProtobuf(serviceName: string, spans: OtlpSpan[]): Buffer {
  const scope = new MessageWriter().message(1, new MessageWriter().bytes(1, scopeName));
  for (const span of spans) {
    const message = new MessageWriter()
      .bytes(1, Buffer.from(span.traceId, 'hex'))
      .bytes(2, Buffer.from(span.spanId, 'hex'));
    if (span.parentSpanId) message.bytes(4, Buffer.from(span.parentSpanId, 'hex'));
    message.bytes(5, span.name).varint(6, span.kind).fixed64(7, span.startNs).fixed64(8, span.endNs);
    for (const [key, value] of span.attributes) message.message(9, keyValue(key, value));
    const status = new MessageWriter();
    if (span.status.message) status.bytes(2, span.status.message);
    status.varint(3, span.status.code);
    message.message(15, status);
    scope.message(2, message);
  }
  const resource = new MessageWriter().message(1, keyValue('service.name', serviceName));
  const resourceSpans = new MessageWriter().message(1, resource).message(2, scope);
  return new MessageWriter().message(1, resourceSpans).finish();
}

const scopeName = '@seahorse/embedding-gateway';
const grpcExportPath = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const exportTimeoutMs = 10_000;

export class Tracer {
  readonly enabled: boolean;
  readonly #options: TracingOptions;
  readonly #logger: Logger;
  #queue: OtlpSpan[] = [];
  #timer: NodeJS.Timeout | undefined;
  #sending: Promise<void> = Promise.resolve();
  dropped = 0;

  constructor(options: TracingOptions, logger: Logger) {
    this.#options = options;
    this.#logger = logger;
    this.enabled = options.endpoint !== undefined;
  }

  /** The server span of a request, continuing the caller's trace when it sent one. */
  startServer(name: string, traceparent: string | undefined): Span | undefined {
    if (!this.enabled) return undefined;
    return this.start(name, spanKinds.server, parseTraceparent(traceparent));
  }

  start(name: string, kind: number, parent: SpanContext | undefined): Span {
    const context: SpanContext = {
      traceId: parent?.traceId ?? hex(16),
      spanId: hex(8),
      flags: parent?.flags ?? '01',
    };
    return new Span(this, name, kind, context, parent?.spanId);
  }

  record(span: Span, startNs: bigint, endNs: bigint, error: string | undefined): void {
    if (this.#queue.length >= this.#options.maxQueueSize) {
      this.dropped++;
      return;
    }
    this.#queue.push({
      traceId: span.context.traceId,
      spanId: span.context.spanId,
      ...(span.parentSpanId ? { parentSpanId: span.parentSpanId } : {}),
      name: span.name,
      kind: span.kind,
      startNs,
      endNs,
      attributes: [...span.attributes],
      status: error ? { code: 2, message: error } : { code: 0 },
    });
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#sending = this.#sending.then(() => this.#send());
    }, this.#options.scheduleDelayMs);
    this.#timer.unref();
  }

  /** Sends what is queued (at shutdown). */
  async flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#sending = this.#sending.then(() => this.#send());
    await this.#sending;
  }

  async #send(): Promise<void> {
    if (this.#queue.length === 0 || !this.#options.endpoint) return;
    const spans = this.#queue;
    this.#queue = [];
    const { endpoint, protocol, serviceName } = this.#options;
    try {
      if (protocol === 'grpc') await grpcExport(endpoint, otlpProtobuf(serviceName, spans));
      else if (protocol === 'http/protobuf')
        await httpExport(endpoint, 'application/x-protobuf', otlpProtobuf(serviceName, spans));
      else await httpExport(endpoint, 'application/json', Buffer.from(otlpJson(serviceName, spans)));
    } catch (error) {
      this.#logger.warn(
        { err: error, spans: spans.length, protocol },
        'sending spans to the trace collector failed',
      );
    }
  }
}

/** One OTLP/HTTP POST; a status of 300 or more is an error. */
function httpExport(endpoint: string, contentType: string, body: Buffer): Promise<void> {
  const url = new URL(endpoint);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<void>((resolve, reject) => {
    const req = send(
      url,
      {
        method: 'POST',
        headers: { 'content-type': contentType, 'content-length': body.length },
        timeout: exportTimeoutMs,
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status >= 300) reject(new Error(`the collector answered HTTP ${status}`));
          else resolve();
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${exportTimeoutMs / 1000} s`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** One unary TraceService/Export call over HTTP/2 (h2c for http://, TLS for https://). */
function grpcExport(endpoint: string, message: Buffer): Promise<void> {
  const url = new URL(endpoint);
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return new Promise<void>((resolve, reject) => {
    const session = http2Connect(url.origin);
    const timer = setTimeout(
      () => session.destroy(new Error(`no answer within ${exportTimeoutMs / 1000} s`)),
      exportTimeoutMs,
    );
    let status: string | undefined;
    let grpcMessage = '';
    const done = (error?: Error) => {
      clearTimeout(timer);
      session.close();
      if (error) reject(error);
      else resolve();
    };
    session.on('error', done);
    const stream = session.request({
      ':method': 'POST',
      ':path': grpcExportPath,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const read = (headers: Record<string, unknown>) => {
      if (headers['grpc-status'] !== undefined) status = String(headers['grpc-status']);
      if (headers['grpc-message'] !== undefined)
        grpcMessage = decodeURIComponent(String(headers['grpc-message']));
    };
    stream.on('response', (headers) => {
      const code = Number(headers[':status']);
      if (code !== 200) stream.destroy(new Error(`the collector answered HTTP/2 status ${code}`));
      read(headers);
    });
    stream.on('trailers', read);
    stream.on('error', done);
    stream.resume();
    stream.on('end', () => {
      if (status === '0') done();
      else done(new Error(`the collector answered gRPC status ${status ?? '(none)'} ${grpcMessage}`.trim()));
    });
    stream.end(frame);
  });
}

/**
 * The standard OTEL_* variables into TracingOptions. The protocol defaults to gRPC, as the
 * original's exporter (opentelemetry-exporter-otlp-proto-grpc) sends; its endpoint is the
 * collector's origin, used as given. For OTLP/HTTP the base endpoint gets `/v1/traces`.
 */
export function tracingOptionsFromEnv(env: NodeJS.ProcessEnv): TracingOptions {
  const tracesEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || undefined;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined;
  const disabled = env.OTEL_TRACES_EXPORTER === 'none' || env.OTEL_SDK_DISABLED === 'true';
  const name = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
    ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'
    : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = (env[name] || 'grpc').trim();
  if (!(otlpProtocols as readonly string[]).includes(protocol)) {
    throw new UsageError(
      `${name} must be one of ${otlpProtocols.join(', ')}, not ${JSON.stringify(protocol)}`,
    );
  }
  const insecure = /^(true|1)$/i.test(
    env.OTEL_EXPORTER_OTLP_TRACES_INSECURE || env.OTEL_EXPORTER_OTLP_INSECURE || '',
  );
  let endpoint = disabled ? undefined : tracesEndpoint;
  if (!disabled && endpoint === undefined && base !== undefined) {
    endpoint = protocol === 'grpc' ? base : `${base.replace(/\/+$/, '')}/v1/traces`;
  }
  // gRPC exporters take `host:port` too: TLS unless OTEL_EXPORTER_OTLP_INSECURE says otherwise.
  if (endpoint !== undefined && protocol === 'grpc' && !/^https?:\/\//i.test(endpoint)) {
    endpoint = `${insecure ? 'http' : 'https'}://${endpoint}`;
  }
  if (endpoint !== undefined) {
    try {
      new URL(endpoint);
    } catch {
      throw new UsageError(`the OTLP endpoint ${JSON.stringify(endpoint)} is not a URL`);
    }
  }
  return {
    ...(endpoint ? { endpoint } : {}),
    protocol: protocol as OtlpProtocol,
    serviceName: env.OTEL_SERVICE_NAME || 'embedding-gateway',
    scheduleDelayMs: Number(env.OTEL_BSP_SCHEDULE_DELAY) || 5000,
    maxQueueSize: Number(env.OTEL_BSP_MAX_QUEUE_SIZE) || 2048,
  };
}

/** The span of the work in progress, if tracing is on. */
export const currentSpan = new AsyncLocalStorage<Span>();

/** Runs `work` in a child span of the current one; just runs it when nothing is traced. */
export async function traced<T>(
  name: string,
  kind: number,
  work: (span: Span | undefined) => Promise<T>,
): Promise<T> {
  const parent = currentSpan.getStore();
  if (!parent) return work(undefined);
  const span = parent.child(name, kind);
  try {
    return await currentSpan.run(span, () => work(span));
  } catch (error) {
    span.fail(error);
    throw error;
  } finally {
    span.end();
  }
}
