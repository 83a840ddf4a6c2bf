// Errors a person can act on. Callers branch on `code`, never on the message.

/** Base class: a stable machine-readable code and a message that says what to do. */
export class SeahorseError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The command line or environment is wrong: the process exits with status 2. */
export class UsageError extends SeahorseError {
  constructor(message: string) {
    super('SEAHORSE_USAGE', message);
  }
}

/** The process could not start (port in use, unreadable file): exits with status 1. */
export class StartupError extends SeahorseError {
  constructor(message: string, options?: ErrorOptions) {
    super('SEAHORSE_STARTUP', message, options);
  }
}
