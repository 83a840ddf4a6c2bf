import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import {
  echo,
  type Received,
  rawRequest,
  startTestProxy,
  startUpstream,
  type TestProxy,
  type Upstream,
} from './helpers.ts';

async function received(res: Response | { body: Buffer }): Promise<Received> {
  return res instanceof Response
    ? ((await res.json()) as Received)
    : (JSON.parse(res.body.toString()) as Received);
}

describe('proxying', () => {
  let proxy: TestProxy;
  let upstream: Upstream;
  let other: Upstream;
  before(async () => {
    upstream = await startUpstream();
    other = await startUpstream();
    proxy = await startTestProxy();
    await proxy.addRoute('/', other.url);
    await proxy.addRoute('/user/a', upstream.url);
    await proxy.addRoute('/user/a/lab', `${other.url}/lab-base`);
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    await other.close();
  });

  test('forwards method, path, query and body to the longest matching prefix', async () => {
    const res = await fetch(`${proxy.url}/user/a/api/contents?type=file`, { method: 'PUT', body: 'hello' });
    assert.equal(res.status, 200);
    const got = await received(res);
    assert.equal(got.method, 'PUT');
    assert.equal(got.url, '/user/a/api/contents?type=file');
    assert.equal(got.body, 'hello');
    const lab = await received(await fetch(`${proxy.url}/user/a/lab/tree`));
    assert.equal(lab.url, '/lab-base/user/a/lab/tree');
    const root = await received(await fetch(`${proxy.url}/user/ab`));
    assert.equal(root.url, '/user/ab', 'a sibling with a longer name falls back to /');
  });

  test('appends X-Forwarded-* to existing values and passes Host through unchanged', async () => {
    const res = await rawRequest(`${proxy.url}/user/a/x`, {
      headers: {
        host: 'notebooks.example.org:8443',
        'x-forwarded-for': '10.0.0.1, 10.0.0.2',
        'x-forwarded-proto': 'https',
      },
    });
    const { headers } = await received(res);
    assert.equal(headers.host, 'notebooks.example.org:8443');
    assert.equal(headers['x-forwarded-for'], '10.0.0.1, 10.0.0.2,127.0.0.1');
    assert.equal(headers['x-forwarded-proto'], 'https,http');
    assert.equal(headers['x-forwarded-port'], '8443');
    assert.equal(headers['x-forwarded-host'], 'notebooks.example.org:8443');
  });

  test('several Set-Cookie headers reach the client separately', async () => {
    const cookies = await startUpstream((_req, res) => {
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; HttpOnly']);
      res.end('ok');
    });
    await proxy.addRoute('/cookies', cookies.url);
    const res = await rawRequest(`${proxy.url}/cookies`);
    assert.deepEqual(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly']);
    await cookies.close();
  });

  test('event streams are relayed as they are written, not buffered', async () => {
    let finish: (() => void) | undefined;
    const stream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first\n\n');
      finish = () => res.end('data: last\n\n');
    });
    await proxy.addRoute('/events', stream.url);
    const res = await fetch(`${proxy.url}/events`);
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.equal(
      Buffer.from(first.value!).toString(),
      'data: first\n\n',
      'first event arrives before the stream ends',
    );
    finish!();
    let rest = '';
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
      rest += Buffer.from(chunk.value).toString();
    assert.equal(rest, 'data: last\n\n');
    await stream.close();
  });

  test('streams 8 MB bodies both ways intact', async () => {
    const sink = await startUpstream((_req, res, body) => {
      res.writeHead(200, { 'x-sha256': createHash('sha256').update(body).digest('hex') });
      res.end(body);
    });
    await proxy.addRoute('/big', sink.url);
    const payload = randomBytes(8 * 1024 * 1024);
    const res = await rawRequest(`${proxy.url}/big`, { method: 'POST', body: payload });
    assert.equal(res.headers['x-sha256'], createHash('sha256').update(payload).digest('hex'));
    assert.ok(res.body.equals(payload));
    await sink.close();
  });

  test('keeps connections to a target alive across requests', async () => {
    const keep = await startUpstream();
    await proxy.addRoute('/keep', keep.url);
    for (let i = 0; i < 20; i++) await (await fetch(`${proxy.url}/keep/${i}`)).text();
    assert.equal(keep.connections, 1);
    await keep.close();
  });

  test('a request without a route gets 404 with the bundled page', async () => {
    const bare = await startTestProxy();
    try {
      const res = await fetch(`${bare.url}/nowhere`);
      assert.equal(res.status, 404);
      assert.match(res.headers.get('content-type') ?? '', /text\/html/);
      assert.match(await res.text(), /404: Not Found/);
    } finally {
      await bare.close();
    }
  });

  test('a target that is down gets 503, and the proxy keeps serving others', async () => {
    const gone = await startUpstream();
    await proxy.addRoute('/gone', gone.url);
    await gone.close();
    const res = await fetch(`${proxy.url}/gone/x`);
    assert.equal(res.status, 503);
    assert.match(await res.text(), /503/);
    assert.equal((await fetch(`${proxy.url}/user/a`)).status, 200);
  });

  test('a target that resets the connection mid-request gets 503', async () => {
    const rude = await startUpstream((req) => req.socket.destroy());
    await proxy.addRoute('/rude', rude.url);
    assert.equal((await fetch(`${proxy.url}/rude`)).status, 503);
    await rude.close();
  });

  test('odd paths: dot segments resolve before routing, double slashes and bad escapes are not misrouted', async () => {
    const up = await received(await rawRequest(`${proxy.url}/user/a/../../user/a/x`));
    assert.equal(up.url, '/user/a/x');
    const dotted = await received(await rawRequest(`${proxy.url}/user/a/%2e%2e/b`));
    assert.equal(dotted.url, '/user/b', 'an encoded .. climbs out of /user/a, so / serves it');
    const doubled = await received(await rawRequest(`${proxy.url}/user//a/x`));
    assert.equal(doubled.url, '/user//a/x');
    assert.equal(doubled.headers['x-forwarded-host'], `127.0.0.1:${new URL(proxy.url).port}`);
    const bad = await rawRequest(`${proxy.url}/user/a/%zz`);
    assert.equal(bad.status, 400);
    const unicode = await rawRequest(`${proxy.url}/user/a/%F0%9F%90%B4`);
    assert.equal((await received(unicode)).url, '/user/a/%F0%9F%90%B4');
  });

  test('header injection attempts are refused before reaching a target', async () => {
    const port = new URL(proxy.url).port;
    const { connect } = await import('node:net');
    const socket = connect(Number(port), '127.0.0.1');
    socket.write('GET /user/a HTTP/1.1\r\nHost: x\r\nX-Bad: a\rInjected: yes\r\n\r\n');
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    assert.match(chunk.toString(), /^HTTP\/1.1 400/);
    socket.destroy();
  });

  test('activity from requests shows in last_activity', async () => {
    const route = proxy.table.get('/user/a')!;
    route.lastActivity = 0;
    await (await fetch(`${proxy.url}/user/a/api/status`)).text();
    const listed = (await (await proxy.api('GET', '/api/routes/user/a')).json()) as { last_activity: string };
    assert.ok(Date.now() - Date.parse(listed.last_activity) < 5000);
  });

  test('/_chp_healthz answers for the proxy itself', async () => {
    const res = await fetch(`${proxy.url}/_chp_healthz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'OK' });
  });
});

describe('proxy flags', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());

  const withProxy = async (args: string[], body: (proxy: TestProxy) => Promise<void>) => {
    const proxy = await startTestProxy(args);
    try {
      await body(proxy);
    } finally {
      await proxy.close();
    }
  };

  test('--no-include-prefix strips the matched segments, even escaped ones', () =>
    withProxy(['--no-include-prefix'], async (proxy) => {
      await proxy.addRoute('/user/foo', upstream.url);
      await proxy.addRoute('/enc@x', `${upstream.url}/e`);
      assert.equal((await received(await fetch(`${proxy.url}/user/foo/bar?x=1`))).url, '/bar?x=1');
      assert.equal((await received(await fetch(`${proxy.url}/user/foo`))).url, '/');
      assert.equal((await received(await fetch(`${proxy.url}/enc%40x/y`))).url, '/e/y');
    }));

  test('--no-prepend-path drops the target path; by default it is prepended', async () => {
    await withProxy(['--no-prepend-path'], async (proxy) => {
      await proxy.addRoute('/pre', `${upstream.url}/base/path`);
      assert.equal((await received(await fetch(`${proxy.url}/pre/a?b=1`))).url, '/pre/a?b=1');
    });
    await withProxy([], async (proxy) => {
      await proxy.addRoute('/pre', `${upstream.url}/base/path`);
      await proxy.addRoute('/preq', `${upstream.url}/base?tq=1`);
      assert.equal((await received(await fetch(`${proxy.url}/pre/a?b=1`))).url, '/base/path/pre/a?b=1');
      assert.equal((await received(await fetch(`${proxy.url}/preq/a?b=2`))).url, '/base/preq/a?tq=1&b=2');
    });
  });

  test('--no-x-forward adds no X-Forwarded headers', () =>
    withProxy(['--no-x-forward'], async (proxy) => {
      await proxy.addRoute('/', upstream.url);
      const { headers } = await received(await fetch(`${proxy.url}/x`));
      assert.equal(Object.keys(headers).filter((name) => name.startsWith('x-forwarded')).length, 0);
    }));

  test('--custom-header adds headers and wins over --change-origin for Host', async () => {
    await withProxy(
      ['--custom-header', 'X-Team: platform', '--custom-header', 'X-Two : a : b'],
      async (proxy) => {
        await proxy.addRoute('/', upstream.url);
        const { headers } = await received(await fetch(`${proxy.url}/x`));
        assert.equal(headers['x-team'], 'platform');
        assert.equal(headers['x-two'], 'a : b');
      },
    );
    await withProxy(['--change-origin'], async (proxy) => {
      await proxy.addRoute('/', upstream.url);
      const { headers } = await received(await fetch(`${proxy.url}/x`));
      assert.equal(headers.host, `127.0.0.1:${upstream.port}`);
    });
  });

  test('--auto-rewrite and --protocol-rewrite fix redirects that point at the target', async () => {
    const redirector = await startUpstream((req, res) => {
      const host = req.url === '/away' ? 'elsewhere.example' : `127.0.0.1:${redirector.port}`;
      res.writeHead(302, { location: `http://${host}/landing` });
      res.end();
    });
    await withProxy(['--auto-rewrite', '--protocol-rewrite', 'https'], async (proxy) => {
      await proxy.addRoute('/', redirector.url);
      const res = await rawRequest(`${proxy.url}/go`, { headers: { host: 'hub.example.org' } });
      assert.equal(res.status, 302);
      assert.equal(res.headers.location, 'https://hub.example.org/landing');
      const away = await rawRequest(`${proxy.url}/away`, { headers: { host: 'hub.example.org' } });
      assert.equal(away.headers.location, 'http://elsewhere.example/landing');
    });
    await redirector.close();
  });

  test('--error-target serves the hub-style error page with the proxy status', async () => {
    const pages = await startUpstream((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`page for ${req.url}`);
    });
    await withProxy(['--error-target', `${pages.url}/hub/error`], async (proxy) => {
      const res = await fetch(`${proxy.url}/no/route?a=1`);
      assert.equal(res.status, 404);
      assert.equal(res.headers.get('content-type'), 'text/html');
      assert.equal(await res.text(), `page for /hub/error/404?url=${encodeURIComponent('/no/route?a=1')}`);
    });
    await pages.close();
  });

  test('--error-path serves <code>.html, then error.html', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'errors-'));
    writeFileSync(join(dir, '404.html'), '<p>custom 404</p>');
    writeFileSync(join(dir, 'error.html'), '<p>custom error</p>');
    await withProxy(['--error-path', dir], async (proxy) => {
      assert.equal(await (await fetch(`${proxy.url}/none`)).text(), '<p>custom 404</p>');
      await proxy.addRoute('/down', 'http://127.0.0.1:9');
      const down = await fetch(`${proxy.url}/down`);
      assert.equal(down.status, 503);
      assert.equal(await down.text(), '<p>custom error</p>');
    });
  });

  test('--proxy-timeout answers 504 when a target does not respond in time', async () => {
    const sleepy = await startUpstream(() => {
      // never answers
    });
    await withProxy(['--proxy-timeout', '200'], async (proxy) => {
      await proxy.addRoute('/', sleepy.url);
      const started = Date.now();
      const res = await fetch(`${proxy.url}/slow`);
      assert.equal(res.status, 504);
      assert.ok(Date.now() - started < 5000);
    });
    await sleepy.close();
  });

  test('--timeout drops a client connection that stays idle', async () => {
    await withProxy(['--timeout', '200'], async (proxy) => {
      const sleepy = await startUpstream(() => {});
      await proxy.addRoute('/', sleepy.url);
      const closed = new Promise<string>((resolve) => {
        const req = request(`${proxy.url}/x`, { agent: false });
        req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
        req.end();
      });
      assert.equal(await closed, 'ECONNRESET');
      await sleepy.close();
    });
  });

  test('--keep-alive-timeout sets the Keep-Alive header of the public listener', () =>
    withProxy(['--keep-alive-timeout', '12000'], async (proxy) => {
      await proxy.addRoute('/', upstream.url);
      const res = await rawRequest(`${proxy.url}/x`, { headers: { connection: 'keep-alive' } });
      assert.equal(res.headers['keep-alive'], 'timeout=12');
    }));

  test('--metrics-port serves CHP metric names and our own', () =>
    withProxy(['--metrics-ip', '127.0.0.1', '--metrics-port', '0'], async (proxy) => {
      await proxy.addRoute('/', upstream.url);
      await (await fetch(`${proxy.url}/x`)).text();
      const metricsPort = (proxy.addresses.metrics as { port: number }).port;
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      for (const name of [
        'api_route_add 1',
        'requests_web 1',
        'requests_proxy{status="200"} 1',
        'requests_api{status="201"} 1',
        'find_target_for_req_count 1',
        'seahorse_proxy_routes 1',
        'process_resident_memory_bytes',
      ]) {
        assert.ok(text.includes(name), `missing ${name}`);
      }
      assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status, 200);
    }));
});

test('a table of 100k routes still sends each request to its exact prefix', async () => {
  const upstream = await startUpstream();
  const proxy = await startTestProxy();
  try {
    for (let i = 0; i < 100_000; i++)
      proxy.table.apply({ type: 'set', path: `/user/u${i}`, data: { target: upstream.url } });
    const res = await fetch(`${proxy.url}/user/u99999/api`);
    assert.equal((await received(res)).url, '/user/u99999/api');
    assert.equal(proxy.table.size, 100_000);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('an upstream on a UNIX socket is reachable through an http+unix:// target', async () => {
  const { mkdtempSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const path = join(mkdtempSync(join(tmpdir(), 'sock-')), 'up.sock');
  const server = createServer((req, res) => echo(req, res, Buffer.alloc(0)));
  server.listen(path);
  await once(server, 'listening');
  const proxy = await startTestProxy();
  try {
    await proxy.addRoute('/sock', `http+unix://${encodeURIComponent(path)}/base`);
    assert.equal((await received(await fetch(`${proxy.url}/sock/x`))).url, '/base/sock/x');
  } finally {
    await proxy.close();
    server.close();
  }
});

test('the public listener can itself be a UNIX socket', async () => {
  const { mkdtempSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const path = join(mkdtempSync(join(tmpdir(), 'sock-')), 'proxy.sock');
  const upstream = await startUpstream();
  const { createLogger, parseFlags } = await import('@seahorse/runtime');
  const { buildOptions, flagSpecs, startProxy } = await import('../src/index.ts');
  const flags = parseFlags(flagSpecs, [
    '--socket',
    path,
    '--api-ip',
    '127.0.0.1',
    '--api-port',
    '0',
    '--default-target',
    upstream.url,
  ]);
  const proxy = await startProxy(buildOptions(flags, {}), createLogger({ name: 't', level: 'error' }));
  try {
    const body = await new Promise<string>((resolve, reject) => {
      request({ socketPath: path, path: '/via/socket' }, (res) => {
        let text = '';
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve(text));
      })
        .on('error', reject)
        .end();
    });
    assert.equal((JSON.parse(body) as Received).url, '/via/socket');
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('an idle proxy closes its listeners promptly on close()', async () => {
  const proxy = await startTestProxy();
  const port = new URL(proxy.url).port;
  await proxy.close();
  const rebound = await waitFor('the port to be free again', async () => {
    const probe = createServer();
    probe.listen(Number(port), '127.0.0.1');
    try {
      await once(probe, 'listening');
      return true;
    } finally {
      probe.close();
    }
  });
  assert.equal(rebound, true);
});
