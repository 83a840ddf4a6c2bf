// A real varnishd (Debian's 7.1) started on free loopback ports with its own work directory,
// in the foreground (-F), running the bundle's default.vcl unchanged with a settings.vcl the
// test writes (backend, ACL, cache scope, TTL); stopped by PID.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findBinary, freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';

export const vclDir = fileURLToPath(
  new URL('../../../deploy/kubernetes/embedding-gateway/overlays/dev/varnish/', import.meta.url),
);

export interface VarnishOptions {
  backendPort: number;
  scope: 'per-key' | 'shared';
  /** Where the purge listener binds (any 127.x address), and its port. */
  purgeHost?: string;
  purgePort?: number;
  ttl?: string;
}

export interface Varnish {
  port: number;
  purgeHost: string;
  purgePort: number;
  process: ManagedProcess;
  /** SIGSTOP / SIGCONT to varnishd and its worker (the child that holds the sockets). */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

/** The process and its children, from /proc (the manager forks the worker that serves). */
function processTree(pid: number): number[] {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    // Gone already.
  }
  return [pid, ...children.flatMap(processTree)];
}

function signalTree(pid: number, signal: NodeJS.Signals): void {
  for (const each of processTree(pid)) {
    try {
      process.kill(each, signal);
    } catch {
      // Exited meanwhile.
    }
  }
}

// The probe only has to find the backend healthy once: one slow probe (a loaded 2-core CI
// machine hashing a 2 MB body) must not mark it sick and turn the next tests' fetches into 503.
// The grace test does not need the probe: a closed gateway fails the fetch itself.
export function settingsVcl(options: VarnishOptions): string {
  return `vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .port = "${options.backendPort}";
    .probe = { .url = "/healthz"; .interval = 200ms; .threshold = 1; .window = 8; .timeout = 5s; }
}
acl purgers { "127.0.0.1"; }
sub settings_recv { set req.http.X-Cache-Scope = "${options.scope}"; }
sub settings_ttl { set beresp.ttl = ${options.ttl ?? '1h'}; set beresp.grace = 24h; }
`;
}

export async function startVarnish(options: VarnishOptions): Promise<Varnish> {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-varnish-'));
  writeFileSync(join(dir, 'settings.vcl'), settingsVcl(options));
  const port = await freePort();
  const purgeHost = options.purgeHost ?? '127.0.0.1';
  const purgePort = options.purgePort ?? (await freePort());
  const args = [
    '-F',
    '-j',
    'none',
    '-n',
    join(dir, 'work'),
    '-a',
    `http=127.0.0.1:${port}`,
    '-a',
    `purge=${purgeHost}:${purgePort}`,
    '-T',
    'none',
    '-f',
    join(vclDir, 'default.vcl'),
    '-p',
    `vcl_path=${dir}:${vclDir}`,
    '-s',
    'malloc,64m',
    '-p',
    'thread_pools=1',
    '-p',
    'thread_pool_min=5',
    '-p',
    'thread_pool_max=100',
  ];
  const proc = new ManagedProcess(`varnishd :${port}`, findBinary('varnishd', ['/usr/sbin']), args);
  await proc.untilReady(
    waitFor(
      `varnishd on ${port} with a healthy backend`,
      () =>
        new Promise<boolean>((resolve) => {
          const req = request({ host: '127.0.0.1', port, path: '/healthz', agent: false }, (res) => {
            res.resume();
            resolve(res.statusCode === 200);
          });
          req.on('error', () => resolve(false));
          req.end();
        }),
      { timeoutMs: 30_000, intervalMs: 100 },
    ),
  );
  return {
    port,
    purgeHost,
    purgePort,
    process: proc,
    pause: () => signalTree(proc.pid, 'SIGSTOP'),
    resume: () => signalTree(proc.pid, 'SIGCONT'),
    stop: async () => {
      signalTree(proc.pid, 'SIGCONT');
      await proc.stop('SIGTERM', 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
