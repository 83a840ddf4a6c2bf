import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createLogger } from '@seahorse/runtime';
import {
  freePort,
  issueCertificate,
  LogCapture,
  ManagedProcess,
  makeCertificateAuthority,
  waitFor,
} from '@seahorse/runtime/testing';
import { ProxyClient, routespecFromChpPath, routespecToChpPath } from './proxy-client.ts';
import {
  ProxyAuthError,
  ProxyResponseError,
  ProxyTimeoutError,
  ProxyUnreachableError,
} from './proxy-errors.ts';

const ourProxyCli = fileURLToPath(new URL('../../proxy/src/cli.ts', import.meta.url));
const chpBin = fileURLToPath(
  new URL(
    '../../proxy/bench/node_modules/configurable-http-proxy/bin/configurable-http-proxy',
    import.meta.url,
  ),
);
const chpInstalled = existsSync(chpBin);

test('routespecToChpPath drops the trailing slash, adds the leading one and escapes what a path cannot hold', () => {
  assert.equal(routespecToChpPath('/'), '/');
  assert.equal(routespecToChpPath('/user/alice/'), '/user/alice');
  assert.equal(routespecToChpPath('/user/alice/gpu/'), '/user/alice/gpu');
  assert.equal(routespecToChpPath('host.tld/user/alice/'), '/host.tld/user/alice');
  assert.equal(routespecToChpPath('/user/a%40b%20c/'), '/user/a%40b%20c', 'escapes are kept as they are');
  assert.equal(routespecToChpPath('/user/a b?c#d/'), '/user/a%20b%3Fc%23d');
  assert.equal(routespecToChpPath('/user/jörg/'), '/user/j%C3%B6rg');
  assert.equal(routespecToChpPath('/user/100%/'), '/user/100%25');
});

test("routespecFromChpPath re-escapes the proxy's unescaped keys as JupyterHub's quote(safe='@/~') does", () => {
  assert.equal(routespecFromChpPath('/'), '/');
  assert.equal(routespecFromChpPath('/user/alice'), '/user/alice/');
  assert.equal(routespecFromChpPath('/user/a b@c~d'), '/user/a%20b@c~d/');
  assert.equal(routespecFromChpPath('/user/jörg'), '/user/j%C3%B6rg/');
  assert.equal(routespecFromChpPath('/host.tld/user/a', true), 'host.tld/user/a/');
});

interface RunningProxy {
  process: ManagedProcess;
  apiUrl: string;
  token: string;
}

async function startProxy(kind: 'seahorse' | 'chp'): Promise<RunningProxy> {
  const token = `proxy-token-${kind}-0123456789`;
  const [port, apiPort] = [await freePort(), await freePort()];
  const listen = [
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--api-ip',
    '127.0.0.1',
    '--api-port',
    String(apiPort),
  ];
  const args =
    kind === 'chp' ? [chpBin, ...listen] : ['--conditions=seahorse-source', ourProxyCli, ...listen];
  const proc = new ManagedProcess(kind, process.execPath, args, {
    env: { ...process.env, CONFIGPROXY_AUTH_TOKEN: token },
  });
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  await proc.untilReady(
    waitFor(
      `${kind} API`,
      async () => (await fetch(`${apiUrl}/api/routes`, { headers: { authorization: `token ${token}` } })).ok,
      { timeoutMs: 30_000, intervalMs: 100 },
    ),
  );
  return { process: proc, apiUrl, token };
}

for (const kind of ['seahorse', 'chp'] as const) {
  const skip =
    kind === 'chp' && !chpInstalled
      ? 'CHP 4.6.1 is not installed: npm install --prefix packages/proxy/bench'
      : false;
  describe(`against ${kind === 'chp' ? 'configurable-http-proxy 4.6.1' : 'our proxy'}`, { skip }, () => {
    let proxy: RunningProxy;
    let client: ProxyClient;
    before(async () => {
      proxy = await startProxy(kind);
      client = new ProxyClient({ apiUrl: proxy.apiUrl, authToken: proxy.token, retryTimeoutMs: 0 });
    });
    after(async () => {
      client?.close();
      await proxy?.process.stop();
    });

    test('an added route is listed with its target, its data, jupyterhub: true and its last activity', async () => {
      await client.addRoute('/user/alice/', 'http://127.0.0.1:9001', { user: 'alice', server_name: '' });
      const routes = await client.getRoutes();
      const route = routes['/user/alice'];
      assert.ok(route, JSON.stringify(routes));
      assert.equal(route.target, 'http://127.0.0.1:9001');
      assert.equal(route.user, 'alice');
      assert.equal(route.server_name, '');
      assert.equal(route.jupyterhub, true);
      assert.ok(!Number.isNaN(Date.parse(String(route.last_activity))), String(route.last_activity));
    });

    test('an escaped routespec comes back as the same routespec through routespecFromChpPath', async () => {
      for (const spec of ['/user/a%20b@c/', '/user/j%C3%B6rg/']) {
        await client.addRoute(spec, 'http://127.0.0.1:9002', { user: 'x' });
      }
      const specs = Object.keys(await client.getRoutes()).map((key) => routespecFromChpPath(key));
      for (const spec of ['/user/a%20b@c/', '/user/j%C3%B6rg/'])
        assert.ok(specs.includes(spec), specs.join(' '));
    });

    test('a route added again replaces the first, and a deleted route is gone', async () => {
      await client.addRoute('/user/bob/', 'http://127.0.0.1:9003', { user: 'bob' });
      await client.addRoute('/user/bob/', 'http://127.0.0.1:9004', { user: 'bob' });
      assert.equal((await client.getRoutes())['/user/bob']?.target, 'http://127.0.0.1:9004');
      await client.deleteRoute('/user/bob/');
      assert.equal((await client.getRoutes())['/user/bob'], undefined);
    });

    test('deleting a route the proxy does not have succeeds with a warning, as in JupyterHub', async () => {
      const logs = new LogCapture();
      const logged = new ProxyClient({
        apiUrl: proxy.apiUrl,
        authToken: proxy.token,
        log: createLogger({ name: 'hub', level: 'debug', destination: logs }),
      });
      try {
        await logged.deleteRoute('/user/nobody-here/');
        assert.ok(
          logs.lines.some((l) => l.msg === 'route already deleted' && l.route === '/user/nobody-here/'),
        );
        assert.ok(!logs.text.includes(proxy.token), 'the token is never logged');
      } finally {
        logged.close();
      }
    });

    test('inactive_since lists only routes idle since the given time', async () => {
      await client.addRoute('/user/carol/', 'http://127.0.0.1:9005', { user: 'carol' });
      const idleSinceFuture = await client.getRoutes(new Date(Date.now() + 3_600_000));
      assert.ok(idleSinceFuture['/user/carol'], 'every route is idle since a time to come');
      const idleSinceEpoch = await client.getRoutes(new Date(0));
      assert.deepEqual(Object.keys(idleSinceEpoch), [], 'no route is idle since 1970');
    });

    test('a wrong token fails with HUB_PROXY_AUTH naming CONFIGPROXY_AUTH_TOKEN', async () => {
      const wrong = new ProxyClient({ apiUrl: proxy.apiUrl, authToken: 'not-the-token', retryTimeoutMs: 0 });
      try {
        await assert.rejects(
          wrong.getRoutes(),
          (error: unknown) =>
            error instanceof ProxyAuthError &&
            error.code === 'HUB_PROXY_AUTH' &&
            error.status === 403 &&
            error.message.includes('CONFIGPROXY_AUTH_TOKEN') &&
            error.message.includes(proxy.apiUrl),
        );
      } finally {
        wrong.close();
      }
    });
  });
}

/** A stand-in proxy API that answers as `handler` says and counts connections and requests. */
async function startStandIn(
  handler: (req: IncomingMessage, res: ServerResponse, body: string) => void,
): Promise<{
  server: Server;
  url: string;
  connections: number;
  requests: IncomingMessage[];
  close(): Promise<void>;
}> {
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      standIn.requests.push(req);
      handler(req, res, body);
    });
  });
  const standIn = {
    server,
    url: '',
    connections: 0,
    requests: [] as IncomingMessage[],
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
  server.on('connection', () => standIn.connections++);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  standIn.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return standIn;
}

test('requests carry "Authorization: token <t>" and share one keep-alive connection', async () => {
  const standIn = await startStandIn((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
  const client = new ProxyClient({ apiUrl: `${standIn.url}/`, authToken: 'tok-1' });
  try {
    for (let i = 0; i < 5; i++) await client.getRoutes();
    assert.equal(standIn.connections, 1);
    assert.equal(standIn.requests[0]!.headers.authorization, 'token tok-1');
    assert.equal(standIn.requests[0]!.url, '/api/routes');
  } finally {
    client.close();
    await standIn.close();
  }
});

test('an API URL with a path prefix keeps it, and the body is the route data plus target and jupyterhub', async () => {
  let seen = '';
  const standIn = await startStandIn((req, res, body) => {
    seen = `${req.method} ${req.url} ${body}`;
    res.writeHead(201);
    res.end();
  });
  const client = new ProxyClient({ apiUrl: `${standIn.url}/chp/`, authToken: 't' });
  try {
    await client.addRoute('/user/a/', 'http://10.0.0.1:8888', { user: 'a', server_name: '' });
    assert.equal(
      seen,
      'POST /chp/api/routes/user/a {"user":"a","server_name":"","target":"http://10.0.0.1:8888","jupyterhub":true}',
    );
  } finally {
    client.close();
    await standIn.close();
  }
});

test('5xx answers are retried with backoff until the proxy recovers', async () => {
  let calls = 0;
  const standIn = await startStandIn((_req, res) => {
    calls++;
    res.writeHead(calls < 3 ? 503 : 201);
    res.end();
  });
  const client = new ProxyClient({ apiUrl: standIn.url, authToken: 't', retryTimeoutMs: 10_000 });
  try {
    await client.addRoute('/user/a/', 'http://127.0.0.1:1');
    assert.equal(calls, 3);
  } finally {
    client.close();
    await standIn.close();
  }
});

test('a 4xx other than 401/403/404 fails at once with HUB_PROXY_RESPONSE and the body', async () => {
  const standIn = await startStandIn((_req, res) => {
    res.writeHead(400);
    res.end('Body not valid JSON');
  });
  const client = new ProxyClient({ apiUrl: standIn.url, authToken: 't', retryTimeoutMs: 10_000 });
  try {
    await assert.rejects(
      client.addRoute('/user/a/', 'http://127.0.0.1:1'),
      (error: unknown) =>
        error instanceof ProxyResponseError &&
        error.status === 400 &&
        error.message.includes('Body not valid JSON'),
    );
    assert.equal(standIn.requests.length, 1);
  } finally {
    client.close();
    await standIn.close();
  }
});

test('a route table that is not a JSON object of routes fails with HUB_PROXY_RESPONSE', async () => {
  const bodies = ['<html>not json</html>', '[]', '{"/x": {"no": "target"}}'];
  const standIn = await startStandIn((_req, res) => {
    res.writeHead(200);
    res.end(bodies.shift());
  });
  const client = new ProxyClient({ apiUrl: standIn.url, authToken: 't' });
  try {
    await assert.rejects(client.getRoutes(), /not JSON/);
    await assert.rejects(client.getRoutes(), /not a JSON object/);
    await assert.rejects(
      client.getRoutes(),
      (e: unknown) => e instanceof ProxyResponseError && /"\/x"/.test(e.message),
    );
  } finally {
    client.close();
    await standIn.close();
  }
});

test('a "__proto__" route key stays a plain route and pollutes nothing', async () => {
  const standIn = await startStandIn((_req, res) => {
    res.writeHead(200);
    res.end('{"__proto__": {"target": "http://evil", "polluted": true}}');
  });
  const client = new ProxyClient({ apiUrl: standIn.url, authToken: 't' });
  try {
    const routes = await client.getRoutes();
    assert.equal(Object.hasOwn(routes, '__proto__'), true);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  } finally {
    client.close();
    await standIn.close();
  }
});

test('a proxy that is not listening fails with HUB_PROXY_UNREACHABLE naming the URL, after the retries', async () => {
  const port = await freePort();
  const client = new ProxyClient({ apiUrl: `http://127.0.0.1:${port}`, authToken: 't', retryTimeoutMs: 400 });
  const started = Date.now();
  try {
    await assert.rejects(
      client.getRoutes(),
      (error: unknown) =>
        error instanceof ProxyUnreachableError &&
        error.code === 'HUB_PROXY_UNREACHABLE' &&
        error.message.includes(`http://127.0.0.1:${port}`) &&
        error.message.includes('ECONNREFUSED') &&
        error.message.includes('ConfigurableHTTPProxy.api_url'),
    );
    assert.ok(Date.now() - started >= 300, 'it kept trying for the retry time');
  } finally {
    client.close();
  }
});

test('a proxy that does not answer fails with HUB_PROXY_TIMEOUT after timeoutMs', async () => {
  const standIn = await startStandIn(() => {
    // never answers
  });
  const client = new ProxyClient({ apiUrl: standIn.url, authToken: 't', timeoutMs: 300, retryTimeoutMs: 0 });
  try {
    await assert.rejects(
      client.deleteRoute('/user/a/'),
      (error: unknown) =>
        error instanceof ProxyTimeoutError &&
        error.code === 'HUB_PROXY_TIMEOUT' &&
        /within 300 ms/.test(error.message),
    );
  } finally {
    client.close();
    await standIn.close();
  }
});

test('an HTTPS proxy API signed by a private CA is reached with `ca`, and refused without it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-proxy-client-tls-'));
  const ca = makeCertificateAuthority(dir);
  const cert = issueCertificate(dir, 'proxy-api');
  const server = createHttpsServer({ cert: cert.cert, key: cert.key }, (_req, res) => {
    res.writeHead(200);
    res.end('{"/": {"target": "http://127.0.0.1:8081"}}');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const apiUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const trusted = new ProxyClient({ apiUrl, authToken: 't', ca: ca.cert });
  const untrusted = new ProxyClient({ apiUrl, authToken: 't', retryTimeoutMs: 0 });
  try {
    assert.equal((await trusted.getRoutes())['/']?.target, 'http://127.0.0.1:8081');
    await assert.rejects(
      untrusted.getRoutes(),
      (error: unknown) =>
        error instanceof ProxyUnreachableError && /CERT|SELF_SIGNED|UNABLE/i.test(error.message),
    );
  } finally {
    trusted.close();
    untrusted.close();
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
