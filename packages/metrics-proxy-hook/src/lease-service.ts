// The webhook's side of a slot lease: what a verified lease token may do to its own slot, run
// through the semaphore's fenced renew, acquire and release. The HTTP layer (lease-endpoint.ts)
// parses and authenticates; this decides.
import { maxGraceMs, type SlotGrant } from './lease-token.ts';
import { type RedisSemaphore, SlotRetiredError } from './semaphore.ts';
import type { LeaseBackend, RenewOutcome } from './slot-lease.ts';

export class SlotLeaseService {
  readonly #semaphore: RedisSemaphore;
  /** The running lease a renewal sets (--semaphore-lease-ttl). */
  readonly leaseMs: number;

  constructor(semaphore: RedisSemaphore, { leaseMs }: { leaseMs: number }) {
    this.#semaphore = semaphore;
    this.leaseMs = leaseMs;
  }

  /** The longest hold a grant may ask for: its pod's grace period, or one lease if that is longer. */
  maxHoldMs(grant: SlotGrant): number {
    return Math.max(this.leaseMs, Math.min(grant.graceMs, maxGraceMs));
  }

  /**
   * Extends the slot by one lease under `version`; a slot whose lease lapsed (an outage, a
   * freeze, an admission lease that ran out before the sidecar started) is taken again under
   * the limit the pod was admitted with, if there is room. A reported overrun is counted after
   * the decision, so a failed renewal (503) is retried with it and it is counted once.
   */
  async renew(
    grant: SlotGrant,
    version: string,
    overrun: boolean,
  ): Promise<RenewOutcome & { overrunRecorded: boolean }> {
    const outcome = await this.#renewOrRetake(grant, version);
    let overrunRecorded = false;
    if (overrun) {
      try {
        await this.#semaphore.recordOverrun();
        overrunRecorded = true;
      } catch {
        // Not counted yet: the sidecar sends it again with its next renewal.
      }
    }
    return { ...outcome, overrunRecorded };
  }

  async #renewOrRetake(grant: SlotGrant, version: string): Promise<RenewOutcome> {
    const { workload, slot, limit } = grant;
    const renewed = await this.#semaphore.renew(workload, slot, version, this.leaseMs);
    if (renewed === 'renewed') return { state: 'renewed', version };
    if (renewed === 'retired') return { state: 'retired' };
    try {
      const again = await this.#semaphore.acquire({ workload, slot, limit, leaseMs: this.leaseMs });
      if (again.granted) return { state: 'retaken', version: again.version, held: again.held, limit };
      return { state: 'full', held: again.held, limit };
    } catch (error) {
      if (error instanceof SlotRetiredError) return { state: 'retired' };
      throw error;
    }
  }

  /**
   * Leases the slot for `holdMs` (at most maxHoldMs), never taking it again if it is gone, and
   * never past the end of the slot's first hold ('spent' after it): holding again and again
   * cannot keep a slot past its pod's grace period.
   */
  async hold(
    grant: SlotGrant,
    version: string,
    holdMs: number,
  ): Promise<'held' | 'gone' | 'retired' | 'spent'> {
    const ms = Math.min(holdMs, this.maxHoldMs(grant));
    const result = await this.#semaphore.hold(grant.workload, grant.slot, version, ms);
    return result === 'lost' ? 'gone' : result;
  }

  /**
   * Releases the slot and retires its id: the token cannot renew or take it again. 'retired'
   * when it was retired already (a replayed release): nothing is changed.
   */
  release(grant: SlotGrant, version: string): Promise<'released' | 'retired'> {
    return this.#semaphore.release(grant.workload, grant.slot, version, { retire: true });
  }

  /** The service as one slot's backend, in-process (tests, and anything embedding the webhook). */
  backendFor(grant: SlotGrant): LeaseBackend {
    return {
      renew: (version, overrun) => this.renew(grant, version, overrun),
      hold: async (version, holdMs) => {
        const held = await this.hold(grant, version, holdMs);
        return held === 'spent' ? 'gone' : held;
      },
      release: async (version) => {
        await this.release(grant, version);
      },
    };
  }
}
