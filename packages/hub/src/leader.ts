// Singleton work on one replica. Several hub processes may share one PostgreSQL; only the
// leader culls idle servers, checks the proxy's routes, polls spawners, finishes the pending
// actions of replicas that died, and (for spawners that have one) watches their servers.
//
// On PostgreSQL each replica keeps one connection of its own, outside the pool. On it the
// replica holds, for as long as it lives, a session-level advisory lock naming itself (class
// `replicaLockClass`, its key), so the others can see in pg_locks that it is alive. The leader
// is the holder of the lease — one row of `leadership_lease`, with an expiry in the database's
// clock — which it renews every interval. Every interval a follower tries the leader lock
// (`pg_try_advisory_lock(leaderLockKey)`, taken once and kept) and then the lease: it takes the
// lease when the lease has run out, or, holding the leader lock, when the lease is free or its
// holder is gone from pg_locks. Session locks end with their session: when a replica is killed
// (SIGKILL, OOM, a lost node) PostgreSQL drops both as soon as it sees the connection close, and
// a follower takes the leader lock and the lease at its next try. A leader whose session hangs
// without closing — a frozen proxy or NAT, the process stopped, its PostgreSQL backend stopped
// (whose locks then stay) — cannot renew, and a follower takes the lease once it has run out.
//
// The leader counts its term valid only for interval + timeout after the last renewal it sent,
// half the lease, and any error, timeout or closing of its connection ends the term at once:
// it has stopped before anyone else can lead. The session is also opened with
// `idle_session_timeout` = the lease, so PostgreSQL ends a session that stops asking.
//
// On SQLite the hub is one process, so it is always the leader.
//
// Use: `leadership.isLeader` for a check, `ifLeader(fn)` to run periodic work only on the
// leader, `whileLeader(begin)` for long-running work (a watch) that starts with each term and
// must end with it (the signal it gets aborts when the term ends), `on('change', fn)` for the
// transitions.
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from '@seahorse/runtime';
import { Counter, Gauge, type Registry } from '@seahorse/runtime/metrics';
import type pg from 'pg';
import type { Database } from './db/database.ts';
import type { PostgresDatabase } from './db/postgres.ts';

/** The bigint key of the leader lock (the migration lock is 7262011). */
export const leaderLockKey = 7262012;
/** The first key of the replicas' liveness locks (`pg_advisory_lock(int, int)`); the second is the replica's. */
export const replicaLockClass = 7262013;
/**
 * The class of the lock a replica that knows the lease holds beside its liveness lock (its key
 * second), so a session holding the leader lock without it is a hub of the previous version,
 * which leads by that lock alone.
 */
export const leaseAwareLockClass = 7262014;

/**
 * SQL: no hub of the previous version holds the leader lock — no session holds it without
 * also holding a lease-aware lock. Such a hub leads by the lock alone, and no lease may be
 * taken or kept beside it.
 */
const noOldLeader = `NOT EXISTS (
    SELECT 1 FROM pg_locks o
    WHERE o.locktype = 'advisory' AND o.classid = 0 AND o.objid = ${leaderLockKey}::bigint::oid
      AND o.objsubid = 1 AND o.granted
      AND o.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND NOT EXISTS (
        SELECT 1 FROM pg_locks m
        WHERE m.pid = o.pid AND m.locktype = 'advisory' AND m.classid = ${leaseAwareLockClass}::bigint::oid
          AND m.objsubid = 2 AND m.granted))`;

export interface LeadershipOptions {
  /** How often a follower tries to become the leader and the leader proves it still is. */
  intervalMs?: number;
  /** How long a leadership query may take before the term ends (and the session is dropped). */
  timeoutMs?: number;
  /** How long a replica must be missing before its pending work is taken over (PostgreSQL only). */
  goneAfterMs?: number;
}

interface Election {
  readonly replicaId: string;
  /** One round: is this replica the leader after it? Throws when the database cannot say. */
  /** One round: keeps the term, or (when `contend`) tries to take it. */
  campaign(contend: boolean): Promise<boolean>;
  /** The ids of the replicas alive now, this one included. */
  liveReplicas(): Promise<Set<string>>;
  /** Ends the session: the leader lock (if held) and the liveness lock go at once. */
  close(): Promise<void>;
}

/** SQLite: one hub process, always the leader. */
class SingleProcessElection implements Election {
  readonly replicaId = String(randomInt(1, 2 ** 31 - 1));
  async campaign(): Promise<boolean> {
    return true;
  }
  async liveReplicas(): Promise<Set<string>> {
    return new Set([this.replicaId]);
  }
  async close(): Promise<void> {}
}

class PostgresElection implements Election {
  readonly #db: PostgresDatabase;
  readonly #timeoutMs: number;
  readonly #leaseMs: number;
  readonly #onLost: (reason: string) => void;
  #key = randomInt(1, 2 ** 31 - 1);
  #client: pg.Client | undefined;
  #connecting: Promise<pg.Client> | undefined;
  #leading = false;
  /** Whether this session holds the leader lock (`leaderLockKey`); taken once, not stacked. */
  #holdsLock = false;
  #everConnected = false;
  #closed = false;

  constructor(db: PostgresDatabase, timeoutMs: number, leaseMs: number, onLost: (reason: string) => void) {
    this.#db = db;
    this.#timeoutMs = timeoutMs;
    this.#leaseMs = leaseMs;
    this.#onLost = onLost;
  }

  get replicaId(): string {
    return String(this.#key);
  }

  #session(): Promise<pg.Client> {
    if (this.#client) return Promise.resolve(this.#client);
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<pg.Client> {
    if (this.#closed) throw new Error('leadership stopped');
    const client = await this.#db.openSession('seahorse-hub leadership', this.#timeoutMs);
    try {
      // PostgreSQL ends this session (and frees its locks) once it has been idle for the lease:
      // a leader behind a connection that hangs without closing loses the lock. PostgreSQL
      // before 14 has no such setting; there only the TCP keepalives end a session.
      await client.query(`SET idle_session_timeout = ${Math.ceil(this.#leaseMs)}`).catch((error: unknown) => {
        if ((error as { code?: string }).code !== '42704') throw error;
      });
      for (let attempt = 0; ; attempt++) {
        const { rows } = await client.query<{ ok: boolean }>(
          'SELECT pg_try_advisory_lock($1::int, $2::int) AS ok',
          [replicaLockClass, this.#key],
        );
        if (rows[0]?.ok === true) break;
        // Our own earlier session, not yet ended by the server: our pending work still counts as
        // alive, and we wait for it to go rather than take another name.
        if (this.#everConnected) {
          throw new Error(`the previous database session of replica ${this.#key} has not ended yet`);
        }
        // Two replicas drew the same key (about 1 in 2^31): draw again before anything is named.
        if (attempt >= 3) throw new Error('no free replica key after 4 draws');
        this.#key = randomInt(1, 2 ** 31 - 1);
      }
      await client.query('SELECT pg_try_advisory_lock($1::int, $2::int)', [leaseAwareLockClass, this.#key]);
      // A new session of a replica whose term ended with its last one: a lease it still holds
      // is given back, so a replica holding the leader lock takes it at once.
      if (this.#everConnected) await client.query(releaseLease, [this.#key]);
    } catch (error) {
      void client.end().catch(() => undefined);
      throw error;
    }
    this.#everConnected = true;
    const lost = () => this.#drop(client, 'the leadership connection to PostgreSQL closed');
    client.once('end', lost);
    client.on('error', lost);
    this.#client = client;
    return client;
  }

  async #unlock(client: pg.Client): Promise<void> {
    if (!this.#holdsLock) return;
    await client.query('SELECT pg_advisory_unlock($1::bigint)', [leaderLockKey]);
    this.#holdsLock = false;
  }

  /** Forgets the session (ending it, so the server frees its locks) and, if it led, the term. */
  #drop(client: pg.Client, reason: string): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    this.#holdsLock = false;
    const wasLeading = this.#leading;
    this.#leading = false;
    void client.end().catch(() => undefined);
    if (wasLeading && !this.#closed) this.#onLost(reason);
  }

  async campaign(contend: boolean): Promise<boolean> {
    const client = await this.#session();
    try {
      const leaseSeconds = this.#leaseMs / 1000;
      if (!this.#holdsLock && (this.#leading || contend)) {
        const { rows } = await client.query<{ ok: boolean }>(
          'SELECT pg_try_advisory_lock($1::bigint) AS ok',
          [leaderLockKey],
        );
        this.#holdsLock = rows[0]?.ok === true;
      }
      if (this.#leading) {
        const { rows } = await client.query(renewLease, [this.#key, leaseSeconds]);
        if (rows.length === 0) {
          // Another replica holds the lease — it found ours run out (this replica's database
          // session hung for longer than the lease) — or a hub of the previous version took
          // the leader lock this replica did not hold. Let go of the lock as well.
          this.#leading = false;
          await this.#unlock(client);
          this.#onLost(
            'another replica took over the lease, or a hub of the previous version holds the leader lock',
          );
        }
        return this.#leading;
      }
      if (!contend) {
        await client.query('SELECT 1');
        return false;
      }
      const { rows } = await client.query(takeLease, [
        this.#key,
        leaseSeconds,
        replicaLockClass,
        this.#holdsLock,
        leaseSeconds / 2,
      ]);
      this.#leading = rows.length > 0;
      return this.#leading;
    } catch (error) {
      // A query that timed out may have left the lock ours on the server: ending the session frees it.
      this.#drop(client, `the leadership query failed: ${(error as Error).message}`);
      throw error;
    }
  }

  async liveReplicas(): Promise<Set<string>> {
    const client = await this.#session();
    const { rows } = await client.query<{ key: string }>(
      `SELECT objid::bigint::text AS key FROM pg_locks
       WHERE locktype = 'advisory' AND classid = $1::bigint::oid AND objsubid = 2 AND granted
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [replicaLockClass],
    );
    return new Set(rows.map((row) => row.key));
  }

  async close(): Promise<void> {
    this.#closed = true;
    const leading = this.#leading;
    this.#leading = false;
    const client = this.#client ?? (await this.#connecting?.catch(() => undefined));
    this.#client = undefined;
    if (!client) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      // The lease given back: another replica leads at its next try, not when it runs out.
      (leading ? client.query(releaseLease, [this.#key]).catch(() => undefined) : Promise.resolve())
        .then(() => client.end())
        .catch(() => undefined),
      new Promise((resolve) => {
        timer = setTimeout(resolve, this.#timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }
}

// The lease: one row, its holder (a replica's key), a term counter and when it runs out, in the
// database's clock. The leader renews it every interval; a contender takes it when it has run
// out — the holder's session hung, or its PostgreSQL backend is stopped, so no lock of it will
// ever be released — or, holding the leader lock, when it is free or its holder is gone from
// pg_locks (a dead replica: taken at once, without waiting for the lease). Holding the leader
// lock is also what keeps a hub of an earlier version, which knows only the lock, following.

/** The leader's renewal: still its own, for another lease from now. */
const renewLease = `UPDATE leadership_lease SET expires = clock_timestamp() + $2::float8 * interval '1 second'
  WHERE id = 1 AND holder = $1::bigint AND ${noOldLeader} RETURNING term`;

/**
 * A contender's take: its own already; run out; or — with the leader lock ($4) — free, or held
 * by a replica no longer alive whose last renewal is older than the holder's own term ($5, the
 * validity: half the lease). The holder's session may have been ended by PostgreSQL without
 * the holder hearing of it (a failover of PostgreSQL to another host, the server's keepalive
 * across a partition, a proxy restarted on the database side): the holder then still counts
 * its term until the validity has passed since its last renewal, and taking the lease sooner
 * makes two leaders. Never while a hub of the previous version holds the leader lock: it leads
 * by the lock alone (the leader renewing without the lock stops, at its next renewal, when such a
 * hub takes the lock). A row another session is changing is skipped, not waited for (it may be
 * a stopped backend's).
 */
const takeLease = `UPDATE leadership_lease SET holder = $1::bigint, term = term + 1,
    expires = clock_timestamp() + $2::float8 * interval '1 second'
  WHERE id = (
    SELECT l.id FROM leadership_lease l
    WHERE l.id = 1 AND ${noOldLeader} AND (
      l.holder = $1::bigint
      OR (l.holder IS NOT NULL AND l.expires < clock_timestamp())
      OR ($4::boolean AND (l.holder IS NULL OR (
        l.expires < clock_timestamp() + ($2::float8 - $5::float8) * interval '1 second'
        AND NOT EXISTS (
        SELECT 1 FROM pg_locks k
        WHERE k.locktype = 'advisory' AND k.classid = $3::bigint::oid AND k.objid::bigint = l.holder
          AND k.objsubid = 2 AND k.granted
          AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database()))))))
    FOR UPDATE SKIP LOCKED)
  RETURNING term`;

const releaseLease =
  'UPDATE leadership_lease SET holder = NULL, expires = NULL WHERE id = 1 AND holder = $1::bigint';

/** What other parts (spawners, watches) see of the leadership. */
export type LeaderView = Pick<Leadership, 'replicaId' | 'isLeader' | 'signal' | 'ifLeader' | 'whileLeader'>;

export class Leadership extends EventEmitter<{ change: [leader: boolean] }> {
  readonly #election: Election;
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #goneAfterMs: number;
  readonly #gauge: Gauge;
  readonly #terms: Counter;
  readonly #missingSince = new Map<string, number>();
  #leader = false;
  #term = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #failing = false;
  #stopped = false;
  /** PostgreSQL: how long after the last proof was sent the term still counts (interval + timeout). */
  readonly #validityMs: number;
  /** When the last successful round began (performance.now()). */
  #provenAt = 0;
  #expiry: NodeJS.Timeout | undefined;
  /** A replica whose term just broke waits two rounds before it contends again: a healthy one takes over. */
  #standDownUntil = 0;

  constructor(db: Database, log: Logger, registry: Registry, options: LeadershipOptions = {}) {
    super();
    this.#log = log.child({ component: 'leadership' });
    this.#intervalMs = options.intervalMs ?? 1000;
    const timeoutMs = options.timeoutMs ?? 2000;
    const shared = db.dialect === 'postgres' && 'openSession' in db;
    this.#goneAfterMs = shared ? (options.goneAfterMs ?? 3000) : 0;
    this.#validityMs = shared ? this.#intervalMs + timeoutMs : Number.POSITIVE_INFINITY;
    this.#election = shared
      ? new PostgresElection(db as unknown as PostgresDatabase, timeoutMs, 2 * this.#validityMs, (reason) =>
          this.#set(false, reason),
        )
      : new SingleProcessElection();
    this.#term.abort();
    this.#gauge = new Gauge({
      name: 'seahorse_hub_leader',
      help: 'Whether this hub replica is the leader, which runs the singleton work (1) or not (0)',
      registers: [registry],
    });
    this.#gauge.set(0);
    this.#terms = new Counter({
      name: 'seahorse_hub_leader_terms_total',
      help: 'Times this hub replica became the leader',
      registers: [registry],
    });
  }

  /** This replica's name in the database (the owner of the pending actions it runs). */
  get replicaId(): string {
    return this.#election.replicaId;
  }

  get isLeader(): boolean {
    this.#expire();
    return this.#leader;
  }

  /**
   * Ends a term whose last proof is older than the validity: the database could not be asked
   * in time (a hung connection, this process stopped and resumed), so another replica may be
   * about to lead. Checked by a timer and, since timers may run late, wherever the term is read.
   */
  #expire(): void {
    if (this.#leader && performance.now() - this.#provenAt >= this.#validityMs) {
      this.#set(false, `the leadership could not be proven for ${this.#validityMs / 1000} s`);
    }
  }

  /** Aborted when the current term ends; already aborted while this replica is not the leader. */
  get signal(): AbortSignal {
    return this.#term.signal;
  }

  /** Takes part: one round now (so a lone hub is the leader before it serves), then one per interval. */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#tick();
    if (!this.#leader)
      this.#log.info({ replica: this.replicaId, leader: false }, 'another replica is the leader; following');
    this.#timer = setInterval(() => void this.#tick(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Leaves: the term ends here and the database session closes, so another replica leads at its next try. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#expiry);
    await this.#ticking;
    this.#set(false, 'stopping');
    await this.#election.close();
  }

  /** Runs `work` if this replica is the leader now; its signal aborts when the term ends. */
  async ifLeader<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T | undefined> {
    if (!this.isLeader) return undefined;
    return work(this.#term.signal);
  }

  /**
   * Calls `begin` at the start of every term of this replica (now, if it leads already) with a
   * signal that aborts when that term ends: where a long-running job (a watch) starts and stops.
   * Returns a function that unsubscribes.
   */
  whileLeader(begin: (signal: AbortSignal) => unknown): () => void {
    const onChange = (leader: boolean) => {
      if (!leader) return;
      try {
        const result = begin(this.#term.signal);
        if (result instanceof Promise) {
          result.catch((error: unknown) => this.#log.error({ err: error }, 'leader work failed'));
        }
      } catch (error) {
        this.#log.error({ err: error }, 'leader work failed');
      }
    };
    this.on('change', onChange);
    if (this.#leader) onChange(true);
    return () => this.off('change', onChange);
  }

  /** The replicas alive now (their ids), this one included. */
  liveReplicas(): Promise<Set<string>> {
    return this.#election.liveReplicas();
  }

  /**
   * Which of `owners` are gone: no replica of that id has been alive for `goneAfterMs` (a
   * replica that reconnects after a blip keeps its work). null and '' (nobody recorded) are gone.
   */
  async goneOwners(owners: Iterable<string | null>): Promise<Set<string>> {
    const live = await this.#election.liveReplicas();
    // Monotonic: a step of the wall clock (NTP) must not make a replica that only blinked count as gone.
    const now = performance.now();
    const gone = new Set<string>();
    const asked = new Set<string>();
    for (const owner of owners) {
      const id = owner ?? '';
      asked.add(id);
      if (id === '') {
        gone.add(id);
      } else if (live.has(id)) {
        this.#missingSince.delete(id);
      } else {
        const since = this.#missingSince.get(id) ?? now;
        this.#missingSince.set(id, since);
        if (now - since >= this.#goneAfterMs) gone.add(id);
      }
    }
    for (const id of this.#missingSince.keys()) if (!asked.has(id)) this.#missingSince.delete(id);
    return gone;
  }

  #tick(): Promise<void> {
    this.#ticking ??= (async () => {
      try {
        const began = performance.now();
        const leading = await this.#election.campaign(began >= this.#standDownUntil);
        if (leading) {
          this.#provenAt = began;
          if (Number.isFinite(this.#validityMs)) {
            clearTimeout(this.#expiry);
            this.#expiry = setTimeout(
              () => this.#expire(),
              Math.max(0, began + this.#validityMs - performance.now()),
            );
            this.#expiry.unref();
          }
        }
        if (this.#failing)
          this.#log.info({ replica: this.replicaId }, 'leadership: the database answers again');
        this.#failing = false;
        if (!this.#stopped) this.#set(leading);
      } catch (error) {
        if (!this.#failing && !this.#stopped) {
          this.#log.warn({ err: error, replica: this.replicaId }, 'leadership: the database does not answer');
        }
        this.#failing = true;
        this.#set(false, 'the database does not answer');
      } finally {
        this.#ticking = undefined;
      }
    })();
    return this.#ticking;
  }

  #set(leader: boolean, reason?: string): void {
    if (leader === this.#leader) return;
    this.#leader = leader;
    this.#gauge.set(leader ? 1 : 0);
    if (leader) {
      this.#term = new AbortController();
      // The term's signal answers `aborted` as `isLeader` does, checking the term's validity at
      // the read: after the event loop stalled past the term inside a batch of I/O callbacks (a
      // long synchronous step, a GC pause, CPU starvation), the rest of the batch runs before
      // the expiry timer, and work continuing there (a cull pass at its next server, a watch)
      // must see the term over at once. (After a SIGSTOP, libuv's poll returns EINTR and the
      // due timers run first; the leadership query's own timeout then also ends a round whose
      // answer arrived while the process was stopped.)
      const signal = this.#term.signal;
      const aborted = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted')?.get;
      if (aborted) {
        Object.defineProperty(signal, 'aborted', {
          configurable: true,
          get: () => {
            if (!aborted.call(signal) && signal === this.#term.signal) this.#expire();
            return aborted.call(signal);
          },
        });
      }
      this.#terms.inc();
      this.#log.info({ replica: this.replicaId, leader: true }, 'this replica is now the leader');
    } else {
      this.#term.abort();
      if (reason !== 'stopping') this.#standDownUntil = performance.now() + 2 * this.#intervalMs;
      const fields = { replica: this.replicaId, leader: false, reason };
      if (reason === 'stopping') this.#log.info(fields, 'this replica is no longer the leader');
      else this.#log.warn(fields, 'this replica is no longer the leader');
    }
    try {
      this.emit('change', leader);
    } catch (error) {
      this.#log.error({ err: error }, 'a leadership listener failed');
    }
  }
}
