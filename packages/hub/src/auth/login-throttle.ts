// Failed password logins counted per client: after `limit` failures within `windowMs`, that
// client is answered 429 until the window ends, so the shared password cannot be guessed at
// network speed. Counted in the database (login_failures), so every hub replica on one
// PostgreSQL shares the count; a client is the address the hub's proxy reports (its last
// X-Forwarded-For hop), not the proxy.
import type { IncomingMessage } from 'node:http';
import type { Queryable } from '../db/database.ts';

export class LoginThrottle {
  readonly #db: Queryable;
  readonly #limit: number;
  readonly #windowMs: number;

  constructor(db: Queryable, limit = 10, windowMs = 5 * 60_000) {
    this.#db = db;
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  static client(req: IncomingMessage): string {
    const peer = req.socket.remoteAddress ?? '';
    const forwarded = req.headers['x-forwarded-for'];
    const header = Array.isArray(forwarded) ? forwarded.join(',') : forwarded;
    const loopback = peer === '::1' || peer.startsWith('127.') || peer.startsWith('::ffff:127.');
    // At most 255 characters of it: the key of a row, not a place to store a megabyte.
    if (loopback && header) return header.split(',').at(-1)!.trim().slice(0, 255);
    return peer;
  }

  /** Seconds until this client may try again, or 0. */
  async retryAfter(client: string, now = Date.now()): Promise<number> {
    const row = await this.#db.get<{ count: number; since: string }>(
      'SELECT count, since FROM login_failures WHERE client = ?',
      [client],
    );
    if (!row) return 0;
    const since = Date.parse(row.since);
    if (now - since >= this.#windowMs || row.count < this.#limit) return 0;
    return Math.ceil((since + this.#windowMs - now) / 1000);
  }

  /** Counts a failure in one statement: failures through several replicas at once all count. */
  async failed(client: string, now = Date.now()): Promise<void> {
    const cutoff = new Date(now - this.#windowMs).toISOString();
    await this.#db.run(
      `INSERT INTO login_failures (client, count, since) VALUES (?, 1, ?)
       ON CONFLICT (client) DO UPDATE SET
         count = CASE WHEN login_failures.since <= ? THEN 1 ELSE login_failures.count + 1 END,
         since = CASE WHEN login_failures.since <= ? THEN excluded.since ELSE login_failures.since END`,
      [client, new Date(now).toISOString(), cutoff, cutoff],
    );
    // Windows that are over are forgotten (indexed by since).
    await this.#db.run('DELETE FROM login_failures WHERE since <= ?', [cutoff]);
  }

  async succeeded(client: string): Promise<void> {
    await this.#db.run('DELETE FROM login_failures WHERE client = ?', [client]);
  }
}
