import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BadRequestPath } from './errors.ts';
import { countSegments, joinTarget, lookupPath, removeDotSegments, stripSegments } from './paths.ts';

test('removeDotSegments resolves . and .. (also encoded) and leaves clean paths alone', () => {
  const clean = '/user/a/tree';
  assert.equal(removeDotSegments(clean), clean);
  assert.equal(removeDotSegments('/user/foo/../../pre/zz'), '/pre/zz');
  assert.equal(removeDotSegments('/user/foo/%2e%2e/bar'), '/user/bar');
  assert.equal(removeDotSegments('/a/./b/.'), '/a/b/');
  assert.equal(removeDotSegments('/../../etc'), '/etc');
  assert.equal(removeDotSegments('/a/..'), '/');
  assert.equal(removeDotSegments('/a/.hidden/x'), '/a/.hidden/x');
});

test('lookupPath decodes escapes and rejects malformed ones', () => {
  assert.equal(lookupPath('/user/j%C3%BCrgen'), '/user/jürgen');
  assert.equal(lookupPath('/plain'), '/plain');
  assert.throws(() => lookupPath('/bad/%zz'), BadRequestPath);
});

test('stripSegments cuts whole segments of the raw path', () => {
  assert.equal(stripSegments('/user/foo/bar', countSegments('/user/foo')), '/bar');
  assert.equal(stripSegments('/user/foo', 2), '');
  assert.equal(stripSegments('/enc%40x/y', 1), '/y');
  assert.equal(stripSegments('/x', countSegments('/')), '/x');
});

test('joinTarget reproduces configurable-http-proxy 5 path joining', () => {
  // [target path, target query, request path, request query, expected]
  const table: Array<[string, string, string, string, string]> = [
    ['', '', '/user/foo', '', '/user/foo'],
    ['', '', '', 'x=1', '/?x=1'],
    ['/base/path', '', '/pre', '', '/base/path/pre'],
    ['/base/path', '', '', '', '/base/path'],
    ['/base/path', '', '/', '', '/base/path/'],
    ['/base/', '', '/pre2', '', '/base/pre2'],
    ['/base/', '', '', '', '/base/'],
    ['/base', 'tq=1', '/preq', '', '/base/preq?tq=1'],
    ['/base', 'tq=1', '/preq/a', 'b=2', '/base/preq/a?tq=1&b=2'],
    ['/dflt', '', '', '', '/dflt'],
    ['/dflt', '', '/x', 'y=1', '/dflt/x?y=1'],
  ];
  for (const [targetPath, targetQuery, path, query, expected] of table) {
    assert.equal(joinTarget(targetPath, targetQuery, path, query), expected, `${targetPath} + ${path}`);
  }
});
