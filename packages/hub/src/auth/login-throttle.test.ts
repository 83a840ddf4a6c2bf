import assert from 'node:assert/strict';
import { test } from 'node:test';
import { migrate } from '../db/migrations.ts';
import { openDatabase } from '../db/open.ts';
import { LoginThrottle } from './login-throttle.ts';

test('the login throttle: 10 failures in the window lock a client out until the window ends, then it starts over', async () => {
  const db = await openDatabase('sqlite:///:memory:');
  try {
    await migrate(db);
    const throttle = new LoginThrottle(db, 10, 300_000);
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    for (let i = 0; i < 9; i++) await throttle.failed('c', t0 + i * 1000);
    assert.equal(await throttle.retryAfter('c', t0 + 9000), 0);
    await throttle.failed('c', t0 + 9000);
    assert.equal(await throttle.retryAfter('c', t0 + 10_000), 290);
    assert.equal(await throttle.retryAfter('other', t0 + 10_000), 0);
    // The window counts from the first failure; once it is over the count starts again at 1.
    assert.equal(await throttle.retryAfter('c', t0 + 300_000), 0);
    await throttle.failed('c', t0 + 300_001);
    assert.equal(
      (await db.get<{ count: number }>('SELECT count FROM login_failures WHERE client = ?', ['c']))?.count,
      1,
    );
    // Old windows of other clients are forgotten as failures come in.
    await throttle.failed('d', t0);
    await throttle.failed('e', t0 + 700_000);
    assert.equal(await db.get('SELECT client FROM login_failures WHERE client = ?', ['d']), undefined);
    await throttle.succeeded('e');
    assert.equal(await db.get('SELECT client FROM login_failures WHERE client = ?', ['e']), undefined);
  } finally {
    await db.close();
  }
});
