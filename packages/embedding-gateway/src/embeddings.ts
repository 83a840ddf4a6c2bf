// What POST /v1/embeddings does: the original's whole-request cache (hit: never call the
// upstream; miss: call it, store the answer, count its tokens), and, behind flags, coalesced
// misses, per-input caching and an in-memory LRU.
import { createHash } from 'node:crypto';
import type { Logger } from '@seahorse/runtime';
import { cacheKey, objectKeyForDigest } from './cache-key.ts';
import { Coalescer } from './coalescer.ts';
import {
  ClientGoneError,
  CorruptObjectError,
  RequestRejectedError,
  UpstreamResponseError,
  UpstreamStatusError,
} from './errors.ts';
import type { MemoryCache } from './memory-cache.ts';
import type { GatewayMetrics } from './metrics.ts';
import {
  dumpPythonJson,
  isPyObject,
  PyNumber,
  type PyObject,
  type PyValue,
  parsePythonJsonBytes,
} from './python-json.ts';
import { decodeObject, encodeObject, type ObjectStore } from './store/store.ts';
import { formatTraceparent, spanKinds, traced } from './tracing.ts';
import type { UpstreamClient } from './upstream.ts';

export interface EmbeddingsOptions {
  /** Concurrent identical misses share one upstream call. */
  coalesceMisses: boolean;
  /** Cache each input's vector; call the upstream only for inputs not cached yet. */
  perInputCache: boolean;
  /** Most inputs in one request (0: no limit); more is a 400. */
  maxInputs: number;
}

export type Outcome = 'memory_hit' | 'store_hit' | 'miss' | 'coalesced';

/** An answer (200): the JSON, the stored gzip object, or both. */
export interface EmbeddingsAnswer {
  json?: Buffer;
  gzipped?: Buffer;
  outcome: Outcome;
}

type Answer = Omit<EmbeddingsAnswer, 'outcome'>;

/** `aiohttp`'s `response.json()` accepts only JSON content types; anything else is a 500. */
const jsonContentType = /^application\/(?:[\w.+-]+?\+)?json/i;

/** Reads in parallel, a bounded number at a time. */
async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The inputs of a request: several (an array of strings or token arrays) or a single one. */
export function splitInputs(input: PyValue | undefined): { inputs: PyValue[]; single: boolean } | undefined {
  if (typeof input === 'string') return { inputs: [input], single: true };
  if (!Array.isArray(input) || input.length === 0) return undefined;
  if (input.every((item) => item instanceof PyNumber)) return { inputs: [input], single: true };
  if (input.every((item) => typeof item === 'string' || Array.isArray(item)))
    return { inputs: input, single: false };
  return undefined;
}

/** The headers that name who pays for a call: OpenAI's, and Azure OpenAI's `api-key`. */
const credentialHeaders = ['authorization', 'api-key', 'openai-organization', 'openai-project'];

/** A digest of the caller's credentials, for keys that must not mix callers. */
function credentialsOf(headers: Record<string, string>): string {
  const hash = createHash('sha256');
  for (const name of credentialHeaders) hash.update(`${headers[name] ?? ''}\n`);
  return hash.digest('base64');
}

function tokensOf(answer: PyObject): number {
  const usage = answer.get('usage');
  const total = isPyObject(usage) ? usage.get('total_tokens') : undefined;
  if (!(total instanceof PyNumber) || !Number.isFinite(total.value)) {
    throw new UpstreamResponseError('the upstream answered 200 without usage.total_tokens');
  }
  return total.value;
}

export class EmbeddingsService {
  readonly #store: ObjectStore;
  readonly #upstream: UpstreamClient;
  readonly #memory: MemoryCache | undefined;
  readonly #metrics: GatewayMetrics;
  readonly #logger: Logger;
  readonly #options: EmbeddingsOptions;
  readonly #coalescer = new Coalescer<Answer>();

  constructor(
    parts: {
      store: ObjectStore;
      upstream: UpstreamClient;
      memory?: MemoryCache;
      metrics: GatewayMetrics;
      logger: Logger;
    },
    options: EmbeddingsOptions,
  ) {
    this.#store = parts.store;
    this.#upstream = parts.upstream;
    this.#memory = parts.memory;
    this.#metrics = parts.metrics;
    this.#logger = parts.logger;
    this.#options = options;
  }

  /** Clients waiting on a coalesced upstream call (with --coalesce-misses). */
  get coalescedWaiters(): number {
    return this.#coalescer.waiters;
  }

  /** `plain`: the caller wants JSON, not the gzip object (a hit is then decoded and checked here). */
  async handle(
    body: PyObject,
    headers: Record<string, string>,
    signal: AbortSignal,
    plain = false,
  ): Promise<EmbeddingsAnswer> {
    this.#checkLimits(body);
    const key = cacheKey(body);
    const cached = await this.#read(key, signal, plain);
    if (cached) return cached;
    if (!this.#options.coalesceMisses) {
      return { ...(await this.#miss(key, body, headers, signal)), outcome: 'miss' };
    }
    // Only requests with the same credentials share a call: one with a bad key must not answer
    // another's with its 401, nor one with a good key serve a caller the upstream would refuse.
    const flight = this.#coalescer.run(`${key} ${credentialsOf(headers)}`, signal, (shared) =>
      this.#miss(key, body, headers, shared),
    );
    return { ...(await flight.result), outcome: flight.joined ? 'coalesced' : 'miss' };
  }

  #checkLimits(body: PyObject): void {
    const { maxInputs } = this.#options;
    if (maxInputs <= 0) return;
    const split = splitInputs(body.get('input'));
    const count = split?.inputs.length ?? 0;
    if (count > maxInputs) {
      throw new RequestRejectedError(
        400,
        `The request has ${count} inputs; this gateway accepts at most ${maxInputs} per request (--max-inputs). Split it into several requests.`,
      );
    }
  }

  async #read(key: string, signal: AbortSignal, plain: boolean): Promise<EmbeddingsAnswer | undefined> {
    try {
      const remembered = this.#memory?.get(key);
      if (remembered) {
        if (!plain) return { gzipped: remembered, outcome: 'memory_hit' };
        let json = this.#memory!.json(key);
        if (!json) {
          json = await decodeObject(key, remembered);
          this.#memory!.setJson(key, remembered, json);
        }
        return { gzipped: remembered, json, outcome: 'memory_hit' };
      }
      const stored = await this.#storeGet(key, signal);
      if (!stored) return undefined;
      // Stored objects may go out as they are (gzip clients): one that is not gzip at all is
      // corrupt. (The S3 store checks each object whole; filesystem objects are ours, renamed
      // into place whole, and are checked whole only when decoded for a plain client.)
      if (stored[0] !== 0x1f || stored[1] !== 0x8b) {
        throw new CorruptObjectError(`object ${key} is not gzip-compressed (it does not start with 1f 8b)`);
      }
      const json = plain ? await decodeObject(key, stored) : undefined;
      this.#memory?.set(key, stored);
      if (json) this.#memory?.setJson(key, stored, json);
      return { gzipped: stored, ...(json ? { json } : {}), outcome: 'store_hit' };
    } catch (error) {
      if (!(error instanceof CorruptObjectError)) throw error;
      // Never served: answered as a miss, whose write replaces the object.
      this.#memory?.delete(key);
      this.#metrics.corruptObjects.inc();
      this.#logger.warn(
        { key, err: error.message },
        'corrupt object in the store: fetching the answer again',
      );
      return undefined;
    }
  }

  async #storeGet(key: string, signal: AbortSignal): Promise<Buffer | undefined> {
    try {
      return await traced(`${this.#store.kind} get`, spanKinds.client, async (span) => {
        const found = await this.#store.get(key, signal);
        span?.set('embedding_gateway.key', key).set('embedding_gateway.found', found !== undefined);
        return found;
      });
    } catch (error) {
      if (signal.aborted) throw new ClientGoneError();
      throw error;
    }
  }

  /** Stores an answer unless the client has gone; a write once started runs to its end. */
  async #write(key: string, json: Buffer, signal: AbortSignal): Promise<Buffer> {
    if (signal.aborted) throw new ClientGoneError();
    const gzipped = await encodeObject(json);
    if (signal.aborted) throw new ClientGoneError();
    await traced(`${this.#store.kind} put`, spanKinds.client, async (span) => {
      span?.set('embedding_gateway.key', key).set('embedding_gateway.bytes', gzipped.length);
      await this.#store.put(key, gzipped);
    });
    this.#memory?.set(key, gzipped);
    return gzipped;
  }

  async #miss(
    key: string,
    body: PyObject,
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<Answer> {
    if (this.#options.perInputCache) {
      const split = splitInputs(body.get('input'));
      const format = body.get('encoding_format');
      if (split && (format === undefined || format === 'float' || format === 'base64')) {
        return this.#perInputMiss(key, body, split, headers, signal);
      }
    }
    const answer = await this.#call(body, headers, signal);
    // A 200 that carries an error is passed on, never stored or counted (as the original).
    if (answer.has('error')) return { json: Buffer.from(dumpPythonJson(answer)) };
    this.#metrics.processedTokens.inc(Math.max(0, tokensOf(answer)));
    const json = Buffer.from(dumpPythonJson(answer));
    return { json, gzipped: await this.#write(key, json, signal) };
  }

  /** One upstream call; the answer as Python's `json.loads` reads it. */
  async #call(body: PyObject, headers: Record<string, string>, signal: AbortSignal): Promise<PyObject> {
    const started = performance.now();
    let answer: Awaited<ReturnType<UpstreamClient['post']>>;
    try {
      answer = await traced('create_openai_embeddings', spanKinds.internal, () =>
        traced(`POST ${this.#upstream.url.pathname}`, spanKinds.client, async (span) => {
          // The upstream continues the trace under our span, as the original's aiohttp
          // instrumentation tells it; untraced, the caller's traceparent goes on unchanged.
          const sent = span ? { ...headers, traceparent: formatTraceparent(span.context) } : headers;
          span?.set('http.request.method', 'POST').set('server.address', this.#upstream.url.host);
          const result = await this.#upstream.post(dumpPythonJson(body), sent, signal);
          span?.set('http.response.status_code', result.status);
          return result;
        }),
      );
    } catch (error) {
      this.#metrics.upstreamCalls.inc({ status: 'error' });
      throw error;
    } finally {
      this.#metrics.upstreamDuration.observe((performance.now() - started) / 1000);
    }
    this.#metrics.upstreamCalls.inc({ status: `${Math.floor(answer.status / 100)}xx` });
    if (answer.status !== 200) throw new UpstreamStatusError(answer.status);
    if (!jsonContentType.test(answer.contentType)) {
      throw new UpstreamResponseError(
        `the upstream answered 200 with Content-Type '${answer.contentType}', not JSON`,
      );
    }
    let parsed: PyValue;
    try {
      parsed = parsePythonJsonBytes(answer.body);
    } catch (error) {
      throw new UpstreamResponseError(
        `the upstream answered 200 with a body that is not JSON: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    if (!isPyObject(parsed))
      throw new UpstreamResponseError('the upstream answered 200 with JSON that is not an object');
    return parsed;
  }

  #inputKey(body: PyObject, input: PyValue): string {
    const identity: PyObject = new Map<string, PyValue>([
      ['dimensions', body.get('dimensions') ?? null],
      ['encoding_format', body.get('encoding_format') ?? 'float'],
      ['input', input],
      ['model', body.get('model') ?? null],
    ]);
    const digest = createHash('sha256')
      .update(dumpPythonJson(identity, { sortKeys: true }))
      .digest('hex');
    return `inputs/${objectKeyForDigest(digest)}`;
  }

  async #readInput(key: string, signal: AbortSignal): Promise<PyObject | undefined> {
    let gzipped = this.#memory?.get(key);
    if (!gzipped) {
      try {
        gzipped = await this.#storeGet(key, signal);
      } catch (error) {
        if (!(error instanceof CorruptObjectError)) throw error;
        gzipped = undefined;
      }
      if (!gzipped) return undefined;
    }
    let record: PyValue;
    try {
      record = parsePythonJsonBytes(await decodeObject(key, gzipped));
    } catch (error) {
      // A corrupt input record is a missing one: sent again, and replaced.
      this.#metrics.corruptObjects.inc();
      this.#logger.warn(
        { key, err: (error as Error).message },
        'corrupt object in the store: fetching the input again',
      );
      return undefined;
    }
    if (!isPyObject(record) || !record.has('embedding')) return undefined;
    this.#memory?.set(key, gzipped);
    return record;
  }

  async #perInputMiss(
    key: string,
    body: PyObject,
    split: { inputs: PyValue[]; single: boolean },
    headers: Record<string, string>,
    signal: AbortSignal,
  ): Promise<Answer> {
    const keys = split.inputs.map((input) => this.#inputKey(body, input));
    const records = await mapBounded(keys, 32, (k) => this.#readInput(k, signal));
    // Identical inputs in one request are sent once.
    const missing = new Map<string, PyValue>();
    records.forEach((record, i) => {
      if (!record) missing.set(keys[i]!, split.inputs[i]!);
    });
    this.#metrics.perInputLookups.inc(
      { result: 'hit' },
      records.length - [...records].filter((r) => !r).length,
    );
    this.#metrics.perInputLookups.inc({ result: 'miss' }, records.filter((r) => !r).length);

    let model: PyValue | undefined = records.find((r) => r)?.get('model');
    let usage: PyValue = new Map<string, PyValue>([
      ['prompt_tokens', new PyNumber('0', true)],
      ['total_tokens', new PyNumber('0', true)],
    ]);
    if (missing.size > 0) {
      const sent = [...missing.values()];
      const partial = new Map(body);
      partial.set('input', split.single ? sent[0]! : sent);
      const answer = await this.#call(partial, headers, signal);
      if (answer.has('error')) return { json: Buffer.from(dumpPythonJson(answer)) };
      this.#metrics.processedTokens.inc(Math.max(0, tokensOf(answer)));
      const data = answer.get('data');
      if (!Array.isArray(data))
        throw new UpstreamResponseError('the upstream answered 200 without a data array');
      const sentKeys = [...missing.keys()];
      const fresh = new Map<string, PyObject>();
      for (const item of data) {
        const index = isPyObject(item) ? item.get('index') : undefined;
        const position = index instanceof PyNumber && index.isInteger ? Number(index.lexeme) : -1;
        const embedding = isPyObject(item) ? item.get('embedding') : undefined;
        if (position < 0 || position >= sentKeys.length || embedding === undefined) {
          throw new UpstreamResponseError('the upstream answered an embedding for an input it was not sent');
        }
        fresh.set(
          sentKeys[position]!,
          new Map<string, PyValue>([
            ['model', answer.get('model') ?? body.get('model') ?? null],
            ['embedding', embedding],
          ]),
        );
      }
      if (fresh.size !== sentKeys.length) {
        throw new UpstreamResponseError(
          `the upstream answered ${fresh.size} embeddings for ${sentKeys.length} inputs`,
        );
      }
      model = answer.get('model') ?? model;
      usage = answer.get('usage') ?? usage;
      keys.forEach((k, i) => {
        if (!records[i]) records[i] = fresh.get(k);
      });
      await Promise.all(
        [...fresh].map(([k, record]) => this.#write(k, Buffer.from(dumpPythonJson(record)), signal)),
      );
    }
    const assembled: PyObject = new Map<string, PyValue>([
      ['object', 'list'],
      [
        'data',
        records.map(
          (record, i) =>
            new Map<string, PyValue>([
              ['object', 'embedding'],
              ['index', new PyNumber(String(i), true)],
              ['embedding', record!.get('embedding')!],
            ]),
        ),
      ],
      ['model', model ?? body.get('model') ?? null],
      ['usage', usage],
    ]);
    const json = Buffer.from(dumpPythonJson(assembled));
    const gzipped = await this.#write(key, json, signal);
    this.#logger.debug({ inputs: keys.length, sent: missing.size }, 'per-input cache');
    return { json, gzipped };
  }
}
