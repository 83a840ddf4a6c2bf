// Which workload a pod belongs to, for the per-workload semaphore. At admission a pod made by a
// controller has no name and no uid yet, so the key comes from its owner or its generateName.
import { BadAdmissionRequest } from './admission.ts';
import type { OwnerReference, Pod } from './kubernetes.ts';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalidPod(message: string): BadAdmissionRequest {
  return new BadAdmissionRequest('INVALID_POD', 400, `the Pod's ${message}`);
}

/** The fields the key is read from, checked: the object came from outside. */
function checkedMetadata(pod: Pod): {
  owners: OwnerReference[];
  labels: Record<string, unknown>;
  name: unknown;
  generateName: unknown;
} {
  const metadata: unknown = pod.metadata ?? {};
  if (!isRecord(metadata)) throw invalidPod('metadata must be an object');
  const owners: unknown = metadata.ownerReferences ?? [];
  if (
    !Array.isArray(owners) ||
    !owners.every(
      (owner) => isRecord(owner) && typeof owner.kind === 'string' && typeof owner.name === 'string',
    )
  ) {
    throw invalidPod('metadata.ownerReferences must be a list of {kind, name} objects');
  }
  const labels: unknown = metadata.labels ?? {};
  if (!isRecord(labels)) throw invalidPod('metadata.labels must be a map of strings');
  return { owners, labels, name: metadata.name, generateName: metadata.generateName };
}

/**
 * `<namespace>/<Kind>/<name>`. A ReplicaSet owned by a Deployment is named
 * `<deployment>-<pod-template-hash>`; the hash is dropped so every revision of a Deployment
 * shares one limit during a rolling update.
 */
export function workloadKey(pod: Pod, namespace: string): string {
  const metadata = checkedMetadata(pod);
  const owners = metadata.owners;
  const owner = owners.find((reference) => reference.controller === true) ?? owners[0];
  if (owner) {
    const hash = metadata.labels['pod-template-hash'];
    if (owner.kind === 'ReplicaSet' && typeof hash === 'string' && hash && owner.name.endsWith(`-${hash}`)) {
      return `${namespace}/Deployment/${owner.name.slice(0, -(hash.length + 1))}`;
    }
    return `${namespace}/${owner.kind}/${owner.name}`;
  }
  if (typeof metadata.generateName === 'string' && metadata.generateName)
    return `${namespace}/Pod/${metadata.generateName}`;
  return `${namespace}/Pod/${typeof metadata.name === 'string' ? metadata.name : ''}`;
}
