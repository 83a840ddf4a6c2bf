// How fast a route written through one replica is served by the others: three proxy processes
// on one real redis-server, writes through replica A, and B and C polled until they route it.
// Usage: node --conditions=seahorse-source bench/propagation.ts [--writes 300]
// Prints p50/p95/p99/max in ms and writes results/propagation.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startRedis } from '@seahorse/runtime/testing';
import { type ProxyProcess, startProxyProcess } from '../test/helpers.ts';

const writesFlag = process.argv.indexOf('--writes');
const writes = writesFlag === -1 ? 300 : Number(process.argv[writesFlag + 1]);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const redis = await startRedis();
const replicas: ProxyProcess[] = [];
try {
  for (let i = 0; i < 3; i++) {
    const flags = ['--storage-backend', 'redis', '--redis-url', redis.url, '--log-level', 'warn'];
    replicas.push(await startProxyProcess(flags, { name: `replica ${i + 1}` }));
  }
  const [a, ...others] = replicas as [ProxyProcess, ProxyProcess, ProxyProcess];
  const latencies: number[] = [];
  for (let i = 0; i < writes; i++) {
    const path = `/user/p${i}`;
    const written = await a.api('POST', `/api/routes${path}`, { target: 'http://127.0.0.1:9' });
    if (written.status !== 201) throw new Error(`write ${i} answered ${written.status}`);
    const acknowledged = performance.now();
    // Visible means the replica's own API lists it (same table its request path reads).
    await Promise.all(
      others.map(async (replica) => {
        for (;;) {
          const res = await replica.api('GET', `/api/routes${path}`);
          await res.arrayBuffer();
          if (res.status === 200) break;
        }
        latencies.push(performance.now() - acknowledged);
      }),
    );
  }
  latencies.sort((x, y) => x - y);
  const summary = {
    replicas: 3,
    writes,
    observations: latencies.length,
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.at(-1)!,
  };
  const round = (ms: number) => ms.toFixed(2);
  process.stdout.write(
    `propagation across 3 replicas (${writes} writes, ${latencies.length} observations): ` +
      `p50 ${round(summary.p50Ms)} ms, p95 ${round(summary.p95Ms)} ms, p99 ${round(summary.p99Ms)} ms, max ${round(summary.maxMs)} ms\n`,
  );
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    `${dir}propagation.json`,
    `${JSON.stringify({ date: new Date().toISOString(), ...summary }, null, 2)}\n`,
  );
} finally {
  for (const replica of replicas) await replica.process.stop();
  await redis.stop();
}
