import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { it } from 'node:test';
import { pythonStatusPhrases } from './http-status.ts';

it('status phrases equal those of the python3 on this machine', () => {
  const output = execFileSync(
    'python3',
    ['-c', 'import http, json; print(json.dumps([[s.value, s.phrase] for s in http.HTTPStatus]))'],
    { encoding: 'utf8' },
  );
  assert.deepEqual([...pythonStatusPhrases], JSON.parse(output));
});
