import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, ManagedProcess, startPostgres, waitFor } from '@seahorse/runtime/testing';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const args = new Set(process.argv.slice(2));
const option = (name: string, fallback: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const quick = args.has('--quick');
const userCount = Number(option('users', quick ? '1000' : '10000'));
const roundMs = Number(option('round-ms', quick ? '3000' : '10000'));
const only = option('only', '');
/** Runs only the scenarios whose label contains this text. */
const scenarioFilter = option('scenario', '');
/** Writes a V8 CPU profile of seahorse-hub into this directory (node --cpu-prof). */
const cpuProfDir = option('cpu-prof', '');
const backends = option('backends', 'sqlite,postgres').split(',');
const token = 'bench-admin-token-0123456789abcdef';
const ticksPerSecond = 100;

interface Hub {
  name: string;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

async function startSeahorse(dbUrl: string, dir: string): Promise<Hub> {
  const [hubPort, proxyPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const config = join(dir, 'hub.yaml');
  writeFileSync(
    config,
    JSON.stringify({
      JupyterHub: {
        hub_bind_url: `http://127.0.0.1:${hubPort}`,
        bind_url: `http://127.0.0.1:${proxyPort}`,
        db_url: dbUrl,
        authenticator_class: 'dummy',
        services: [{ name: 'bench', api_token: token, admin: true }],
        log_level: 'warn',
      },
      ConfigurableHTTPProxy: { api_url: `http://127.0.0.1:${apiPort}` },
    }),
  );
  const proc = new ManagedProcess(
    'seahorse-hub',
    process.execPath,
    [
      '--max-semi-space-size=4',
      ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []),
      '--conditions=seahorse-source',
      join(here, '..', 'src', 'cli.ts'),
      '--config',
      config,
    ],
    { cwd: dir, env: { ...process.env, PATH: `${join(root, 'node_modules', '.bin')}:${process.env.PATH}` } },
  );
  const url = `http://127.0.0.1:${hubPort}`;
  await proc.untilReady(
    waitFor('seahorse-hub', async () => (await fetch(`${url}/hub/health`)).ok, { timeoutMs: 60_000 }),
  );
  return { name: 'seahorse-hub', url, pid: proc.pid, stop: () => proc.stop() };
}

async function startJupyterHub(dbUrl: string, dir: string): Promise<Hub> {
  const [hubPort, proxyPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const config = join(dir, 'jupyterhub_config.py');
  writeFileSync(
    config,
    [
      `c.JupyterHub.hub_bind_url = 'http://127.0.0.1:${hubPort}'`,
      `c.JupyterHub.bind_url = 'http://127.0.0.1:${proxyPort}'`,
      `c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:${apiPort}'`,
      // Debian's CHP lacks a dependency on this machine; ours is the same API.
      `c.ConfigurableHTTPProxy.command = ['${join(root, 'node_modules', '.bin', 'configurable-http-proxy')}']`,
      `c.JupyterHub.db_url = '${dbUrl.replace('postgres://', 'postgresql://')}'`,
      "c.JupyterHub.authenticator_class = 'dummy'",
      `c.JupyterHub.services = [{'name': 'bench', 'api_token': '${token}', 'admin': True}]`,
      `c.JupyterHub.cookie_secret_file = '${join(dir, 'cookie_secret')}'`,
      "c.JupyterHub.log_level = 'WARN'",
    ].join('\n'),
  );
  const proc = new ManagedProcess('jupyterhub', 'jupyterhub', ['-f', config], { cwd: dir });
  const url = `http://127.0.0.1:${hubPort}`;
  await proc.untilReady(
    waitFor('jupyterhub', async () => (await fetch(`${url}/hub/api/`)).ok, { timeoutMs: 60_000 }),
  );
  return { name: 'JupyterHub 3.0', url, pid: proc.pid, stop: () => proc.stop() };
}

interface RoundResult {
  rps: number;
  p50: number;
  p99: number;
  cpuMsPerRequest: number;
  errors: number;
}

/** `connections` loops, each sending the next request when the last answered, for `ms`. */
async function round(
  hub: Hub,
  connections: number,
  ms: number,
  next: () => { method: string; path: string; body?: string; headers?: Record<string, string> },
): Promise<RoundResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const latencies: number[] = [];
  let errors = 0;
  const url = new URL(hub.url);
  const cpuBefore = cpuSeconds(hub.pid);
  const began = performance.now();
  const deadline = began + ms;
  const one = () =>
    new Promise<void>((resolve) => {
      const { method, path, body, headers } = next();
      const start = performance.now();
      const req = request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          method,
          path: `/hub/api${path}`,
          headers: { authorization: `token ${token}`, 'content-type': 'application/json', ...headers },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if ((res.statusCode ?? 500) >= 400) errors++;
            latencies.push(performance.now() - start);
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(body);
    });
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < deadline) await one();
    }),
  );
  const elapsed = (performance.now() - began) / 1000;
  const cpu = cpuSeconds(hub.pid) - cpuBefore;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    rps: latencies.length / elapsed,
    p50: at(0.5),
    p99: at(0.99),
    cpuMsPerRequest: latencies.length ? (cpu * 1000) / latencies.length : 0,
    errors,
  };
}

async function api(hub: Hub, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${hub.url}/hub/api${path}`, {
    method,
    headers: { authorization: `token ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

const rows: string[] = [];
function row(cells: Array<string | number>) {
  const line = `| ${cells.map((c) => (typeof c === 'number' ? c.toFixed(c < 10 ? 2 : 0) : c)).join(' | ')} |`;
  rows.push(line);
  process.stdout.write(`${line}\n`);
}

async function benchHub(hub: Hub, backend: string): Promise<void> {
  const names = Array.from({ length: userCount }, (_, i) => `user-${i}`);
  const began = performance.now();
  for (let i = 0; i < names.length; i += 1000) {
    const response = await api(hub, 'POST', '/users', { usernames: names.slice(i, i + 1000) });
    if (response.status !== 201)
      throw new Error(`${hub.name}: creating users: ${response.status} ${await response.text()}`);
    await response.arrayBuffer();
  }
  const createSeconds = (performance.now() - began) / 1000;
  row([
    hub.name,
    backend,
    `create ${userCount} users (POST /users, 1,000 a request)`,
    '-',
    `${createSeconds.toFixed(1)} s`,
    '-',
    '-',
    '-',
  ]);
  const pick = () => names[Math.floor(Math.random() * names.length)]!;
  const scenarios: Array<
    [string, () => { method: string; path: string; body?: string; headers?: Record<string, string> }]
  > = [
    [
      'GET /users?limit=200 (pagination media type)',
      () => ({
        method: 'GET',
        path: `/users?limit=200&offset=${Math.floor(Math.random() * (userCount - 200))}`,
        headers: { accept: 'application/jupyterhub-pagination+json' },
      }),
    ],
    [
      'GET /users?limit=200 (plain list)',
      () => ({
        method: 'GET',
        path: `/users?limit=200&offset=${Math.floor(Math.random() * (userCount - 200))}`,
      }),
    ],
    ['GET /users/<name>', () => ({ method: 'GET', path: `/users/${pick()}` })],
    [
      'POST /users/<name>/activity',
      () => ({
        method: 'POST',
        path: `/users/${pick()}/activity`,
        body: JSON.stringify({ last_activity: new Date().toISOString() }),
      }),
    ],
  ];
  for (const [label, next] of scenarios) {
    if (scenarioFilter && !label.includes(scenarioFilter)) continue;
    for (const connections of [10, 50]) {
      const result = await round(hub, connections, roundMs, next);
      row([
        hub.name,
        backend,
        `${label}, ${connections} conns`,
        result.rps,
        `${result.p50.toFixed(1)} ms`,
        `${result.p99.toFixed(1)} ms`,
        `${result.cpuMsPerRequest.toFixed(2)} ms`,
        result.errors,
      ]);
    }
  }
  row([
    hub.name,
    backend,
    'hub RSS after the rounds',
    '-',
    '-',
    '-',
    `${rssMiB(hub.pid).toFixed(0)} MiB`,
    '-',
  ]);
  const check = performance.now();
  const response = await api(hub, 'POST', '/proxy');
  await response.arrayBuffer();
  row([
    hub.name,
    backend,
    'POST /proxy (route check)',
    '-',
    `${(performance.now() - check).toFixed(0)} ms`,
    '-',
    '-',
    response.status >= 400 ? 1 : 0,
  ]);
}

async function main(): Promise<void> {
  row(['hub', 'database', 'scenario', 'req/s', 'p50', 'p99', 'hub CPU / request', 'errors']);
  rows.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
  process.stdout.write(`${rows.at(-1)}\n`);
  for (const backend of backends) {
    for (const which of ['seahorse', 'jupyterhub']) {
      if (only && only !== which) continue;
      const dir = mkdtempSync(join(tmpdir(), `hub-bench-${which}-`));
      const pg = backend === 'postgres' ? await startPostgres() : undefined;
      const dbUrl = pg ? pg.url : `sqlite:///${join(dir, 'hub.sqlite')}`;
      let hub: Hub | undefined;
      try {
        hub = which === 'seahorse' ? await startSeahorse(dbUrl, dir) : await startJupyterHub(dbUrl, dir);
        await benchHub(hub, backend);
      } catch (error) {
        process.stderr.write(`${(error as Error).stack ?? error}\n`);
        row([which, backend, `failed: ${(error as Error).message.split('\n')[0]}`, '-', '-', '-', '-', '-']);
      } finally {
        await hub?.stop();
        await pg?.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  const header = `Measured ${new Date().toISOString()} on ${process.platform}, ${quick ? 'quick run' : 'full run'} (${userCount} users, ${roundMs / 1000} s rounds).\n\n`;
  writeFileSync(join(here, 'RESULTS.md'), `${header + rows.join('\n')}\n`);
}

await main();
