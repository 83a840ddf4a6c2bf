// Processes by PID and process group, for servers that may not be our children (a restarted hub
// re-attaches to them by the PID in their state). Linux's /proc tells zombies and reused PIDs
// apart; elsewhere signal 0 is the whole answer.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { constants } from 'node:os';

interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
  /** Clock ticks after boot at which the process started: with the PID, it names one process. */
  startTime: number;
}

/** Fields of /proc/<pid>/stat, or undefined when it cannot be read (gone, or no /proc). */
function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself hold spaces or parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return {
    state: fields[0] ?? '',
    ppid: Number(fields[1]),
    pgrp: Number(fields[2]),
    startTime: Number(fields[19]),
  };
}

const hasProc = (() => {
  try {
    readFileSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
})();

/** When the process started (opaque, comparable), to tell a reused PID from ours; undefined off Linux. */
export function processStartTime(pid: number): number | undefined {
  return procStat(pid)?.startTime;
}

/**
 * Whether `pid` is a live process (not a zombie). With `startTime` it must also be the process
 * that had that start time, so a PID the kernel gave to something else later reads as gone.
 */
export function processAlive(pid: number, startTime?: number): boolean {
  // PID 1 is init, never a server; and kill(-1) would signal every process we may signal.
  if (!Number.isInteger(pid) || pid <= 1) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (!hasProc) return true;
  const stat = procStat(pid);
  if (!stat) return false;
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return startTime === undefined || stat.startTime === startTime;
}

/** Live (non-zombie) members of process group `pgid`. */
export function groupMembers(pgid: number): number[] {
  if (!hasProc) {
    try {
      process.kill(-pgid, 0);
      return [pgid];
    } catch {
      return [];
    }
  }
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const stat = procStat(pid);
    if (stat && stat.pgrp === pgid && stat.state !== 'Z' && stat.state !== 'X') members.push(pid);
  }
  return members;
}

/** A process named by its PID and start time, so a later signal cannot hit a reused PID. */
export interface ProcessId {
  pid: number;
  startTime: number | undefined;
}

/**
 * Live descendants of `pid` (children, their children, ...), whatever their process group:
 * Jupyter starts kernels in sessions of their own, so the server's group does not hold them.
 * Empty off Linux.
 */
export function descendants(pid: number): ProcessId[] {
  if (!hasProc) return [];
  const children = new Map<number, ProcessId[]>();
  for (const entry of readdirSync('/proc')) {
    const child = Number(entry);
    if (!Number.isInteger(child)) continue;
    const stat = procStat(child);
    if (!stat || stat.state === 'Z' || stat.state === 'X') continue;
    const list = children.get(stat.ppid) ?? [];
    list.push({ pid: child, startTime: stat.startTime });
    children.set(stat.ppid, list);
  }
  const found: ProcessId[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child.pid);
    }
  }
  return found;
}

/** SIGKILLs one process (and its group, when it leads one) if it is still the process named. */
export function killProcess(id: ProcessId): void {
  if (!processAlive(id.pid, id.startTime)) return;
  const leadsGroup = procStat(id.pid)?.pgrp === id.pid;
  try {
    process.kill(leadsGroup ? -id.pid : id.pid, 'SIGKILL');
  } catch {
    // gone in the meantime
  }
}

/** Whether `pid` leads its own process group (as a server started in a new session does). */
export function leadsGroup(pid: number): boolean {
  if (!hasProc) return true;
  return procStat(pid)?.pgrp === pid;
}

/** Sends `signal` to every process of group `pgid`; false when the group is already gone. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  if (!Number.isInteger(pgid) || pgid <= 1) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** A child's exit as JupyterHub reports it (Popen.returncode): the code, or minus the signal number. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  if (signal) return -(constants.signals[signal] ?? 1);
  return 0;
}

/**
 * The process-group leader whose stdout is `path` (a server's output file, unique per start):
 * how a replica finds a server whose hub died before its PID was saved. Linux only.
 */
export function groupLeaderWritingTo(path: string): ProcessId | undefined {
  if (!hasProc) return undefined;
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/1`);
    } catch {
      continue;
    }
    if (target !== path || !leadsGroup(pid)) continue;
    const startTime = processStartTime(pid);
    if (processAlive(pid, startTime)) return { pid, startTime };
  }
  return undefined;
}
