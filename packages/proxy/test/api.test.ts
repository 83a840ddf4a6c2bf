import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rawRequest, startTestProxy, startUpstream, type TestProxy, type Upstream } from './helpers.ts';

describe('REST API', () => {
  let proxy: TestProxy;
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
    proxy = await startTestProxy(['--default-target', 'http://127.0.0.1:9']);
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
  });

  test('POST answers 201 with an empty body and the route data round-trips with last_activity', async () => {
    const before = Date.now();
    const res = await proxy.api('POST', '/api/routes/user/alice', {
      target: upstream.url,
      user: 'alice',
      server_name: '',
      nested: { a: [1, 2] },
    });
    assert.equal(res.status, 201);
    assert.equal(await res.text(), '');
    const all = (await (await proxy.api('GET', '/api/routes')).json()) as Record<
      string,
      Record<string, unknown>
    >;
    const route = all['/user/alice']!;
    assert.equal(route.target, upstream.url);
    assert.equal(route.user, 'alice');
    assert.equal(route.server_name, '');
    assert.deepEqual(route.nested, { a: [1, 2] });
    assert.match(String(route.last_activity), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Date.parse(String(route.last_activity)) >= before - 1);
  });

  test('GET /api/routes lists the default route', async () => {
    const all = (await (await proxy.api('GET', '/api/routes')).json()) as Record<string, { target: string }>;
    assert.equal(all['/']?.target, 'http://127.0.0.1:9');
  });

  test('GET /api/routes/<path> returns one route and 404 for an unknown one', async () => {
    await proxy.addRoute('/user/bob', upstream.url, { user: 'bob' });
    const one = await proxy.api('GET', '/api/routes/user/bob');
    assert.equal(one.status, 200);
    assert.equal(one.headers.get('content-type'), 'application/json');
    assert.equal(((await one.json()) as { user: string }).user, 'bob');
    const missing = await proxy.api('GET', '/api/routes/user/nobody');
    assert.equal(missing.status, 404);
  });

  test('DELETE answers 204, then 404 once the route is gone', async () => {
    await proxy.addRoute('/user/carol', upstream.url);
    assert.equal((await proxy.api('DELETE', '/api/routes/user/carol')).status, 204);
    assert.equal((await proxy.api('DELETE', '/api/routes/user/carol')).status, 404);
    const all = (await (await proxy.api('GET', '/api/routes')).json()) as Record<string, unknown>;
    assert.equal(all['/user/carol'], undefined);
  });

  test('a bare DELETE /api/routes answers 400 with what to send instead', async () => {
    const res = await proxy.api('DELETE', '/api/routes');
    assert.equal(res.status, 400);
    assert.match(await res.text(), /DELETE \/api\/routes\/<path>/);
    assert.ok(proxy.table.get('/'), 'the default route is still there');
  });

  test('route keys are stored unescaped and without a trailing slash', async () => {
    await proxy.addRoute('/user/j%C3%BCrgen%40x/', upstream.url);
    const all = (await (await proxy.api('GET', '/api/routes')).json()) as Record<string, unknown>;
    assert.ok(all['/user/jürgen@x'], `keys: ${Object.keys(all).join(', ')}`);
    assert.equal((await proxy.api('GET', '/api/routes/user/j%C3%BCrgen%40x')).status, 200);
    const through = await fetch(`${proxy.url}/user/j%C3%BCrgen%40x/api`);
    assert.equal(((await through.json()) as { url: string }).url, '/user/j%C3%BCrgen%40x/api');
  });

  test('POST to an existing route replaces its data', async () => {
    await proxy.addRoute('/user/dave', upstream.url, { old: true });
    await proxy.addRoute('/user/dave', upstream.url, { fresh: 1 });
    const route = (await (await proxy.api('GET', '/api/routes/user/dave')).json()) as Record<string, unknown>;
    assert.equal(route.old, undefined);
    assert.equal(route.fresh, 1);
  });

  test('a client-supplied last_activity is ignored', async () => {
    await proxy.addRoute('/user/erin', upstream.url, { last_activity: '2000-01-01T00:00:00.000Z' });
    const route = (await (await proxy.api('GET', '/api/routes/user/erin')).json()) as {
      last_activity: string;
    };
    assert.ok(Date.parse(route.last_activity) > Date.parse('2020-01-01'));
  });

  test('?inactive_since= keeps only routes idle since then', async () => {
    const all = (await (
      await proxy.api('GET', '/api/routes?inactive_since=2000-01-01T00:00:00.000Z')
    ).json()) as object;
    assert.deepEqual(all, {});
    const future = new Date(Date.now() + 60_000).toISOString();
    const idle = (await (
      await proxy.api('GET', `/api/routes?inactive_since=${encodeURIComponent(future)}`)
    ).json()) as object;
    assert.ok(Object.keys(idle).includes('/user/alice'));
    const camel = (await (
      await proxy.api('GET', `/api/routes?inactiveSince=${encodeURIComponent(future)}`)
    ).json()) as object;
    assert.deepEqual(Object.keys(camel), Object.keys(idle));
  });

  test('an invalid inactive_since answers 400 naming the value', async () => {
    const res = await proxy.api('GET', '/api/routes?inactive_since=yesterday-ish');
    assert.equal(res.status, 400);
    assert.match(await res.text(), /Invalid datestamp 'yesterday-ish' must be ISO8601/);
  });

  describe('bad input leaves the table untouched', () => {
    const cases: Array<[string, string, string | undefined, number, RegExp]> = [
      ['malformed JSON', '/api/routes/user/x', '{"target": ', 400, /Body not valid JSON/],
      ['no target', '/api/routes/user/x', '{"user": "x"}', 400, /Must specify 'target' as string/],
      ['a numeric target', '/api/routes/user/x', '{"target": 8080}', 400, /Must specify 'target' as string/],
      ['a non-URL target', '/api/routes/user/x', '{"target": "not a url"}', 400, /not a valid URL/],
      ['an ftp target', '/api/routes/user/x', '{"target": "ftp://h/x"}', 400, /http:\/\/, https:\/\//],
      ['invalid percent-encoding', '/api/routes/user/%zz', '{"target": "http://h"}', 400, /percent-encoding/],
      ['an empty body', '/api/routes/user/x', '', 400, /Body not valid JSON/],
    ];
    for (const [what, path, body, status, message] of cases) {
      test(`POST with ${what} answers ${status}`, async () => {
        const before = JSON.stringify([...proxy.table.all()].map((r) => r.path));
        const res = await proxy.api('POST', path, body);
        assert.equal(res.status, status);
        assert.match(await res.text(), message);
        assert.equal(JSON.stringify([...proxy.table.all()].map((r) => r.path)), before);
      });
    }

    test('an oversized body answers 413 with the limit', async () => {
      const res = await proxy.api('POST', '/api/routes/user/big', {
        target: upstream.url,
        pad: 'x'.repeat(2 * 1024 * 1024),
      });
      assert.equal(res.status, 413);
      assert.match(await res.text(), /limit is 1048576 bytes/);
      assert.equal(proxy.table.get('/user/big'), undefined);
    });
  });

  test('requests without the right token get 403 and change nothing', async () => {
    const attempts: Array<Record<string, string>> = [
      {},
      { authorization: 'token wrong' },
      { authorization: `token ${proxy.token}x` },
      { authorization: proxy.token },
    ];
    for (const headers of attempts) {
      const res = await fetch(`${proxy.apiUrl}/api/routes/user/mallory`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ target: 'http://evil' }),
      });
      assert.equal(res.status, 403, JSON.stringify(headers));
    }
    assert.equal(proxy.table.get('/user/mallory'), undefined);
    const bearer = await fetch(`${proxy.apiUrl}/api/routes`, {
      headers: { authorization: `Bearer ${proxy.token}` },
    });
    assert.equal(bearer.status, 200);
  });

  test('unknown API paths answer 404 and unsupported methods 405', async () => {
    assert.equal((await proxy.api('GET', '/api/routesX')).status, 404);
    assert.equal((await proxy.api('GET', '/')).status, 404);
    const put = await proxy.api('PUT', '/api/routes/x', { target: upstream.url });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get('allow'), 'GET, POST, DELETE');
  });

  test('the token never appears in the logs', async () => {
    await proxy.api('GET', '/api/routes');
    await fetch(`${proxy.apiUrl}/api/routes`, { headers: { authorization: 'token not-the-token' } });
    assert.ok(proxy.logs.lines.length > 0);
    assert.ok(!proxy.logs.text.includes(proxy.token));
    assert.ok(!proxy.logs.text.includes('not-the-token'));
  });
});

test('without CONFIGPROXY_AUTH_TOKEN the API is open and the proxy warns once', async () => {
  const proxy = await startTestProxy([], { CONFIGPROXY_AUTH_TOKEN: '' });
  try {
    const res = await fetch(`${proxy.apiUrl}/api/routes`);
    assert.equal(res.status, 200);
    assert.ok(proxy.logs.lines.some((line) => String(line.msg).includes('not authenticated')));
  } finally {
    await proxy.close();
  }
});

test('--host-routing stores the host beside the target and routes by Host', async () => {
  const upstream = await startUpstream();
  const proxy = await startTestProxy(['--host-routing']);
  try {
    await proxy.addRoute('/example.com', upstream.url);
    const route = (await (await proxy.api('GET', '/api/routes/example.com')).json()) as { host: string };
    assert.equal(route.host, 'example.com');
    const res = await rawRequest(`${proxy.url}/a/b?c=1`, { headers: { host: 'example.com:8000' } });
    assert.equal(JSON.parse(res.body.toString()).url, '/a/b?c=1');
    const other = await rawRequest(`${proxy.url}/a/b`, { headers: { host: 'other.org' } });
    assert.equal(other.status, 404);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});
