// The Kubernetes manifests build with the real kustomize (kubectl's) and keep the seeds'
// security posture.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { kustomizeBuild } from '@seahorse/runtime/testing';

const deploy = fileURLToPath(new URL('../../../deploy/', import.meta.url));

const kustomize = (dir: string) => kustomizeBuild(`${deploy}kubernetes/proxy/${dir}`);

for (const dir of ['base', 'overlays/dev']) {
  test(`deploy/kubernetes/proxy/${dir} builds a non-root, read-only proxy probed on /_chp_healthz`, () => {
    const yaml = kustomize(dir);
    for (const expected of [
      'kind: Deployment',
      'runAsNonRoot: true',
      'runAsUser: 65534',
      'readOnlyRootFilesystem: true',
      'allowPrivilegeEscalation: false',
      '- ALL',
      'type: RuntimeDefault',
      'path: /_chp_healthz',
      'containerPort: 8080',
      'containerPort: 8081',
      'containerPort: 8082',
      'key: CONFIGPROXY_AUTH_TOKEN',
    ]) {
      assert.ok(yaml.includes(expected), `${dir} lacks '${expected}'`);
    }
    assert.doesNotMatch(yaml, /--auth-token|CONFIGPROXY_AUTH_TOKEN=/, 'the token never appears as a flag');
  });
}

test('deploy/kubernetes/proxy/overlays/ha runs 3 replicas on Redis Sentinel with a PDB and topology spread', () => {
  const yaml = kustomize('overlays/ha');
  for (const expected of [
    'replicas: 3',
    '--storage-backend=redis',
    'name: CONFIGURABLE_PROXY_REDIS_URI',
    'value: sentinel://:$(REDIS_PASSWORD)@',
    'kind: PodDisruptionBudget',
    'minAvailable: 2',
    'topologySpreadConstraints',
    'kind: StatefulSet',
    '--sentinel',
  ]) {
    assert.ok(yaml.includes(expected), `overlays/ha lacks '${expected}'`);
  }
  // Every container of the overlay runs read-only and unprivileged.
  const containers = yaml.split('\n').filter((line) => /^\s+image: /.test(line)).length;
  const readOnly = yaml.split('readOnlyRootFilesystem: true').length - 1;
  assert.equal(containers, 3);
  assert.equal(readOnly, 3);
});

test('the compose stack runs the proxy read-only as nobody, its token from stack.env', () => {
  const compose = readFileSync(`${deploy}compose/compose.yaml`, 'utf8');
  assert.match(compose, /read_only: true/);
  assert.match(compose, /user: "65534:65534"/);
  assert.match(compose, /CONFIGPROXY_AUTH_TOKEN: \$\{CONFIGPROXY_AUTH_TOKEN:\?/);
  const example = readFileSync(`${deploy}compose/example-stack.env`, 'utf8');
  // A placeholder the hub refuses to start with, never a usable token.
  assert.match(example, /^CONFIGPROXY_AUTH_TOKEN=replace-with-[a-z0-9-]+$/m, 'the example holds no secret');
});
