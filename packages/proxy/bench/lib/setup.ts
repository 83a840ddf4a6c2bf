// Installs what the bench needs when it is missing: its npm dependencies (the CHP versions it
// compares with) into bench/node_modules, wrk from Debian when running as root, and a build of
// the proxy (dist) that is not older than its sources.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchDir } from './contenders.ts';

const workspaceRoot = fileURLToPath(new URL('../../../../', import.meta.url));

const benchPackages = ['configurable-http-proxy', 'chp5', 'configurable-http-proxy-redis-backend'];

export function ensureBenchDependencies(): void {
  const missing = benchPackages.filter(
    (name) => !existsSync(join(benchDir, 'node_modules', name, 'package.json')),
  );
  if (missing.length === 0) return;
  process.stderr.write(`bench: installing ${missing.join(', ')} into ${join(benchDir, 'node_modules')}\n`);
  const result = spawnSync('npm', ['install', '--prefix', benchDir, '--no-audit', '--no-fund'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (result.status !== 0) {
    throw new Error(
      `'npm install --prefix ${benchDir}' failed (exit ${result.status}); run it by hand to see why`,
    );
  }
}

export function ensureWrk(): void {
  if (spawnSync('wrk', ['--version']).error === undefined) return;
  if (process.getuid?.() !== 0) {
    throw new Error(
      "wrk is not installed: 'apt-get install wrk' (Debian/Ubuntu) or build it from github.com/wg/wrk",
    );
  }
  process.stderr.write('bench: installing wrk with apt-get\n');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let result = spawnSync('apt-get', ['install', '-y', 'wrk'], { stdio: 'inherit', env });
  if (result.status !== 0) {
    spawnSync('apt-get', ['update'], { stdio: 'inherit', env });
    result = spawnSync('apt-get', ['install', '-y', 'wrk'], { stdio: 'inherit', env });
  }
  if (result.status !== 0) throw new Error("'apt-get install -y wrk' failed; install wrk and run again");
}

/** Newest modification time of the .ts sources in `dir` (tests excluded), in ms. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts') || entry.name.endsWith('.test.ts')) continue;
    newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/**
 * The bench runs the proxy as users do, from dist (type stripping would add the TypeScript
 * loader's memory to every RSS figure). Rebuilds the runtime and the proxy when dist is older
 * than src.
 */
export function ensureBuilt(): void {
  const stale = ['runtime', 'proxy'].filter((name) => {
    const pkg = join(workspaceRoot, 'packages', name);
    const built = join(pkg, 'dist', name === 'proxy' ? 'cli.js' : 'index.js');
    return !existsSync(built) || statSync(built).mtimeMs < newestSource(join(pkg, 'src'));
  });
  if (stale.length === 0) return;
  process.stderr.write(`bench: dist of ${stale.join(' and ')} is older than src; running npm run build\n`);
  const args = ['run', 'build', ...stale.map((name) => `--workspace=packages/${name}`)];
  const result = spawnSync('npm', args, { cwd: workspaceRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) {
    throw new Error(`'npm ${args.join(' ')}' failed; fix the build, or run the sources with --source`);
  }
}

/** Changes whenever the runtime's or the proxy's dist is rebuilt: a run must not span two builds. */
export function buildFingerprint(): string {
  let newest = 0;
  let files = 0;
  for (const name of ['runtime', 'proxy']) {
    const dist = join(workspaceRoot, 'packages', name, 'dist');
    if (!existsSync(dist)) continue;
    for (const entry of readdirSync(dist, { withFileTypes: true, recursive: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.js')) continue;
      files++;
      newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
    }
  }
  return `${files} files, newest ${new Date(newest).toISOString()}`;
}

/** The workspace's commit, with `+changes` when the proxy's or the runtime's sources differ from it. */
export function sourceRevision(): string {
  const git = (...args: string[]) =>
    spawnSync('git', args, { cwd: workspaceRoot, encoding: 'utf8' }).stdout?.trim() ?? '';
  const commit = git('rev-parse', '--short', 'HEAD') || 'unknown';
  const dirty = git('status', '--porcelain', '--', 'packages/proxy/src', 'packages/runtime/src');
  return dirty ? `${commit}+changes` : commit;
}
