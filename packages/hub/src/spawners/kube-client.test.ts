// The API client against servers that answer badly: what a proxy in front of the apiserver, a
// dead peer or a broken stream does must end one request with a typed error, never hang or throw.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { freePort } from '@seahorse/runtime/testing';
import { KubeClient } from './kube-client.ts';

let server: http.Server;
let url: URL;
const resets = new Map<string, number>();

before(async () => {
  server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path.startsWith('/reset-once')) {
      // The first request on each path is cut before any answer, as a closed keep-alive socket is.
      const seen = resets.get(`${req.method} ${path}`) ?? 0;
      resets.set(`${req.method} ${path}`, seen + 1);
      if (seen === 0) {
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"kind":"Pod"}');
    } else if (path.startsWith('/busy/')) {
      // 429 or 503 for the first `n` requests on this path, then the object.
      const [, , code, times, after] = path.split('/');
      const seen = resets.get(`${req.method} ${path}`) ?? 0;
      resets.set(`${req.method} ${path}`, seen + 1);
      if (seen < Number(times)) {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (after !== undefined && after !== '-') headers['retry-after'] = after;
        res.writeHead(Number(code), headers);
        res.end(JSON.stringify({ kind: 'Status', code: Number(code), reason: 'TooManyRequests' }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"kind":"Pod"}');
    } else if (path === '/html-503') {
      res.writeHead(503, { 'content-type': 'text/html' });
      res.end('<html>upstream connect error</html>');
    } else if (path === '/not-json') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"kind": "Pod", ');
    } else if (path === '/slow') {
      // never answers
    } else if (path === '/watch-garbage') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"5"}}}\n');
      res.end('not json at all\n');
    } else if (path === '/watch-unknown') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"type":"EXPLODED","object":{}}\n');
    } else if (path === '/watch-split') {
      res.writeHead(200, { 'content-type': 'application/json' });
      const line = '{"type":"MODIFIED","object":{"metadata":{"name":"b","resourceVersion":"7"}}}\n';
      res.write(line.slice(0, 10));
      setTimeout(() => res.end(line.slice(10)), 20);
    } else if (path === '/watch-silent') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});

after(() => {
  server.closeAllConnections();
  server.close();
});

const client = () =>
  new KubeClient({ server: url, token: 't', namespace: 'n' }, { requestTimeoutMs: 300, retryTimeoutMs: 0 });

test('a non-Status error page (a proxy in front of the apiserver) is HUB_KUBE_SERVER with its first words', async () => {
  await assert.rejects(client().get('/html-503'), (error: Error & { code?: string; status?: number }) => {
    assert.equal(error.code, 'HUB_KUBE_SERVER');
    assert.equal(error.status, 503);
    assert.match(error.message, /upstream connect error/);
    return true;
  });
});

test('a GET cut before any answer is retried once; a POST is not (it may have been applied)', async () => {
  assert.deepEqual(await client().get('/reset-once/a'), { kind: 'Pod' });
  await assert.rejects(client().create('/reset-once/b', { kind: 'Pod' }), { code: 'HUB_KUBE_CONNECTION' });
  assert.equal(resets.get('POST /reset-once/b'), 1);
});

test('a 200 whose body is not JSON is HUB_KUBE_CONNECTION', async () => {
  await assert.rejects(client().get('/not-json'), { code: 'HUB_KUBE_CONNECTION' });
});

test('no answer within k8s_api_request_timeout is HUB_KUBE_CONNECTION naming the trait', async () => {
  await assert.rejects(client().get('/slow'), (error: Error & { code?: string }) => {
    assert.equal(error.code, 'HUB_KUBE_CONNECTION');
    assert.match(error.message, /k8s_api_request_timeout/);
    return true;
  });
});

test('a refused connection is HUB_KUBE_CONNECTION naming the apiserver', async () => {
  const port = await freePort();
  const refused = new KubeClient(
    { server: new URL(`http://127.0.0.1:${port}`), namespace: 'n' },
    { retryTimeoutMs: 0 },
  );
  await assert.rejects(refused.get('/api/v1/namespaces/n/pods'), (error: Error & { code?: string }) => {
    assert.equal(error.code, 'HUB_KUBE_CONNECTION');
    assert.match(error.message, new RegExp(`127.0.0.1:${port}`));
    return true;
  });
});

test('a watch delivers the events before a garbage line, then fails with HUB_KUBE_CONNECTION', async () => {
  const names: string[] = [];
  await assert.rejects(
    client().watch(
      '/watch-garbage',
      {},
      (event) => names.push(String(event.object.metadata?.name)),
      new AbortController().signal,
      5000,
    ),
    { code: 'HUB_KUBE_CONNECTION' },
  );
  assert.deepEqual(names, ['a']);
  await assert.rejects(
    client().watch('/watch-unknown', {}, () => undefined, new AbortController().signal, 5000),
    /unknown type/,
  );
});

test('an event split across chunks is joined; a silent stream ends after the idle timeout', async () => {
  const events: string[] = [];
  await client().watch(
    '/watch-split',
    {},
    (event) => events.push(`${event.type} ${event.object.metadata?.name}`),
    new AbortController().signal,
    5000,
  );
  assert.deepEqual(events, ['MODIFIED b']);
  await assert.rejects(
    client().watch('/watch-silent', {}, () => undefined, new AbortController().signal, 200),
    /nothing arrived/,
  );
});

test('aborting a watch resolves it and closes the request', async () => {
  const abort = new AbortController();
  const watching = client().watch('/watch-silent', {}, () => undefined, abort.signal, 5000);
  setTimeout(() => abort.abort(), 50);
  await watching;
});

const retrying = (retryTimeoutMs: number) =>
  new KubeClient(
    { server: url, token: 't', namespace: 'n' },
    { requestTimeoutMs: 300, retryTimeoutMs, retryBackoffMs: 20 },
  );

test('429 is retried after its Retry-After, for a POST too (the apiserver did nothing)', async () => {
  const began = Date.now();
  assert.deepEqual(await retrying(5000).create('/busy/429/1/1', { kind: 'Pod' }), { kind: 'Pod' });
  assert.ok(Date.now() - began >= 900, 'waited the second Retry-After asked for');
  assert.equal(resets.get('POST /busy/429/1/1'), 2);
});

test('a 5xx is retried with backoff for GET and DELETE within k8s_api_request_retry_timeout, never for a POST', async () => {
  assert.deepEqual(await retrying(5000).get('/busy/503/3/-'), { kind: 'Pod' });
  assert.equal(resets.get('GET /busy/503/3/-'), 4);
  await assert.rejects(retrying(5000).create('/busy/503/1/-', { kind: 'Pod' }), { status: 503 });
  assert.equal(resets.get('POST /busy/503/1/-'), 1);
  // Out of budget: the last error, after a bounded number of tries.
  const began = Date.now();
  await assert.rejects(retrying(300).get('/busy/500/1000/-'), { code: 'HUB_KUBE_SERVER', status: 500 });
  assert.ok(Date.now() - began < 2000);
  assert.ok((resets.get('GET /busy/500/1000/-') ?? 0) > 2);
});

test('a Retry-After beyond the retry budget gives up at once instead of waiting', async () => {
  const began = Date.now();
  await assert.rejects(retrying(1000).get('/busy/429/5/3600'), { status: 429 });
  assert.ok(Date.now() - began < 500);
  assert.equal(resets.get('GET /busy/429/5/3600'), 1);
});

test('a Retry-After of 0 is not a tight loop: the backoff still grows between tries', async () => {
  await assert.rejects(retrying(400).get('/busy/429/100000/0'), { status: 429 });
  // 20, 40, 80, 160 ms of backoff fit in 400 ms: a handful of tries, not hundreds.
  const tries = resets.get('GET /busy/429/100000/0') ?? 0;
  assert.ok(tries >= 2 && tries <= 8, `${tries} tries`);
});

test('a watch listener that throws on a hostile object ends the watch with an error, never throws into the socket', async () => {
  await assert.rejects(
    client().watch(
      '/watch-split',
      {},
      () => {
        throw new TypeError('statuses.every is not a function');
      },
      new AbortController().signal,
      5000,
    ),
    /could not be applied: statuses.every/,
  );
});
