// Every image of the workspace, built on the local Debian base (scripts/images.ts, cached by
// content: a warm run builds nothing) and run for real on the test engine: as its non-root user,
// with a read-only root filesystem and no capabilities, answering its probe.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type Dockerd, freePort, startDockerd, waitFor } from '@seahorse/runtime/testing';
import { type BuiltImage, buildImages, type ImageName, imageTags } from '../../../scripts/images.ts';

let engine: Dockerd;
let images: Map<ImageName, BuiltImage>;
const containers: string[] = [];
const dirs: string[] = [];

before(async () => {
  engine = await startDockerd();
  images = await buildImages(engine);
});

after(async () => {
  for (const id of containers) {
    try {
      engine.docker(['rm', '-f', '-v', id]);
    } catch {
      // already gone
    }
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  await engine?.stop();
});

/** `docker run -d` locked down as a deployment should run it; returns the container id. */
function run(image: string, args: string[], options: string[] = []): string {
  const id = engine
    .docker([
      'run',
      '-d',
      '--network',
      'host',
      '--read-only',
      '--cap-drop',
      'ALL',
      '--security-opt',
      'no-new-privileges',
      ...options,
      image,
      ...args,
    ])
    .trim();
  containers.push(id);
  return id;
}

interface Inspected {
  State: { Pid: number; Running: boolean; ExitCode: number };
  Config: { User: string; Healthcheck?: { Test: string[] } };
  HostConfig: { ReadonlyRootfs: boolean };
}

function inspect(id: string): Inspected {
  return (JSON.parse(engine.docker(['inspect', id])) as Inspected[])[0]!;
}

/** The real uid and gid of the container's main process, from the host's /proc. */
function processIds(id: string): { uid: number; gid: number } {
  const status = readFileSync(`/proc/${inspect(id).State.Pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1]);
  return { uid: field('Uid'), gid: field('Gid') };
}

async function probe(what: string, id: string, url: string): Promise<Response> {
  return waitFor(
    what,
    async () => {
      const state = inspect(id).State;
      if (!state.Running) {
        throw Object.assign(new Error(`container exited ${state.ExitCode}: ${engine.docker(['logs', id])}`), {
          fatal: true,
        });
      }
      const res = await fetch(url);
      return res.status === 200 ? res : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
}

function assertLockedDown(id: string, uid: number): void {
  const info = inspect(id);
  assert.equal(info.HostConfig.ReadonlyRootfs, true);
  assert.deepEqual(processIds(id), { uid, gid: uid === 65534 ? 65534 : 100 });
}

test('the proxy image runs as nobody on a read-only root and answers /_chp_healthz and its API', async () => {
  const [port, apiPort] = [await freePort(), await freePort()];
  const id = run(
    imageTags.proxy,
    ['--ip=127.0.0.1', `--port=${port}`, '--api-ip=127.0.0.1', `--api-port=${apiPort}`],
    ['-e', 'CONFIGPROXY_AUTH_TOKEN=images-test-token'],
  );
  await probe('proxy health', id, `http://127.0.0.1:${port}/_chp_healthz`);
  assertLockedDown(id, 65534);
  const routes = await fetch(`http://127.0.0.1:${apiPort}/api/routes`, {
    headers: { authorization: 'token images-test-token' },
  });
  assert.equal(routes.status, 200);
  assert.equal((await fetch(`http://127.0.0.1:${apiPort}/api/routes`)).status, 403);
  assert.ok(inspect(id).Config.Healthcheck?.Test.join(' ').includes('/_chp_healthz'));
});

test('the hub image runs as nobody on a read-only root (SQLite in its /data volume) and answers /hub/health', async () => {
  const [proxyPort, apiPort, hubPort] = [await freePort(), await freePort(), await freePort()];
  const token = 'images-test-token';
  run(
    imageTags.proxy,
    ['--ip=127.0.0.1', `--port=${proxyPort}`, '--api-ip=127.0.0.1', `--api-port=${apiPort}`],
    ['-e', `CONFIGPROXY_AUTH_TOKEN=${token}`],
  );
  const dir = mkdtempSync(join(tmpdir(), 'images-hub-'));
  dirs.push(dir);
  chmodSync(dir, 0o755);
  writeFileSync(
    join(dir, 'hub.yaml'),
    [
      'JupyterHub:',
      `  bind_url: http://127.0.0.1:${proxyPort}`,
      `  hub_bind_url: http://127.0.0.1:${hubPort}`,
      '  db_url: sqlite:////data/jupyterhub.sqlite',
      'ConfigurableHTTPProxy:',
      '  should_start: false',
      `  api_url: http://127.0.0.1:${apiPort}`,
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  const id = run(
    imageTags.hub,
    ['--config', '/etc/seahorse/hub.yaml'],
    [
      '-v',
      `${dir}/hub.yaml:/etc/seahorse/hub.yaml:ro`,
      '-e',
      `CONFIGPROXY_AUTH_TOKEN=${token}`,
      '-e',
      'JUPYTER_PASSWORD=images-test-password',
    ],
  );
  await probe('hub health', id, `http://127.0.0.1:${hubPort}/hub/health`);
  assertLockedDown(id, 65534);
  // The hub programmed the proxy: its login page answers through the proxy.
  const login = await waitFor('the hub through the proxy', async () => {
    const res = await fetch(`http://127.0.0.1:${proxyPort}/hub/login`);
    return res.status === 200 ? res : undefined;
  });
  assert.match(await login.text(), /<form/);
});

test('the metrics-proxy-hook image runs its sidecar as nobody on a read-only root, proxying the metrics', async (t) => {
  const target = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end('# TYPE images_test_total counter\nimages_test_total 7\n');
  });
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  t.after(() => target.close());
  const address = target.address();
  const targetPort = typeof address === 'object' && address ? address.port : 0;
  const port = await freePort();
  const id = run(imageTags['metrics-proxy-hook'], [
    'sidecar',
    `--target=http://127.0.0.1:${targetPort}/metrics`,
    `--address=127.0.0.1:${port}`,
  ]);
  const res = await probe('sidecar metrics', id, `http://127.0.0.1:${port}/metrics`);
  assert.match(await res.text(), /^images_test_total 7$/m);
  assertLockedDown(id, 65534);
});

test('the embedding-gateway image runs as nobody on a read-only root (store in its volume) and answers /healthz', async () => {
  const port = await freePort();
  const id = run(imageTags['embedding-gateway'], [], ['-e', 'HOST=127.0.0.1', '-e', `PORT=${port}`]);
  await probe('gateway health', id, `http://127.0.0.1:${port}/healthz`);
  assertLockedDown(id, 65534);
  // The image's HEALTHCHECK follows PORT: run it as Docker would.
  const check = inspect(id).Config.Healthcheck?.Test ?? [];
  assert.equal(check[0], 'CMD');
  engine.docker(['exec', id, ...check.slice(1)]);
});

test("seed 002's single-user image runs jupyterhub-singleuser's stack as jovyan (uid 1000) with the data-science and SQL packages", async () => {
  const port = await freePort();
  const modules =
    'pandas, numpy, scipy, sklearn, matplotlib, seaborn, plotly, statsmodels, sqlalchemy, psycopg2, httpx';
  const imports = engine.docker([
    'run',
    '--rm',
    '--network',
    'host',
    '--read-only',
    '--tmpfs',
    '/tmp',
    imageTags.singleuser,
    'python3',
    '-c',
    `import ${modules}; import os; print(os.getuid(), os.getcwd())`,
  ]);
  assert.equal(imports.trim(), '1000 /home/jovyan');
  assert.match(
    engine.docker(['run', '--rm', imageTags.singleuser, 'jupyterhub-singleuser', '--version']),
    /^\d+\.\d+/,
  );
  // The notebook server (Debian's: the classic one) on a read-only root, with the home as a volume (as the hub mounts it).
  const id = run(
    imageTags.singleuser,
    [
      'python3',
      '-m',
      'notebook',
      '--ip=127.0.0.1',
      `--port=${port}`,
      '--NotebookApp.token=images-test',
      '--no-browser',
    ],
    ['-v', '/home/jovyan', '--tmpfs', '/tmp'],
  );
  const status = await probe('notebook server', id, `http://127.0.0.1:${port}/api/status?token=images-test`);
  assert.equal(typeof ((await status.json()) as { started?: string }).started, 'string');
  assertLockedDown(id, 1000);
});

test('every image reports its size', () => {
  for (const image of images.values())
    assert.ok(image.size > 50e6 && image.size < 3e9, `${image.tag}: ${image.size}`);
});

test("no runtime image carries the build stage's CA bundle, npm's cache or a stack.env", () => {
  for (const name of ['proxy', 'hub', 'metrics-proxy-hook', 'embedding-gateway'] as const) {
    const found = engine.docker([
      'run',
      '--rm',
      '--read-only',
      '--entrypoint',
      'sh',
      imageTags[name],
      '-c',
      'command -v find >/dev/null || echo no find; find / -xdev \\( -name seahorse-npm-ca.crt -o -name stack.env -o -path /root/.npm -o -path /tmp/ca \\) 2>/dev/null; true',
    ]);
    assert.equal(found.trim(), '', `${name}: ${found}`);
  }
});
