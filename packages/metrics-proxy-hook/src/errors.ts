// Failures of the sidecar's requests to the application, with stable codes (callers branch on
// `code`, people read the message).
import { SeahorseError } from '@seahorse/runtime';

/** The application took longer than --target-timeout to answer (or to finish its body). */
export class TargetTimeoutError extends SeahorseError {
  readonly timeoutMs: number;
  constructor(timeoutMs: number) {
    super('METRICS_PROXY_TARGET_TIMEOUT', `timed out after ${timeoutMs} ms (--target-timeout)`);
    this.timeoutMs = timeoutMs;
  }
}

/** The webhook's lease endpoint cannot be reached or cannot decide now (503): retried. */
export class LeaseUnavailableError extends SeahorseError {
  constructor(message: string, options?: ErrorOptions) {
    super('METRICS_PROXY_LEASE_UNAVAILABLE', message, options);
  }
}

/** The webhook refused a lease request (bad token, another slot, a malformed request). */
export class LeaseRefusedError extends SeahorseError {
  readonly status: number;
  constructor(status: number, message: string) {
    super('METRICS_PROXY_LEASE_REFUSED', message);
    this.status = status;
  }
}
