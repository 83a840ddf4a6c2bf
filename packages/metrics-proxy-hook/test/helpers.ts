// Shared by the integration tests: certificates made with the openssl CLI and laid out as the
// kubelet mounts a Secret, HTTPS requests that show which certificate was served, webhooks
// started in-process or as real processes, and fixtures in the API server's wire format.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { createLogger, type Logger, parseFlags } from '@seahorse/runtime';
import {
  freePort,
  issueCertificate,
  LogCapture,
  ManagedProcess,
  makeCertificateAuthority,
  waitFor,
} from '@seahorse/runtime/testing';

export { LogCapture, makeCertificateAuthority };

import {
  type AdmissionReview,
  buildWebhookOptions,
  type RunningWebhook,
  startWebhook,
  webhookFlagSpecs,
} from '../src/index.ts';

export const packageRoot = fileURLToPath(new URL('..', import.meta.url));
export const cliSource = join(packageRoot, 'src', 'cli.ts');

export function fixture(name: string): AdmissionReview {
  return JSON.parse(readFileSync(join(packageRoot, 'test', 'fixtures', name), 'utf8')) as AdmissionReview;
}

export function testLogger(): { log: Logger; logs: LogCapture } {
  const logs = new LogCapture();
  return { log: createLogger({ name: 'test', level: 'debug', destination: logs }), logs };
}

/**
 * A serving certificate for 127.0.0.1 and localhost signed by the CA in `dir`, with that CA as
 * `ca`, as cert-manager's Secret holds it (ca.crt beside tls.crt and tls.key).
 */
export function issueServingCertificate(
  dir: string,
  name: string,
): { cert: Buffer; key: Buffer; ca: Buffer } {
  return { ...issueCertificate(dir, name), ca: readFileSync(join(dir, 'ca.crt')) };
}

/** The lease token key every test webhook signs with (a Secret's value in a cluster). */
export const testLeaseKey = 'test-lease-token-key-0123456789abcdef0123456789abcdef';
export const leaseKeyEnv = { METRICS_PROXY_HOOK_LEASE_TOKEN_KEY: testLeaseKey };

let generation = 0;

/**
 * Writes tls.crt and tls.key the way the kubelet updates a Secret volume: files in a fresh
 * timestamped directory, `..data` switched to it with one rename, and tls.* linking through
 * `..data`, so a reader never sees a half-written file.
 */
export function installKubeletStyle(certDir: string, pair: { cert: Buffer; key: Buffer; ca?: Buffer }): void {
  mkdirSync(certDir, { recursive: true });
  const version = `..2025_11_22_06_00_00.${process.pid}_${++generation}`;
  mkdirSync(join(certDir, version));
  writeFileSync(join(certDir, version, 'tls.crt'), pair.cert);
  writeFileSync(join(certDir, version, 'tls.key'), pair.key);
  if (pair.ca) writeFileSync(join(certDir, version, 'ca.crt'), pair.ca);
  let previous: string | undefined;
  try {
    previous = execFileSync('readlink', [join(certDir, '..data')], { encoding: 'utf8' }).trim();
  } catch {
    previous = undefined;
  }
  symlinkSync(version, join(certDir, '..data_tmp'));
  renameSync(join(certDir, '..data_tmp'), join(certDir, '..data'));
  if (!previous) {
    symlinkSync('..data/tls.crt', join(certDir, 'tls.crt'));
    symlinkSync('..data/tls.key', join(certDir, 'tls.key'));
    if (pair.ca) symlinkSync('..data/ca.crt', join(certDir, 'ca.crt'));
  } else {
    rmSync(join(certDir, previous), { recursive: true, force: true });
  }
}

export interface HttpsResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  peer: PeerCertificate;
}

/** One request on a fresh TLS connection, so the certificate the server holds now is the one seen. */
export function httpsCall(
  url: string,
  options: {
    ca: Buffer;
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    /** A client certificate to present (mTLS). */
    client?: { cert: Buffer; key: Buffer };
  },
): Promise<HttpsResponse> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: options.method ?? 'POST',
        ca: options.ca,
        agent: false,
        headers: options.headers,
        ...options.client,
      },
      (res) => {
        const peer = (res.socket as TLSSocket).getPeerCertificate();
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
            peer,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export function postReview(url: string, ca: Buffer, review: unknown): Promise<HttpsResponse> {
  return httpsCall(url, {
    ca,
    headers: { 'content-type': 'application/json' },
    body: typeof review === 'string' ? review : JSON.stringify(review),
  });
}

export interface TestWebhook extends RunningWebhook {
  url: string;
  /** The lease endpoint, https://127.0.0.1:<port>/semaphore/lease (what sidecars are given). */
  leaseUrl: string;
  probeUrl: string;
  metricsUrl: string;
  logs: LogCapture;
}

/**
 * An in-process webhook on free loopback ports; `args` are extra flags. It signs lease tokens
 * with testLeaseKey and tells sidecars to renew at its own port.
 */
export async function startTestWebhook(
  certDir: string,
  args: string[] = [],
  env: NodeJS.ProcessEnv = leaseKeyEnv,
): Promise<TestWebhook> {
  const webhookPort = await freePort();
  const flags = parseFlags(webhookFlagSpecs, [
    '--host',
    '127.0.0.1',
    '--port',
    String(webhookPort),
    `--lease-url=https://127.0.0.1:${webhookPort}/semaphore/lease`,
    '--metrics-address',
    '127.0.0.1:0',
    '--probe-address',
    '127.0.0.1:0',
    '--cert-dir',
    certDir,
    '--sidecar-image',
    'ghcr.io/seahorse/metrics-proxy-hook:test',
    ...args,
  ]);
  const { log, logs } = testLogger();
  const running = await startWebhook(buildWebhookOptions(flags, env), log);
  const port = (address: { port: number } | object | undefined) => (address as { port: number }).port;
  return Object.assign(running, {
    url: `https://127.0.0.1:${port(running.addresses.webhook)}/mutate`,
    leaseUrl: `https://127.0.0.1:${port(running.addresses.webhook)}/semaphore/lease`,
    probeUrl: `http://127.0.0.1:${port(running.addresses.probe)}`,
    metricsUrl: `http://127.0.0.1:${port(running.addresses.metrics)}/metrics`,
    logs,
  });
}

/** The CLI from its sources as a real process, as the kubelet would run it. */
export function startCli(name: string, args: string[], env: NodeJS.ProcessEnv = {}): ManagedProcess {
  return new ManagedProcess(name, process.execPath, ['--conditions=seahorse-source', cliSource, ...args], {
    env: { ...process.env, ...env },
  });
}

/**
 * A webhook process on free ports (or `port`, to start one again where it was); resolves once
 * /readyz answers 200. It signs lease tokens with testLeaseKey.
 */
export async function startWebhookProcess(
  certDir: string,
  args: string[],
  { port: givenPort }: { port?: number } = {},
): Promise<{ process: ManagedProcess; url: string; probeUrl: string; leaseUrl: string; port: number }> {
  const [port, probePort] = [givenPort ?? (await freePort()), await freePort()];
  const leaseUrl = `https://127.0.0.1:${port}/semaphore/lease`;
  const child = startCli(
    `webhook :${port}`,
    [
      'webhook',
      '--host=127.0.0.1',
      `--port=${port}`,
      `--probe-address=127.0.0.1:${probePort}`,
      '--metrics-address=0',
      `--cert-dir=${certDir}`,
      `--lease-url=${leaseUrl}`,
      ...args,
    ],
    leaseKeyEnv,
  );
  const probeUrl = `http://127.0.0.1:${probePort}`;
  await child.untilReady(waitFor(`webhook on ${port}`, async () => (await fetch(`${probeUrl}/readyz`)).ok));
  return { process: child, url: `https://127.0.0.1:${port}/mutate`, probeUrl, leaseUrl, port };
}

/**
 * The injected sidecar container's environment as the kubelet gives it to the process: each
 * `value` as it is (a pod admitted with a slot carries no secretKeyRef any more).
 */
export function containerEnv(container: {
  env?: Array<{ name: string; value?: string; valueFrom?: unknown }>;
}) {
  return Object.fromEntries(
    (container.env ?? []).map(({ name, value, valueFrom }) => {
      if (valueFrom !== undefined)
        throw new Error(`${name} is read from ${JSON.stringify(valueFrom)}, not a value`);
      return [name, value ?? ''];
    }),
  );
}

export interface MetricsApp {
  process: ManagedProcess;
  port: number;
  /** One POST /work: the app's counter goes up by one. */
  work(): Promise<void>;
}

/** The stand-in application (test/fixtures/metrics-app.ts) as a real process; exits on SIGTERM. */
export async function startMetricsApp(): Promise<MetricsApp> {
  const port = await freePort();
  const app = new ManagedProcess(`metrics app :${port}`, process.execPath, [
    join(packageRoot, 'test', 'fixtures', 'metrics-app.ts'),
    String(port),
  ]);
  await app.untilReady(waitFor(`app on ${port}`, () => app.output.includes('listening')));
  return {
    process: app,
    port,
    work: async () => {
      await (await fetch(`http://127.0.0.1:${port}/work`, { method: 'POST' })).text();
    },
  };
}
