// Every failure the proxy reports, one class each with a stable code (undici's errors.js is the
// model): callers branch on `code` or the class, never on a message.
import { SeahorseError } from '@seahorse/runtime';

/** Base of the proxy's errors. */
export class ProxyError extends SeahorseError {}

/** A route written through the API is unusable (`CHP_BAD_TARGET`, `CHP_BAD_PATH`). */
export class RouteError extends ProxyError {}

/** A request path that cannot be decoded (invalid percent-encoding): the client gets 400. */
export class BadRequestPath extends ProxyError {
  constructor(message: string) {
    super('CHP_BAD_REQUEST_PATH', message);
  }
}

/** An exchange with a target failed; `status` is what the client is answered. */
export class TargetError extends ProxyError {
  readonly status: number;
  constructor(code: string, status: number, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.status = status;
  }
}

/** The target could not be reached (refused, reset, TLS failure); `errno` names the cause. */
export class TargetConnectError extends TargetError {
  readonly errno: string | undefined;
  constructor(cause: Error) {
    super('CHP_TARGET_CONNECT', 503, `connecting to or talking with the target failed: ${cause.message}`, {
      cause,
    });
    this.errno = (cause as NodeJS.ErrnoException).code;
  }
}

/** The target closed the connection before its response ended. */
export class TargetClosedError extends TargetError {
  constructor() {
    super('CHP_TARGET_CLOSED', 503, 'the target closed the connection before the response ended');
  }
}

/** The target's response broke HTTP/1.1 (RFC 9112); nothing of it was relayed. */
export class TargetResponseError extends TargetError {
  /** llhttp's name for the same failure, where there is one (`HPE_INVALID_CHUNK_SIZE`). */
  readonly reason: string;
  constructor(reason: string, message: string) {
    super('CHP_TARGET_BAD_RESPONSE', 502, `the target sent ${message}`);
    this.reason = reason;
  }
}

/** No response head within `--proxy-headers-timeout`. */
export class TargetHeadersTimeoutError extends TargetError {
  constructor(ms: number) {
    super('CHP_TARGET_HEADERS_TIMEOUT', 504, `the target sent no response head within ${ms} ms`);
  }
}

/** No response body bytes within `--proxy-body-timeout`. */
export class TargetBodyTimeoutError extends TargetError {
  constructor(ms: number) {
    super('CHP_TARGET_BODY_TIMEOUT', 504, `the target sent no body bytes for ${ms} ms`);
  }
}

/** Nothing moved either way for `--proxy-timeout` (CHP's idle timeout over the exchange). */
export class TargetIdleTimeoutError extends TargetError {
  constructor(ms: number) {
    super('CHP_TARGET_IDLE_TIMEOUT', 504, `nothing was sent or received for ${ms} ms (--proxy-timeout)`);
  }
}

/** The route store cannot take writes right now (its Redis is unreachable): the API answers 503. */
export class StoreUnavailableError extends ProxyError {
  constructor(message: string) {
    super('CHP_STORE_UNAVAILABLE', message);
  }
}
