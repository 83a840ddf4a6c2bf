import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyPatch, escapePointerToken, JsonPatchError, pointer } from './json-patch.ts';

test('pointer tokens escape ~ as ~0 before / as ~1 (RFC 6901)', () => {
  assert.equal(escapePointerToken('prometheus.io/port'), 'prometheus.io~1port');
  assert.equal(escapePointerToken('a~/b'), 'a~0~1b');
  assert.equal(escapePointerToken('~1'), '~01');
  assert.equal(pointer('metadata', 'annotations', 'x/y~z'), '/metadata/annotations/x~1y~0z');
  assert.equal(pointer('spec', 'containers', '-'), '/spec/containers/-');
});

test('add, remove, replace, move, copy and test follow RFC 6902 and leave the input alone', () => {
  const input = { a: { 'b/c': 1, '~d': 2 }, list: [1, 2, 3] };
  const output = applyPatch(input, [
    { op: 'add', path: '/a/new', value: { x: 1 } },
    { op: 'replace', path: '/a/b~1c', value: 10 },
    { op: 'remove', path: '/a/~0d' },
    { op: 'add', path: '/list/1', value: 9 },
    { op: 'add', path: '/list/-', value: 4 },
    { op: 'move', from: '/a/new', path: '/moved' },
    { op: 'copy', from: '/list', path: '/copied' },
    { op: 'test', path: '/copied', value: [1, 9, 2, 3, 4] },
    { op: 'replace', path: '/list/0', value: 0 },
  ]);
  assert.deepEqual(output, {
    a: { 'b/c': 10 },
    list: [0, 9, 2, 3, 4],
    moved: { x: 1 },
    copied: [1, 9, 2, 3, 4],
  });
  assert.deepEqual(input, { a: { 'b/c': 1, '~d': 2 }, list: [1, 2, 3] }, 'the input is unchanged');
});

test('add on an existing member replaces it, as RFC 6902 says', () => {
  assert.deepEqual(applyPatch({ a: 1 }, [{ op: 'add', path: '/a', value: 2 }]), { a: 2 });
});

test('operations on missing paths, bad indexes or failing tests throw JsonPatchError', () => {
  const doc = { a: { b: 1 }, list: [1] };
  const cases = [
    [{ op: 'add', path: '/missing/child', value: 1 }, /'missing' does not exist/],
    [{ op: 'replace', path: '/a/nope', value: 1 }, /does not exist/],
    [{ op: 'remove', path: '/list/1' }, /out of bounds/],
    [{ op: 'add', path: '/list/5', value: 1 }, /out of bounds/],
    [{ op: 'add', path: '/list/01', value: 1 }, /not an array index/],
    [{ op: 'test', path: '/a/b', value: 2 }, /test failed/],
    [{ op: 'move', from: '/a', path: '/a/b/c' }, /own child/],
    [{ op: 'add', path: 'a', value: 1 }, /must start with \//],
  ] as const;
  for (const [operation, message] of cases) {
    assert.throws(
      () => applyPatch(doc, [operation]),
      (error: Error) => {
        assert.ok(error instanceof JsonPatchError, `${JSON.stringify(operation)} threw ${error}`);
        assert.match(error.message, message);
        return true;
      },
    );
  }
});
