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

// Keeps the whole table, and the slots' versions, from outliving its last lease.
const expireWithLastLease = (slots: string, versions: string) => `
local last = redis.call('ZRANGE', ${slots}, -1, -1, 'WITHSCORES')
if last[2] then
  local at = string.format('%.0f', tonumber(last[2]))
  redis.call('PEXPIREAT', ${slots}, at)
  redis.call('PEXPIREAT', ${versions}, at)
end`;

// Drops expired slots and their versions.
const dropExpired = `
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, member in ipairs(expired) do redis.call('HDEL', KEYS[2], member) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)`;

/** KEYS: slots, versions. Returns member, milliseconds left, version, member, ... */
const liveSlotsScript = `${now}
${dropExpired}
local slots = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #slots, 2 do
  out[#out + 1] = slots[i]
  out[#out + 1] = string.format('%.0f', tonumber(slots[i + 1]) - now)
  out[#out + 1] = redis.call('HGET', KEYS[2], slots[i]) or ''
end
return out`;

/**
 * KEYS: slots, lock, versions, retired. ARGV: slot, lease ms, lock token (also the slot's new
 * version). Fenced: the node writes only while it still holds our lock token, so a writer that
 * paused past its lock's validity (GC, SIGSTOP, a slow network) and lost the lock to another
 * writer cannot add a slot behind its back. A retired slot id (released for good) is never
 * granted again: -3.
 */
const grantScript = `${now}
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return -1 end
if redis.call('EXISTS', KEYS[4]) == 1 then return -3 end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
${expireWithLastLease('KEYS[1]', 'KEYS[3]')}
return 1`;

/**
 * KEYS: slots, versions, retired. ARGV: slot, lease ms, version. Puts a slot that a majority
 * still holds at this version back on a node that lost it (a restart); never over another
 * version, never a retired one.
 */
const restoreScript = `${now}
if redis.call('EXISTS', KEYS[3]) == 1 then return -3 end
${dropExpired}
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current and current ~= ARGV[3] then return -2 end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
${expireWithLastLease('KEYS[1]', 'KEYS[2]')}
return 1`;

/**
 * KEYS: slots, versions, retired. ARGV: slot, lease ms, version. Extends a live slot of this
 * version only (compare-and-set): renewing never creates a slot, and a holder whose slot was
 * granted again since (another version) cannot extend it. 0: gone here; -2: another version;
 * -3: retired (released for good).
 */
const renewScript = `${now}
if redis.call('EXISTS', KEYS[3]) == 1 then return -3 end
${dropExpired}
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then return -2 end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
${expireWithLastLease('KEYS[1]', 'KEYS[2]')}
return 1`;

/**
 * KEYS: slots, versions, retired, held. ARGV: slot, hold ms, version, held-marker ms. A hold: the
 * renewal's compare-and-set, but the first hold of a slot id fixes its deadline (kept in `held`,
 * by the node's clock) and later holds never go past it. Otherwise a token holder repeating holds
 * would keep a gone pod's slot leased far past its grace period, each time longer than slot
 * reclaim's age threshold, so reclaim would never take it. -4: the first hold's deadline has
 * passed (nothing written).
 */
const holdScript = `${now}
if redis.call('EXISTS', KEYS[3]) == 1 then return -3 end
${dropExpired}
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then return -2 end
local deadline = now + tonumber(ARGV[2])
local first = redis.call('GET', KEYS[4])
if first then
  if tonumber(first) <= now then return -4 end
  deadline = math.min(deadline, tonumber(first))
else
  redis.call('SET', KEYS[4], string.format('%.0f', deadline), 'PX', ARGV[4])
end
redis.call('ZADD', KEYS[1], string.format('%.0f', deadline), ARGV[1])
${expireWithLastLease('KEYS[1]', 'KEYS[2]')}
return 1`;

/**
 * KEYS: slots, versions, retired. ARGV: slot, version ('' for any), retire ms ('0': no).
 * Compare-and-delete: a stale release (a retried request, a writer cleaning up after a failed
 * grant) never frees a slot that was granted again since under another version. Retiring
 * marks the slot id as released for good first, whatever the version: its token can then
 * neither renew it nor take it again. Retiring a retired id changes nothing: -3.
 */
const releaseScript = `
if ARGV[3] ~= '0' then
  if redis.call('EXISTS', KEYS[3]) == 1 then return -3 end
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
end
local current = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[2] ~= '' and current and current ~= ARGV[2] then return -2 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1`;

/** The semaphore could not decide: too few Redis nodes answered, or the lock stayed busy. */
export class SemaphoreUnavailableError extends SeahorseError {
  constructor(message: string, options?: ErrorOptions) {
    super('SEMAPHORE_UNAVAILABLE', message, options);
  }
}

/**
 * The slot id was released for good (by its pod, or reclaimed once its pod was gone): it is
 * never renewed or granted again. A 503 at admission (never expected: slot ids are new uids).
 */
export class SlotRetiredError extends SemaphoreUnavailableError {
  readonly workload: string;
  readonly slot: string;
  constructor(workload: string, slot: string) {
    super(
      `slot ${slot} of ${workload} was released for good (by its pod, or reclaimed once its pod was gone); it cannot be renewed or taken again`,
    );
    this.workload = workload;
    this.slot = slot;
  }
}

/** How long a released slot id stays retired: its token is refused at least this long. */
export const defaultRetiredRetentionMs = 7 * 24 * 3600 * 1000;

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

export type AcquireResult =
  | {
      granted: true;
      held: number;
      /** The grant's fencing version: renew and release must name it ('' for a dry run). */
      version: string;
    }
  | { granted: false; held: number; limit: number };

/** A slot as a majority of the nodes report it. */
export interface SlotHolders {
  /** Every live slot any answering node reports, with the longest lease left. */
  all: Map<string, number>;
  /** How many answering nodes report each slot, and under which version most of them do. */
  copies: Map<string, { nodes: number; version: string }>;
}

export interface SemaphoreOptions {
  lock: RedlockOptions;
  /** Prefix of every key, so one Redis can serve several installations. */
  keyPrefix?: string;
  /**
   * Runs between the validity check and the write. Tests put a pause here (what a GC pause or
   * a frozen process does) to prove the write is fenced.
   */
  beforeWrite?: (workload: string) => Promise<void>;
  /** How long a retired slot id is remembered (default 7 days). */
  retiredRetentionMs?: number;
}

export class RedisSemaphore {
  readonly #nodes: RedisNodes;
  readonly #redlock: Redlock;
  readonly #prefix: string;
  readonly #beforeWrite: SemaphoreOptions['beforeWrite'];
  readonly #retiredRetentionMs: number;

  constructor(nodes: RedisNodes, options: SemaphoreOptions) {
    this.#nodes = nodes;
    this.#beforeWrite = options.beforeWrite;
    this.#retiredRetentionMs = options.retiredRetentionMs ?? defaultRetiredRetentionMs;
    this.#redlock = new Redlock(nodes, options.lock);
    this.#prefix = options.keyPrefix ?? 'seahorse:metrics-proxy-hook';
  }

  slotsKey(workload: string): string {
    return `${this.#prefix}:slots:${workload}`;
  }

  lockKey(workload: string): string {
    return `${this.#prefix}:lock:${workload}`;
  }

  versionsKey(workload: string): string {
    return `${this.#prefix}:versions:${workload}`;
  }

  /** The deadline of a slot id's first hold: later holds never extend past it. */
  heldKey(workload: string, slot: string): string {
    return `${this.#prefix}:held:${workload}#${slot}`;
  }

  /** Present while a slot id is retired (released for good). */
  retiredKey(workload: string, slot: string): string {
    return `${this.#prefix}:retired:${workload}#${slot}`;
  }

  /** Live slots and the longest lease left on any node that answered. */
  async holders(workload: string): Promise<Map<string, number>> {
    return (await this.#read(workload)).all;
  }

  async #read(workload: string): Promise<SlotHolders> {
    const replies = await this.#nodes.each(
      (client) =>
        client.eval(liveSlotsScript, 2, this.slotsKey(workload), this.versionsKey(workload)) as Promise<
          string[]
        >,
    );
    this.#requireQuorum(replies, `read the slots of ${workload}`);
    const all = new Map<string, number>();
    const versions = new Map<string, Map<string, number>>();
    for (const reply of replies) {
      if (!reply.ok) continue;
      for (let i = 0; i + 2 < reply.value.length; i += 3) {
        const slot = reply.value[i]!;
        all.set(slot, Math.max(all.get(slot) ?? 0, Number(reply.value[i + 1])));
        const counts = versions.get(slot) ?? new Map<string, number>();
        const version = reply.value[i + 2]!;
        counts.set(version, (counts.get(version) ?? 0) + 1);
        versions.set(slot, counts);
      }
    }
    const copies = new Map<string, { nodes: number; version: string }>();
    for (const [slot, counts] of versions) {
      const [version, nodes] = [...counts].sort((a, b) => b[1] - a[1])[0]!;
      copies.set(slot, { nodes, version });
    }
    return { all, copies };
  }

  /** Grants a slot if the workload holds fewer than `limit`; asking again for a held slot succeeds. */
  async acquire(request: SlotRequest): Promise<AcquireResult> {
    const { workload, slot, limit, leaseMs } = request;
    try {
      return await this.#redlock.using(this.lockKey(workload), async (lock) => {
        const { all, copies } = await this.#read(workload);
        // A retried admission (same uid) finds its own slot: granted again, nothing written.
        // Only where a majority holds it under one version: a copy left on a minority (a write
        // that reached too few nodes, a node that missed a release or lags in time) is no
        // grant, and is written again below only if there is room without it.
        const own = copies.get(slot);
        if (own && own.nodes >= this.#nodes.quorum && own.version !== '') {
          return { granted: true, held: all.size, version: own.version };
        }
        const others = all.size - (all.has(slot) ? 1 : 0);
        if (others >= limit) return { granted: false, held: others, limit };
        if (request.dryRun) return { granted: true, held: others + 1, version: '' };
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
            4,
            this.slotsKey(workload),
            this.lockKey(workload),
            this.versionsKey(workload),
            this.retiredKey(workload, slot),
            slot,
            leaseMs,
            lock.token,
          ),
        );
        const written = replies.filter((reply) => reply.ok && reply.value === 1).length;
        if (written < this.#nodes.quorum) {
          if (replies.some((reply) => reply.ok && reply.value === -3)) {
            await this.release(workload, slot, lock.token).catch(() => undefined);
            throw new SlotRetiredError(workload, slot);
          }
          // Only our own version: a retry of this admission on another replica may have
          // granted the same slot id meanwhile, and that grant stands.
          await this.release(workload, slot, lock.token).catch(() => undefined);
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
        return { granted: true, held: others + 1, version: lock.token };
      });
    } catch (error) {
      if (error instanceof LockUnavailableError) {
        throw new SemaphoreUnavailableError(error.message, { cause: error });
      }
      throw error;
    }
  }

  /**
   * Extends a slot's lease, if a majority of the nodes still hold it under `version`.
   * 'lost' otherwise: it expired or was released on a majority, or was granted again under
   * another version. A renewal that lands on a minority only is no renewal: a reader asking
   * the other majority has already counted the slot free and may have granted it. Nodes that
   * lost the slot while a majority kept it get it back. 'retired' when any node that answered
   * has the slot id retired (released for good): it is never renewed again.
   */
  async renew(
    workload: string,
    slot: string,
    version: string,
    leaseMs: number,
  ): Promise<'renewed' | 'lost' | 'retired'> {
    const keys = [this.slotsKey(workload), this.versionsKey(workload), this.retiredKey(workload, slot)];
    const replies = await this.#nodes.each((client) =>
      client.eval(renewScript, 3, ...keys, slot, leaseMs, version),
    );
    this.#requireQuorum(replies, `renew slot ${slot} of ${workload}`);
    if (replies.some((reply) => reply.ok && reply.value === -3)) return 'retired';
    const renewed = replies.filter((reply) => reply.ok && reply.value === 1).length;
    if (renewed < this.#nodes.quorum) return 'lost';
    const missing = new Set(
      replies.filter((reply) => reply.ok && reply.value === 0).map((reply) => reply.node),
    );
    if (missing.size > 0) {
      await this.#nodes.each(async (client, node) =>
        missing.has(node) ? client.eval(restoreScript, 3, ...keys, slot, leaseMs, version) : undefined,
      );
    }
    return 'renewed';
  }

  /**
   * Leases a slot for `holdMs` from now, like renew (a majority under `version`, never taking
   * it again), but never past the deadline of the slot id's first hold: a stopping sidecar holds
   * once, to its pod's grace period's end, and repeating the hold (a replayed token) cannot
   * stretch that. 'spent' once that deadline has passed.
   */
  async hold(
    workload: string,
    slot: string,
    version: string,
    holdMs: number,
  ): Promise<'held' | 'lost' | 'retired' | 'spent'> {
    const keys = [
      this.slotsKey(workload),
      this.versionsKey(workload),
      this.retiredKey(workload, slot),
      this.heldKey(workload, slot),
    ];
    const replies = await this.#nodes.each((client) =>
      client.eval(holdScript, 4, ...keys, slot, holdMs, version, this.#retiredRetentionMs),
    );
    this.#requireQuorum(replies, `hold slot ${slot} of ${workload}`);
    if (replies.some((reply) => reply.ok && reply.value === -3)) return 'retired';
    const held = replies.filter((reply) => reply.ok && reply.value === 1).length;
    if (held >= this.#nodes.quorum) return 'held';
    const spent = replies.filter((reply) => reply.ok && reply.value === -4).length;
    return spent > 0 ? 'spent' : 'lost';
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

  /**
   * Gives a slot back on every node that answers; needs no lock, since it only frees room.
   * With `version`, only that grant of the slot (compare-and-delete); without, any (reclaim).
   * With `retire`, the slot id is also marked released for good (a pod's own release, a
   * reclaim): renewals and grants of it are refused from then on, so a token replayed after
   * its pod is gone changes nothing.
   */
  async release(
    workload: string,
    slot: string,
    version = '',
    { retire = false } = {},
  ): Promise<'released' | 'retired'> {
    const replies = await this.#nodes.each((client) =>
      client.eval(
        releaseScript,
        3,
        this.slotsKey(workload),
        this.versionsKey(workload),
        this.retiredKey(workload, slot),
        slot,
        version,
        retire ? this.#retiredRetentionMs : 0,
      ),
    );
    this.#requireQuorum(replies, `release slot ${slot} of ${workload}`);
    // Retired before on a majority: released already (a replay), nothing was written there.
    const retired = replies.filter((reply) => reply.ok && reply.value === -3).length;
    return retired >= this.#nodes.quorum ? 'retired' : 'released';
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
