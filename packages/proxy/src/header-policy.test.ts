import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import {
  type HeaderPolicy,
  requestHeaders,
  responseHeaders,
  rewriteLocation,
  withoutHopByHop,
} from './header-policy.ts';
import { parseTarget } from './routes.ts';

const target = parseTarget('http://10.0.0.5:8888/base');
const policy: HeaderPolicy = {
  xForward: true,
  changeOrigin: false,
  autoRewrite: false,
  protocolRewrite: undefined,
  customHeaders: [],
  listenerSecure: false,
};

function incoming(headers: Record<string, string>): IncomingMessage {
  return { headers, socket: { remoteAddress: '192.0.2.7' } } as unknown as IncomingMessage;
}

test('request headers are a fresh object: the incoming request keeps what the client sent', () => {
  const req = incoming({ host: 'hub.example:8000', connection: 'keep-alive', accept: '*/*' });
  const out = requestHeaders(req, target, { ...policy, changeOrigin: true }, false);
  assert.notEqual(out, req.headers);
  assert.equal(out.host, '10.0.0.5:8888');
  assert.deepEqual(req.headers, { host: 'hub.example:8000', connection: 'keep-alive', accept: '*/*' });
});

test('hop-by-hop request headers and the names Connection lists are dropped', () => {
  const out = withoutHopByHop({
    connection: 'close, X-Secret',
    'x-secret': 'a',
    'keep-alive': 'timeout=5',
    'proxy-connection': 'keep-alive',
    'transfer-encoding': 'chunked',
    trailer: 'x',
    expect: '100-continue',
    upgrade: 'h2c',
    te: 'trailers',
    cookie: 'c=1',
  });
  assert.deepEqual(out, { te: 'trailers', cookie: 'c=1' });
});

test('an upgrade keeps Connection and Upgrade, and says ws in X-Forwarded-Proto', () => {
  const req = incoming({ host: 'h', connection: 'Upgrade', upgrade: 'websocket' });
  const out = requestHeaders(req, target, policy, true);
  assert.equal(out.connection, 'Upgrade');
  assert.equal(out.upgrade, 'websocket');
  assert.equal(out['x-forwarded-proto'], 'ws');
  assert.equal(out['x-forwarded-host'], undefined);
});

test('X-Forwarded-* are appended to what an earlier proxy wrote; the port comes from Host', () => {
  const req = incoming({ host: 'hub.example:8443', 'x-forwarded-for': '198.51.100.1' });
  const out = requestHeaders(req, target, { ...policy, listenerSecure: true }, false);
  assert.equal(out['x-forwarded-for'], '198.51.100.1,192.0.2.7');
  assert.equal(out['x-forwarded-port'], '8443');
  assert.equal(out['x-forwarded-proto'], 'https');
  assert.equal(out['x-forwarded-host'], 'hub.example:8443');
  assert.equal(
    requestHeaders(req, target, { ...policy, xForward: false }, false)['x-forwarded-for'],
    '198.51.100.1',
  );
});

test('custom headers win over every other change', () => {
  const req = incoming({ host: 'h', 'x-forwarded-for': 'spoofed' });
  const out = requestHeaders(
    req,
    target,
    { ...policy, customHeaders: [['x-forwarded-for', 'fixed']] },
    false,
  );
  assert.equal(out['x-forwarded-for'], 'fixed');
});

test('response: hop-by-hop headers and those Connection names are dropped, each Set-Cookie kept', () => {
  const raw = [
    'Connection',
    'X-Internal',
    'X-Internal',
    'secret',
    'Keep-Alive',
    'timeout=5',
    'Transfer-Encoding',
    'chunked',
    'Set-Cookie',
    'a=1; Path=/',
    'Set-Cookie',
    'b=2; HttpOnly',
    'Content-Type',
    'text/plain',
  ];
  assert.deepEqual(responseHeaders(raw, 200, 'h', target, policy), [
    'Set-Cookie',
    'a=1; Path=/',
    'Set-Cookie',
    'b=2; HttpOnly',
    'Content-Type',
    'text/plain',
  ]);
});

test("--change-origin --auto-rewrite: a redirect to the target goes back to the client's Host", () => {
  const rewritten = responseHeaders(
    ['Location', 'http://10.0.0.5:8888/base/tree?x=1#top'],
    302,
    'hub.example:8000',
    target,
    { ...policy, changeOrigin: true, autoRewrite: true },
  );
  assert.deepEqual(rewritten, ['Location', 'http://hub.example:8000/base/tree?x=1#top']);
  // Not a redirect status, or a redirect elsewhere: untouched.
  assert.deepEqual(
    responseHeaders(['Location', 'http://10.0.0.5:8888/x'], 200, 'hub.example', target, {
      ...policy,
      autoRewrite: true,
    }),
    ['Location', 'http://10.0.0.5:8888/x'],
  );
  assert.equal(
    rewriteLocation('http://elsewhere/x', 'hub.example', target, {
      autoRewrite: true,
      protocolRewrite: undefined,
    }),
    'http://elsewhere/x',
  );
  assert.equal(
    rewriteLocation('/relative', 'hub.example', target, { autoRewrite: true, protocolRewrite: undefined }),
    '/relative',
  );
});

test('--protocol-rewrite changes only the scheme of redirects to the target', () => {
  assert.equal(
    rewriteLocation('http://10.0.0.5:8888/a', 'hub.example', target, {
      autoRewrite: false,
      protocolRewrite: 'https',
    }),
    'https://10.0.0.5:8888/a',
  );
});
