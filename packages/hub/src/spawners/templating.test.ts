import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JsonValue } from './spawner.ts';
import { TemplateError } from './spawner-errors.ts';
import {
  escapeName,
  expandTemplates,
  formatTemplate,
  templateBoolean,
  templateNamespace,
} from './templating.ts';

test('escapeName matches escapism.escape(safe=[a-z0-9], escape_char="-").lower(), byte by byte', () => {
  // Expected values computed with escapism's algorithm in Python.
  const cases: Array<[string, string]> = [
    ['alice', 'alice'],
    ['Alice', '-41lice'],
    ['../root', '-2e-2e-2froot'],
    ['a.b@c.com', 'a-2eb-40c-2ecom'],
    ['jörg', 'j-c3-b6rg'],
    ['日本', '-e6-97-a5-e6-9c-ac'],
    ['x\ny', 'x-ay'],
    ['a-b', 'a-2db'],
    ['a b/c', 'a-20b-2fc'],
    ['🐙', '-f0-9f-90-99'],
    ['', ''],
  ];
  for (const [name, escaped] of cases) assert.equal(escapeName(name), escaped, name);
});

test('an escaped name holds only [a-z0-9-], so it cannot name another directory', () => {
  for (const name of ['..', '../../etc/passwd', '/abs', 'a\\b', '.hidden', 'x%2f..', '\u0000']) {
    const escaped = escapeName(name);
    assert.match(escaped, /^[a-z0-9-]*$/);
    assert.ok(!escaped.includes('/') && !escaped.includes('.'), escaped);
  }
});

test('the namespace gives escaped user and server names, raw ones, and admin flags as Python prints them', () => {
  const ns = templateNamespace({
    user: { name: 'Bob.Smith', admin: false, id: 7 },
    serverName: 'GPU 1',
    servicePrefix: '/user/Bob.Smith/GPU%201/',
  });
  assert.equal(ns.username, '-42ob-2e-53mith');
  assert.equal(ns.user, ns.username);
  assert.equal(ns.unescaped_username, 'Bob.Smith');
  assert.equal(ns.legacy_escape_username, 'bob-smith');
  assert.equal(ns.servername, '-47-50-55-201');
  assert.equal(ns.unescaped_servername, 'GPU 1');
  assert.equal(ns.is_admin, 'False');
  assert.equal(ns.is_not_admin, 'True');
  assert.equal(ns.userid, '7');
  assert.equal(ns.base_url, '/user/Bob.Smith/GPU%201/');
  const admin = templateNamespace({ user: { name: 'root', admin: true }, serverName: '' });
  assert.equal(admin.is_admin, 'True');
  assert.equal(admin.is_not_admin, 'False');
  assert.equal(admin.servername, '');
  assert.equal(admin.userid, undefined);
});

test('an empty user name is refused rather than rendering a path to the parent directory', () => {
  assert.throws(() => templateNamespace({ user: { name: '', admin: false }, serverName: '' }), TemplateError);
});

test('formatTemplate renders fields and double braces as str.format does', () => {
  const ns = templateNamespace({ user: { name: 'alice', admin: false }, serverName: 'x' });
  assert.equal(formatTemplate('/data/jupyterhub/persistent/{user}', ns), '/data/jupyterhub/persistent/alice');
  assert.equal(formatTemplate('{username}-{servername}', ns), 'alice-x');
  assert.equal(formatTemplate('{{literal}} {user}}}', ns), '{literal} alice}');
  assert.equal(formatTemplate('no fields at all', ns), 'no fields at all');
  assert.equal(formatTemplate('', ns), '');
});

test('a hostile user name rendered into a path stays inside its directory', () => {
  const ns = templateNamespace({ user: { name: '../../etc', admin: false }, serverName: '' });
  const path = formatTemplate('/data/jupyterhub/persistent/{user}', ns);
  assert.equal(path, '/data/jupyterhub/persistent/-2e-2e-2f-2e-2e-2fetc');
});

test('an unknown field, a format spec or a stray brace throws a TemplateError naming what is allowed', () => {
  const ns = templateNamespace({ user: { name: 'alice', admin: false }, serverName: '' });
  assert.throws(
    () => formatTemplate('/home/{usrname}', ns),
    (error: unknown) =>
      error instanceof TemplateError &&
      error.code === 'HUB_TEMPLATE' &&
      error.message.includes("'{usrname}' is not a known field") &&
      error.message.includes('username'),
  );
  assert.throws(() => formatTemplate('{username:>10}', ns), /not a plain field name/);
  assert.throws(() => formatTemplate('{user', ns), /not closed/);
  assert.throws(() => formatTemplate('user}', ns), /single '}'/);
  assert.throws(() => formatTemplate('{constructor}', ns), /not a known field/);
  assert.throws(() => formatTemplate('{}', ns), /not a plain field name/);
});

test('expandTemplates renders every string of a JSON value and keeps the rest', () => {
  const ns = templateNamespace({ user: { name: 'eve', admin: false }, serverName: '' });
  const mounts: JsonValue[] = [
    { name: 'persistent', mountPath: '/home/jovyan/persistent', subPath: '{user}' },
    { name: 'shared', mountPath: '/home/jovyan/shared', readOnly: '{is_not_admin}' },
    { name: 'n', count: 3, flag: true, nothing: null },
  ];
  assert.deepEqual(expandTemplates(mounts, ns), [
    { name: 'persistent', mountPath: '/home/jovyan/persistent', subPath: 'eve' },
    { name: 'shared', mountPath: '/home/jovyan/shared', readOnly: 'True' },
    { name: 'n', count: 3, flag: true, nothing: null },
  ]);
  assert.equal((mounts[0] as { subPath: string }).subPath, '{user}', 'the input is not modified');
});

test("templateBoolean reads a rendered flag as the seed's _strtobool does", () => {
  assert.equal(templateBoolean('True'), true);
  assert.equal(templateBoolean('true'), true);
  assert.equal(templateBoolean('1'), true);
  assert.equal(templateBoolean('False'), false);
  assert.equal(templateBoolean('yes'), false);
  assert.equal(templateBoolean(''), false);
});
