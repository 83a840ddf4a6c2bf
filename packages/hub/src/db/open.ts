// Opens the database a db_url names: sqlite:///relative/path, sqlite:////absolute/path,
// sqlite:///:memory:, postgresql://user:password@host:port/db.
import { resolve } from 'node:path';
import { DatabaseError } from '../errors.ts';
import type { Database } from './database.ts';
import { SqliteDatabase } from './sqlite.ts';

export async function openDatabase(url: string): Promise<Database> {
  if (url.startsWith('sqlite://')) {
    const rest = url.slice('sqlite://'.length);
    // SQLAlchemy's form: three slashes and a relative path, four for an absolute one.
    const path = rest === '' || rest === '/:memory:' ? ':memory:' : resolve(rest.slice(1));
    try {
      return new SqliteDatabase(path);
    } catch (error) {
      throw new DatabaseError(`cannot open SQLite database ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  // SQLAlchemy driver suffixes (postgresql+psycopg2://) mean nothing here.
  const pgUrl = url.replace(/^postgres(ql)?(\+\w+)?:\/\//, 'postgres://');
  // pg is loaded only for PostgreSQL: a hub on SQLite does not carry its 10 MB.
  const { PostgresDatabase } = await import('./postgres.ts');
  const db = new PostgresDatabase(pgUrl);
  try {
    await db.get('SELECT 1');
  } catch (error) {
    await db.close().catch(() => undefined);
    throw new DatabaseError(
      `cannot connect to PostgreSQL at ${db.description}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  return db;
}
