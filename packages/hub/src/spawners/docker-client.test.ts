// The Engine client against hostile or broken engines: a real HTTP server on a unix socket that
// answers garbage, too much, nothing at all, or closes mid-answer; plus the pure parts.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { issueCertificate, makeCertificateAuthority } from '@seahorse/runtime/testing';
import { DockerClient, demultiplex, splitImage } from './docker-client.ts';
import { dockerConnection, engineHostIp } from './docker-connection.ts';
import { DockerApiError, DockerConfigError, DockerEngineUnavailableError } from './docker-errors.ts';
import { checkDockerTrait } from './docker-options.ts';

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

test('DOCKER_HOST as the docker CLI reads it: unix sockets, tcp:// plain or with TLS from DOCKER_TLS_VERIFY and DOCKER_CERT_PATH', () => {
  assert.deepEqual(dockerConnection({}), { socketPath: '/var/run/docker.sock' });
  assert.deepEqual(dockerConnection({ DOCKER_HOST: 'unix:///run/d.sock' }), { socketPath: '/run/d.sock' });
  assert.throws(() => dockerConnection({ DOCKER_HOST: 'unix://relative.sock' }), /absolute path/);
  assert.throws(
    () => dockerConnection({ DOCKER_HOST: 'ssh://me@host' }),
    /ssh:\/\/ and npipe:\/\/ are not supported/,
  );
  assert.throws(() => dockerConnection({ DOCKER_HOST: 'tcp://h:2376/path?x' }), /nothing after the port/);
  assert.throws(() => dockerConnection({ DOCKER_HOST: 'not a url' }), DockerConfigError);
  // Plain TCP: neither DOCKER_TLS_VERIFY nor DOCKER_CERT_PATH (an empty value is unset), port 2375 by default.
  assert.deepEqual(dockerConnection({ DOCKER_HOST: 'tcp://10.0.0.1:2375' }), {
    tcp: { host: '10.0.0.1', port: 2375 },
  });
  assert.deepEqual(
    dockerConnection({ DOCKER_HOST: 'tcp://engine', DOCKER_TLS_VERIFY: '', DOCKER_CERT_PATH: '' }),
    {
      tcp: { host: 'engine', port: 2375 },
    },
  );
  assert.deepEqual(dockerConnection({ DOCKER_HOST: 'tcp://[::1]:2375' }), {
    tcp: { host: '::1', port: 2375 },
  });
  // DockerSpawner's host_ip default: the engine's host, where it publishes the servers' ports.
  assert.equal(engineHostIp(dockerConnection({ DOCKER_HOST: 'tcp://10.0.0.5:2375' })), '10.0.0.5');
  assert.equal(engineHostIp(dockerConnection({ DOCKER_HOST: 'tcp://engine.internal:2375' })), undefined);
  assert.equal(engineHostIp(dockerConnection({ DOCKER_HOST: 'unix:///run/d.sock' })), undefined);

  const dir = mkdtempSync(join(tmpdir(), 'seahorse-certs-'));
  try {
    // A CA's own certificate serves as CA and client certificate: here only its reading is tested.
    const ca = makeCertificateAuthority(dir);
    writeFileSync(join(dir, 'ca.pem'), ca.cert);
    writeFileSync(join(dir, 'cert.pem'), ca.cert);
    writeFileSync(join(dir, 'key.pem'), ca.key);
    const pem = (name: string) => readFileSync(join(dir, name));
    // DOCKER_TLS_VERIFY (any value, "0" too, as docker-py and the CLI): TLS, the engine checked against ca.pem; port 2376.
    for (const verify of ['1', '0', 'yes']) {
      const verified = dockerConnection({
        DOCKER_HOST: 'tcp://engine',
        DOCKER_TLS_VERIFY: verify,
        DOCKER_CERT_PATH: dir,
      });
      assert.equal(verified.tcp?.port, 2376);
      assert.equal(verified.tcp?.tls?.verify, true);
      assert.deepEqual(verified.tcp?.tls?.ca, pem('ca.pem'));
      assert.deepEqual(verified.tcp?.tls?.cert, pem('cert.pem'));
      assert.deepEqual(verified.tcp?.tls?.key, pem('key.pem'));
      assert.equal(verified.tcp?.tls?.source, `DOCKER_CERT_PATH (${dir})`);
    }
    // DOCKER_CERT_PATH alone: TLS with the client certificate, the engine not checked (docker-py's verify=False).
    const encrypted = dockerConnection({ DOCKER_HOST: 'tcp://engine:1234', DOCKER_CERT_PATH: dir });
    assert.equal(encrypted.tcp?.port, 1234);
    assert.equal(encrypted.tcp?.tls?.verify, false);
    assert.equal(encrypted.tcp?.tls?.ca, undefined);
    assert.deepEqual(encrypted.tcp?.tls?.cert, pem('cert.pem'));
    // tls_config first, the environment over it, client_kwargs over both (DockerSpawner's order).
    const fromConfig = dockerConnection(
      { DOCKER_HOST: 'tcp://engine:2376' },
      {
        tls_config: {
          ca_cert: join(dir, 'ca.pem'),
          client_cert: [join(dir, 'cert.pem'), join(dir, 'key.pem')],
          verify: true,
          assert_hostname: 'docker.internal',
        },
        client_kwargs: {},
      },
    );
    assert.equal(fromConfig.tcp?.tls?.verify, true);
    assert.equal(fromConfig.tcp?.tls?.hostname, 'docker.internal');
    assert.equal(fromConfig.tcp?.tls?.source, 'DockerSpawner.tls_config');
    const kwargs = dockerConnection(
      { DOCKER_HOST: 'unix:///run/d.sock', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: dir },
      { tls_config: {}, client_kwargs: { base_url: 'tcp://other:2376', timeout: 5 } },
    );
    assert.equal(kwargs.tcp?.host, 'other');
    assert.equal(kwargs.tcp?.tls?.verify, true);
    assert.equal(kwargs.requestTimeoutMs, 5000);
    assert.deepEqual(
      dockerConnection(
        { DOCKER_HOST: 'tcp://e:2376', DOCKER_CERT_PATH: dir },
        { tls_config: {}, client_kwargs: { tls: false } },
      ),
      { tcp: { host: 'e', port: 2376 } },
    );
    // tls_config's verify as a CA path, and ca_cert too: ca_cert is the CA (docker-py's configure_client).
    const bothCas = dockerConnection(
      { DOCKER_HOST: 'tcp://engine:2376' },
      {
        tls_config: { verify: join(dir, 'no-such-ca.pem'), ca_cert: join(dir, 'ca.pem') },
        client_kwargs: {},
      },
    );
    assert.equal(bothCas.tcp?.tls?.caPath, join(dir, 'ca.pem'));
    assert.deepEqual(bothCas.tcp?.tls?.ca, pem('ca.pem'));
    assert.equal(
      dockerConnection(
        { DOCKER_HOST: 'tcp://engine:2376' },
        { tls_config: { verify: join(dir, 'ca.pem') }, client_kwargs: {} },
      ).tcp?.tls?.caPath,
      join(dir, 'ca.pem'),
    );
    // https:// is TLS even with client_kwargs.tls false (docker-py's parse_host): never plain HTTP.
    assert.deepEqual(
      dockerConnection(
        {},
        { tls_config: {}, client_kwargs: { base_url: 'https://engine.internal', tls: false } },
      ),
      {
        tcp: {
          host: 'engine.internal',
          port: 2376,
          tls: { verify: true, source: 'DockerSpawner.client_kwargs.base_url' },
        },
      },
    );
    // A missing CA while verifying stops the hub, naming the file and DOCKER_CERT_PATH.
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    assert.throws(
      () =>
        dockerConnection({ DOCKER_HOST: 'tcp://engine', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: empty }),
      new RegExp(
        `cannot read the CA certificate ${empty}/ca.pem from DOCKER_CERT_PATH \\(${empty}\\) \\(ENOENT\\)`,
      ),
    );
    writeFileSync(join(empty, 'cert.pem'), pem('cert.pem'));
    assert.throws(
      () => dockerConnection({ DOCKER_HOST: 'tcp://engine', DOCKER_CERT_PATH: empty }),
      /has cert.pem but no key.pem/,
    );
    // Files that are not what their names say stop the hub at start, not at the first spawn.
    writeFileSync(join(empty, 'key.pem'), 'not a key');
    assert.throws(
      () => dockerConnection({ DOCKER_HOST: 'tcp://engine', DOCKER_CERT_PATH: empty }),
      new RegExp(`the PEM files from DOCKER_CERT_PATH \\(${empty}\\) are not usable`),
    );
    writeFileSync(join(empty, 'key.pem'), pem('key.pem'));
    writeFileSync(join(empty, 'ca.pem'), 'garbage');
    assert.throws(
      () =>
        dockerConnection({ DOCKER_HOST: 'tcp://engine', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: empty }),
      /are not usable/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('malformed tls_config and client_kwargs stop the hub at start; unsupported keywords are named', () => {
  assert.throws(() => checkDockerTrait('tls_config', { client_cert: 'cert.pem' }), /\[cert.pem, key.pem\]/);
  assert.throws(
    () => checkDockerTrait('tls_config', { ssl_version: 2 }),
    /"ssl_version" is not supported; the Docker spawner maps client_cert, ca_cert, verify, assert_hostname/,
  );
  assert.throws(
    () => checkDockerTrait('client_kwargs', { use_ssh_client: true }),
    /"use_ssh_client" is not supported/,
  );
  assert.throws(() => checkDockerTrait('client_kwargs', { version: '1.24' }), /'auto' or '1.41'/);
  assert.throws(
    () => checkDockerTrait('client_kwargs', { base_url: 'ftp://x' }),
    /unix:\/\/\/path or tcp:\/\/host:port/,
  );
  assert.deepEqual(checkDockerTrait('client_kwargs', { timeout: 60, version: 'auto' }), {
    timeout: 60,
    version: 'auto',
  });
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

test('over TLS, an engine that ends a connection it already answered on is an unavailable engine, not a refused certificate; garbage is named as not HTTP', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-tls-engine-'));
  const cert = makeCertificateAuthority(dir).cert;
  const engine = issueCertificate(dir, 'engine');
  // The engine answers the first request on a connection, and dies (the connection reset) during
  // the next one, or after the head of its answer; or answers with something that is not HTTP.
  let requests = 0;
  const server = createHttpsServer(engine, (req, res) => {
    requests++;
    if (req.url?.includes('/_ping')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('OK');
    } else if (req.url?.includes('/logs')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write('partial');
      setTimeout(() => req.socket.destroy(), 20);
    } else if (req.url?.includes('/garbage')) req.socket.end('garbage, not HTTP\r\n\r\n');
    else req.socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const client = new DockerClient({
    tcp: { host: '127.0.0.1', port, tls: { verify: true, ca: cert, source: 'DOCKER_CERT_PATH (/certs)' } },
    requestTimeoutMs: 2000,
  });
  try {
    await client.ping();
    // The same (kept-alive) connection: it got past TLS before, so its reset is the engine's.
    await assert.rejects(client.inspectContainer('c'), (error: unknown) => {
      assert.ok(error instanceof DockerEngineUnavailableError, String(error));
      assert.match(error.message, /tcp:\/\/127\.0\.0\.1:\d+ \(ECONNRESET\)/);
      return true;
    });
    // A new connection whose answer had begun.
    await assert.rejects(client.request('GET', '/containers/c/logs'), DockerEngineUnavailableError);
    // Not HTTP at all, inside TLS: named as such.
    await assert.rejects(client.request('GET', '/garbage'), /\(it answered something other than HTTP: HPE_/);
    assert.equal(requests, 4);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});
