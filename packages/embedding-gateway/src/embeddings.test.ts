// The service alone, with a real filesystem store whose writes can be held back: what a client
// disconnect does at each step of a miss.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { createLogger } from '@seahorse/runtime';
import { LogCapture, waitFor } from '@seahorse/runtime/testing';
import { type FakeOpenAI, startFakeOpenAI } from '../test/fake-openai.ts';
import { cacheKey } from './cache-key.ts';
import { EmbeddingsService } from './embeddings.ts';
import { ClientGoneError } from './errors.ts';
import { createMetrics } from './metrics.ts';
import { isPyObject, parsePythonJson } from './python-json.ts';
import { FilesystemStore } from './store/filesystem.ts';
import { UpstreamClient } from './upstream.ts';

/** A filesystem store whose writes wait until released. */
class HeldStore extends FilesystemStore {
  started = 0;
  finished = 0;
  #release: (() => void) | undefined;
  #gate = new Promise<void>((resolve) => {
    this.#release = resolve;
  });
  release(): void {
    this.#release?.();
  }
  override async put(key: string, gzipped: Buffer): Promise<void> {
    this.started++;
    await this.#gate;
    await super.put(key, gzipped);
    this.finished++;
  }
}

let upstream: FakeOpenAI;
let dir: string;
before(async () => {
  upstream = await startFakeOpenAI();
  dir = mkdtempSync(join(tmpdir(), 'embeddings-service-'));
});
after(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

function service(store: FilesystemStore) {
  const logs = new LogCapture();
  return new EmbeddingsService(
    {
      store,
      upstream: new UpstreamClient({ baseUrl: upstream.baseUrl, timeoutMs: 10_000 }),
      metrics: createMetrics(),
      logger: createLogger({ name: 'test', destination: logs }),
    },
    { coalesceMisses: false, perInputCache: false, maxInputs: 0 },
  );
}

const headers = { authorization: 'Bearer sk-test', 'content-type': 'application/json' };

function body(text: string) {
  const value = parsePythonJson(text);
  assert.ok(isPyObject(value));
  return value;
}

it('a client that leaves while the write is under way does not stop it: the object is stored whole', async () => {
  const store = new HeldStore(join(dir, 'held'));
  const controller = new AbortController();
  const request = body('{"model": "text-embedding-3-small", "input": "held write", "dimensions": 4}');
  const pending = service(store).handle(request, headers, controller.signal);
  await waitFor('the write to start', () => store.started === 1);
  controller.abort();
  store.release();
  const answer = await pending;
  assert.equal(answer.outcome, 'miss');
  assert.equal(store.finished, 1);
  const stored = await store.get(cacheKey(request));
  assert.ok(stored && stored.length > 0);
});

it('a client that leaves before the upstream answers cancels the call and nothing is written', async () => {
  const store = new HeldStore(join(dir, 'cancelled'));
  store.release();
  upstream.behave({ kind: 'hang' });
  const cancelled = upstream.cancelled;
  const seen = upstream.requests.length;
  const controller = new AbortController();
  const request = body('{"model": "text-embedding-3-small", "input": "never answered"}');
  const pending = service(store).handle(request, headers, controller.signal);
  await waitFor('the upstream call', () => upstream.requests.length > seen);
  controller.abort();
  await assert.rejects(pending, ClientGoneError);
  await waitFor('the upstream to see the cancel', () => upstream.cancelled > cancelled);
  upstream.behave({ kind: 'normal' });
  assert.equal(store.started, 0);
  assert.equal(await store.get(cacheKey(request)), undefined);
});
