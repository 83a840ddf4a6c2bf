// The built bin, started as the kubelet starts it: commands, exit codes, one-line errors, signals.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';
import {
  httpsCall,
  installKubeletStyle,
  issueServingCertificate,
  makeCertificateAuthority,
  packageRoot,
  postReview,
} from './helpers.ts';

const bin = join(packageRoot, 'bin', 'seahorse-metrics-proxy-hook.js');
const built = join(packageRoot, 'dist', 'cli.js');

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 20_000,
  });
}

test('the bin runs the build', () => {
  assert.ok(existsSync(built), `${built} is missing: run 'npm run build'`);
});

test('--help lists the commands, <command> --help the flags with their environment variables', () => {
  const top = run(['--help']);
  assert.equal(top.status, 0);
  assert.match(top.stdout, /webhook .*\n\s+sidecar /);
  const webhook = run(['webhook', '--help']);
  assert.equal(webhook.status, 0);
  for (const expected of [
    '--cert-dir <dir>',
    'default: /var/k8s-webhook-server/serving-certs',
    'env: METRICS_PROXY_HOOK_CERT_DIR',
    '--enable-http2',
    '--redis <host:port>',
  ]) {
    assert.ok(webhook.stdout.includes(expected), `webhook help lacks ${expected}`);
  }
  const sidecar = run(['sidecar', '--help']);
  assert.equal(sidecar.status, 0);
  for (const expected of [
    '--target <url>',
    '--scrape-wait-threshold',
    '--lameduck',
    'default: 0.0.0.0:65532',
  ]) {
    assert.ok(sidecar.stdout.includes(expected), `sidecar help lacks ${expected}`);
  }
  const version = run(['--version']);
  assert.equal(version.status, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
});

test('user mistakes exit 2 with one line naming what to fix, never a stack trace', () => {
  const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [[], {}, /missing command: webhook or sidecar/],
    [['proxy'], {}, /unknown command 'proxy'; the commands are webhook and sidecar/],
    [['webhook', '--bogus'], {}, /unknown flag '--bogus'/],
    [['webhook', '--port', 'https'], {}, /--port expects an integer from 0 to 65535, got 'https'/],
    [['webhook'], { METRICS_PROXY_HOOK_PROBE_ADDRESS: 'localhost' }, /--probe-address expects host:port/],
    [['webhook', '--termination-grace-period', 'soon'], {}, /expects a duration such as 500ms, 30s or 2m/],
    [['webhook', '--metrics-secure=yes'], {}, /--metrics-secure expects a boolean \(1, t, T, TRUE/],
    [['sidecar'], {}, /metrics URL is required/],
    [['sidecar', 'http://127.0.0.1:1/a', 'http://127.0.0.1:1/b'], {}, /only one TARGET URL is taken/],
    [
      ['sidecar', '--target', 'http://127.0.0.1:8080/metrics', '--semaphore-slot', 'x'],
      {},
      /the semaphore needs/,
    ],
    // The semaphore refuses to start without the key that signs lease tokens.
    [
      ['webhook', '--redis=127.0.0.1:1', '--metrics-address=0', '--probe-address=0'],
      { METRICS_PROXY_HOOK_LEASE_TOKEN_KEY: '' },
      /the semaphore \(--redis\) needs a lease token key: .*--lease-token-key-file/,
    ],
    [
      ['webhook', '--redis=127.0.0.1:1', '--sidecar-redis-secret=prometheus-metrics-proxy-hook-redis'],
      {},
      /--sidecar-redis-secret was removed: sidecars no longer reach Redis/,
    ],
  ];
  for (const [args, env, message] of cases) {
    const result = run(args, env);
    assert.equal(result.status, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr, message);
    assert.match(result.stderr, /^seahorse-metrics-proxy-hook: /);
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
  }
});

test('a missing certificate exits 1 naming the file and what to mount', () => {
  const result = run([
    'webhook',
    '--cert-dir',
    '/nonexistent/certs',
    '--metrics-address=0',
    '--probe-address=0',
  ]);
  assert.equal(result.status, 1);
  assert.match(
    result.stderr,
    /--cert-dir: cannot read \/nonexistent\/certs\/tls\.crt \(ENOENT\); mount the webhook's TLS Secret/,
  );
});

test('the webhook process serves, turns unready on SIGTERM, and exits 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-hook-cli-'));
  const [port, probePort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  const webhook = new ManagedProcess('webhook', process.execPath, [bin, 'webhook'], {
    env: {
      ...process.env,
      METRICS_PROXY_HOOK_HOST: '127.0.0.1',
      METRICS_PROXY_HOOK_PORT: String(port),
      METRICS_PROXY_HOOK_PROBE_ADDRESS: `127.0.0.1:${probePort}`,
      METRICS_PROXY_HOOK_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
      METRICS_PROXY_HOOK_CERT_DIR: join(dir, 'certs'),
      METRICS_PROXY_HOOK_LAMEDUCK: '300ms',
    },
  });
  try {
    await webhook.untilReady(
      waitFor(
        'the webhook to be ready',
        async () => (await fetch(`http://127.0.0.1:${probePort}/readyz`)).ok,
      ),
    );
    const review = JSON.parse(
      readFileSync(join(packageRoot, 'test', 'fixtures', 'review-deployment.json'), 'utf8'),
    );
    const res = await postReview(
      `https://127.0.0.1:${port}/mutate`,
      readFileSync(join(dir, 'ca.crt')),
      review,
    );
    assert.equal(res.status, 200);
    assert.ok((await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).ok);
    webhook.signal('SIGTERM');
    await waitFor(
      'readiness to drop',
      async () => (await fetch(`http://127.0.0.1:${probePort}/readyz`)).status === 503,
    );
    assert.equal(await webhook.exited, 0, webhook.output);
    assert.match(webhook.output, /"msg":"webhook serving"/);
  } finally {
    await webhook.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a webhook started with the original's command line (--certDir, --*-bind-address, --metrics-secure) serves, metrics over HTTPS", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-hook-cli-'));
  const [port, probePort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  makeCertificateAuthority(dir);
  installKubeletStyle(join(dir, 'certs'), issueServingCertificate(dir, 'webhook'));
  const webhook = new ManagedProcess('webhook', process.execPath, [
    bin,
    'webhook',
    '--host=127.0.0.1',
    `--port=${port}`,
    '--certDir',
    join(dir, 'certs'),
    `--metrics-bind-address=127.0.0.1:${metricsPort}`,
    '--health-probe-bind-address',
    `127.0.0.1:${probePort}`,
    // Go's spelling of a boolean (strconv.ParseBool), which exited 2 before.
    '--metrics-secure=t',
    '--enable-http2=False',
    '--sidecar-image=registry.local/hook:1',
    '--termination-grace-period=30s',
  ]);
  try {
    await webhook.untilReady(
      waitFor(
        'the webhook to be ready',
        async () => (await fetch(`http://127.0.0.1:${probePort}/readyz`)).ok,
      ),
    );
    const ca = readFileSync(join(dir, 'ca.crt'));
    const metrics = await httpsCall(`https://127.0.0.1:${metricsPort}/metrics`, { ca, method: 'GET' });
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /seahorse_metrics_proxy_hook_admission_requests_total/);
    const review = JSON.parse(
      readFileSync(join(packageRoot, 'test', 'fixtures', 'review-deployment.json'), 'utf8'),
    );
    assert.equal((await postReview(`https://127.0.0.1:${port}/mutate`, ca, review)).status, 200);
  } finally {
    await webhook.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
