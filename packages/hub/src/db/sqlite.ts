// SQLite through node:sqlite: one connection, statements prepared once and cached, WAL so
// readers in other processes are not blocked.
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Database, Queryable, SqlValue } from './database.ts';

export class SqliteDatabase implements Database {
  readonly dialect = 'sqlite' as const;
  readonly description: string;
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(path: string) {
    this.description = `sqlite:///${path}`;
    this.#db = new DatabaseSync(path);
    this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;');
    this.#db.exec('PRAGMA synchronous = NORMAL;');
  }

  #prepare(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  async all<T>(sql: string, params: SqlValue[] = []): Promise<T[]> {
    return this.#prepare(sql).all(...params) as T[];
  }

  async get<T>(sql: string, params: SqlValue[] = []): Promise<T | undefined> {
    return this.#prepare(sql).get(...params) as T | undefined;
  }

  async run(sql: string, params: SqlValue[] = []): Promise<number> {
    return Number(this.#prepare(sql).run(...params).changes);
  }

  async exec(sql: string): Promise<void> {
    this.#db.exec(sql);
  }

  /**
   * Transactions queue behind each other: the connection is shared, so two interleaved
   * BEGINs would nest. Statements outside a transaction run at once (they are atomic alone).
   */
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
    const run = async () => {
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const result = await work(this);
        this.#db.exec('COMMIT');
        return result;
      } catch (error) {
        this.#db.exec('ROLLBACK');
        throw error;
      }
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  async withMigrationLock<T>(work: () => Promise<T>): Promise<T> {
    return work();
  }

  async close(): Promise<void> {
    await this.#queue;
    if (this.#db.isOpen) this.#db.close();
  }
}
