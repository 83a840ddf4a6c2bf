// A real Docker Engine for tests: Debian's dockerd on its own socket, data root and exec root
// (no bridge, no iptables: containers use the host network), shared by the test processes that
// run at the same time and stopped by PID when the last one leaves; plus the images tests run,
// built locally (no registry is reachable) and cached by content so a warm run builds nothing.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';

/** Where the engine keeps its images between runs, so later runs are warm. */
export const defaultDockerCacheDir = process.env.SEAHORSE_DOCKER_DIR ?? '/var/tmp/seahorse-docker';

/** The file a build context gets so `npm` in a build stage trusts what the host's npm trusts. */
export const npmCaFileName = 'seahorse-npm-ca.crt';

export interface EngineResponse {
  status: number;
  body: Buffer;
  json<T = unknown>(): T;
}

export interface Dockerd {
  /** Path of the engine's unix socket. */
  readonly socket: string;
  /** `unix:///…/docker.sock`, for DOCKER_HOST. */
  readonly host: string;
  /** The environment for `docker`/`docker-compose` child processes: DOCKER_HOST set, BuildKit off. */
  readonly env: NodeJS.ProcessEnv;
  readonly pid: number;
  readonly storageDriver: 'overlay2' | 'vfs';
  readonly dir: string;
  /** One Engine API request over the socket (paths without a version prefix). */
  request(method: string, path: string, body?: Buffer | Readable | object): Promise<EngineResponse>;
  /** Runs the `docker` CLI against this engine; throws with its output when it fails. */
  docker(args: string[], options?: { input?: string | Buffer; timeoutMs?: number }): string;
  /** Leaves the shared daemon; the last test process to leave stops it by PID. */
  stop(): Promise<void>;
}

export interface StartDockerdOptions {
  /** Cache dir holding data-root, exec-root, socket and pid file (default /var/tmp/seahorse-docker). */
  dir?: string;
}

interface DaemonState {
  dir: string;
  socket: string;
  pid: number;
  storageDriver: 'overlay2' | 'vfs';
  uses: number;
}

const daemons = new Map<string, Promise<DaemonState>>();
const states = new Map<string, DaemonState>();

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether `pid` is a dockerd (a pid file may outlive its process and the pid be reused). */
function isDockerd(pid: number): boolean {
  if (!alive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]?.endsWith('dockerd') ?? false;
  } catch {
    return false;
  }
}

function readPid(path: string): number {
  try {
    return Number(readFileSync(path, 'utf8').trim());
  } catch {
    return 0;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A lock shared by processes: a directory made with mkdir (atomic), holding the owner's PID.
 * A lock whose owner died is broken; one without an owner file yet is young or abandoned.
 */
async function withFileLock<T>(
  path: string,
  what: string,
  timeoutMs: number,
  fn: () => Promise<T>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(path);
      writeFileSync(join(path, 'owner'), String(process.pid));
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = readPid(join(path, 'owner'));
      let stale = owner > 0 ? !alive(owner) : false;
      if (owner === 0) {
        try {
          stale = Date.now() - statSync(path).mtimeMs > 10_000;
        } catch {
          stale = false;
        }
      }
      if (stale) {
        rmSync(path, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for the lock on ${what} (held by PID ${owner})`,
        );
      }
      await sleep(100);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { recursive: true, force: true });
  }
}

function engineRequest(
  socket: string,
  method: string,
  path: string,
  body?: Buffer | Readable | object,
  { timeoutMs = 600_000, contentType }: { timeoutMs?: number; contentType?: string } = {},
): Promise<EngineResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    let payload: Buffer | Readable | undefined;
    if (body instanceof Readable) {
      payload = body;
      headers['content-type'] = contentType ?? 'application/x-tar';
    } else if (Buffer.isBuffer(body)) {
      payload = body;
      headers['content-type'] = contentType ?? 'application/octet-stream';
    } else if (body !== undefined) {
      payload = Buffer.from(JSON.stringify(body));
      headers['content-type'] = 'application/json';
    }
    if (Buffer.isBuffer(payload)) headers['content-length'] = String(payload.length);
    const req = request({ socketPath: socket, method, path, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const data = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          body: data,
          json: <T>() => JSON.parse(data.toString('utf8')) as T,
        });
      });
    });
    req.on('timeout', () =>
      req.destroy(new Error(`${method} ${path} on ${socket}: no answer in ${timeoutMs} ms`)),
    );
    req.on('error', reject);
    if (payload instanceof Readable) {
      payload.on('error', (error) => req.destroy(error));
      payload.pipe(req);
    } else req.end(payload);
  });
}

async function ping(socket: string): Promise<boolean> {
  try {
    const res = await engineRequest(socket, 'GET', '/_ping', undefined, { timeoutMs: 2000 });
    return res.status === 200;
  } catch {
    return false;
  }
}

/** The engine's JSON progress stream ({"stream"|"status"|"error"…} per line) → its error, if any. */
function streamError(body: Buffer): string | undefined {
  for (const line of body.toString('utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const message = JSON.parse(line) as { error?: unknown };
      if (typeof message.error === 'string') return message.error;
    } catch {
      return `unparsable engine output: ${line.slice(0, 200)}`;
    }
  }
  return undefined;
}

function streamText(body: Buffer, limit = 6000): string {
  const text = body
    .toString('utf8')
    .split('\n')
    .map((line) => {
      try {
        const message = JSON.parse(line) as { stream?: string; status?: string; error?: string };
        return message.stream ?? message.error ?? message.status ?? '';
      } catch {
        return line;
      }
    })
    .join('');
  return text.slice(-limit);
}

function dockerCli(): string {
  // Debian's client matches its engine (20.10); another docker on PATH may be far newer.
  if (existsSync('/usr/bin/docker')) return '/usr/bin/docker';
  return 'docker';
}

function findDockerd(): string {
  for (const candidate of ['/usr/sbin/dockerd', '/usr/bin/dockerd'])
    if (existsSync(candidate)) return candidate;
  throw new Error("dockerd not found; run 'npm run bootstrap', which installs Debian's docker.io");
}

function usersDir(dir: string): string {
  return join(dir, 'users');
}

function liveUsers(dir: string): number[] {
  const users: number[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(usersDir(dir));
  } catch {
    return users;
  }
  for (const name of names) {
    const pid = Number(name);
    if (alive(pid)) users.push(pid);
    else rmSync(join(usersDir(dir), name), { force: true });
  }
  return users;
}

async function launch(
  dir: string,
  driver: 'overlay2' | 'vfs',
): Promise<{ pid: number } | { failed: string }> {
  const socket = join(dir, 'docker.sock');
  const logPath = join(dir, 'dockerd.log');
  rmSync(socket, { force: true });
  const log = openSync(logPath, 'w');
  const args = [
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    `--storage-driver=${driver}`,
    `--data-root=${join(dir, 'data')}`,
    `--exec-root=${join(dir, 'exec')}`,
    `--pidfile=${join(dir, 'dockerd.pid')}`,
    `--host=unix://${socket}`,
    '--shutdown-timeout=5',
  ];
  // Detached and not owned by this process: other test processes may still use it when we exit.
  const child = spawn(findDockerd(), args, { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  child.unref();
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  child.once('error', () => {
    exited = true;
  });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (exited) return { failed: readFileSync(logPath, 'utf8').slice(-4000) };
    if (existsSync(socket) && (await ping(socket))) return { pid: child.pid ?? 0 };
    await sleep(50);
  }
  if (child.pid) process.kill(child.pid, 'SIGKILL');
  return {
    failed: `dockerd did not answer on ${socket} within 60 s:\n${readFileSync(logPath, 'utf8').slice(-4000)}`,
  };
}

async function stopDaemonPid(pid: number): Promise<void> {
  if (!isDockerd(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 20_000;
  while (alive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      break;
    }
    await sleep(50);
  }
  while (alive(pid)) await sleep(50);
}

async function acquireDaemon(dir: string): Promise<DaemonState> {
  if (process.getuid?.() !== 0) throw new Error('startDockerd needs root: dockerd runs as root');
  mkdirSync(usersDir(dir), { recursive: true });
  const socket = join(dir, 'docker.sock');
  return withFileLock(join(dir, 'daemon.lock'), `the dockerd in ${dir}`, 120_000, async () => {
    writeFileSync(join(usersDir(dir), String(process.pid)), '');
    const driverFile = join(dir, 'storage-driver');
    const pid = readPid(join(dir, 'dockerd.pid'));
    if (isDockerd(pid)) {
      if (await ping(socket)) {
        const driver = readFileSync(driverFile, 'utf8').trim() === 'vfs' ? 'vfs' : 'overlay2';
        return { dir, socket, pid, storageDriver: driver, uses: 0 };
      }
      // Alive but not answering while nobody holds the lock: hung; replace it.
      await stopDaemonPid(pid);
    }
    const remembered = existsSync(driverFile) ? readFileSync(driverFile, 'utf8').trim() : '';
    const drivers: Array<'overlay2' | 'vfs'> = remembered === 'vfs' ? ['vfs'] : ['overlay2', 'vfs'];
    const failures: string[] = [];
    for (const driver of drivers) {
      const started = await launch(dir, driver);
      if ('pid' in started) {
        writeFileSync(driverFile, driver);
        return { dir, socket, pid: started.pid, storageDriver: driver, uses: 0 };
      }
      failures.push(`--storage-driver=${driver}: ${started.failed}`);
    }
    rmSync(join(usersDir(dir), String(process.pid)), { force: true });
    throw new Error(`dockerd did not start:\n${failures.join('\n')}`);
  });
}

async function releaseDaemon(state: DaemonState): Promise<void> {
  await withFileLock(join(state.dir, 'daemon.lock'), `the dockerd in ${state.dir}`, 120_000, async () => {
    rmSync(join(usersDir(state.dir), String(process.pid)), { force: true });
    if (liveUsers(state.dir).length === 0) await stopDaemonPid(state.pid);
  });
}

process.once('exit', () => {
  // A test process that ends without stop(): leave the daemon, and stop it if nobody else uses it.
  for (const state of states.values()) {
    rmSync(join(usersDir(state.dir), String(process.pid)), { force: true });
    // Only under the lock (taken without waiting: exit handlers cannot), so a process joining
    // right now never gets a daemon that is being stopped; if it is busy, the next last user stops it.
    const lock = join(state.dir, 'daemon.lock');
    try {
      mkdirSync(lock);
    } catch {
      continue;
    }
    try {
      if (liveUsers(state.dir).length === 0 && isDockerd(state.pid)) process.kill(state.pid, 'SIGTERM');
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
});

/**
 * Starts (or joins) the test Docker Engine: Debian's dockerd with `--bridge=none
 * --iptables=false`, overlay2 or else vfs, data and exec roots under `dir`. Test processes that
 * share a dir share one daemon (a lock file guards start and stop; each user leaves a PID file);
 * the last to call stop() stops it by PID. Containers should use `NetworkMode: host`.
 */
export async function startDockerd(options: StartDockerdOptions = {}): Promise<Dockerd> {
  const dir = options.dir ?? defaultDockerCacheDir;
  let pending = daemons.get(dir);
  if (!pending) {
    pending = acquireDaemon(dir);
    daemons.set(dir, pending);
    pending.catch(() => daemons.delete(dir));
  }
  const state = await pending;
  states.set(dir, state);
  state.uses++;
  let stopped = false;
  const host = `unix://${state.socket}`;
  const env = { ...process.env, DOCKER_HOST: host, DOCKER_BUILDKIT: '0', COMPOSE_DOCKER_CLI_BUILD: '0' };
  return {
    socket: state.socket,
    host,
    env,
    pid: state.pid,
    storageDriver: state.storageDriver,
    dir,
    request: (method, path, body) => engineRequest(state.socket, method, path, body),
    docker: (args, { input, timeoutMs = 600_000 } = {}) => {
      const result = spawnSync(dockerCli(), args, {
        env,
        input,
        encoding: 'utf8',
        timeout: timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
      });
      if (result.status !== 0) {
        throw new Error(
          `docker ${args.join(' ')} failed (${result.status ?? result.signal ?? result.error?.message}):\n${result.stderr}${result.stdout}`.slice(
            -6000,
          ),
        );
      }
      return result.stdout;
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      state.uses--;
      if (state.uses > 0) return;
      daemons.delete(dir);
      states.delete(dir);
      await releaseDaemon(state);
    },
  };
}

export interface ImageInfo {
  /** The tag asked for. */
  tag: string;
  /** The image ID (sha256:…). */
  id: string;
  /** Whether this call built (or imported) it, rather than finding it cached. */
  built: boolean;
  /** Seconds this call spent on it. */
  seconds: number;
}

async function inspectImage(engine: Dockerd, name: string): Promise<{ Id: string } | undefined> {
  const res = await engine.request('GET', `/images/${encodeURIComponent(name)}/json`);
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw new Error(`inspecting image ${name}: ${res.status} ${res.body.toString()}`);
  return res.json<{ Id: string }>();
}

async function tagImage(engine: Dockerd, id: string, tag: string): Promise<void> {
  const colon = tag.lastIndexOf(':');
  const slash = tag.lastIndexOf('/');
  const [repo, version] = colon > slash ? [tag.slice(0, colon), tag.slice(colon + 1)] : [tag, 'latest'];
  const query = `repo=${encodeURIComponent(repo)}&tag=${encodeURIComponent(version)}`;
  const res = await engine.request('POST', `/images/${encodeURIComponent(id)}/tag?${query}`);
  if (res.status !== 201) throw new Error(`tagging ${id} as ${tag}: ${res.status} ${res.body.toString()}`);
}

/** Image builds of one name in one cache dir run one at a time across processes. */
function imageLock(engine: Dockerd, key: string): string {
  mkdirSync(join(engine.dir, 'locks'), { recursive: true });
  return join(engine.dir, 'locks', createHash('sha256').update(key).digest('hex').slice(0, 16));
}

/** The Debian release and mirror of the local base image. */
export const baseImageTag = 'seahorse-test/debian:bookworm-minbase';

/**
 * A Debian bookworm (minbase) image made locally: `mmdebstrap --variant=minbase` into a tarball
 * kept in the cache dir, then imported. About 90 s the first time; cached by tag afterwards.
 */
export async function baseImage(engine: Dockerd): Promise<ImageInfo> {
  const started = Date.now();
  const existing = await inspectImage(engine, baseImageTag);
  if (existing) return { tag: baseImageTag, id: existing.Id, built: false, seconds: 0 };
  return withFileLock(imageLock(engine, baseImageTag), baseImageTag, 900_000, async () => {
    const again = await inspectImage(engine, baseImageTag);
    if (again)
      return { tag: baseImageTag, id: again.Id, built: false, seconds: (Date.now() - started) / 1000 };
    const tarball = join(engine.dir, 'debian-bookworm-minbase.tar');
    // An earlier version renamed a directory into place under this name.
    if (existsSync(tarball) && statSync(tarball).isDirectory()) rmSync(tarball, { recursive: true });
    if (!existsSync(tarball)) {
      // mmdebstrap picks its output format from the name: it must end in .tar (else a directory).
      const partial = join(engine.dir, `debian-bookworm-minbase.${process.pid}.partial.tar`);
      const result = spawnSync(
        'mmdebstrap',
        ['--variant=minbase', '--quiet', 'bookworm', partial, 'http://deb.debian.org/debian'],
        { encoding: 'utf8', timeout: 900_000 },
      );
      if (result.error) {
        throw new Error(
          `mmdebstrap could not run (${result.error.message}); 'npm run bootstrap' installs it`,
        );
      }
      if (result.status !== 0) {
        rmSync(partial, { force: true, recursive: true });
        throw new Error(`mmdebstrap failed:\n${result.stderr.slice(-4000)}`);
      }
      // Renamed into place only when complete, so an interrupted run never leaves half a rootfs.
      spawnSync('mv', [partial, tarball]);
    }
    const [repo, version] = baseImageTag.split(':') as [string, string];
    const query = `fromSrc=-&repo=${encodeURIComponent(repo)}&tag=${encodeURIComponent(version)}`;
    const res = await engine.request('POST', `/images/create?${query}`, createReadStream(tarball));
    const error = res.status === 200 ? streamError(res.body) : res.body.toString();
    if (error) throw new Error(`docker import of ${tarball} failed: ${error}`);
    const image = await inspectImage(engine, baseImageTag);
    if (!image) throw new Error(`docker import of ${tarball} left no ${baseImageTag}`);
    return { tag: baseImageTag, id: image.Id, built: true, seconds: (Date.now() - started) / 1000 };
  });
}

const singleuserDockerfile = `# Stock JupyterHub single-user server from Debian, as the tests' user image.
ARG BASE_IMAGE
FROM \${BASE_IMAGE}
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jupyterhub \\
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 --shell /bin/bash jovyan
USER jovyan
WORKDIR /home/jovyan
ENV HOME=/home/jovyan
CMD ["jupyterhub-singleuser"]
`;

/** Tag of the image with Debian's jupyterhub (stock `jupyterhub-singleuser`, user jovyan, uid 1000). */
export const singleuserImageTag = 'seahorse-test/singleuser:bookworm';

/**
 * The base image plus Debian's jupyterhub package: stock `jupyterhub-singleuser` as CMD, run as
 * `jovyan` (uid 1000) with HOME /home/jovyan. A few minutes cold; cached by content.
 */
export async function singleuserImage(engine: Dockerd): Promise<ImageInfo> {
  const base = await baseImage(engine);
  const context = join(engine.dir, 'contexts', 'singleuser');
  mkdirSync(context, { recursive: true });
  const dockerfile = join(context, 'Dockerfile');
  if (!existsSync(dockerfile) || readFileSync(dockerfile, 'utf8') !== singleuserDockerfile) {
    writeFileSync(dockerfile, singleuserDockerfile);
  }
  return buildImage(engine, context, 'Dockerfile', singleuserImageTag, { BASE_IMAGE: base.tag });
}

interface ContextEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  source?: string;
  content?: Buffer;
  link?: string;
}

function globToRegExp(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') {
          i++;
          out += '(?:.*/)?';
        } else out += '.*';
      } else out += '[^/]*';
    } else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end === -1) out += '\\[';
      else {
        out += `[${pattern
          .slice(i + 1, end)
          .replace(/^!/, '^')
          .replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else if (c === '\\' && i + 1 < pattern.length) out += `\\${pattern[++i]}`;
    else out += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** .dockerignore as the classic builder reads it: last matching pattern wins; `!` re-includes. */
function dockerignore(contextDir: string): { excluded(path: string): boolean; hasExceptions: boolean } {
  const file = join(contextDir, '.dockerignore');
  const rules: Array<{ regexp: RegExp; exception: boolean }> = [];
  if (existsSync(file)) {
    for (const raw of readFileSync(file, 'utf8').split('\n')) {
      let line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      const exception = line.startsWith('!');
      if (exception) line = line.slice(1).trim();
      line = line.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
      if (line) rules.push({ regexp: globToRegExp(line), exception });
    }
  }
  return {
    hasExceptions: rules.some((rule) => rule.exception),
    excluded(path) {
      // A pattern matches the path itself or any directory above it.
      const parts = path.split('/');
      const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
      let excluded = false;
      for (const rule of rules) {
        if (candidates.some((candidate) => rule.regexp.test(candidate))) excluded = !rule.exception;
      }
      return excluded;
    },
  };
}

function contextEntries(contextDir: string, dockerfile: string): ContextEntry[] {
  const ignore = dockerignore(contextDir);
  const entries: ContextEntry[] = [];
  const walk = (rel: string) => {
    const names = readdirSync(join(contextDir, rel)).sort();
    for (const name of names) {
      const path = rel ? `${rel}/${name}` : name;
      const source = join(contextDir, path);
      const stat = lstatSync(source);
      const always = path === dockerfile || path === '.dockerignore';
      const excluded = !always && ignore.excluded(path);
      if (stat.isDirectory()) {
        if (excluded && !ignore.hasExceptions) continue;
        if (!excluded) entries.push({ path, type: 'dir', mode: stat.mode & 0o7777 });
        walk(path);
      } else if (excluded) {
      } else if (stat.isSymbolicLink()) {
        entries.push({ path, type: 'symlink', mode: 0o777, link: readlinkSync(source) });
      } else if (stat.isFile()) {
        entries.push({ path, type: 'file', mode: stat.mode & 0o7777, source });
      }
    }
  };
  walk('');
  return entries;
}

function tarHeader(name: string, type: string, mode: number, size: number, link = ''): Buffer {
  const blocks: Buffer[] = [];
  const needsPax = Buffer.byteLength(name) > 100 || Buffer.byteLength(link) > 100;
  if (needsPax) {
    const records = [`path=${name}`, ...(link ? [`linkpath=${link}`] : [])].map((record) => {
      const body = ` ${record}\n`;
      let length = Buffer.byteLength(body) + 1;
      while (String(length).length + Buffer.byteLength(body) !== length) length++;
      return `${length}${body}`;
    });
    const pax = Buffer.from(records.join(''));
    blocks.push(tarHeader('PaxHeader', 'x', 0o644, pax.length), pad(pax));
  }
  const header = Buffer.alloc(512);
  const field = (value: string, offset: number, length: number) => {
    header.write(value.slice(0, length), offset, length, 'utf8');
  };
  const octal = (value: number, offset: number, length: number) =>
    field(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length);
  field(needsPax ? name.slice(0, 99) : name, 0, 100);
  octal(mode, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(size, 124, 12);
  octal(0, 136, 12);
  header.fill(' ', 148, 156);
  field(type, 156, 1);
  field(needsPax ? link.slice(0, 99) : link, 157, 100);
  field('ustar\0', 257, 6);
  field('00', 263, 2);
  let sum = 0;
  for (const byte of header) sum += byte;
  field(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  blocks.push(header);
  return Buffer.concat(blocks);
}

function pad(data: Buffer): Buffer {
  const rest = data.length % 512;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(512 - rest)]);
}

function* tarStream(entries: ContextEntry[]): Generator<Buffer> {
  for (const entry of entries) {
    if (entry.type === 'dir') yield tarHeader(`${entry.path}/`, '5', entry.mode, 0);
    else if (entry.type === 'symlink') yield tarHeader(entry.path, '2', entry.mode, 0, entry.link);
    else {
      const content = entry.content ?? readFileSync(entry.source!);
      yield tarHeader(entry.path, '0', entry.mode, content.length);
      yield pad(content);
    }
  }
  yield Buffer.alloc(1024);
}

function hostNpmCaFile(): Buffer | undefined {
  const result = spawnSync('npm', ['config', 'get', 'cafile'], { encoding: 'utf8' });
  const path = result.status === 0 ? result.stdout.trim() : '';
  if (path && path !== 'null' && path !== 'undefined' && existsSync(path)) return readFileSync(path);
  if (existsSync('/etc/ssl/certs/ca-certificates.crt'))
    return readFileSync('/etc/ssl/certs/ca-certificates.crt');
  return undefined;
}

let npmCa: Buffer | undefined | null = null;

/**
 * Builds `dockerfile` (relative to `contextDir`) with the classic builder (what DOCKER_BUILDKIT=0
 * runs), host network, and tags it `tag`. The context is what `.dockerignore` leaves, plus
 * `seahorse-npm-ca.crt` at its root: the host npm's CA bundle (`npm config get cafile`), for a
 * build stage to `COPY` and point npm at. The image is cached under a tag derived from the
 * content hash (context, Dockerfile, build args, and the IDs of local images the build args and
 * FROM lines name): unchanged, it is only re-tagged, never rebuilt.
 */
export async function buildImage(
  engine: Dockerd,
  contextDir: string,
  dockerfile: string,
  tag: string,
  buildArgs: Record<string, string> = {},
): Promise<ImageInfo> {
  const started = Date.now();
  const dockerfilePath = dockerfile.replace(/^\.\//, '');
  if (!existsSync(join(contextDir, dockerfilePath))) {
    throw new Error(`no Dockerfile ${dockerfilePath} in ${contextDir}`);
  }
  const entries = contextEntries(contextDir, dockerfilePath);
  if (npmCa === null) npmCa = hostNpmCaFile();
  if (npmCa && !entries.some((entry) => entry.path === npmCaFileName)) {
    entries.push({ path: npmCaFileName, type: 'file', mode: 0o644, content: npmCa });
  }
  const hash = createHash('sha256');
  hash.update(`seahorse-build-1\0${dockerfilePath}\0${JSON.stringify(Object.entries(buildArgs).sort())}\0`);
  const referenced = new Set(Object.values(buildArgs));
  const dockerfileText = readFileSync(join(contextDir, dockerfilePath), 'utf8');
  for (const match of dockerfileText.matchAll(/^\s*FROM\s+(?:--\S+\s+)*(\S+)/gim)) {
    if (!match[1]!.includes('$')) referenced.add(match[1]!);
  }
  for (const name of [...referenced].sort()) {
    if (!/^[a-z0-9][\w.\-/:@]*$/i.test(name)) continue;
    const image = await inspectImage(engine, name).catch(() => undefined);
    if (image) hash.update(`image\0${name}\0${image.Id}\0`);
  }
  for (const entry of entries) {
    hash.update(`${entry.type}\0${entry.path}\0${entry.mode}\0${entry.link ?? ''}\0`);
    if (entry.type === 'file') hash.update(entry.content ?? readFileSync(entry.source!));
  }
  const digest = hash.digest('hex').slice(0, 20);
  const colon = tag.lastIndexOf(':');
  const repo = colon > tag.lastIndexOf('/') ? tag.slice(0, colon) : tag;
  const cacheTag = `${repo}:content-${digest}`;
  const cached = async (): Promise<ImageInfo | undefined> => {
    const image = await inspectImage(engine, cacheTag);
    if (!image) return undefined;
    const current = await inspectImage(engine, tag);
    if (current?.Id !== image.Id) await tagImage(engine, image.Id, tag);
    return { tag, id: image.Id, built: false, seconds: (Date.now() - started) / 1000 };
  };
  const hit = await cached();
  if (hit) return hit;
  return withFileLock(imageLock(engine, cacheTag), cacheTag, 1_800_000, async () => {
    const again = await cached();
    if (again) return again;
    const query = new URLSearchParams({
      dockerfile: dockerfilePath,
      buildargs: JSON.stringify(buildArgs),
      networkmode: 'host',
      rm: '1',
      forcerm: '1',
    });
    const path = `/build?${query}&t=${encodeURIComponent(tag)}&t=${encodeURIComponent(cacheTag)}`;
    const res = await engine.request('POST', path, Readable.from(tarStream(entries)));
    const error = res.status === 200 ? streamError(res.body) : res.body.toString();
    if (error) {
      throw new Error(
        `building ${tag} from ${join(contextDir, dockerfilePath)} failed: ${error}\n${streamText(res.body)}`,
      );
    }
    const image = await inspectImage(engine, cacheTag);
    if (!image) throw new Error(`building ${tag} left no image:\n${streamText(res.body)}`);
    return { tag, id: image.Id, built: true, seconds: (Date.now() - started) / 1000 };
  });
}
