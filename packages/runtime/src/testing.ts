// Test helpers that start real servers (redis-server, Sentinel, PostgreSQL) on free loopback
// ports and stop them by PID, even when a test fails or the runner is interrupted; plus test
// certificates (openssl) and a log capture.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Writable } from 'node:stream';

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) {
    try {
      if (child.pid) process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** A port nobody listens on right now, on 127.0.0.1. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it returns a truthy value; fails with `what` after the timeout. */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 20 } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** A child process owned by a test: its output is kept for error messages, and stop() waits for exit. */
export class ManagedProcess {
  readonly child: ChildProcess;
  readonly name: string;
  readonly exited: Promise<number | null>;
  #output = '';

  constructor(name: string, command: string, args: string[], options: Parameters<typeof spawn>[2] = {}) {
    this.name = name;
    this.child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    children.add(this.child);
    const keep = (chunk: Buffer) => {
      this.#output = (this.#output + chunk.toString()).slice(-8192);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.child.once('error', (error) => {
        this.#output += `\n${error.message}`;
        children.delete(this.child);
        resolve(null);
      });
      this.child.once('exit', (code, signal) => {
        children.delete(this.child);
        resolve(code ?? (signal ? -1 : null));
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && children.has(this.child);
  }

  /** The last few KiB the process printed, for failure messages. */
  get output(): string {
    return this.#output;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.alive) process.kill(this.pid, signal);
  }

  /** Freezes the process (SIGSTOP), e.g. to simulate a partition or a hung server. */
  pause(): void {
    this.signal('SIGSTOP');
  }

  resume(): void {
    this.signal('SIGCONT');
  }

  /** Sends `signal`, then SIGKILL if the process has not exited after `graceMs`. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
    if (!this.alive) return;
    this.resume();
    this.signal(signal);
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Rejects with the process output when it exits before `ready` settles. */
  async untilReady<T>(ready: Promise<T>): Promise<T> {
    const early = this.exited.then((code) => {
      throw new Error(`${this.name} exited (${code}) before it was ready:\n${this.#output}`);
    });
    try {
      return await Promise.race([ready, early]);
    } catch (error) {
      await this.stop('SIGKILL');
      throw error;
    }
  }
}

/** Finds a binary on PATH or in extra directories (PostgreSQL keeps its own outside PATH). */
export function findBinary(name: string, extraDirs: string[] = []): string {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(extraDirs);
  for (const dir of dirs) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  throw new Error(
    `${name} not found on PATH or in ${extraDirs.join(', ') || 'no extra dirs'}; run 'npm test', which installs it`,
  );
}

/**
 * The manifests a kustomization builds (`kubectl kustomize <dir>`), as `kubectl apply -k` would
 * send them: one YAML stream. Needs kubectl with kustomize v5 (the bootstrap installs it).
 */
export function kustomizeBuild(dir: string): string {
  const result = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.error) {
    throw new Error(
      `kubectl (with kustomize v5) is needed to build ${dir}; run 'npm run bootstrap', which installs it (${result.error.message})`,
    );
  }
  if (result.status !== 0) {
    const version = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).stdout.trim();
    throw new Error(`kubectl kustomize ${dir} failed (${version.replace(/\n/g, ', ')}):\n${result.stderr}`);
  }
  return result.stdout;
}

type RespValue = string | number | null | RespValue[];

/** Sends one command in RESP and returns the reply; enough Redis for readiness and setup. */
export function redisCommand(port: number, args: string[], host = '127.0.0.1'): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, host);
    let buffer = Buffer.alloc(0);
    socket.setTimeout(2000, () => socket.destroy(new Error(`redis at ${host}:${port} did not answer`)));
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      const parsed = parseResp(buffer, 0);
      if (parsed) {
        socket.end();
        if (parsed.error) reject(new Error(parsed.error));
        else resolve(parsed.value);
      }
    });
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });
}

function parseResp(buf: Buffer, at: number): { value: RespValue; next: number; error?: string } | undefined {
  const lineEnd = buf.indexOf('\r\n', at);
  if (lineEnd === -1) return undefined;
  const type = String.fromCharCode(buf[at]!);
  const line = buf.toString('utf8', at + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, next };
    case '-':
      return { value: null, next, error: line };
    case ':':
      return { value: Number(line), next };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, next };
      if (buf.length < next + length + 2) return undefined;
      return { value: buf.toString('utf8', next, next + length), next: next + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, next };
      const items: RespValue[] = [];
      let cursor = next;
      for (let i = 0; i < count; i++) {
        const item = parseResp(buf, cursor);
        if (!item) return undefined;
        items.push(item.value);
        cursor = item.next;
      }
      return { value: items, next: cursor };
    }
    default:
      return { value: null, next, error: `unexpected RESP type '${type}'` };
  }
}

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly process: ManagedProcess;
  command(...args: string[]): Promise<RespValue>;
  stop(): Promise<void>;
}

function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `seahorse-${prefix}-`));
}

/**
 * Starts a real redis-server with nothing persisted. Pass `replicaOf` to make a replica, and
 * `port` to bring one up where a client is already waiting for it.
 */
export async function startRedis(
  options: { replicaOf?: { host: string; port: number }; args?: string[]; port?: number } = {},
): Promise<RedisServer> {
  const host = '127.0.0.1';
  const port = options.port ?? (await freePort());
  const dir = tempDir('redis');
  const args = ['--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no', '--dir', dir];
  // Replicas sync at once instead of after Redis's default 5 s batching delay.
  args.push('--repl-diskless-sync-delay', '0');
  if (options.replicaOf) args.push('--replicaof', options.replicaOf.host, String(options.replicaOf.port));
  args.push(...(options.args ?? []));
  const proc = new ManagedProcess(`redis-server :${port}`, findBinary('redis-server'), args);
  await proc.untilReady(
    waitFor(`redis-server on ${port}`, async () => (await redisCommand(port, ['PING'])) === 'PONG'),
  );
  return {
    host,
    port,
    url: `redis://${host}:${port}`,
    process: proc,
    command: (...command) => redisCommand(port, command),
    stop: async () => {
      await proc.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A primary and a replica that has completed its first sync. */
export async function startRedisWithReplica(): Promise<{
  primary: RedisServer;
  replica: RedisServer;
  stop(): Promise<void>;
}> {
  const primary = await startRedis();
  const replica = await startRedis({ replicaOf: primary });
  await waitFor('replica to sync', async () => {
    const info = String(await replica.command('INFO', 'replication'));
    return info.includes('master_link_status:up');
  });
  return { primary, replica, stop: async () => void (await Promise.all([primary.stop(), replica.stop()])) };
}

/** Starts `count` Sentinels watching `primary` under `masterName`, with fast failure detection. */
export async function startSentinels(
  primary: { host: string; port: number },
  options: { count?: number; masterName?: string; quorum?: number; downAfterMs?: number } = {},
): Promise<{ sentinels: RedisServer[]; masterName: string; stop(): Promise<void> }> {
  const { count = 3, masterName = 'mymaster', downAfterMs = 1000 } = options;
  const quorum = options.quorum ?? Math.floor(count / 2) + 1;
  const sentinels: RedisServer[] = [];
  for (let i = 0; i < count; i++) {
    const port = await freePort();
    const dir = tempDir('sentinel');
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${masterName} ${primary.host} ${primary.port} ${quorum}`,
        `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
        `sentinel failover-timeout ${masterName} ${downAfterMs * 4}`,
        `sentinel parallel-syncs ${masterName} 1`,
        '',
      ].join('\n'),
    );
    const proc = new ManagedProcess(`sentinel :${port}`, findBinary('redis-server'), [conf, '--sentinel']);
    await proc.untilReady(
      waitFor(`sentinel on ${port}`, async () => (await redisCommand(port, ['PING'])) === 'PONG'),
    );
    sentinels.push({
      host: '127.0.0.1',
      port,
      url: `redis://127.0.0.1:${port}`,
      process: proc,
      command: (...command) => redisCommand(port, command),
      stop: async () => {
        await proc.stop('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      },
    });
  }
  return {
    sentinels,
    masterName,
    stop: async () => void (await Promise.all(sentinels.map((s) => s.stop()))),
  };
}

export interface PostgresServer {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  /** `postgres://user@host:port/database` (trust authentication on loopback). */
  readonly url: string;
  readonly process: ManagedProcess;
  stop(): Promise<void>;
}

function postgresBinDirs(): string[] {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => join(base, version, 'bin'));
}

/** PostgreSQL refuses to run as root; as root, run it as the `postgres` (or `nobody`) account. */
function postgresAccount(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n');
  for (const name of ['postgres', 'nobody']) {
    const fields = passwd.find((line) => line.startsWith(`${name}:`))?.split(':');
    if (fields) return { uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  throw new Error('running as root and no postgres or nobody account exists to run PostgreSQL as');
}

/** A throwaway PostgreSQL cluster (initdb in a temp dir), fsync off, trust auth on loopback. */
export async function startPostgres(): Promise<PostgresServer> {
  const extra = postgresBinDirs();
  const initdb = findBinary('initdb', extra);
  const postgres = findBinary('postgres', extra);
  const isReady = findBinary('pg_isready', extra);
  const account = postgresAccount();
  const dir = tempDir('postgres');
  const data = join(dir, 'data');
  if (account) chownSync(dir, account.uid, account.gid);
  const asAccount = account ? { uid: account.uid, gid: account.gid } : {};
  const init = spawnSync(initdb, ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8'], {
    ...asAccount,
    encoding: 'utf8',
  });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${init.stderr || init.error?.message}`);
  }
  const port = await freePort();
  const args = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1'];
  args.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  const proc = new ManagedProcess(`postgres :${port}`, postgres, args, asAccount);
  await proc.untilReady(
    waitFor(
      `postgres on ${port}`,
      () => spawnSync(isReady, ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-q']).status === 0,
      { timeoutMs: 30_000, intervalMs: 50 },
    ),
  );
  return {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    database: 'postgres',
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    process: proc,
    // SIGINT is PostgreSQL's fast shutdown: it does not wait for clients to disconnect.
    stop: async () => {
      await proc.stop('SIGINT', 10_000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Log lines written by code under test (give it as a logger's destination), kept for assertions. */
export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    for (const line of chunk.toString().split('\n')) if (line) this.lines.push(JSON.parse(line));
    callback();
  }
  /** Whether a line with this message was written. */
  has(msg: string): boolean {
    return this.lines.some((line) => line.msg === msg);
  }
  get text(): string {
    return this.lines.map((line) => JSON.stringify(line)).join('\n');
  }
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A test CA in `dir` (ca.crt, ca.key), made with the openssl CLI. */
export function makeCertificateAuthority(dir: string): { cert: Buffer; key: Buffer } {
  openssl(
    dir,
    'req',
    '-x509',
    ...ecKey,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=seahorse test CA',
  );
  return { cert: readFileSync(join(dir, 'ca.crt')), key: readFileSync(join(dir, 'ca.key')) };
}

/**
 * A certificate signed by the CA in `dir` (`<name>.crt`, `<name>.key`): valid for 127.0.0.1 and
 * localhost when `server`, otherwise a client certificate with CN=<name>.
 */
export function issueCertificate(
  dir: string,
  name: string,
  { server = true } = {},
): { cert: Buffer; key: Buffer } {
  const extensions = server ? ['-extfile', `${name}.ext`] : [];
  if (server) writeFileSync(join(dir, `${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(
    dir,
    'req',
    '-new',
    ...ecKey,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    `/CN=${name}`,
  );
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    `${name}.crt`,
    '-days',
    '2',
    ...extensions,
  );
  return { cert: readFileSync(join(dir, `${name}.crt`)), key: readFileSync(join(dir, `${name}.key`)) };
}

export * from './testing-docker.ts';
