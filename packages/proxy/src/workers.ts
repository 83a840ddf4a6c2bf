// `--workers N`: N processes share the listening sockets (node:cluster). The primary owns the
// route store, the REST API and metrics; each worker serves requests from its own copy of the
// table, kept in step by the primary over IPC, and reports activity and metrics back.
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from '@seahorse/runtime';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { RouteChange, RouteData, RouteTable } from './routes.ts';
import type { RouteSource } from './store.ts';

type Snapshot = Array<{ path: string; data: RouteData; lastActivity: number }>;

/** Messages between primary and workers; `seahorse` marks them as ours on the shared channel. */
type Message =
  | { seahorse: 'hello' }
  | { seahorse: 'snapshot'; routes: Snapshot }
  | { seahorse: 'change'; change: RouteChange }
  | { seahorse: 'activity'; id?: number; entries: Array<[string, number]> }
  | { seahorse: 'flush-activity'; id: number }
  | { seahorse: 'metrics'; id: number }
  | { seahorse: 'metrics-reply'; id: number; metrics: Array<MetricObjectWithValues<MetricValue<string>>> };

function isMessage(value: unknown): value is Message {
  return typeof value === 'object' && value !== null && 'seahorse' in value;
}

/**
 * Worker side: the primary's table, mirrored; activity goes back to the primary. Read-only by
 * type: a worker has no writer, the primary serves the API.
 */
export class WorkerRouteSource implements RouteSource {
  readonly shared = true;
  #status = 'waiting for the primary';
  #resolveReady!: () => void;
  readonly #ready = new Promise<void>((resolve) => {
    this.#resolveReady = resolve;
  });
  #onFlushRequest: ((id: number) => void) | undefined;
  #onMetricsRequest: ((id: number) => void) | undefined;

  get status(): string {
    return this.#status;
  }

  /** What the worker does when the primary asks for activity now (before answering the API). */
  onFlushRequest(handler: (id: number) => void): void {
    this.#onFlushRequest = handler;
  }

  onMetricsRequest(handler: (id: number) => void): void {
    this.#onMetricsRequest = handler;
  }

  async start(table: RouteTable): Promise<void> {
    process.on('message', (message: unknown) => {
      if (!isMessage(message)) return;
      if (message.seahorse === 'snapshot') {
        table.replace(message.routes);
        this.#status = 'in sync';
        this.#resolveReady();
      } else if (message.seahorse === 'change') {
        table.apply(message.change);
      } else if (message.seahorse === 'flush-activity') {
        this.#onFlushRequest?.(message.id);
      } else if (message.seahorse === 'metrics') {
        this.#onMetricsRequest?.(message.id);
      }
    });
    process.send?.({ seahorse: 'hello' } satisfies Message);
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  async flushActivity(activity: ReadonlyMap<string, number>, id?: number): Promise<void> {
    process.send?.({ seahorse: 'activity', id, entries: [...activity] } satisfies Message);
  }

  async close(): Promise<void> {}
}

export function sendMetrics(id: number, metrics: Array<MetricObjectWithValues<MetricValue<string>>>): void {
  process.send?.({ seahorse: 'metrics-reply', id, metrics } satisfies Message);
}

/** Primary side: forks the workers, feeds them the table, gathers activity and metrics. */
export class WorkerPool {
  readonly #table: RouteTable;
  readonly #log: Logger;
  readonly #count: number;
  readonly #loaded: Promise<void>;
  readonly #workers = new Set<Worker>();
  readonly #pending = new Map<number, { remaining: Set<Worker>; done: () => void; replies: unknown[] }>();
  #nextId = 1;
  #stopping = false;

  /** `loaded` resolves when the primary's table holds the store's routes. */
  constructor(table: RouteTable, count: number, loaded: Promise<void>, log: Logger) {
    this.#table = table;
    this.#count = count;
    this.#loaded = loaded;
    this.#log = log;
    table.onChange((change) => this.#broadcast({ seahorse: 'change', change }));
    table.onReplace(() => this.#broadcast(this.#snapshot()));
  }

  #snapshot(): Message {
    const routes: Snapshot = [...this.#table.all()].map((route) => ({
      path: route.path,
      data: route.data,
      lastActivity: route.lastActivity,
    }));
    return { seahorse: 'snapshot', routes };
  }

  start(): void {
    // Let the kernel spread connections across workers instead of relaying each through us.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    for (let i = 0; i < this.#count; i++) this.#fork();
  }

  #fork(): void {
    const worker = cluster.fork();
    this.#workers.add(worker);
    worker.on('message', (message: unknown) => this.#onMessage(worker, message));
    worker.on('exit', (code, signal) => {
      this.#workers.delete(worker);
      for (const [id, request] of this.#pending) {
        if (request.remaining.delete(worker) && request.remaining.size === 0) this.#finish(id);
      }
      if (this.#stopping) return;
      this.#log.error({ pid: worker.process.pid, code, signal }, 'worker died, starting another');
      this.#fork();
    });
  }

  #onMessage(worker: Worker, message: unknown): void {
    if (!isMessage(message)) return;
    if (message.seahorse === 'hello') {
      // Changes broadcast meanwhile reach the worker before this snapshot, which supersedes them.
      this.#loaded.then(() => {
        if (worker.isConnected()) worker.send(this.#snapshot());
      });
    } else if (message.seahorse === 'activity') {
      for (const [path, at] of message.entries) {
        const route = this.#table.get(path);
        if (route && at > route.lastActivity) route.lastActivity = at;
      }
      if (message.id !== undefined) this.#reply(message.id, worker, undefined);
    } else if (message.seahorse === 'metrics-reply') {
      this.#reply(message.id, worker, message.metrics);
    }
  }

  #broadcast(message: Message): void {
    for (const worker of this.#workers) if (worker.isConnected()) worker.send(message);
  }

  /** Asks every worker and resolves with their replies (or after `timeoutMs`, with those in). */
  #ask(make: (id: number) => Message, timeoutMs = 1000): Promise<unknown[]> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const remaining = new Set([...this.#workers].filter((worker) => worker.isConnected()));
      const replies: unknown[] = [];
      const timer = setTimeout(() => this.#finish(id), timeoutMs);
      this.#pending.set(id, {
        remaining,
        replies,
        done: () => {
          clearTimeout(timer);
          resolve(replies);
        },
      });
      if (remaining.size === 0) this.#finish(id);
      for (const worker of remaining) worker.send(make(id));
    });
  }

  #reply(id: number, worker: Worker, value: unknown): void {
    const request = this.#pending.get(id);
    if (!request?.remaining.delete(worker)) return;
    if (value !== undefined) request.replies.push(value);
    if (request.remaining.size === 0) this.#finish(id);
  }

  #finish(id: number): void {
    const request = this.#pending.get(id);
    if (!request) return;
    this.#pending.delete(id);
    request.done();
  }

  /** Makes every worker report its activity now. */
  async collectActivity(): Promise<void> {
    await this.#ask((id) => ({ seahorse: 'flush-activity', id }));
  }

  /** Every worker's metrics, as prom-client JSON, for aggregation. */
  async collectMetrics(): Promise<Array<Array<MetricObjectWithValues<MetricValue<string>>>>> {
    return (await this.#ask((id) => ({ seahorse: 'metrics', id }))) as Array<
      Array<MetricObjectWithValues<MetricValue<string>>>
    >;
  }

  /** SIGTERM to every worker (each drains like a single process would), then waits for them. */
  async stop(deadlineMs: number): Promise<void> {
    this.#stopping = true;
    const exits = [...this.#workers].map(
      (worker) =>
        new Promise<void>((resolve) => (worker.isDead() ? resolve() : worker.once('exit', () => resolve()))),
    );
    for (const worker of this.#workers) worker.process.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const worker of this.#workers) worker.process.kill('SIGKILL');
    }, deadlineMs);
    await Promise.all(exits);
    clearTimeout(timer);
  }
}
