import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseFlags } from '@seahorse/runtime';
import { buildOptions, flagSpecs } from './options.ts';

const build = (argv: string[]) => buildOptions(parseFlags(flagSpecs, argv, {}), {});

test('without flags the options carry the defaults written in the flag specs', () => {
  const options = build([]);
  assert.deepEqual(options.listen, { host: '', port: 8000 });
  assert.deepEqual(options.apiListen, { host: 'localhost', port: 8001 });
  assert.equal(options.metricsListen, undefined);
  assert.equal(options.keepAliveTimeoutMs, 5000);
  assert.equal(options.activityFlushMs, 5000);
  assert.equal(options.lameduckMs, 0);
  assert.equal(options.terminationGracePeriodMs, 30_000);
  assert.equal(options.workers, 1);
  assert.equal(options.forward.xForward, true);
  assert.equal(options.forward.prependPath, true);
  assert.equal(options.forward.includePrefix, true);
});

test('the API port defaults to --port + 1, also when the proxy listens on a socket', () => {
  assert.deepEqual(build(['--port', '9000']).apiListen, { host: 'localhost', port: 9001 });
  const onSocket = build(['--socket', '/tmp/proxy.sock']);
  assert.deepEqual(onSocket.listen, { path: '/tmp/proxy.sock' });
  assert.deepEqual(onSocket.apiListen, { host: 'localhost', port: 8001 });
});

test('flags given replace the spec defaults', () => {
  const options = build([
    '--keep-alive-timeout',
    '100',
    '--lameduck',
    '2s',
    '--termination-grace-period',
    '1m',
    '--activity-flush-interval',
    '250ms',
    '--workers',
    '3',
  ]);
  assert.equal(options.keepAliveTimeoutMs, 100);
  assert.equal(options.lameduckMs, 2000);
  assert.equal(options.terminationGracePeriodMs, 60_000);
  assert.equal(options.activityFlushMs, 250);
  assert.equal(options.workers, 3);
});
