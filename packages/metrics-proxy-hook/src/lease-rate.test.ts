import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LeaseRateLimiter, LeaseRequestError } from './lease-endpoint.ts';

test('a slot gets its burst at once, then perSecond; other slots are untouched; refilled buckets are dropped', () => {
  let now = 0;
  const limiter = new LeaseRateLimiter({ burst: 3, perSecond: 2, now: () => now });
  for (let i = 0; i < 3; i++) limiter.take('a');
  assert.throws(
    () => limiter.take('a'),
    (error: unknown) =>
      error instanceof LeaseRequestError &&
      error.status === 429 &&
      error.headers['retry-after'] === '1' &&
      /slot a asked more than 3 times at once or 2 times a second/.test(error.message),
  );
  limiter.take('b');
  now += 499;
  assert.throws(() => limiter.take('a'), LeaseRequestError, 'not yet a whole request refilled');
  now += 1;
  limiter.take('a');
  // Over 1,024 slots the buckets that have refilled are swept, at most once a second: only the
  // busy ones stay.
  for (let i = 0; i < 1024; i++) limiter.take(`slot-${i}`);
  now += 10_000;
  limiter.take('busy');
  assert.equal(limiter.size, 1);
  for (let i = 0; i < 1100; i++) limiter.take(`again-${i}`);
  now += 500;
  limiter.take('busy');
  assert.equal(limiter.size, 1101, 'not swept again within the second');
  now += 10_000;
  limiter.take('busy');
  assert.equal(limiter.size, 1);
});
