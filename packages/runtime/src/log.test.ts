import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from './log.ts';

test('log lines are JSON with level and message, and secrets are redacted', () => {
  const lines: string[] = [];
  const log = createLogger({
    name: 'unit',
    level: 'debug',
    destination: { write: (line: string) => void lines.push(line) },
  });
  log.info(
    { token: 'abc123', headers: { authorization: 'token abc123', cookie: 'c=1' }, route: '/user/a' },
    'hello',
  );
  log.debug('details');
  const first = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(first.level, 'info');
  assert.equal(first.msg, 'hello');
  assert.equal(first.route, '/user/a');
  assert.equal(first.name, 'unit');
  assert.ok(!lines[0]!.includes('abc123'));
  assert.ok(!lines[0]!.includes('c=1'));
  assert.equal(JSON.parse(lines[1]!).level, 'debug');
});

test('levels below the configured one are dropped', () => {
  const lines: string[] = [];
  const log = createLogger({
    name: 'unit',
    level: 'warn',
    destination: { write: (line: string) => void lines.push(line) },
  });
  log.info('quiet');
  log.error('loud');
  assert.equal(lines.length, 1);
  assert.equal(JSON.parse(lines[0]!).msg, 'loud');
});
