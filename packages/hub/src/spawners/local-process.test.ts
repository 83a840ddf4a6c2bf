import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createLogger } from '@seahorse/runtime';
import { LogCapture, waitFor } from '@seahorse/runtime/testing';
import {
  createLocalProcessSpawner,
  defaultLocalProcessOptions,
  type LocalProcessOptions,
} from './local-process.ts';
import { descendants, groupLeaderWritingTo, groupMembers, processAlive } from './processes.ts';
import type { JsonObject, ProgressEvent, ServerSpec, Spawner } from './spawner.ts';
import { SpawnCommandError, SpawnExitedError, SpawnStateError, SpawnTimeoutError } from './spawner-errors.ts';

const tinyServer = fileURLToPath(new URL('../../test/fixtures/tiny-server.py', import.meta.url));
const python = '/usr/bin/python3';
const workDir = mkdtempSync(join(tmpdir(), 'seahorse-hubspawn-'));

/** Every spawner a test made, stopped at the end even when the test failed. */
const spawners: Spawner[] = [];
after(async () => {
  await Promise.all(spawners.map((s) => s.stop(true)));
  rmSync(workDir, { recursive: true, force: true });
});

function spec(hubApiUrl = 'http://127.0.0.1:9/hub/api', name = 'alice', serverName = ''): ServerSpec {
  const prefix = serverName ? `/user/${name}/${serverName}/` : `/user/${name}/`;
  return {
    user: { name, admin: false, groups: [] },
    serverName,
    apiToken: 'server-token-0123456789',
    oauthClientId: serverName ? `jupyterhub-user-${name}-${serverName}` : `jupyterhub-user-${name}`,
    hubApiUrl,
    baseUrl: '/',
    servicePrefix: prefix,
    oauthCallbackUrl: `${prefix}oauth_callback`,
    oauthScopes: [`access:servers!server=${name}/${serverName}`, `access:servers!user=${name}`],
    oauthAccessScopes: [`access:servers!server=${name}/${serverName}`, `access:servers!user=${name}`],
    activityUrl: `${hubApiUrl}/users/${name}/activity`,
    userOptions: {},
  };
}

interface Started {
  spawner: Spawner;
  logs: LogCapture;
  progress: ProgressEvent[];
}

function makeSpawner(
  options: Partial<LocalProcessOptions>,
  serverSpec: ServerSpec = spec(),
  state: JsonObject | null = null,
): Started {
  const logs = new LogCapture();
  const progress: ProgressEvent[] = [];
  const spawner = createLocalProcessSpawner(
    {
      spec: serverSpec,
      state,
      log: createLogger({ name: 'hub', level: 'debug', destination: logs }),
      progress: (event) => progress.push(event),
    },
    { ...defaultLocalProcessOptions, termTimeoutMs: 3000, outputDir: join(workDir, 'output'), ...options },
  );
  spawners.push(spawner);
  return { spawner, logs, progress };
}

const tiny = (mode: string): Partial<LocalProcessOptions> => ({
  cmd: [python, tinyServer],
  args: [mode],
  httpTimeoutMs: 30_000,
  startTimeoutMs: 60_000,
});

async function getJson(url: string, headers: Record<string, string> = {}): Promise<Record<string, string>> {
  const res = await fetch(url, { headers });
  assert.equal(res.status, 200, `${url}: ${res.status}`);
  return (await res.json()) as Record<string, string>;
}

test('a tiny server starts on a free port with the JupyterHub environment and stops with SIGTERM', async () => {
  const { spawner, logs, progress } = makeSpawner({
    ...tiny('serve'),
    environment: { DATA: '/data/{user}' },
    notebookDir: join(workDir, 'nb-{username}'),
  });
  const url = await spawner.start();
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const seen = await getJson(`${url}/user/alice/api/status`);
  assert.equal(seen.path, '/user/alice/api/status');
  assert.equal(seen.JUPYTERHUB_SERVICE_URL, `${url}/user/alice/`);
  assert.equal(seen.JUPYTERHUB_SERVICE_PREFIX, '/user/alice/');
  assert.equal(seen.JUPYTERHUB_USER, 'alice');
  assert.equal(seen.JUPYTERHUB_ROOT_DIR, join(workDir, 'nb-alice'));
  assert.equal(seen.cwd, join(workDir, 'nb-alice'), 'the server runs in its notebook_dir');
  const state = spawner.state() as { pid: number; port: number; url: string };
  assert.equal(state.url, url);
  assert.equal(state.port, Number(new URL(url).port));
  assert.equal(await spawner.poll(), null);
  assert.ok(progress.length >= 2 && progress.every((e) => e.progress > 0 && e.progress < 100));
  assert.ok(progress.some((e) => e.message.includes(String(state.pid))));
  await waitFor('the output line in the log', () =>
    logs.lines.some(
      (l) =>
        l.msg === 'server output' &&
        l.user === 'alice' &&
        l.server === '' &&
        /tiny-server/.test(String(l.line)),
    ),
  );
  assert.ok(!logs.text.includes('server-token-0123456789'), 'the API token is never logged');

  await spawner.stop();
  assert.equal(processAlive(state.pid), false);
  assert.deepEqual(groupMembers(state.pid), []);
  assert.equal(await spawner.poll(), -15, 'exit status as Popen reports a SIGTERM');
  assert.deepEqual(spawner.state(), {});
});

test('a command that is not installed fails at once saying so', async () => {
  const { spawner } = makeSpawner({ cmd: ['no-such-singleuser-command-xyz'] });
  await assert.rejects(
    spawner.start(),
    (error: unknown) =>
      error instanceof SpawnCommandError &&
      error.code === 'HUB_SPAWN_COMMAND' &&
      error.message.includes('no-such-singleuser-command-xyz') &&
      error.message.includes('not found on PATH'),
  );
  assert.equal(await spawner.poll(), 0);
  assert.deepEqual(spawner.state(), {});
  assert.deepEqual(
    readdirSync(join(workDir, 'output')).filter((f) => f.startsWith('alice.')),
    [],
    'no output file left',
  );
});

test('a server that exits while starting fails with its exit code and its last output lines', async () => {
  const { spawner } = makeSpawner(tiny('crash'));
  await assert.rejects(spawner.start(), (error: unknown) => {
    assert.ok(error instanceof SpawnExitedError, String(error));
    assert.equal(error.code, 'HUB_SPAWN_EXITED');
    assert.equal(error.exitCode, 3);
    assert.match(error.message, /exited with code 3/);
    assert.match(error.message, /something is badly configured/);
    return true;
  });
  assert.equal(await spawner.poll(), 3);
});

test('a server that never answers HTTP fails after http_timeout, and its process group is gone', async () => {
  const { spawner } = makeSpawner({ ...tiny('silent'), httpTimeoutMs: 1500 });
  let pid = 0;
  const started = spawner.start();
  await waitFor('the process to run', () => {
    pid = (spawner.state() as { pid?: number }).pid ?? 0;
    return pid;
  });
  await assert.rejects(started, (error: unknown) => {
    assert.ok(error instanceof SpawnTimeoutError, String(error));
    assert.equal(error.timeout, 'http_timeout');
    assert.match(error.message, /within Spawner\.http_timeout \(1\.5 s\)/);
    assert.match(error.message, /tiny-server mode=silent/);
    return true;
  });
  assert.deepEqual(groupMembers(pid), []);
  assert.deepEqual(spawner.state(), {});
});

test('the whole start is bounded by start_timeout even when http_timeout is longer', async () => {
  const { spawner } = makeSpawner({ ...tiny('silent'), httpTimeoutMs: 60_000, startTimeoutMs: 1200 });
  await assert.rejects(
    spawner.start(),
    (error: unknown) =>
      error instanceof SpawnTimeoutError &&
      error.timeout === 'start_timeout' &&
      /Spawner\.start_timeout \(1\.2 s\)/.test(error.message),
  );
});

test('a server that ignores SIGTERM is killed after the grace, with its group and kernels in other sessions', async () => {
  const { spawner, logs } = makeSpawner({ ...tiny('stubborn'), termTimeoutMs: 700 });
  await spawner.start();
  const { pid } = spawner.state() as { pid: number };
  const pidOf = async (what: string) => {
    const line = await waitFor(`the ${what} pid`, () =>
      logs.lines.find((l) => String(l.line).startsWith(`${what} pid=`)),
    );
    return Number(String(line.line).split('=')[1]);
  };
  const helper = await pidOf('helper');
  const kernel = await pidOf('kernel');
  assert.equal(processAlive(kernel), true);
  assert.deepEqual(groupMembers(pid).sort(), [pid, helper].sort());
  assert.deepEqual(groupMembers(kernel), [kernel], 'the kernel leads a group of its own');
  await spawner.stop();
  assert.equal(processAlive(helper), false);
  assert.equal(processAlive(kernel), false, 'no orphan: the kernel in its own session is gone too');
  assert.deepEqual(groupMembers(pid), []);
  assert.ok(logs.has('killing server (SIGKILL)'));
  assert.equal(await spawner.poll(), -9);
});

test('a new spawner re-attaches to a running server by the PID in its state, polls it and stops it', async () => {
  const first = makeSpawner(tiny('serve'));
  const url = await first.spawner.start();
  const state = JSON.parse(JSON.stringify(first.spawner.state())) as JsonObject;
  // A restarted hub: a fresh spawner with the persisted state; the process is not its child.
  const second = makeSpawner(tiny('serve'), spec(), state);
  assert.deepEqual(second.spawner.state(), state);
  assert.equal(await second.spawner.poll(), null);
  await getJson(`${url}/user/alice/`);
  await assert.rejects(second.spawner.start(), SpawnStateError);
  await second.spawner.stop();
  assert.equal(processAlive(state.pid as number), false);
  assert.equal(await second.spawner.poll(), 0);
  assert.deepEqual(second.spawner.state(), {});
  await waitFor('the first handle to see the exit', async () => (await first.spawner.poll()) !== null);
});

test('a server outlives the hub process that started it; a new hub re-attaches, follows its output, stops it', async () => {
  const startAndExit = fileURLToPath(new URL('../../test/fixtures/start-and-exit.ts', import.meta.url));
  const options = { ...defaultLocalProcessOptions, ...tiny('serve'), outputDir: join(workDir, 'output') };
  const oldHub = spawnSync(
    process.execPath,
    ['--conditions=seahorse-source', startAndExit, JSON.stringify({ spec: spec(), options })],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(oldHub.status, 0, oldHub.stderr);
  const state = JSON.parse(oldHub.stdout.trim().split('\n').pop()!) as JsonObject;
  assert.equal(typeof state.pid, 'number');
  assert.match(String(state.output), /\/output\/alice\.[0-9a-f]{12}\.log$/);
  assert.ok(existsSync(String(state.output)));

  const { spawner, logs } = makeSpawner(options, spec(), state);
  try {
    assert.equal(await spawner.poll(), null);
    // The hub may build a spawner from saved state for every poll: they share one follower.
    for (let i = 0; i < 10; i++) assert.equal(await makeSpawner(options, spec(), state).spawner.poll(), null);
    assert.equal(openDescriptorsOf(String(state.output)), 1);
    // The server writes a line per request; with its output on a pipe of the dead hub, it would fail.
    for (let i = 0; i < 3; i++) await getJson(`${state.url}/user/alice/after-restart-${i}`);
    await waitFor('the new hub to log the output', () =>
      logs.lines.some((l) => l.msg === 'server output' && /after-restart-2/.test(String(l.line))),
    );
  } finally {
    await spawner.stop();
  }
  assert.equal(processAlive(state.pid as number), false);
  assert.deepEqual(groupMembers(state.pid as number), []);
  assert.equal(existsSync(String(state.output)), false, 'the output file goes with the server');
  assert.equal(openDescriptorsOf(String(state.output)), 0, 'and nothing follows it any more');
});

test('stopping a server while it starts ends the start with HUB_SPAWN_STATE and leaves nothing running', async () => {
  const { spawner } = makeSpawner({ ...tiny('silent'), httpTimeoutMs: 60_000 });
  const starting = spawner.start();
  const pid = await waitFor('the process to run', () => (spawner.state() as { pid?: number }).pid);
  const rejected = assert.rejects(starting, (error: unknown) => {
    assert.ok(error instanceof SpawnStateError, String(error));
    assert.match(error.message, /stopped while it was starting/);
    return true;
  });
  await spawner.stop();
  await rejected;
  assert.deepEqual(groupMembers(pid), []);
  assert.deepEqual(spawner.state(), {});
});

/** How many of this process's descriptors are open on `path`. */
function openDescriptorsOf(path: string): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) count++;
    } catch {
      // closed meanwhile
    }
  }
  return count;
}

test('state whose PID is gone or now names another process polls as not running', async () => {
  const gone = makeSpawner({}, spec(), { pid: 2 ** 22 + 12345, port: 1, url: 'http://127.0.0.1:1' });
  assert.equal(await gone.spawner.poll(), 0);
  assert.deepEqual(gone.spawner.state(), {});
  // Our own PID is alive, but with another start time it is not the server that was recorded.
  const reused = makeSpawner({}, spec(), {
    pid: process.pid,
    port: 1,
    url: 'http://127.0.0.1:1',
    started: 1,
  });
  assert.equal(await reused.spawner.poll(), 0);
  await reused.spawner.stop();
  assert.equal(processAlive(process.pid), true, 'stop never signals a process that is not the server');
  // PID 1 is never a server (and a group signal to -1 would reach every process).
  assert.equal(
    await makeSpawner({}, spec(), { pid: 1, port: 1, url: 'http://127.0.0.1:1' }).spawner.poll(),
    0,
  );
});

test('the state is saved before the process exists, and names the output file the process then writes to', async () => {
  const saved: JsonObject[] = [];
  const outputDir = join(workDir, 'output');
  const spawner = createLocalProcessSpawner(
    {
      spec: spec(),
      state: null,
      log: createLogger({ name: 'hub', level: 'debug', destination: new LogCapture() }),
      progress: () => undefined,
      persist: async () => {
        const state = spawner.state();
        // Nothing runs yet that writes to the file the state names.
        assert.equal(groupLeaderWritingTo(String(state.output)), undefined);
        saved.push(state);
      },
    },
    { ...defaultLocalProcessOptions, ...tiny('serve'), termTimeoutMs: 3000, outputDir },
  );
  spawners.push(spawner);
  await spawner.start();
  assert.equal(saved.length, 1);
  assert.equal(saved[0]!.pid, undefined);
  assert.match(String(saved[0]!.output), /alice\.[0-9a-f]+\.log$/);
  // A spawner from that early state (its hub died before saving the PID) finds the server.
  const found = makeSpawner({}, spec(), saved[0]!);
  assert.equal(await found.spawner.poll(), null);
  assert.equal(found.spawner.state().pid, (spawner.state() as { pid: number }).pid);
  const pid = (spawner.state() as { pid: number }).pid;
  await found.spawner.stop(true);
  assert.equal(processAlive(pid), false);
  await waitFor('the starting spawner sees its server gone', async () => (await spawner.poll()) !== null);
  // Once gone, the same early state finds nothing: not running, and stop signals no one.
  const none = makeSpawner({}, spec(), saved[0]!);
  assert.equal(await none.spawner.poll(), 0);
  await none.spawner.stop(true);
  assert.equal(processAlive(process.pid), true);
});

test('a state naming an output file outside the output directory adopts, kills and deletes nothing', async () => {
  // An unrelated process group writing to a .log file of its own (a database's log, say).
  const victimLog = join(workDir, 'victim.log');
  const fd = openSync(victimLog, 'w');
  const victim = spawn('/bin/sleep', ['60'], { detached: true, stdio: ['ignore', fd, 'ignore'] });
  closeSync(fd);
  try {
    await waitFor('the victim writes to its log', async () => groupLeaderWritingTo(victimLog) !== undefined);
    const forged = makeSpawner({}, spec(), { output: victimLog, port: 1, url: 'http://127.0.0.1:1' });
    assert.equal(await forged.spawner.poll(), 0);
    await forged.spawner.stop(true);
    assert.equal(processAlive(victim.pid!), true, 'the unrelated process lives');
    // A recorded server long gone whose state names another file: that file stays.
    const other = join(workDir, 'precious');
    writeFileSync(other, 'keep');
    const gone = makeSpawner({}, spec(), {
      pid: 2 ** 22 + 12346,
      port: 1,
      url: 'http://127.0.0.1:1',
      output: other,
    });
    assert.equal(await gone.spawner.poll(), 0);
    await gone.spawner.stop(true);
    const climbing = join(workDir, 'output', '..', 'precious.log');
    writeFileSync(join(workDir, 'precious.log'), 'keep');
    const up = makeSpawner({}, spec(), {
      pid: 2 ** 22 + 12347,
      port: 1,
      url: 'http://127.0.0.1:1',
      output: climbing,
    });
    assert.equal(await up.spawner.poll(), 0);
    assert.equal(existsSync(other), true);
    assert.equal(existsSync(victimLog), true);
    assert.equal(existsSync(join(workDir, 'precious.log')), true);
  } finally {
    victim.kill('SIGKILL');
  }
});

test('a save refused before the spawn (the spawn taken over) starts no process', async () => {
  const outputDir = join(workDir, 'refused');
  const spawner = createLocalProcessSpawner(
    {
      spec: spec(),
      state: null,
      log: createLogger({ name: 'hub', level: 'debug', destination: new LogCapture() }),
      progress: () => undefined,
      persist: async () => {
        throw new Error('taken over');
      },
    },
    { ...defaultLocalProcessOptions, ...tiny('serve'), outputDir },
  );
  await assert.rejects(spawner.start(), /taken over/);
  assert.equal(await spawner.poll(), 0);
  assert.deepEqual(readdirSync(outputDir), [], 'no output file left');
});

test('starting a server that is already starting is refused', async () => {
  const { spawner } = makeSpawner(tiny('serve'));
  const first = spawner.start();
  await assert.rejects(spawner.start(), SpawnStateError);
  await first;
  await spawner.stop();
});

/** Plays the hub for the calls jupyterhub-singleuser makes: its version check, /user and activity. */
async function startFakeHub(token: string): Promise<{ server: Server; apiUrl: string; calls: string[] }> {
  const calls: string[] = [];
  const server = createServer((req, res) => {
    calls.push(`${req.method} ${req.url}`);
    req.resume();
    const reply = (status: number, body?: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'x-jupyterhub-version': '3.0.0' });
      res.end(body === undefined ? undefined : JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/hub/api') return reply(200, { version: '3.0.0' });
    if (req.method === 'POST' && req.url === '/hub/api/users/alice/activity') return reply(204);
    if (req.method === 'GET' && req.url?.startsWith('/hub/api/user')) {
      if (req.headers.authorization !== `token ${token}`) return reply(403, { status: 403, message: 'no' });
      return reply(200, {
        kind: 'user',
        name: 'alice',
        admin: false,
        groups: [],
        scopes: ['access:servers!server=alice/', 'access:servers!user=alice'],
        session_id: null,
      });
    }
    reply(404, { status: 404, message: 'Not Found' });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return { server, apiUrl: `http://127.0.0.1:${port}/hub/api`, calls };
}

test("Debian's jupyterhub-singleuser starts, answers through its prefix with the token, and stops with no orphan", async () => {
  const hub = await startFakeHub('server-token-0123456789');
  try {
    const notebooks = join(workDir, 'notebooks-{username}');
    const { spawner, logs } = makeSpawner(
      {
        // As root (these test machines), jupyterhub-singleuser wants the flag a root hub's config sets.
        args: process.getuid?.() === 0 ? ['--allow-root'] : [],
        httpTimeoutMs: 90_000,
        startTimeoutMs: 120_000,
        notebookDir: notebooks,
      },
      spec(hub.apiUrl),
    );
    const url = await spawner.start().catch((error: unknown) => {
      throw new Error(`${String(error)}\nlog:\n${logs.text.slice(-4000)}`);
    });
    const { pid } = spawner.state() as { pid: number };
    assert.ok(hub.calls.includes('GET /hub/api'), `the server checked the hub: ${hub.calls.join(', ')}`);
    const status = await getJson(`${url}/user/alice/api/status`, {
      authorization: 'token server-token-0123456789',
    });
    assert.equal(typeof status.started, 'string');
    assert.ok(logs.lines.some((l) => l.msg === 'server output' && l.user === 'alice'));
    // A kernel: Jupyter starts it in a session of its own, outside the server's process group.
    const res = await fetch(`${url}/user/alice/api/kernels`, {
      method: 'POST',
      headers: { authorization: 'token server-token-0123456789', 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(res.status, 201, await res.clone().text());
    const kernels = await waitFor('the kernel process', () => {
      const leaders = descendants(pid).filter((id) => groupMembers(id.pid).includes(id.pid));
      return leaders.length > 0 ? leaders : undefined;
    });
    await spawner.stop();
    assert.deepEqual(groupMembers(pid), [], 'the server is gone');
    for (const kernel of kernels) assert.equal(processAlive(kernel.pid), false, 'its kernels are gone');
    assert.notEqual(await spawner.poll(), null);
  } finally {
    hub.server.closeAllConnections();
    hub.server.close();
  }
});
