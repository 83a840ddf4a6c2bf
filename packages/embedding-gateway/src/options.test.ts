import assert from 'node:assert/strict';
import { it } from 'node:test';
import { parseFlags } from '@seahorse/runtime';
import { buildOptions, flagSpecs, parseSize } from './options.ts';

const build = (argv: string[], env: NodeJS.ProcessEnv = {}) =>
  buildOptions(parseFlags(flagSpecs, argv, env), env);

it("defaults are the original's: 127.0.0.1:8080, bucket embedding-gateway, api.openai.com, 300 s upstream timeout", () => {
  const options = build([]);
  assert.equal(options.host, '127.0.0.1');
  assert.equal(options.port, 8080);
  assert.equal(options.upstream.baseUrl, 'https://api.openai.com/v1');
  assert.equal(options.upstream.timeoutMs, 300_000);
  assert.equal(options.idleTimeoutMs, 86_400_000);
  assert.equal(options.terminationGracePeriodMs, 10_000);
  assert.equal(options.store.kind, 'filesystem');
  assert.equal(options.embeddings.coalesceMisses, false);
  assert.equal(options.embeddings.perInputCache, false);
  assert.equal(options.memoryCacheBytes, 0);
});

it('S3_ENDPOINT_URL, its alias S3_ENDPOINT, or S3_BUCKET select the S3 store; --store wins', () => {
  const viaUrl = build([], { S3_ENDPOINT_URL: 'http://minio:9000' });
  assert.equal(viaUrl.store.kind, 's3');
  assert.equal(viaUrl.store.kind === 's3' && viaUrl.store.endpoint, 'http://minio:9000');
  assert.equal(viaUrl.store.kind === 's3' && viaUrl.store.forcePathStyle, true);
  assert.equal(viaUrl.store.kind === 's3' && viaUrl.store.bucket, 'embedding-gateway');
  const viaAlias = build([], { S3_ENDPOINT: 'http://minio:9000' });
  assert.equal(viaAlias.store.kind === 's3' && viaAlias.store.endpoint, 'http://minio:9000');
  const viaBucket = build([], { S3_BUCKET: 'answers', AWS_DEFAULT_REGION: 'eu-west-1' });
  assert.equal(viaBucket.store.kind === 's3' && viaBucket.store.region, 'eu-west-1');
  assert.equal(viaBucket.store.kind === 's3' && viaBucket.store.forcePathStyle, false);
  assert.equal(build(['--store', 'filesystem'], { S3_BUCKET: 'answers' }).store.kind, 'filesystem');
});

it("LOG_LEVEL takes Python's level names", () => {
  assert.equal(build([], { LOG_LEVEL: 'warning' }).logLevel, 'warn');
  assert.equal(build([], { LOG_LEVEL: 'CRITICAL' }).logLevel, 'error');
});

it('sizes take binary units and reject anything else with the flag named', () => {
  assert.equal(parseSize('64kb', 'x'), 65536);
  assert.equal(parseSize('1.5mb', 'x'), 1572864);
  assert.equal(parseSize('0', 'x'), 0);
  assert.throws(() => build(['--memory-cache-size', 'lots']), /--memory-cache-size expects a size/);
  assert.throws(() => build(['--openai-base-url', 'ftp://x']), /OPENAI_BASE_URL/);
});
