// One query interface that SQLite (node:sqlite) and PostgreSQL (pg) both implement. SQL is
// written once with `?` placeholders; the PostgreSQL side numbers them.
export type SqlValue = string | number | null;

export interface Queryable {
  readonly dialect: 'sqlite' | 'postgres';
  all<T>(sql: string, params?: SqlValue[]): Promise<T[]>;
  get<T>(sql: string, params?: SqlValue[]): Promise<T | undefined>;
  /** Runs a statement; returns the number of rows it changed. */
  run(sql: string, params?: SqlValue[]): Promise<number>;
}

export interface Database extends Queryable {
  /** Runs `work` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Runs DDL (several statements). */
  exec(sql: string): Promise<void>;
  /** Serializes migrations (and the start-up writes of the configuration) across processes on the same database. */
  withMigrationLock<T>(work: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
  /** A redacted form of the URL, for logs. */
  readonly description: string;
}
