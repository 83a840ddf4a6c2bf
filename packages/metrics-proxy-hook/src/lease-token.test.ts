import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LeaseTokenError, LeaseTokens, parseLeaseTokenKeys, type SlotGrant } from './lease-token.ts';

const grant: SlotGrant = {
  workload: 'shop/Deployment/checkout',
  slot: '00000000-0000-4000-8000-000000000001',
  namespace: 'shop',
  pod: 'checkout-7d9c6b8f5d-',
  limit: 2,
  graceMs: 30_000,
};
const oldKey = Buffer.from('o'.repeat(64));
const newKey = Buffer.from('n'.repeat(64));

test('a token verifies to the grant it was minted for, and any change to it does not verify', () => {
  const tokens = new LeaseTokens([oldKey]);
  const token = tokens.mint(grant);
  assert.match(token, /^mphl1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(tokens.verify(token), grant);
  const [tag, payload, mac] = token.split('.') as [string, string, string];
  const other = Buffer.from(JSON.stringify({ ...grant, slot: 'another-slot' })).toString('base64url');
  for (const [what, bad] of [
    ['another slot under the same MAC', `${tag}.${other}.${mac}`],
    ['a MAC from another payload', `${tag}.${payload}.${tokens.mint({ ...grant, limit: 3 }).split('.')[2]}`],
    ['a truncated MAC', `${tag}.${payload}.${mac.slice(1)}`],
    ['another version tag', `mphl2.${payload}.${mac}`],
    ['two parts', `${tag}.${payload}`],
    ['non-base64url characters', `${tag}.${payload}.${mac.slice(0, -1)}=`],
    ['an empty token', ''],
  ] as const) {
    assert.throws(() => tokens.verify(bad), LeaseTokenError, what);
  }
});

test('keys rotate: the first key signs, every key verifies, and a token from a removed key is refused', () => {
  const before = new LeaseTokens([oldKey]).mint(grant);
  const during = new LeaseTokens([newKey, oldKey]);
  assert.deepEqual(during.verify(before), grant, 'tokens of running pods keep working');
  const minted = during.mint(grant);
  assert.deepEqual(new LeaseTokens([newKey]).verify(minted), grant, 'new tokens are signed with the new key');
  assert.throws(() => new LeaseTokens([newKey]).verify(before), /does not verify/);
});

test('keys come one per line, each at least 32 bytes', () => {
  assert.deepEqual(
    parseLeaseTokenKeys(`${'a'.repeat(32)}\r\n\n  ${'b'.repeat(40)}  \n`, 'file').map(String),
    ['a'.repeat(32), 'b'.repeat(40)],
  );
  assert.throws(() => parseLeaseTokenKeys('\n\n', 'the file'), /the file holds no key/);
  assert.throws(
    () => parseLeaseTokenKeys(`${'a'.repeat(32)}\nshort\n`, 'the file'),
    /the file: key 2 has 5 bytes, at least 32 are needed; make one with 'openssl rand -hex 32'/,
  );
  assert.throws(() => new LeaseTokens([Buffer.from('short')]), /at least 32 bytes/);
});
