// POST /semaphore/lease on the webhook's TLS port: a limited pod's sidecar renews, holds or
// releases its own slot here with the token the webhook minted at admission. Sidecars never
// reach Redis. The body is parsed strictly (size-limited by the caller, an exact shape,
// unknown fields refused) and every refusal says what to do.
import type { IncomingHttpHeaders } from 'node:http';
import type { SlotLeaseService } from './lease-service.ts';
import { LeaseTokenError, type LeaseTokens, type SlotGrant } from './lease-token.ts';
import { SemaphoreUnavailableError } from './semaphore.ts';

export const leasePath = '/semaphore/lease';
/** A lease request is a few hundred bytes; anything larger is refused with 413 unread. */
export const maxLeaseBodyBytes = 4096;

export type LeaseRequest =
  | { action: 'renew'; slot: string; version: string; overrun: boolean }
  | { action: 'hold'; slot: string; version: string; holdMs: number }
  | { action: 'release'; slot: string; version: string };

export interface LeaseAnswer {
  status: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
  /** For the metric: the action named, or `invalid`. */
  action: string;
}

/** A refusal: status, a stable code, and a message a person can act on. */
export class LeaseRequestError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Record<string, string>;
  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

const shapes = {
  renew: { required: ['action', 'slot', 'version'], optional: ['overrun'] },
  hold: { required: ['action', 'slot', 'version', 'holdMs'], optional: [] },
  release: { required: ['action', 'slot', 'version'], optional: [] },
} as const;

const usage =
  'send {"action":"renew","slot":"<slot>","version":"<version>"} (optionally "overrun":true), {"action":"hold","slot":…,"version":…,"holdMs":<ms>} or {"action":"release","slot":…,"version":…}';

function bad(message: string): LeaseRequestError {
  return new LeaseRequestError(400, 'BAD_LEASE_REQUEST', `${message}; ${usage}`);
}

/** A slot id or version: printable ASCII without spaces, at most 128 characters. */
function identifier(value: unknown, field: string, allowEmpty: boolean): string {
  if (typeof value !== 'string') throw bad(`"${field}" must be a string`);
  if ((!allowEmpty && value === '') || !/^[\x21-\x7e]{0,128}$/.test(value)) {
    throw bad(
      `"${field}" must be ${allowEmpty ? 'at most' : '1 to'} 128 printable characters without spaces`,
    );
  }
  return value;
}

export function parseLeaseRequest(text: string): LeaseRequest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw bad(`the body is not JSON (${(error as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw bad('the body must be a JSON object');
  }
  const body = value as Record<string, unknown>;
  const action = body.action;
  if (action !== 'renew' && action !== 'hold' && action !== 'release') {
    throw bad(`"action" must be "renew", "hold" or "release", got ${JSON.stringify(action) ?? 'nothing'}`);
  }
  const shape = shapes[action];
  const allowed = new Set<string>([...shape.required, ...shape.optional]);
  const unknown = Object.keys(body).filter((key) => !allowed.has(key));
  if (unknown.length > 0)
    throw bad(
      `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((key) => JSON.stringify(key)).join(', ')} for "${action}"`,
    );
  const missing = shape.required.filter((key) => !Object.hasOwn(body, key));
  if (missing.length > 0) throw bad(`missing ${missing.map((key) => `"${key}"`).join(', ')}`);
  const slot = identifier(body.slot, 'slot', false);
  const version = identifier(body.version, 'version', true);
  if (action === 'renew') {
    if (body.overrun !== undefined && typeof body.overrun !== 'boolean')
      throw bad('"overrun" must be true or false');
    return { action, slot, version, overrun: body.overrun === true };
  }
  if (action === 'hold') {
    const holdMs = body.holdMs;
    if (typeof holdMs !== 'number' || !Number.isSafeInteger(holdMs) || holdMs < 1) {
      throw bad('"holdMs" must be a whole number of milliseconds, 1 or more');
    }
    return { action, slot, version, holdMs };
  }
  return { action, slot, version };
}

/** The grant behind the request's bearer token: 401 without one or when it does not verify. */
export function authenticate(headers: IncomingHttpHeaders, tokens: LeaseTokens): SlotGrant {
  const challenge = { 'www-authenticate': 'Bearer realm="semaphore-lease"' };
  const header = headers.authorization;
  const match = typeof header === 'string' ? /^Bearer +([^\s]+) *$/i.exec(header) : null;
  if (!match) {
    throw new LeaseRequestError(
      401,
      'LEASE_TOKEN_REQUIRED',
      "a lease request needs 'Authorization: Bearer <token>' with the token the webhook injected as METRICS_PROXY_HOOK_LEASE_TOKEN",
      challenge,
    );
  }
  try {
    return tokens.verify(match[1]!);
  } catch (error) {
    if (!(error instanceof LeaseTokenError)) throw error;
    throw new LeaseRequestError(401, 'LEASE_TOKEN_INVALID', error.message, challenge);
  }
}

/**
 * Requests per slot, as token buckets: a sidecar renews every third of its lease (at least a
 * second) and retries a failure at most every second, so `burst` requests and `perSecond` after
 * them leave room for every honest sidecar; a token holder flooding the endpoint is answered
 * 429 before any Redis work. Only authenticated slots get a bucket, and a bucket that has
 * refilled is dropped, so the map holds the slots active in the last few seconds.
 */
export class LeaseRateLimiter {
  readonly #burst: number;
  readonly #perMs: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #now: () => number;
  #sweptAt = 0;

  constructor({ burst = 20, perSecond = 5, now = () => performance.now() } = {}) {
    this.#burst = burst;
    this.#perMs = perSecond / 1000;
    this.#now = now;
  }

  /** Takes one request for `slot`; throws 429 (retry after a second) when its bucket is empty. */
  take(slot: string): void {
    const now = this.#now();
    const bucket = this.#buckets.get(slot) ?? { tokens: this.#burst, at: now };
    bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#perMs);
    bucket.at = now;
    if (bucket.tokens < 1) {
      this.#buckets.set(slot, bucket);
      throw new LeaseRequestError(
        429,
        'LEASE_RATE_LIMITED',
        `slot ${slot} asked more than ${this.#burst} times at once or ${this.#perMs * 1000} times a second; a sidecar renews every third of its lease: retry after a second`,
        { 'retry-after': '1' },
      );
    }
    bucket.tokens -= 1;
    this.#buckets.set(slot, bucket);
    // At most once a second: with thousands of limited pods every request would sweep otherwise.
    if (this.#buckets.size > 1024 && now - this.#sweptAt >= 1000) this.#sweep(now);
  }

  /** How many slots have a bucket (for the tests). */
  get size(): number {
    return this.#buckets.size;
  }

  #sweep(now: number): void {
    this.#sweptAt = now;
    for (const [slot, bucket] of this.#buckets) {
      if (bucket.tokens + (now - bucket.at) * this.#perMs >= this.#burst) this.#buckets.delete(slot);
    }
  }
}

function expiry(ms: number): string {
  return new Date(Date.now() + ms).toISOString();
}

/** Decides one authenticated, parsed request. Redis without a majority is a 503 to retry. */
export async function answerLease(
  grant: SlotGrant,
  request: LeaseRequest,
  service: SlotLeaseService,
): Promise<LeaseAnswer> {
  const { action } = request;
  if (grant.slot !== request.slot) {
    throw new LeaseRequestError(
      403,
      'LEASE_TOKEN_OTHER_SLOT',
      `this token is for slot ${grant.slot} of ${grant.workload}; a token renews or releases only its own slot, not ${request.slot}`,
    );
  }
  const released = {
    status: 404,
    action,
    body: {
      state: 'retired',
      code: 'SLOT_RELEASED',
      message: `slot ${grant.slot} of ${grant.workload} was released for good (by its pod, or reclaimed when the API server showed no running pod holding it); its token can no longer renew or take it`,
    },
  };
  try {
    if (request.action === 'renew') {
      const outcome = await service.renew(grant, request.version, request.overrun);
      const { overrunRecorded } = outcome;
      if (outcome.state === 'renewed' || outcome.state === 'retaken') {
        return {
          status: 200,
          action,
          body: { ...outcome, leaseMs: service.leaseMs, expiresAt: expiry(service.leaseMs) },
        };
      }
      if (outcome.state === 'full') {
        return {
          status: 409,
          action,
          body: {
            ...outcome,
            code: 'WORKLOAD_FULL',
            message: `the lease of slot ${grant.slot} lapsed and ${grant.workload} already runs ${outcome.held} of at most ${outcome.limit} pods: this pod runs without a slot; renewals take one again when there is room`,
          },
        };
      }
      return { ...released, body: { ...released.body, overrunRecorded } };
    }
    if (request.action === 'hold') {
      const held = await service.hold(grant, request.version, request.holdMs);
      if (held === 'held') {
        const leaseMs = Math.min(request.holdMs, service.maxHoldMs(grant));
        return {
          status: 200,
          action,
          body: { state: 'held', version: request.version, leaseMs, expiresAt: expiry(leaseMs) },
        };
      }
      if (held === 'spent') {
        return {
          status: 409,
          action,
          body: {
            state: 'gone',
            code: 'HOLD_SPENT',
            message: `slot ${grant.slot} of ${grant.workload} was held once already and that hold has ended; a slot is held once, to its pod's grace period's end, and never again`,
          },
        };
      }
      if (held === 'gone') {
        return {
          status: 409,
          action,
          body: {
            state: 'gone',
            code: 'SLOT_GONE',
            message: `slot ${grant.slot} of ${grant.workload} is not held under version ${request.version} any more (its lease lapsed); a hold never takes it again`,
          },
        };
      }
      return released;
    }
    if ((await service.release(grant, request.version)) === 'retired') return released;
    return { status: 200, action, body: { state: 'released' } };
  } catch (error) {
    if (!(error instanceof SemaphoreUnavailableError)) throw error;
    throw new LeaseRequestError(
      503,
      'SEMAPHORE_UNAVAILABLE',
      `the semaphore cannot ${action} slot ${grant.slot} now: ${error.message}; retry`,
      { 'retry-after': '1' },
    );
  }
}
