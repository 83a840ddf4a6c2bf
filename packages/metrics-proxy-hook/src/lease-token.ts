// The token a limited pod's sidecar renews and releases its slot with: minted by the webhook at
// admission, an HMAC-SHA-256 over the slot's identity with a key only the webhook holds. It
// carries its identity (readable, not secret) so any webhook replica with the key can check it
// without state; it grants nothing beyond that one slot.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { SeahorseError } from '@seahorse/runtime';

/** What a token is good for: one slot of one workload, as decided at admission. */
export interface SlotGrant {
  /** The workload key (`<namespace>/<Kind>/<name>`). */
  workload: string;
  /** The slot id: the admission request's uid. */
  slot: string;
  namespace: string;
  /** The pod's name, or its generateName when the name is not known yet at admission. */
  pod: string;
  /** max-concurrent at admission: a slot lost to an outage is taken again under this limit. */
  limit: number;
  /** The pod's grace period: how long a stopping sidecar may keep the slot leased. */
  graceMs: number;
}

/** A token that does not verify: not ours, altered, or made with a key no longer configured. */
export class LeaseTokenError extends SeahorseError {
  constructor(message: string) {
    super('METRICS_PROXY_LEASE_TOKEN', message);
  }
}

const prefix = 'mphl1';
// Domain separation: a MAC made for anything else with the same key never passes as a token.
const context = 'seahorse-metrics-proxy-hook lease token v1\n';
/** Keys shorter than this are refused: the MAC is only as strong as its key. */
export const minimumKeyBytes = 32;
/**
 * The longest grace period a token carries (a year). A pod may ask for any number of seconds;
 * past 2^53 ms the token would not verify, and past ~273,000 years no expiry can be written.
 */
export const maxGraceMs = 365 * 24 * 3600 * 1000;
/** Longer tokens are refused before any work (the header is read whole). */
const maxTokenLength = 4096;

function mac(key: Buffer, payload: string): Buffer {
  return createHmac('sha256', key).update(context).update(payload).digest();
}

/**
 * Mints and verifies lease tokens. The first key signs; every key verifies, so a new key can be
 * added first and the old one dropped once the pods it signed for are gone.
 */
export class LeaseTokens {
  readonly #keys: Buffer[];

  constructor(keys: readonly Buffer[]) {
    if (keys.length === 0) throw new Error('LeaseTokens needs at least one key');
    for (const key of keys) {
      if (key.length < minimumKeyBytes) {
        throw new Error(`a lease token key must have at least ${minimumKeyBytes} bytes`);
      }
    }
    this.#keys = [...keys];
  }

  mint(grant: SlotGrant): string {
    const payload = Buffer.from(
      JSON.stringify({
        workload: grant.workload,
        slot: grant.slot,
        namespace: grant.namespace,
        pod: grant.pod,
        limit: grant.limit,
        graceMs: Math.min(grant.graceMs, maxGraceMs),
      }),
    ).toString('base64url');
    return `${prefix}.${payload}.${mac(this.#keys[0]!, payload).toString('base64url')}`;
  }

  /** The grant a token carries, once its MAC checks out (compared in constant time). */
  verify(token: string): SlotGrant {
    if (token.length > maxTokenLength) throw new LeaseTokenError('the lease token is too long to be one');
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== prefix || !/^[A-Za-z0-9_-]+$/.test(parts[1]! + parts[2]!)) {
      throw new LeaseTokenError(
        `the lease token is not one this webhook mints (${prefix}.<payload>.<mac>); use the METRICS_PROXY_HOOK_LEASE_TOKEN the webhook injected`,
      );
    }
    const [, payload, given] = parts as [string, string, string];
    const presented = Buffer.from(given, 'base64url');
    let valid = false;
    for (const key of this.#keys) {
      const expected = mac(key, payload);
      // Every key is tried, whatever matched, so the time taken says nothing about which did.
      if (presented.length === expected.length && timingSafeEqual(presented, expected)) valid = true;
    }
    if (!valid) {
      throw new LeaseTokenError(
        'the lease token does not verify: it was not minted with this webhook’s --lease-token-key-file (altered, forged, or minted with a key since removed)',
      );
    }
    let grant: unknown;
    try {
      grant = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      throw new LeaseTokenError('the lease token’s payload is not JSON');
    }
    const g = grant as Partial<Record<keyof SlotGrant, unknown>>;
    if (
      typeof g.workload !== 'string' ||
      typeof g.slot !== 'string' ||
      typeof g.namespace !== 'string' ||
      typeof g.pod !== 'string' ||
      !Number.isSafeInteger(g.limit) ||
      !Number.isSafeInteger(g.graceMs)
    ) {
      throw new LeaseTokenError('the lease token’s payload lacks the slot’s identity');
    }
    return grant as SlotGrant;
  }
}

/**
 * Keys from a Secret's text: one per line (blank lines ignored), the first signs. Each must be
 * at least 32 bytes, e.g. `openssl rand -hex 32`.
 */
export function parseLeaseTokenKeys(text: string, source: string): Buffer[] {
  const lines = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
  if (lines.length === 0) throw new LeaseTokenError(`${source} holds no key`);
  return lines.map((line, index) => {
    const key = Buffer.from(line, 'utf8');
    if (key.length < minimumKeyBytes) {
      throw new LeaseTokenError(
        `${source}: key ${index + 1} has ${key.length} bytes, at least ${minimumKeyBytes} are needed; make one with 'openssl rand -hex 32'`,
      );
    }
    return key;
  });
}
