// The original's object key: `sha256(json.dumps(body, sort_keys=True).encode())`, stored as
// `digest[:4]/digest`. Computed from the request's own tokens (see python-json.ts), never from
// JSON.parse, so a replacement finds every answer the original put in the bucket.
import { createHash } from 'node:crypto';
import { dumpPythonJson, type PyObject, type PyValue } from './python-json.ts';

/** `json.dumps(body, sort_keys=True)`, Python's default separators and `ensure_ascii`. */
export function canonicalRequest(body: PyValue): string {
  return dumpPythonJson(body, { sortKeys: true });
}

/** The hex SHA-256 the original computes for a request body. */
export function requestDigest(body: PyObject): string {
  return createHash('sha256').update(canonicalRequest(body), 'utf8').digest('hex');
}

/** `digest[:4]/digest`: the object key in the bucket (and the path under the filesystem store). */
export function objectKeyForDigest(digest: string): string {
  return `${digest.slice(0, 4)}/${digest}`;
}

export function cacheKey(body: PyObject): string {
  return objectKeyForDigest(requestDigest(body));
}
