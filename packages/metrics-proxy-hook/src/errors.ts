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
