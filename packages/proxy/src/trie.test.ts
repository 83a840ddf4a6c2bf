import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PathTrie } from './trie.ts';

test('lookup returns the longest prefix made of whole segments', () => {
  const trie = new PathTrie<string>();
  trie.set('/', 'root');
  trie.set('/user/a', 'a');
  trie.set('/user/a/lab', 'lab');
  assert.equal(trie.lookup('/user/a'), 'a');
  assert.equal(trie.lookup('/user/a/'), 'a');
  assert.equal(trie.lookup('/user/a/tree/x'), 'a');
  assert.equal(trie.lookup('/user/a/lab/x'), 'lab');
  assert.equal(trie.lookup('/user/ab'), 'root');
  assert.equal(trie.lookup('/user'), 'root');
});

test('lookup without a root route misses unmatched paths', () => {
  const trie = new PathTrie<string>();
  trie.set('/hub', 'hub');
  assert.equal(trie.lookup('/'), undefined);
  assert.equal(trie.lookup('/hubx'), undefined);
  assert.equal(trie.lookup('/hub/api'), 'hub');
});

test('delete removes only the exact prefix and prunes empty branches', () => {
  const trie = new PathTrie<string>();
  trie.set('/a/b/c', 'c');
  trie.set('/a', 'a');
  assert.equal(trie.delete('/a/b'), false);
  assert.equal(trie.delete('/a/b/c'), true);
  assert.equal(trie.lookup('/a/b/c'), 'a');
  assert.equal(trie.size, 1);
  assert.deepEqual([...trie.values()], ['a']);
  assert.equal(trie.delete('/a'), true);
  assert.equal(trie.lookup('/a'), undefined);
  assert.equal(trie.size, 0);
});

test('set on an existing prefix replaces the value without growing the size', () => {
  const trie = new PathTrie<number>();
  trie.set('/x', 1);
  trie.set('/x', 2);
  assert.equal(trie.size, 1);
  assert.equal(trie.get('/x'), 2);
});

test('unicode and empty segments are matched literally', () => {
  const trie = new PathTrie<string>();
  trie.set('/user/jürgen', 'j');
  assert.equal(trie.lookup('/user/jürgen/api'), 'j');
  assert.equal(trie.lookup('/user//jürgen'), undefined);
});
