import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from '@seahorse/runtime';
import { type AdmissionResponse, type AdmissionReview, parseAdmissionReview } from './admission.ts';
import { applyPatch, type PatchOperation } from './json-patch.ts';
import type { Container, Pod } from './kubernetes.ts';
import { LeaseTokens } from './lease-token.ts';
import { type MutatorOptions, PodMutator } from './mutator.ts';
import { buildPodPatch } from './pod-patch.ts';
import { type RedisSemaphore, SemaphoreUnavailableError } from './semaphore.ts';
import { workloadKey } from './workload.ts';

const quiet = createLogger({
  name: 'test',
  destination: new Writable({ write: (_chunk, _encoding, done) => done() }),
});
const injection = {
  sidecarImage: 'ghcr.io/seahorse/metrics-proxy-hook:test',
  imagePullPolicy: 'IfNotPresent',
  terminationGracePeriodSeconds: 30,
};

function fixture(name: string): AdmissionReview {
  return parseAdmissionReview(readFileSync(new URL(`../test/fixtures/${name}`, import.meta.url), 'utf8'));
}

async function admit(review: AdmissionReview, options: Partial<MutatorOptions> = {}) {
  const mutator = new PodMutator({ injection, semaphore: undefined, ...options }, quiet);
  const { response } = await mutator.review(review);
  return response;
}

function operations(response: AdmissionResponse): PatchOperation[] {
  assert.equal(response.patchType, 'JSONPatch');
  return JSON.parse(Buffer.from(response.patch!, 'base64').toString('utf8')) as PatchOperation[];
}

function patched(review: AdmissionReview, response: AdmissionResponse): Pod {
  return applyPatch(review.request.object as Pod, operations(response));
}

function sidecarOf(pod: Pod): Container {
  const sidecar = pod.spec!.containers.at(-1)!;
  assert.equal(sidecar.name, 'prometheus-metrics-proxy');
  return sidecar;
}

function assertRestrictedSidecar(sidecar: Container): void {
  assert.equal(sidecar.image, injection.sidecarImage);
  assert.equal(sidecar.imagePullPolicy, 'IfNotPresent');
  assert.equal(sidecar.args![0], 'sidecar');
  assert.ok(sidecar.args!.includes('--address=0.0.0.0:65532'));
  assert.deepEqual(sidecar.ports, [{ containerPort: 65532, protocol: 'TCP' }]);
  assert.deepEqual(sidecar.securityContext, {
    runAsNonRoot: true,
    runAsUser: 65532,
    runAsGroup: 65532,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  });
  assert.deepEqual(sidecar.resources, {
    requests: { cpu: '10m', memory: '80Mi' },
    limits: { memory: '192Mi' },
  });
}

test("a Deployment's annotated pod gets the sidecar, port 65532, the Istio exclusion and nothing else", async () => {
  const review = fixture('review-deployment-pod.json');
  const response = await admit(review);
  assert.equal(response.uid, '705ab4f5-6393-11e8-b7cc-42010a800002');
  assert.equal(response.allowed, true);
  assert.equal(response.warnings, undefined);
  const ops = operations(response);
  assert.ok(
    ops.some((op) => op.path === '/metadata/annotations/prometheus.io~1port' && op.op === 'replace'),
    `annotation keys are escaped: ${JSON.stringify(ops)}`,
  );
  assert.ok(
    ops.some(
      (op) =>
        op.path === '/metadata/annotations/traffic.sidecar.istio.io~1excludeInboundPorts' && op.op === 'add',
    ),
  );
  assert.ok(
    !ops.some((op) => op.path.includes('terminationGracePeriodSeconds')),
    'a 30s grace period is kept',
  );

  const before = review.request.object as Pod;
  const pod = patched(review, response);
  assert.deepEqual(pod.metadata!.annotations, {
    'prometheus.io/scrape': 'true',
    'prometheus.io/port': '65532',
    'prometheus.io/path': '/stats/prometheus',
    'prometheus.io/wait': 'true',
    'traffic.sidecar.istio.io/excludeInboundPorts': '65532',
  });
  assert.equal(pod.spec!.terminationGracePeriodSeconds, 30);
  assert.equal(pod.spec!.containers.length, 2);
  assert.deepEqual(
    pod.spec!.containers[0],
    before.spec!.containers[0],
    'the application container is untouched',
  );
  const sidecar = sidecarOf(pod);
  assertRestrictedSidecar(sidecar);
  assert.deepEqual(sidecar.args, [
    'sidecar',
    '--address=0.0.0.0:65532',
    '--target=http://127.0.0.1:8080/stats/prometheus',
    '--termination-grace-period=30s',
  ]);
  assert.deepEqual(
    sidecar.env,
    [{ name: 'NODE_OPTIONS', value: '--max-semi-space-size=1 --max-old-space-size=32' }],
    'no semaphore, no semaphore environment; only the measured heap settings',
  );
  // Everything the patch does not mean to change is as the API server sent it.
  const { metadata: _m1, spec: spec1, ...rest1 } = pod;
  const { metadata: _m2, spec: spec2, ...rest2 } = before;
  assert.deepEqual(rest1, rest2);
  assert.deepEqual({ ...spec1, containers: [] }, { ...spec2, containers: [] });
  assert.deepEqual({ ...pod.metadata, annotations: {} }, { ...before.metadata, annotations: {} });
});

test("the seed's annotation works too; an existing Istio list is extended and a longer grace period kept", async () => {
  const review = fixture('review-statefulset-pod.json');
  const response = await admit(review);
  assert.equal(response.uid, review.request.uid);
  assert.equal(response.allowed, true);
  const pod = patched(review, response);
  const annotations = pod.metadata!.annotations!;
  assert.equal(annotations['prometheus.io/port'], '65532');
  assert.equal(annotations['traffic.sidecar.istio.io/excludeInboundPorts'], '15020,9091,65532');
  assert.equal(annotations['sidecar.istio.io/inject'], 'true');
  assert.equal(pod.spec!.terminationGracePeriodSeconds, 120);
  const sidecar = sidecarOf(pod);
  assertRestrictedSidecar(sidecar);
  assert.ok(sidecar.args!.includes('--target=http://127.0.0.1:9090/actuator/prometheus'));
  assert.ok(
    sidecar.args!.includes('--termination-grace-period=120s'),
    'the sidecar uses the whole grace period',
  );
});

test('65532 already in the Istio list is not added twice; a short grace period is raised', async () => {
  const review = fixture('review-bare-pod.json');
  const response = await admit(review);
  const ops = operations(response);
  assert.ok(!ops.some((op) => op.path.includes('excludeInboundPorts')), JSON.stringify(ops));
  assert.deepEqual(
    ops.find((op) => op.path === '/spec/terminationGracePeriodSeconds'),
    { op: 'replace', path: '/spec/terminationGracePeriodSeconds', value: 30 },
  );
  const pod = patched(review, response);
  assert.equal(pod.metadata!.annotations!['traffic.sidecar.istio.io/excludeInboundPorts'], '65532');
  assert.equal(pod.spec!.terminationGracePeriodSeconds, 30);
  const sidecar = sidecarOf(pod);
  assert.ok(
    sidecar.args!.includes('--target=http://127.0.0.1:9100/metrics'),
    'the path defaults to /metrics',
  );
  assert.ok(sidecar.args!.includes('--termination-grace-period=30s'));
});

test('--termination-grace-period raises the pod to the configured floor and tells the sidecar', async () => {
  const review = fixture('review-deployment-pod.json');
  const response = await admit(review, { injection: { ...injection, terminationGracePeriodSeconds: 45 } });
  const pod = patched(review, response);
  assert.equal(pod.spec!.terminationGracePeriodSeconds, 45);
  assert.ok(sidecarOf(pod).args!.includes('--termination-grace-period=45s'));
});

test('an annotated pod without prometheus.io/port is denied with a message naming the annotation', async () => {
  const review = fixture('review-missing-port.json');
  const response = await admit(review);
  assert.equal(response.uid, review.request.uid);
  assert.equal(response.allowed, false);
  assert.equal(response.patch, undefined);
  assert.equal(response.status?.code, 400);
  assert.match(response.status!.message, /no prometheus\.io\/port annotation; set it to the port/);
});

test('bad annotation values are denied with what to write instead', async () => {
  const base = fixture('review-deployment-pod.json');
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ 'prometheus.io/port': 'http-metrics' }, /must be a port number from 1 to 65535, got "http-metrics"/],
    [{ 'prometheus.io/port': '70000' }, /must be a port number/],
    [{ 'prometheus.io/port': '65532' }, /the metrics proxy's own port/],
    [{ 'prometheus.io/path': '/has space' }, /must be a URL path such as \/metrics, got "\/has space"/],
    [{ 'prometheus.io/scheme': 'ftp' }, /scheme must be http or https, got "ftp"/],
    [{ 'prometheus-metrics-proxy-hook/max-concurrent': '0' }, /1 or more, got "0"/],
    [{ 'prometheus-metrics-proxy-hook/max-concurrent': 'two' }, /whole number of pods/],
  ];
  for (const [changes, message] of cases) {
    const review = structuredClone(base);
    const pod = review.request.object as Pod;
    Object.assign(pod.metadata!.annotations!, changes);
    const response = await admit(review);
    assert.equal(response.allowed, false, JSON.stringify(changes));
    assert.match(response.status!.message, message);
  }
});

test('a path without its leading slash is accepted as Prometheus accepts it, and normalised for the sidecar', async () => {
  const review = fixture('review-deployment-pod.json');
  (review.request.object as Pod).metadata!.annotations!['prometheus.io/path'] = 'custom/metrics';
  const response = await admit(review);
  assert.equal(response.allowed, true, response.status?.message);
  const target = sidecarOf(patched(review, response)).args!.find((arg) => arg.startsWith('--target='));
  assert.match(target!, /^--target=http:\/\/127\.0\.0\.1:\d+\/custom\/metrics$/);
});

test('an https application is scraped over https by the sidecar, and Prometheus is told to scrape the sidecar over http', async () => {
  const review = fixture('review-deployment-pod.json');
  (review.request.object as Pod).metadata!.annotations!['prometheus.io/scheme'] = 'HTTPS';
  const response = await admit(review);
  assert.equal(response.allowed, true, response.status?.message);
  const pod = patched(review, response);
  const target = sidecarOf(pod).args!.find((arg) => arg.startsWith('--target='));
  assert.match(target!, /^--target=https:\/\/127\.0\.0\.1:\d+\/stats\/prometheus$/);
  assert.equal(pod.metadata!.annotations!['prometheus.io/scheme'], 'http');
  assert.equal(pod.metadata!.annotations!['prometheus.io/port'], '65532');
  // A pod without the scheme annotation gets none added.
  const plain = fixture('review-deployment-pod.json');
  const plainPod = patched(plain, await admit(plain));
  assert.equal(plainPod.metadata!.annotations!['prometheus.io/scheme'], undefined);
});

test('non-string annotation values are denied with a message naming the annotation, never thrown', async () => {
  const base = fixture('review-deployment-pod.json');
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [
      { 'prometheus.io/port': 8080 },
      /annotation prometheus\.io\/port must be a string .*got a number \(8080\)/,
    ],
    [{ 'prometheus.io/path': ['/metrics'] }, /annotation prometheus\.io\/path must be a string .*got a list/],
    [
      { 'prometheus.io/wait': true },
      /annotation prometheus\.io\/wait must be a string .*got a boolean \(true\)/,
    ],
    [{ 'prometheus-metrics-proxy-hook/max-concurrent': 2 }, /max-concurrent must be a string/],
    [
      { 'traffic.sidecar.istio.io/excludeInboundPorts': { a: 1 } },
      /excludeInboundPorts must be a string .*got an object/,
    ],
    [{ 'prometheus.io/scheme': null }, /scheme must be a string .*got null/],
  ];
  for (const [changes, message] of cases) {
    const review = structuredClone(base);
    Object.assign((review.request.object as Pod).metadata!.annotations!, changes);
    const response = await admit(review);
    assert.equal(response.allowed, false, JSON.stringify(changes));
    assert.equal(response.status!.code, 400);
    assert.match(response.status!.message, message);
  }
  const review = structuredClone(base);
  (review.request.object as { metadata: { annotations: unknown } }).metadata.annotations =
    'prometheus.io/wait';
  const response = await admit(review);
  assert.equal(response.allowed, false);
  assert.match(response.status!.message, /metadata\.annotations must be a map of strings/);
});

test('pods without the annotation, non-Pod kinds and updates are allowed without a patch', async () => {
  for (const name of ['review-unannotated-pod.json', 'review-deployment.json']) {
    const review = fixture(name);
    const response = await admit(review);
    assert.deepEqual(response, { uid: review.request.uid, allowed: true }, name);
  }
  const update = fixture('review-deployment-pod.json');
  update.request.operation = 'UPDATE';
  update.request.oldObject = structuredClone(update.request.object);
  (update.request.object as Pod).metadata!.annotations!['unrelated'] = 'changed';
  assert.deepEqual(await admit(update), { uid: update.request.uid, allowed: true });
  const notTrue = fixture('review-deployment-pod.json');
  (notTrue.request.object as Pod).metadata!.annotations!['prometheus.io/wait'] = 'false';
  assert.deepEqual(await admit(notTrue), { uid: notTrue.request.uid, allowed: true });
});

test('a pod UPDATE that adds, changes or removes the slot annotation, the semaphore label or max-concurrent is reverted', async () => {
  const base = fixture('review-deployment-pod.json');
  const old = structuredClone(base.request.object as Pod);
  old.metadata!.annotations!['prometheus-metrics-proxy-hook/slot'] = 'shop/Deployment/checkout#uid-1';
  old.metadata!.labels = { ...old.metadata!.labels, 'prometheus-metrics-proxy-hook/semaphore': 'true' };
  const cases: Array<[string, (pod: Pod) => void]> = [
    [
      'slot annotation removed',
      (pod) => delete pod.metadata!.annotations!['prometheus-metrics-proxy-hook/slot'],
    ],
    [
      'slot annotation pointed elsewhere',
      (pod) => {
        pod.metadata!.annotations!['prometheus-metrics-proxy-hook/slot'] = 'shop/Deployment/other#uid-9';
      },
    ],
    [
      'semaphore label removed',
      (pod) => delete pod.metadata!.labels!['prometheus-metrics-proxy-hook/semaphore'],
    ],
    [
      'max-concurrent added after creation',
      (pod) => {
        pod.metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] = '1';
      },
    ],
    ['all annotations dropped', (pod) => delete pod.metadata!.annotations],
  ];
  for (const [what, change] of cases) {
    const review = structuredClone(base);
    review.request.operation = 'UPDATE';
    review.request.oldObject = structuredClone(old);
    const updated = structuredClone(old);
    change(updated);
    updated.metadata!.annotations = updated.metadata!.annotations && {
      ...updated.metadata!.annotations,
      note: 'kept',
    };
    review.request.object = updated;
    const response = await admit(review);
    assert.equal(response.allowed, true, what);
    assert.match(response.warnings?.[0] ?? '', /cannot be changed; the change was reverted/, what);
    const result = applyPatch(updated, operations(response));
    for (const name of [
      'prometheus-metrics-proxy-hook/slot',
      'prometheus-metrics-proxy-hook/max-concurrent',
    ]) {
      assert.equal(
        result.metadata!.annotations?.[name],
        old.metadata!.annotations![name],
        `${what}: ${name}`,
      );
    }
    assert.equal(result.metadata!.labels?.['prometheus-metrics-proxy-hook/semaphore'], 'true', what);
    if (updated.metadata!.annotations) assert.equal(result.metadata!.annotations!.note, 'kept', what);
  }
  // A label given to a pod that never had it (to look like a slot holder) is taken off.
  const review = structuredClone(base);
  review.request.operation = 'UPDATE';
  review.request.oldObject = structuredClone(base.request.object);
  (review.request.object as Pod).metadata!.labels = { 'prometheus-metrics-proxy-hook/semaphore': 'true' };
  const result = applyPatch(review.request.object as Pod, operations(await admit(review)));
  assert.equal(result.metadata!.labels!['prometheus-metrics-proxy-hook/semaphore'], undefined);
  // An update without its oldObject is a bad request, never a crash.
  const broken = structuredClone(base);
  broken.request.operation = 'UPDATE';
  await assert.rejects(admit(broken), /does not carry both object and oldObject/);
});

test('a pod that already has the sidecar (webhook reinvocation) is left as it is', async () => {
  const review = fixture('review-deployment-pod.json');
  const once = patched(review, await admit(review));
  const again = structuredClone(review);
  again.request.object = once;
  assert.deepEqual(await admit(again), { uid: review.request.uid, allowed: true });
});

test('a pod without an annotations map gets the whole map added in one operation', () => {
  const pod: Pod = { metadata: { name: 'p' }, spec: { containers: [{ name: 'app' }] } };
  const ops = buildPodPatch(pod, { port: 8080, path: '/metrics', slot: undefined }, injection);
  assert.deepEqual(ops[0], {
    op: 'add',
    path: '/metadata/annotations',
    value: { 'prometheus.io/port': '65532', 'traffic.sidecar.istio.io/excludeInboundPorts': '65532' },
  });
  const result = applyPatch(pod, ops);
  assert.ok(ops.some((op) => op.op === 'add' && op.path === '/spec/terminationGracePeriodSeconds'));
  assert.equal(result.spec!.terminationGracePeriodSeconds, 30, 'an absent grace period is written out');
  assert.equal(result.spec!.containers.length, 2);
  const longer = applyPatch(
    pod,
    buildPodPatch(
      pod,
      { port: 8080, path: '/metrics', slot: undefined },
      { ...injection, terminationGracePeriodSeconds: 60 },
    ),
  );
  assert.equal(longer.spec!.terminationGracePeriodSeconds, 60);
});

test('the workload key is the owner (a Deployment across ReplicaSet revisions) or the generateName', () => {
  const key = (name: string) => {
    const review = fixture(name);
    return workloadKey(review.request.object as Pod, review.request.namespace!);
  };
  assert.equal(key('review-deployment-pod.json'), 'shop/Deployment/checkout');
  assert.equal(key('review-statefulset-pod.json'), 'payments/StatefulSet/ledger');
  assert.equal(key('review-unannotated-pod.json'), 'batch/Job/nightly-report-28871234');
  assert.equal(key('review-bare-pod.json'), 'default/Pod/debug-exporter');
  assert.equal(workloadKey({ metadata: { generateName: 'runner-' } }, 'ci'), 'ci/Pod/runner-');
});

const leaseCaPem = '-----BEGIN CERTIFICATE-----\nMIIBtestca\n-----END CERTIFICATE-----\n';
const leaseCaFile = join(mkdtempSync(join(tmpdir(), 'seahorse-mutator-')), 'ca.crt');
writeFileSync(leaseCaFile, leaseCaPem);
const tokens = new LeaseTokens([Buffer.from('k'.repeat(32))]);
const leaseUrl =
  'https://prometheus-metrics-proxy-hook.prometheus-metrics-proxy-hook.svc:443/semaphore/lease';

function fakeSemaphore(acquire: RedisSemaphore['acquire']): MutatorOptions['semaphore'] {
  return {
    client: { acquire } as RedisSemaphore,
    redis: [
      { host: 'redis-0.redis', port: 6379 },
      { host: 'redis-1.redis', port: 6379 },
      { host: 'redis-2.redis', port: 6379 },
    ],
    commandTimeoutMs: 250,
    lock: { ttlMs: 3000, retryCount: 1, retryDelayMs: 10, retryJitterMs: 10 },
    admissionLeaseMs: 300_000,
    leaseMs: 30_000,
    lease: { tokens, url: leaseUrl, caFile: leaseCaFile },
  };
}

function limited(limit: string): AdmissionReview {
  const review = fixture('review-deployment-pod.json');
  (review.request.object as Pod).metadata!.annotations!['prometheus-metrics-proxy-hook/max-concurrent'] =
    limit;
  return review;
}

test('a granted slot reaches the sidecar as environment variables and the pod as an annotation', async () => {
  const requests: unknown[] = [];
  const semaphore = fakeSemaphore(async (request) => {
    requests.push(request);
    return { granted: true, held: 1, version: 'v1' };
  });
  const review = limited('2');
  const pod = patched(review, await admit(review, { semaphore }));
  assert.equal(requests.length, 1);
  const request = requests[0] as {
    workload: string;
    slot: string;
    limit: number;
    leaseMs: number;
    dryRun: boolean;
  };
  assert.equal(request.workload, 'shop/Deployment/checkout');
  assert.equal(request.limit, 2);
  assert.equal(request.leaseMs, 300_000, 'the admission lease covers scheduling and image pulls');
  assert.equal(request.dryRun, false);
  assert.match(request.slot, /^[0-9a-f-]{36}$/);
  assert.equal(
    pod.metadata!.annotations!['prometheus-metrics-proxy-hook/slot'],
    `shop/Deployment/checkout#${request.slot}`,
  );
  const env = sidecarOf(pod).env!;
  const token = env.find((variable) => variable.name === 'METRICS_PROXY_HOOK_LEASE_TOKEN')?.value;
  assert.deepEqual(env, [
    { name: 'NODE_OPTIONS', value: '--max-semi-space-size=1 --max-old-space-size=32' },
    { name: 'METRICS_PROXY_HOOK_SEMAPHORE_KEY', value: 'shop/Deployment/checkout' },
    { name: 'METRICS_PROXY_HOOK_SEMAPHORE_SLOT', value: request.slot },
    { name: 'METRICS_PROXY_HOOK_SEMAPHORE_VERSION', value: 'v1' },
    { name: 'METRICS_PROXY_HOOK_SEMAPHORE_LEASE_TTL', value: '30s' },
    { name: 'METRICS_PROXY_HOOK_LEASE_URL', value: leaseUrl },
    { name: 'METRICS_PROXY_HOOK_LEASE_CA', value: leaseCaPem },
    { name: 'METRICS_PROXY_HOOK_LEASE_TOKEN', value: token },
  ]);
  // The token names this slot, its workload, namespace, pod, limit and grace period, signed.
  assert.deepEqual(tokens.verify(token!), {
    workload: 'shop/Deployment/checkout',
    slot: request.slot,
    namespace: 'shop',
    pod: (review.request.object as Pod).metadata!.generateName,
    limit: 2,
    graceMs: 30_000,
  });
});

test('a limited pod carries no Redis address or credential: no secretKeyRef, no password, no Redis host in its spec', async () => {
  const review = limited('2');
  const mutator = new PodMutator(
    {
      injection,
      semaphore: {
        ...fakeSemaphore(async () => ({ granted: true, held: 1, version: 'v1' }))!,
        password: 'secret-value',
      },
    },
    quiet,
  );
  const { response } = await mutator.review(review);
  const env = sidecarOf(patched(review, response)).env!;
  assert.ok(env.every((variable) => variable.valueFrom === undefined && variable.value !== undefined));
  assert.ok(
    env.every((variable) => !/REDIS/.test(variable.name)),
    JSON.stringify(env),
  );
  const text = JSON.stringify(operations(response));
  for (const leak of ['secret-value', 'redis-0.redis', '6379']) assert.ok(!text.includes(leak), leak);
});

test('a pod holding a slot is labelled (slot reclaim lists exactly these pods); others are not', async () => {
  const mutator = new PodMutator(
    { injection, semaphore: fakeSemaphore(async () => ({ granted: true, held: 1, version: 'v1' })) },
    quiet,
  );
  const review = limited('2');
  const { response } = await mutator.review(review);
  assert.equal(
    patched(review, response).metadata!.labels!['prometheus-metrics-proxy-hook/semaphore'],
    'true',
  );
  const free = fixture('review-deployment-pod.json');
  const unlimited = await mutator.review(free);
  assert.equal(
    patched(free, unlimited.response).metadata!.labels?.['prometheus-metrics-proxy-hook/semaphore'],
    undefined,
  );
});

test('--native-sidecar puts the proxy among the init containers with restartPolicy Always, so a Job pod completes', async () => {
  const review = fixture('review-deployment-pod.json');
  const appContainers = (review.request.object as Pod).spec!.containers.length;
  const mutator = new PodMutator(
    { injection: { ...injection, nativeSidecar: true }, semaphore: undefined },
    quiet,
  );
  const { response } = await mutator.review(review);
  const pod = patched(review, response);
  assert.equal(pod.spec!.containers.length, appContainers, 'the main containers are untouched');
  const native = pod.spec!.initContainers!.at(-1)!;
  assert.equal(native.name, 'prometheus-metrics-proxy');
  assert.equal(native.restartPolicy, 'Always');
  // Told so: stopped after the application, it releases its slot at exit instead of holding it.
  assert.equal(native.args!.at(-1), '--native-sidecar');
  assertRestrictedSidecar(native);
  // Reinvoked with it already there: left alone.
  const again = structuredClone(review);
  again.request.object = pod;
  assert.equal((await mutator.review(again)).response.patch, undefined);
  // A pod that has init containers already gets the sidecar appended after them.
  const withInit = fixture('review-deployment-pod.json');
  (withInit.request.object as Pod).spec!.initContainers = [{ name: 'migrate', image: 'app:1' }];
  const appended = patched(withInit, (await mutator.review(withInit)).response).spec!.initContainers!;
  assert.deepEqual(
    appended.map((container) => container.name),
    ['migrate', 'prometheus-metrics-proxy'],
  );
});

test('a full workload is denied with its limit and how many pods hold slots', async () => {
  const semaphore = fakeSemaphore(async () => ({ granted: false, held: 2, limit: 2 }));
  const response = await admit(limited('2'), { semaphore });
  assert.equal(response.allowed, false);
  assert.equal(response.status?.code, 403);
  assert.match(response.status!.message, /shop\/Deployment\/checkout already runs 2 of at most 2 pods/);
});

test('an unavailable semaphore denies (fails closed) with the reason', async () => {
  const semaphore = fakeSemaphore(async () => {
    throw new SemaphoreUnavailableError('only 1 of 3 Redis nodes answered (a majority of 2 is needed)');
  });
  const response = await admit(limited('2'), { semaphore });
  assert.equal(response.allowed, false);
  assert.equal(response.status?.code, 503);
  assert.match(
    response.status!.message,
    /at most 2 pods at once .* only 1 of 3 Redis nodes answered .* denied so the limit cannot be exceeded/,
  );
});

test('without --redis a max-concurrent annotation is ignored with a warning, not a denial', async () => {
  const response = await admit(limited('2'));
  assert.equal(response.allowed, true);
  assert.deepEqual(response.warnings, [
    'prometheus-metrics-proxy-hook/max-concurrent is ignored: the metrics-proxy webhook runs without --redis',
  ]);
});

test('a dry run checks for room without taking a slot', async () => {
  let dryRun: boolean | undefined;
  const semaphore = fakeSemaphore(async (request) => {
    dryRun = request.dryRun;
    return { granted: true, held: 1, version: 'v1' };
  });
  const review = limited('1');
  review.request.dryRun = true;
  assert.equal((await admit(review, { semaphore })).allowed, true);
  assert.equal(dryRun, true);
});

test('a pod that sets the semaphore label itself (to pass the Redis NetworkPolicy) without getting a slot has it removed', async () => {
  const mutator = new PodMutator({ injection, semaphore: undefined }, quiet);
  const label = 'prometheus-metrics-proxy-hook/semaphore';
  for (const name of ['review-deployment-pod.json', 'review-unannotated-pod.json']) {
    const review = fixture(name);
    const pod = review.request.object as Pod;
    pod.metadata!.labels = { ...pod.metadata!.labels, [label]: 'true' };
    const { response } = await mutator.review(review);
    assert.equal(response.allowed, true);
    const after = patched(review, response);
    assert.equal(after.metadata!.labels![label], undefined, name);
    assert.match(
      response.warnings!.join('\n'),
      /set by the metrics-proxy webhook on pods it gives a semaphore slot; removed/,
    );
  }
});

test('through the entry for namespaces not enabled for the semaphore, a limited pod is denied with how to enable it; other pods are served as usual', async () => {
  let asked = false;
  const semaphore = fakeSemaphore(async () => {
    asked = true;
    return { granted: true, held: 1, version: 'v1' };
  });
  const mutator = new PodMutator({ injection, semaphore }, quiet);
  const { response } = await mutator.review(limited('2'), { semaphoreEnabled: false });
  assert.equal(response.allowed, false);
  assert.equal(response.status?.code, 403);
  assert.match(
    response.status!.message,
    /namespace shop is not enabled for prometheus-metrics-proxy-hook\/max-concurrent: .*'kubectl label namespace shop prometheus-metrics-proxy-hook\/semaphore=enabled'/,
  );
  assert.equal(asked, false, 'no slot taken');
  const free = fixture('review-deployment-pod.json');
  const unlimited = await mutator.review(free, { semaphoreEnabled: false });
  assert.equal(unlimited.response.allowed, true);
  sidecarOf(patched(free, unlimited.response));
});
