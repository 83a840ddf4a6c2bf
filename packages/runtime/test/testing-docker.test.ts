import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  baseImage,
  buildImage,
  type Dockerd,
  npmCaFileName,
  singleuserImage,
  startDockerd,
  waitFor,
} from '../src/testing.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const testingModule = fileURLToPath(new URL('../src/testing.ts', import.meta.url));

/** Runs a second test process that joins the daemon in `dir`, says its PID, and waits for stdin to close. */
function joinFromAnotherProcess(dir: string) {
  const script = `
    const { startDockerd } = await import(${JSON.stringify(testingModule)});
    const engine = await startDockerd({ dir: ${JSON.stringify(dir)} });
    process.stdout.write(String(engine.pid) + '\\n');
    process.stdin.resume();
    process.stdin.on('end', async () => { await engine.stop(); process.exit(0); });
  `;
  const child = spawn(
    process.execPath,
    ['--conditions=seahorse-source', '--input-type=module', '-e', script],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const pid = new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.once('exit', (code) => reject(new Error(`joining process exited (${code})`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return {
    pid,
    exited,
    child,
    leave: async () => {
      child.stdin.end();
      return exited;
    },
  };
}

test('processes sharing a dir share one dockerd; the last to leave stops it by PID', async () => {
  // Its own dir: the shared cache's daemon may be in use by other test files.
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-dockerd-'));
  try {
    const [first, second] = await Promise.all([startDockerd({ dir }), startDockerd({ dir })]);
    assert.equal(first.pid, second.pid);
    assert.equal((await first.request('GET', '/_ping')).body.toString(), 'OK');
    const other = joinFromAnotherProcess(dir);
    assert.equal(await other.pid, first.pid, 'the other process joined the running daemon');
    await first.stop();
    await second.stop();
    assert.ok(alive(first.pid), 'the daemon outlives this process leaving while another uses it');
    const version = (await first.request('GET', '/version')).json<{ Version: string }>();
    assert.match(version.Version, /^20\./);
    assert.equal(await other.leave(), 0);
    await waitFor('dockerd to exit', () => !alive(first.pid), { timeoutMs: 30_000 });
    // A new start after the stop brings up a fresh daemon on the same roots.
    const again = await startDockerd({ dir });
    assert.notEqual(again.pid, first.pid);
    assert.equal((await again.request('GET', '/_ping')).status, 200);
    await again.stop();
    assert.equal(alive(again.pid), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a daemon whose user died without stop() is joined, and stopped by the next last user', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-dockerd-'));
  try {
    const other = joinFromAnotherProcess(dir);
    const pid = await other.pid;
    // The other process is killed: it leaves its user file behind and the daemon running.
    other.child.kill('SIGKILL');
    await other.exited;
    assert.ok(alive(pid));
    const engine = await startDockerd({ dir });
    assert.equal(engine.pid, pid);
    await engine.stop();
    await waitFor('dockerd to exit', () => !alive(pid), { timeoutMs: 30_000 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

let engine: Dockerd;
before(async () => {
  engine = await startDockerd();
});
after(async () => {
  await engine?.stop();
});

async function run(image: string, cmd: string[]): Promise<string> {
  return engine.docker(['run', '--rm', '--network', 'host', image, ...cmd]);
}

test('baseImage is Debian bookworm, imported once and then found by tag', async () => {
  const first = await baseImage(engine);
  const second = await baseImage(engine);
  assert.equal(second.built, false);
  assert.equal(second.id, first.id);
  assert.match(await run(first.tag, ['cat', '/etc/debian_version']), /^12\./);
});

test('buildImage rebuilds only when the context, the args or the base change', async () => {
  const base = await baseImage(engine);
  const context = mkdtempSync(join(tmpdir(), 'seahorse-build-'));
  try {
    writeFileSync(
      join(context, 'Dockerfile'),
      [
        `# run ${process.pid}-${Date.now()}: a fresh content hash, so the first build below is a real one`,
        'ARG BASE_IMAGE',
        'FROM $BASE_IMAGE AS build',
        `COPY ${npmCaFileName} /tmp/ca.crt`,
        'RUN test -s /tmp/ca.crt',
        'FROM $BASE_IMAGE',
        'ARG GREETING',
        'COPY app/ /app/',
        'RUN echo "$GREETING" > /app/greeting',
        '',
      ].join('\n'),
    );
    mkdirSync(join(context, 'app', 'node_modules'), { recursive: true });
    writeFileSync(join(context, 'app', 'hello.txt'), 'one');
    writeFileSync(join(context, 'app', 'node_modules', 'big'), 'ignored');
    writeFileSync(join(context, 'app', 'keep.log'), 'kept');
    writeFileSync(join(context, 'app', 'drop.log'), 'dropped');
    writeFileSync(join(context, '.dockerignore'), '**/node_modules\n*/*.log\n!app/keep.log\n');
    const tag = `seahorse-test/build-check:${process.pid}`;
    const args = { BASE_IMAGE: base.tag, GREETING: 'hi' };
    const first = await buildImage(engine, context, 'Dockerfile', tag, args);
    assert.equal(first.built, true);
    assert.equal(await run(tag, ['cat', '/app/greeting', '/app/hello.txt', '/app/keep.log']), 'hi\nonekept');
    assert.equal(await run(tag, ['ls', '/app']), 'greeting\nhello.txt\nkeep.log\n');
    assert.equal(await run(tag, ['ls', '/tmp']), '', 'the CA stays in the build stage');

    const unchanged = await buildImage(engine, context, 'Dockerfile', tag, args);
    assert.deepEqual({ built: unchanged.built, id: unchanged.id }, { built: false, id: first.id });
    writeFileSync(join(context, 'app', 'node_modules', 'big'), 'changed but ignored');
    writeFileSync(join(context, 'app', 'drop.log'), 'changed but ignored');
    assert.equal((await buildImage(engine, context, 'Dockerfile', tag, args)).built, false);

    writeFileSync(join(context, 'app', 'hello.txt'), 'two');
    const changed = await buildImage(engine, context, 'Dockerfile', tag, args);
    assert.equal(changed.built, true);
    assert.equal(await run(tag, ['cat', '/app/hello.txt']), 'two');
    const otherArgs = await buildImage(engine, context, 'Dockerfile', tag, { ...args, GREETING: 'yo' });
    assert.equal(otherArgs.built, true);
    // Back to the first content: found by its content tag, re-tagged, not rebuilt.
    writeFileSync(join(context, 'app', 'hello.txt'), 'one');
    const back = await buildImage(engine, context, 'Dockerfile', tag, args);
    assert.deepEqual({ built: back.built, id: back.id }, { built: false, id: first.id });
    assert.equal(await run(tag, ['cat', '/app/hello.txt']), 'one');
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
});

test('buildImage names the failing step', async () => {
  const base = await baseImage(engine);
  const context = mkdtempSync(join(tmpdir(), 'seahorse-build-'));
  try {
    writeFileSync(join(context, 'Dockerfile'), 'ARG BASE_IMAGE\nFROM $BASE_IMAGE\nRUN exit 7\n');
    await assert.rejects(
      buildImage(engine, context, 'Dockerfile', `seahorse-test/fails:${process.pid}`, {
        BASE_IMAGE: base.tag,
      }),
      /returned a non-zero code: 7/,
    );
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
});

test('singleuserImage runs stock jupyterhub-singleuser as jovyan', async () => {
  const image = await singleuserImage(engine);
  assert.match(await run(image.tag, ['jupyterhub-singleuser', '--version']), /^\d+\.\d+/);
  assert.equal(await run(image.tag, ['sh', '-c', 'id -un; echo $HOME']), 'jovyan\n/home/jovyan\n');
  assert.equal((await singleuserImage(engine)).built, false);
});
