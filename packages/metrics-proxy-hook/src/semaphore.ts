// A counting semaphore per workload: a table of slots (sorted set member = slot id, score =
// lease expiry in the node's own clock) kept on every node, changed only under a Redlock lock.
//
// Reads take the union of the live slots a majority of nodes report. Every successful write
// reached a majority, and any two majorities share a node, so the union never misses a slot
// that was granted and not yet released or expired; a node that missed a release can only make
// the count too high, never too low. The semaphore therefore fails towards admitting fewer pods.
import { SeahorseError } from '@seahorse/runtime';
import type { NodeReply, RedisNodes } from './redis-nodes.ts';
import { LockUnavailableError, Redlock, type RedlockOptions } from './redlock.ts';

// Now in milliseconds by the node's clock, so leases never depend on clients' clocks agreeing.
const now = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

// Keeps the whole table from outliving its last lease.
const expireWithLastLease = `
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', tonumber(last[2]))) end`;

/** Drops expired slots; returns member, milliseconds left, member, milliseconds left, ... */
const liveSlotsScript = `${now}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local slots = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 2, #slots, 2 do slots[i] = string.format('%.0f', tonumber(slots[i]) - now) end
return slots`;

/**
 * KEYS: slots, lock. ARGV: slot, lease ms, lock token. Fenced: the node writes only while it
 * still holds our lock token, so a writer that paused past its lock's validity (GC, SIGSTOP, a
 * slow network) and lost the lock to another writer cannot add a slot behind its back.
 */
const grantScript = `${now}
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return -1 end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
${expireWithLastLease}
return 1`;

/** ARGV: slot, lease ms. Puts a slot that a majority still holds back on a node that lost it. */
const restoreScript = `${now}
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
${expireWithLastLease}
return 1`;

/** ARGV: slot, lease ms. Extends a live slot only: renewing never creates one. */
const renewScript = `${now}
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
${expireWithLastLease}
return 1`;

/** The semaphore could not decide: too few Redis nodes answered, or the lock stayed busy. */
export class SemaphoreUnavailableError extends SeahorseError {
  constructor(message: string, options?: ErrorOptions) {
    super('SEMAPHORE_UNAVAILABLE', message, options);
  }
}

export interface SlotRequest {
  /** The workload key (see workload.ts). */
  workload: string;
  slot: string;
  limit: number;
  /** Lease of the slot; it expires unless renewed within this time. */
  leaseMs: number;
  /** Checks for room without taking a slot (the API server's dry run). */
  dryRun?: boolean;
}

export type AcquireResult = { granted: true; held: number } | { granted: false; held: number; limit: number };

export interface SemaphoreOptions {
  lock: RedlockOptions;
  /** Prefix of every key, so one Redis can serve several installations. */
  keyPrefix?: string;
  /**
   * Runs between the validity check and the write. Tests put a pause here (what a GC pause or
   * a frozen process does) to prove the write is fenced.
   */
  beforeWrite?: (workload: string) => Promise<void>;
}

export class RedisSemaphore {
  readonly #nodes: RedisNodes;
  readonly #redlock: Redlock;
  readonly #prefix: string;
  readonly #beforeWrite: SemaphoreOptions['beforeWrite'];

  constructor(nodes: RedisNodes, options: SemaphoreOptions) {
    this.#nodes = nodes;
    this.#beforeWrite = options.beforeWrite;
    this.#redlock = new Redlock(nodes, options.lock);
    this.#prefix = options.keyPrefix ?? 'seahorse:metrics-proxy-hook';
  }

  slotsKey(workload: string): string {
    return `${this.#prefix}:slots:${workload}`;
  }

  lockKey(workload: string): string {
    return `${this.#prefix}:lock:${workload}`;
  }

  /** Live slots and the longest lease left on any node that answered. */
  async holders(workload: string): Promise<Map<string, number>> {
    const replies = await this.#nodes.each(
      (client) => client.eval(liveSlotsScript, 1, this.slotsKey(workload)) as Promise<string[]>,
    );
    this.#requireQuorum(replies, `read the slots of ${workload}`);
    const slots = new Map<string, number>();
    for (const reply of replies) {
      if (!reply.ok) continue;
      for (let i = 0; i + 1 < reply.value.length; i += 2) {
        const slot = reply.value[i]!;
        slots.set(slot, Math.max(slots.get(slot) ?? 0, Number(reply.value[i + 1])));
      }
    }
    return slots;
  }

  /** Grants a slot if the workload holds fewer than `limit`; asking again for a held slot succeeds. */
  async acquire(request: SlotRequest): Promise<AcquireResult> {
    const { workload, slot, limit, leaseMs } = request;
    try {
      return await this.#redlock.using(this.lockKey(workload), async (lock) => {
        const holders = await this.holders(workload);
        const held = holders.size;
        // A retried admission (same uid) finds its own slot: granted again, nothing written.
        if (holders.has(slot)) return { granted: true, held };
        if (held >= limit) return { granted: false, held, limit };
        if (request.dryRun) return { granted: true, held: held + 1 };
        // The write must land while the lock is surely ours: its slowest node may take the
        // whole command timeout, and clocks may drift.
        const needed = this.#nodes.commandTimeoutMs + this.#redlock.driftMs;
        if (lock.remainingMs() <= needed) {
          throw new SemaphoreUnavailableError(
            `too little of the lock on ${workload} is left to write the slot safely (${Math.round(lock.remainingMs())} ms, ${needed} ms needed: the Redis timeout plus clock drift); raise --semaphore-lock-ttl or lower --redis-timeout`,
          );
        }
        await this.#beforeWrite?.(workload);
        const replies = await this.#nodes.each((client) =>
          client.eval(
            grantScript,
            2,
            this.slotsKey(workload),
            this.lockKey(workload),
            slot,
            leaseMs,
            lock.token,
          ),
        );
        const written = replies.filter((reply) => reply.ok && reply.value === 1).length;
        if (written < this.#nodes.quorum) {
          await this.release(workload, slot).catch(() => undefined);
          const fenced = replies.filter((reply) => reply.ok && reply.value === -1).length;
          if (fenced > 0) {
            throw new SemaphoreUnavailableError(
              `the lock on ${workload} was lost before the slot was written (${fenced} of ${this.#nodes.size} Redis nodes refused the stale lock token); the admission is retried`,
            );
          }
          this.#requireQuorum(replies, `write a slot for ${workload}`);
          throw new SemaphoreUnavailableError(
            `could not write a slot for ${workload} on a majority of the Redis nodes`,
          );
        }
        return { granted: true, held: held + 1 };
      });
    } catch (error) {
      if (error instanceof LockUnavailableError) {
        throw new SemaphoreUnavailableError(error.message, { cause: error });
      }
      throw error;
    }
  }

  /**
   * Extends a slot's lease. 'lost' when no node that answered still has it (it expired or was
   * released); nodes that lost it while others kept it get it back.
   */
  async renew(workload: string, slot: string, leaseMs: number): Promise<'renewed' | 'lost'> {
    const key = this.slotsKey(workload);
    const replies = await this.#nodes.each((client) => client.eval(renewScript, 1, key, slot, leaseMs));
    this.#requireQuorum(replies, `renew slot ${slot} of ${workload}`);
    if (!replies.some((reply) => reply.ok && reply.value === 1)) return 'lost';
    const missing = new Set(
      replies.filter((reply) => reply.ok && reply.value === 0).map((reply) => reply.node),
    );
    if (missing.size > 0) {
      await this.#nodes.each(async (client, node) =>
        missing.has(node) ? client.eval(restoreScript, 1, key, slot, leaseMs) : undefined,
      );
    }
    return 'renewed';
  }

  /** Counts a sidecar's lease overrun on every node that answers (see SlotLease). */
  async recordOverrun(): Promise<void> {
    const replies = await this.#nodes.each((client) => client.incr(`${this.#prefix}:lease-overruns`));
    this.#requireQuorum(replies, 'record a lease overrun');
  }

  /** Lease overruns recorded so far: the highest count any node that answered has. */
  async overruns(): Promise<number> {
    const replies = await this.#nodes.each((client) => client.get(`${this.#prefix}:lease-overruns`));
    return Math.max(0, ...replies.map((reply) => (reply.ok ? Number(reply.value ?? 0) : 0)));
  }

  /** Gives a slot back on every node that answers; needs no lock, since it only frees room. */
  async release(workload: string, slot: string): Promise<void> {
    const replies = await this.#nodes.each((client) => client.zrem(this.slotsKey(workload), slot));
    this.#requireQuorum(replies, `release slot ${slot} of ${workload}`);
  }

  #requireQuorum(replies: Array<NodeReply<unknown>>, what: string): void {
    const answered = replies.filter((reply) => reply.ok).length;
    if (answered >= this.#nodes.quorum) return;
    const failures = replies
      .filter((reply): reply is Extract<NodeReply<unknown>, { ok: false }> => !reply.ok)
      .map((reply) => `${reply.node}: ${reply.error.message}`);
    throw new SemaphoreUnavailableError(
      `could not ${what}: only ${answered} of ${this.#nodes.size} Redis nodes answered (a majority of ${this.#nodes.quorum} is needed; ${failures.join('; ')})`,
    );
  }
}
