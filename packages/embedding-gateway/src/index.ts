export { cacheKey, canonicalRequest, objectKeyForDigest, requestDigest } from './cache-key.ts';
export { type EmbeddingsOptions, EmbeddingsService } from './embeddings.ts';
export * from './errors.ts';
export { MemoryCache } from './memory-cache.ts';
export { buildOptions, flagSpecs, type GatewayOptions, type StoreOptions } from './options.ts';
export {
  dumpPythonJson,
  formatPythonFloat,
  PyNumber,
  type PyObject,
  type PyValue,
  parsePythonJson,
  parsePythonJsonBytes,
} from './python-json.ts';
export { type Gateway, startGateway } from './server.ts';
export { FilesystemStore } from './store/filesystem.ts';
export { S3Store, type S3StoreOptions } from './store/s3.ts';
export { decodeObject, encodeObject, type ObjectStore } from './store/store.ts';
export { UpstreamClient } from './upstream.ts';
