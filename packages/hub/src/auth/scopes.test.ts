import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allows, defaultRoles, expandScopes, intersectScopes, invalidScope, parseScopes } from './scopes.ts';

test('self expands to the user’s own resources, filtered by their name', () => {
  const scopes = expandScopes(['self'], { kind: 'user', name: 'alice' });
  assert.ok(scopes.has('servers!user=alice'));
  assert.ok(scopes.has('access:servers!user=alice'));
  assert.ok(scopes.has('read:users:activity!user=alice'));
  assert.ok(!scopes.has('list:users'));
  assert.equal(expandScopes(['self'], { kind: 'service', name: 'culler' }).size, 0);
});

test('subscopes are included, and a filter carries to them', () => {
  const scopes = expandScopes(['admin:users'], undefined);
  for (const s of [
    'users',
    'read:users',
    'list:users',
    'read:users:name',
    'users:activity',
    'delete:users',
  ]) {
    assert.ok(scopes.has(s), s);
  }
  const filtered = expandScopes(['servers!user=bob'], undefined);
  assert.ok(filtered.has('read:servers!user=bob'));
  assert.ok(filtered.has('delete:servers!user=bob'));
});

test('!user and !server without a value bind to the owner', () => {
  const scopes = expandScopes(defaultRoles.server!.scopes, { kind: 'user', name: 'u', server: 'u/lab' });
  assert.ok(scopes.has('users:activity!user=u'));
  assert.ok(scopes.has('access:servers!user=u'));
  assert.deepEqual(
    [...expandScopes(['access:servers!server'], { kind: 'user', name: 'u', server: 'u/lab' })],
    ['access:servers!server=u/lab'],
  );
});

test('a token’s scopes intersect with its owner’s: a user filter covers that user’s servers', () => {
  const owner = expandScopes(['self'], { kind: 'user', name: 'alice' });
  const token = expandScopes(
    ['access:servers!server=alice/lab', 'access:servers!server=bob/lab', 'list:users'],
    undefined,
  );
  // list:users brings read:users:name, which alice holds for herself only.
  assert.deepEqual([...intersectScopes(token, owner)].sort(), [
    'access:servers!server=alice/lab',
    'read:users:name!user=alice',
  ]);
  const admin = expandScopes(defaultRoles.admin!.scopes, undefined);
  assert.ok(intersectScopes(expandScopes(['read:users!user=x'], undefined), admin).has('read:users!user=x'));
});

test('allows: all, filtered to a target, or refused', async () => {
  const parsed = parseScopes(
    expandScopes(['read:users!user=alice', 'list:users', 'read:servers!group=team'], undefined),
  );
  assert.equal(await allows(parsed, 'list:users'), 'all');
  assert.equal(await allows(parsed, 'read:users', { user: 'alice' }), 'some');
  assert.equal(await allows(parsed, 'read:users', { user: 'bob' }), false);
  assert.equal(
    await allows(parsed, 'read:servers', { user: 'bob', userGroups: async () => ['team'] }),
    'some',
  );
  assert.equal(await allows(parsed, 'read:servers', { user: 'carol', userGroups: async () => [] }), false);
  assert.equal(await allows(parsed, 'shutdown'), false);
});

test('unknown scopes and filters are named', () => {
  assert.equal(invalidScope('read:users'), '');
  assert.equal(invalidScope('access:servers!server=a/b'), '');
  assert.match(invalidScope('read:everything'), /not a valid scope/);
  assert.match(invalidScope('read:users!planet=mars'), /invalid filter/);
});
