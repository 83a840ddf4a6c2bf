// Activity is stamped on routes in memory by the forwarder (no store write per request) and
// flushed to a shared store in batches on an interval.
import type { Logger } from '@seahorse/runtime';
import type { ProxyMetrics } from './metrics.ts';
import type { Route, RouteTable } from './routes.ts';
import type { RouteSource } from './store.ts';

export class ActivityFlusher {
  readonly #table: RouteTable;
  readonly #source: RouteSource;
  readonly #metrics: ProxyMetrics;
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #flushed = new WeakMap<Route, number>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(
    table: RouteTable,
    source: RouteSource,
    metrics: ProxyMetrics,
    log: Logger,
    intervalMs: number,
  ) {
    this.#table = table;
    this.#source = source;
    this.#metrics = metrics;
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  start(): void {
    if (!this.#source.shared) return;
    this.#timer = setInterval(() => {
      this.flush().catch((error: unknown) => {
        this.#log.warn({ err: (error as Error).message }, 'flushing activity failed; retrying next interval');
      });
    }, this.#intervalMs);
    this.#timer.unref();
  }

  /** Sends the activity seen since the last flush; one flush runs at a time. */
  flush(): Promise<void> {
    this.#running ??= this.#flushOnce().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #flushOnce(): Promise<void> {
    const started = performance.now();
    const batch = new Map<string, number>();
    const routes: Route[] = [];
    for (const route of this.#table.all()) {
      if (route.lastActivity > (this.#flushed.get(route) ?? 0)) {
        batch.set(route.path, route.lastActivity);
        routes.push(route);
      }
    }
    if (batch.size === 0) return;
    await this.#source.flushActivity(batch);
    for (const route of routes) this.#flushed.set(route, batch.get(route.path)!);
    this.#metrics.activityFlushed((performance.now() - started) / 1000);
  }

  /** Flushes local activity and takes in what other processes flushed. */
  async sync(): Promise<void> {
    if (!this.#source.shared) return;
    await this.flush();
    await this.#source.pullActivity?.();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    if (this.#source.shared) await this.flush();
  }
}
