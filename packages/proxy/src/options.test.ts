import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseFlags, UsageError } from '@seahorse/runtime';
import { buildOptions, flagSpecs } from './options.ts';

const build = (argv: string[], env: NodeJS.ProcessEnv = {}) =>
  buildOptions(parseFlags(flagSpecs, argv, env), env);

test('without flags the options carry the defaults written in the flag specs', () => {
  const options = build([]);
  assert.deepEqual(options.listen, { host: '', port: 8000 });
  assert.deepEqual(options.apiListen, { host: 'localhost', port: 8001 });
  assert.equal(options.metricsListen, undefined);
  assert.equal(options.keepAliveTimeoutMs, 5000);
  assert.deepEqual(options.store, { backend: { kind: 'memory' }, activityFlushMs: 5000 });
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
  assert.equal(options.store.activityFlushMs, 250);
  assert.equal(options.workers, 3);
});

test('--storage-backend redis puts the Redis settings, with their spec defaults, into options.store', () => {
  const options = build(['--storage-backend', 'redis'], {
    CONFIGURABLE_PROXY_REDIS_URI: 'redis://redis:6379/2',
  });
  assert.deepEqual(options.store, {
    backend: {
      kind: 'redis',
      redis: {
        url: 'redis://redis:6379/2',
        keyPrefix: 'seahorse:proxy',
        changesMax: 10000,
        waitReplicas: 0,
        commandTimeoutMs: 2000,
      },
    },
    activityFlushMs: 5000,
  });
  const tuned = build([
    '--storage-backend',
    'configurable-http-proxy-redis-backend',
    '--redis-url',
    'sentinel://s1:26379,s2:26379/mymaster',
    '--redis-key-prefix',
    'hub',
    '--redis-changes-max',
    '50',
    '--redis-wait-replicas',
    '1',
  ]);
  assert.deepEqual(tuned.store.backend, {
    kind: 'redis',
    redis: {
      url: 'sentinel://s1:26379,s2:26379/mymaster',
      keyPrefix: 'hub',
      changesMax: 50,
      waitReplicas: 1,
      commandTimeoutMs: 2000,
    },
  });
});

test('a Redis URL that cannot be read is a usage error naming --redis-url', () => {
  assert.throws(
    () => build(['--storage-backend', 'redis', '--redis-url', 'http://redis:6379']),
    (error: unknown) =>
      error instanceof UsageError && /--redis-url: unsupported Redis URL scheme/.test(error.message),
  );
});

test('any other --storage-backend names a CHP storage module', () => {
  assert.deepEqual(build(['--storage-backend', './my-store.js']).store.backend, {
    kind: 'module',
    module: './my-store.js',
  });
  assert.deepEqual(build(['--storage-backend', 'memory']).store.backend, { kind: 'memory' });
});
