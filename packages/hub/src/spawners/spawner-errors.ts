// Errors of the spawners: each says what went wrong and what to change. Callers branch on `code`.
import { SeahorseError } from '@seahorse/runtime';

/** A template (`Spawner.environment`, `notebook_dir`, `default_url`, ...) names an unknown field. */
export class TemplateError extends SeahorseError {
  constructor(message: string) {
    super('HUB_TEMPLATE', message);
  }
}

/** The spawner's command is not on PATH or may not be executed. */
export class SpawnCommandError extends SeahorseError {
  readonly command: string;
  constructor(command: string, reason: string, options?: ErrorOptions) {
    super(
      'HUB_SPAWN_COMMAND',
      `could not run ${JSON.stringify(command)}: ${reason}; set Spawner.cmd to a command installed on the hub's machine (JupyterHub's default is jupyterhub-singleuser)`,
      options,
    );
    this.command = command;
  }
}

/** The server's process exited while it was starting. */
export class SpawnExitedError extends SeahorseError {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly lastLines: string[];
  constructor(exitCode: number | null, signal: string | null, lastLines: string[]) {
    const how = signal ? `was killed by ${signal}` : `exited with code ${exitCode}`;
    const tail = lastLines.length > 0 ? `; its last output:\n${lastLines.join('\n')}` : ' without output';
    super('HUB_SPAWN_EXITED', `the server ${how} before it answered HTTP${tail}`);
    this.exitCode = exitCode;
    this.signal = signal;
    this.lastLines = lastLines;
  }
}

/** The server did not answer HTTP within Spawner.http_timeout, or did not start within start_timeout. */
export class SpawnTimeoutError extends SeahorseError {
  readonly timeout: 'http_timeout' | 'start_timeout';
  constructor(timeout: 'http_timeout' | 'start_timeout', seconds: number, url: string, lastLines: string[]) {
    const what =
      timeout === 'http_timeout'
        ? `the server did not answer HTTP at ${url} within Spawner.http_timeout (${seconds} s)`
        : `the server did not start within Spawner.start_timeout (${seconds} s)`;
    const tail = lastLines.length > 0 ? `; its last output:\n${lastLines.join('\n')}` : '';
    super(
      'HUB_SPAWN_TIMEOUT',
      `${what}: check the server's output for a crash or a configuration problem, or raise Spawner.${timeout}${tail}`,
    );
    this.timeout = timeout;
  }
}

/** start() was called on a spawner whose server is already running or being started. */
export class SpawnStateError extends SeahorseError {
  constructor(message: string) {
    super('HUB_SPAWN_STATE', message);
  }
}
