// The original's bucket through @aws-sdk/client-s3: the same keys, gzip bodies with
// `Content-Encoding: gzip` and `Content-Type: application/json`. The SDK hands the body over
// as sent (Node's HTTP client does not decompress), and we gunzip it ourselves.
import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { GetObjectCommand, HeadBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CorruptObjectError, GatewayError, StoreError, StoreUnavailableError } from '../errors.ts';
import { isPyObject, type PyValue, parsePythonJsonBytes } from '../python-json.ts';
import { assertSafeKey, decodeObject, type ObjectStore } from './store.ts';

export interface S3StoreOptions {
  bucket: string;
  /** `S3_ENDPOINT_URL` (MinIO and the like); the AWS endpoint for the region when absent. */
  endpoint?: string;
  region: string;
  /** Path-style addressing (`endpoint/bucket/key`), which MinIO and s3rver need. */
  forcePathStyle: boolean;
  /** Attempts per call including the first, with the SDK's backoff between them. */
  maxAttempts: number;
  /** Per-attempt limits; a timeout is a connection error (503). */
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  /** HTTP_PROXY, HTTPS_PROXY, NO_PROXY, honoured as botocore honours them. */
  proxyEnv?: NodeJS.ProcessEnv;
}

/** User metadata (`x-amz-meta-sha256`) we write beside each object: the hex SHA-256 of its bytes. */
const sha256Metadata = 'sha256';

/** The statuses the original turns into 503 (its mesh retries them). */
const retryableStatuses = new Set([409, 429, 502, 503, 504]);
const connectionErrorCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** Maps an SDK failure onto the original's contract: 503 for retryable ones, 500 otherwise. */
export function classifyS3Error(action: string, error: unknown): Error {
  const e = error as SdkError;
  const status = e.$metadata?.httpStatusCode;
  const message = `s3 store: ${action} failed: ${e.name ?? 'Error'}${status ? ` (${status})` : ''}: ${e.message ?? ''}`;
  if (status !== undefined && retryableStatuses.has(status)) {
    return new StoreUnavailableError(message, { cause: error });
  }
  const networkLevel =
    (e.code !== undefined && connectionErrorCodes.has(e.code)) ||
    e.name === 'TimeoutError' ||
    e.name === 'RequestTimeout' ||
    /socket hang up|ECONNRESET|ECONNREFUSED|aborted|premature close/i.test(e.message ?? '');
  if (networkLevel && (status === undefined || status < 400 || status === 200)) {
    return new StoreUnavailableError(message, { cause: error });
  }
  return new StoreError(message, { cause: error });
}

function assertJsonObject(key: string, json: Buffer): void {
  // Python's reader: the original's json.dumps writes NaN and Infinity, which JSON.parse refuses.
  let parsed: PyValue;
  try {
    parsed = parsePythonJsonBytes(json);
  } catch (error) {
    throw new CorruptObjectError(`object ${key} is not JSON: ${(error as Error).message}`, { cause: error });
  }
  if (!isPyObject(parsed)) {
    throw new CorruptObjectError(`object ${key} is JSON but not an object`);
  }
}

export class S3Store implements ObjectStore {
  readonly kind = 's3';
  readonly bucket: string;
  readonly client: S3Client;

  constructor(options: S3StoreOptions) {
    this.bucket = options.bucket;
    const agentOptions = { keepAlive: true, maxSockets: 256, proxyEnv: options.proxyEnv ?? {} };
    this.client = new S3Client({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle,
      maxAttempts: options.maxAttempts,
      requestHandler: {
        httpAgent: new HttpAgent(agentOptions),
        httpsAgent: new HttpsAgent(agentOptions),
        connectionTimeout: options.connectTimeoutMs,
        requestTimeout: options.requestTimeoutMs,
        // Without it the SDK only logs a warning when the time is up and waits on: an S3 that
        // hangs would hang every request behind it instead of answering 503.
        throwOnRequestTimeout: true,
      },
      // Checksums on every PUT and GET are newer than the original's boto3 and than some
      // S3-compatible servers; only ask for them where the service requires them.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer | undefined> {
    assertSafeKey(key);
    try {
      const answer = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
        abortSignal: signal,
      });
      if (!answer.Body) throw new StoreError(`s3 store: object ${key} came without a body`);
      const gzipped = Buffer.from(await answer.Body.transformToByteArray());
      // Any writer may have put a corrupt object in a shared bucket, and gzip clients get objects
      // as they are: check each one before it is served. Ours carry the SHA-256 of their bytes;
      // the original's do not, and must be whole gzip (CRC and length) of a JSON object. A
      // corrupt object is never served: the caller fetches the answer again and replaces it.
      const expected = answer.Metadata?.[sha256Metadata];
      if (expected !== undefined && createHash('sha256').update(gzipped).digest('hex') !== expected) {
        throw new CorruptObjectError(`object ${key} does not match the SHA-256 written with it`);
      }
      const json = await decodeObject(key, gzipped);
      if (expected === undefined) assertJsonObject(key, json);
      return gzipped;
    } catch (error) {
      if ((error as SdkError).name === 'NoSuchKey') return undefined;
      if (error instanceof GatewayError) throw error;
      throw classifyS3Error(`reading ${key}`, error);
    }
  }

  async put(key: string, gzipped: Buffer): Promise<void> {
    assertSafeKey(key);
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: gzipped,
          ContentEncoding: 'gzip',
          ContentType: 'application/json',
          Metadata: { [sha256Metadata]: createHash('sha256').update(gzipped).digest('hex') },
        }),
      );
    } catch (error) {
      throw classifyS3Error(`writing ${key}`, error);
    }
  }

  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      throw classifyS3Error(`checking bucket ${this.bucket}`, error);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
