import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { OutputTail } from './output-tail.ts';

const dir = mkdtempSync(join(tmpdir(), 'seahorse-tail-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('lines written in pieces, with a character split between writes, come out whole', () => {
  const path = join(dir, 'pieces.log');
  writeFileSync(path, '');
  const lines: string[] = [];
  const tail = new OutputTail(path, { onLine: (line) => lines.push(line) });
  const bytes = Buffer.from('first li');
  appendFileSync(path, bytes);
  tail.readAvailable();
  assert.deepEqual(lines, []);
  const rest = Buffer.from('ne\r\nj\u00f6rg\n');
  appendFileSync(path, rest.subarray(0, 7)); // ends inside 'ö'
  tail.readAvailable();
  appendFileSync(path, rest.subarray(7));
  appendFileSync(path, 'unterminated');
  tail.readAvailable();
  assert.deepEqual(lines, ['first line', 'jörg']);
  tail.close();
  assert.deepEqual(lines, ['first line', 'jörg', 'unterminated']);
});

test('re-attaching starts at the end, and a truncated file is read again from its start', () => {
  const path = join(dir, 'reattach.log');
  writeFileSync(path, 'old line 1\nold line 2\n');
  const lines: string[] = [];
  const tail = new OutputTail(path, { fromEnd: true, onLine: (line) => lines.push(line) });
  appendFileSync(path, 'new line\n');
  tail.readAvailable();
  assert.deepEqual(lines, ['new line']);
  writeFileSync(path, 'after truncation\n');
  tail.readAvailable();
  tail.close();
  assert.deepEqual(lines, ['new line', 'after truncation']);
});

test('an endless line is cut into bounded lines instead of growing without limit', () => {
  const path = join(dir, 'long.log');
  writeFileSync(path, 'x'.repeat(10_000));
  const lines: string[] = [];
  const tail = new OutputTail(path, { onLine: (line) => lines.push(line) });
  tail.close();
  assert.ok(
    lines.length >= 1 && lines.every((line) => line.length <= 4097),
    String(lines.map((l) => l.length)),
  );
});
