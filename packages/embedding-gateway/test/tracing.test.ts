// Traces: the caller's traceparent continued, the upstream told our span, spans sent to an
// OTLP/HTTP collector (a stand-in that records what arrives at /v1/traces, in OTLP's JSON).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { it } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { parseTraceparent } from '../src/tracing.ts';
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
