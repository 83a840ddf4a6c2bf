// Failures of the hub, one class each with a stable code; callers branch on `code`.
import { SeahorseError } from '@seahorse/runtime';

/** The configuration file is wrong: an unknown key, a wrong type, a missing secret. */
export class ConfigError extends SeahorseError {
  constructor(message: string) {
    super('HUB_CONFIG', message);
  }
}

/** The database could not be opened or migrated. */
export class DatabaseError extends SeahorseError {
  constructor(message: string, options?: ErrorOptions) {
    super('HUB_DATABASE', message, options);
  }
}

/** The database did not answer (down, restarting, unreachable): a 503, not a 500. */
export class DatabaseUnavailableError extends SeahorseError {
  constructor(message: string, options?: ErrorOptions) {
    super('HUB_DATABASE_UNAVAILABLE', message, options);
  }
}

/** An API request failed with a status and JupyterHub's message; becomes {"status", "message"}. */
export class HttpError extends SeahorseError {
  readonly status: number;
  readonly headers: Record<string, string> | undefined;
  constructor(status: number, message: string, headers?: Record<string, string>) {
    super('HUB_HTTP', message);
    this.status = status;
    this.headers = headers;
  }
}

/** A server failed to start; the message is what the API and the progress stream show. */
export class SpawnError extends SeahorseError {
  constructor(message: string, options?: ErrorOptions) {
    super('HUB_SPAWN', message, options);
  }
}

/** The proxy's REST API refused or did not answer. */
export class ProxyError extends SeahorseError {
  constructor(message: string, options?: ErrorOptions) {
    super('HUB_PROXY', message, options);
  }
}
