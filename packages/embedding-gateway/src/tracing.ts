// Traces as the original's OpenTelemetry instrumentation gives them: a server span that
// continues the caller's W3C `traceparent`, child spans for the store and the upstream call,
// and the upstream told our span as its parent. Exported as OTLP/HTTP JSON in batches when an
// OTLP endpoint is configured; without one, nothing is recorded and the caller's
// `traceparent` goes to the upstream unchanged.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Logger } from '@seahorse/runtime';

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

export interface TracingOptions {
  /** OTLP/HTTP traces URL, e.g. `http://collector:4318/v1/traces`; undefined turns tracing off. */
  endpoint?: string;
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
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
  status: { code: number; message?: string };
}

function otlpValue(value: Attribute): Record<string, unknown> {
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  return Number.isInteger(value) ? { intValue: String(value) } : { doubleValue: value };
}

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
      startTimeUnixNano: String(startNs),
      endTimeUnixNano: String(endNs),
      attributes: [...span.attributes].map(([key, value]) => ({ key, value: otlpValue(value) })),
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
    const body = JSON.stringify({
      resourceSpans: [
        {
          resource: {
            attributes: [{ key: 'service.name', value: { stringValue: this.#options.serviceName } }],
          },
          scopeSpans: [{ scope: { name: '@seahorse/embedding-gateway' }, spans }],
        },
      ],
    });
    const url = new URL(this.#options.endpoint);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    await new Promise<void>((resolve) => {
      const req = send(
        url,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if ((res.statusCode ?? 0) >= 300) {
              this.#logger.warn(
                { status: res.statusCode, spans: spans.length },
                'the trace collector refused spans',
              );
            }
            resolve();
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (error) => {
        this.#logger.warn({ err: error, spans: spans.length }, 'sending spans to the trace collector failed');
        resolve();
      });
      req.end(body);
    });
  }
}

/** The standard OTEL_* variables into TracingOptions (OTLP over HTTP with JSON only). */
export function tracingOptionsFromEnv(env: NodeJS.ProcessEnv): TracingOptions {
  const tracesEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || undefined;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined;
  const disabled = env.OTEL_TRACES_EXPORTER === 'none' || env.OTEL_SDK_DISABLED === 'true';
  const endpoint = disabled
    ? undefined
    : (tracesEndpoint ?? (base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined));
  return {
    ...(endpoint ? { endpoint } : {}),
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
