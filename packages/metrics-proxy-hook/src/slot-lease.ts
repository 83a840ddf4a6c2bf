// The sidecar's side of the semaphore: keep the pod's slot alive while the pod runs, give it
// back when the pod terminates. A pod that crashes stops renewing and its slot expires. The
// renewals go through a LeaseBackend: the webhook's lease endpoint (lease-client.ts) in a pod,
// or the semaphore itself in-process (lease-service.ts).
import { performance } from 'node:perf_hooks';
import type { Logger } from '@seahorse/runtime';
import { maxGraceMs } from './lease-token.ts';
import { SemaphoreUnavailableError } from './semaphore.ts';

export interface SlotIdentity {
  workload: string;
  slot: string;
  leaseMs: number;
  /** The grant's fencing version, from the admission; renewals and the release name it. */
  version: string;
}

/** What a renewal found. */
export type RenewOutcome =
  | { state: 'renewed'; version: string }
  /** The lease had lapsed and the slot was taken again (room under the limit). */
  | { state: 'retaken'; version: string; held: number; limit: number }
  /** The lease had lapsed and the workload is at its limit: the pod runs without a slot. */
  | { state: 'full'; held: number; limit: number }
  /** The slot id was released for good (reclaimed): it is never renewed or taken again. */
  | { state: 'retired' };

export interface LeaseBackend {
  /**
   * Renews the lease (taking the slot again when it lapsed and there is room). `overrun` reports
   * a lease overrun this process saw; `overrunRecorded` says it was counted.
   */
  renew(version: string, overrun: boolean): Promise<RenewOutcome & { overrunRecorded: boolean }>;
  /** Leases the slot for `holdMs` from now, without taking it again if it is gone. */
  hold(version: string, holdMs: number): Promise<'held' | 'gone' | 'retired'>;
  /** Gives the slot back for good. */
  release(version: string): Promise<void>;
}

/** Errors that mean "the semaphore cannot be reached now" (retried quietly, at warn level). */
export function isTransient(error: unknown): boolean {
  return (
    error instanceof SemaphoreUnavailableError ||
    (error as { code?: unknown } | null)?.code === 'METRICS_PROXY_LEASE_UNAVAILABLE'
  );
}

export class SlotLease {
  readonly #backend: LeaseBackend;
  readonly #identity: SlotIdentity;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<void> = Promise.resolve();
  #stopped = false;
  #renewals = 0;
  /** Attempts that failed since the last success (logged again when one succeeds). */
  #failures = 0;
  /** performance.now() when the slot was last known held (start, or a successful renewal). */
  #heldAt = performance.now();
  #overruns = 0;
  /** An overrun was reported and the slot is not held again yet: one report per episode. */
  #overrunReported = false;
  /** An overrun seen here and not yet counted by the semaphore (sent with the next renewal). */
  #overrunPending = false;
  #retiredLogged = false;
  /** performance.now() at start(); until the first renewal, the slot rides on its admission lease. */
  #startedAt = performance.now();
  #neverRenewedLogged = false;
  /** The version this process holds the slot under; a new one after taking it again. */
  #version: string;

  constructor(backend: LeaseBackend, identity: SlotIdentity, log: Logger) {
    this.#backend = backend;
    this.#identity = identity;
    this.#log = log.child({ workload: identity.workload, slot: identity.slot });
    this.#version = identity.version;
  }

  /** Successful renewals so far. */
  get renewals(): number {
    return this.#renewals;
  }

  /** Times this process found it had gone longer than its lease without renewing. */
  get overruns(): number {
    return this.#overruns;
  }

  /** Renews now (shortening the long admission lease to the running lease), then every third of it. */
  start(): void {
    this.#heldAt = performance.now();
    this.#startedAt = this.#heldAt;
    this.#run();
  }

  /**
   * Stops renewing and gives the slot back: at once, or with `holdMs`, by leaving it leased for
   * that long (the rest of the pod's grace period, while its application may still run).
   */
  async stop(holdMs = 0): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#inFlight;
    if (holdMs >= 1) {
      await this.#hold(performance.now() + holdMs);
      return;
    }
    try {
      await this.#backend.release(this.#version);
      this.#log.info('semaphore slot released');
    } catch (error) {
      this.#log.warn(
        { err: (error as Error).message },
        'releasing the slot failed; it expires with its lease',
      );
    }
  }

  /**
   * Leases the slot until `until` (performance.now() time). A webhook that does not answer now
   * (a replica restarting in the same node drain, Redis without a majority) is asked again until
   * one does or the time is up: given up, the slot would lapse with its running lease while the
   * application may still drain, and another pod could be admitted beside it, uncounted.
   */
  async #hold(until: number): Promise<void> {
    const retryMs = Math.max(100, Math.min(1000, Math.floor(this.#identity.leaseMs / 10)));
    let failures = 0;
    for (;;) {
      // The webhook holds at most a year (maxGraceMs), and larger numbers would not be whole.
      const ms = Math.min(Math.ceil(until - performance.now()), maxGraceMs);
      if (ms < 1) break;
      try {
        const held = await this.#backend.hold(this.#version, ms);
        if (held === 'held') {
          this.#log.info(
            { holdMs: ms, ...(failures > 0 ? { failedAttempts: failures } : {}) },
            "semaphore slot held until the pod's grace period ends",
          );
        } else this.#log.warn('the semaphore slot was already gone when this sidecar stopped');
        return;
      } catch (error) {
        failures++;
        const entry = { err: (error as Error).message };
        if (!isTransient(error)) {
          this.#log.warn(
            entry,
            'holding the slot to the end of the grace period failed; it expires with its lease',
          );
          return;
        }
        if (failures === 1) {
          this.#log.warn(entry, 'holding the slot to the end of the grace period failed; retrying');
        }
      }
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(retryMs, Math.max(0, until - performance.now()))),
      );
    }
    this.#log.warn(
      { failedAttempts: failures },
      'holding the slot failed until the grace period ended; it expires with its lease',
    );
  }

  #run(): void {
    if (this.#stopped) return;
    this.#inFlight = this.#renew().finally(() => {
      if (this.#stopped) return;
      this.#timer = setTimeout(() => this.#run(), Math.max(100, Math.floor(this.#identity.leaseMs / 3)));
    });
  }

  async #renew(): Promise<void> {
    const { leaseMs } = this.#identity;
    const attemptAt = performance.now();
    // Renewals come every third of the lease; a gap longer than the lease means this process
    // was frozen (SIGSTOP, a stalled node) or cut off, and its slot may have gone to another
    // pod meanwhile. The limit may then have been exceeded: say so, never silently.
    const gapMs = attemptAt - this.#heldAt;
    if (this.#renewals > 0 && gapMs > leaseMs) {
      this.#reportOverrun(
        gapMs,
        'slot lease overran: this process went longer than its lease without renewing (frozen, or cut off from the webhook or Redis); another pod may have taken the slot, so the workload may have run more pods than its limit',
      );
    }
    // Never renewed, and failing for longer than a lease: the slot lives on its admission lease
    // (--semaphore-admission-ttl, which this process does not know) and then lapses while the
    // pod runs. A pod that cannot reach the webhook at all (an egress NetworkPolicy in its
    // namespace) would otherwise only ever log retries.
    const sinceStartMs = attemptAt - this.#startedAt;
    if (this.#renewals === 0 && this.#failures > 0 && sinceStartMs > leaseMs && !this.#neverRenewedLogged) {
      this.#neverRenewedLogged = true;
      this.#log.error(
        { sinceStartedMs: Math.round(sinceStartMs), failedAttempts: this.#failures },
        'no renewal of the semaphore slot has succeeded since this sidecar started: the slot lapses when its admission lease runs out, and the workload may then run more pods than its limit; check that this pod can reach the webhook',
      );
    }
    try {
      const result = await this.#backend.renew(this.#version, this.#overrunPending);
      if (result.overrunRecorded) this.#overrunPending = false;
      if (this.#failures > 0 && result.state !== 'retired') {
        this.#log.info({ failedAttempts: this.#failures }, 'semaphore slot lease renewed again');
      }
      this.#failures = 0;
      if (result.state === 'renewed') {
        this.#held(attemptAt, result.version);
        if (this.#renewals === 1) this.#log.info({ leaseMs }, 'semaphore slot lease renewed');
        return;
      }
      if (result.state === 'retaken') {
        this.#log.warn('semaphore slot lease lost (expired or released); taking a slot again');
        // Its admission lease ran out while this process could not renew (the gap check above
        // covers every later renewal): the pod ran without a slot meanwhile.
        if (this.#renewals === 0 && this.#neverRenewedLogged) {
          this.#reportOverrun(
            sinceStartMs,
            'slot lease overran: this pod ran without its slot (its admission lease ran out before this sidecar could renew it), so the workload may have run more pods than its limit',
          );
        }
        this.#held(attemptAt, result.version);
        this.#log.info({ held: result.held, limit: result.limit }, 'semaphore slot taken again');
        return;
      }
      if (result.state === 'full') {
        this.#log.warn('semaphore slot lease lost (expired or released); taking a slot again');
        this.#log.error(
          { held: result.held, limit: result.limit },
          'the workload is at its limit and this pod lost its slot; it runs on without one and retries',
        );
        // This pod runs while `held` others hold every slot: the limit is exceeded now, whatever
        // the cause (a lease that ran out before the sidecar first ran, a crash-looping sidecar,
        // a freeze, an outage). Counted like a freeze, once until the slot is held again.
        this.#reportOverrun(
          attemptAt - this.#heldAt,
          'slot lease overran: this pod lost its slot and the workload is at its limit, so it runs beyond the limit (its lease ran out before the sidecar ran or while it was down, frozen or cut off)',
        );
        return;
      }
      // Retired: the slot was reclaimed for good (the API server did not show this pod). It
      // cannot be had again; the pod runs on uncounted, which is an overrun too.
      if (!this.#retiredLogged) {
        this.#retiredLogged = true;
        this.#log.error(
          'the semaphore slot was released for good (reclaimed while this pod still runs); it runs on without one',
        );
      }
      this.#reportOverrun(
        attemptAt - this.#heldAt,
        'slot lease overran: this pod runs without a slot (its slot was reclaimed), so the workload may run more pods than its limit',
      );
    } catch (error) {
      this.#failures++;
      const entry = { err: (error as Error).message };
      if (isTransient(error)) this.#log.warn(entry, 'renewing the semaphore slot failed; retrying');
      else this.#log.error(entry, 'renewing the semaphore slot failed unexpectedly; retrying');
    }
  }

  #held(at: number, version: string): void {
    this.#version = version;
    this.#heldAt = at;
    this.#renewals++;
    this.#overrunReported = false;
  }

  #reportOverrun(gapMs: number, message: string): void {
    if (this.#overrunReported) return;
    this.#overrunReported = true;
    this.#overruns++;
    this.#log.error({ sinceRenewedMs: Math.round(gapMs), leaseMs: this.#identity.leaseMs }, message);
    // Counted by the semaphore (the webhook's seahorse_metrics_proxy_hook_lease_overruns): sent
    // with the next renewal, and again with each one until the count is confirmed.
    this.#overrunPending = true;
  }
}
