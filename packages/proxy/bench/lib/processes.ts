// Processes the bench starts (each stopped by PID, even when a scenario fails) and what /proc
// says about them: CPU time, resident and peak memory, open file descriptors.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { ManagedProcess, waitFor } from '@seahorse/runtime/testing';

const running = new Set<ManagedProcess>();

/** The file-descriptor limit a child can raise itself to (`ulimit -Hn`); 10k websockets need 20k. */
export const hardFdLimit: number = (() => {
  const out = spawnSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim();
  return out === 'unlimited' ? 1_048_576 : Number(out) || 1024;
})();

/**
 * Starts `command` with its soft fd limit raised to the hard limit (a `bash -c 'ulimit …; exec'`
 * wrapper, so the PID is the command's own) and tracks it until stopped.
 */
export function startProcess(
  name: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): ManagedProcess {
  const proc = new ManagedProcess(
    name,
    'bash',
    ['-c', 'ulimit -n "$(ulimit -Hn)"; exec "$@"', 'bash', command, ...args],
    { env: { ...process.env, ...env } },
  );
  running.add(proc);
  void proc.exited.then(() => running.delete(proc));
  return proc;
}

export async function stopProcess(proc: ManagedProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  await proc.stop(signal, 5000);
  running.delete(proc);
}

/** Stops everything still running, by PID. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((proc) => stopProcess(proc)));
}

/** Stops every child on Ctrl-C or SIGTERM, then exits with the conventional status. */
export function stopAllOnSignals(): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping the bench's processes\n`);
      void stopAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
}

/** Waits for a line of the process's output matching `pattern` and returns the match. */
export function waitForOutput(
  proc: ManagedProcess,
  pattern: RegExp,
  timeoutMs = 15_000,
): Promise<RegExpExecArray> {
  return proc.untilReady(
    waitFor(`${proc.name} to print ${pattern}`, () => pattern.exec(proc.output), { timeoutMs }),
  );
}

const clockTicks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** User plus system CPU seconds the process has used so far. */
export function cpuSeconds(pid: number): number {
  return statSeconds(`/proc/${pid}/stat`);
}

/** The process and its descendants (the workers of `--workers`), by /proc's children lists. */
export function processTree(pid: number): number[] {
  const pids = [pid];
  for (let i = 0; i < pids.length; i++) {
    const tasks = `/proc/${pids[i]}/task`;
    let children: string[] = [];
    try {
      for (const task of readdirSync(tasks)) {
        children = children.concat(
          readFileSync(`${tasks}/${task}/children`, 'utf8').split(' ').filter(Boolean),
        );
      }
    } catch {
      // Exited meanwhile: nothing more below it.
    }
    pids.push(...children.map(Number));
  }
  return pids;
}

/** User plus system CPU seconds of the process and its descendants still running. */
export function treeCpuSeconds(pid: number): number {
  let total = 0;
  for (const member of processTree(pid)) {
    try {
      total += cpuSeconds(member);
    } catch {
      // Exited between listing and reading.
    }
  }
  return total;
}

/** CPU seconds of the process's main thread alone (its JavaScript), without GC helper threads. */
export function mainThreadCpuSeconds(pid: number): number {
  return statSeconds(`/proc/${pid}/task/${pid}/stat`);
}

function statSeconds(file: string): number {
  const stat = readFileSync(file, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/** Busy CPU seconds of the whole machine so far (all cores; steal excluded). */
function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const [user, nice, system, , , irq, softirq] = line.trim().split(/\s+/).slice(1).map(Number);
  return (user! + nice! + system! + irq! + softirq!) / clockTicks;
}

/** CPU seconds of this process and of its children already reaped (wrk, once it has exited). */
function selfAndReapedSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / clockTicks;
}

/**
 * Starts measuring CPU used on this machine by processes that are not the bench's: the returned
 * function gives it in % of one core. Other work on a 2-core host skews a measurement, so every
 * row records it.
 */
export function foreignCpu(pids: number[]): () => number {
  const started = performance.now();
  const busy = machineBusySeconds();
  const ours = selfAndReapedSeconds();
  const theirs = pids.map((pid) => cpuSeconds(pid));
  return () => {
    const elapsed = (performance.now() - started) / 1000;
    const oursNow =
      selfAndReapedSeconds() - ours + pids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - theirs[i]!, 0);
    return Math.max(0, (100 * (machineBusySeconds() - busy - oursNow)) / elapsed);
  };
}

/**
 * Waits (up to `maxMs`) until processes outside the bench use less than `thresholdPercent` of a
 * core over one second; resolves with the last reading.
 */
export async function waitForQuiet(maxMs: number, thresholdPercent = 25): Promise<number> {
  const deadline = Date.now() + maxMs;
  for (;;) {
    const reading = foreignCpu([]);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const percent = reading();
    if (percent < thresholdPercent || Date.now() >= deadline) return percent;
  }
}

export interface Memory {
  rssBytes: number;
  /** Resident memory that is the process's own (heap, stacks), without mapped files such as node's binary. */
  anonRssBytes: number;
  /** VmHWM: the highest resident set size since the process started. */
  peakRssBytes: number;
}

export function memory(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rssBytes: kib('VmRSS'), anonRssBytes: kib('RssAnon'), peakRssBytes: kib('VmHWM') };
}

/** Memory of the process and its descendants, summed (peaks summed too: an upper bound). */
export function treeMemory(pid: number): Memory {
  const total: Memory = { rssBytes: 0, anonRssBytes: 0, peakRssBytes: 0 };
  for (const member of processTree(pid)) {
    const one = memory(member);
    total.rssBytes += one.rssBytes;
    total.anonRssBytes += one.anonRssBytes;
    total.peakRssBytes += one.peakRssBytes;
  }
  return total;
}

export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Host facts the results are only meaningful with. */
export function machine(): Record<string, string | number> {
  const run = (command: string) => spawnSync('bash', ['-c', command], { encoding: 'utf8' }).stdout.trim();
  return {
    nproc: Number(run('nproc')),
    cpuModel: run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").trim(),
    memory: run('free -h | sed -n 2p'),
    freeH: run('free -h'),
    node: process.version,
    kernel: run('uname -sr'),
    wrk: run('wrk --version 2>&1 | head -1 | cut -d" " -f1-2'),
    nginx: run('/usr/sbin/nginx -v 2>&1 || true'),
    redis: run('redis-server --version 2>/dev/null || true'),
    fdLimit: hardFdLimit,
  };
}
