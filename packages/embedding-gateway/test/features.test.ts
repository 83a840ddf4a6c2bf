// Beyond the original, each behind its flag: coalesced misses and per-input caching.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { type FakeOpenAI, fakeVector, startFakeOpenAI } from './fake-openai.ts';
import { auth, call, embed, startTestGateway, type TestGateway } from './helpers.ts';

interface EmbeddingsAnswer {
  object: string;
  data: Array<{ object: string; index: number; embedding: number[] | string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** Starts a request and returns a function that drops its connection. */
function startAndAbandon(url: string, body: unknown): () => void {
  const req = request(`${url}/v1/embeddings`, { method: 'POST', headers: auth, agent: false });
  req.on('error', () => {});
  req.end(JSON.stringify(body));
  return () => req.destroy();
}

async function metric(url: string, name: string): Promise<number> {
  const text = (await call(url, { method: 'GET', path: '/metrics' })).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe('--coalesce-misses', () => {
  let upstream: FakeOpenAI;
  let gateway: TestGateway;
  before(async () => {
    upstream = await startFakeOpenAI();
    gateway = await startTestGateway(upstream.baseUrl, ['--coalesce-misses']);
  });
  after(async () => {
    await gateway.stop();
    await upstream.close();
  });

  it('concurrent identical misses make one upstream call and all get the answer', async () => {
    upstream.delayMs = 300;
    const body = { model: 'text-embedding-3-small', input: 'together', dimensions: 4 };
    const calls = upstream.requests.length;
    const answers = await Promise.all(Array.from({ length: 5 }, () => embed(gateway.url, body)));
    upstream.delayMs = 0;
    assert.equal(upstream.requests.length, calls + 1);
    for (const answer of answers) {
      assert.equal(answer.status, 200);
      assert.equal(answer.text, answers[0]!.text);
    }
    assert.equal(await metric(gateway.url, 'embedding_gateway_requests_total{outcome="coalesced"}'), 4);
  });

  it('the shared call goes on while one waiter remains, and is cancelled when the last one leaves', async () => {
    upstream.behave({ kind: 'hang' });
    const body = { model: 'text-embedding-3-small', input: 'leaving', dimensions: 4 };
    const seen = upstream.requests.length;
    const cancelled = upstream.cancelled;
    const dropFirst = startAndAbandon(gateway.url, body);
    await waitFor('the upstream call', () => upstream.requests.length > seen);
    const dropSecond = startAndAbandon(gateway.url, body);
    await waitFor(
      'the second request to join',
      async () => (await metric(gateway.url, 'embedding_gateway_coalesced_waiters')) === 2,
    );
    dropFirst();
    // One waiter is still there: the call goes on.
    await waitFor(
      'the first waiter to leave',
      async () => (await metric(gateway.url, 'embedding_gateway_coalesced_waiters')) === 1,
    );
    assert.equal(upstream.cancelled, cancelled);
    dropSecond();
    await waitFor('the shared call to be cancelled', () => upstream.cancelled > cancelled);
    assert.equal(upstream.requests.length, seen + 1);
    upstream.behave({ kind: 'normal' });
  });
});

describe('without --coalesce-misses (the original)', () => {
  it('concurrent identical misses each call the upstream', async () => {
    const upstream = await startFakeOpenAI();
    const gateway = await startTestGateway(upstream.baseUrl);
    try {
      upstream.delayMs = 300;
      const body = { model: 'text-embedding-3-small', input: 'apart', dimensions: 4 };
      const answers = await Promise.all(Array.from({ length: 3 }, () => embed(gateway.url, body)));
      assert.deepEqual(
        answers.map((a) => a.status),
        [200, 200, 200],
      );
      assert.equal(upstream.requests.length, 3);
    } finally {
      await gateway.stop();
      await upstream.close();
    }
  });
});

describe('--per-input-cache', () => {
  let upstream: FakeOpenAI;
  let gateway: TestGateway;
  before(async () => {
    upstream = await startFakeOpenAI();
    gateway = await startTestGateway(upstream.baseUrl, ['--per-input-cache']);
  });
  after(async () => {
    await gateway.stop();
    await upstream.close();
  });

  const model = 'text-embedding-3-small';

  it('a partly cached request sends only the missing inputs and reassembles the answer in order', async () => {
    const first = await embed(gateway.url, { model, input: ['alpha', 'bravo'], dimensions: 6, user: 'u1' });
    assert.equal(first.status, 200);
    const calls = upstream.requests.length;
    const second = await embed(gateway.url, {
      model,
      input: ['bravo', 'charlie-charlie', 'alpha'],
      dimensions: 6,
      user: 'u1',
    });
    assert.equal(second.status, 200, second.text);
    assert.equal(upstream.requests.length, calls + 1);
    const sent = JSON.parse(upstream.requests.at(-1)!.body) as {
      input: string[];
      dimensions: number;
      user: string;
    };
    assert.deepEqual(sent.input, ['charlie-charlie']);
    assert.equal(sent.dimensions, 6);
    assert.equal(sent.user, 'u1');
    const answer = second.json() as EmbeddingsAnswer;
    assert.equal(answer.object, 'list');
    assert.equal(answer.model, model);
    assert.deepEqual(
      answer.data.map((d) => [d.object, d.index]),
      [
        ['embedding', 0],
        ['embedding', 1],
        ['embedding', 2],
      ],
    );
    assert.deepEqual(answer.data[0]!.embedding, fakeVector(model, 6, 'bravo'));
    assert.deepEqual(answer.data[1]!.embedding, fakeVector(model, 6, 'charlie-charlie'));
    assert.deepEqual(answer.data[2]!.embedding, fakeVector(model, 6, 'alpha'));
    // usage counts only what was sent: 'charlie-charlie' is 15 chars, 4 tokens in the fake.
    assert.deepEqual(answer.usage, { prompt_tokens: 4, total_tokens: 4 });
  });

  it('a request whose inputs are all cached makes no upstream call and reports zero usage', async () => {
    const calls = upstream.requests.length;
    const answer = await embed(gateway.url, { model, input: 'alpha', dimensions: 6 });
    assert.equal(answer.status, 200);
    assert.equal(upstream.requests.length, calls);
    const parsed = answer.json() as EmbeddingsAnswer;
    assert.deepEqual(parsed.data[0]!.embedding, fakeVector(model, 6, 'alpha'));
    assert.deepEqual(parsed.usage, { prompt_tokens: 0, total_tokens: 0 });
  });

  it('inputs are cached per model, dimensions and encoding format', async () => {
    const calls = upstream.requests.length;
    await embed(gateway.url, { model, input: ['alpha'], dimensions: 7 });
    assert.equal(upstream.requests.length, calls + 1);
    const base64 = await embed(gateway.url, {
      model,
      input: ['alpha', 'delta'],
      dimensions: 6,
      encoding_format: 'base64',
    });
    assert.equal(upstream.requests.length, calls + 2);
    const parsed = base64.json() as EmbeddingsAnswer;
    const expected = Buffer.from(new Float32Array(fakeVector(model, 6, 'alpha')).buffer).toString('base64');
    assert.equal(parsed.data[0]!.embedding, expected);
    const again = await embed(gateway.url, {
      model,
      input: ['delta', 'alpha'],
      dimensions: 6,
      encoding_format: 'base64',
    });
    assert.equal(upstream.requests.length, calls + 2);
    assert.equal((again.json() as EmbeddingsAnswer).data[1]!.embedding, expected);
  });

  it('identical inputs within one request are sent once', async () => {
    const calls = upstream.requests.length;
    const answer = await embed(gateway.url, { model, input: ['echo', 'echo'], dimensions: 3 });
    assert.equal(upstream.requests.length, calls + 1);
    assert.deepEqual(JSON.parse(upstream.requests.at(-1)!.body).input, ['echo']);
    const parsed = answer.json() as EmbeddingsAnswer;
    assert.equal(parsed.data.length, 2);
    assert.deepEqual(parsed.data[1]!.embedding, fakeVector(model, 3, 'echo'));
  });

  it('token-array inputs are cached like strings', async () => {
    await embed(gateway.url, {
      model,
      input: [
        [1, 2, 3],
        [4, 5],
      ],
      dimensions: 3,
    });
    const calls = upstream.requests.length;
    const answer = await embed(gateway.url, { model, input: [[4, 5], [6]], dimensions: 3 });
    assert.deepEqual(JSON.parse(upstream.requests.at(-1)!.body).input, [[6]]);
    assert.equal(upstream.requests.length, calls + 1);
    assert.deepEqual((answer.json() as EmbeddingsAnswer).data[0]!.embedding, fakeVector(model, 3, [4, 5]));
  });

  it('an upstream error on the partial call is passed on and nothing is cached', async () => {
    upstream.behave({ kind: 'status', status: 429 });
    const limited = await embed(gateway.url, { model, input: ['alpha', 'foxtrot'], dimensions: 6 });
    upstream.behave({ kind: 'normal' });
    assert.equal(limited.status, 429);
    assert.deepEqual(limited.json(), { detail: 'Too Many Requests' });
    const calls = upstream.requests.length;
    await embed(gateway.url, { model, input: ['foxtrot'], dimensions: 6 });
    assert.equal(upstream.requests.length, calls + 1, 'foxtrot was not cached by the failed call');
  });
});

describe('all features at once under concurrency', () => {
  it('concurrent overlapping requests each get the vectors of their own inputs, in order', async () => {
    const upstream = await startFakeOpenAI();
    const gateway = await startTestGateway(upstream.baseUrl, [
      '--coalesce-misses',
      '--per-input-cache',
      '--memory-cache-size',
      '4mb',
    ]);
    try {
      upstream.delayMs = 20;
      const model = 'text-embedding-3-small';
      const words = Array.from({ length: 12 }, (_, i) => `word-${i}`);
      // 60 requests over 12 words: overlapping inputs, some identical requests, all at once.
      const requests = Array.from({ length: 60 }, (_, i) => [
        words[i % 12]!,
        words[(i * 5) % 12]!,
        words[(i * 7) % 12]!,
      ]);
      const answers = await Promise.all(
        requests.map((input) =>
          embed(gateway.url, { model, input, dimensions: 3 }, { ...auth, 'accept-encoding': 'identity' }),
        ),
      );
      answers.forEach((answer, i) => {
        assert.equal(answer.status, 200, answer.text);
        const parsed = answer.json() as EmbeddingsAnswer;
        assert.deepEqual(
          parsed.data.map((d) => d.embedding),
          requests[i]!.map((word) => fakeVector(model, 3, word)),
          `request ${i}`,
        );
      });
      assert.ok(upstream.requests.length < 60, `${upstream.requests.length} upstream calls for 60 requests`);
    } finally {
      upstream.delayMs = 0;
      await gateway.stop();
      await upstream.close();
    }
  });
});
