// What the bench measures side by side, each its own process on free loopback ports: the
// upstream alone, our proxy, CHP 4.6.1 and 5.3.0 (optionally with Redis stores), and nginx.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, type ManagedProcess, waitFor } from '@seahorse/runtime/testing';
import { addRouteRequest, deleteRouteRequest, sendRequests } from './api-client.ts';
import { hardFdLimit, startProcess, stopProcess, waitForOutput } from './processes.ts';

export const benchDir = fileURLToPath(new URL('..', import.meta.url));
export const proxySourceCli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
export const nginxBinary = '/usr/sbin/nginx';
export const token = 'bench-token-0123456789';

export type ContenderKind =
  | 'direct'
  | 'seahorse'
  | 'chp4'
  | 'chp5'
  | 'nginx'
  | 'seahorse-redis'
  | 'seahorse-workers-2'
  | 'seahorse-workers-4'
  | 'chp4-redis';

export const labels: Record<ContenderKind, string> = {
  direct: 'direct upstream',
  seahorse: 'seahorse',
  'seahorse-redis': 'seahorse + Redis store',
  'seahorse-workers-2': 'seahorse --workers 2',
  'seahorse-workers-4': 'seahorse --workers 4',
  chp4: 'CHP 4.6.1',
  chp5: 'CHP 5.3.0',
  'chp4-redis': 'CHP 4.6.1 + redis-backend 0.1.6',
  nginx: 'nginx',
};

export interface Upstream {
  process: ManagedProcess;
  port: number;
  url: string;
}

/** Starts bench/upstream.ts; `port` 0 picks a free one (the soak test restarts on the same). */
export async function startUpstream(port = 0): Promise<Upstream> {
  const proc = startProcess(`upstream :${port}`, process.execPath, [
    join(benchDir, 'upstream.ts'),
    '--port',
    String(port),
  ]);
  const match = await waitForOutput(proc, /\{"port":(\d+)\}/);
  const chosen = Number(match[1]);
  return { process: proc, port: chosen, url: `http://127.0.0.1:${chosen}` };
}

export interface Contender {
  kind: ContenderKind;
  label: string;
  /** Base URL requests are sent to. */
  url: string;
  /** REST API base; undefined for the upstream and nginx, which have fixed routes. */
  apiUrl: string | undefined;
  /** The process whose CPU and memory are reported (with its children: --workers). */
  pid: number;
  process: ManagedProcess;
  stop(): Promise<void>;
}

export class NotAvailable extends Error {}

export interface StartOptions {
  upstream: Upstream;
  redisUrl?: string;
  /** Directory for `--cpu-prof` output of our proxy. */
  profileDir?: string;
  /** Run our proxy from its TypeScript sources instead of the built bin (dist). */
  source?: boolean;
  /** More command-line flags for the proxy. */
  extraFlags?: string[];
  /** Flags for node itself when it runs our proxy (e.g. --inspect). */
  nodeFlags?: string[];
}

export async function startContender(kind: ContenderKind, options: StartOptions): Promise<Contender> {
  if (kind === 'direct') {
    const upstream = options.upstream;
    return {
      kind,
      label: labels[kind],
      url: upstream.url,
      apiUrl: undefined,
      pid: upstream.process.pid,
      process: upstream.process,
      stop: async () => {},
    };
  }
  if (kind === 'nginx') return startNginx(options.upstream);
  return startProxy(kind, options);
}

async function startProxy(kind: ContenderKind, options: StartOptions): Promise<Contender> {
  const port = await freePort();
  const apiPort = await freePort();
  const flags = ['--ip', '127.0.0.1', '--port', String(port), '--api-ip', '127.0.0.1'];
  flags.push('--api-port', String(apiPort), '--log-level', 'warn', ...(options.extraFlags ?? []));
  const env: NodeJS.ProcessEnv = { CONFIGPROXY_AUTH_TOKEN: token };
  const redis = kind === 'seahorse-redis' || kind === 'chp4-redis';
  if (redis) {
    if (!options.redisUrl) throw new NotAvailable('no redis-server');
    env.CONFIGURABLE_PROXY_REDIS_URI = options.redisUrl;
  }
  let command = process.execPath;
  let args: string[];
  if (kind.startsWith('seahorse')) {
    const workers = /^seahorse-workers-(\d+)$/.exec(kind)?.[1];
    if (workers) flags.push('--workers', workers);
    const node = options.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.profileDir}`] : [];
    node.push(...(options.nodeFlags ?? []));
    if (options.source) {
      args = [...node, '--conditions=seahorse-source', '--max-semi-space-size=4', proxySourceCli, ...flags];
    } else {
      // As users start it: the bin itself, whose `#!/usr/bin/env -S node …` line carries its
      // V8 flags, run by the same Node as everything else here.
      command = fileURLToPath(new URL('../../bin/configurable-http-proxy.js', import.meta.url));
      args = flags;
      env.PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`;
      if (node.length > 0) env.NODE_OPTIONS = node.join(' ');
    }
    if (redis) args.push('--storage-backend', 'redis');
  } else {
    const pkg = kind === 'chp5' ? 'chp5' : 'configurable-http-proxy';
    args = [join(benchDir, 'node_modules', pkg, 'bin', 'configurable-http-proxy'), ...flags];
    if (redis) args.push('--storage-backend', 'configurable-http-proxy-redis-backend');
  }
  const proc = startProcess(labels[kind], command, args, env);
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  try {
    await proc.untilReady(
      waitFor(
        `${labels[kind]} API`,
        async () =>
          (await fetch(`${apiUrl}/api/routes`, { headers: { authorization: `token ${token}` } })).ok,
        { timeoutMs: 20_000, intervalMs: 50 },
      ),
    );
  } catch (error) {
    await stopProcess(proc, 'SIGKILL');
    const reason = (error as Error).message.split('\n').filter(Boolean).slice(-1)[0] ?? 'did not start';
    if (redis) throw new NotAvailable(`${labels[kind]} did not start: ${reason}`);
    throw error;
  }
  return {
    kind,
    label: labels[kind],
    url: `http://127.0.0.1:${port}`,
    apiUrl,
    pid: proc.pid,
    process: proc,
    stop: () => stopProcess(proc),
  };
}

/**
 * nginx as a reverse proxy with a keep-alive upstream pool, one process (master_process off,
 * so the PID measured is the one serving, as for the Node proxies), streaming both ways.
 */
async function startNginx(upstream: Upstream): Promise<Contender> {
  if (!existsSync(nginxBinary)) throw new NotAvailable(`${nginxBinary} is not installed`);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-bench-nginx-'));
  const config = `
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile ${hardFdLimit};
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections ${hardFdLimit}; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  upstream backend { server 127.0.0.1:${upstream.port}; keepalive 128; }
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_request_buffering off;
      client_max_body_size 0;
      proxy_read_timeout 3600s;
    }
  }
}
`;
  writeFileSync(join(dir, 'nginx.conf'), config);
  const proc = startProcess('nginx', nginxBinary, ['-p', dir, '-c', join(dir, 'nginx.conf')]);
  const url = `http://127.0.0.1:${port}`;
  await proc.untilReady(
    waitFor('nginx', async () => (await fetch(`${url}/user/u0/`)).ok, { timeoutMs: 10_000, intervalMs: 50 }),
  );
  return {
    kind: 'nginx',
    label: labels.nginx,
    url,
    apiUrl: undefined,
    pid: proc.pid,
    process: proc,
    stop: async () => {
      await stopProcess(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Route i of a table of n: `/user/u<i>`, as JupyterHub names single-user servers. */
export const routePath = (i: number) => `/user/u${i}`;

/** Adds routes 0..n-1 through the REST API; resolves with the seconds it took. */
export async function addRoutes(contender: Contender, target: string, n: number, from = 0): Promise<number> {
  if (!contender.apiUrl || n === 0) return 0;
  const host = new URL(contender.apiUrl).host;
  const result = await sendRequests(contender.apiUrl, n, (i) =>
    addRouteRequest(host, token, routePath(from + i), target),
  );
  const failed = Object.entries(result.statuses).filter(([status]) => status !== '201');
  if (failed.length > 0)
    throw new Error(`${contender.label}: adding routes answered ${JSON.stringify(result.statuses)}`);
  return result.seconds;
}

/** Deletes routes 0..n-1 through the REST API; resolves with the seconds it took. */
export async function deleteRoutes(contender: Contender, n: number): Promise<number> {
  if (!contender.apiUrl || n === 0) return 0;
  const host = new URL(contender.apiUrl).host;
  const result = await sendRequests(contender.apiUrl, n, (i) =>
    deleteRouteRequest(host, token, routePath(i)),
  );
  const failed = Object.entries(result.statuses).filter(([status]) => status !== '204');
  if (failed.length > 0)
    throw new Error(`${contender.label}: deleting routes answered ${JSON.stringify(result.statuses)}`);
  return result.seconds;
}
