// The body hasher against a gRPC client written here from the ext_proc v3 messages' documented
// field numbers (its own protobuf encoder and decoder, independent of src/hasher), over real
// HTTP/2 on loopback, in-process and as the bin's `hasher` subcommand.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { type ClientHttp2Session, type ClientHttp2Stream, connect } from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';
import { buildHasherOptions } from '../src/hasher/cli.ts';
import { type Hasher, startHasher } from '../src/hasher/hasher.ts';
import { testLogger } from './helpers.ts';
import { type Decoded, decode, grpcFrame, len, num } from './protobuf.ts';

const sub = (m: Decoded, field: number): Decoded => {
  const value = m.get(field)?.[0];
  assert.ok(Buffer.isBuffer(value), `field ${field} is a message`);
  return decode(value);
};

/** HttpHeaders { headers: HeaderMap { headers: [HeaderValue{key, raw_value}] }, end_of_stream }. */
function requestHeaders(headers: Record<string, string>, endOfStream = false, asValue = false): Buffer {
  const map = Buffer.concat(
    Object.entries(headers).map(([k, v]) => len(1, Buffer.concat([len(1, k), len(asValue ? 2 : 3, v)]))),
  );
  const http = Buffer.concat([len(1, map), endOfStream ? num(3, 1) : Buffer.alloc(0)]);
  return len(2, http); // ProcessingRequest.request_headers = 2
}
const requestBody = (body: Buffer | string, endOfStream: boolean) =>
  len(4, Buffer.concat([len(1, body), endOfStream ? num(2, 1) : Buffer.alloc(0)]));

interface Exchange {
  status: string;
  messages: Decoded[];
}

/** One Process stream: sends each message once the previous answer arrived, as Envoy does. */
function processStream(
  session: ClientHttp2Session,
  messages: Buffer[],
  path = '/envoy.service.ext_proc.v3.ExternalProcessor/Process',
  raw?: Buffer,
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const replies: Decoded[] = [];
    let buffer = Buffer.alloc(0);
    let status = '';
    let next = 0;
    const sendNext = () => {
      if (next < messages.length) stream.write(grpcFrame(messages[next++]!));
      if (next === messages.length) stream.end();
    };
    stream.on('response', (headers) => {
      if (headers['grpc-status'] !== undefined) status = String(headers['grpc-status']);
    });
    stream.on('trailers', (trailers) => {
      status = String(trailers['grpc-status']);
    });
    stream.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= 5 && buffer.length >= 5 + buffer.readUInt32BE(1)) {
        const size = buffer.readUInt32BE(1);
        replies.push(decode(buffer.subarray(5, 5 + size)));
        buffer = buffer.subarray(5 + size);
        sendNext();
      }
    });
    stream.on('end', () => resolve({ status, messages: replies }));
    stream.on('error', reject);
    if (raw) stream.end(raw);
    else sendNext();
  });
}

/**
 * A Process stream that sends `bytes` and keeps the stream open; settles with the status once
 * the server ends the stream, or with '' after `waitMs` if it has not.
 */
function openStream(
  session: ClientHttp2Session,
  bytes: Buffer,
  waitMs = 10_000,
): Promise<{ status: string; stream: ClientHttp2Stream }> {
  return new Promise((resolve) => {
    const stream = session.request({
      ':method': 'POST',
      ':path': '/envoy.service.ext_proc.v3.ExternalProcessor/Process',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let status = '';
    const timer = setTimeout(() => resolve({ status, stream }), waitMs);
    const settle = () => {
      clearTimeout(timer);
      resolve({ status, stream });
    };
    stream.on('response', (headers) => {
      if (headers['grpc-status'] !== undefined) status = String(headers['grpc-status']);
    });
    stream.on('trailers', (trailers) => {
      status = String(trailers['grpc-status']);
    });
    stream.on('data', () => {});
    stream.on('end', settle);
    stream.on('error', settle);
    stream.write(bytes);
  });
}

/** The headers a HeaderMutation sets: [key, value, raw_value, append_action]. */
function setHeaders(mutation: Decoded): Array<[string, string, string, number]> {
  return (mutation.get(1) ?? []).map((option) => {
    const opt = decode(option as Buffer);
    const header = sub(opt, 1);
    return [
      String(header.get(1)?.[0]),
      String(header.get(2)?.[0]),
      String(header.get(3)?.[0]),
      Number(opt.get(3)?.[0] ?? 0),
    ];
  });
}

describe('ext_proc body hasher', () => {
  let hasher: Hasher;
  let session: ClientHttp2Session;

  before(async () => {
    const options = buildHasherOptions(
      [
        '--address=127.0.0.1:0',
        '--max-body-size=64kb',
        '--max-buffered=256kb',
        '--message-timeout=300ms',
        '--lameduck=0',
      ],
      {},
    )!;
    hasher = await startHasher(options, testLogger().log);
    const port = 'port' in hasher.address ? hasher.address.port : 0;
    session = connect(`http://127.0.0.1:${port}`);
  });

  after(async () => {
    session.close();
    await hasher.close();
  });

  test('request headers with a body: the client x-body-hash is removed and the body is asked for, buffered', async () => {
    const body = '{"model":"m","input":"hello"}';
    const { status, messages } = await processStream(session, [
      requestHeaders({
        ':method': 'POST',
        ':path': '/v1/embeddings',
        'content-length': String(body.length),
        'x-body-hash': 'f'.repeat(64),
      }),
      requestBody(body, true),
    ]);
    assert.equal(status, '0');
    assert.equal(messages.length, 2);
    // ProcessingResponse.request_headers = 1 -> HeadersResponse.response = 1 -> CommonResponse.header_mutation = 2
    const headerMutation = sub(sub(sub(messages[0]!, 1), 1), 2);
    assert.deepEqual(headerMutation.get(2)?.map(String), ['x-body-hash']);
    // mode_override = 9 -> ProcessingMode.request_body_mode = 3 -> BUFFERED = 2
    assert.deepEqual(sub(messages[0]!, 9).get(3), [2]);
    // request_body = 3 -> BodyResponse.response = 1 -> header_mutation = 2
    const bodyMutation = sub(sub(sub(messages[1]!, 3), 1), 2);
    const digest = createHash('sha256').update(body).digest('hex');
    assert.deepEqual(setHeaders(bodyMutation), [['x-body-hash', digest, digest, 2]]);
  });

  test('the hash is SHA-256 of the raw bytes, across streamed chunks, with header values in `value` too', async () => {
    const { messages } = await processStream(session, [
      requestHeaders({ 'content-length': '11' }, false, true),
      requestBody('hello ', false),
      requestBody('world', true),
    ]);
    assert.equal(messages.length, 3);
    assert.equal(sub(messages[1]!, 3).size, 0, 'a chunk before the end gets an empty BodyResponse');
    const mutation = sub(sub(sub(messages[2]!, 3), 1), 2);
    assert.equal(
      setHeaders(mutation)[0]![1],
      'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9',
    );
  });

  test('no body, an empty body or a body past --max-body-size: no buffering asked, the client hash still removed', async () => {
    for (const headers of [
      requestHeaders({ ':method': 'GET', 'x-body-hash': 'a' }, true),
      requestHeaders({ 'content-length': '0' }),
      requestHeaders({ 'content-length': String(65 * 1024) }),
      requestHeaders({ 'transfer-encoding': 'chunked' }),
      requestHeaders({ 'content-length': '-5' }),
    ]) {
      const { status, messages } = await processStream(session, [headers]);
      assert.equal(status, '0');
      assert.equal(messages[0]!.has(9), false, 'no mode override');
      assert.deepEqual(
        sub(sub(sub(messages[0]!, 1), 1), 2)
          .get(2)
          ?.map(String),
        ['x-body-hash'],
      );
    }
  });

  test('response phases and trailers get empty answers of their own kind', async () => {
    const responseHeaders = len(3, len(1, Buffer.alloc(0)));
    const trailers = len(6, Buffer.alloc(0));
    const responseBody = len(5, num(2, 1));
    const { messages } = await processStream(session, [responseHeaders, trailers, responseBody]);
    assert.deepEqual(
      messages.map((m) => [...m.keys()]),
      [[2], [5], [4]],
    );
  });

  test('streams run side by side on one connection, each with its own hash', async () => {
    const bodies = Array.from({ length: 20 }, (_, i) => `body number ${i}`);
    const results = await Promise.all(
      bodies.map((body) =>
        processStream(session, [
          requestHeaders({ 'content-length': String(body.length) }),
          requestBody(body, true),
        ]),
      ),
    );
    results.forEach((result, i) => {
      const mutation = sub(sub(sub(result.messages[1]!, 3), 1), 2);
      assert.equal(setHeaders(mutation)[0]![1], createHash('sha256').update(bodies[i]!).digest('hex'));
    });
  });

  test('hostile bytes end that stream with a gRPC error; the server goes on', async () => {
    const truncated = await processStream(session, [], undefined, grpcFrame(Buffer.from([0x12, 0x50, 0x01])));
    assert.equal(truncated.status, '3');
    const compressed = Buffer.from([1, 0, 0, 0, 1, 0]);
    assert.equal((await processStream(session, [], undefined, compressed)).status, '12');
    const huge = Buffer.from([0, 0x7f, 0xff, 0xff, 0xff]);
    assert.equal((await processStream(session, [], undefined, huge)).status, '8');
    const cut = Buffer.from([0, 0, 0, 0, 9, 1]);
    assert.equal((await processStream(session, [], undefined, cut)).status, '3');
    const badWire = grpcFrame(Buffer.from([0x13]));
    assert.equal((await processStream(session, [], undefined, badWire)).status, '3');
    assert.equal((await processStream(session, [], '/other.Service/Method')).status, '12');
    for (const headers of [
      { ':method': 'POST', 'content-type': 'text/plain' },
      { ':method': 'GET', 'content-type': 'application/grpc' },
      { ':method': 'POST', 'content-type': 'application/grpc-web' },
    ]) {
      const stream = session.request({
        ':path': '/envoy.service.ext_proc.v3.ExternalProcessor/Process',
        ...headers,
      });
      const [response] = (await once(stream, 'response')) as [Record<string, unknown>];
      assert.equal(response[':status'], 415, JSON.stringify(headers));
      stream.close();
    }
    const { status, messages } = await processStream(session, [
      requestHeaders({ 'content-length': '1' }),
      requestBody('x', true),
    ]);
    assert.equal(status, '0');
    assert.equal(messages.length, 2);
  });

  test('less body than announced is not hashed either (a body cut short)', async () => {
    const { messages } = await processStream(session, [
      requestHeaders({ 'content-length': '5' }),
      requestBody('abc', true),
    ]);
    assert.equal(sub(messages[1]!, 3).size, 0);
  });

  test('a message left unfinished ends its stream with DEADLINE_EXCEEDED after --message-timeout', async () => {
    const started = Date.now();
    const half = grpcFrame(requestBody('x'.repeat(1000), true)).subarray(0, 100);
    const { status } = await openStream(session, half);
    assert.equal(status, '4');
    assert.ok(Date.now() - started < 5000, 'within the timeout, not the session idle time');
  });

  test('unfinished messages past --max-buffered on all streams: the stream that would pass it is refused', async () => {
    // Three streams each hold 100 KB of a 200 KB message: 300 KB against a 256 KB budget.
    const part = grpcFrame(requestBody('y'.repeat(200 * 1024), true)).subarray(0, 100 * 1024);
    const streams = await Promise.all([0, 1, 2].map(() => openStream(session, part, 150)));
    const statuses = streams.map((stream) => stream.status).sort();
    assert.deepEqual(statuses, ['', '', '8'], 'one refused, two still open');
    for (const stream of streams) stream.stream.close();
    await waitFor('the budget to be given back', async () => {
      const body = 'z'.repeat(60 * 1024);
      const answer = await Promise.all(
        [0, 1, 2, 3].map(() =>
          processStream(session, [
            requestHeaders({ 'content-length': String(body.length) }),
            requestBody(body, true),
          ]),
        ),
      );
      return answer.every((a) => a.status === '0');
    });
  });

  test('more body than announced is not hashed (no hash of a prefix)', async () => {
    const { messages } = await processStream(session, [
      requestHeaders({ 'content-length': '3' }),
      requestBody('x'.repeat(40 * 1024), false),
      requestBody('y'.repeat(40 * 1024), true),
    ]);
    assert.equal(sub(messages[2]!, 3).size, 0);
  });

  test('a body sent without its headers (Envoy configured that way) is hashed too, as the original does', async () => {
    const { messages } = await processStream(session, [requestBody('abc', true)]);
    const mutation = sub(sub(sub(messages[0]!, 3), 1), 2);
    assert.equal(setHeaders(mutation)[0]![1], createHash('sha256').update('abc').digest('hex'));
  });

  test('a connection takes 1,024 streams at once (Envoy opens another past it)', async () => {
    const port = 'port' in hasher.address ? hasher.address.port : 0;
    const fresh = connect(`http://127.0.0.1:${port}`);
    try {
      const [settings] = (await once(fresh, 'remoteSettings')) as [{ maxConcurrentStreams?: number }];
      assert.equal(settings.maxConcurrentStreams, 1024);
    } finally {
      fresh.close();
    }
  });

  test('grpc.health.v1 Check answers SERVING for the kubelet', async () => {
    const { status, messages } = await processStream(
      session,
      [Buffer.alloc(0)],
      '/grpc.health.v1.Health/Check',
    );
    assert.equal(status, '0');
    assert.deepEqual(messages[0]!.get(1), [1]);
  });
});

test('the bin: `hasher` serves ext_proc and, on SIGTERM, sends GOAWAY to Envoy and exits well within the grace period', async () => {
  const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
  const port = await freePort();
  const proc = new ManagedProcess('hasher', process.execPath, [
    '--conditions=seahorse-source',
    cli,
    'hasher',
    `--address=127.0.0.1:${port}`,
    '--enable-body-hash',
    '--lameduck=0',
  ]);
  try {
    await proc.untilReady(waitFor('hasher to listen', () => proc.output.includes('body hasher listening')));
    const session = connect(`http://127.0.0.1:${port}`);
    const { messages } = await processStream(session, [
      requestHeaders({ 'content-length': '2' }),
      requestBody('hi', true),
    ]);
    const mutation = sub(sub(sub(messages[1]!, 3), 1), 2);
    assert.equal(setHeaders(mutation)[0]![1], createHash('sha256').update('hi').digest('hex'));
    // Envoy keeps its connection open: the drain must close it, not wait for it.
    const goaway = new Promise((resolve) => session.once('goaway', resolve));
    const started = Date.now();
    proc.signal('SIGTERM');
    await goaway;
    assert.equal(await proc.exited, 0, proc.output);
    assert.ok(Date.now() - started < 5000, `exited after ${Date.now() - started} ms`);
    session.destroy();
  } finally {
    await proc.stop('SIGKILL');
  }
});
