// Where answers live: the original's objects, gzip-compressed JSON under `digest[:4]/digest`.
import { gunzipSync, gzipSync } from 'node:zlib';
import { CorruptObjectError, StoreError } from '../errors.ts';

export interface ObjectStore {
  /** `filesystem` or `s3`, for logs and metrics. */
  readonly kind: string;
  /** The object's stored bytes (gzip), or undefined when there is none (only NoSuchKey). */
  get(key: string, signal?: AbortSignal): Promise<Buffer | undefined>;
  /** Writes the whole object or nothing: readers never see a partial object. */
  put(key: string, gzipped: Buffer): Promise<void>;
  /** Throws when the store cannot serve (readiness). */
  check(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The object body as the original writes it: `gzip(json.dumps(answer))`. Level 1, not the
 * original's 9: any gzip reader takes either, and on answers of floats level 9 costs about
 * eight times the CPU for some 9% fewer bytes.
 */
export function encodeObject(json: string | Buffer): Promise<Buffer> {
  // Synchronous: at level 1 an answer of 1,536 floats costs about 0.16 ms of CPU, where the
  // thread-pool form costs 0.5 ms in all (measured with process.cpuUsage).
  return Promise.resolve(gzipSync(json, { level: 1 }));
}

/** The JSON inside an object; one that is not whole gzip (CRC and length included) is corrupt. */
export async function decodeObject(key: string, gzipped: Buffer): Promise<Buffer> {
  try {
    return gunzipSync(gzipped);
  } catch (error) {
    throw new CorruptObjectError(`object ${key} is not gzip-compressed JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** Keys are ours (hex digests, optionally under a prefix); anything else is a bug, never a path. */
export function assertSafeKey(key: string): void {
  if (!/^(?:[a-z-]+\/)?[0-9a-f]{4}\/[0-9a-f]{64}$/.test(key)) {
    throw new StoreError(`refusing the malformed object key '${key}'`);
  }
}
