// Where a request's CPU goes: the built gateway under `node --cpu-prof`, loaded with one kind of
// request, then the profile's self time by function (idle excluded).
//
//   npm run build -w @seahorse/runtime -w @seahorse/embedding-gateway
//   node --conditions=seahorse-source packages/embedding-gateway/bench/profile.ts \
//     --kind gzip|plain|miss --clients 10 --seconds 4 [--top 25] [-- <gateway flags>]
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';

const { values: args, positionals: gatewayFlags } = parseArgs({
  allowPositionals: true,
  options: {
    kind: { type: 'string', default: 'gzip' },
    clients: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '4' },
    top: { type: 'string', default: '25' },
  },
});
const kind = args.kind as 'gzip' | 'plain' | 'miss';
if (!['gzip', 'plain', 'miss'].includes(kind)) throw new Error('--kind is gzip, plain or miss');
const packageDir = fileURLToPath(new URL('..', import.meta.url));
const profileDir = mkdtempSync(join(tmpdir(), 'embedding-gateway-profile-'));
const cacheDir = mkdtempSync(join(tmpdir(), 'embedding-gateway-profile-cache-'));

const upstream = new ManagedProcess('fake-openai', process.execPath, [
  '--conditions=seahorse-source',
  join(packageDir, 'bench', 'upstream.ts'),
]);
const upstreamUrl = await upstream.untilReady(
  waitFor('the fake upstream', () => /"url":"([^"]+)"/.exec(upstream.output)?.[1], { timeoutMs: 30_000 }),
);
const port = await freePort();
// The bin's own V8 and malloc settings, as its shebang sets them, plus the profiler.
const gateway = new ManagedProcess(
  'gateway',
  process.execPath,
  [
    '--max-semi-space-size=2',
    '--cpu-prof',
    `--cpu-prof-dir=${profileDir}`,
    join(packageDir, 'bin', 'seahorse-embedding-gateway.js'),
    ...gatewayFlags,
  ],
  {
    env: {
      ...process.env,
      MALLOC_ARENA_MAX: '2',
      HOST: '127.0.0.1',
      PORT: String(port),
      OPENAI_BASE_URL: `${upstreamUrl}/v1`,
      CACHE_DIR: cacheDir,
      LOG_LEVEL: 'warning',
    },
  },
);
await gateway.untilReady(
  waitFor(
    'the gateway',
    () =>
      new Promise<boolean>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.destroy();
          resolve(true);
        });
        socket.on('error', () => resolve(false));
      }),
    { timeoutMs: 30_000 },
  ),
);

function rawRequest(body: string): Buffer {
  const gzip = kind === 'gzip' ? 'Accept-Encoding: gzip\r\n' : '';
  return Buffer.from(
    `POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-bench\r\nContent-Type: application/json\r\n${gzip}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** A keep-alive connection reading answers framed by Content-Length. */
function client(): { send(request: Buffer): Promise<number>; close(): void } {
  const socket: Socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  let buffered: Buffer = Buffer.alloc(0);
  let waiting: ((status: number) => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const end = buffered.indexOf('\r\n\r\n');
    if (end < 0 || !waiting) return;
    const head = buffered.subarray(0, end).toString('latin1');
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (buffered.length < end + 4 + length) return;
    buffered = buffered.subarray(end + 4 + length);
    const resolve = waiting;
    waiting = undefined;
    resolve(Number(head.slice(9, 12)));
  });
  return {
    send: (request) =>
      new Promise((resolve) => {
        waiting = resolve;
        socket.write(request);
      }),
    close: () => socket.destroy(),
  };
}

const hits = Array.from({ length: 64 }, (_, i) =>
  rawRequest(JSON.stringify({ model: 'text-embedding-3-small', input: `hit number ${i}` })),
);
if (kind !== 'miss') {
  const warm = client();
  for (const request of hits) await warm.send(request);
  warm.close();
}
let sent = 0;
const next = () =>
  kind === 'miss'
    ? rawRequest(
        JSON.stringify({ model: 'text-embedding-3-small', input: `miss ${sent++} ${Math.random()}` }),
      )
    : hits[sent++ % hits.length]!;

const cpuSeconds = () => {
  const stat = readFileSync(`/proc/${gateway.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
};
const connections = Array.from({ length: Number(args.clients) }, client);
const latencies: number[] = [];
const cpuBefore = cpuSeconds();
const started = performance.now();
const deadline = started + Number(args.seconds) * 1000;
await Promise.all(
  connections.map(async (connection) => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const status = await connection.send(next());
      if (status !== 200) throw new Error(`the gateway answered ${status}`);
      latencies.push(performance.now() - t0);
    }
  }),
);
const elapsed = (performance.now() - started) / 1000;
const cpu = cpuSeconds() - cpuBefore;
const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gateway.pid}/status`, 'utf8'))?.[1]) / 1024;
for (const connection of connections) connection.close();
latencies.sort((a, b) => a - b);
await gateway.stop('SIGTERM', 10_000);
await upstream.stop();

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
const file = readdirSync(profileDir).find((name) => name.endsWith('.cpuprofile'));
if (!file) throw new Error('the gateway wrote no profile');
const profile = JSON.parse(readFileSync(join(profileDir, file), 'utf8')) as {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
};
const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const self = new Map<string, number>();
profile.samples.forEach((id, i) => {
  const frame = nodes.get(id)!.callFrame;
  const name = `${frame.functionName || '(anonymous)'} ${frame.url.split('/').slice(-2).join('/')}:${frame.lineNumber + 1}`;
  self.set(name, (self.get(name) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const busy = [...self].filter(([name]) => !name.startsWith('(idle)')).reduce((sum, [, us]) => sum + us, 0);
const percentile = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))];
process.stdout.write(
  `${kind}, ${args.clients} clients, ${args.seconds} s: ${Math.round(latencies.length / elapsed)} req/s, ` +
    `p50 ${percentile(50)?.toFixed(2)} ms, p99 ${percentile(99)?.toFixed(2)} ms, ` +
    `${((cpu * 1000) / latencies.length).toFixed(3)} ms CPU/request (profiler on), RSS ${rss.toFixed(0)} MB\n\n` +
    '| self time | share of busy | function |\n|---:|---:|---|\n',
);
for (const [name, us] of [...self]
  .filter(([n]) => !n.startsWith('(idle)'))
  .sort((a, b) => b[1] - a[1])
  .slice(0, Number(args.top))) {
  process.stdout.write(
    `| ${(us / 1000).toFixed(0)} ms | ${((100 * us) / busy).toFixed(1)}% | \`${name}\` |\n`,
  );
}
rmSync(profileDir, { recursive: true, force: true });
rmSync(cacheDir, { recursive: true, force: true });
