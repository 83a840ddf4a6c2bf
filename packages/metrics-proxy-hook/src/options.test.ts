import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseFlags, UsageError } from '@seahorse/runtime';
import {
  type CommandLineShape,
  normalizeArgv,
  sidecarCommandLine,
  webhookCommandLine,
} from './command-line.ts';
import {
  buildSidecarOptions,
  buildWebhookOptions,
  defaultSidecarImage,
  parseListenAddress,
  parseRedisAddress,
  sidecarFlagSpecs,
  webhookFlagSpecs,
} from './options.ts';

const caPem = '-----BEGIN CERTIFICATE-----\nMIIBtestca\n-----END CERTIFICATE-----\n';
const fixtures = mkdtempSync(join(tmpdir(), 'seahorse-hook-options-'));
writeFileSync(join(fixtures, 'ca.crt'), caPem);
/** What the semaphore needs besides --redis: a lease token key and the CA sidecars verify with. */
const leaseEnv = {
  METRICS_PROXY_HOOK_LEASE_TOKEN_KEY: 'a-lease-token-key-of-at-least-32-bytes',
  METRICS_PROXY_HOOK_LEASE_CA_FILE: join(fixtures, 'ca.crt'),
};
const webhook = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const all = { ...leaseEnv, ...env };
  return buildWebhookOptions(parseFlags(webhookFlagSpecs, argv, all), all);
};
const sidecar = (argv: string[], env: NodeJS.ProcessEnv = {}) =>
  buildSidecarOptions(parseFlags(sidecarFlagSpecs, argv, env), env);

test("the webhook's defaults are the seed deployment's", () => {
  const options = webhook([]);
  assert.deepEqual(options.listen, { host: '0.0.0.0', port: 9443 });
  assert.equal(options.certDir, '/var/k8s-webhook-server/serving-certs');
  assert.deepEqual(options.metricsListen, { host: '0.0.0.0', port: 8080 });
  assert.deepEqual(options.probeListen, { host: '0.0.0.0', port: 8081 });
  assert.equal(options.enableHttp2, false);
  assert.equal(options.injection.terminationGracePeriodSeconds, 30);
  assert.equal(options.injection.sidecarImage, defaultSidecarImage);
  assert.equal(options.semaphore, undefined, 'no --redis, no semaphore');
});

test('every webhook flag also comes from METRICS_PROXY_HOOK_<FLAG>, and flags win', () => {
  const options = webhook(['--port', '10443'], {
    METRICS_PROXY_HOOK_PORT: '9999',
    METRICS_PROXY_HOOK_HOST: '127.0.0.1',
    METRICS_PROXY_HOOK_CERT_DIR: '/certs',
    METRICS_PROXY_HOOK_METRICS_ADDRESS: ':9090',
    METRICS_PROXY_HOOK_PROBE_ADDRESS: '0',
    METRICS_PROXY_HOOK_SIDECAR_IMAGE: 'registry.local/hook:1',
    METRICS_PROXY_HOOK_TERMINATION_GRACE_PERIOD: '1m1500ms',
    METRICS_PROXY_HOOK_ENABLE_HTTP2: 'true',
    METRICS_PROXY_HOOK_REDIS: 'redis-0.redis:6379,redis-1.redis:6380,redis://redis-2.redis',
    METRICS_PROXY_HOOK_SEMAPHORE_LEASE_TTL: '45s',
  });
  assert.deepEqual(options.listen, { host: '127.0.0.1', port: 10443 });
  assert.equal(options.certDir, '/certs');
  assert.deepEqual(options.metricsListen, { host: '', port: 9090 });
  assert.equal(options.probeListen, undefined);
  assert.equal(options.injection.sidecarImage, 'registry.local/hook:1');
  assert.equal(options.injection.terminationGracePeriodSeconds, 62, 'rounded up to whole seconds');
  assert.equal(options.enableHttp2, true);
  assert.deepEqual(options.semaphore?.redis, [
    { host: 'redis-0.redis', port: 6379 },
    { host: 'redis-1.redis', port: 6380 },
    { host: 'redis-2.redis', port: 6379 },
  ]);
  assert.equal(options.semaphore?.leaseMs, 45_000);
  assert.equal(options.semaphore?.admissionLeaseMs, 300_000);
  assert.deepEqual(options.semaphore?.lock, {
    ttlMs: 3000,
    retryCount: 12,
    retryDelayMs: 100,
    retryJitterMs: 100,
  });
});

test('webhook mistakes are UsageErrors naming the flag and the accepted form', () => {
  const cases: Array<[string[], RegExp]> = [
    [
      ['--metrics-address', '8080'],
      /--metrics-address expects host:port such as 0.0.0.0:8080 or :8080 \(0 turns it off\), got '8080'/,
    ],
    [['--redis', 'a:1', '--redis', 'a:1'], /lists a:1 twice/],
    [['--redis', 'redis://:secret@a:6379'], /carries credentials/],
    [['--redis', 'a:99999'], /expects a Redis address/],
    [['--termination-grace-period', '500ms'], /at least 1s/],
    [['--sidecar-image', ' '], /must name an image/],
    [['--sidecar-image-pull-policy', 'Sometimes'], /one of Always, IfNotPresent, Never/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(
      () => webhook(argv),
      (error: Error) => error instanceof UsageError && message.test(error.message),
      argv.join(' '),
    );
  }
});

test('the sidecar needs --target; its semaphore flags come all together or not at all', () => {
  assert.throws(
    () => sidecar([]),
    /metrics URL is required: 'sidecar http:\/\/127\.0\.0\.1:8080\/metrics', --target or METRICS_PROXY_HOOK_TARGET/,
  );
  assert.throws(() => sidecar(['--target', 'ftp://127.0.0.1/metrics']), /expects an http or https URL/);
  assert.equal(sidecar(['--target', 'https://127.0.0.1/metrics']).target.protocol, 'https:');
  const plain = sidecar([], { METRICS_PROXY_HOOK_TARGET: 'http://127.0.0.1:8080/metrics' });
  assert.equal(plain.target.href, 'http://127.0.0.1:8080/metrics');
  assert.deepEqual(plain.listen, { host: '0.0.0.0', port: 65532 });
  assert.equal(plain.terminationGracePeriodMs, 30_000);
  assert.equal(plain.lameduckMs, 1000);
  assert.equal(plain.scrapeWaitThresholdMs, 1000);
  assert.equal(plain.semaphore, undefined);
  assert.equal(plain.maxCachedBytes, 32 * 1024 * 1024);
  assert.equal(sidecar(['--target=http://a/', '--max-cached-body=512Ki']).maxCachedBytes, 524_288);
  assert.equal(sidecar(['--target=http://a/', '--max-cached-body=20M']).maxCachedBytes, 20_000_000);
  assert.throws(
    () => sidecar(['--target=http://a/', '--max-cached-body=lots']),
    /--max-cached-body expects a size such as 32Mi/,
  );
  // A pod admitted by an older webhook: Redis variables, no lease URL or token.
  assert.throws(
    () =>
      sidecar(['--target', 'http://127.0.0.1:1/m'], {
        METRICS_PROXY_HOOK_SEMAPHORE_REDIS: 'a:1,b:2,c:3',
        METRICS_PROXY_HOOK_SEMAPHORE_KEY: 'ns/Deployment/app',
        METRICS_PROXY_HOOK_SEMAPHORE_SLOT: 'slot-1',
      }),
    /missing --lease-url, --lease-token, --lease-ca \(a pod admitted by an older webhook, whose sidecar reached Redis itself, must be created again\)/,
  );
  const slotEnv = {
    METRICS_PROXY_HOOK_SEMAPHORE_KEY: 'ns/Deployment/app',
    METRICS_PROXY_HOOK_SEMAPHORE_SLOT: 'slot-1',
    METRICS_PROXY_HOOK_SEMAPHORE_LEASE_TTL: '30s',
    METRICS_PROXY_HOOK_LEASE_URL: 'https://hook.hook-ns.svc:443/semaphore/lease',
    METRICS_PROXY_HOOK_LEASE_TOKEN: 'mphl1.x.y',
    METRICS_PROXY_HOOK_LEASE_CA: caPem,
  };
  const limited = sidecar(['--target', 'http://127.0.0.1:1/m'], slotEnv);
  assert.equal(limited.semaphore?.workload, 'ns/Deployment/app');
  assert.equal(limited.semaphore?.leaseMs, 30_000);
  assert.equal(limited.semaphore?.lease.url.href, 'https://hook.hook-ns.svc/semaphore/lease');
  assert.equal(limited.semaphore?.lease.token, 'mphl1.x.y');
  assert.equal(limited.semaphore?.lease.ca, caPem);
  assert.equal(limited.semaphore?.lease.timeoutMs, 5000);
  assert.throws(
    () =>
      sidecar(['--target=http://a/'], {
        ...slotEnv,
        METRICS_PROXY_HOOK_LEASE_URL: 'http://hook/semaphore/lease',
      }),
    /--lease-url expects the webhook's https lease URL/,
  );
  assert.throws(
    () => sidecar(['--target=http://a/'], { ...slotEnv, METRICS_PROXY_HOOK_LEASE_CA: 'not a pem' }),
    /--lease-ca expects the PEM/,
  );
  // The sidecar has no Redis flags at all any more.
  for (const gone of ['semaphore-redis', 'semaphore-limit', 'redis-password-file', 'redis-username']) {
    assert.ok(!sidecarFlagSpecs.some((spec) => spec.name === gone), gone);
  }
});

test('addresses parse in their usual forms', () => {
  assert.deepEqual(parseListenAddress('[::1]:9443', '--x'), { host: '::1', port: 9443 });
  assert.deepEqual(parseListenAddress(':8081', '--x'), { host: '', port: 8081 });
  assert.equal(parseListenAddress('0', '--x', true), undefined);
  assert.deepEqual(parseRedisAddress('redis://10.0.0.5:6380/', '--redis'), { host: '10.0.0.5', port: 6380 });
  assert.deepEqual(parseRedisAddress('[fd00::5]:7000', '--redis'), { host: 'fd00::5', port: 7000 });
  assert.deepEqual(parseRedisAddress('redis-0', '--redis'), { host: 'redis-0', port: 6379 });
});

const original = (specs: typeof webhookFlagSpecs, shape: CommandLineShape, argv: string[]) =>
  parseFlags(specs, normalizeArgv(specs, shape, argv));

test("the original webhook's flag names are accepted as aliases of ours, --metrics-secure included", () => {
  const options = buildWebhookOptions(
    original(webhookFlagSpecs, webhookCommandLine, [
      '--certDir',
      '/certs',
      '--metrics-bind-address=:9090',
      '--health-probe-bind-address',
      '127.0.0.1:9091',
      '--metrics-secure',
      '--enable-http2',
      '--sidecar-image',
      'registry.local/hook:2',
      '--termination-grace-period',
      '45s',
      '--host',
      '127.0.0.1',
      '--port',
      '10443',
    ]),
  );
  assert.equal(options.certDir, '/certs');
  assert.deepEqual(options.metricsListen, { host: '', port: 9090 });
  assert.deepEqual(options.probeListen, { host: '127.0.0.1', port: 9091 });
  assert.equal(options.metricsSecure, true);
  assert.equal(options.enableHttp2, true);
  assert.equal(options.injection.sidecarImage, 'registry.local/hook:2');
  assert.equal(options.injection.terminationGracePeriodSeconds, 45);
  assert.deepEqual(options.listen, { host: '127.0.0.1', port: 10443 });
  assert.equal(webhook([]).metricsSecure, false);
});

test("every boolean flag takes Go's strconv.ParseBool words after '=' (--metrics-secure=t), and nothing else", () => {
  const booleans = webhookFlagSpecs.filter((spec) => spec.kind === 'boolean').map((spec) => spec.name);
  for (const name of ['metrics-secure', 'enable-http2', 'native-sidecar']) assert.ok(booleans.includes(name));
  for (const name of booleans) {
    for (const word of ['1', 't', 'T', 'TRUE', 'true', 'True']) {
      assert.equal(original(webhookFlagSpecs, webhookCommandLine, [`--${name}=${word}`]).boolean(name), true);
    }
    for (const word of ['0', 'f', 'F', 'FALSE', 'false', 'False']) {
      assert.equal(
        original(webhookFlagSpecs, webhookCommandLine, [`--${name}=${word}`]).boolean(name),
        false,
      );
    }
    for (const word of ['yes', 'on', 'tRuE', ' true', '']) {
      assert.throws(
        () => original(webhookFlagSpecs, webhookCommandLine, [`--${name}=${word}`]),
        new RegExp(
          `--${name} expects a boolean \\(1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False\\), got '${word}'`,
        ),
      );
    }
  }
  // The bare flag still turns it on, and the value form wins in order, as in Go.
  assert.equal(
    original(webhookFlagSpecs, webhookCommandLine, ['--metrics-secure']).boolean('metrics-secure'),
    true,
  );
  const last = original(webhookFlagSpecs, webhookCommandLine, ['--metrics-secure', '--metrics-secure=false']);
  assert.equal(last.boolean('metrics-secure'), false);
});

test("the original sidecar's positional TARGET_URL is --target; given both ways it is refused", () => {
  const options = buildSidecarOptions(
    original(sidecarFlagSpecs, sidecarCommandLine, [
      'http://127.0.0.1:8080/metrics',
      '--address',
      '0.0.0.0:65532',
      '--lameduck',
      '1s',
      '--termination-grace-period',
      '30s',
    ]),
  );
  assert.equal(options.target.href, 'http://127.0.0.1:8080/metrics');
  assert.equal(options.lameduckMs, 1000);
  const flagsFirst = buildSidecarOptions(
    original(sidecarFlagSpecs, sidecarCommandLine, ['--lameduck', '2s', 'http://127.0.0.1:9/m']),
  );
  assert.equal(flagsFirst.target.href, 'http://127.0.0.1:9/m');
  assert.equal(flagsFirst.lameduckMs, 2000);
  assert.throws(
    () => original(sidecarFlagSpecs, sidecarCommandLine, ['http://a/', '--target=http://b/']),
    /given twice/,
  );
  assert.throws(
    () => original(sidecarFlagSpecs, sidecarCommandLine, ['http://a/', 'http://b/']),
    /only one TARGET URL/,
  );
  assert.throws(
    () => original(webhookFlagSpecs, webhookCommandLine, ['stray']),
    /unexpected argument 'stray'/,
  );
});

test('the Redis password comes from METRICS_PROXY_HOOK_REDIS_PASSWORD or a file; --sidecar-redis-secret is refused as removed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-hook-password-'));
  try {
    writeFileSync(join(dir, 'password'), 'from-the-file\n');
    const fromFile = webhook([
      '--redis=a:1',
      '--redis=b:2',
      '--redis=c:3',
      `--redis-password-file=${join(dir, 'password')}`,
    ]);
    assert.equal(fromFile.semaphore?.password, 'from-the-file');
    const fromEnv = webhook(['--redis=a:1'], { METRICS_PROXY_HOOK_REDIS_PASSWORD: 'from-env' });
    assert.equal(fromEnv.semaphore?.password, 'from-env');
    assert.throws(
      () => webhook(['--redis=a:1', `--redis-password-file=${join(dir, 'missing')}`]),
      /cannot read .*missing \(ENOENT\)/,
    );
    assert.throws(
      () => webhook(['--redis=a:1', '--sidecar-redis-secret=prometheus-metrics-proxy-hook-redis']),
      /--sidecar-redis-secret was removed: sidecars no longer reach Redis, they renew their slots through the webhook \(POST \/semaphore\/lease\).*--lease-token-key-file/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the semaphore refuses to start without a lease token key, with a short key, or without the CA sidecars verify the webhook with', () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-hook-lease-'));
  try {
    const none = { METRICS_PROXY_HOOK_LEASE_TOKEN_KEY: '' };
    assert.throws(
      () => webhook(['--redis=a:1'], none),
      /the semaphore \(--redis\) needs a lease token key: .*'openssl rand -hex 32'.*--lease-token-key-file/,
    );
    assert.equal(webhook([], none).semaphore, undefined, 'no key needed without the semaphore');
    writeFileSync(join(dir, 'keys'), `${'n'.repeat(64)}\n\n${'o'.repeat(40)}\n`);
    const fromFile = webhook(['--redis=a:1', `--lease-token-key-file=${join(dir, 'keys')}`], none);
    assert.deepEqual(
      fromFile.semaphore?.lease.tokenKeys.map((key) => key.toString()),
      ['n'.repeat(64), 'o'.repeat(40)],
      'one key per line, the first signs',
    );
    assert.throws(
      () => webhook(['--redis=a:1', `--lease-token-key-file=${join(dir, 'missing')}`], none),
      /--lease-token-key-file: cannot read .*missing \(ENOENT\)/,
    );
    assert.throws(
      () => webhook(['--redis=a:1'], { METRICS_PROXY_HOOK_LEASE_TOKEN_KEY: 'short' }),
      /key 1 has 5 bytes, at least 32 are needed/,
    );
    assert.throws(
      () => webhook(['--redis=a:1'], { METRICS_PROXY_HOOK_LEASE_CA_FILE: join(dir, 'missing.crt') }),
      /--lease-ca-file: cannot read .*missing\.crt \(ENOENT\); sidecars need the CA/,
    );
    writeFileSync(join(dir, 'empty.crt'), 'nothing\n');
    assert.throws(
      () => webhook(['--redis=a:1'], { METRICS_PROXY_HOOK_LEASE_CA_FILE: join(dir, 'empty.crt') }),
      /holds no PEM certificate/,
    );
    assert.throws(
      () => webhook(['--redis=a:1', '--lease-url=http://hook.ns.svc/semaphore/lease']),
      /--lease-url expects .*https with the path \/semaphore\/lease/,
    );
    const defaults = webhook(['--redis=a:1']);
    assert.equal(
      defaults.semaphore?.lease.url,
      'https://prometheus-metrics-proxy-hook.prometheus-metrics-proxy-hook.svc/semaphore/lease',
    );
    // Without --lease-ca-file: ca.crt in --cert-dir, where cert-manager writes it.
    writeFileSync(join(dir, 'ca.crt'), caPem);
    const inCertDir = webhook(['--redis=a:1', `--cert-dir=${dir}`], { METRICS_PROXY_HOOK_LEASE_CA_FILE: '' });
    assert.equal(inCertDir.semaphore?.lease.caFile, join(dir, 'ca.crt'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('slot reclaim asks the in-cluster API server by default, or --kube-api-server; outside a cluster it is off', () => {
  const inCluster = webhook(['--redis=a:1'], {
    KUBERNETES_SERVICE_HOST: '10.96.0.1',
    KUBERNETES_SERVICE_PORT: '443',
  });
  assert.equal(inCluster.semaphore?.apiServer?.url.href, 'https://10.96.0.1/');
  assert.equal(
    inCluster.semaphore?.apiServer?.tokenFile,
    '/var/run/secrets/kubernetes.io/serviceaccount/token',
  );
  assert.equal(
    inCluster.semaphore?.apiServer?.caFile,
    '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
  );
  assert.equal(inCluster.semaphore?.reclaimGraceMs, 60_000);
  assert.equal(webhook(['--redis=a:1']).semaphore?.apiServer, undefined);
  const given = webhook([
    '--redis=a:1',
    '--kube-api-server=http://127.0.0.1:8001',
    '--semaphore-reclaim-grace=5s',
  ]);
  assert.equal(given.semaphore?.apiServer?.url.href, 'http://127.0.0.1:8001/');
  assert.equal(given.semaphore?.apiServer?.caFile, undefined);
  assert.equal(given.semaphore?.reclaimGraceMs, 5000);
  assert.throws(
    () => webhook(['--redis=a:1', '--kube-api-server=kubernetes']),
    /--kube-api-server expects a URL/,
  );
});

test('--client-ca-file turns on client certificates for /mutate; --client-cert-name needs it; a missing CA file is a usage error', () => {
  assert.equal(webhook([]).clientAuth, undefined);
  assert.throws(
    () => webhook(['--client-cert-name=kube-apiserver']),
    /--client-cert-name needs --client-ca-file/,
  );
  assert.throws(
    () => webhook(['--client-ca-file=/nonexistent/ca.crt']),
    /--client-ca-file: cannot read \/nonexistent\/ca\.crt \(ENOENT\); mount the CA/,
  );
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-client-ca-'));
  try {
    writeFileSync(join(dir, 'ca.crt'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    writeFileSync(join(dir, 'empty.crt'), 'not a certificate');
    const auth = webhook([
      `--client-ca-file=${join(dir, 'ca.crt')}`,
      '--client-cert-name=a,b',
      '--client-cert-name=c',
    ]).clientAuth;
    assert.deepEqual(auth?.names, ['a', 'b', 'c']);
    assert.throws(() => webhook([`--client-ca-file=${join(dir, 'empty.crt')}`]), /holds no PEM certificate/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
