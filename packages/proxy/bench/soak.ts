// Soak test: a million requests and 100k websocket open/close cycles through our proxy while
// its target is stopped and restarted under it; then the proxy's open file descriptors must
// return to where they started, and its RSS and live heap settle within 20% of their
// post-warm-up values. The proxy runs with --inspect so that both ends are measured after a full
// garbage collection: garbage V8 has not yet collected is not a leak, memory still referenced
// is. Exits 1 naming the leak when it sees one. `--help` lists the flags.
import { parseArgs } from 'node:util';
import { freePort, waitFor } from '@seahorse/runtime/testing';
import { addRoutes, type Contender, startContender, startUpstream, type Upstream } from './lib/contenders.ts';
import { Inspector } from './lib/inspector.ts';
import { memory, openFds, stopAll, stopAllOnSignals, stopProcess } from './lib/processes.ts';
import { ensureBenchDependencies, ensureBuilt, ensureWrk } from './lib/setup.ts';
import { openCloseCycles, sleep } from './lib/websockets.ts';
import { runWrk } from './lib/wrk.ts';

const usage = `Usage: node --conditions=seahorse-source bench/soak.ts [options]

  --requests <n>        HTTP requests through the proxy (default 1000000)
  --ws-cycles <n>       websocket open/echo/close cycles (default 100000)
  --restart-every <s>   stop and restart the target this often, first after 3 s (default 15)
  --fd-tolerance <n>    descriptors above the starting count still accepted (default 5)
  --settle-timeout <s>  how long to wait for descriptors and RSS to come back (default 60)
  --source              run the proxy from src instead of dist
`;

const { values: flags } = parseArgs({
  options: {
    requests: { type: 'string', default: '1000000' },
    'ws-cycles': { type: 'string', default: '100000' },
    'restart-every': { type: 'string', default: '15' },
    'fd-tolerance': { type: 'string', default: '5' },
    'settle-timeout': { type: 'string', default: '60' },
    source: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  process.stdout.write(usage);
  process.exit(0);
}
const number = (name: keyof typeof flags) => {
  const value = Number(flags[name]);
  if (!Number.isFinite(value) || value < 0) {
    process.stderr.write(`soak: --${name} expects a non-negative number, got '${flags[name]}'\n`);
    process.exit(2);
  }
  return value;
};
const targetRequests = number('requests');
const wsCycles = number('ws-cycles');
const restartEveryMs = number('restart-every') * 1000;
const fdTolerance = number('fd-tolerance');
const settleTimeoutMs = number('settle-timeout') * 1000;

const log = (message: string) => process.stderr.write(`soak: ${message}\n`);
const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
const load = { threads: 2, connections: 64, prefix: '/user/u', routes: 1, suffix: '/api' };

stopAllOnSignals();
let failures: string[] = [];
try {
  ensureBenchDependencies();
  ensureWrk();
  if (!flags.source) ensureBuilt();
  failures = await soak();
} finally {
  await stopAll();
}
if (failures.length > 0) {
  for (const failure of failures) process.stderr.write(`soak: LEAK: ${failure}\n`);
  process.exit(1);
}
log('passed: no descriptor or memory leak');

async function soak(): Promise<string[]> {
  let upstream: Upstream = await startUpstream(await freePort());
  const metricsPort = await freePort();
  const proxy: Contender = await startContender('seahorse', {
    upstream,
    source: flags.source,
    extraFlags: ['--metrics-ip', '127.0.0.1', '--metrics-port', String(metricsPort)],
    nodeFlags: ['--inspect=127.0.0.1:0'],
  });
  const inspector = await Inspector.connect(proxy.process);
  const collected = async () => {
    await inspector.collectGarbage();
    return inspector.memory();
  };
  await addRoutes(proxy, upstream.url, 1);
  const pid = proxy.pid;
  const wsUrl = `${proxy.url.replace('http:', 'ws:')}/user/u0/ws`;
  const fdsAtStart = openFds(pid);
  log(`proxy pid ${pid} at ${proxy.url}: ${fdsAtStart} open descriptors, RSS ${mb(memory(pid).rssBytes)} MB`);

  // Warm-up: JIT, pools and heap reach their working size before RSS is taken as the reference.
  const warmup = await runWrk(proxy.url, { ...load, seconds: 5 });
  const warmupCycles = await openCloseCycles(wsUrl, Math.min(5000, wsCycles), 50);
  const rawRssAfterWarmup = memory(pid).rssBytes;
  const afterWarmup = await collected();
  log(
    `warm-up: ${warmup.requests} requests, ${warmupCycles.cycles} websocket cycles; RSS ${mb(rawRssAfterWarmup)} MB, ` +
      `${mb(afterWarmup.rssBytes)} MB after a full GC (heap used ${mb(afterWarmup.heapUsedBytes)} MB)`,
  );

  let loadDone = false;
  let restarts = 0;
  let peakFds = 0;
  const restarter = (async () => {
    let wait = Math.min(3000, restartEveryMs);
    while (!loadDone) {
      const until = Date.now() + wait;
      while (!loadDone && Date.now() < until) {
        peakFds = Math.max(peakFds, openFds(pid));
        await sleep(100);
      }
      if (loadDone) break;
      // Alternate a clean stop with a crash, so sockets see both FIN and RST.
      const signal = restarts % 2 === 0 ? 'SIGTERM' : 'SIGKILL';
      await stopProcess(upstream.process, signal);
      await sleep(300);
      upstream = await startUpstream(upstream.port);
      restarts++;
      log(`target restarted (${signal}), ${restarts} so far`);
      wait = restartEveryMs;
    }
  })();

  const started = performance.now();
  let requests = 0;
  let failedRequests = 0;
  const http = (async () => {
    while (requests < targetRequests) {
      const result = await runWrk(proxy.url, { ...load, seconds: 5 });
      requests += result.requests;
      failedRequests += result.errors;
      log(`${requests.toLocaleString('en-US')} of ${targetRequests.toLocaleString('en-US')} requests`);
    }
  })();
  const websockets = openCloseCycles(wsUrl, wsCycles, 50);
  const [, cycles] = await Promise.all([http, websockets]);
  loadDone = true;
  await restarter;
  const seconds = (performance.now() - started) / 1000;
  log(
    `load done in ${seconds.toFixed(0)} s: ${requests} requests (${failedRequests} not 2xx, during restarts), ` +
      `${cycles.cycles} websocket cycles (${cycles.failures} failed), ${restarts} target restarts, peak ${peakFds} descriptors`,
  );

  // Keep-alive sockets close after 5 s on either side; poll instead of guessing how long.
  const fdLimit = fdsAtStart + fdTolerance;
  const fdsSettled = await settle(() => openFds(pid) <= fdLimit);
  const fdsAtEnd = openFds(pid);
  const rawRssAtEnd = memory(pid).rssBytes;
  const rssLimit = afterWarmup.rssBytes * 1.2;
  const heapLimit = afterWarmup.heapUsedBytes * 1.2;
  let atEnd = await collected();
  const memorySettled = await settle(async () => {
    atEnd = await collected();
    return atEnd.rssBytes <= rssLimit && atEnd.heapUsedBytes <= heapLimit;
  });
  const websocketsOpen = await proxyWebsocketsOpen(metricsPort);
  inspector.close();

  const report = {
    requests,
    failedRequests,
    websocketCycles: cycles.cycles,
    failedWebsocketCycles: cycles.failures,
    targetRestarts: restarts,
    seconds: Math.round(seconds),
    fds: { atStart: fdsAtStart, peak: peakFds, atEnd: fdsAtEnd, limit: fdLimit },
    websocketsOpenAtEnd: websocketsOpen ?? null,
    rssMb: {
      afterWarmup: Number(mb(rawRssAfterWarmup)),
      afterWarmupCollected: Number(mb(afterWarmup.rssBytes)),
      afterLoad: Number(mb(rawRssAtEnd)),
      atEndCollected: Number(mb(atEnd.rssBytes)),
      limit: Number(mb(rssLimit)),
      peak: Number(mb(memory(pid).peakRssBytes)),
    },
    heapUsedMb: {
      afterWarmupCollected: Number(mb(afterWarmup.heapUsedBytes)),
      atEndCollected: Number(mb(atEnd.heapUsedBytes)),
      limit: Number(mb(heapLimit)),
    },
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);

  const failures: string[] = [];
  if (!fdsSettled) {
    failures.push(
      `the proxy holds ${fdsAtEnd} open descriptors ${settleTimeoutMs / 1000} s after the load, ` +
        `${fdsAtStart} at start (tolerance +${fdTolerance}); see ls -l /proc/<pid>/fd`,
    );
  }
  if (!memorySettled && atEnd.rssBytes > rssLimit) {
    failures.push(
      `RSS is ${mb(atEnd.rssBytes)} MB after the load and a full GC, more than 20% above ` +
        `${mb(afterWarmup.rssBytes)} MB after warm-up and a full GC`,
    );
  }
  if (!memorySettled && atEnd.heapUsedBytes > heapLimit) {
    failures.push(
      `the live JS heap is ${mb(atEnd.heapUsedBytes)} MB after the load and a full GC, more than 20% above ` +
        `${mb(afterWarmup.heapUsedBytes)} MB after warm-up: objects are still referenced`,
    );
  }
  if (websocketsOpen !== undefined && websocketsOpen > 0) {
    failures.push(`the proxy still counts ${websocketsOpen} open websockets after every client closed`);
  }
  await proxy.stop();
  return failures;
}

async function settle(check: () => boolean | Promise<boolean>): Promise<boolean> {
  try {
    await waitFor('settling', check, { timeoutMs: settleTimeoutMs, intervalMs: 250 });
    return true;
  } catch {
    return false;
  }
}

/** The proxy's own count of open websockets, from its metrics (undefined if it has none). */
async function proxyWebsocketsOpen(metricsPort: number): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const match = /^seahorse_proxy_websockets_open (\d+)/m.exec(text);
  return match ? Number(match[1]) : undefined;
}
