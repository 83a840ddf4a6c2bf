// Which workload a pod belongs to, for the per-workload semaphore. At admission a pod made by a
// controller has no name and no uid yet, so the key comes from its owner or its generateName.
import type { Pod } from './kubernetes.ts';

/**
 * `<namespace>/<Kind>/<name>`. A ReplicaSet owned by a Deployment is named
 * `<deployment>-<pod-template-hash>`; the hash is dropped so every revision of a Deployment
 * shares one limit during a rolling update.
 */
export function workloadKey(pod: Pod, namespace: string): string {
  const metadata = pod.metadata ?? {};
  const owners = metadata.ownerReferences ?? [];
  const owner = owners.find((reference) => reference.controller) ?? owners[0];
  if (owner) {
    const hash = metadata.labels?.['pod-template-hash'];
    if (owner.kind === 'ReplicaSet' && hash && owner.name.endsWith(`-${hash}`)) {
      return `${namespace}/Deployment/${owner.name.slice(0, -(hash.length + 1))}`;
    }
    return `${namespace}/${owner.kind}/${owner.name}`;
  }
  if (metadata.generateName) return `${namespace}/Pod/${metadata.generateName}`;
  return `${namespace}/Pod/${metadata.name ?? ''}`;
}
