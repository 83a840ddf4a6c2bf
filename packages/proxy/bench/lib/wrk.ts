// Load from wrk (C, epoll) with lib/report.lua, which spreads requests over the route table and
// reports latency percentiles as JSON.
import { fileURLToPath } from 'node:url';
import { startProcess } from './processes.ts';

const script = fileURLToPath(new URL('report.lua', import.meta.url));

export interface WrkOptions {
  threads: number;
  connections: number;
  seconds: number;
  /** Requests go to `<prefix><i><suffix>` for a sample of i in 0..routes-1. */
  prefix: string;
  routes: number;
  suffix: string;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  /** Non-2xx/3xx answers, connect/read/write errors and timeouts. */
  errors: number;
  latencyMs: { mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
}

interface WrkJson {
  requests: number;
  duration_us: number;
  errors: Record<string, number>;
  latency_us: Record<'mean' | 'max' | 'p50' | 'p90' | 'p99' | 'p999', number>;
}

export async function runWrk(baseUrl: string, options: WrkOptions): Promise<WrkResult> {
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    '--timeout',
    '10s',
    '-s',
    script,
    `${baseUrl}/`,
    '--',
    options.prefix,
    String(options.routes),
    '1000',
    options.suffix,
  ];
  const proc = startProcess('wrk', 'wrk', args);
  const code = await proc.exited;
  const line = /WRK_JSON (\{.*\})/.exec(proc.output);
  if (code !== 0 || !line) throw new Error(`wrk failed (exit ${code}):\n${proc.output}`);
  const json = JSON.parse(line[1]!) as WrkJson;
  const ms = (us: number) => us / 1000;
  const seconds = json.duration_us / 1e6;
  return {
    requests: json.requests,
    seconds,
    requestsPerSecond: json.requests / seconds,
    errors: Object.values(json.errors).reduce((sum, n) => sum + n, 0),
    latencyMs: {
      mean: ms(json.latency_us.mean),
      p50: ms(json.latency_us.p50),
      p90: ms(json.latency_us.p90),
      p99: ms(json.latency_us.p99),
      p999: ms(json.latency_us.p999),
      max: ms(json.latency_us.max),
    },
  };
}
