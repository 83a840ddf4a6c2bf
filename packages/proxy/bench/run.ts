// `npm run bench`: our proxy side by side with CHP 4.6.1, CHP 5.3.0 and nginx, in one run on
// loopback. Prints markdown tables with ratios; writes results/<timestamp>.json, and for a full
// run results/latest.json and RESULTS.md. `--help` lists the flags.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { findBinary, type RedisServer, startRedis } from '@seahorse/runtime/testing';
import {
  addRoutes,
  benchDir,
  type Contender,
  type ContenderKind,
  deleteRoutes,
  labels,
  nginxBinary,
  routePath,
  startContender,
  startUpstream,
  type Upstream,
} from './lib/contenders.ts';
import { Inspector } from './lib/inspector.ts';
import {
  cpuSeconds,
  foreignCpu,
  hardFdLimit,
  machine,
  mainThreadCpuSeconds,
  memory,
  openFds,
  stopAll,
  stopAllOnSignals,
  waitForQuiet,
} from './lib/processes.ts';
import { topSelfTime } from './lib/profile.ts';
import { evaluateTargets, type Results, renderMarkdown } from './lib/results.ts';
import {
  buildFingerprint,
  ensureBenchDependencies,
  ensureBuilt,
  ensureWrk,
  sourceRevision,
} from './lib/setup.ts';
import { type GroupOptions, measureGroup, measureQuietly, median, problemOf } from './lib/throughput.ts';
import { transferLarge } from './lib/transfer.ts';
import { closeAll, echoLoad, openIdle, sleep } from './lib/websockets.ts';
import { runWrk } from './lib/wrk.ts';

const scenarios = [
  'small',
  'latency',
  'bodies',
  'ws',
  'ws-idle',
  'churn',
  'redis',
  'workers',
  'profile',
] as const;
type Scenario = (typeof scenarios)[number];
const allKinds: ContenderKind[] = ['direct', 'seahorse', 'chp4', 'chp5', 'nginx'];

const usage = `Usage: npm run bench -- [options]

  --quick                 a short run (1 and 1k routes, 2 s per measurement, 10k churn, 1k idle websockets)
  --scenario <list>       comma-separated subset of: ${scenarios.join(', ')}
  --contenders <list>     comma-separated subset of: ${allKinds.join(', ')}
  --source                run our proxy from src by type stripping instead of dist (no build needed;
                          RSS then includes the TypeScript loader, about 28 MB)
  --help                  this text

A full run (no --quick, --scenario or --contenders) takes about 15 minutes on 2 cores and
rewrites RESULTS.md and results/latest.json; every run writes results/<timestamp>.json.
`;

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    scenario: { type: 'string' },
    contenders: { type: 'string' },
    source: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  process.stdout.write(usage);
  process.exit(0);
}
const chosen = (value: string | undefined, allowed: readonly string[], flag: string): string[] => {
  if (value === undefined) return [...allowed];
  const list = value.split(',').map((item) => item.trim());
  const unknown = list.filter((item) => !allowed.includes(item));
  if (unknown.length > 0) {
    process.stderr.write(
      `bench: unknown ${flag} '${unknown.join(',')}'; choose from ${allowed.join(', ')}\n`,
    );
    process.exit(2);
  }
  return list;
};
const selected = new Set(chosen(flags.scenario, scenarios, '--scenario') as Scenario[]);
const kinds = chosen(flags.contenders, allKinds, '--contenders') as ContenderKind[];
const fullRun =
  !flags.quick && !flags.source && flags.scenario === undefined && flags.contenders === undefined;

const settings = flags.quick
  ? {
      sizes: [1, 1000],
      warmupSeconds: 1,
      wrkSeconds: 2,
      rounds: 1,
      latencySeconds: 2,
      transfers: 3,
      echoConnections: 50,
      echoSeconds: 2,
      echoRounds: 1,
      idleConnections: 1000,
      churnSizes: [10_000],
      redisSizes: [1, 100],
      workerCounts: [1, 2],
      profileSizes: [1],
    }
  : {
      sizes: [1, 1000, 10_000, 100_000],
      warmupSeconds: 1,
      wrkSeconds: 3,
      rounds: 3,
      latencySeconds: 3,
      transfers: 10,
      echoConnections: 50,
      echoSeconds: 3,
      echoRounds: 3,
      // Each proxied websocket holds two descriptors (nginx a few more); stay under what this host
      // allows a process (`ulimit -Hn`).
      idleConnections: Math.min(10_000, Math.floor((hardFdLimit - 2000) / 2)),
      churnSizes: [10_000, 100_000],
      redisSizes: [1, 100, 1000],
      workerCounts: [1, 2, 4],
      profileSizes: [1, 100_000],
    };
const load = { threads: 2, connections: 64 };

const startedAt = new Date();
const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
const resultsDir = join(benchDir, 'results');
const results: Results = {
  startedAt: startedAt.toISOString(),
  finishedAt: '',
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  machine: machine(),
  settings: {
    ...settings,
    load,
    scenarios: [...selected],
    contenders: kinds,
    proxySource: flags.source ? 'src (type stripping)' : 'dist (npm run build)',
  },
  notes: [
    'Every process runs on the same 2-core machine: wrk (2 threads), the contender, the upstream and, for websockets, the Node load client compete for the cores. Ratios within one run carry over; absolute numbers do not.',
    'The upstream is one Node process (bench/upstream.ts): 100-byte answers, 8 MB downloads, drained uploads, websocket echo (ws). "direct upstream" is wrk against it without a proxy; its CPU and RSS are the upstream\'s own.',
    'nginx runs as one process (master_process off, worker_processes 1, keepalive upstream pool, proxy_buffering off) to compare one event loop with one event loop; it serves a fixed location whatever the table size, and runs in the group of every table size so that our ratio to it comes from the same interleaved rounds (the machine drifts between groups).',
    'All Node processes run the same Node binary; our proxy through its bin, whose `#!` line adds `--max-semi-space-size=4`; CHP with the defaults of Node. Proxies log at warn and serve no metrics, so neither counts any (CHP swaps in its MockMetrics, as we skip ours). Peak RSS is VmHWM of the process over its whole life (route population included); CPU is utime+stime from /proc/<pid>/stat during the measured window, in % of one core.',
    'Requests cycle over up to 1000 routes spread across the table (/user/u<i>/api).',
    `req/s and latencies are medians of ${settings.rounds} round(s) of ${settings.wrkSeconds} s (unloaded latency: ${settings.latencySeconds} s) after a ${settings.warmupSeconds} s warm-up: the contenders of one table size run at once with the same routes and are measured in turn, the order rotating each round, so drift spreads over all of them. The JSON keeps every round.`,
  ],
  small: [],
  latency: [],
  bodies: [],
  echo: [],
  idle: [],
  churn: [],
  redis: [],
  workers: [],
  profiles: [],
  targets: [],
};

if (!flags.quick && settings.idleConnections < 10_000) {
  results.notes.push(
    `Idle websockets: ${settings.idleConnections.toLocaleString('en-US')} rather than 10,000 when the hard open-files limit (${hardFdLimit.toLocaleString('en-US')} here) cannot hold two descriptors per proxied websocket plus nginx's spares; memory per connection does not depend on the count.`,
  );
}

const log = (message: string) => process.stderr.write(`bench: ${message}\n`);
const mb = (bytes: number) => bytes / 1024 / 1024;
stopAllOnSignals();
let upstream: Upstream | undefined;
let redis: RedisServer | undefined;
try {
  ensureBenchDependencies();
  ensureWrk();
  if (!flags.source) ensureBuilt();
  results.settings.proxyRevision = sourceRevision();
  results.settings.proxyBuild = buildFingerprint();
  if (kinds.includes('nginx') && !existsSync(nginxBinary)) {
    log(`${nginxBinary} not found: nginx is left out (apt-get install nginx-light to include it)`);
    results.notes.push('nginx was not installed for this run.');
  }
  const idleLoad = await waitForQuiet(60_000);
  results.settings.otherCpuPercentBeforeStart = idleLoad;
  if (idleLoad > 25) {
    log(
      `other processes use ${idleLoad.toFixed(0)}% of a core and did not stop within 60 s: expect noisy numbers`,
    );
    results.notes.push(
      `Other processes used ${idleLoad.toFixed(0)}% of a core when the run started; the "other CPU %" columns show how much during each measurement.`,
    );
  }
  upstream = await startUpstream();
  log(`upstream on ${upstream.url} (pid ${upstream.process.pid})`);
  const available = kinds.filter((kind) => kind !== 'nginx' || existsSync(nginxBinary));
  const proxies = available.filter((kind) => kind === 'seahorse' || kind === 'chp4' || kind === 'chp5');

  if (selected.has('small')) await smallResponses(available, proxies);
  if (selected.has('latency')) await unloadedLatency(available);
  if (selected.has('bodies')) await largeBodies(available);
  if (selected.has('ws')) await websocketEcho(available);
  if (selected.has('ws-idle')) await idleWebsockets(available.filter((kind) => kind !== 'direct'));
  if (selected.has('churn') || selected.has('redis')) {
    try {
      findBinary('redis-server');
      redis = await startRedis();
    } catch (error) {
      log(`no Redis store rows: ${(error as Error).message}`);
    }
  }
  if (selected.has('churn')) await routeChurn(proxies, redis);
  if (selected.has('redis')) await routeStores(redis);
  if (selected.has('workers') && kinds.includes('seahorse')) await scalingWithWorkers();
  if (selected.has('profile') && kinds.includes('seahorse')) await profileProxy();
} finally {
  await redis?.stop();
  await stopAll();
}

results.finishedAt = new Date().toISOString();
// Another process may rebuild the proxy while the bench runs; contenders started after that run
// different code, and a table mixing two versions would mislead.
const rebuilt = !flags.source && buildFingerprint() !== results.settings.proxyBuild;
if (rebuilt) results.notes.push('The proxy was rebuilt during this run: its rows mix two versions.');
results.targets = evaluateTargets(results);
const markdown = renderMarkdown(results);
process.stdout.write(`\n${markdown}\n`);
mkdirSync(resultsDir, { recursive: true });
const json = `${JSON.stringify(results, null, 2)}\n`;
writeFileSync(join(resultsDir, `${stamp}.json`), json);
log(`wrote results/${stamp}.json`);
const failed = [
  ...results.small,
  ...results.latency,
  ...results.bodies,
  ...results.echo,
  ...results.idle,
  ...results.churn,
  ...results.redis,
  ...results.workers,
].filter((row) => row.problem?.startsWith('failed'));
if (rebuilt) {
  log("the proxy's dist changed during the run (it was rebuilt): rows mix two versions; run again");
  log('RESULTS.md and results/latest.json are left as they were');
  process.exitCode = 1;
} else if (failed.length > 0) {
  log(`${failed.length} measurement(s) failed (${failed.map((row) => row.label).join(', ')})`);
  log('RESULTS.md and results/latest.json are left as they were');
  process.exitCode = 1;
} else if (fullRun) {
  writeFileSync(join(resultsDir, 'latest.json'), json);
  writeFileSync(join(benchDir, 'RESULTS.md'), resultsDocument(markdown));
  formatMarkdown(join(benchDir, 'RESULTS.md'));
  log('wrote results/latest.json and RESULTS.md');
} else {
  log('a partial run: RESULTS.md and results/latest.json are left as they were');
}

/** Starts a contender, gives it `routes` routes to the upstream, runs `measure`, stops it. */
async function withContender<T>(
  kind: ContenderKind,
  routes: number,
  measure: (contender: Contender, populateSeconds: number) => Promise<T>,
  options: { redisUrl?: string } = {},
): Promise<T> {
  const contender = await startContender(kind, { upstream: upstream!, source: flags.source, ...options });
  try {
    const populateSeconds = await addRoutes(contender, upstream!.url, routes);
    return await measure(contender, populateSeconds);
  } finally {
    await contender.stop();
  }
}

async function smallResponses(available: ContenderKind[], proxies: ContenderKind[]): Promise<void> {
  for (const routes of settings.sizes) {
    // The upstream serves every path alike: measured with the first size. nginx (a fixed
    // location) runs in every size's group, so each ratio to it comes from the same rounds.
    const group =
      routes === settings.sizes[0]
        ? available
        : [...proxies, ...available.filter((kind) => kind === 'nginx')];
    log(`small responses at ${routes} routes: ${group.map((kind) => labels[kind]).join(', ')}`);
    results.small.push(...(await measureGroup(group, groupOptions(routes))));
  }
}

async function unloadedLatency(available: ContenderKind[]): Promise<void> {
  log(`unloaded latency: ${available.map((kind) => labels[kind]).join(', ')}`);
  results.latency.push(
    ...(await measureGroup(available, {
      ...groupOptions(1),
      threads: 1,
      connections: 1,
      seconds: settings.latencySeconds,
    })),
  );
}

function groupOptions(routes: number): GroupOptions {
  return {
    upstream: upstream!,
    routes,
    ...load,
    seconds: settings.wrkSeconds,
    warmupSeconds: settings.warmupSeconds,
    rounds: settings.rounds,
    source: flags.source,
    log,
  };
}

async function largeBodies(available: ContenderKind[]): Promise<void> {
  for (const kind of available) {
    log(`large bodies: ${labels[kind]}`);
    const row = { kind, label: labels[kind] };
    try {
      const measured = await withContender(kind, 1, async (contender) => {
        const upload = await transferLarge(
          `${contender.url}${routePath(0)}/upload`,
          'up',
          settings.transfers,
        );
        const download = await transferLarge(
          `${contender.url}${routePath(0)}/big`,
          'down',
          settings.transfers,
        );
        return {
          upMegabytesPerSecond: upload.megabytesPerSecond,
          downMegabytesPerSecond: download.megabytesPerSecond,
        };
      });
      results.bodies.push({ ...row, ...measured });
    } catch (error) {
      results.bodies.push({ ...row, problem: problemOf(error) });
    }
  }
}

/**
 * Echo through every contender, started together and measured in interleaved rounds (the order
 * rotating), as the throughput rows are: a drifting machine then shifts all of them alike.
 */
async function websocketEcho(available: ContenderKind[]): Promise<void> {
  log(`websocket echo: ${available.map((kind) => labels[kind]).join(', ')}`);
  const running: Array<{ contender: Contender; url: string; samples: EchoSample[] }> = [];
  const problems = new Map<ContenderKind, string>();
  try {
    for (const kind of available) {
      try {
        const contender = await startContender(kind, { upstream: upstream!, source: flags.source });
        running.push({
          contender,
          url: `${contender.url.replace('http:', 'ws:')}${routePath(0)}/ws`,
          samples: [],
        });
        await addRoutes(contender, upstream!.url, 1);
      } catch (error) {
        problems.set(kind, problemOf(error));
      }
    }
    for (let round = 0; round < settings.echoRounds; round++) {
      for (let i = 0; i < running.length; i++) {
        const entry = running[(i + round) % running.length]!;
        log(`  round ${round + 1}/${settings.echoRounds}: ${entry.contender.label}`);
        entry.samples.push(await measureQuietly(() => measureEcho(entry.contender, entry.url), log));
      }
    }
  } finally {
    for (const { contender } of running) await contender.stop();
  }
  for (const kind of available) {
    const row = { kind, label: labels[kind], connections: settings.echoConnections };
    const entry = running.find((candidate) => candidate.contender.kind === kind);
    if (!entry || entry.samples.length === 0) {
      results.echo.push({ ...row, problem: problems.get(kind) ?? 'failed: not measured' });
      continue;
    }
    const of = (key: keyof EchoSample) => median(entry.samples.map((sample) => sample[key]));
    results.echo.push({
      ...row,
      messagesPerSecond: of('messagesPerSecond'),
      cpuPercent: of('cpuPercent'),
      cpuUsPerMessage: of('cpuUsPerMessage'),
      otherCpuPercent: Math.max(...entry.samples.map((sample) => sample.otherCpuPercent)),
      rounds: entry.samples.map((sample) => Math.round(sample.messagesPerSecond)),
    });
  }
}

interface EchoSample {
  messagesPerSecond: number;
  cpuPercent: number;
  cpuUsPerMessage: number;
  otherCpuPercent: number;
}

async function measureEcho(contender: Contender, url: string): Promise<EchoSample> {
  let cpuBefore = 0;
  let cpu = 0;
  let others = () => 0;
  let otherCpuPercent = 0;
  const result = await echoLoad(url, settings.echoConnections, settings.echoSeconds, settings.warmupSeconds, {
    onStart: () => {
      cpuBefore = cpuSeconds(contender.pid);
      others = foreignCpu([...new Set([contender.pid, upstream!.process.pid])]);
    },
    onEnd: () => {
      cpu = cpuSeconds(contender.pid) - cpuBefore;
      otherCpuPercent = others();
    },
  });
  return {
    messagesPerSecond: result.messagesPerSecond,
    cpuPercent: (100 * cpu) / result.seconds,
    cpuUsPerMessage: result.messages > 0 ? (cpu * 1e6) / result.messages : 0,
    otherCpuPercent,
  };
}

async function idleWebsockets(available: ContenderKind[]): Promise<void> {
  const count = settings.idleConnections;
  for (const kind of available) {
    log(`idle websockets: ${labels[kind]}, ${count} connections`);
    const row = { kind, label: labels[kind], connections: count };
    try {
      const measured = await withContender(kind, 1, async (contender) => {
        const url = `${contender.url.replace('http:', 'ws:')}${routePath(0)}/ws`;
        // Warm the websocket path first, so the delta is connections rather than code and buffers.
        await closeAll(await openIdle(url, 200, 50));
        await sleep(1000);
        const before = memory(contender.pid).rssBytes;
        const sockets = await openIdle(url, count, 100);
        try {
          await sleep(2000);
          const after = memory(contender.pid).rssBytes;
          return {
            rssBeforeMb: mb(before),
            rssAfterMb: mb(after),
            kibPerConnection: (after - before) / 1024 / count,
            openFds: openFds(contender.pid),
          };
        } finally {
          await closeAll(sockets);
        }
      });
      results.idle.push({ ...row, ...measured });
    } catch (error) {
      results.idle.push({ ...row, problem: problemOf(error) });
    }
  }
}

async function routeChurn(proxies: ContenderKind[], redisServer: RedisServer | undefined): Promise<void> {
  const churnKinds: ContenderKind[] = [...proxies];
  if (redisServer && proxies.includes('seahorse')) churnKinds.splice(1, 0, 'seahorse-redis');
  for (const kind of churnKinds) {
    await redisServer?.command('FLUSHALL');
    log(`route churn: ${labels[kind]} (${settings.churnSizes.join(', ')} routes)`);
    try {
      await withContender(
        kind,
        0,
        async (contender) => {
          for (const routes of settings.churnSizes) {
            const cpuBefore = cpuSeconds(contender.pid);
            const clientBefore = process.cpuUsage();
            const addSeconds = await addRoutes(contender, upstream!.url, routes);
            const cpu = cpuSeconds(contender.pid) - cpuBefore;
            const client = process.cpuUsage(clientBefore);
            const deleteSeconds = await deleteRoutes(contender, routes);
            results.churn.push({
              kind,
              label: labels[kind],
              routes,
              addSeconds,
              addCpuPercent: (100 * cpu) / addSeconds,
              clientCpuPercent: (100 * (client.user + client.system)) / 1e6 / addSeconds,
              deleteSeconds,
              peakRssMb: mb(memory(contender.pid).peakRssBytes),
            });
          }
        },
        { redisUrl: redisServer?.url },
      );
    } catch (error) {
      const done = new Set(results.churn.filter((row) => row.kind === kind).map((row) => row.routes));
      for (const routes of settings.churnSizes.filter((routes) => !done.has(routes)))
        results.churn.push({ kind, label: labels[kind], routes, problem: problemOf(error) });
    }
  }
}

async function routeStores(redisServer: RedisServer | undefined): Promise<void> {
  const storeKinds = (['seahorse', 'seahorse-redis', 'chp4', 'chp4-redis'] as const).filter((kind) =>
    kinds.includes(kind.startsWith('chp4') ? 'chp4' : 'seahorse'),
  );
  const unavailable = new Map<ContenderKind, string>();
  if (!redisServer) {
    unavailable.set('seahorse-redis', 'not available: redis-server is not installed');
    unavailable.set('chp4-redis', 'not available: redis-server is not installed');
  }
  for (const routes of settings.redisSizes) {
    const group = storeKinds.filter((kind) => !unavailable.has(kind));
    log(`route stores at ${routes} routes: ${group.map((kind) => labels[kind]).join(', ')}`);
    await redisServer?.command('FLUSHALL');
    // Separate databases: our store would otherwise import the CHP backend's routes on start.
    const redisUrls = redisServer && {
      'seahorse-redis': `${redisServer.url}/1`,
      'chp4-redis': `${redisServer.url}/2`,
    };
    const rows = await measureGroup(group, {
      ...groupOptions(routes),
      redisUrls,
      extraPids: redisServer ? [redisServer.process.pid] : [],
    });
    for (const kind of storeKinds) {
      const row = rows.find((other) => other.kind === kind);
      if (row) {
        if (row.problem?.startsWith('not available')) unavailable.set(kind, row.problem);
        results.redis.push(row);
      } else results.redis.push({ kind, label: labels[kind], routes, problem: unavailable.get(kind)! });
    }
  }
}

/** `--workers N` side by side with one process, at 1,000 routes. */
async function scalingWithWorkers(): Promise<void> {
  const group = settings.workerCounts.map((count) =>
    count === 1 ? 'seahorse' : (`seahorse-workers-${count}` as ContenderKind),
  );
  log(`--workers at 1000 routes: ${group.map((kind) => labels[kind]).join(', ')}`);
  results.workers.push(...(await measureGroup(group, groupOptions(1000))));
}

/**
 * V8's CPU profile of our proxy under wrk (the profiler --cpu-prof uses, driven through the
 * inspector so that it covers the measured window only, not the start and the route population).
 */
async function profileProxy(): Promise<void> {
  const dir = join(resultsDir, 'profiles');
  mkdirSync(dir, { recursive: true });
  for (const routes of settings.profileSizes) {
    log(`profile: our proxy under wrk at ${routes} routes`);
    const contender = await startContender('seahorse', {
      upstream: upstream!,
      source: flags.source,
      nodeFlags: ['--inspect=127.0.0.1:0'],
    });
    try {
      const inspector = await Inspector.connect(contender.process);
      await addRoutes(contender, upstream!.url, routes);
      const wrk = { ...load, prefix: '/user/u', routes, suffix: '/api' };
      await runWrk(contender.url, { ...wrk, seconds: settings.warmupSeconds });
      await inspector.startProfiling();
      const mainThreadBefore = mainThreadCpuSeconds(contender.pid);
      const result = await runWrk(contender.url, { ...wrk, seconds: settings.wrkSeconds });
      const mainThread = mainThreadCpuSeconds(contender.pid) - mainThreadBefore;
      const file = join(dir, `${stamp}-${routes}-routes.cpuprofile`);
      writeFileSync(file, JSON.stringify(await inspector.stopProfiling()));
      inspector.close();
      results.profiles.push({
        routes,
        requestsPerSecond: result.requestsPerSecond,
        mainThreadCpuPercent: (100 * mainThread) / result.seconds,
        file: relative(benchDir, file),
        ...topSelfTime(file, 15),
      });
    } catch (error) {
      log(`profile at ${routes} routes failed: ${(error as Error).message}`);
    } finally {
      await contender.stop();
    }
  }
}

/** Leaves RESULTS.md as the workspace's formatter would, so `npm run check` stays clean. */
function formatMarkdown(file: string): void {
  const biome = join(benchDir, '..', '..', '..', 'node_modules', '.bin', 'biome');
  if (existsSync(biome)) spawnSync(biome, ['format', '--write', file], { stdio: 'ignore' });
}

function resultsDocument(markdown: string): string {
  const m = results.machine;
  return `# @seahorse/proxy benchmark results

Generated by \`${results.command}\` (packages/proxy/bench/run.ts) on ${results.startedAt.slice(0, 16).replace('T', ' ')} UTC
for the proxy at commit ${results.settings.proxyRevision} (run from ${results.settings.proxySource});
the JSON is in \`results/latest.json\`. Regenerate with \`npm run bench\` in packages/proxy.

## Machine

- \`nproc\`: ${m.nproc} (${m.cpuModel}); kernel ${m.kernel}
- Node ${m.node}; ${m.wrk}; ${m.nginx || 'no nginx'}; ${m.redis || 'no redis-server'}
- open-file limit (hard): ${m.fdLimit}
- \`free -h\`:

\`\`\`
${m.freeH}
\`\`\`

## How to read this

${results.notes.map((note) => `- ${note}`).join('\n')}

## Results

${markdown}
`;
}
