// The webhook over real HTTPS: certificates from a CA made with openssl, mounted the way the
// kubelet mounts cert-manager's Secret, rotated while the webhook runs.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { issueCertificate, waitFor } from '@seahorse/runtime/testing';
import { applyPatch, type PatchOperation, type Pod } from '../src/index.ts';
import {
  fixture,
  httpsCall,
  installKubeletStyle,
  issueServingCertificate,
  makeCertificateAuthority,
  postReview,
  startTestWebhook,
} from './helpers.ts';

let dir: string;
let ca: Buffer;
let first: { cert: Buffer; key: Buffer };
let second: { cert: Buffer; key: Buffer };

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'seahorse-webhook-'));
  makeCertificateAuthority(dir);
  ca = readFileSync(join(dir, 'ca.crt'));
  first = issueServingCertificate(dir, 'webhook-first');
  second = issueServingCertificate(dir, 'webhook-second');
});
after(() => rmSync(dir, { recursive: true, force: true }));

function certDir(name: string, pair = first): string {
  const path = join(dir, name);
  installKubeletStyle(path, pair);
  return path;
}

test('POST /mutate over HTTPS answers the AdmissionReview with its uid and a JSONPatch', async () => {
  const webhook = await startTestWebhook(certDir('round-trip'));
  try {
    const review = fixture('review-deployment-pod.json');
    const res = await postReview(webhook.url, ca, review);
    assert.equal(res.status, 200, res.body);
    assert.equal(res.peer.subject.CN, 'webhook-first');
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const answer = JSON.parse(res.body);
    assert.equal(answer.apiVersion, 'admission.k8s.io/v1');
    assert.equal(answer.kind, 'AdmissionReview');
    assert.equal(answer.response.uid, review.request.uid);
    assert.equal(answer.response.allowed, true);
    assert.equal(answer.response.patchType, 'JSONPatch');
    const ops = JSON.parse(Buffer.from(answer.response.patch, 'base64').toString()) as PatchOperation[];
    const pod = applyPatch(review.request.object as Pod, ops);
    assert.equal(pod.metadata!.annotations!['prometheus.io/port'], '65532');
    assert.equal(pod.spec!.containers.at(-1)!.name, 'prometheus-metrics-proxy');

    const denied = JSON.parse((await postReview(webhook.url, ca, fixture('review-missing-port.json'))).body);
    assert.equal(denied.response.allowed, false);
    assert.match(denied.response.status.message, /prometheus\.io\/port/);
    const untouched = JSON.parse((await postReview(webhook.url, ca, fixture('review-deployment.json'))).body);
    assert.deepEqual(untouched.response, { uid: 'a9b8c7d6-e5f4-4321-9876-543210fedcba', allowed: true });

    assert.equal((await fetch(`${webhook.probeUrl}/healthz`)).status, 200);
    assert.equal((await fetch(`${webhook.probeUrl}/readyz`)).status, 200);
    const metrics = await (await fetch(webhook.metricsUrl)).text();
    assert.match(metrics, /seahorse_metrics_proxy_hook_admission_requests_total\{code="200"\} 3/);
    assert.match(metrics, /seahorse_metrics_proxy_hook_mutations_total 1/);
    assert.match(metrics, /seahorse_metrics_proxy_hook_denials_total\{reason="invalid_annotation"\} 1/);
    assert.match(
      metrics,
      /seahorse_metrics_proxy_hook_admission_duration_seconds_count\{outcome="mutated"\} 1/,
    );
    assert.match(metrics, /process_cpu_seconds_total/);
  } finally {
    await webhook.close();
  }
  assert.equal(webhook.lifecycle.ready, false);
});

test('a rotated certificate is served without a restart; a half-written rotation keeps the old one', async () => {
  const path = certDir('rotation');
  const webhook = await startTestWebhook(path);
  try {
    const review = fixture('review-unannotated-pod.json');
    assert.equal((await postReview(webhook.url, ca, review)).peer.subject.CN, 'webhook-first');

    // The new certificate with the old key is not a pair: the webhook keeps serving the old one.
    installKubeletStyle(path, { cert: second.cert, key: first.key });
    assert.equal(webhook.certificates.reload(), false);
    assert.equal((await postReview(webhook.url, ca, review)).peer.subject.CN, 'webhook-first');

    installKubeletStyle(path, second);
    await waitFor('the rotated certificate to be served', async () => {
      const res = await postReview(webhook.url, ca, review);
      return res.status === 200 && res.peer.subject.CN === 'webhook-second';
    });
    assert.ok(webhook.logs.has('serving certificate reloaded'));
    const metrics = await (await fetch(webhook.metricsUrl)).text();
    assert.match(metrics, /seahorse_metrics_proxy_hook_certificate_reloads_total\{result="success"\} 1/);
    assert.match(metrics, /seahorse_metrics_proxy_hook_certificate_reloads_total\{result="failure"\} [1-9]/);
  } finally {
    await webhook.close();
  }
});

test('plain files replaced in place are picked up too', async () => {
  const path = join(dir, 'plain');
  mkdirSync(path);
  writeFileSync(join(path, 'tls.crt'), first.cert);
  writeFileSync(join(path, 'tls.key'), first.key);
  const webhook = await startTestWebhook(path, ['--cert-poll-interval', '100ms']);
  try {
    const review = fixture('review-unannotated-pod.json');
    assert.equal((await postReview(webhook.url, ca, review)).peer.subject.CN, 'webhook-first');
    writeFileSync(join(path, 'tls.key.new'), second.key);
    writeFileSync(join(path, 'tls.crt.new'), second.cert);
    renameSync(join(path, 'tls.key.new'), join(path, 'tls.key'));
    renameSync(join(path, 'tls.crt.new'), join(path, 'tls.crt'));
    await waitFor('the replaced certificate to be served', async () => {
      return (await postReview(webhook.url, ca, review)).peer.subject.CN === 'webhook-second';
    });
  } finally {
    await webhook.close();
  }
});

test('bad requests get the right status and a Kubernetes Status saying what is wrong', async () => {
  const webhook = await startTestWebhook(certDir('bad-input'));
  try {
    const json = { 'content-type': 'application/json' };
    const wrongVersion = fixture('review-deployment-pod.json') as unknown as Record<string, unknown>;
    wrongVersion.apiVersion = 'admission.k8s.io/v1beta1';
    const noUid = fixture('review-deployment-pod.json');
    noUid.request.uid = '';
    const cases: Array<[string, Parameters<typeof httpsCall>[1], number, RegExp]> = [
      ['malformed JSON', { ca, headers: json, body: '{"kind": "AdmissionReview",' }, 400, /not valid JSON/],
      [
        'wrong apiVersion',
        { ca, headers: json, body: JSON.stringify(wrongVersion) },
        400,
        /expected apiVersion admission\.k8s\.io\/v1, got "admission\.k8s\.io\/v1beta1"/,
      ],
      [
        'wrong kind',
        { ca, headers: json, body: '{"kind":"Pod","apiVersion":"v1"}' },
        400,
        /expected kind AdmissionReview, got "Pod"/,
      ],
      ['no uid', { ca, headers: json, body: JSON.stringify(noUid) }, 400, /no uid/],
      [
        'oversized body',
        { ca, headers: json, body: Buffer.alloc(4 * 1024 * 1024, 0x20) },
        413,
        /larger than 3145728 bytes/,
      ],
      [
        'not JSON',
        { ca, headers: { 'content-type': 'text/plain' }, body: 'hello' },
        415,
        /takes application\/json, got 'text\/plain'/,
      ],
      ['GET', { ca, method: 'GET' }, 405, /takes POST, not GET/],
    ];
    for (const [what, options, status, message] of cases) {
      const res = await httpsCall(webhook.url, options);
      assert.equal(res.status, status, `${what}: ${res.body}`);
      const body = JSON.parse(res.body);
      assert.equal(body.kind, 'Status', what);
      assert.equal(body.status, 'Failure', what);
      assert.equal(body.code, status, what);
      assert.match(body.message, message, what);
    }
    const elsewhere = await httpsCall(webhook.url.replace('/mutate', '/validate'), {
      ca,
      headers: json,
      body: '{}',
    });
    assert.equal(elsewhere.status, 404);
    assert.match(JSON.parse(elsewhere.body).message, /the webhook serves POST \/mutate/);
    // The server is still well after all of that.
    assert.equal((await postReview(webhook.url, ca, fixture('review-deployment-pod.json'))).status, 200);
    const metrics = await (await fetch(webhook.metricsUrl)).text();
    assert.match(metrics, /admission_requests_total\{code="400"\} 4/);
    assert.match(metrics, /admission_requests_total\{code="413"\} 1/);
  } finally {
    await webhook.close();
  }
});

function negotiatedProtocol(url: string): Promise<string | false | null> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      { host: '127.0.0.1', port: Number(port), ca, ALPNProtocols: ['h2', 'http/1.1'] },
      () => {
        resolve(socket.alpnProtocol ?? null);
        socket.end();
      },
    );
    socket.on('error', reject);
  });
}

test('HTTP/2 is off unless --enable-http2; with it, HTTP/2 and HTTP/1.1 both work', async () => {
  const plain = await startTestWebhook(certDir('h1'));
  const h2 = await startTestWebhook(certDir('h2'), ['--enable-http2']);
  try {
    assert.notEqual(await negotiatedProtocol(plain.url), 'h2');
    assert.equal(await negotiatedProtocol(h2.url), 'h2');
    const review = fixture('review-deployment-pod.json');
    const session = http2Connect(new URL(h2.url).origin, { ca });
    try {
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': '/mutate',
          'content-type': 'application/json',
        });
        let status = 0;
        let body = '';
        stream.on('response', (headers) => {
          status = Number(headers[':status']);
        });
        stream.on('data', (chunk: Buffer) => {
          body += chunk;
        });
        stream.on('end', () => resolve({ status, body }));
        stream.on('error', reject);
        stream.end(JSON.stringify(review));
      });
      assert.equal(answer.status, 200, answer.body);
      assert.equal(JSON.parse(answer.body).response.uid, review.request.uid);
    } finally {
      session.close();
    }
    const overHttp1 = await postReview(h2.url, ca, review);
    assert.equal(overHttp1.status, 200);
  } finally {
    await plain.close();
    await h2.close();
  }
});

test('with --client-ca-file only a client certificate from that CA with an allowed name is answered (the API server via its AdmissionConfiguration kubeConfigFile); others get 401/403', async () => {
  const clients = mkdtempSync(join(tmpdir(), 'seahorse-webhook-clients-'));
  makeCertificateAuthority(clients);
  const apiserver = issueCertificate(clients, 'kube-apiserver', { server: false });
  const intruder = issueCertificate(clients, 'some-user', { server: false });
  // Signed by the serving CA, not the client CA.
  const stranger = issueCertificate(dir, 'kube-apiserver-elsewhere', { server: false });
  const webhook = await startTestWebhook(certDir('client-auth'), [
    `--client-ca-file=${join(clients, 'ca.crt')}`,
    '--client-cert-name=kube-apiserver',
  ]);
  const call = (client?: { cert: Buffer; key: Buffer }) =>
    httpsCall(webhook.url, {
      ca,
      client,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(fixture('review-deployment-pod.json')),
    });
  try {
    const allowed = await call(apiserver);
    assert.equal(allowed.status, 200, allowed.body);
    assert.equal(JSON.parse(allowed.body).response.allowed, true);
    for (const [what, client] of [
      ['no certificate', undefined],
      ['a certificate from another CA', stranger],
    ] as const) {
      const res = await call(client);
      assert.equal(res.status, 401, `${what}: ${res.body}`);
      const status = JSON.parse(res.body);
      assert.equal(status.kind, 'Status');
      assert.match(status.message, /only clients with a certificate signed by its --client-ca-file/);
    }
    const wrongName = await call(intruder);
    assert.equal(wrongName.status, 403, wrongName.body);
    assert.match(
      JSON.parse(wrongName.body).message,
      /\(some-user\) is not one of --client-cert-name kube-apiserver/,
    );
    // A rotated serving certificate keeps the client CA.
    installKubeletStyle(join(dir, 'client-auth'), second);
    await waitFor(
      'the rotated certificate',
      async () => (await call(apiserver)).peer.subject.CN === 'webhook-second',
    );
    assert.equal((await call()).status, 401);
    assert.equal((await call(apiserver)).status, 200);
  } finally {
    await webhook.close();
    rmSync(clients, { recursive: true, force: true });
  }
});
