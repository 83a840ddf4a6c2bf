import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type PostgresServer, startPostgres } from '@seahorse/runtime/testing';
import type { Database } from './database.ts';
import { currentVersion, latestVersion, migrate } from './migrations.ts';
import { openDatabase } from './open.ts';

const dialects: Array<[string, () => Promise<{ url: string; stop(): Promise<void> }>]> = [
  ['SQLite', async () => ({ url: 'sqlite:///:memory:', stop: async () => undefined })],
  [
    'PostgreSQL',
    async () => {
      const pg: PostgresServer = await startPostgres();
      return { url: pg.url, stop: () => pg.stop() };
    },
  ],
];

for (const [name, start] of dialects) {
  describe(`migrations on ${name}`, () => {
    let server: { url: string; stop(): Promise<void> };
    let db: Database;
    before(async () => {
      server = await start();
      db = await openDatabase(server.url);
    });
    after(async () => {
      await db.close();
      await server.stop();
    });

    test('an empty database migrates to the latest version, then a second run applies nothing', async () => {
      assert.equal(await currentVersion(db), 0);
      const applied = await migrate(db, 1);
      assert.deepEqual(applied, [1]);
      await db.run(
        "INSERT INTO users (name, admin, created, cookie_id) VALUES ('alice', 0, '2026-01-01T00:00:00Z', 'c1')",
      );
      // From the previous version: the next migration keeps the rows.
      assert.deepEqual(
        await migrate(db),
        Array.from({ length: latestVersion - 1 }, (_, i) => i + 2),
      );
      assert.equal(await currentVersion(db), latestVersion);
      assert.deepEqual(await migrate(db), []);
      const row = await db.get<{ name: string }>('SELECT name FROM users');
      assert.equal(row?.name, 'alice');
    });

    test('deleting a user deletes their servers and tokens (foreign keys cascade)', async () => {
      const user = await db.get<{ id: number }>("SELECT id FROM users WHERE name = 'alice'");
      await db.run("INSERT INTO spawners (user_id, name) VALUES (?, '')", [user!.id]);
      await db.run("INSERT INTO api_tokens (hashed, prefix, user_id, created) VALUES ('h', 'p', ?, 'now')", [
        user!.id,
      ]);
      await db.run('DELETE FROM users WHERE id = ?', [user!.id]);
      assert.equal((await db.get<{ n: number }>('SELECT COUNT(*) AS n FROM spawners'))?.n, 0);
      assert.equal((await db.get<{ n: number }>('SELECT COUNT(*) AS n FROM api_tokens'))?.n, 0);
    });

    test('a transaction that throws leaves nothing behind', async () => {
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.run("INSERT INTO groups (name) VALUES ('g1')");
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.equal((await db.get<{ n: number }>('SELECT COUNT(*) AS n FROM groups'))?.n, 0);
    });
  });
}

test('an unreachable PostgreSQL fails with the URL and the reason', async () => {
  await assert.rejects(openDatabase('postgresql://nobody:secret@127.0.0.1:1/x'), (error: Error) => {
    assert.match(error.message, /cannot connect to PostgreSQL at postgres:\/\/nobody:\*\*\*@127.0.0.1:1\/x/);
    assert.doesNotMatch(error.message, /secret/);
    return true;
  });
});
