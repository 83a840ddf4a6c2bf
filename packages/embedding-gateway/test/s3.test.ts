// The S3 store against a real S3-protocol server (s3rver) behind a fault-injecting shim; objects
// read and written with python3's boto3 exactly as the original does.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { type FakeOpenAI, startFakeOpenAI } from './fake-openai.ts';
import { call, embed, startTestGateway, type TestGateway } from './helpers.ts';
import { type S3Fixture, s3Credentials, startS3 } from './s3-server.ts';

/** python3 with boto3: the first on PATH, else Debian's (apt-get install python3-boto3). */
function findPythonWithBoto3(): string {
  const found = ['python3', '/usr/bin/python3'].find(
    (candidate) => spawnSync(candidate, ['-c', 'import boto3'], { stdio: 'ignore' }).status === 0,
  );
  if (!found)
    throw new Error('the S3 tests read and write objects with boto3: apt-get install python3-boto3');
  return found;
}
const python = findPythonWithBoto3();

const boto3Client = (endpoint: string) => `
import boto3, botocore.config, gzip, hashlib, io, json, sys
s3 = boto3.client("s3", endpoint_url=${JSON.stringify(endpoint)}, aws_access_key_id="S3RVER",
    aws_secret_access_key="S3RVER", region_name="us-east-1",
    config=botocore.config.Config(s3={"addressing_style": "path"},
        request_checksum_calculation="when_required", response_checksum_validation="when_required"))
def key_of(body):
    d = hashlib.sha256(json.dumps(json.loads(body), sort_keys=True).encode("utf-8")).hexdigest()
    return d[:4] + "/" + d
`;

/** The original's read: get_object, gzip.decompress, json.loads; plus the object's headers. */
function boto3Read(
  s3: S3Fixture,
  requestBody: string,
): { key: string; contentEncoding: string; contentType: string; text: string } {
  const program = `${boto3Client(s3.directEndpoint)}
body = sys.stdin.read()
r = s3.get_object(Bucket=${JSON.stringify(s3.bucket)}, Key=key_of(body))
text = gzip.decompress(r["Body"].read()).decode("utf-8")
json.loads(text)
print(json.dumps({"key": key_of(body), "contentEncoding": r.get("ContentEncoding"), "contentType": r.get("ContentType"), "text": text}))
`;
  return JSON.parse(
    execFileSync(python, ['-c', program], { input: requestBody, encoding: 'utf8', stdio: 'pipe' }),
  );
}

/** The original's write: put_object(gzip(json.dumps(answer)), ContentEncoding=gzip, ContentType=application/json). */
function boto3Write(s3: S3Fixture, requestBody: string, answer: unknown, cutBytes = 0): void {
  const program = `${boto3Client(s3.directEndpoint)}
request, answer = json.loads(sys.stdin.read())
g = io.BytesIO()
with gzip.GzipFile(fileobj=g, mode="w") as f:
    f.write(json.dumps(answer).encode("utf-8"))
s3.put_object(Bucket=${JSON.stringify(s3.bucket)}, Key=key_of(request), Body=g.getvalue()[:len(g.getvalue()) - ${cutBytes}], ContentEncoding="gzip", ContentType="application/json")
`;
  execFileSync(python, ['-c', program], { input: JSON.stringify([requestBody, answer]) });
}

describe('S3 store against s3rver with injected faults', () => {
  let s3: S3Fixture;
  let upstream: FakeOpenAI;
  let gateway: TestGateway;
  const saved: Record<string, string | undefined> = {};

  before(async () => {
    for (const [name, value] of Object.entries(s3Credentials)) {
      saved[name] = process.env[name];
      process.env[name] = value;
    }
    s3 = await startS3();
    upstream = await startFakeOpenAI();
    // S3_ENDPOINT (the seed's name) is accepted for S3_ENDPOINT_URL and selects the S3 store.
    gateway = await startTestGateway(upstream.baseUrl, ['--s3-max-attempts', '1'], {
      S3_ENDPOINT: s3.endpoint,
    });
  });
  after(async () => {
    await gateway?.stop();
    await upstream?.close();
    await s3?.stop();
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  it('a miss writes the object as the original does; boto3 reads it back under the same key', async () => {
    assert.equal(gateway.store.kind, 's3');
    const body =
      '{"input": ["\u65e5\u672c", "s3 \ud83d\ude00"], "model": "text-embedding-3-small", "dimensions": 4}';
    const answer = await embed(gateway.url, body);
    assert.equal(answer.status, 200, answer.text);
    const object = boto3Read(s3, body);
    assert.equal(object.contentEncoding, 'gzip');
    assert.equal(object.contentType, 'application/json');
    assert.deepEqual(JSON.parse(object.text), answer.json());
    assert.ok(
      s3.seen.some((line) => line.startsWith(`PUT /${s3.bucket}/${object.key}?`)),
      s3.seen.join('\n'),
    );

    const calls = upstream.requests.length;
    const hit = await embed(gateway.url, body);
    assert.deepEqual(hit.json(), answer.json());
    assert.equal(upstream.requests.length, calls);
  });

  it('serves an object boto3 wrote the way the original writes it', async () => {
    const body = '{"model": "text-embedding-3-small", "input": "from boto3"}';
    const stored = {
      object: 'list',
      data: [{ object: 'embedding', index: 0, embedding: [0.5, -0.25] }],
      model: 'text-embedding-3-small',
      usage: { prompt_tokens: 2, total_tokens: 2 },
    };
    boto3Write(s3, body, stored);
    const calls = upstream.requests.length;
    const hit = await embed(gateway.url, body);
    assert.equal(hit.status, 200);
    assert.deepEqual(hit.json(), stored);
    assert.equal(upstream.requests.length, calls);
  });

  it('an object another writer cut short is a 500 for a client that accepts gzip too, as gzip.decompress fails in the original', async () => {
    const body = '{"model": "text-embedding-3-small", "input": "cut short by another writer"}';
    boto3Write(s3, body, { object: 'list', data: [], usage: { total_tokens: 1 } }, 6);
    const calls = upstream.requests.length;
    const zipped = await embed(gateway.url, body, {
      'content-type': 'application/json',
      'accept-encoding': 'gzip',
    });
    assert.equal(zipped.status, 500);
    assert.equal(upstream.requests.length, calls);
  });

  for (const [status, code] of [
    [409, 'OperationAborted'],
    [429, 'SlowDown'],
    [502, 'BadGateway'],
    [503, 'SlowDown'],
    [504, 'GatewayTimeout'],
  ] as const) {
    it(`S3 answering ${status} ${code} on GET is a 503 "Service Unavailable"`, async () => {
      s3.inject('GET', { kind: 'status', status, code });
      const answer = await embed(gateway.url, { model: 'text-embedding-3-small', input: `get ${status}` });
      s3.clearFaults();
      assert.equal(answer.status, 503);
      assert.equal(answer.text, 'Service Unavailable');
    });
  }

  it('S3 answering 503 on the PUT after the upstream answered is a 503, and the object is not there', async () => {
    const body = '{"model": "text-embedding-3-small", "input": "put fails"}';
    s3.inject('PUT', { kind: 'status', status: 503, code: 'SlowDown' });
    const answer = await embed(gateway.url, body);
    s3.clearFaults();
    assert.equal(answer.status, 503);
    assert.throws(() => boto3Read(s3, body), /NoSuchKey/);
  });

  it('other S3 errors (403 AccessDenied, 500 InternalError) are a 500', async () => {
    s3.inject('GET', { kind: 'status', status: 403, code: 'AccessDenied' });
    const denied = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'denied' });
    s3.inject('GET', { kind: 'status', status: 500, code: 'InternalError' });
    const internal = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'internal' });
    s3.clearFaults();
    assert.equal(denied.status, 500);
    assert.equal(denied.text, 'Internal Server Error');
    assert.equal(internal.status, 500);
  });

  it('a connection S3 drops before answering, or cuts off mid-body, is a 503', async () => {
    s3.inject('GET', { kind: 'drop' });
    const dropped = await embed(gateway.url, { model: 'text-embedding-3-small', input: 'dropped' });
    assert.equal(dropped.status, 503);
    assert.equal(dropped.text, 'Service Unavailable');

    const body = '{"model": "text-embedding-3-small", "input": "cut body", "dimensions": 64}';
    assert.equal((await embed(gateway.url, body)).status, 200);
    s3.inject('GET', { kind: 'cut-body' });
    const cut = await embed(gateway.url, body);
    s3.clearFaults();
    assert.equal(cut.status, 503);
  });

  it('/readyz checks the bucket: 200 when it answers, 503 when S3 is unreachable', async () => {
    const ready = await call(gateway.url, { method: 'GET', path: '/readyz' });
    assert.equal(ready.status, 200);
    s3.inject('HEAD', { kind: 'drop' });
    const notReady = await call(gateway.url, { method: 'GET', path: '/readyz' });
    s3.clearFaults();
    assert.equal(notReady.status, 503);
    assert.match(notReady.text, /s3 store cannot serve/);
  });

  it('with retries allowed, one transient 503 from S3 is retried and the client gets 200', async () => {
    const retrying = await startTestGateway(upstream.baseUrl, [
      '--store',
      's3',
      '--s3-endpoint-url',
      s3.endpoint,
      '--s3-max-attempts',
      '3',
    ]);
    try {
      s3.inject('GET', { kind: 'status', status: 503, code: 'SlowDown' });
      const answer = await embed(retrying.url, { model: 'text-embedding-3-small', input: 'retry once' });
      s3.clearFaults();
      assert.equal(answer.status, 200, answer.text);
    } finally {
      await retrying.stop();
    }
  });

  /** A gateway on this S3 that gives up after one attempt of 300 ms. */
  const startImpatientGateway = () =>
    startTestGateway(upstream.baseUrl, [
      '--store',
      's3',
      '--s3-endpoint-url',
      s3.endpoint,
      '--s3-max-attempts',
      '1',
      '--s3-timeout',
      '300ms',
    ]);

  it('S3 that hangs mid-GET is a 503 within --s3-timeout, and serves again once it is back', async () => {
    const impatient = await startImpatientGateway();
    const body = '{"model": "text-embedding-3-small", "input": "s3 pauses on get"}';
    try {
      assert.equal((await embed(impatient.url, body)).status, 200);
      s3.pause();
      const started = performance.now();
      const answer = await embed(impatient.url, body).finally(() => s3.resume());
      assert.equal(answer.status, 503);
      assert.ok(performance.now() - started < 5000);
      const calls = upstream.requests.length;
      assert.equal((await embed(impatient.url, body)).status, 200);
      assert.equal(upstream.requests.length, calls, 'a hit again once S3 is back');
    } finally {
      await impatient.stop();
    }
  });

  it('S3 that hangs mid-PUT is a 503; once back, the object is whole or absent, never partial', async () => {
    const impatient = await startImpatientGateway();
    const body = '{"model": "text-embedding-3-small", "input": "s3 pauses on put", "dimensions": 512}';
    try {
      upstream.delayMs = 200;
      const seen = upstream.requests.length;
      const pending = embed(impatient.url, body);
      await waitFor('the upstream call', () => upstream.requests.length > seen);
      s3.pause();
      const answer = await pending.finally(() => s3.resume());
      upstream.delayMs = 0;
      assert.equal(answer.status, 503);
      // The PUT s3rver had received completes once it runs again: whole, as boto3 reads it.
      let stored: string | undefined;
      try {
        stored = boto3Read(s3, body).text;
      } catch (error) {
        assert.match(String((error as { stderr?: unknown }).stderr ?? error), /NoSuchKey/);
      }
      const retried = await embed(impatient.url, body);
      assert.equal(retried.status, 200);
      if (stored !== undefined) assert.deepEqual(JSON.parse(stored), retried.json());
      assert.deepEqual(JSON.parse(boto3Read(s3, body).text), retried.json());
    } finally {
      upstream.delayMs = 0;
      await impatient.stop();
    }
  });

  it('a bucket that does not exist is a 500 (only NoSuchKey is a miss)', async () => {
    const wrong = await startTestGateway(upstream.baseUrl, ['--s3-max-attempts', '1'], {
      S3_ENDPOINT_URL: s3.endpoint,
      S3_BUCKET: 'no-such-bucket',
    });
    try {
      const calls = upstream.requests.length;
      const answer = await embed(wrong.url, { model: 'text-embedding-3-small', input: 'no bucket' });
      assert.equal(answer.status, 500);
      assert.equal(upstream.requests.length, calls);
    } finally {
      await wrong.stop();
    }
  });
});
