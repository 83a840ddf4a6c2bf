// Every failure the gateway can meet, one class each; the server maps them to the original's
// answers by `code`: retryable ones to 503 "Service Unavailable" (the mesh retries those).
import { SeahorseError } from '@seahorse/runtime';

/** Base class: `retryable` failures answer 503, the others 500, unless a subclass says more. */
export class GatewayError extends SeahorseError {
  readonly retryable: boolean;
  constructor(code: string, message: string, retryable: boolean, options?: ErrorOptions) {
    super(code, message, options);
    this.retryable = retryable;
  }
}

/** S3 answered 409/429/502/503/504, or could not be reached; the original answers 503. */
export class StoreUnavailableError extends GatewayError {
  constructor(message: string, options?: ErrorOptions) {
    super('EMBEDDING_GATEWAY_STORE_UNAVAILABLE', message, true, options);
  }
}

/** Any other store failure (403, NoSuchBucket, a corrupt object): 500. */
export class StoreError extends GatewayError {
  constructor(message: string, options?: ErrorOptions) {
    super('EMBEDDING_GATEWAY_STORE', message, false, options);
  }
}

/**
 * A stored object that fails its checks (not gzip, a CRC or length mismatch, a SHA-256 that is
 * not the one written beside it, not JSON): never served; the request is answered as a miss and
 * the object replaced.
 */
export class CorruptObjectError extends GatewayError {
  constructor(message: string, options?: ErrorOptions) {
    super('EMBEDDING_GATEWAY_CORRUPT_OBJECT', message, false, options);
  }
}

/** The upstream refused the connection, reset it, or did not answer in time: 503. */
export class UpstreamUnavailableError extends GatewayError {
  constructor(message: string, options?: ErrorOptions) {
    super('EMBEDDING_GATEWAY_UPSTREAM_UNAVAILABLE', message, true, options);
  }
}

/** The upstream did not answer within --upstream-timeout: 503, as the original's aiohttp timeout. */
export class UpstreamTimeoutError extends GatewayError {
  constructor(timeoutMs: number) {
    super(
      'EMBEDDING_GATEWAY_UPSTREAM_TIMEOUT',
      `the upstream did not answer within ${timeoutMs} ms (--upstream-timeout)`,
      true,
    );
  }
}

/** The upstream answered a status other than 200: passed on with `{"detail": "<phrase>"}`. */
export class UpstreamStatusError extends GatewayError {
  readonly status: number;
  constructor(status: number) {
    super('EMBEDDING_GATEWAY_UPSTREAM_STATUS', `the upstream answered ${status}`, false);
    this.status = status;
  }
}

/** The upstream answered 200 with a body that is not an embeddings answer: 500. */
export class UpstreamResponseError extends GatewayError {
  constructor(message: string, options?: ErrorOptions) {
    super('EMBEDDING_GATEWAY_UPSTREAM_RESPONSE', message, false, options);
  }
}

/** The client went away; its upstream call was cancelled and nothing was stored. */
export class ClientGoneError extends GatewayError {
  constructor() {
    super('EMBEDDING_GATEWAY_CLIENT_GONE', 'the client closed the connection', false);
  }
}

/** A request the gateway refuses before any work: answered with `status` and `{"detail": ...}`. */
export class RequestRejectedError extends GatewayError {
  readonly status: number;
  readonly detail: unknown;
  constructor(status: number, detail: unknown, message = String(detail)) {
    super('EMBEDDING_GATEWAY_REQUEST_REJECTED', message, false);
    this.status = status;
    this.detail = detail;
  }
}
