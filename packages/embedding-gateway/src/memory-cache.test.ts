import assert from 'node:assert/strict';
import { it } from 'node:test';
import { MemoryCache } from './memory-cache.ts';

const value = (n: number) => Buffer.alloc(n, 1);

it('evicts the least recently used entries once the byte budget is exceeded', () => {
  const cache = new MemoryCache(300);
  cache.set('a', value(99));
  cache.set('b', value(99));
  cache.set('c', value(99));
  assert.ok(cache.get('a'), 'a is still there and becomes the most recent');
  cache.set('d', value(99));
  assert.equal(cache.get('b'), undefined, 'b was the least recently used');
  assert.ok(cache.get('a'));
  assert.ok(cache.get('c'));
  assert.ok(cache.get('d'));
  assert.ok(cache.bytes <= 300);
});

it('does not keep a value larger than the whole budget', () => {
  const cache = new MemoryCache(100);
  cache.set('big', value(200));
  assert.equal(cache.get('big'), undefined);
  assert.equal(cache.bytes, 0);
});

it('replacing a key accounts for the old value', () => {
  const cache = new MemoryCache(1000);
  cache.set('k', value(500));
  cache.set('k', value(100));
  assert.equal(cache.bytes, 101);
  assert.equal(cache.size, 1);
});

it('keeps the decoded JSON beside an object, counted in the budget, and drops it with the object', () => {
  const cache = new MemoryCache(1000);
  const gzipped = value(100);
  cache.set('k', gzipped);
  cache.setJson('k', gzipped, value(300));
  assert.equal(cache.json('k')?.length, 300);
  assert.equal(cache.bytes, 401);
  cache.setJson('k', value(100), value(50));
  assert.equal(cache.json('k')?.length, 300, 'not beside other bytes than the object held');
  cache.set('k', value(100));
  assert.equal(cache.json('k'), undefined, 'a new object drops the old JSON');
  assert.equal(cache.bytes, 101);
  cache.setJson('other', gzipped, value(10));
  assert.equal(cache.json('other'), undefined, 'only beside an object already held');
});
