// A fixed set of independent Redis nodes (not replicas of each other), asked in parallel. A
// node that is down or slow answers with an error quickly instead of queueing commands, so a
// majority decides within one command timeout.
import type { Logger } from '@seahorse/runtime';
import { Redis } from 'ioredis';

export interface RedisAddress {
  host: string;
  port: number;
}

export type NodeReply<T> = { node: string; ok: true; value: T } | { node: string; ok: false; error: Error };

export interface RedisNodesOptions {
  /** Per-command deadline: a node that takes longer counts as not answering. */
  commandTimeoutMs: number;
  log: Logger;
  /** Redis ACL user (from a Secret); undefined: the default user. */
  username?: string | undefined;
  /** Redis's requirepass or the user's password (from a Secret); never logged. */
  password?: string | undefined;
}

export function formatRedisAddress(address: RedisAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

export class RedisNodes {
  readonly #nodes: Array<{ name: string; client: Redis }>;
  /** Per-command deadline; a write must fit in what is left of a lock's validity. */
  readonly commandTimeoutMs: number;

  constructor(addresses: readonly RedisAddress[], options: RedisNodesOptions) {
    this.commandTimeoutMs = options.commandTimeoutMs;
    this.#nodes = addresses.map((address) => {
      const name = formatRedisAddress(address);
      const client = new Redis({
        host: address.host,
        port: address.port,
        commandTimeout: options.commandTimeoutMs,
        ...(options.username ? { username: options.username } : {}),
        ...(options.password ? { password: options.password } : {}),
        connectTimeout: Math.max(1000, options.commandTimeoutMs * 4),
        // Fail fast while disconnected: a quorum is decided now, not after a reconnect.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        // A restarted node counts again within half a second of answering: during a rolling
        // restart the next node may go down soon after, and a client still backing off from the
        // previous one (up to 2 s before) saw only one node and refused to decide.
        retryStrategy: (attempt) => Math.min(attempt * 50, 500),
      });
      let down = false;
      client.on('error', (error: Error) => {
        if (down) return;
        down = true;
        options.log.warn({ redis: name, err: error.message }, 'redis node unreachable');
      });
      client.on('ready', () => {
        if (down) options.log.info({ redis: name }, 'redis node reachable again');
        down = false;
      });
      return { name, client };
    });
  }

  get size(): number {
    return this.#nodes.length;
  }

  /** More than half of the nodes. */
  get quorum(): number {
    return Math.floor(this.#nodes.length / 2) + 1;
  }

  get names(): string[] {
    return this.#nodes.map((node) => node.name);
  }

  /** Waits until every node is connected or `timeoutMs` passes; returns how many are ready. */
  async waitConnected(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    const readyCount = () => this.#nodes.filter((node) => node.client.status === 'ready').length;
    while (readyCount() < this.#nodes.length && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return readyCount();
  }

  /** Runs `command` on every node at once; never rejects. */
  each<T>(command: (client: Redis, node: string) => Promise<T>): Promise<Array<NodeReply<T>>> {
    return Promise.all(
      this.#nodes.map(async ({ name, client }): Promise<NodeReply<T>> => {
        try {
          return { node: name, ok: true, value: await command(client, name) };
        } catch (error) {
          return { node: name, ok: false, error: error instanceof Error ? error : new Error(String(error)) };
        }
      }),
    );
  }

  close(): void {
    for (const { client } of this.#nodes) client.disconnect();
  }
}
