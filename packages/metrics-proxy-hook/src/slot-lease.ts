// The sidecar's side of the semaphore: keep the pod's slot alive while the pod runs, give it
// back when the pod terminates. A pod that crashes stops renewing and its slot expires.
import { performance } from 'node:perf_hooks';
import type { Logger } from '@seahorse/runtime';
import { type RedisSemaphore, SemaphoreUnavailableError } from './semaphore.ts';

export interface SlotIdentity {
  workload: string;
  slot: string;
  limit: number;
  leaseMs: number;
  /** The grant's fencing version, from the admission; renewals and the release name it. */
  version: string;
}

export class SlotLease {
  readonly #semaphore: RedisSemaphore;
  readonly #identity: SlotIdentity;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<void> = Promise.resolve();
  #stopped = false;
  #renewals = 0;
  /** performance.now() when the slot was last known held (start, or a successful renewal). */
  #heldAt = performance.now();
  #overruns = 0;
  /** An overrun was reported and the slot is not held again yet: one report per episode. */
  #overrunReported = false;
  /** The version this process holds the slot under; a new one after taking it again. */
  #version: string;

  constructor(semaphore: RedisSemaphore, identity: SlotIdentity, log: Logger) {
    this.#semaphore = semaphore;
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
      try {
        const { workload, slot } = this.#identity;
        const held = await this.#semaphore.renew(workload, slot, this.#version, Math.ceil(holdMs));
        if (held === 'renewed') {
          this.#log.info(
            { holdMs: Math.ceil(holdMs) },
            "semaphore slot held until the pod's grace period ends",
          );
        } else this.#log.warn('the semaphore slot was already gone when this sidecar stopped');
      } catch (error) {
        this.#log.warn(
          { err: (error as Error).message },
          'holding the slot to the end of the grace period failed; it expires with its lease',
        );
      }
      return;
    }
    try {
      await this.#semaphore.release(this.#identity.workload, this.#identity.slot, this.#version);
      this.#log.info('semaphore slot released');
    } catch (error) {
      this.#log.warn(
        { err: (error as Error).message },
        'releasing the slot failed; it expires with its lease',
      );
    }
  }

  #run(): void {
    if (this.#stopped) return;
    this.#inFlight = this.#renew().finally(() => {
      if (this.#stopped) return;
      this.#timer = setTimeout(() => this.#run(), Math.max(100, Math.floor(this.#identity.leaseMs / 3)));
    });
  }

  async #renew(): Promise<void> {
    const { workload, slot, limit, leaseMs } = this.#identity;
    const attemptAt = performance.now();
    // Renewals come every third of the lease; a gap longer than the lease means this process
    // was frozen (SIGSTOP, a stalled node) or cut off, and its slot may have gone to another
    // pod meanwhile. The limit may then have been exceeded: say so, never silently.
    const gapMs = attemptAt - this.#heldAt;
    if (this.#renewals > 0 && gapMs > leaseMs) {
      this.#reportOverrun(
        gapMs,
        'slot lease overran: this process went longer than its lease without renewing (frozen or cut off from Redis); another pod may have taken the slot, so the workload may have run more pods than its limit',
      );
    }
    try {
      const result = await this.#semaphore.renew(workload, slot, this.#version, leaseMs);
      if (result === 'renewed') {
        this.#heldAt = attemptAt;
        this.#renewals++;
        this.#overrunReported = false;
        if (this.#renewals === 1) this.#log.info({ leaseMs }, 'semaphore slot lease renewed');
        return;
      }
      this.#log.warn('semaphore slot lease lost (expired or released); taking a slot again');
      const again = await this.#semaphore.acquire({ workload, slot, limit, leaseMs });
      if (again.granted) {
        this.#version = again.version;
        this.#heldAt = attemptAt;
        this.#renewals++;
        this.#overrunReported = false;
        this.#log.info({ held: again.held, limit }, 'semaphore slot taken again');
      } else {
        this.#log.error(
          { held: again.held, limit },
          'the workload is at its limit and this pod lost its slot; it runs on without one and retries',
        );
        // This pod runs while `held` others hold every slot: the limit is exceeded now, whatever
        // the cause (a lease that ran out before the sidecar first ran, a crash-looping sidecar,
        // a freeze). Counted like a freeze, once until the slot is held again.
        this.#reportOverrun(
          attemptAt - this.#heldAt,
          'slot lease overran: this pod lost its slot and the workload is at its limit, so it runs beyond the limit (its lease ran out before the sidecar ran or while it was down or frozen)',
        );
      }
    } catch (error) {
      const entry = { err: (error as Error).message };
      if (error instanceof SemaphoreUnavailableError)
        this.#log.warn(entry, 'renewing the semaphore slot failed; retrying');
      else this.#log.error(entry, 'renewing the semaphore slot failed unexpectedly; retrying');
    }
  }

  #reportOverrun(gapMs: number, message: string): void {
    if (this.#overrunReported) return;
    this.#overrunReported = true;
    this.#overruns++;
    this.#log.error({ sinceRenewedMs: Math.round(gapMs), leaseMs: this.#identity.leaseMs }, message);
    // Counted in Redis so the webhook's seahorse_metrics_proxy_hook_lease_overruns shows it.
    this.#semaphore.recordOverrun().catch((error: unknown) => {
      this.#log.warn({ err: (error as Error).message }, 'could not record the lease overrun in Redis');
    });
  }
}
