// Throughput of several contenders measured side by side: all are started with the same route
// table, then measured in interleaved rounds (a few seconds each, the order rotating per round),
// and each row reports its median round. Drift on a shared machine then spreads over every
// contender instead of landing on whichever ran last.
import { waitFor } from '@seahorse/runtime/testing';
import {
  addRoutes,
  type Contender,
  type ContenderKind,
  labels,
  NotAvailable,
  routePath,
  startContender,
  type Upstream,
} from './contenders.ts';
import {
  cpuSeconds,
  foreignCpu,
  processTree,
  treeCpuSeconds,
  treeMemory,
  waitForQuiet,
} from './processes.ts';
import type { ThroughputRow } from './results.ts';
import { runWrk } from './wrk.ts';

/** Above this much CPU used by other processes (% of a core), a round is measured again once. */
const noisyPercent = 30;

export interface GroupOptions {
  upstream: Upstream;
  routes: number;
  threads: number;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  rounds: number;
  source: boolean;
  /** Processes of the bench besides contender and upstream (redis-server), not counted as others' CPU. */
  extraPids?: number[];
  /** Redis URL per contender that needs one. */
  redisUrls?: Partial<Record<ContenderKind, string>>;
  log: (message: string) => void;
}

type Sample = Required<
  Pick<
    ThroughputRow,
    | 'requestsPerSecond'
    | 'p50Ms'
    | 'p99Ms'
    | 'p999Ms'
    | 'errors'
    | 'cpuPercent'
    | 'cpuUsPerRequest'
    | 'upstreamCpuPercent'
    | 'otherCpuPercent'
  >
>;

export const problemOf = (error: unknown): string =>
  error instanceof NotAvailable
    ? `not available yet: ${error.message}`
    : `failed: ${(error as Error).message.split('\n')[0]}`;

export async function measureGroup(kinds: ContenderKind[], options: GroupOptions): Promise<ThroughputRow[]> {
  const rows = new Map<ContenderKind, ThroughputRow>();
  const running: Array<{ contender: Contender; tableSize: number; samples: Sample[] }> = [];
  try {
    for (const kind of kinds) {
      const row: ThroughputRow = { kind, label: labels[kind], routes: options.routes };
      rows.set(kind, row);
      try {
        const contender = await startContender(kind, {
          upstream: options.upstream,
          source: options.source,
          redisUrl: options.redisUrls?.[kind],
        });
        running.push({ contender, tableSize: contender.apiUrl ? options.routes : 1, samples: [] });
        if (contender.apiUrl)
          row.populateSeconds = await addRoutes(contender, options.upstream.url, options.routes);
      } catch (error) {
        row.problem = problemOf(error);
        const started = running.findIndex((entry) => entry.contender.kind === kind);
        if (started !== -1) await running.splice(started, 1)[0]!.contender.stop();
      }
    }
    for (const entry of running) {
      const { contender, tableSize } = entry;
      // A shared store may apply writes a moment after acknowledging them.
      const probe = `${contender.url}${routePath(tableSize - 1)}/api`;
      await waitFor(`${probe} to answer 200`, async () => (await fetch(probe)).status === 200, {
        timeoutMs: 15_000,
      });
      await runWrk(contender.url, { ...wrkOptions(options, tableSize), seconds: options.warmupSeconds });
    }
    for (let round = 0; round < options.rounds; round++) {
      for (let i = 0; i < running.length; i++) {
        const entry = running[(i + round) % running.length]!;
        options.log(`  round ${round + 1}/${options.rounds}: ${entry.contender.label}`);
        const measure = () => sample(entry.contender, entry.tableSize, options);
        entry.samples.push(await measureQuietly(measure, options.log));
      }
    }
    for (const { contender, samples } of running) {
      const { peakRssBytes, anonRssBytes } = treeMemory(contender.pid);
      Object.assign(rows.get(contender.kind)!, summarize(samples), {
        peakRssMb: peakRssBytes / 1024 / 1024,
        anonRssMb: anonRssBytes / 1024 / 1024,
      });
    }
  } catch (error) {
    for (const { contender } of running) {
      const row = rows.get(contender.kind)!;
      if (row.requestsPerSecond === undefined) row.problem = problemOf(error);
    }
  } finally {
    for (const { contender } of running) await contender.stop();
  }
  return kinds.map((kind) => rows.get(kind)!);
}

function wrkOptions(options: GroupOptions, tableSize: number) {
  return {
    threads: options.threads,
    connections: options.connections,
    prefix: '/user/u',
    routes: tableSize,
    suffix: '/api',
  };
}

/**
 * Runs `measure`; when other processes used more than `noisyPercent` of a core meanwhile, waits
 * for the machine to quiet down, measures again and keeps the quieter of the two.
 */
export async function measureQuietly<T extends { otherCpuPercent: number }>(
  measure: () => Promise<T>,
  log: (message: string) => void,
): Promise<T> {
  const first = await measure();
  if (first.otherCpuPercent <= noisyPercent) return first;
  log(`other processes used ${first.otherCpuPercent.toFixed(0)}% of a core; measuring again`);
  await waitForQuiet(30_000);
  const second = await measure();
  return second.otherCpuPercent < first.otherCpuPercent ? second : first;
}

async function sample(contender: Contender, tableSize: number, options: GroupOptions): Promise<Sample> {
  const upstreamPid = options.upstream.process.pid;
  const cpuBefore = treeCpuSeconds(contender.pid);
  const upstreamBefore = cpuSeconds(upstreamPid);
  const pids = [...processTree(contender.pid), upstreamPid, ...(options.extraPids ?? [])];
  const others = foreignCpu([...new Set(pids)]);
  const result = await runWrk(contender.url, { ...wrkOptions(options, tableSize), seconds: options.seconds });
  const otherCpuPercent = others();
  const cpu = treeCpuSeconds(contender.pid) - cpuBefore;
  const upstreamCpu = cpuSeconds(upstreamPid) - upstreamBefore;
  return {
    requestsPerSecond: result.requestsPerSecond,
    p50Ms: result.latencyMs.p50,
    p99Ms: result.latencyMs.p99,
    p999Ms: result.latencyMs.p999,
    errors: result.errors,
    cpuPercent: (100 * cpu) / result.seconds,
    cpuUsPerRequest: (cpu * 1e6) / result.requests,
    upstreamCpuPercent: (100 * upstreamCpu) / result.seconds,
    otherCpuPercent,
  };
}

export const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

/** Medians per metric; errors summed and other processes' CPU at its worst, so neither hides. */
function summarize(samples: Sample[]): Sample & { rounds: number[] } {
  const of = (key: keyof Sample) => median(samples.map((s) => s[key]));
  return {
    requestsPerSecond: of('requestsPerSecond'),
    p50Ms: of('p50Ms'),
    p99Ms: of('p99Ms'),
    p999Ms: of('p999Ms'),
    errors: samples.reduce((sum, s) => sum + s.errors, 0),
    cpuPercent: of('cpuPercent'),
    cpuUsPerRequest: of('cpuUsPerRequest'),
    upstreamCpuPercent: of('upstreamCpuPercent'),
    otherCpuPercent: Math.max(...samples.map((s) => s.otherCpuPercent)),
    rounds: samples.map((s) => Math.round(s.requestsPerSecond)),
  };
}
