import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PrefixMap } from './prefix-map.ts';

test('lookup returns the longest prefix made of whole segments', () => {
  const map = new PrefixMap<string>();
  map.set('/', 'root');
  map.set('/user/a', 'a');
  map.set('/user/a/lab', 'lab');
  assert.equal(map.lookup('/user/a'), 'a');
  assert.equal(map.lookup('/user/a/'), 'a');
  assert.equal(map.lookup('/user/a/tree/x'), 'a');
  assert.equal(map.lookup('/user/a/lab/x'), 'lab');
  assert.equal(map.lookup('/user/ab'), 'root');
  assert.equal(map.lookup('/user'), 'root');
  assert.equal(map.lookup('/'), 'root');
});

test('lookup without a root route misses unmatched paths', () => {
  const map = new PrefixMap<string>();
  map.set('/hub', 'hub');
  assert.equal(map.lookup('/'), undefined);
  assert.equal(map.lookup('/hubx'), undefined);
  assert.equal(map.lookup('/hub/api'), 'hub');
  assert.equal(map.lookup('/hub'), 'hub');
});

test('delete removes only the exact prefix; lookups stop probing depths no prefix has', () => {
  const map = new PrefixMap<string>();
  map.set('/a/b/c', 'c');
  map.set('/a', 'a');
  assert.equal(map.delete('/a/b'), false);
  assert.equal(map.lookup('/a/b/c/d'), 'c');
  assert.equal(map.delete('/a/b/c'), true);
  assert.equal(map.lookup('/a/b/c'), 'a');
  assert.equal(map.size, 1);
  assert.deepEqual([...map.values()], ['a']);
  // Deep prefixes set after the depth shrank are found again.
  map.set('/a/b/c/d/e', 'e');
  assert.equal(map.lookup('/a/b/c/d/e/f'), 'e');
  assert.equal(map.lookup('/a/b/c/d'), 'a');
  map.clear();
  assert.equal(map.lookup('/a'), undefined);
  map.set('/x/y', 'y');
  assert.equal(map.lookup('/x/y/z'), 'y');
});

test('set on an existing prefix replaces the value and moves it to the end', () => {
  const map = new PrefixMap<number>();
  map.set('/x', 1);
  map.set('/y', 2);
  map.set('/x', 3);
  assert.equal(map.size, 2);
  assert.equal(map.get('/x'), 3);
  assert.deepEqual([...map.values()], [2, 3]);
  assert.equal(map.delete('/y'), true);
  assert.equal(map.lookup('/x/z'), 3);
});

test('unicode and empty segments are matched literally', () => {
  const map = new PrefixMap<string>();
  map.set('/user/jürgen', 'j');
  map.set('/user//x', 'empty');
  assert.equal(map.lookup('/user/jürgen/api'), 'j');
  assert.equal(map.lookup('/user//jürgen'), undefined);
  assert.equal(map.lookup('/user//x/y'), 'empty');
  assert.equal(map.lookup('/user/x'), undefined);
});

test('lookups agree with a brute-force longest-prefix search over random tables', () => {
  const segments = ['a', 'b', 'ab', '', 'ü'];
  const pick = (n: number) =>
    Array.from({ length: n }, () => segments[Math.floor(Math.random() * segments.length)]);
  for (let round = 0; round < 50; round++) {
    const map = new PrefixMap<string>();
    const keys = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const parts = pick(1 + Math.floor(Math.random() * 4));
      if (parts.at(-1) === '') continue;
      const key = `/${parts.join('/')}`;
      keys.add(key);
      map.set(key, key);
      if (Math.random() < 0.3) {
        keys.delete(key);
        map.delete(key);
      }
    }
    for (let i = 0; i < 50; i++) {
      const path = `/${pick(1 + Math.floor(Math.random() * 6)).join('/')}`;
      let expected: string | undefined;
      for (const key of keys) {
        if ((path === key || path.startsWith(`${key}/`)) && key.length > (expected?.length ?? -1))
          expected = key;
      }
      assert.equal(
        map.lookup(path),
        expected,
        `lookup(${JSON.stringify(path)}) in ${JSON.stringify([...keys])}`,
      );
    }
  }
});
