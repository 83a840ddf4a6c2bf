// Redlock (https://redis.io/docs/latest/develop/use/patterns/distributed-locks/): a lock held
// on a majority of independent Redis nodes, valid for its TTL minus the time taking it took
// minus an allowance for clock drift.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { SeahorseError } from '@seahorse/runtime';
import type { RedisNodes } from './redis-nodes.ts';

// Deletes the key only while it still holds our token, so a lock that expired and was taken by
// someone else is never released by us.
const releaseScript = `
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0`;

export interface RedlockOptions {
  ttlMs: number;
  /** Attempts after the first one. */
  retryCount: number;
  retryDelayMs: number;
  /** Up to this much random time is added to each retry delay, so contenders spread out. */
  retryJitterMs: number;
  /** Clock drift allowance as a fraction of the TTL (Redlock's default: 1%). */
  driftFactor?: number;
}

export interface Lock {
  readonly resource: string;
  readonly token: string;
  /** Milliseconds of validity left; 0 once the lock may have expired on the nodes. */
  remainingMs(): number;
}

/** The lock could not be taken on a majority of the nodes. */
export class LockUnavailableError extends SeahorseError {
  /** Nodes that answered at all in the last attempt (the rest were down or too slow). */
  readonly answered: number;
  readonly quorum: number;
  readonly attempts: number;
  constructor(
    resource: string,
    details: { answered: number; acquired: number; quorum: number; total: number; attempts: number },
  ) {
    const why =
      details.answered < details.quorum
        ? `only ${details.answered} of ${details.total} Redis nodes answered (a majority of ${details.quorum} is needed)`
        : `it is held by another admission (${details.acquired} of ${details.total} nodes granted it, ${details.quorum} needed)`;
    super('REDLOCK_UNAVAILABLE', `could not lock ${resource} after ${details.attempts} attempts: ${why}`);
    this.answered = details.answered;
    this.quorum = details.quorum;
    this.attempts = details.attempts;
  }

  get nodesUnavailable(): boolean {
    return this.answered < this.quorum;
  }
}

export class Redlock {
  readonly #nodes: RedisNodes;
  readonly #options: Required<RedlockOptions>;

  constructor(nodes: RedisNodes, options: RedlockOptions) {
    this.#nodes = nodes;
    this.#options = { driftFactor: 0.01, ...options };
  }

  /** The clock drift allowance subtracted from a lock's validity. */
  get driftMs(): number {
    return Math.round(this.#options.ttlMs * this.#options.driftFactor) + 2;
  }

  async acquire(resource: string): Promise<Lock> {
    const { ttlMs, retryCount, retryDelayMs, retryJitterMs, driftFactor } = this.#options;
    const token = randomBytes(16).toString('hex');
    let last = { answered: 0, acquired: 0 };
    for (let attempt = 0; attempt <= retryCount; attempt++) {
      if (attempt > 0) await delay(retryDelayMs + Math.floor(Math.random() * retryJitterMs));
      const started = performance.now();
      const replies = await this.#nodes.each((client) => client.set(resource, token, 'PX', ttlMs, 'NX'));
      const acquired = replies.filter((reply) => reply.ok && reply.value === 'OK').length;
      const answered = replies.filter((reply) => reply.ok).length;
      last = { answered, acquired };
      const drift = Math.round(ttlMs * driftFactor) + 2;
      const validUntil = started + ttlMs - drift;
      if (acquired >= this.#nodes.quorum && validUntil > performance.now()) {
        return { resource, token, remainingMs: () => Math.max(0, validUntil - performance.now()) };
      }
      // A minority hold it or it took too long: give back what we got before trying again.
      await this.#unlock(resource, token);
    }
    throw new LockUnavailableError(resource, {
      ...last,
      quorum: this.#nodes.quorum,
      total: this.#nodes.size,
      attempts: retryCount + 1,
    });
  }

  async release(lock: Lock): Promise<void> {
    await this.#unlock(lock.resource, lock.token);
  }

  /** Runs `critical` holding the lock, and releases it afterwards whatever happens. */
  async using<T>(resource: string, critical: (lock: Lock) => Promise<T>): Promise<T> {
    const lock = await this.acquire(resource);
    try {
      return await critical(lock);
    } finally {
      await this.release(lock);
    }
  }

  async #unlock(resource: string, token: string): Promise<void> {
    await this.#nodes.each((client) => client.eval(releaseScript, 1, resource, token));
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
