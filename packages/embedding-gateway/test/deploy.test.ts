// deploy/kubernetes/embedding-gateway builds with the real kustomize (kubectl's), holds
// together (names, ports, flags and the VCL agree with the code), and keeps every container
// non-root and read-only.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseFlags } from '@seahorse/runtime';
import { kustomizeBuild } from '@seahorse/runtime/testing';
import { broadcasterFlagSpecs, buildBroadcasterOptions } from '../src/broadcaster/options.ts';
import { buildHasherOptions } from '../src/hasher/cli.ts';
import { buildOptions, flagSpecs } from '../src/options.ts';

const root = fileURLToPath(new URL('../../../deploy/kubernetes/embedding-gateway/', import.meta.url));

const kustomize = (dir: string) => kustomizeBuild(`${root}${dir}`).split(/^---$/m);

function find(documents: string[], kind: string, name: string): string {
  const found = documents.find(
    (doc) =>
      new RegExp(`^kind: ${kind}$`, 'm').test(doc) &&
      new RegExp(`^  name: ${name}(-[a-z0-9]+)?$`, 'm').test(doc),
  );
  assert.ok(found, `no ${kind} ${name} in the build`);
  return found;
}

/** A container's args (kustomize writes containers at indent 6, their fields at 8). */
function args(doc: string, container: string): string[] {
  const block = doc
    .split(/^ {6}- /m)
    .find((part) => new RegExp(`^ {8}name: ${container}$`, 'm').test(part) && /(^|\n)\s*args:/.test(part));
  assert.ok(block, `no args for container ${container}`);
  const list = /(?:^|\n)\s*args:\n((?: {8}- .*\n)+)/.exec(block);
  assert.ok(list, `no args list for container ${container}`);
  return list[1]!
    .trimEnd()
    .split('\n')
    .map((line) => line.replace(/^ {8}- /, '').replace(/^"(.*)"$/, '$1'));
}

function env(doc: string, name: string): string {
  const match = new RegExp(`- name: ${name}\\n\\s+value: "?([^"\\n]*)"?\\n`).exec(doc);
  assert.ok(match, `no env ${name}`);
  return match[1]!;
}

/** Every container of every workload runs non-root with a read-only root filesystem. */
function assertLockedDown(documents: string[]): void {
  for (const doc of documents.filter((d) => /^kind: (Deployment|StatefulSet|Job)$/m.test(d))) {
    const containers = doc.match(/^\s+(- )?image: /gm)?.length ?? 0;
    assert.ok(containers > 0);
    for (const expected of ['readOnlyRootFilesystem: true', 'allowPrivilegeEscalation: false', '- ALL']) {
      assert.equal(doc.split(expected).length - 1, containers, `each container needs ${expected}:\n${doc}`);
    }
    assert.match(doc, /runAsNonRoot: true/);
    assert.match(doc, /type: RuntimeDefault/);
    assert.match(doc, /automountServiceAccountToken: false/);
  }
}

test('base: the gateway, two replicas probed on /healthz and /readyz, a Service and a PDB', () => {
  const documents = kustomize('base');
  const deployment = find(documents, 'Deployment', 'embedding-gateway');
  assert.match(deployment, /replicas: 2/);
  assert.match(deployment, /image: ghcr\.io\/seahorse\/embedding-gateway:0\.1\.0/);
  assert.match(deployment, /readinessProbe:\n\s+httpGet:\n\s+path: \/readyz\n\s+port: http/);
  assert.match(
    deployment,
    /livenessProbe:\n\s+failureThreshold: 6\n\s+httpGet:\n\s+path: \/healthz\n\s+port: http/,
  );
  assert.match(deployment, /containerPort: 8080/);
  // The flags are the gateway's own: its parser accepts them.
  const options = buildOptions(parseFlags(flagSpecs, args(deployment, 'gateway'), {}), {});
  assert.equal(options.port, 8080);
  assert.equal(options.host, '0.0.0.0');
  assert.deepEqual(options.store, { kind: 'filesystem', directory: '/var/cache/embedding-gateway' });
  assert.match(deployment, /mountPath: \/var\/cache\/embedding-gateway/);
  assert.match(find(documents, 'Service', 'embedding-gateway'), /app\.kubernetes\.io\/component: gateway/);
  assert.match(find(documents, 'PodDisruptionBudget', 'embedding-gateway'), /minAvailable: 1/);
  assertLockedDown(documents);
});

test("overlays/dev: the seed's edge — Envoy and the hasher, Varnish, the broadcaster, MinIO — wired consistently", () => {
  const documents = kustomize('overlays/dev');
  assertLockedDown(documents);

  // Entry: the edge; the gateway itself is the backend Varnish names in settings.vcl.
  assert.match(find(documents, 'Service', 'embedding-gateway'), /app\.kubernetes\.io\/component: edge/);
  const backend = find(documents, 'Service', 'embedding-gateway-backend');
  assert.match(backend, /app\.kubernetes\.io\/component: gateway/);
  assert.match(backend, /port: 8080/);
  const settings = readFileSync(`${root}overlays/dev/varnish/settings.vcl`, 'utf8');
  assert.match(settings, /\.host = "embedding-gateway-backend";\s+\.port = "8080";/);

  // The VCL in the ConfigMap is the file the Varnish tests run.
  const vclMap = find(documents, 'ConfigMap', 'embedding-gateway-varnish');
  const vcl = readFileSync(`${root}overlays/dev/varnish/default.vcl`, 'utf8');
  for (const line of vcl.split('\n').filter((l) => l.trim())) {
    assert.ok(vclMap.includes(line), `the ConfigMap lacks default.vcl's line ${line}`);
  }
  assert.match(vclMap, /default\.vcl: \|/);
  assert.match(vclMap, /settings\.vcl: \|/);

  const varnish = find(documents, 'StatefulSet', 'embedding-gateway-varnish');
  const varnishArgs = args(varnish, 'varnish');
  assert.ok(varnishArgs.includes('http=:6081') && varnishArgs.includes('purge=:6091'), varnishArgs.join(' '));
  assert.match(vcl, /local\.socket == "purge"/, 'the VCL serves PURGE on the listener named purge');
  assert.match(varnish, /serviceName: embedding-gateway-varnish-headless/);
  assert.match(varnish, /name: embedding-gateway-varnish-[a-z0-9]+\n/, 'the generated ConfigMap is mounted');
  const headless = find(documents, 'Service', 'embedding-gateway-varnish-headless');
  assert.match(headless, /clusterIP: None/);
  assert.match(headless, /port: 6081/);
  assert.match(headless, /port: 6091/);

  // Edge: Envoy calls the hasher beside it, buffered bodies allowed, failing open, and routes by
  // body hash to the headless Service's pods.
  const edge = find(documents, 'Deployment', 'embedding-gateway-edge');
  const hasher = buildHasherOptions(args(edge, 'hasher').slice(1), {});
  assert.equal(args(edge, 'hasher')[0], 'hasher');
  assert.equal(hasher?.port, 50051);
  assert.equal(hasher?.maxBodyBytes, 1024 * 1024, "the hasher's limit is the VCL's cache_req_body limit");
  assert.match(vcl, /std\.cache_req_body\(1MB\)/);
  assert.match(edge, /grpc:\n\s+port: 50051/);
  const envoy = find(documents, 'ConfigMap', 'embedding-gateway-envoy');
  for (const expected of [
    'envoy.filters.http.ext_proc',
    'failure_mode_allow: true',
    'allow_mode_override: true',
    'request_header_mode: SEND',
    'headers:remove("x-body-hash")',
    'headers:replace("x-original-host", host)',
    'header_name: x-body-hash',
    'lb_policy: RING_HASH',
    'address: embedding-gateway-varnish-headless.embedding-gateway.svc.cluster.local',
    'port_value: 6081',
    'socket_address: { address: 127.0.0.1, port_value: 50051 }',
  ]) {
    assert.ok(envoy.includes(expected), `envoy.yaml lacks ${expected}`);
  }
  // The Lua filter that drops a client's x-body-hash runs before ext_proc.
  assert.ok(envoy.indexOf('envoy.filters.http.lua') < envoy.indexOf('name: envoy.filters.http.ext_proc'));

  // Broadcaster: the subcommand, aimed at every Varnish pod's purge listener.
  const broadcaster = find(documents, 'Deployment', 'embedding-gateway-broadcaster');
  assert.deepEqual(args(broadcaster, 'broadcaster'), ['broadcaster']);
  const environment = Object.fromEntries(
    [
      'ADDRESS',
      'TARGET_SERVICE',
      'TARGET_PORT',
      'POD_TIMEOUT',
      'CONCURRENCY',
      'LAMEDUCK',
      'TERMINATION_GRACE_PERIOD',
    ].map((name) => [name, env(broadcaster, name)]),
  );
  const options = buildBroadcasterOptions(parseFlags(broadcasterFlagSpecs, [], environment));
  assert.equal(
    options.targetService,
    'embedding-gateway-varnish-headless.embedding-gateway.svc.cluster.local',
  );
  assert.equal(options.targetPort, 6091);
  assert.deepEqual(options.methods, ['PURGE']);
  assert.match(broadcaster, /path: \/readyz/);

  // Gateway on MinIO, credentials from the Secret.
  const gateway = find(documents, 'Deployment', 'embedding-gateway');
  assert.equal(env(gateway, 'S3_ENDPOINT_URL'), 'http://embedding-gateway-minio:9000');
  assert.match(
    gateway,
    /- name: AWS_SECRET_ACCESS_KEY\n\s+valueFrom:\n\s+secretKeyRef:\n\s+key: root-password\n\s+name: embedding-gateway-minio/,
  );
  assert.match(find(documents, 'StatefulSet', 'embedding-gateway-minio'), /volumeClaimTemplates:/);
  assert.match(
    find(documents, 'Job', 'embedding-gateway-bucket'),
    /mc mb --ignore-existing store\/embedding-gateway/,
  );

  // NetworkPolicies: Varnish's purge port from the broadcaster only, its http port from the edge.
  const varnishPolicy = find(documents, 'NetworkPolicy', 'embedding-gateway-varnish');
  assert.match(
    varnishPolicy,
    /component: edge\n(\s+app\.kubernetes\.io\/\S+: \S+\n)*\s+ports:\n\s+- port: http\n/,
  );
  assert.match(
    varnishPolicy,
    /component: broadcaster\n(\s+app\.kubernetes\.io\/\S+: \S+\n)*\s+ports:\n\s+- port: purge\n/,
  );
  assert.match(find(documents, 'NetworkPolicy', 'embedding-gateway-backend'), /component: varnish/);
  assert.match(find(documents, 'NetworkPolicy', 'embedding-gateway-minio'), /component: bucket/);
  for (const name of ['embedding-gateway-edge', 'embedding-gateway-varnish']) {
    assert.match(find(documents, 'PodDisruptionBudget', name), /(minAvailable|maxUnavailable): 1/);
  }
});
