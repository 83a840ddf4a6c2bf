// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function, highest first.
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  /** `name (file:line)`, file relative to the workspace or node's internals. */
  location: string;
  selfMs: number;
  percent: number;
}

export function topSelfTime(file: string, top = 20): { totalMs: number; functions: SelfTime[] } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<string, number>();
  let totalUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    const delta = profile.timeDeltas[i] ?? 0;
    if (!node) continue;
    totalUs += delta;
    const key = describe(node);
    selfUs.set(key, (selfUs.get(key) ?? 0) + delta);
  }
  const functions = [...selfUs.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([location, us]) => ({ location, selfMs: us / 1000, percent: (100 * us) / totalUs }));
  return { totalMs: totalUs / 1000, functions };
}

function describe(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName || '(anonymous)';
  if (!url) return name;
  const file = url.replace(/^file:\/\/.*?\/(node_modules|packages)\//, '$1/');
  return `${name} (${file}:${lineNumber + 1})`;
}

// `node bench/lib/profile.ts <file.cpuprofile> [top]` prints the summary.
if (import.meta.main) {
  const [file, top] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node bench/lib/profile.ts <file.cpuprofile> [top]\n');
    process.exit(2);
  }
  const summary = topSelfTime(file, Number(top ?? 25));
  process.stdout.write(`total sampled: ${summary.totalMs.toFixed(0)} ms\n`);
  for (const fn of summary.functions) {
    process.stdout.write(
      `${fn.percent.toFixed(1).padStart(5)}%  ${fn.selfMs.toFixed(0).padStart(7)} ms  ${fn.location}\n`,
    );
  }
}
