// The built bin, started by name as JupyterHub starts it: exit codes, messages, signals.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '@seahorse/runtime/testing';
import { startProxyProcess } from './helpers.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const bin = join(root, 'node_modules', '.bin', 'configurable-http-proxy');

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(bin, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 20_000 });
}

test('the bin is linked into node_modules/.bin and built', () => {
  assert.ok(existsSync(bin), `${bin} is missing: run 'npm run build'`);
});

test('--version and --help print and exit 0', () => {
  const version = run(['--version']);
  assert.equal(version.status, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  const help = run(['-h']);
  assert.equal(help.status, 0);
  for (const flag of [
    '--api-port <n>',
    '--no-include-prefix',
    '--custom-header <header>',
    '--storage-backend',
  ]) {
    assert.ok(help.stdout.includes(flag), `help lacks ${flag}`);
  }
});

test('user mistakes exit 2 with one line naming what to fix, never a stack trace', () => {
  const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['--bogus'], {}, /unknown flag '--bogus'/],
    [['--port', 'abc'], {}, /--port expects an integer from 0 to 65535, got 'abc'/],
    [['--log-level', 'loud'], {}, /--log-level expects one of debug, info, warn, error/],
    [['--custom-header', 'NoColon'], {}, /A colon was expected in custom header: NoColon/],
    [['--error-target', 'http://h', '--error-path', '/tmp'], {}, /Pick one/],
    [['--socket', '/tmp/x.sock', '--port', '9000'], {}, /--socket cannot be used with --port/],
    [['--redirect-port', '9000'], {}, /needs --ssl-key and --ssl-cert/],
    [['--default-target', 'nonsense'], {}, /--default-target expects a URL/],
  ];
  for (const [args, env, message] of cases) {
    const result = run(args, env);
    assert.equal(result.status, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr, message);
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
  }
});

test('an unreadable TLS file exits 1 naming the flag and the file', () => {
  const result = run(['--ssl-key', '/nonexistent/key.pem', '--ssl-cert', '/nonexistent/cert.pem']);
  assert.equal(result.status, 1);
  assert.match(result.stderr, /--ssl-key: cannot read \/nonexistent\/key.pem \(ENOENT\)/);
});

test('a port already in use exits 1 instead of running without a listener', async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = (blocker.address() as { port: number }).port;
  try {
    const result = run(['--ip', '127.0.0.1', '--port', String(port), '--api-port', String(await freePort())]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, new RegExp(`127.0.0.1:${port} is already in use; .* --ip/--port`));
  } finally {
    blocker.close();
  }
});

test('the process serves both ports, writes its pid file, and exits 0 on SIGTERM', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-cli-'));
  const pidFile = join(dir, 'proxy.pid');
  const started = await startProxyProcess(['--pid-file', pidFile], { bin: true, token: 'secret-token' });
  const { process: proxy, port } = started;
  try {
    assert.equal((await started.api('GET', '/api/routes')).status, 200);
    assert.equal(readFileSync(pidFile, 'utf8'), String(proxy.pid), 'the pid is the server itself');
    assert.equal((await fetch(`http://127.0.0.1:${port}/_chp_healthz`)).status, 200);
    proxy.signal('SIGTERM');
    assert.equal(await proxy.exited, 0);
    assert.equal(existsSync(pidFile), false, 'pid file removed on exit');
    const lines = proxy.output
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { msg: string; level: string });
    assert.ok(lines.some((line) => line.msg === 'stopped'));
    assert.ok(!proxy.output.includes('secret-token'), 'the token is never logged');
  } finally {
    await proxy.stop();
  }
});

test('the built bin runs under the system Node (20 or newer) as well', (t) => {
  const system = spawnSync('/usr/bin/node', ['--version'], { encoding: 'utf8' });
  if (system.status !== 0) {
    t.diagnostic('no /usr/bin/node on this machine; the pinned Node runs the bin');
  }
  const node = system.status === 0 ? '/usr/bin/node' : process.execPath;
  const result = spawnSync(node, [join(root, 'packages/proxy/bin/configurable-http-proxy.js'), '--version'], {
    encoding: 'utf8',
  });
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /^\d+\.\d+\.\d+\n$/);
});
