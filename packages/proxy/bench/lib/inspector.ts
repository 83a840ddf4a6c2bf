// Talks to a proxy started with `--inspect=127.0.0.1:0` over the DevTools protocol: a full
// garbage collection on demand and the process's own view of its memory, so a leak check can
// tell garbage not yet collected from memory still referenced.
import type { ManagedProcess } from '@seahorse/runtime/testing';
import WebSocket from 'ws';
import { waitForOutput } from './processes.ts';

export interface HeapReport {
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
}

export class Inspector {
  readonly #ws: WebSocket;
  #nextId = 1;
  readonly #pending = new Map<number, (result: unknown) => void>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.on('message', (data) => {
      const message = JSON.parse(String(data)) as { id?: number; result?: unknown };
      if (message.id !== undefined) this.#pending.get(message.id)?.(message.result);
    });
  }

  static async connect(proc: ManagedProcess): Promise<Inspector> {
    const [, url] = await waitForOutput(proc, /Debugger listening on (ws:\/\/\S+)/);
    const ws = new WebSocket(url!, { perMessageDeflate: false });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return new Inspector(ws);
  }

  #call(method: string, params: object = {}): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#pending.set(id, (result) => {
        this.#pending.delete(id);
        resolve(result);
      });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Runs a full, compacting garbage collection in the proxy. */
  async collectGarbage(): Promise<void> {
    await this.#call('HeapProfiler.collectGarbage');
  }

  /** Evaluates `expression` in the proxy and returns its value, which must survive JSON. */
  async evaluate<T>(expression: string): Promise<T> {
    const result = (await this.#call('Runtime.evaluate', {
      expression: `JSON.stringify(${expression})`,
      returnByValue: true,
    })) as { result: { value: string } };
    return JSON.parse(result.result.value) as T;
  }

  async memory(): Promise<HeapReport> {
    const usage = await this.evaluate<{ rss: number; heapUsed: number; external: number }>(
      'process.memoryUsage()',
    );
    return { rssBytes: usage.rss, heapUsedBytes: usage.heapUsed, externalBytes: usage.external };
  }

  /** Starts V8's sampling CPU profiler (as --cpu-prof does, 1 ms interval by default). */
  async startProfiling(intervalUs = 1000): Promise<void> {
    await this.#call('Profiler.enable');
    await this.#call('Profiler.setSamplingInterval', { interval: intervalUs });
    await this.#call('Profiler.start');
  }

  /** Stops the profiler; the result is what a .cpuprofile file holds. */
  async stopProfiling(): Promise<object> {
    const result = (await this.#call('Profiler.stop')) as { profile: object };
    return result.profile;
  }

  close(): void {
    this.#ws.close();
  }
}
