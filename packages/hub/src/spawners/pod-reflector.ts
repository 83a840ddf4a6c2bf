// A local copy of a set of API objects kept current by one list + watch (what client-go calls a
// reflector, and KubeSpawner's reflector.py does for its pods and events): every server's poll
// reads the copy instead of asking the apiserver. A dropped or timed-out watch resumes from the
// last resourceVersion; a 410 Gone (the version is too old) lists again.
import { EventEmitter } from 'node:events';
import type { Logger } from '@seahorse/runtime';
import { corePath, type KubeClient, type KubeList, type KubeObject, type WatchEvent } from './kube-client.ts';
import { KubeGoneError } from './kube-errors.ts';

export interface ReflectorOptions {
  /** e.g. /api/v1/namespaces/jupyterhub/pods */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Asked of the server per watch request; it ends the stream after about this long (60 s). */
  watchTimeoutSeconds?: number;
  /**
   * A watch silent this long is taken for stalled (a peer gone without closing, a proxy holding
   * the stream) and made again; the server's own timeout plus 30 s by default.
   */
  idleTimeoutMs?: number;
  /** First delay after a failed list or watch (doubles up to maxBackoffMs). */
  backoffMs?: number;
  maxBackoffMs?: number;
}

export type ReflectorChange<T> = { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: T };

/**
 * Emits 'change' (ReflectorChange) for every object added, changed or removed — including the
 * differences a relist finds — 'synced' after each list, and 'failure' (the error) for each
 * failed list or watch before it retries.
 */
export class Reflector<T extends KubeObject = KubeObject> extends EventEmitter {
  readonly items = new Map<string, T>();
  readonly #client: KubeClient;
  readonly #options: ReflectorOptions;
  readonly #log: Logger;
  #abort: AbortController | undefined;
  #loop: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #resourceVersion: string | undefined;
  #synced = false;
  /** Lists done so far (the first, and one per 410 Gone or failed watch from an unknown version). */
  lists = 0;
  /** Watch requests made so far. */
  watches = 0;
  /** The error of the last failed list or watch; cleared by a list that succeeds. */
  lastFailure: Error | undefined;

  constructor(client: KubeClient, options: ReflectorOptions, log: Logger) {
    super();
    this.setMaxListeners(0);
    this.#client = client;
    this.#options = options;
    this.#log = log;
  }

  get running(): boolean {
    return this.#abort !== undefined;
  }

  /** True once a list has filled the copy (until stop). */
  get synced(): boolean {
    return this.#synced;
  }

  /** Starts listing and watching (idempotent). */
  start(): void {
    if (this.#abort) return;
    const abort = new AbortController();
    this.#abort = abort;
    // Started again while a stop is still closing the last watch: begin after it, with a list.
    const previous = this.#stopping;
    this.#loop = (async () => {
      await previous;
      this.#resourceVersion = undefined;
      await this.#run(abort.signal);
    })().catch((error: unknown) => {
      this.#log.error({ err: error, path: this.#options.path }, 'reflector stopped by an unexpected error');
    });
  }

  /** Stops watching and forgets the copy; resolves once the watch request is closed. */
  async stop(): Promise<void> {
    const abort = this.#abort;
    if (!abort) {
      await this.#stopping;
      return;
    }
    this.#abort = undefined;
    abort.abort();
    const loop = this.#loop;
    this.#stopping = (async () => {
      await loop;
      if (this.#abort) return; // started again meanwhile: the new run owns the copy
      this.#synced = false;
      this.#resourceVersion = undefined;
      this.items.clear();
    })();
    await this.#stopping;
  }

  /** Resolves when the first list is in (or at once); rejects after timeoutMs. */
  waitSynced(timeoutMs: number): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('synced', onSynced);
        reject(new Error(`no list of ${this.#options.path} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const onSynced = () => {
        clearTimeout(timer);
        resolve();
      };
      this.once('synced', onSynced);
    });
  }

  async #run(signal: AbortSignal): Promise<void> {
    const initialBackoff = this.#options.backoffMs ?? 100;
    const maxBackoff = this.#options.maxBackoffMs ?? 5000;
    const timeoutSeconds = this.#options.watchTimeoutSeconds ?? 60;
    const idleTimeoutMs = this.#options.idleTimeoutMs ?? (timeoutSeconds + 30) * 1000;
    let backoff = initialBackoff;
    while (!signal.aborted) {
      try {
        if (this.#resourceVersion === undefined) await this.#list();
        this.watches++;
        await this.#client.watch<T>(
          this.#options.path,
          {
            resourceVersion: this.#resourceVersion,
            labelSelector: this.#options.labelSelector,
            fieldSelector: this.#options.fieldSelector,
            timeoutSeconds,
          },
          (event) => this.#apply(event),
          signal,
          // Silence past the server's own timeout means a dead peer or a stalled stream.
          idleTimeoutMs,
        );
        backoff = initialBackoff;
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof KubeGoneError) {
          this.#log.info(
            { path: this.#options.path },
            'watch resourceVersion expired (410 Gone); listing again',
          );
          this.#resourceVersion = undefined;
          continue;
        }
        this.#log.warn(
          { err: error, path: this.#options.path, ms: backoff },
          'list or watch failed; retrying',
        );
        this.lastFailure = error as Error;
        this.emit('failure', error);
        await delay(backoff, signal);
        backoff = Math.min(backoff * 2, maxBackoff);
      }
    }
  }

  async #list(): Promise<void> {
    const list = await this.#client.get<KubeList<T>>(this.#options.path, {
      labelSelector: this.#options.labelSelector,
      fieldSelector: this.#options.fieldSelector,
    });
    if (!Array.isArray(list.items)) throw new Error(`the list of ${this.#options.path} has no items`);
    this.lists++;
    const seen = new Set<string>();
    for (const item of list.items as unknown[]) {
      const name = nameOf(item);
      if (name === undefined) continue;
      seen.add(name);
      const object = item as T;
      const before = this.items.get(name);
      this.items.set(name, object);
      if (before?.metadata?.resourceVersion !== object.metadata?.resourceVersion || !before) {
        this.emit('change', {
          type: before ? 'MODIFIED' : 'ADDED',
          object,
        } satisfies ReflectorChange<T>);
      }
    }
    for (const [name, item] of this.items) {
      if (seen.has(name)) continue;
      this.items.delete(name);
      this.emit('change', { type: 'DELETED', object: item } satisfies ReflectorChange<T>);
    }
    const listVersion: unknown = list.metadata?.resourceVersion;
    this.#resourceVersion = typeof listVersion === 'string' && listVersion ? listVersion : '0';
    this.lastFailure = undefined;
    this.#synced = true;
    this.emit('synced');
  }

  #apply(event: WatchEvent<T>): void {
    const metadata: unknown = event.object.metadata;
    const version = isRecord(metadata) ? metadata.resourceVersion : undefined;
    if (typeof version === 'string' && version) this.#resourceVersion = version;
    if (event.type === 'BOOKMARK') return;
    // An object without a name (no metadata at all, a number for a name) names nothing to keep.
    const name = nameOf(event.object);
    if (name === undefined) {
      this.#log.warn(
        { path: this.#options.path, type: event.type },
        'watch event without metadata.name; ignored',
      );
      return;
    }
    if (event.type === 'DELETED') this.items.delete(name);
    else this.items.set(name, event.object);
    this.emit('change', { type: event.type, object: event.object } satisfies ReflectorChange<T>);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The object's metadata.name when it is an object with a non-empty string name. */
function nameOf(item: unknown): string | undefined {
  if (!isRecord(item) || !isRecord(item.metadata)) return undefined;
  const name = item.metadata.name;
  return typeof name === 'string' && name ? name : undefined;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * The one watch over the namespace's user pods (label component=<component_label>, as
 * KubeSpawner's), shared by every server of this hub process. Started by whoever owns the hub's
 * singleton work (the leader, with several replicas); spawners fall back to direct reads while
 * it is stopped.
 */
export class PodReflector extends Reflector {
  readonly namespace: string;
  constructor(
    client: KubeClient,
    namespace: string,
    componentLabel: string,
    log: Logger,
    options: Partial<ReflectorOptions> = {},
  ) {
    super(
      client,
      { ...options, path: corePath(namespace, 'pods'), labelSelector: `component=${componentLabel}` },
      log.child({ reflector: 'pods' }),
    );
    this.namespace = namespace;
  }
}
