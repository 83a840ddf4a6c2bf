import assert from 'node:assert/strict';
import { test } from 'node:test';
import { quoteAll, urlEscapePath } from './url-names.ts';

test('urlEscapePath escapes as JupyterHub’s quote(name, safe="@~") (checked against Python)', () => {
  // Expected values printed by Python 3: urllib.parse.quote(name, safe='@~').
  const cases: Array<[string, string]> = [
    ['a@b.c', 'a@b.c'],
    ["o'b(x)*!", 'o%27b%28x%29%2A%21'],
    ['ü~z', '%C3%BC~z'],
    ['a+b', 'a%2Bb'],
    ['a;b', 'a%3Bb'],
    ['a,b=c', 'a%2Cb%3Dc'],
    ['x&y', 'x%26y'],
    ['a$b', 'a%24b'],
    ['a:b', 'a%3Ab'],
    ['a.b-c_d', 'a.b-c_d'],
    ['😀', '%F0%9F%98%80'],
  ];
  for (const [name, quoted] of cases) assert.equal(urlEscapePath(name), quoted, name);
});

test('quoteAll escapes @ too, as the OAuth client id of a server does (quote(name))', () => {
  assert.equal(quoteAll('a@b.c'), 'a%40b.c');
  assert.equal(quoteAll('s@1(x)'), 's%401%28x%29');
});
