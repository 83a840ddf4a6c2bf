// PostgreSQL through pg: a pool, `?` placeholders numbered once per SQL text, and named
// (server-side prepared) statements for the queries the request path repeats.
import pg from 'pg';
import { DatabaseUnavailableError } from '../errors.ts';
import type { Database, Queryable, SqlValue } from './database.ts';

const numbered = new Map<string, { text: string; name: string }>();

function toPostgres(sql: string): { text: string; name: string } {
  let entry = numbered.get(sql);
  if (!entry) {
    let index = 0;
    const text = sql.replace(/\?/g, () => `$${++index}`);
    entry = { text, name: `s${numbered.size}` };
    numbered.set(sql, entry);
  }
  return entry;
}

/**
 * Errors that say the server is not there (refused, reset, shutting down, too many
 * connections) rather than that a query is wrong; the API answers them with 503.
 */
function unavailable(error: unknown): unknown {
  const code = (error as { code?: unknown }).code;
  const sqlState = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
  if (sqlState && !/^(08|57P|53)/.test(sqlState)) return error;
  if (!sqlState && !(typeof code === 'string' || /connect|terminated|timeout/i.test(String(error))))
    return error;
  return new DatabaseUnavailableError(`PostgreSQL is unavailable: ${(error as Error).message}`, {
    cause: error,
  });
}

class PostgresQueryable implements Queryable {
  readonly dialect = 'postgres' as const;
  readonly #client: pg.Pool | pg.PoolClient;
  constructor(client: pg.Pool | pg.PoolClient) {
    this.#client = client;
  }
  async all<T>(sql: string, params: SqlValue[] = []): Promise<T[]> {
    const { text, name } = toPostgres(sql);
    const result = await this.#client.query({ text, name, values: params }).catch((error: unknown) => {
      throw unavailable(error);
    });
    return result.rows as T[];
  }
  async get<T>(sql: string, params: SqlValue[] = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0];
  }
  async run(sql: string, params: SqlValue[] = []): Promise<number> {
    const { text, name } = toPostgres(sql);
    const result = await this.#client.query({ text, name, values: params }).catch((error: unknown) => {
      throw unavailable(error);
    });
    return result.rowCount ?? 0;
  }
}

// COUNT(*) and other int8 values as numbers: counts here never exceed 2^53.
pg.types.setTypeParser(20, (value: string) => Number(value));

export class PostgresDatabase extends PostgresQueryable implements Database {
  readonly description: string;
  readonly #pool: pg.Pool;
  readonly #url: string;

  constructor(url: string, poolSize = 10) {
    // A server that does not answer (paused, partitioned) fails the request instead of hanging it:
    // connecting within 10 s, every query within 30 s (`?query_timeout=<ms>` in db_url, pg's own
    // parameter, sets another). A client whose query timed out is dropped, never reused.
    const pool = new pg.Pool({
      connectionString: url,
      max: poolSize,
      connectionTimeoutMillis: 10_000,
      query_timeout: 30_000,
    });
    super(pool);
    this.#pool = pool;
    this.#url = url;
    const parsed = new URL(url);
    parsed.password = parsed.password ? '***' : '';
    this.description = parsed.toString();
    // An idle client losing its connection must not crash the hub; the pool replaces it.
    pool.on('error', () => undefined);
  }

  async transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect().catch((error: unknown) => {
      throw unavailable(error);
    });
    let failed: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await work(new PostgresQueryable(client));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch((rollback: Error) => {
        // A connection that cannot even roll back (lost, or a query timed out on it) is dropped.
        failed = rollback;
      });
      throw unavailable(error);
    } finally {
      client.release(failed);
    }
  }

  async exec(sql: string): Promise<void> {
    await this.#pool.query(sql);
  }

  async withMigrationLock<T>(work: () => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    try {
      // One hub migrates at a time; the others wait, then find nothing left to do.
      await client.query('SELECT pg_advisory_lock(7262011)');
      try {
        return await work();
      } finally {
        await client.query('SELECT pg_advisory_unlock(7262011)');
      }
    } finally {
      client.release();
    }
  }

  /**
   * A connection of its own, outside the pool, for session state such as advisory locks. The
   * server is asked to probe the peer (TCP keepalive after 5 s idle, every 2 s, 3 misses), so a
   * session of a replica whose host vanished ends, and its locks go, within about 11 s; queries
   * that take over `queryTimeoutMs` fail on our side.
   */
  async openSession(applicationName: string, queryTimeoutMs: number): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.#url,
      connectionTimeoutMillis: queryTimeoutMs,
      query_timeout: queryTimeoutMs,
      keepAlive: true,
      keepAliveInitialDelayMillis: 5000,
      application_name: applicationName,
      options: '-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3',
    });
    // Without a listener an 'error' event (the server went away) would crash the hub.
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw unavailable(error);
    }
    return client;
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
