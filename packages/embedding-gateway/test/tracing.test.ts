// Traces: the caller's traceparent continued, the upstream told our span, spans sent to a
// collector — over gRPC and OTLP/HTTP protobuf to Python's grpcio decoding with protoc-generated
// classes (test/otlp), and as OTLP/HTTP JSON to a stand-in that records what arrives.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { it } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { parseTraceparent, tracingOptionsFromEnv } from '../src/tracing.ts';
import { startFakeOpenAI } from './fake-openai.ts';
import { auth, embed, startTestGateway } from './helpers.ts';

interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
  status: { code: number };
}

async function startCollector() {
  const spans: ExportedSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/traces' && req.headers['content-type'] === 'application/json') {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as {
          resourceSpans: Array<{ scopeSpans: Array<{ spans: ExportedSpan[] }> }>;
        };
        for (const resource of body.resourceSpans)
          for (const scope of resource.scopeSpans) spans.push(...scope.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, spans, close: () => new Promise((r) => server.close(r)) };
}

it("continues the caller's traceparent, passes our span to the upstream, and exports the spans", async () => {
  const collector = await startCollector();
  const upstream = await startFakeOpenAI();
  const gateway = await startTestGateway(upstream.baseUrl, [], {
    OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_BSP_SCHEDULE_DELAY: '50',
  });
  try {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpan = '00f067aa0ba902b7';
    const answer = await embed(
      gateway.url,
      { model: 'text-embedding-3-small', input: 'traced', dimensions: 2 },
      {
        ...auth,
        traceparent: `00-${traceId}-${callerSpan}-01`,
      },
    );
    assert.equal(answer.status, 200);
    const sent = parseTraceparent(String(upstream.requests.at(-1)!.headers.traceparent));
    assert.ok(sent, 'the upstream got a valid traceparent');
    assert.equal(sent.traceId, traceId);
    assert.notEqual(sent.spanId, callerSpan);

    await waitFor('the spans', () => collector.spans.length >= 4);
    const byName = new Map(collector.spans.map((s) => [`${s.kind} ${s.name}`, s]));
    const server = byName.get('2 POST /v1/embeddings');
    assert.ok(server, collector.spans.map((s) => s.name).join(', '));
    assert.equal(server.traceId, traceId);
    assert.equal(server.parentSpanId, callerSpan);
    const client = byName.get('3 POST /v1/embeddings');
    assert.ok(client, 'the upstream call has a client span');
    assert.equal(client.spanId, sent.spanId, 'the upstream was told the client span');
    const wrapper = byName.get('1 create_openai_embeddings');
    assert.equal(wrapper?.parentSpanId, server.spanId);
    assert.equal(client.parentSpanId, wrapper?.spanId);
    assert.ok(byName.has('3 filesystem get') && byName.has('3 filesystem put'));
    assert.ok(collector.spans.every((s) => s.traceId === traceId));
  } finally {
    await gateway.stop();
    await upstream.close();
    await collector.close();
  }
});

it("without an OTLP endpoint the caller's traceparent reaches the upstream unchanged", async () => {
  const upstream = await startFakeOpenAI();
  const gateway = await startTestGateway(upstream.baseUrl);
  try {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await embed(
      gateway.url,
      { model: 'text-embedding-3-small', input: 'untraced' },
      { ...auth, traceparent },
    );
    assert.equal(upstream.requests.at(-1)!.headers.traceparent, traceparent);
  } finally {
    await gateway.stop();
    await upstream.close();
  }
});

it('parses traceparent as W3C says: version ff, all-zero ids and bad lengths are refused', () => {
  assert.deepEqual(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    flags: '01',
  });
  assert.equal(parseTraceparent('ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), undefined);
  assert.equal(parseTraceparent('00-00000000000000000000000000000000-00f067aa0ba902b7-01'), undefined);
  assert.equal(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'), undefined);
  assert.equal(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra'), undefined);
  assert.ok(parseTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra'));
  assert.equal(parseTraceparent('garbage'), undefined);
});

/** python3 with grpcio and grpc_tools: the first on PATH, else Debian's. */
function findPythonWithGrpc(): string {
  const found = ['python3', '/usr/bin/python3'].find(
    (candidate) =>
      spawnSync(candidate, ['-c', 'import grpc, grpc_tools.protoc'], { stdio: 'ignore' }).status === 0,
  );
  if (!found) {
    throw new Error(
      'the OTLP test runs a grpcio collector: apt-get install python3-grpcio python3-grpc-tools',
    );
  }
  return found;
}

interface CollectedSpan {
  via: string;
  service: string;
  scope: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  start: string;
  end: string;
  attributes: Record<string, unknown>;
  status: { code: number; message: string };
}

async function startGrpcCollector() {
  const child = spawn(findPythonWithGrpc(), [new URL('./otlp/collector.py', import.meta.url).pathname], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const spans: CollectedSpan[] = [];
  const lines = createInterface({ input: child.stdout! });
  const ports = await new Promise<{ grpc: number; http: number }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the collector exited with ${code}`)));
    lines.once('line', (line) => resolve(JSON.parse(line)));
  });
  lines.on('line', (line) => spans.push(JSON.parse(line) as CollectedSpan));
  return {
    ports,
    spans,
    close: async () => {
      child.stdin!.end();
      child.kill();
      if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

it('exports spans over gRPC (the default, as the original) and OTLP/HTTP protobuf that a grpcio collector decodes', async () => {
  const collector = await startGrpcCollector();
  const upstream = await startFakeOpenAI();
  const gateways = [
    await startTestGateway(upstream.baseUrl, [], {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.ports.grpc}`,
      OTEL_BSP_SCHEDULE_DELAY: '50',
    }),
    await startTestGateway(upstream.baseUrl, [], {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.ports.http}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_SERVICE_NAME: 'gateway-two',
      OTEL_BSP_SCHEDULE_DELAY: '50',
    }),
  ];
  try {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpan = '00f067aa0ba902b7';
    for (const [i, gateway] of gateways.entries()) {
      const answer = await embed(
        gateway.url,
        { model: 'text-embedding-3-small', input: `exported ${i}`, dimensions: 2 },
        { ...auth, traceparent: `00-${traceId}-${callerSpan}-01` },
      );
      assert.equal(answer.status, 200);
    }
    const servers = () => collector.spans.filter((s) => s.kind === 2);
    await waitFor('both server spans', () => servers().length >= 2);
    await waitFor(
      'the put spans',
      () => collector.spans.filter((s) => s.name === 'filesystem put').length >= 2,
    );
    assert.deepEqual(
      servers()
        .map((s) => [s.via, s.service])
        .sort(),
      [
        ['grpc', 'embedding-gateway'],
        ['http/protobuf', 'gateway-two'],
      ],
    );
    for (const server of servers()) {
      assert.equal(server.name, 'POST /v1/embeddings');
      assert.equal(server.scope, '@seahorse/embedding-gateway');
      assert.equal(server.traceId, traceId);
      assert.equal(server.parentSpanId, callerSpan);
      assert.match(server.spanId, /^[0-9a-f]{16}$/);
      assert.equal(server.attributes['http.response.status_code'], 200);
      assert.equal(server.attributes['http.request.method'], 'POST');
      assert.equal(server.status.code, 0);
      assert.ok(
        BigInt(server.start) > 1_600_000_000_000_000_000n && BigInt(server.end) >= BigInt(server.start),
      );
      const wrapper = collector.spans.find(
        (s) => s.name === 'create_openai_embeddings' && s.parentSpanId === server.spanId,
      );
      assert.ok(wrapper, 'the upstream call is a child of the server span');
      assert.ok(collector.spans.some((s) => s.kind === 3 && s.parentSpanId === wrapper.spanId));
    }
  } finally {
    for (const gateway of gateways) await gateway.stop();
    await upstream.close();
    await collector.close();
  }
});

it('reads the OTLP protocol and endpoint as the OpenTelemetry SDKs do, refusing what it cannot send', () => {
  const grpc = tracingOptionsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317' });
  assert.equal(grpc.protocol, 'grpc');
  assert.equal(grpc.endpoint, 'http://collector:4317');
  assert.equal(
    tracingOptionsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317' }).endpoint,
    'https://collector:4317',
  );
  assert.equal(
    tracingOptionsFromEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317',
      OTEL_EXPORTER_OTLP_INSECURE: 'true',
    }).endpoint,
    'http://collector:4317',
  );
  const http = tracingOptionsFromEnv({
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
  });
  assert.equal(http.endpoint, 'http://collector:4318/v1/traces');
  assert.equal(
    tracingOptionsFromEnv({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/custom',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
    }).protocol,
    'http/json',
  );
  assert.throws(
    () => tracingOptionsFromEnv({ OTEL_EXPORTER_OTLP_PROTOCOL: 'thrift' }),
    /OTEL_EXPORTER_OTLP_PROTOCOL must be one of grpc, http\/protobuf, http\/json, not "thrift"/,
  );
  assert.throws(
    () => tracingOptionsFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://[bad' }),
    /the OTLP endpoint "http:\/\/\[bad" is not a URL/,
  );
  assert.equal(
    tracingOptionsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_TRACES_EXPORTER: 'none' })
      .endpoint,
    undefined,
  );
});
