// `npm run bench` (add `-- --quick` for a short run): the gateway in its own process, the fake
// OpenAI upstream in another, load from this one over keep-alive connections on loopback.
// Hits at 1/10/200 clients, the latency a miss adds over a direct upstream call, a replayed
// workload with overlapping inputs (whole-request vs per-input caching), RSS and CPU per request.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    seconds: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  process.stdout.write('Usage: npm run bench -- [--quick] [--seconds <per load step>]\n');
  process.exit(0);
}
const seconds = Number(args.seconds ?? (args.quick ? 2 : 10));
const packageDir = fileURLToPath(new URL('..', import.meta.url));
// The built bin, as deployed (the sources run through type stripping, which costs memory).
const bin = join(packageDir, 'bin', 'seahorse-embedding-gateway.js');
const processes: ManagedProcess[] = [];

async function startUpstream(): Promise<string> {
  const child = new ManagedProcess('fake-openai', process.execPath, [
    '--conditions=seahorse-source',
    join(packageDir, 'bench', 'upstream.ts'),
  ]);
  processes.push(child);
  const url = await child.untilReady(
    waitFor('the fake upstream', () => /"url":"([^"]+)"/.exec(child.output)?.[1], { timeoutMs: 30_000 }),
  );
  return url;
}

interface RunningGateway {
  url: string;
  process: ManagedProcess;
  dir: string;
}

async function startGateway(upstreamUrl: string, flags: string[] = []): Promise<RunningGateway> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'embedding-gateway-bench-'));
  // The bin itself, so its shebang's V8 and malloc settings apply as deployed; `node` on PATH
  // is this one (npm puts the workspace's pinned Node first).
  const child = new ManagedProcess('gateway', bin, flags, {
    env: {
      PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
      PORT: String(port),
      HOST: '127.0.0.1',
      OPENAI_BASE_URL: `${upstreamUrl}/v1`,
      CACHE_DIR: dir,
      LOG_LEVEL: 'warning',
    },
  });
  processes.push(child);
  const url = `http://127.0.0.1:${port}`;
  await child.untilReady(
    waitFor(
      'the gateway',
      () => send(new Agent(), url, '/healthz', undefined).then((a) => a.status === 200),
      {
        timeoutMs: 30_000,
      },
    ),
  );
  return { url, process: child, dir };
}

async function stopGateway(gateway: RunningGateway): Promise<void> {
  await gateway.process.stop();
  rmSync(gateway.dir, { recursive: true, force: true });
}

function send(
  agent: Agent,
  url: string,
  path: string,
  body: string | undefined,
  extra: Record<string, string> = {},
) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(
      `${url}${path}`,
      {
        method: body === undefined ? 'GET' : 'POST',
        agent,
        headers:
          body === undefined
            ? extra
            : { authorization: 'Bearer sk-bench', 'content-type': 'application/json', ...extra },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** CPU seconds (user + system) and RSS of a process, from /proc. */
function usage(pid: number): { cpu: number; rssMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return { cpu: ticks / 100, rssMb: Number(rss) / 1024 };
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;

interface LoadResult {
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
  cpuMsPerRequest: number;
}

/**
 * One keep-alive connection that sends prepared request bytes and reads answers framed by
 * Content-Length (every answer of the gateway has one). node:http's client costs more CPU per
 * request than the gateway's hit path, and the load generator shares the machine's two cores.
 */
class RawClient {
  readonly #socket: Socket;
  #buffered: Buffer = Buffer.alloc(0);
  #waiting: ((status: number) => void) | undefined;
  #failed: ((error: Error) => void) | undefined;

  constructor(url: string) {
    const { hostname, port } = new URL(url);
    this.#socket = connect(Number(port), hostname);
    this.#socket.setNoDelay(true);
    this.#socket.on('data', (chunk: Buffer) => {
      this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
      this.#parse();
    });
    const fail = (error: Error) => this.#failed?.(error);
    this.#socket.on('error', fail);
    this.#socket.on('close', () => fail(new Error('the gateway closed the connection')));
  }

  #parse(): void {
    const end = this.#buffered.indexOf('\r\n\r\n');
    if (end < 0 || !this.#waiting) return;
    const head = this.#buffered.subarray(0, end).toString('latin1');
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (this.#buffered.length < end + 4 + length) return;
    this.#buffered = this.#buffered.subarray(end + 4 + length);
    const resolve = this.#waiting;
    this.#waiting = undefined;
    resolve(Number(head.slice(9, 12)));
  }

  send(request: Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#waiting = resolve;
      this.#failed = reject;
      this.#socket.write(request);
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

function rawRequest(body: string, headers: Record<string, string>): Buffer {
  const extra = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return Buffer.from(
    `POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-bench\r\nContent-Type: application/json\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** Closed loop: `clients` connections, each sending the next body as soon as its answer is in. */
async function load(
  url: string,
  bodies: () => string,
  clients: number,
  durationMs: number,
  pid: number,
  headers: Record<string, string> = {},
): Promise<LoadResult> {
  const prepared = new Map<string, Buffer>();
  const requestFor = (body: string) => {
    let bytes = prepared.get(body);
    if (!bytes) {
      bytes = rawRequest(body, headers);
      prepared.set(body, bytes);
    }
    return bytes;
  };
  const connections = Array.from({ length: clients }, () => new RawClient(url));
  const latencies: number[] = [];
  let errors = 0;
  const before = usage(pid).cpu;
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(
    connections.map(async (connection) => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        try {
          if ((await connection.send(requestFor(bodies()))) !== 200) errors++;
        } catch {
          errors++;
          return;
        }
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpu = usage(pid).cpu - before;
  for (const connection of connections) connection.close();
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    errors,
    rps: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuMsPerRequest: (cpu * 1000) / latencies.length,
  };
}

async function metric(url: string, name: string): Promise<number> {
  const text = (await send(new Agent(), url, '/metrics', undefined)).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

const model = 'text-embedding-3-small';
const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

async function main(): Promise<void> {
  // The runtime too: the built bin imports its dist, which a fresh work tree does not have.
  const build = spawnSync(
    'npm',
    ['run', 'build', '-w', '@seahorse/runtime', '-w', '@seahorse/embedding-gateway'],
    { cwd: join(packageDir, '..', '..'), stdio: 'inherit' },
  );
  if (build.status !== 0) throw new Error('npm run build failed');
  const upstreamUrl = await startUpstream();
  const results: Record<string, unknown> = { seconds, quick: args.quick, when: new Date().toISOString() };
  const lines: string[] = [];

  // Hits: 64 distinct 1,536-dimension float answers (about 33 KB each), stored before the load.
  const gateway = await startGateway(upstreamUrl);
  const hitBodies = Array.from({ length: 64 }, (_, i) => JSON.stringify({ model, input: `hit number ${i}` }));
  const agent = new Agent({ keepAlive: true });
  const sample = await send(agent, gateway.url, '/v1/embeddings', hitBodies[0]);
  for (const body of hitBodies) await send(agent, gateway.url, '/v1/embeddings', body);
  let next = 0;
  const hitBody = () => hitBodies[next++ % hitBodies.length]!;
  const hits: Record<number, LoadResult> = {};
  lines.push(
    `Answers: ${model}, 1,536 floats, ${(Buffer.byteLength(sample.body) / 1024).toFixed(1)} KB each.`,
    '',
  );
  lines.push(
    '| hits, filesystem store | req/s | p50 ms | p99 ms | CPU ms/req | errors |',
    '|---|---:|---:|---:|---:|---:|',
  );
  for (const clients of [1, 10, 200]) {
    const r = await load(gateway.url, hitBody, clients, seconds * 1000, gateway.process.pid);
    hits[clients] = r;
    lines.push(
      `| ${clients} clients | ${fmt(r.rps, 0)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.cpuMsPerRequest, 2)} | ${r.errors} |`,
    );
  }
  results.hits = hits;
  const rssAfterHits = usage(gateway.process.pid).rssMb;

  // The same hits for clients that accept gzip (as OpenAI's SDKs do): the stored object goes
  // out as it is; and with the in-memory LRU in front of the store.
  const gzipHits: Record<number, LoadResult> = {};
  for (const clients of [10, 200]) {
    const r = await load(gateway.url, hitBody, clients, seconds * 1000, gateway.process.pid, {
      'accept-encoding': 'gzip',
    });
    gzipHits[clients] = r;
    lines.push(
      `| ${clients} clients, Accept-Encoding: gzip | ${fmt(r.rps, 0)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.cpuMsPerRequest, 2)} | ${r.errors} |`,
    );
  }
  results.gzipHits = gzipHits;
  const withLru = await startGateway(upstreamUrl, ['--memory-cache-size', '256mb']);
  for (const body of hitBodies) await send(agent, withLru.url, '/v1/embeddings', body);
  const lruHits: Record<number, LoadResult> = {};
  for (const clients of [10, 200]) {
    const r = await load(withLru.url, hitBody, clients, seconds * 1000, withLru.process.pid, {
      'accept-encoding': 'gzip',
    });
    lruHits[clients] = r;
    lines.push(
      `| ${clients} clients, gzip, --memory-cache-size 256mb | ${fmt(r.rps, 0)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.cpuMsPerRequest, 2)} | ${r.errors} |`,
    );
  }
  results.lruHits = lruHits;
  results.rssMbWithLru = usage(withLru.process.pid).rssMb;
  await stopGateway(withLru);

  // Misses: unique inputs at 1 client, through the gateway and straight to the upstream.
  let unique = 0;
  const missBody = () => JSON.stringify({ model, input: `miss ${process.pid} ${unique++}` });
  const missCount = args.quick ? 50 : 300;
  const timed = async (url: string, path: string) => {
    const times: number[] = [];
    for (let i = 0; i < missCount; i++) {
      const t0 = performance.now();
      await send(agent, url, path, missBody());
      times.push(performance.now() - t0);
    }
    return times.sort((a, b) => a - b);
  };
  // Warm the miss path up first (JIT), then interleaved halves, so a busy moment of the
  // machine weighs on both alike.
  await timed(gateway.url, '/v1/embeddings');
  const cpuBefore = usage(gateway.process.pid).cpu;
  const viaGateway = [...(await timed(gateway.url, '/v1/embeddings'))];
  const cpuMisses = usage(gateway.process.pid).cpu - cpuBefore;
  const direct = await timed(upstreamUrl, '/v1/embeddings');
  const viaGateway2 = await timed(gateway.url, '/v1/embeddings');
  const direct2 = await timed(upstreamUrl, '/v1/embeddings');
  const gatewayAll = [...viaGateway, ...viaGateway2].sort((a, b) => a - b);
  const directAll = [...direct, ...direct2].sort((a, b) => a - b);
  const miss = {
    gatewayP50: percentile(gatewayAll, 50),
    directP50: percentile(directAll, 50),
    addedP50: percentile(gatewayAll, 50) - percentile(directAll, 50),
    cpuMsPerMiss: (cpuMisses * 1000) / missCount,
  };
  results.miss = miss;
  const rssAfterLoad = usage(gateway.process.pid).rssMb;
  results.rssMb = { afterHits: rssAfterHits, afterLoad: rssAfterLoad };
  await stopGateway(gateway);
  lines.push(
    '',
    '| miss, 1 client | p50 ms |',
    '|---|---:|',
    `| straight to the upstream | ${fmt(miss.directP50, 2)} |`,
    `| through the gateway (stored) | ${fmt(miss.gatewayP50, 2)} |`,
    `| added by the gateway | ${fmt(miss.addedP50, 2)} |`,
    '',
    `CPU per miss: ${fmt(miss.cpuMsPerMiss, 2)} ms. RSS after load: ${fmt(rssAfterLoad, 0)} MB.`,
  );

  // Replayed workload: requests of 8 inputs drawn from a pool of 300 texts, skewed toward
  // popular ones; the same sequence through whole-request and per-input caching.
  const requests = args.quick ? 200 : 1000;
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const pool = Array.from({ length: 300 }, (_, i) => `document ${i}: ${'lorem ipsum '.repeat(1 + (i % 7))}`);
  // A quarter of the requests repeat an earlier one exactly (a retry, a re-run of a job).
  const workload: string[] = [];
  for (let n = 0; n < requests; n++) {
    if (workload.length > 0 && random() < 0.25) {
      workload.push(workload[Math.floor(random() * workload.length)]!);
      continue;
    }
    workload.push(
      JSON.stringify({
        model,
        input: Array.from({ length: 8 }, () => pool[Math.floor(pool.length * random() ** 2)]!),
        dimensions: 256,
      }),
    );
  }
  const replay: Record<string, { tokens: number; wholeHitRate: number; inputHitRate: number }> = {};
  let uncachedTokens = 0;
  for (const [name, flags] of [
    ['whole-request', []],
    ['per-input', ['--per-input-cache']],
  ] as const) {
    const g = await startGateway(upstreamUrl, [...flags]);
    const replayAgent = new Agent({ keepAlive: true });
    let cursor = 0;
    let tokensIfUncached = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (cursor < workload.length) {
          const body = workload[cursor++]!;
          const answer = await send(replayAgent, g.url, '/v1/embeddings', body);
          if (answer.status !== 200) throw new Error(`replay answered ${answer.status}: ${answer.body}`);
          // What the upstream bills for the request's inputs (the fake counts ceil(length / 4)).
          for (const input of JSON.parse(body).input as string[])
            tokensIfUncached += Math.ceil(input.length / 4);
        }
      }),
    );
    replayAgent.destroy();
    const outcome = (o: string) => metric(g.url, `embedding_gateway_requests_total{outcome="${o}"}`);
    const hitsWhole = (await outcome('store_hit')) + (await outcome('memory_hit'));
    const inputHits = await metric(g.url, 'embedding_gateway_per_input_lookups_total{result="hit"}');
    const inputMisses = await metric(g.url, 'embedding_gateway_per_input_lookups_total{result="miss"}');
    replay[name] = {
      tokens: await metric(g.url, 'processed_tokens_total'),
      wholeHitRate: hitsWhole / workload.length,
      inputHitRate: inputHits + inputMisses > 0 ? inputHits / (inputHits + inputMisses) : Number.NaN,
    };
    uncachedTokens = tokensIfUncached;
    await stopGateway(g);
  }
  const saved = 1 - replay['per-input']!.tokens / replay['whole-request']!.tokens;
  lines.push(
    '',
    `Replayed workload: ${requests} requests of 8 inputs from a pool of 300 texts (skewed), a quarter of them repeats, 4 clients.`,
    '',
    '| caching | whole-request hit rate | per-input hit rate | upstream tokens |',
    '|---|---:|---:|---:|',
    `| none (every request sent) | - | - | ${uncachedTokens} |`,
    `| whole-request (the original) | ${fmt(replay['whole-request']!.wholeHitRate * 100)}% | - | ${replay['whole-request']!.tokens} |`,
    `| per-input | ${fmt(replay['per-input']!.wholeHitRate * 100)}% | ${fmt(replay['per-input']!.inputHitRate * 100)}% | ${replay['per-input']!.tokens} |`,
    '',
    `Per-input caching saves ${fmt(saved * 100)}% of the upstream tokens whole-request caching spends.`,
  );
  results.replay = replay;

  await Promise.all(processes.map((p) => p.stop()));
  const report = lines.join('\n');
  process.stdout.write(`${report}\n`);
  const out = join(packageDir, 'bench-results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `${Date.now()}.json`), `${JSON.stringify(results, null, 2)}\n`);
}

main().catch(async (error: unknown) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? error}\n`);
  await Promise.all(processes.map((p) => p.stop('SIGKILL')));
  process.exit(1);
});
