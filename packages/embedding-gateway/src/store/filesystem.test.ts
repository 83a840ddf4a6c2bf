import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { StoreError } from '../errors.ts';
import { FilesystemStore } from './filesystem.ts';

const dir = mkdtempSync(join(tmpdir(), 'filesystem-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const digest = 'ab12'.padEnd(64, 'c');
const key = `ab12/${digest}`;

it("writes objects at <dir>/<digest[:4]>/<digest>, the bucket's layout, making the prefix on first use", async () => {
  const store = new FilesystemStore(join(dir, 'layout'));
  assert.equal(await store.get(key), undefined);
  await store.put(key, Buffer.from('first'));
  assert.equal(readFileSync(join(dir, 'layout', 'ab12', digest), 'utf8'), 'first');
  await store.put(key, Buffer.from('second'));
  assert.equal((await store.get(key))?.toString(), 'second');
  assert.deepEqual(readdirSync(join(dir, 'layout', 'ab12')), [digest], 'no temporary file is left behind');
});

it('refuses keys that are not digests, so a key never becomes a path outside the store', async () => {
  const store = new FilesystemStore(join(dir, 'safe'));
  await assert.rejects(store.get('../../etc/passwd'), StoreError);
  await assert.rejects(store.put('ab12/../../x', Buffer.from('x')), StoreError);
});
