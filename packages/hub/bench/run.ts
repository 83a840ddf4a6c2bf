import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManagedProcess, startPostgres } from '@seahorse/runtime/testing';
import { type BenchHub, startJupyterHub, startSeahorseHub } from './hubs.ts';

const here = dirname(fileURLToPath(import.meta.url));
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
/** V8's semi-space size (MiB) for seahorse-hub; 4 as its bin sets. */
const semiSpace = option('semi-space', '4');
const backends = option('backends', 'sqlite,postgres').split(',');
const token = 'bench-admin-token-0123456789abcdef';
const proxyToken = 'bench-proxy-token-0123456789abcdef';
// jupyterhub-singleuser refuses to run as root without the flag.
const singleuserArgs = process.getuid?.() === 0 ? ['--allow-root'] : [];
const spawnCount = Number(option('spawns', quick ? '3' : '5'));
const routeCount = Number(option('routes', String(userCount)));
const ticksPerSecond = 100;

type Hub = BenchHub;

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

/** CPU seconds of a process and of its children (PostgreSQL's backends, and those that exited). */
function treeCpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  let ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const child = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ');
      if (Number(child[1]) === pid) ticks += Number(child[11]) + Number(child[12]);
    } catch {
      // Gone meanwhile.
    }
  }
  return ticks / ticksPerSecond;
}

/** A line of /proc/PID/status in MiB: VmRSS (all resident pages) or RssAnon (the process's own). */
function statusMiB(pid: number, key: 'VmRSS' | 'RssAnon' | 'RssFile'): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${key}:`))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

const setup = (dbUrl: string, dir: string) => ({
  dir,
  dbUrl,
  serviceToken: token,
  proxyToken,
  singleuserArgs,
});

const startSeahorse = (dbUrl: string, dir: string) =>
  startSeahorseHub(setup(dbUrl, dir), {
    nodeArgs: [
      `--max-semi-space-size=${semiSpace}`,
      ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []),
    ],
    // As users run it: the built hub (npm run build), not the sources through type stripping,
    // whose loader alone holds about 30 MiB.
    entry: join(here, '..', 'bin', 'seahorse-hub.js'),
    // JupyterHub checks routes at start and on POST /proxy only; so does the hub here, so that
    // the route check scenario measures one check.
    extra: { ConfigurableHTTPProxy: { check_running_interval: 3600 } },
  });

interface RoundResult {
  rps: number;
  p50: number;
  p99: number;
  cpuMsPerRequest: number;
  /** PostgreSQL's CPU (all its processes) per request; undefined on SQLite (inside the hub). */
  dbCpuMsPerRequest: number | undefined;
  errors: number;
}

/** `connections` loops, each sending the next request when the last answered, for `ms`. */
async function round(
  hub: Hub,
  dbPid: number | undefined,
  connections: number,
  ms: number,
  next: () => { method: string; path: string; body?: string; headers?: Record<string, string> },
): Promise<RoundResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const latencies: number[] = [];
  let errors = 0;
  const url = new URL(hub.url);
  const cpuBefore = cpuSeconds(hub.pid);
  const dbBefore = dbPid === undefined ? 0 : treeCpuSeconds(dbPid);
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
  const dbCpu = dbPid === undefined ? undefined : treeCpuSeconds(dbPid) - dbBefore;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    rps: latencies.length / elapsed,
    p50: at(0.5),
    p99: at(0.99),
    cpuMsPerRequest: latencies.length ? (cpu * 1000) / latencies.length : 0,
    dbCpuMsPerRequest:
      dbCpu === undefined ? undefined : latencies.length ? (dbCpu * 1000) / latencies.length : 0,
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

async function benchHub(hub: Hub, backend: string, dbPid: number | undefined): Promise<void> {
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
      const result = await round(hub, dbPid, connections, roundMs, next);
      row([
        hub.name,
        backend,
        `${label}, ${connections} conns`,
        result.rps,
        `${result.p50.toFixed(1)} ms`,
        `${result.p99.toFixed(1)} ms`,
        `${result.cpuMsPerRequest.toFixed(2)} ms`,
        result.dbCpuMsPerRequest === undefined ? '-' : `${result.dbCpuMsPerRequest.toFixed(2)} ms`,
        result.errors,
      ]);
    }
  }
  row([
    hub.name,
    backend,
    'hub RSS after the rounds (RssAnon: its own pages, not the mapped binary and libraries)',
    '-',
    '-',
    '-',
    `${statusMiB(hub.pid, 'VmRSS').toFixed(0)} MiB (RssAnon ${statusMiB(hub.pid, 'RssAnon').toFixed(0)} MiB)`,
    '-',
    '-',
  ]);
  if (!scenarioFilter || 'spawn'.includes(scenarioFilter)) await benchSpawn(hub, backend);
  if (!scenarioFilter || 'proxy'.includes(scenarioFilter)) await benchRouteCheck(hub, backend, names);
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

/** Polls `check` every 5 ms until it is true; the bench's own polling adds at most that. */
async function until(
  what: string,
  check: () => Promise<boolean>,
  { timeoutMs = 120_000, intervalMs = 5 } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

async function httpStatus(url: string): Promise<number | undefined> {
  try {
    const response = await fetch(url, { redirect: 'manual' });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return undefined;
  }
}

/**
 * The hub's own share of a spawn: POST …/server until the user's server is ready, minus the same
 * jupyterhub-singleuser command started alone until it answers HTTP (medians, one at a time).
 */
async function benchSpawn(hub: Hub, backend: string): Promise<void> {
  const through: number[] = [];
  const alone: number[] = [];
  for (let i = 0; i < spawnCount; i++) {
    const user = `spawn-${i}`;
    await (await api(hub, 'POST', `/users/${user}`)).arrayBuffer();
    const began = performance.now();
    const response = await api(hub, 'POST', `/users/${user}/server`);
    await response.arrayBuffer();
    if (response.status >= 400) throw new Error(`${hub.name}: spawn: ${response.status}`);
    if (response.status === 202) {
      await until(`${user}'s server`, async () => {
        const model = (await (await api(hub, 'GET', `/users/${user}`)).json()) as {
          server: string | null;
          pending: string | null;
        };
        return model.pending === null && model.server !== null;
      });
    }
    through.push(performance.now() - began);
    const server = await serverProcess(hub, user);
    await (await api(hub, 'DELETE', `/users/${user}/server`)).arrayBuffer();
    await until(`${user}'s server to stop`, async () => {
      const model = (await (await api(hub, 'GET', `/users/${user}`)).json()) as { servers?: object };
      return Object.keys(model.servers ?? {}).length === 0;
    });
    alone.push(await singleuserAlone(hub, user, server));
  }
  const total = median(through);
  const own = median(alone);
  for (const [scenario, ms] of [
    [`spawn to ready through the API, median of ${spawnCount}`, total],
    ['the same jupyterhub-singleuser alone', own],
    ["hub's own share of a spawn", total - own],
  ] as const) {
    row([hub.name, backend, scenario, '-', `${ms.toFixed(0)} ms`, '-', '-', '-', '-']);
  }
}

interface ServerProcess {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
}

/** The command line, environment and directory of the server the hub started, from /proc. */
async function serverProcess(hub: Hub, user: string): Promise<ServerProcess> {
  const model = (await (await api(hub, 'GET', `/users/${user}`)).json()) as {
    servers: Record<string, { state?: { pid?: number } }>;
  };
  const pid = model.servers['']?.state?.pid;
  if (!pid) throw new Error(`${hub.name}: no pid in ${user}'s server state`);
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  const env: Record<string, string> = {};
  for (const entry of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return { argv, env, cwd: readlinkSync(`/proc/${pid}/cwd`) };
}

/**
 * Starts the very command the hub started (same argv, environment, directory and port, with a
 * fresh token of the user, since the hub revokes the server's own at stop); ms until it answers
 * HTTP at its URL as the hub's check does.
 */
async function singleuserAlone(hub: Hub, user: string, server: ServerProcess): Promise<number> {
  const created = await api(hub, 'POST', `/users/${user}/tokens`, { note: 'singleuser alone' });
  const userToken = ((await created.json()) as { token: string }).token;
  const env = { ...server.env, JUPYTERHUB_API_TOKEN: userToken, JPY_API_TOKEN: userToken };
  const url = server.env.JUPYTERHUB_SERVICE_URL;
  if (!url) throw new Error(`${hub.name}: no JUPYTERHUB_SERVICE_URL in the server's environment`);
  const [command, ...args] = server.argv;
  const began = performance.now();
  const proc = new ManagedProcess(`singleuser ${user}`, command!, args, { env, cwd: server.cwd });
  try {
    await proc.untilReady(
      until('jupyterhub-singleuser alone', async () => {
        const status = await httpStatus(url);
        return status !== undefined && status < 500;
      }),
    );
    return performance.now() - began;
  } finally {
    await proc.stop();
  }
}

async function proxyRoutes(hub: Hub): Promise<Record<string, unknown>> {
  const response = await fetch(`${hub.proxyApi}/api/routes`, {
    headers: { authorization: `token ${proxyToken}` },
  });
  return (await response.json()) as Record<string, unknown>;
}

/**
 * The route check (POST /hub/api/proxy) against a proxy holding `routeCount` routes of the hub's
 * users whose servers are not running, as a proxy holds after the hub was down: the check reads
 * them all and deletes every one.
 */
async function benchRouteCheck(hub: Hub, backend: string, names: string[]): Promise<void> {
  const own = Object.keys(await proxyRoutes(hub)).length;
  let next = 0;
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < routeCount) {
        const name = names[next++ % names.length]!;
        const response = await fetch(`${hub.proxyApi}/api/routes/user/${name}`, {
          method: 'POST',
          headers: { authorization: `token ${proxyToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            target: 'http://127.0.0.1:9',
            jupyterhub: true,
            user: name,
            server_name: '',
          }),
        });
        await response.arrayBuffer();
        if (response.status >= 400) throw new Error(`adding a route: ${response.status}`);
      }
    }),
  );
  const before = Object.keys(await proxyRoutes(hub)).length;
  const began = performance.now();
  const cpuBefore = cpuSeconds(hub.pid);
  const response = await api(hub, 'POST', '/proxy');
  await response.arrayBuffer();
  // JupyterHub answers before its deletions finish; the check is done when the routes are gone.
  await until('the stale routes to go', async () => Object.keys(await proxyRoutes(hub)).length <= own, {
    timeoutMs: 600_000,
    intervalMs: 50,
  });
  const ms = performance.now() - began;
  row([
    hub.name,
    backend,
    `route check: ${before} routes in the proxy, ${routeCount} of them stale`,
    '-',
    `${ms.toFixed(0)} ms`,
    '-',
    `${((cpuSeconds(hub.pid) - cpuBefore) * 1000).toFixed(0)} ms in all`,
    '-',
    response.status >= 400 ? 1 : 0,
  ]);
}

async function main(): Promise<void> {
  row([
    'hub',
    'database',
    'scenario',
    'req/s',
    'p50',
    'p99',
    'hub CPU / request',
    'PostgreSQL CPU / request',
    'errors',
  ]);
  rows.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  process.stdout.write(`${rows.at(-1)}\n`);
  for (const backend of backends) {
    for (const which of ['seahorse', 'jupyterhub']) {
      if (only && only !== which) continue;
      const dir = mkdtempSync(join(tmpdir(), `hub-bench-${which}-`));
      const pg = backend === 'postgres' ? await startPostgres() : undefined;
      const dbUrl = pg ? pg.url : `sqlite:///${join(dir, 'hub.sqlite')}`;
      let hub: Hub | undefined;
      try {
        hub =
          which === 'seahorse' ? await startSeahorse(dbUrl, dir) : await startJupyterHub(setup(dbUrl, dir));
        await benchHub(hub, backend, pg?.process.pid);
      } catch (error) {
        process.stderr.write(`${(error as Error).stack ?? error}\n`);
        row([
          which,
          backend,
          `failed: ${(error as Error).message.split('\n')[0]}`,
          '-',
          '-',
          '-',
          '-',
          '-',
          '-',
        ]);
      } finally {
        await hub?.stop();
        await pg?.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  const command = ['npm run bench --', ...process.argv.slice(2)].join(' ');
  const header = `Measured ${new Date().toISOString()} on ${process.platform}, ${quick ? 'quick run' : 'full run'} (${userCount} users, ${roundMs / 1000} s rounds): \`${command}\`.\n\n`;
  writeFileSync(join(here, 'RESULTS.md'), `${header + rows.join('\n')}\n`);
}

await main();
