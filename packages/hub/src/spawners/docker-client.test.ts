// The Engine client against hostile or broken engines: a real HTTP server on a unix socket that
// answers garbage, too much, nothing at all, or closes mid-answer; plus the pure parts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DockerClient, demultiplex, dockerSocketFromEnv, splitImage } from './docker-client.ts';
import { DockerApiError, DockerConfigError, DockerEngineUnavailableError } from './docker-errors.ts';

async function fakeEngine(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-engine-'));
  const socketPath = join(dir, 'docker.sock');
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    client: new DockerClient({ socketPath, requestTimeoutMs: 500 }),
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('a socket nobody listens on is an unavailable engine, named with its path and reason', async () => {
  const client = new DockerClient({ socketPath: '/nonexistent/docker.sock' });
  await assert.rejects(client.ping(), (error: unknown) => {
    assert.ok(error instanceof DockerEngineUnavailableError);
    assert.equal(error.code, 'HUB_DOCKER_ENGINE_DOWN');
    assert.match(error.message, /unix:\/\/\/nonexistent\/docker\.sock \(ENOENT\)/);
    return true;
  });
});

test('an engine that never answers times out as unavailable; one that closes mid-answer too', async () => {
  const engine = await fakeEngine((req, res) => {
    if (req.url?.includes('/_ping')) return; // hangs
    res.writeHead(200, { 'content-length': '100' });
    res.write('{"Id":');
    res.destroy();
  });
  try {
    await assert.rejects(engine.client.inspectContainer('x'), DockerEngineUnavailableError);
    const started = Date.now();
    await assert.rejects(engine.client.ping(), /no answer within/);
    assert.ok(Date.now() - started < 6000);
  } finally {
    await engine.close();
  }
});

test('garbage, oversized and id-less answers are refused with the engine’s words, never parsed blindly', async () => {
  const engine = await fakeEngine((req, res) => {
    if (req.url?.includes('/containers/create')) {
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end('{"Id":"../../etc/passwd"}');
    } else if (req.url?.includes('/images/')) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'x'.repeat(10_000) }));
    } else if (req.url?.includes('/logs')) {
      res.writeHead(200);
      // 9 MiB: more than any answer the spawner reads.
      const chunk = Buffer.alloc(1024 * 1024, 0x61);
      for (let i = 0; i < 9; i++) res.write(chunk);
      res.end();
    } else if (req.url?.includes('/exec')) {
      res.writeHead(201);
      res.end('not json');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  try {
    await assert.rejects(engine.client.createContainer('n', {}), /holds no container id/);
    await assert.rejects(engine.client.inspectImage('i'), (error: unknown) => {
      assert.ok(error instanceof DockerApiError);
      assert.ok(error.engineMessage.length <= 2000);
      return true;
    });
    assert.deepEqual(await engine.client.logs('c', 5), [], 'an oversized answer is dropped');
    await assert.rejects(engine.client.exec('c', ['true']), /other than JSON/);
    assert.equal(await engine.client.inspectContainer('gone'), undefined);
  } finally {
    await engine.close();
  }
});

test('a pull’s progress lines are passed on one by one; an error line in the 200 stream fails the pull', async () => {
  const engine = await fakeEngine((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const fromImage = new URL(req.url ?? '/', 'http://x').searchParams.get('fromImage');
    res.write('{"status":"Pulling from x","id":"1"}\n{"status":"Downloading","id":"a",');
    setTimeout(() => {
      res.write('"progressDetail":{"current":5,"total":10}}\nnot json\n');
      if (fromImage === 'bad') res.write('{"error":"manifest unknown"}\n');
      res.end('{"status":"Pull complete","id":"a"}');
    }, 20);
  });
  try {
    const lines: unknown[] = [];
    await engine.client.pullImage('good:1', (line) => lines.push(line));
    assert.deepEqual(lines, [
      { status: 'Pulling from x', id: '1' },
      { status: 'Downloading', id: 'a', progressDetail: { current: 5, total: 10 } },
      { status: 'Pull complete', id: 'a' },
    ]);
    await assert.rejects(
      engine.client.pullImage('bad', () => undefined),
      /manifest unknown/,
    );
  } finally {
    await engine.close();
  }
});

test('DOCKER_HOST: unix sockets only, the CLI’s default when unset', () => {
  assert.equal(dockerSocketFromEnv({}), '/var/run/docker.sock');
  assert.equal(dockerSocketFromEnv({ DOCKER_HOST: 'unix:///run/d.sock' }), '/run/d.sock');
  assert.throws(() => dockerSocketFromEnv({ DOCKER_HOST: 'tcp://10.0.0.1:2375' }), DockerConfigError);
  assert.throws(() => dockerSocketFromEnv({ DOCKER_HOST: 'unix://relative.sock' }), DockerConfigError);
});

test('image references split as docker-py splits them', () => {
  assert.deepEqual(splitImage('quay.io/jupyterhub/singleuser:4'), {
    repo: 'quay.io/jupyterhub/singleuser',
    tag: '4',
  });
  assert.deepEqual(splitImage('registry:5000/name'), { repo: 'registry:5000/name', tag: 'latest' });
  assert.deepEqual(splitImage('a/b@sha256:00'), { repo: 'a/b', tag: 'sha256:00' });
});

test('demultiplex reads the engine’s framed output and survives truncated or unframed bodies', () => {
  const frame = (stream: number, text: string) => {
    const payload = Buffer.from(text);
    const header = Buffer.alloc(8);
    header[0] = stream;
    header.writeUInt32BE(payload.length, 4);
    return Buffer.concat([header, payload]);
  };
  assert.equal(demultiplex(Buffer.concat([frame(1, 'out\n'), frame(2, 'err\n')])).toString(), 'out\nerr\n');
  assert.equal(demultiplex(Buffer.from('plain tty output')).toString(), 'plain tty output');
  const truncated = Buffer.concat([frame(1, 'whole\n'), frame(2, 'cut off here').subarray(0, 12)]);
  assert.equal(demultiplex(truncated).toString(), 'whole\ncut ');
  const lying = frame(1, 'x');
  lying.writeUInt32BE(0xffffffff, 4);
  assert.equal(demultiplex(lying).toString(), 'x');
});

test('a 200 answer of garbage, null, a list or an id-less object is a DockerApiError, never a TypeError', async () => {
  const bodies = ['not json', 'null', '[1]', '{"State":{"Running":true}}', '{"Id":"../x"}', '{'];
  let next = 0;
  const engine = await fakeEngine((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(bodies[next++ % bodies.length]);
  });
  try {
    for (let i = 0; i < bodies.length; i++) {
      await assert.rejects(engine.client.inspectContainer('c'), DockerApiError, bodies[i]);
    }
    next = 0;
    await assert.rejects(engine.client.inspectImage('i'), /other than JSON/);
    await assert.rejects(engine.client.inspectImage('i'), /not an object/);
    await assert.rejects(engine.client.inspectImage('i'), /not an object/);
    next = 0;
    await assert.rejects(engine.client.createContainer('n', {}), DockerApiError);
  } finally {
    await engine.close();
  }
});
