import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { issueCertificate, makeCertificateAuthority } from '@seahorse/runtime/testing';
import { rawRequest, startTestProxy } from './helpers.ts';

let dir: string;
const file = (name: string) => join(dir, name);

/** A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a self-signed one. */
function makeCertificates(): void {
  makeCertificateAuthority(dir);
  issueCertificate(dir, 'server');
  issueCertificate(dir, 'client', { server: false });
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'self.key',
      '-out',
      'self.crt',
      '-days',
      '2',
    ].concat(['-subj', '/CN=self', '-addext', 'subjectAltName=IP:127.0.0.1']),
    { cwd: dir, stdio: 'pipe' },
  );
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'seahorse-tls-'));
  makeCertificates();
});
after(() => rmSync(dir, { recursive: true, force: true }));

function httpsGet(url: string, options: { ca?: Buffer; headers?: Record<string, string> } = {}) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    httpsRequest(url, { ca: options.ca, headers: options.headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    })
      .on('error', reject)
      .end();
  });
}

/** An HTTPS target that only talks to clients with a certificate from our CA. */
async function startMutualTlsTarget(key = 'server', requireClient = true) {
  const server = createHttpsServer(
    {
      key: readFileSync(file(`${key}.key`)),
      cert: readFileSync(file(`${key}.crt`)),
      ca: readFileSync(file('ca.crt')),
      requestCert: requireClient,
      rejectUnauthorized: requireClient,
    },
    (req, res) => {
      const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
      res.end(`hello ${peer?.subject?.CN ?? 'anonymous'} at ${req.url}`);
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `https://127.0.0.1:${(server.address() as { port: number }).port}` };
}

test('--ssl-key/--ssl-cert serve the proxy over HTTPS, --api-ssl-* the API', async () => {
  const target = await startMutualTlsTarget('server', false);
  const proxy = await startTestProxy([
    '--ssl-key',
    file('server.key'),
    '--ssl-cert',
    file('server.crt'),
    '--api-ssl-key',
    file('server.key'),
    '--api-ssl-cert',
    file('server.crt'),
    '--client-ssl-ca',
    file('ca.crt'),
  ]);
  try {
    const ca = readFileSync(file('ca.crt'));
    const add = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(
        `${proxy.apiUrl}/api/routes/secure`,
        {
          method: 'POST',
          ca,
          agent: false,
          headers: { authorization: `token ${proxy.token}` },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ target: target.url }));
    });
    assert.equal(add, 201);
    const res = await httpsGet(`${proxy.url}/secure/x`, { ca });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello anonymous at /secure/x');
  } finally {
    await proxy.close();
    target.server.close();
  }
});

test('--client-ssl-key/--client-ssl-cert authenticate the proxy to an mTLS target', async () => {
  const target = await startMutualTlsTarget();
  const withCert = await startTestProxy([
    '--client-ssl-key',
    file('client.key'),
    '--client-ssl-cert',
    file('client.crt'),
    '--client-ssl-ca',
    file('ca.crt'),
  ]);
  const withoutCert = await startTestProxy(['--client-ssl-ca', file('ca.crt')]);
  try {
    await withCert.addRoute('/', target.url);
    await withoutCert.addRoute('/', target.url);
    const ok = await fetch(`${withCert.url}/m`);
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), 'hello client at /m');
    assert.equal((await fetch(`${withoutCert.url}/m`)).status, 503);
  } finally {
    await withCert.close();
    await withoutCert.close();
    target.server.close();
  }
});

test('a self-signed target is refused unless --insecure is given', async () => {
  const target = await startMutualTlsTarget('self', false);
  const strict = await startTestProxy();
  const insecure = await startTestProxy(['--insecure']);
  try {
    await strict.addRoute('/', target.url);
    await insecure.addRoute('/', target.url);
    assert.equal((await fetch(`${strict.url}/x`)).status, 503);
    assert.equal((await fetch(`${insecure.url}/x`)).status, 200);
  } finally {
    await strict.close();
    await insecure.close();
    target.server.close();
  }
});

test('--redirect-port answers plain HTTP with a 301 to HTTPS', async () => {
  const { freePort } = await import('@seahorse/runtime/testing');
  const redirectPort = await freePort();
  const proxy = await startTestProxy([
    '--ssl-key',
    file('server.key'),
    '--ssl-cert',
    file('server.crt'),
    '--redirect-port',
    String(redirectPort),
    '--redirect-to',
    '443',
  ]);
  try {
    const res = await rawRequest(`http://127.0.0.1:${redirectPort}/hub/login?next=x`, {
      headers: { host: 'hub.example.org:80' },
    });
    assert.equal(res.status, 301);
    assert.equal(res.headers.location, 'https://hub.example.org/hub/login?next=x');
  } finally {
    await proxy.close();
  }
});
