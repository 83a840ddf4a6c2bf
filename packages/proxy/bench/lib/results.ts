// The bench's results: rows per scenario, the targets of issue 5 checked against them, and the
// markdown that goes to stdout and RESULTS.md.
import type { ContenderKind } from './contenders.ts';
import type { SelfTime } from './profile.ts';

interface Row {
  kind: ContenderKind;
  label: string;
  /** Why there is no measurement: "not available yet: …" or "failed: …". */
  problem?: string;
}

export interface ThroughputRow extends Row {
  routes: number;
  requestsPerSecond?: number;
  p50Ms?: number;
  p99Ms?: number;
  p999Ms?: number;
  /** Non-2xx answers, socket errors and timeouts seen by wrk (should be 0). */
  errors?: number;
  peakRssMb?: number;
  /** RssAnon at the end: resident memory without mapped files (node's own binary is ~47 MB of VmRSS). */
  anonRssMb?: number;
  /** CPU of the contender's process in % of one core, and per request. */
  cpuPercent?: number;
  cpuUsPerRequest?: number;
  upstreamCpuPercent?: number;
  /** CPU used by processes outside the bench during the measurement, in % of one core. */
  otherCpuPercent?: number;
  /** req/s of each round; the row's figures are the medians. */
  rounds?: number[];
  /** Seconds to add the routes through the REST API before measuring. */
  populateSeconds?: number;
}

export interface BodiesRow extends Row {
  upMegabytesPerSecond?: number;
  downMegabytesPerSecond?: number;
}

export interface EchoRow extends Row {
  connections: number;
  messagesPerSecond?: number;
  cpuPercent?: number;
  /** The contender's CPU per echoed message (both directions): its cost, whatever limits the rate. */
  cpuUsPerMessage?: number;
  otherCpuPercent?: number;
  /** messages/s of each round; the row's figures are the medians. */
  rounds?: number[];
}

export interface IdleRow extends Row {
  connections: number;
  rssBeforeMb?: number;
  rssAfterMb?: number;
  kibPerConnection?: number;
  openFds?: number;
}

export interface ChurnRow extends Row {
  routes: number;
  addSeconds?: number;
  /** CPU of the proxy and of the bench's API client while adding, in % of one core. */
  addCpuPercent?: number;
  clientCpuPercent?: number;
  deleteSeconds?: number;
  peakRssMb?: number;
}

export interface ProfileRow {
  routes: number;
  requestsPerSecond: number;
  /** How busy the proxy's main thread was while profiled, in % of one core. */
  mainThreadCpuPercent: number;
  file: string;
  totalMs: number;
  functions: SelfTime[];
}

export interface Target {
  goal: string;
  measured: string;
  /** Undefined when the run did not measure it. */
  met: boolean | undefined;
}

export interface Results {
  startedAt: string;
  finishedAt: string;
  command: string;
  machine: Record<string, string | number>;
  settings: Record<string, unknown>;
  notes: string[];
  small: ThroughputRow[];
  latency: ThroughputRow[];
  bodies: BodiesRow[];
  echo: EchoRow[];
  idle: IdleRow[];
  churn: ChurnRow[];
  redis: ThroughputRow[];
  workers: ThroughputRow[];
  profiles: ProfileRow[];
  targets: Target[];
}

const fixed = (value: number | undefined, digits = 1) => (value === undefined ? '–' : value.toFixed(digits));
const integer = (value: number | undefined) =>
  value === undefined ? '–' : Math.round(value).toLocaleString('en-US');
const ms = (value: number | undefined) =>
  value === undefined ? '–' : value < 10 ? value.toFixed(2) : value.toFixed(value < 100 ? 1 : 0);
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || b === 0 ? '–' : `${(a / b).toFixed(a / b < 0.1 ? 3 : 2)}x`;

/** A markdown table with aligned columns (as the workspace's formatter writes them). */
function table(headers: string[], rows: string[][]): string {
  // Short rows (a problem instead of numbers) are padded to the table's width.
  const cells = rows.map((row) => [...row, ...Array(headers.length - row.length).fill('')]);
  const widths = headers.map((header, i) =>
    Math.max(3, header.length, ...cells.map((row) => row[i]!.length)),
  );
  const line = (row: string[]) => `| ${row.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), line(widths.map((width) => '-'.repeat(width))), ...cells.map(line)].join('\n');
}

const find = <T extends Row>(rows: T[], kind: ContenderKind, where: (row: T) => boolean = () => true) =>
  rows.find((row) => row.kind === kind && row.problem === undefined && where(row));

export function evaluateTargets(results: Results): Target[] {
  const targets: Target[] = [];
  const sizes = [...new Set(results.small.map((row) => row.routes))].sort((a, b) => a - b);
  for (const routes of sizes) {
    const ours = find(results.small, 'seahorse', (row) => row.routes === routes);
    const nginx =
      find(results.small, 'nginx', (row) => row.routes === routes) ?? find(results.small, 'nginx');
    const chp = find(results.small, 'chp4', (row) => row.routes === routes);
    if (!ours) continue;
    const at = `${routes.toLocaleString('en-US')} route${routes === 1 ? '' : 's'}`;
    if (chp) {
      const speed = ours.requestsPerSecond! / chp.requestsPerSecond!;
      targets.push({
        goal: `req/s ≥ 2.5x CHP 4.6.1 at ${at}`,
        measured: `${speed.toFixed(2)}x (${integer(ours.requestsPerSecond)} vs ${integer(chp.requestsPerSecond)})`,
        met: speed >= 2.5,
      });
      const p99 = ours.p99Ms! / chp.p99Ms!;
      targets.push({
        goal: `p99 ≤ 0.5x CHP 4.6.1 at ${at}`,
        measured: `${p99.toFixed(2)}x (${ms(ours.p99Ms)} vs ${ms(chp.p99Ms)} ms)`,
        met: p99 <= 0.5,
      });
    }
    if (nginx) {
      const speed = ours.requestsPerSecond! / nginx.requestsPerSecond!;
      targets.push({
        goal: `req/s ≥ 0.5x nginx at ${at}`,
        measured: `${speed.toFixed(2)}x (${integer(ours.requestsPerSecond)} vs ${integer(nginx.requestsPerSecond)})`,
        met: speed >= 0.5,
      });
    }
  }
  for (const [routes, limit] of [
    [1, 60],
    [100_000, 150],
  ] as const) {
    const ours = find(results.small, 'seahorse', (row) => row.routes === routes);
    if (ours)
      targets.push({
        goal: `peak RSS ≤ ${limit} MB at ${routes.toLocaleString('en-US')} route${routes === 1 ? '' : 's'}`,
        measured: `${fixed(ours.peakRssMb)} MB`,
        met: ours.peakRssMb! <= limit,
      });
  }
  const ourEcho = find(results.echo, 'seahorse');
  const chpEcho = find(results.echo, 'chp4');
  if (ourEcho && chpEcho) {
    const speed = ourEcho.messagesPerSecond! / chpEcho.messagesPerSecond!;
    targets.push({
      goal: 'websocket messages/s ≥ 1.5x CHP 4.6.1',
      measured: `${speed.toFixed(2)}x (${integer(ourEcho.messagesPerSecond)} vs ${integer(chpEcho.messagesPerSecond)})`,
      met: speed >= 1.5,
    });
  }
  const churn = find(results.churn, 'seahorse', (row) => row.routes === 100_000);
  if (churn)
    targets.push({
      goal: '100k routes added through the API in < 5 s',
      measured: `${fixed(churn.addSeconds, 2)} s`,
      met: churn.addSeconds! < 5,
    });
  const memory = find(results.redis, 'seahorse', (row) => row.routes === 1000);
  const redisRows = results.redis.filter((row) => row.kind === 'seahorse-redis');
  const redis = find(results.redis, 'seahorse-redis', (row) => row.routes === 1000);
  const chpRedis = find(results.redis, 'chp4-redis', (row) => row.routes === 1000);
  if (memory && redis) {
    const share = redis.requestsPerSecond! / memory.requestsPerSecond!;
    targets.push({
      goal: 'Redis store req/s within 5% of the memory store at 1,000 routes',
      measured: `${share.toFixed(2)}x (${integer(redis.requestsPerSecond)} vs ${integer(memory.requestsPerSecond)})`,
      met: share >= 0.95,
    });
    if (chpRedis) {
      const speed = redis.requestsPerSecond! / chpRedis.requestsPerSecond!;
      targets.push({
        goal: 'Redis store > 50x CHP 4.6.1 + redis-backend at 1,000 routes',
        measured: `${speed.toFixed(1)}x`,
        met: speed > 50,
      });
    }
  } else if (redisRows.length > 0) {
    targets.push({
      goal: 'Redis store req/s within 5% of the memory store at 1,000 routes',
      measured: redisRows[0]!.problem ?? 'not measured',
      met: undefined,
    });
  }
  return targets;
}

export function renderMarkdown(results: Results): string {
  const parts: string[] = [];
  const direct = find(results.small, 'direct');

  if (results.small.length > 0) {
    parts.push(
      '### Small responses (100-byte bodies, wrk -t2 -c64; median of interleaved rounds)',
      table(
        [
          'routes',
          'contender',
          'req/s',
          'x direct',
          'x CHP 4.6.1',
          'p50 ms',
          'p99 ms',
          'p99 / CHP 4.6.1',
          'peak RSS MB',
          'anon RSS MB',
          'CPU %',
          'CPU µs/req',
          'other CPU %',
          'API fill s',
        ],
        results.small.map((row) => {
          const chp = find(results.small, 'chp4', (other) => other.routes === row.routes);
          const head = [integer(row.routes), row.label];
          if (row.problem) return [...head, row.problem];
          return [
            ...head,
            integer(row.requestsPerSecond) + (row.errors ? ` (${row.errors} errors)` : ''),
            ratio(row.requestsPerSecond, direct?.requestsPerSecond),
            ratio(row.requestsPerSecond, chp?.requestsPerSecond),
            ms(row.p50Ms),
            ms(row.p99Ms),
            ratio(row.p99Ms, chp?.p99Ms),
            fixed(row.peakRssMb),
            fixed(row.anonRssMb),
            fixed(row.cpuPercent, 0),
            fixed(row.cpuUsPerRequest, 0),
            fixed(row.otherCpuPercent, 0),
            row.populateSeconds === undefined ? '' : fixed(row.populateSeconds, 2),
          ];
        }),
      ),
    );
  }
  if (results.latency.length > 0) {
    const chp = find(results.latency, 'chp4');
    parts.push(
      '### Unloaded latency (one connection, wrk -t1 -c1; median of interleaved rounds)',
      table(
        [
          'contender',
          'req/s',
          'p50 ms',
          'p99 ms',
          'p99.9 ms',
          'p50 / CHP 4.6.1',
          'p99 / CHP 4.6.1',
          'other CPU %',
        ],
        results.latency.map((row) =>
          row.problem
            ? [row.label, row.problem]
            : [
                row.label,
                integer(row.requestsPerSecond),
                ms(row.p50Ms),
                ms(row.p99Ms),
                ms(row.p999Ms),
                ratio(row.p50Ms, chp?.p50Ms),
                ratio(row.p99Ms, chp?.p99Ms),
                fixed(row.otherCpuPercent, 0),
              ],
        ),
      ),
    );
  }
  if (results.bodies.length > 0) {
    const base = find(results.bodies, 'direct');
    const chp = find(results.bodies, 'chp4');
    parts.push(
      '### Large bodies (8 MB, sequential on one keep-alive connection; MB = 10^6 bytes)',
      table(
        ['contender', 'upload MB/s', 'x direct', 'x CHP 4.6.1', 'download MB/s', 'x direct', 'x CHP 4.6.1'],
        results.bodies.map((row) =>
          row.problem
            ? [row.label, row.problem]
            : [
                row.label,
                integer(row.upMegabytesPerSecond),
                ratio(row.upMegabytesPerSecond, base?.upMegabytesPerSecond),
                ratio(row.upMegabytesPerSecond, chp?.upMegabytesPerSecond),
                integer(row.downMegabytesPerSecond),
                ratio(row.downMegabytesPerSecond, base?.downMegabytesPerSecond),
                ratio(row.downMegabytesPerSecond, chp?.downMegabytesPerSecond),
              ],
        ),
      ),
    );
  }
  if (results.echo.length > 0) {
    const base = find(results.echo, 'direct');
    const chp = find(results.echo, 'chp4');
    parts.push(
      `### Websocket echo (${results.echo[0]!.connections} connections, 64-byte messages, one in flight each)`,
      table(
        ['contender', 'messages/s', 'x direct', 'x CHP 4.6.1', 'CPU %', 'CPU µs/message', 'other CPU %'],
        results.echo.map((row) =>
          row.problem
            ? [row.label, row.problem]
            : [
                row.label,
                integer(row.messagesPerSecond),
                ratio(row.messagesPerSecond, base?.messagesPerSecond),
                ratio(row.messagesPerSecond, chp?.messagesPerSecond),
                fixed(row.cpuPercent, 0),
                fixed(row.cpuUsPerMessage),
                fixed(row.otherCpuPercent, 0),
              ],
        ),
      ),
    );
  }
  if (results.idle.length > 0) {
    const chp = find(results.idle, 'chp4');
    parts.push(
      `### Idle websockets (${results.idle[0]!.connections.toLocaleString('en-US')} open at once)`,
      table(
        ['contender', 'RSS before MB', 'RSS open MB', 'KiB per connection', 'x CHP 4.6.1', 'open fds'],
        results.idle.map((row) =>
          row.problem
            ? [row.label, row.problem]
            : [
                row.label,
                fixed(row.rssBeforeMb),
                fixed(row.rssAfterMb),
                fixed(row.kibPerConnection),
                ratio(row.kibPerConnection, chp?.kibPerConnection),
                integer(row.openFds),
              ],
        ),
      ),
    );
  }
  if (results.churn.length > 0) {
    parts.push(
      '### Route churn (REST API, 32 requests in flight)',
      table(
        [
          'routes',
          'contender',
          'add s',
          'adds/s',
          'add / CHP 4.6.1',
          'CPU % adding',
          'client CPU %',
          'delete s',
          'deletes/s',
          'peak RSS MB',
        ],
        results.churn.map((row) => {
          const chp = find(results.churn, 'chp4', (other) => other.routes === row.routes);
          const head = [integer(row.routes), row.label];
          if (row.problem) return [...head, row.problem];
          return [
            ...head,
            fixed(row.addSeconds, 2),
            integer(row.routes / row.addSeconds!),
            ratio(row.addSeconds, chp?.addSeconds),
            fixed(row.addCpuPercent, 0),
            fixed(row.clientCpuPercent, 0),
            fixed(row.deleteSeconds, 2),
            integer(row.routes / row.deleteSeconds!),
            fixed(row.peakRssMb),
          ];
        }),
      ),
    );
  }
  if (results.redis.length > 0) {
    parts.push(
      '### Route stores: memory and Redis (100-byte bodies, wrk -t2 -c64; median of interleaved rounds)',
      table(
        [
          'routes',
          'contender',
          'req/s',
          'x memory store',
          'x CHP + redis-backend',
          'p50 ms',
          'p99 ms',
          'peak RSS MB',
          'other CPU %',
        ],
        results.redis.map((row) => {
          const memoryKind: ContenderKind = row.kind.startsWith('chp4') ? 'chp4' : 'seahorse';
          const memory = find(results.redis, memoryKind, (other) => other.routes === row.routes);
          const chpRedis = find(results.redis, 'chp4-redis', (other) => other.routes === row.routes);
          const head = [integer(row.routes), row.label];
          if (row.problem) return [...head, row.problem];
          return [
            ...head,
            integer(row.requestsPerSecond) + (row.errors ? ` (${row.errors} errors)` : ''),
            ratio(row.requestsPerSecond, memory?.requestsPerSecond),
            ratio(row.requestsPerSecond, chpRedis?.requestsPerSecond),
            ms(row.p50Ms),
            ms(row.p99Ms),
            fixed(row.peakRssMb),
            fixed(row.otherCpuPercent, 0),
          ];
        }),
      ),
    );
  }
  if (results.workers.length > 0) {
    const single = find(results.workers, 'seahorse');
    const cores = results.machine.nproc;
    parts.push(
      `### --workers N (${integer(results.workers[0]!.routes)} routes, 100-byte bodies, wrk -t2 -c64; median of interleaved rounds)`,
      `This machine has ${cores} core${cores === 1 ? '' : 's'}, shared with wrk and the upstream: more workers than that can only add scheduling, so the figures here show the cost of the primary and IPC, not the scaling a machine with cores to spare gets. CPU and RSS are summed over the primary and its workers.`,
      table(
        [
          'contender',
          'req/s',
          'x 1 process',
          'p50 ms',
          'p99 ms',
          'CPU %',
          'CPU µs/req',
          'peak RSS MB (sum)',
          'other CPU %',
        ],
        results.workers.map((row) => {
          if (row.problem) return [row.label, row.problem];
          return [
            row.label,
            integer(row.requestsPerSecond) + (row.errors ? ` (${row.errors} errors)` : ''),
            ratio(row.requestsPerSecond, single?.requestsPerSecond),
            ms(row.p50Ms),
            ms(row.p99Ms),
            fixed(row.cpuPercent, 0),
            fixed(row.cpuUsPerRequest, 0),
            fixed(row.peakRssMb),
            fixed(row.otherCpuPercent, 0),
          ];
        }),
      ),
    );
  }
  if (results.targets.length > 0) {
    parts.push(
      '### Targets (issue 5)',
      table(
        ['target', 'measured', 'met'],
        results.targets.map((target) => [
          target.goal,
          target.measured,
          target.met === undefined ? 'not measured' : target.met ? 'yes' : '**no**',
        ]),
      ),
    );
  }
  if (results.profiles.length > 0) {
    parts.push(
      '`writev` and `writeLatin1String` are socket writes; on loopback they include the kernel delivering the bytes ' +
        "to the receiving process. V8's sampler ticks on wall-clock time, so while the proxy's thread waits for one " +
        'of the two cores the tick lands on the last thing it did: `(idle)` (polling for sockets) and the writes are ' +
        "over-counted; the main thread's own CPU (from /proc/<pid>/task) says how busy it really was.",
    );
  }
  for (const profile of results.profiles) {
    parts.push(
      `### Where our proxy spends CPU at ${profile.routes.toLocaleString('en-US')} route${profile.routes === 1 ? '' : 's'} (V8 CPU profile of ${results.settings.wrkSeconds} s under wrk -t2 -c64, ${integer(profile.requestsPerSecond)} req/s, main thread ${fixed(profile.mainThreadCpuPercent, 0)}% busy; self time)`,
      table(
        ['self %', 'function'],
        profile.functions.map((fn) => [fn.percent.toFixed(1), `\`${fn.location}\``]),
      ),
    );
  }
  return parts.join('\n\n');
}
