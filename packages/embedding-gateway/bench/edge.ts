// `node --conditions=seahorse-source bench/edge.ts [--seconds N]`: the edge's costs on loopback.
// 1. The hasher: ext_proc exchanges per second (request headers + one buffered body of a
//    typical embeddings request), over one HTTP/2 connection with 16 streams in flight.
// 2. A cached answer through Varnish (the bundle's VCL) against the same answer from the
//    gateway's own store, 10 keep-alive clients, gzip accepted (as OpenAI's SDKs send).
// Everything runs in-process or as a child on this machine: numbers compare, they do not
// predict a cluster.
import { createHash } from 'node:crypto';
import { Agent, request } from 'node:http';
import { connect } from 'node:http2';
import { parseArgs } from 'node:util';
import { buildHasherOptions } from '../src/hasher/cli.ts';
import { startHasher } from '../src/hasher/hasher.ts';
import { startFakeOpenAI } from '../test/fake-openai.ts';
import { startTestGateway, testLogger } from '../test/helpers.ts';
import { grpcFrame, len } from '../test/protobuf.ts';
import { startVarnish } from '../test/varnish.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' } } });
const seconds = Number(values.seconds);

const body = JSON.stringify({
  model: 'text-embedding-3-small',
  input: Array.from({ length: 64 }, (_, i) => `sentence number ${i} `.repeat(8)),
});
const headersMessage = len(
  2,
  len(1, Buffer.concat([len(1, Buffer.concat([len(1, 'content-length'), len(3, String(body.length))]))])),
);
const bodyMessage = len(4, Buffer.concat([len(1, body), Buffer.from([0x10, 1])]));

async function benchHasher(): Promise<void> {
  const hasher = await startHasher(
    buildHasherOptions(['--address=127.0.0.1:0', '--lameduck=0'], {})!,
    testLogger().log,
  );
  const port = 'port' in hasher.address ? hasher.address.port : 0;
  const session = connect(`http://127.0.0.1:${port}`);
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/envoy.service.ext_proc.v3.ExternalProcessor/Process',
        'content-type': 'application/grpc',
      });
      let seen = 0;
      stream.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen > 0 && !stream.writableEnded) stream.end(grpcFrame(bodyMessage));
      });
      stream.on('end', resolve);
      stream.on('error', reject);
      stream.write(grpcFrame(headersMessage));
    });
  const cpu = process.cpuUsage();
  const deadline = Date.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (Date.now() < deadline) {
        await one();
        done++;
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  session.close();
  await hasher.close();
  process.stdout.write(
    `hasher: ${Math.round(done / seconds)} exchanges/s (${(body.length / 1024).toFixed(1)} KB body; client and server in one process, ${((used.user + used.system) / 1000 / done).toFixed(3)} ms CPU per exchange for both)\n`,
  );
}

async function load(port: number, path: string, headers: Record<string, string>, payload: string) {
  const agent = new Agent({ keepAlive: true, maxSockets: 10 });
  const latencies: number[] = [];
  const deadline = Date.now() + seconds * 1000;
  const one = () =>
    new Promise<number>((resolve, reject) => {
      const started = performance.now();
      const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200 ? performance.now() - started : -1));
      });
      req.on('error', reject);
      req.end(payload);
    });
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      while (Date.now() < deadline) latencies.push(await one());
    }),
  );
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const errors = latencies.filter((l) => l < 0).length;
  const at = (q: number) => latencies[Math.floor(q * (latencies.length - 1))]!.toFixed(2);
  return `${Math.round(latencies.length / seconds)} req/s, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, errors ${errors}`;
}

async function benchVarnish(): Promise<void> {
  const fake = await startFakeOpenAI();
  const gateway = await startTestGateway(fake.baseUrl);
  const backendPort = Number(new URL(gateway.url).port);
  const varnish = await startVarnish({ backendPort, scope: 'per-key' });
  const payload = JSON.stringify({ model: 'text-embedding-3-small', input: 'The food was delicious' });
  const headers = {
    authorization: 'Bearer sk-bench',
    'content-type': 'application/json',
    'accept-encoding': 'gzip',
    'x-body-hash': createHash('sha256').update(payload).digest('hex'),
  };
  await load(varnish.port, '/v1/embeddings', headers, payload); // fills both caches
  process.stdout.write(
    `hit from the gateway's store, 10 clients: ${await load(backendPort, '/v1/embeddings', headers, payload)}\n`,
  );
  process.stdout.write(
    `hit from Varnish,               10 clients: ${await load(varnish.port, '/v1/embeddings', headers, payload)}\n`,
  );
  await varnish.stop();
  await gateway.stop();
  await fake.close();
}

await benchHasher();
await benchVarnish();
