// The embedded default spawner: the user's server as a local process (JupyterHub's
// LocalProcessSpawner, without switching OS users). It runs Spawner.cmd + Spawner.args on a free
// port in a process group of its own, with JupyterHub's environment (the server learns its
// address from JUPYTERHUB_SERVICE_URL, as JupyterHub 2+ passes no --port/--ip), waits until HTTP
// answers at <url><service prefix> as JupyterHub's wait_up does, and stops the whole group.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from '@seahorse/runtime';
import { hostUrl, serverEnvironment } from './environment.ts';
import { OutputTail } from './output-tail.ts';
import {
  descendants,
  exitStatus,
  groupLeaderWritingTo,
  groupMembers,
  killProcess,
  leadsGroup,
  type ProcessId,
  processAlive,
  processStartTime,
  signalGroup,
} from './processes.ts';
import type { JsonObject, Spawner, SpawnerContext, SpawnerFactory } from './spawner.ts';
import { SpawnCommandError, SpawnExitedError, SpawnStateError, SpawnTimeoutError } from './spawner-errors.ts';
import { escapeName, formatTemplate, templateNamespace } from './templating.ts';

export interface LocalProcessOptions {
  /** Spawner.cmd: the command and its first arguments. */
  cmd: string[];
  /** Spawner.args: appended to cmd. */
  args: string[];
  /** Spawner.environment: templates ({username}, ...), set last. */
  environment: Record<string, string>;
  /** Spawner.start_timeout: the whole start, from spawn to HTTP answering. */
  startTimeoutMs: number;
  /** Spawner.http_timeout: from the process running to HTTP answering. */
  httpTimeoutMs: number;
  /** Spawner.poll_interval: how often the hub calls poll(); the spawner itself does not poll. */
  pollIntervalMs: number;
  /** Spawner.default_url (a template); JUPYTERHUB_DEFAULT_URL. */
  defaultUrl?: string;
  /** Spawner.notebook_dir (a template); JUPYTERHUB_ROOT_DIR, created if missing and the server's cwd. */
  notebookDir?: string;
  /** Spawner.ip: where the server listens. */
  ip: string;
  /** Spawner.port: 0 (default) picks a free port per start. */
  port?: number;
  /** Spawner.env_keep; JupyterHub's list by default. */
  envKeep?: string[];
  /** LocalProcessSpawner.term_timeout: grace after SIGTERM before SIGKILL (5 s by default). */
  termTimeoutMs?: number;
  /** LocalProcessSpawner.kill_timeout: how long to wait after SIGKILL (5 s by default). */
  killTimeoutMs?: number;
  /** Spawner.debug: JUPYTERHUB_DEBUG=1. */
  debug?: boolean;
  /**
   * Where each server's output file lives (created mode 700; one file per start, removed once
   * the server is gone and the file read): <tmpdir>/seahorse-hub-servers by default. A file, not
   * a pipe, so servers outlive a hub restart and the next hub follows their output again.
   */
  outputDir?: string;
}

/** JupyterHub's defaults for the Spawner traits above. */
export const defaultLocalProcessOptions: LocalProcessOptions = {
  cmd: ['jupyterhub-singleuser'],
  args: [],
  environment: {},
  startTimeoutMs: 60_000,
  httpTimeoutMs: 30_000,
  pollIntervalMs: 30_000,
  ip: '127.0.0.1',
};

/** What the hub persists to re-attach after a restart. */
export interface LocalProcessState {
  pid: number;
  port: number;
  url: string;
  /** /proc start time of the process, so a PID reused by another process is not mistaken for it. */
  started?: number;
  /** The file the server writes its output to. */
  output?: string;
}

const keptLines = 20;

/**
 * The output files this hub process follows, one follower per running server however many
 * spawner objects name it (the hub may build one from saved state for each poll): bounded by
 * the servers alive, each closed when its server is found gone or stopped.
 */
const followers = new Map<string, OutputTail>();

function unfollow(path: string): void {
  followers.get(path)?.close();
  followers.delete(path);
}

export const createLocalProcessSpawner: SpawnerFactory<LocalProcessOptions> = (context, options) =>
  new LocalProcessSpawner(context, options);

class LocalProcessSpawner implements Spawner {
  readonly #context: SpawnerContext;
  readonly #options: LocalProcessOptions;
  readonly #log: Logger;
  #child: ChildProcess | undefined;
  #childExit: Promise<void> | undefined;
  #pid = 0;
  #port = 0;
  #url = '';
  #started: number | undefined;
  #output: string | undefined;
  #starting = false;
  #stopping = false;
  /** The output file of a start saved before its process was spawned (no PID yet). */
  #launching: string | undefined;
  #lastLines: string[] = [];

  constructor(context: SpawnerContext, options: LocalProcessOptions) {
    this.#context = context;
    this.#options = options;
    this.#log = context.log.child({ user: context.spec.user.name, server: context.spec.serverName });
    const state = context.state;
    if (state && typeof state.pid === 'number' && state.pid > 0) {
      this.#pid = state.pid;
      this.#port = typeof state.port === 'number' ? state.port : 0;
      this.#url = typeof state.url === 'string' ? state.url : '';
      this.#started = typeof state.started === 'number' ? state.started : undefined;
      // Followed from the first poll that finds the server alive: a constructor owns no timer.
      // Only a file of this spawner's own directory: the file is removed once the server is
      // gone, and a state naming another path (forged or from another config) must not make
      // the hub delete it.
      if (this.#ownOutput(state.output)) this.#output = state.output;
    } else if (state && this.#ownOutput(state.output)) {
      // Saved before the process started (its hub may have died right after): the process, if
      // it ever started, is the group leader writing to this file.
      this.#launching = state.output;
      this.#port = typeof state.port === 'number' ? state.port : 0;
      this.#url = typeof state.url === 'string' ? state.url : '';
    }
  }

  /**
   * True for a path this spawner itself gives an output file: a `.log` directly in its output
   * directory. Anything else from a state is not trusted: the group leader writing to another
   * file (a database's log, say) is not a server of ours to adopt and kill.
   */
  #ownOutput(path: unknown): path is string {
    return (
      typeof path === 'string' &&
      path.endsWith('.log') &&
      resolve(path) === path &&
      dirname(path) === resolve(this.#outputDir)
    );
  }

  get #outputDir(): string {
    return this.#options.outputDir ?? join(tmpdir(), 'seahorse-hub-servers');
  }

  /** A process from a start whose PID was never saved, found by its output file; true when found. */
  #adoptLaunched(): boolean {
    const output = this.#launching;
    if (!output || this.#pid) return this.#pid > 0;
    const found = groupLeaderWritingTo(output);
    if (!found) return false;
    this.#pid = found.pid;
    this.#started = found.startTime;
    this.#output = output;
    this.#launching = undefined;
    this.#log.info({ pid: found.pid, output }, 'found the server a start left unrecorded');
    return true;
  }

  get spawnTimeoutMs(): number {
    return this.#options.startTimeoutMs + this.#options.httpTimeoutMs;
  }

  state(): JsonObject {
    const launching = this.#launching;
    if (!this.#pid && launching) return { port: this.#port, url: this.#url, output: launching };
    if (!this.#pid) return {};
    const state: JsonObject = { pid: this.#pid, port: this.#port, url: this.#url };
    if (this.#started !== undefined) state.started = this.#started;
    if (this.#output !== undefined) state.output = this.#output;
    return state;
  }

  async poll(): Promise<number | null> {
    const child = this.#child;
    if (child) {
      if (child.exitCode === null && child.signalCode === null) return null;
      this.#clear();
      return exitStatus(child.exitCode, child.signalCode);
    }
    if (!this.#pid && !this.#adoptLaunched()) return 0;
    if (processAlive(this.#pid, this.#started)) {
      if (this.#output) this.#follow(this.#output, this.#pid, true);
      return null;
    }
    this.#clear();
    return 0;
  }

  async start(): Promise<string> {
    if (this.#starting) throw new SpawnStateError('the server is already starting; wait for it or stop it');
    this.#starting = true;
    try {
      if ((await this.poll()) === null) {
        throw new SpawnStateError(
          `the server is already running (pid ${this.#pid}); stop it before starting it`,
        );
      }
      return await this.#start();
    } finally {
      this.#starting = false;
    }
  }

  async #start(): Promise<string> {
    this.#stopping = false;
    this.#lastLines = [];
    const startedAt = Date.now();
    const deadline = startedAt + this.#options.startTimeoutMs;
    try {
      const port = this.#options.port || (await freePort(this.#options.ip));
      const url = hostUrl(connectHost(this.#options.ip), port);
      this.#port = port;
      this.#url = url;
      const child = await this.#spawn(port);
      const checkUrl = `${url}${this.#context.spec.servicePrefix}`;
      this.#context.progress({
        progress: 50,
        message: `Server process ${child.pid} started; waiting for it to answer at ${checkUrl}`,
      });
      const httpDeadline = Math.min(deadline, Date.now() + this.#options.httpTimeoutMs);
      await this.#waitForHttp(child, checkUrl, httpDeadline, httpDeadline === deadline);
      this.#log.info({ pid: child.pid, url, ms: Date.now() - startedAt }, 'server answered HTTP');
      this.#context.progress({ progress: 90, message: `Server answered HTTP at ${checkUrl}` });
      return url;
    } catch (error) {
      if (this.#pid) await this.#terminate(false);
      this.#clear();
      throw error;
    }
  }

  async stop(now = false): Promise<void> {
    if (!this.#pid && !this.#adoptLaunched()) {
      // Only a file of this spawner's own directory: a state naming another path deletes nothing.
      if (this.#launching && dirname(this.#launching) === this.#outputDir)
        rmSync(this.#launching, { force: true });
      this.#launching = undefined;
      return;
    }
    this.#stopping = true;
    await this.#terminate(now);
  }

  /** Runs the command in a new session (its own process group); resolves once it is running. */
  async #spawn(port: number): Promise<ChildProcess> {
    const { spec } = this.#context;
    const options = this.#options;
    const env = serverEnvironment(spec, {
      ip: options.ip,
      port,
      environment: options.environment,
      envKeep: options.envKeep,
      defaultUrl: options.defaultUrl,
      notebookDir: options.notebookDir,
      debug: options.debug,
    });
    let cwd: string | undefined;
    if (options.notebookDir) {
      const namespace = templateNamespace({ user: spec.user, serverName: spec.serverName });
      cwd = expandHome(formatTemplate(options.notebookDir, namespace));
      mkdirSync(cwd, { recursive: true, mode: 0o700 });
    }
    const [command, ...cmdArgs] = options.cmd;
    if (!command) throw new SpawnCommandError('', 'Spawner.cmd is empty');
    const args = [...cmdArgs, ...options.args];
    const outputDir = this.#outputDir;
    mkdirSync(outputDir, { recursive: true, mode: 0o700 });
    // Escaped names hold no '--' and never end in '-', so '<user>--<server>' names one server;
    // the random part keeps two hubs sharing the directory apart.
    const server = spec.serverName ? `--${escapeName(spec.serverName)}` : '';
    const unique = randomBytes(6).toString('hex');
    const output = join(outputDir, `${escapeName(spec.user.name)}${server}.${unique}.log`);
    this.#context.progress({ progress: 20, message: `Starting ${command} on port ${port}` });
    const outputFd = openSync(output, 'w', 0o600);
    this.#output = output;
    // Saved before the process exists: should this hub die right after the spawn, the replica
    // taking over finds the process by its output file (its PID would be lost).
    this.#launching = output;
    try {
      await this.#context.persist?.();
    } catch (error) {
      closeSync(outputFd);
      throw error;
    }
    this.#log.info({ command, args, port, cwd, output }, 'starting server');
    const child = spawn(command, args, { env, cwd, detached: true, stdio: ['ignore', outputFd, outputFd] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const reason =
        code === 'ENOENT'
          ? 'command not found on PATH'
          : code === 'EACCES'
            ? 'permission denied (is it executable by the hub?)'
            : (error as Error).message;
      throw new SpawnCommandError(command, reason, { cause: error });
    } finally {
      closeSync(outputFd);
    }
    // Later errors (a failed kill) must not crash the hub; exit is what we track.
    child.on('error', (error) => this.#log.warn({ err: error, pid: child.pid }, 'server process error'));
    this.#child = child;
    this.#pid = child.pid!;
    this.#launching = undefined;
    this.#started = processStartTime(this.#pid);
    this.#follow(output, this.#pid, false);
    this.#childExit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#log.info({ pid: child.pid, code, signal }, 'server process exited');
        unfollow(output);
        resolve();
      });
    });
    return child;
  }

  /** Each output line goes to the hub's log with the user and server; the last few are kept for errors. */
  #follow(path: string, pid: number, fromEnd: boolean): void {
    if (followers.has(path)) return;
    const onLine = (line: string) => {
      this.#lastLines.push(line);
      if (this.#lastLines.length > keptLines) this.#lastLines.shift();
      this.#log.info({ pid, line }, 'server output');
    };
    try {
      followers.set(path, new OutputTail(path, { fromEnd, onLine }));
    } catch (error) {
      this.#log.warn({ err: error, output: path }, 'cannot follow the server output');
    }
  }

  /**
   * Polls `url` until it answers with a status below 500 (any, even 404 or a redirect, as
   * JupyterHub's wait_for_http_server accepts), the process exits, or the deadline passes.
   */
  async #waitForHttp(
    child: ChildProcess,
    url: string,
    deadline: number,
    isStartDeadline: boolean,
  ): Promise<void> {
    let exited = false;
    const onExit = () => {
      exited = true;
    };
    child.once('exit', onExit);
    // A refused connect on loopback costs microseconds; a coarse poll costs the user up to its
    // interval of waiting (with 50 ms growing by 1.5 to 1 s, a server that is up after 1.1 s was
    // seen at 2.0 s). Every 20 ms for the first 30 s, then slower.
    const pollStart = Date.now();
    let interval = 20;
    let lastProblem = '';
    try {
      for (;;) {
        if (exited || child.exitCode !== null || child.signalCode !== null) {
          // The last lines explain the exit.
          this.#readOutput();
          if (this.#stopping) throw new SpawnStateError('the server was stopped while it was starting');
          throw new SpawnExitedError(child.exitCode, child.signalCode, [...this.#lastLines]);
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          this.#readOutput();
          const lines = [...this.#lastLines];
          if (isStartDeadline) {
            throw new SpawnTimeoutError('start_timeout', this.#options.startTimeoutMs / 1000, url, lines);
          }
          throw new SpawnTimeoutError('http_timeout', this.#options.httpTimeoutMs / 1000, url, lines);
        }
        const status = await httpStatus(url, Math.min(remaining, 5000));
        if (status !== undefined && status < 500) return;
        const problem = status === undefined ? 'no answer' : `status ${status}`;
        if (status !== undefined && problem !== lastProblem) {
          this.#log.warn({ url, status }, 'server answered with an error; waiting');
        }
        lastProblem = problem;
        await delayUnlessExit(child, Math.min(interval, Math.max(0, deadline - Date.now())));
        if (Date.now() - pollStart > 30_000) interval = Math.min(interval * 1.5, 1000);
      }
    } finally {
      child.off('exit', onExit);
    }
  }

  /** SIGTERM to the process group, SIGKILL after the grace (at once when `now`), until none is left. */
  async #terminate(now: boolean): Promise<void> {
    const pgid = this.#pid;
    const termMs = this.#options.termTimeoutMs ?? 5000;
    const killMs = this.#options.killTimeoutMs ?? 5000;
    // A PID from saved state is signalled only while it still names the server and leads the
    // group it was started with: a reused PID or a forged state must not reach other processes.
    if (!this.#child && !(processAlive(pgid, this.#started) && leadsGroup(pgid))) {
      this.#clear();
      return;
    }
    // Every process the server started (kernels run in sessions of their own), noted while the
    // server lives: once it is gone, their parent is init and only this list still names them.
    const tracked = new Map<number, ProcessId>();
    const track = () => {
      if (!this.#leaderAlive()) return;
      for (const id of descendants(pgid)) tracked.set(id.pid, id);
    };
    const leftovers = () => [...tracked.values()].filter((id) => processAlive(id.pid, id.startTime));
    const gone = () => {
      track();
      return groupMembers(pgid).length === 0 && !this.#leaderAlive() && leftovers().length === 0;
    };
    if (!gone()) {
      if (!now) {
        this.#log.info({ pid: pgid }, 'stopping server (SIGTERM)');
        signalGroup(pgid, 'SIGTERM');
        await pollUntil(gone, termMs);
      }
      if (!gone()) {
        const left = leftovers();
        this.#log.warn(
          { pid: pgid, members: groupMembers(pgid), descendants: left.map((id) => id.pid) },
          'killing server (SIGKILL)',
        );
        signalGroup(pgid, 'SIGKILL');
        for (const id of left) killProcess(id);
        await pollUntil(gone, killMs);
        if (!gone()) {
          this.#log.error(
            { pid: pgid, members: groupMembers(pgid), descendants: leftovers().map((id) => id.pid) },
            'server processes never died',
          );
        }
      }
    }
    // Our own child: wait for its exit to be observed so poll() reports its status.
    const child = this.#child;
    if (this.#childExit && child && child.exitCode === null && child.signalCode === null) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#childExit, new Promise((resolve) => (timer = setTimeout(resolve, killMs)))]);
      clearTimeout(timer);
    }
    // The child handle stays, so poll() still reports how it exited.
    this.#clear();
  }

  #readOutput(): void {
    if (this.#output) followers.get(this.#output)?.readAvailable();
  }

  #leaderAlive(): boolean {
    const child = this.#child;
    if (child) return child.exitCode === null && child.signalCode === null && processAlive(this.#pid);
    return processAlive(this.#pid, this.#started);
  }

  #clear(): void {
    if (this.#output) {
      unfollow(this.#output);
      rmSync(this.#output, { force: true });
    }
    this.#output = undefined;
    this.#launching = undefined;
    this.#pid = 0;
    this.#port = 0;
    this.#url = '';
    this.#started = undefined;
  }
}

/** The address the hub and the proxy reach a server bound to `ip` at. */
function connectHost(ip: string): string {
  if (ip === '' || ip === '0.0.0.0') return '127.0.0.1';
  if (ip === '::') return '::1';
  return ip;
}

function expandHome(path: string): string {
  if (path === '~') return homedir();
  if (path.startsWith('~/')) return `${homedir()}${path.slice(1)}`;
  return path;
}

/** A port nobody listens on right now (JupyterHub's random_port: the same small race). */
export function freePort(ip: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, ip || '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** One GET without following redirects: the status, or undefined when nothing answered in time. */
function httpStatus(url: string, timeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** Waits `ms`, cut short when the child exits. */
function delayUnlessExit(child: ChildProcess, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      child.off('exit', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    child.once('exit', done);
  });
}

/** Polls `done` every 50 ms until it holds or `ms` pass. */
async function pollUntil(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
