// The Kubernetes manifests build with the real kustomize (kubectl's), hold together (names,
// namespaces, ports and paths agree with the code), and keep every container non-root and
// read-only.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { kustomizeBuild } from '@seahorse/runtime/testing';
import { annotations, semaphoreLabel, sidecarPort } from '../src/index.ts';
import { semaphoreNotEnabledPath } from '../src/webhook.ts';

const root = fileURLToPath(new URL('../../../deploy/kubernetes/metrics-proxy-hook/', import.meta.url));

const kustomize = (dir: string) => kustomizeBuild(`${root}${dir}`).split(/^---$/m);

function find(documents: string[], kind: string, name?: string): string {
  const found = documents.find(
    (doc) =>
      new RegExp(`^kind: ${kind}$`, 'm').test(doc) &&
      (name === undefined || doc.includes(`  name: ${name}\n`)),
  );
  assert.ok(found, `no ${kind}${name ? ` ${name}` : ''} in the build`);
  return found;
}

/** The document of `kind` whose own metadata.name is `name` (not a reference to it). */
function byName(documents: string[], kind: string, name: string): string {
  const found = documents.find(
    (doc) =>
      new RegExp(`^kind: ${kind}$`, 'm').test(doc) &&
      new RegExp(`^metadata:\n(?:  .*\n)*?  name: ${name}$`, 'm').test(doc),
  );
  assert.ok(found, `no ${kind} ${name} in the build`);
  return found;
}

/** Every container of every workload runs non-root with a read-only root filesystem. */
function assertLockedDown(documents: string[]): void {
  for (const doc of documents.filter((d) => /^kind: (Deployment|StatefulSet)$/m.test(d))) {
    const containers = doc.match(/^\s+(- )?image: /gm)?.length ?? 0;
    assert.ok(containers > 0);
    for (const expected of ['readOnlyRootFilesystem: true', 'allowPrivilegeEscalation: false', '- ALL']) {
      assert.equal(doc.split(expected).length - 1, containers, `each container needs ${expected}:\n${doc}`);
    }
    assert.match(doc, /runAsNonRoot: true/);
    assert.match(doc, /type: RuntimeDefault/);
  }
}

test('base: two webhook replicas with cert-manager TLS, a PDB, and a webhook configuration that matches them', () => {
  const documents = kustomize('base');
  const deployment = find(documents, 'Deployment', 'prometheus-metrics-proxy-hook');
  assert.match(deployment, /replicas: 2/);
  assert.match(deployment, /- webhook\n/);
  assert.match(deployment, /containerPort: 9443/);
  assert.match(deployment, /path: \/readyz\n\s+port: probes/);
  assert.match(deployment, /mountPath: \/var\/k8s-webhook-server\/serving-certs/);
  assert.match(deployment, /secretName: prometheus-metrics-proxy-hook-tls/);
  assert.match(
    deployment,
    /- name: METRICS_PROXY_HOOK_SIDECAR_IMAGE\n\s+value: ghcr\.io\/seahorse\/metrics-proxy-hook:0\.1\.0\n/,
  );
  assert.doesNotMatch(deployment, /--sidecar-image/, 'the image is set in one place only');
  assert.match(
    deployment,
    /image: ghcr\.io\/seahorse\/metrics-proxy-hook:0\.1\.0/,
    'the webhook and sidecar are one image',
  );
  assert.match(deployment, /runAsUser: 65532/);

  const service = find(documents, 'Service', 'prometheus-metrics-proxy-hook');
  assert.match(service, /port: 443\n\s+targetPort: webhook/);
  assert.match(find(documents, 'PodDisruptionBudget'), /minAvailable: 1/);
  assert.match(byName(documents, 'Issuer', 'prometheus-metrics-proxy-hook-selfsigned'), /selfSigned: \{\}/);
  // A CA of its own signs the serving certificate: its ca.crt is what sidecars verify the
  // webhook with, and it outlives the serving certificate's rotations (same key when renewed).
  const caCertificate = byName(documents, 'Certificate', 'prometheus-metrics-proxy-hook-ca');
  assert.match(caCertificate, /isCA: true/);
  assert.match(caCertificate, /rotationPolicy: Never/);
  assert.match(caCertificate, /name: prometheus-metrics-proxy-hook-selfsigned/);
  assert.match(
    byName(documents, 'Issuer', 'prometheus-metrics-proxy-hook-ca'),
    /ca:\n\s+secretName: prometheus-metrics-proxy-hook-ca\n/,
  );
  const certificate = byName(documents, 'Certificate', 'prometheus-metrics-proxy-hook');
  assert.match(certificate, /secretName: prometheus-metrics-proxy-hook-tls/);
  assert.match(certificate, /- prometheus-metrics-proxy-hook\.prometheus-metrics-proxy-hook\.svc\n/);
  assert.match(certificate, /issuerRef:\n\s+kind: Issuer\n\s+name: prometheus-metrics-proxy-hook-ca\n/);
  // Sidecars reach 9443 (the lease endpoint) through the webhook's NetworkPolicy: no peer limit.
  const webhookPolicy = byName(documents, 'NetworkPolicy', 'prometheus-metrics-proxy-hook');
  assert.match(webhookPolicy, /ingress:\n\s+- ports:\n\s+- port: webhook\n/);
  assert.doesNotMatch(webhookPolicy, /from:/);

  const webhook = find(documents, 'MutatingWebhookConfiguration');
  assert.match(
    webhook,
    /cert-manager\.io\/inject-ca-from: prometheus-metrics-proxy-hook\/prometheus-metrics-proxy-hook\n/,
  );
  // Three entries: limited pods fail closed (in namespaces enabled for the semaphore, or denied
  // through their own path elsewhere), the rest fail open; one expression is the other's negation.
  const all = webhook.split(/^- admissionReviewVersions:/m).slice(1);
  assert.equal(all.length, 4, webhook);
  // The fourth sees pod UPDATEs touching the webhook's own fields, fail closed, to revert them.
  const guard = all.find((entry) => entry.includes('name: owned-fields.'));
  assert.ok(guard, 'no entry for updates of the owned fields');
  assert.match(guard, /failurePolicy: Fail/);
  assert.match(guard, /operations:\n\s+- UPDATE\n\s+resources:\n\s+- pods/);
  assert.match(guard, /'prometheus-metrics-proxy-hook\/slot' in oldObject\.metadata\.annotations/);
  const entries = all.filter((entry) => entry !== guard);
  const flat = (text: string) => text.replace(/\s+/g, ' ').replaceAll("''", "'");
  const named = (name: string) => {
    const entry = entries.find((candidate) => candidate.includes(`name: ${name}\n`));
    assert.ok(entry, `no webhook entry ${name}`);
    return entry;
  };
  const limited = named('limited.prometheus-metrics-proxy-hook.kaidotio.github.io');
  const notEnabled = named('limited-not-enabled.prometheus-metrics-proxy-hook.kaidotio.github.io');
  const others = named('prometheus-metrics-proxy-hook.kaidotio.github.io');
  assert.match(limited, /failurePolicy: Fail/);
  assert.match(notEnabled, /failurePolicy: Fail/);
  assert.match(others, /failurePolicy: Ignore/);
  const condition =
    "has(object.metadata.annotations) && 'prometheus-metrics-proxy-hook/max-concurrent' in object.metadata.annotations";
  assert.equal(annotations.maxConcurrent, 'prometheus-metrics-proxy-hook/max-concurrent');
  assert.ok(flat(limited).includes(`expression: ${condition}`), flat(limited));
  assert.ok(flat(notEnabled).includes(`expression: ${condition}`), flat(notEnabled));
  assert.ok(
    flat(others).includes(
      "expression: '!has(object.metadata.annotations) || !('prometheus-metrics-proxy-hook/max-concurrent' in object.metadata.annotations)'",
    ),
    flat(others),
  );
  // The two limited entries split the namespaces by a label only cluster admins set.
  assert.ok(flat(limited).includes(`- key: ${semaphoreLabel} operator: In values: - enabled`), flat(limited));
  assert.ok(
    flat(notEnabled).includes(`- key: ${semaphoreLabel} operator: NotIn values: - enabled`),
    flat(notEnabled),
  );
  const calls = (path: string) =>
    new RegExp(
      `service:\\n\\s+name: prometheus-metrics-proxy-hook\\n\\s+namespace: prometheus-metrics-proxy-hook\\n\\s+path: ${path}\\n\\s+port: 443`,
    );
  assert.match(limited, calls('/mutate'));
  assert.match(others, calls('/mutate'));
  assert.match(notEnabled, calls(semaphoreNotEnabledPath));
  for (const entry of entries) {
    assert.match(entry, /^\s+- v1\n/);
    assert.match(entry, /sideEffects: NoneOnDryRun/);
    assert.match(entry, /operations:\n\s+- CREATE\n\s+resources:\n\s+- pods/);
    assert.match(entry, /- prometheus-metrics-proxy-hook\n/, 'the webhook never blocks its own namespace');
  }
  const policy = find(documents, 'NetworkPolicy', 'prometheus-metrics-proxy-hook');
  assert.match(policy, /app\.kubernetes\.io\/component: webhook/);
  assert.match(policy, /- port: webhook\n\s+- port: metrics\n\s+- port: probes\n/);
  assert.match(deployment, /labels:\n\s+app\.kubernetes\.io\/component: webhook/);
  assertLockedDown(documents);
});

test("an overlay's kustomize images: entry moves the webhook and the injected sidecar together", () => {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-kustomize-'));
  try {
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      `resources:\n  - ${relative(dir, `${root}overlays/dev`)}\nimages:\n  - name: ghcr.io/seahorse/metrics-proxy-hook\n    newName: registry.example/hook\n    newTag: "9.9.9"\n`,
    );
    const deployment = find(
      kustomizeBuild(dir).split(/^---$/m),
      'Deployment',
      'prometheus-metrics-proxy-hook',
    );
    assert.match(deployment, /image: registry\.example\/hook:9\.9\.9\n/);
    assert.match(
      deployment,
      /- name: METRICS_PROXY_HOOK_SIDECAR_IMAGE\n\s+value: registry\.example\/hook:9\.9\.9\n/,
    );
    assert.doesNotMatch(deployment, /0\.1\.0/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('overlays/dev: three independent Redis nodes, each handed to the webhook with --redis', () => {
  const documents = kustomize('overlays/dev');
  const redis = find(documents, 'StatefulSet', 'redis');
  assert.match(redis, /replicas: 3/);
  assert.match(redis, /namespace: prometheus-metrics-proxy-hook/);
  assert.doesNotMatch(redis, /replicaof/, 'Redlock nodes are independent, not replicas');
  assert.match(find(documents, 'Service', 'redis'), /clusterIP: None/);
  // A password from a Secret, for Redis and for the webhook only.
  assert.match(
    redis,
    /- name: REDIS_PASSWORD\n\s+valueFrom:\n\s+secretKeyRef:\n\s+key: password\n\s+name: prometheus-metrics-proxy-hook-redis/,
  );
  assert.match(redis, /- --requirepass\n\s+- \$\(REDIS_PASSWORD\)\n\s+- --save\n/);
  // No other Redis user: sidecars never log in (they renew through the webhook).
  assert.doesNotMatch(redis, /--user|sidecar/i);
  assert.doesNotMatch(redis, /protected-mode/);
  // Every acknowledged write is on disk, on a volume that outlives the pod.
  assert.match(redis, /- --appendonly\n\s+- "yes"\n\s+- --appendfsync\n\s+- always\n/);
  assert.match(redis, /volumeClaimTemplates:/);
  const redisPolicy = find(documents, 'NetworkPolicy', 'redis');
  assert.match(redisPolicy, /podSelector:\n\s+matchLabels:\n\s+app\.kubernetes\.io\/component: redis/);
  // Exactly one peer: the webhook, in its own namespace (a label pod authors cannot set).
  const peers = redisPolicy
    .slice(redisPolicy.indexOf('- from:'))
    .split(/\n\s+- namespaceSelector:/)
    .slice(1);
  assert.equal(peers.length, 1, redisPolicy);
  assert.match(
    peers[0]!,
    /^\n\s+matchLabels:\n\s+kubernetes\.io\/metadata\.name: prometheus-metrics-proxy-hook\n\s+podSelector:\n\s+matchLabels:\n\s+app\.kubernetes\.io\/component: webhook\n\s+app\.kubernetes\.io\/name: prometheus-metrics-proxy-hook\n\s+ports:/,
  );
  assert.doesNotMatch(redisPolicy, new RegExp(semaphoreLabel), 'limited pods do not reach Redis');
  assert.doesNotMatch(redisPolicy, /namespaceSelector: \{\}/, 'no peer from every namespace');
  assert.doesNotMatch(redisPolicy, /\n\s+- podSelector:/, 'no peer without a namespace pin');
  // The bundle creates no Secret (the Redis password and the lease token key are created by
  // hand, in the hook's namespace), and no role grants Secrets: the webhook gets both from its
  // own pod's secretKeyRefs.
  assert.ok(!documents.some((doc) => /^kind: Secret$/m.test(doc)));
  for (const doc of documents.filter((d) => /^kind: (Cluster)?Role$/m.test(d))) {
    assert.doesNotMatch(doc, /secrets|"\*"|- '\*'/, doc);
  }
  assert.match(find(documents, 'PodDisruptionBudget', 'redis'), /maxUnavailable: 1/);
  const deployment = find(documents, 'Deployment', 'prometheus-metrics-proxy-hook');
  assert.doesNotMatch(deployment, /--sidecar-redis-secret/);
  assert.match(
    deployment,
    /- --lease-url=https:\/\/prometheus-metrics-proxy-hook\.prometheus-metrics-proxy-hook\.svc:443\/semaphore\/lease\n/,
  );
  assert.match(
    deployment,
    /- name: METRICS_PROXY_HOOK_LEASE_TOKEN_KEY\n\s+valueFrom:\n\s+secretKeyRef:\n\s+key: key\n\s+name: prometheus-metrics-proxy-hook-lease-token/,
  );
  assert.match(
    deployment,
    /- name: METRICS_PROXY_HOOK_REDIS_PASSWORD\n\s+valueFrom:\n\s+secretKeyRef:\n\s+key: password\n\s+name: prometheus-metrics-proxy-hook-redis/,
  );
  // Slot reclaim: a service account that may list pods and nothing else.
  assert.match(deployment, /serviceAccountName: prometheus-metrics-proxy-hook\n/);
  assert.match(deployment, /automountServiceAccountToken: true/);
  const role = find(documents, 'ClusterRole', 'prometheus-metrics-proxy-hook-slot-reclaim');
  assert.match(role, /rules:\n- apiGroups:\n\s+- ""\n\s+resources:\n\s+- pods\n\s+verbs:\n\s+- list\n?$/);
  const binding = find(documents, 'ClusterRoleBinding', 'prometheus-metrics-proxy-hook-slot-reclaim');
  assert.match(
    binding,
    /kind: ServiceAccount\n\s+name: prometheus-metrics-proxy-hook\n\s+namespace: prometheus-metrics-proxy-hook/,
  );
  for (const i of [0, 1, 2]) {
    assert.match(
      deployment,
      new RegExp(`- --redis=redis-${i}\\.redis\\.prometheus-metrics-proxy-hook\\.svc:6379\\n`),
    );
  }
  assertLockedDown(documents);
});

test('example: a Deployment annotated for the metrics proxy, locked down like the rest', () => {
  const documents = kustomize('example');
  const deployment = find(documents, 'Deployment', 'example-metrics-app');
  assert.match(deployment, new RegExp(`${annotations.wait.replace('.', '\\.')}: "true"`));
  assert.match(deployment, /prometheus\.io\/port: "8080"/);
  assert.match(deployment, /containerPort: 8080/);
  assert.doesNotMatch(
    deployment,
    new RegExp(String(sidecarPort)),
    'the sidecar port is the webhook’s to add',
  );
  assert.match(deployment, new RegExp(`${annotations.maxConcurrent}: "2"`));
  assert.match(deployment, /maxSurge: 0/);
  // Limited pods need a namespace a cluster admin enabled for the semaphore.
  assert.match(find(documents, 'Namespace'), new RegExp(`labels:\\n\\s+${semaphoreLabel}: enabled\\n`));
  assertLockedDown(documents);
});
