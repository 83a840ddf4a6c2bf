// Failed password logins counted per client: after `limit` failures within `windowMs`, that
// client is answered 429 until the window ends, so the shared password cannot be guessed at
// network speed. Per hub process (a soft limit: N replicas allow N times as many tries); a
// client is the address the hub's proxy reports (its last X-Forwarded-For hop), not the proxy.
import type { IncomingMessage } from 'node:http';

export class LoginThrottle {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #failures = new Map<string, { count: number; since: number }>();

  constructor(limit = 10, windowMs = 5 * 60_000) {
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  static client(req: IncomingMessage): string {
    const peer = req.socket.remoteAddress ?? '';
    const forwarded = req.headers['x-forwarded-for'];
    const header = Array.isArray(forwarded) ? forwarded.join(',') : forwarded;
    const loopback = peer === '::1' || peer.startsWith('127.') || peer.startsWith('::ffff:127.');
    if (loopback && header) return header.split(',').at(-1)!.trim();
    return peer;
  }

  /** Seconds until this client may try again, or 0. */
  retryAfter(client: string, now = Date.now()): number {
    const entry = this.#failures.get(client);
    if (!entry) return 0;
    if (now - entry.since >= this.#windowMs) {
      this.#failures.delete(client);
      return 0;
    }
    return entry.count >= this.#limit ? Math.ceil((entry.since + this.#windowMs - now) / 1000) : 0;
  }

  failed(client: string, now = Date.now()): void {
    const entry = this.#failures.get(client);
    if (entry && now - entry.since < this.#windowMs) entry.count++;
    else {
      // Bounded: under a flood of clients the oldest entries go first.
      if (this.#failures.size >= 100_000) this.#failures.delete(this.#failures.keys().next().value!);
      this.#failures.set(client, { count: 1, since: now });
    }
  }

  succeeded(client: string): void {
    this.#failures.delete(client);
  }
}
