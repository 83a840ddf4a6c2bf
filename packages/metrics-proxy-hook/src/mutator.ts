// Decides each AdmissionReview: which pods get the sidecar, which are denied and why, and (with
// the semaphore on) whether the pod's workload has room for one more.
import type { Logger } from '@seahorse/runtime';
import {
  type AdmissionResponse,
  type AdmissionReview,
  allow,
  BadAdmissionRequest,
  deny,
} from './admission.ts';
import { annotations, readInjectionRequest, semaphoreLabel, sidecarContainerName } from './annotations.ts';
import { type JsonValue, type PatchOperation, pointer } from './json-patch.ts';
import type { Pod } from './kubernetes.ts';
import type { LeaseTokens } from './lease-token.ts';
import type { AdmissionOutcome, WebhookMetrics } from './metrics.ts';
import { type InjectionSettings, readLeaseCa, type WebhookOptions } from './options.ts';
import type { PodEvidence } from './pod-evidence.ts';
import {
  buildPodPatch,
  copiedSidecarTarget,
  graceSecondsFor,
  hasSidecar,
  removeSemaphoreLabel,
  type SlotAssignment,
} from './pod-patch.ts';
import { type RedisSemaphore, SemaphoreUnavailableError } from './semaphore.ts';
import { workloadKey } from './workload.ts';

/** JSONPatch operations that put the webhook-owned labels and annotations back as they were. */
function revertOwnedFields(old: Pod, updated: Pod): PatchOperation[] {
  const operations: PatchOperation[] = [];
  const owned = [
    ['labels', semaphoreLabel],
    ['annotations', annotations.slot],
    ['annotations', annotations.maxConcurrent],
  ] as const;
  const restoredMaps = new Map<'labels' | 'annotations', Record<string, unknown>>();
  for (const [map, name] of owned) {
    const before: unknown = (old.metadata?.[map] as Record<string, unknown> | undefined)?.[name];
    const current = updated.metadata?.[map] as Record<string, unknown> | undefined;
    const after: unknown = current?.[name];
    if (before === after) continue;
    if (typeof current !== 'object' || current === null || Array.isArray(current)) {
      // The whole map was dropped (or is not a map): restore the owned entries in a new map.
      if (before !== undefined) restoredMaps.set(map, { ...restoredMaps.get(map), [name]: before });
      continue;
    }
    const path = pointer('metadata', map, name);
    if (before === undefined) operations.push({ op: 'remove', path });
    else
      operations.push({
        op: Object.hasOwn(current, name) ? 'replace' : 'add',
        path,
        value: before as JsonValue,
      });
  }
  if (restoredMaps.size > 0 && !updated.metadata)
    operations.unshift({ op: 'add', path: pointer('metadata'), value: {} });
  for (const [map, value] of restoredMaps) {
    operations.push({ op: 'add', path: pointer('metadata', map), value: value as JsonValue });
  }
  return operations;
}

export interface MutatorOptions {
  injection: InjectionSettings;
  semaphore:
    | (Omit<NonNullable<WebhookOptions['semaphore']>, 'apiServer' | 'reclaimGraceMs' | 'lease'> & {
        client: RedisSemaphore;
        /** Which slots still have a pod; without it, leaked slots wait for their lease. */
        evidence?: PodEvidence | undefined;
        reclaimGraceMs?: number;
        /** Mints each slot's token; the URL and CA file sidecars renew with. */
        lease: { tokens: LeaseTokens; url: string; caFile: string };
      })
    | undefined;
}

export interface Decision {
  response: AdmissionResponse;
  outcome: AdmissionOutcome;
}

/** The lease token a dry run's spec shows: not a token, so it can renew or take nothing. */
export const dryRunLeaseToken = 'dry-run-no-lease-token';

const foreignLabelWarning = `${semaphoreLabel} is set by the metrics-proxy webhook on pods it gives a semaphore slot; removed from this pod`;

export class PodMutator {
  readonly #options: MutatorOptions;
  readonly #metrics: WebhookMetrics | undefined;
  readonly #log: Logger;

  constructor(options: MutatorOptions, log: Logger, metrics?: WebhookMetrics) {
    this.#options = options;
    this.#log = log;
    this.#metrics = metrics;
  }

  /**
   * `semaphoreEnabled: false` when the API server called through the entry for namespaces not
   * labelled `prometheus-metrics-proxy-hook/semaphore: enabled`: the semaphore is a cluster
   * admin's opt-in per namespace, so a limited pod there is denied, saying how to enable it.
   */
  async review(review: AdmissionReview, { semaphoreEnabled = true } = {}): Promise<Decision> {
    const { request } = review;
    const { uid } = request;
    const isPod = request.kind.group === '' && request.kind.kind === 'Pod' && !request.subResource;
    if (isPod && request.operation === 'UPDATE')
      return this.#reviewUpdate(uid, request.object, request.oldObject);
    if (!isPod || request.operation !== 'CREATE') return { response: allow(uid), outcome: 'untouched' };
    const pod = request.object;
    if (typeof pod !== 'object' || pod === null || Array.isArray(pod)) {
      throw new BadAdmissionRequest(
        'MISSING_OBJECT',
        400,
        'the AdmissionReview creates a Pod but carries no Pod object',
      );
    }
    const namespace = request.namespace || (pod as Pod).metadata?.namespace || 'default';
    return this.#reviewPod(uid, pod as Pod, namespace, request.dryRun === true, semaphoreEnabled);
  }

  /**
   * A pod UPDATE may not change what the webhook decided at creation: the slot annotation (the
   * evidence slot reclaim reads: removing it would free a running pod's slot), the semaphore
   * label, and max-concurrent (a limit can only be taken at creation, when the sidecar is
   * injected). Such changes are reverted in the patch, with a warning; the rest of the update
   * stands.
   */
  #reviewUpdate(uid: string, object: unknown, oldObject: unknown): Decision {
    const isObject = (value: unknown): value is Pod =>
      typeof value === 'object' && value !== null && !Array.isArray(value);
    if (!isObject(object) || !isObject(oldObject)) {
      throw new BadAdmissionRequest(
        'MISSING_OBJECT',
        400,
        'the AdmissionReview updates a Pod but does not carry both object and oldObject',
      );
    }
    const patch = revertOwnedFields(oldObject, object);
    if (patch.length === 0) return { response: allow(uid), outcome: 'untouched' };
    this.#log.info(
      { uid, pod: object.metadata?.name ?? '', fields: patch.map((op) => op.path) },
      'pod update reverted',
    );
    return {
      response: allow(uid, patch, [
        `${annotations.slot}, ${annotations.maxConcurrent} and the ${semaphoreLabel} label are set when a pod is created and cannot be changed; the change was reverted`,
      ]),
      outcome: 'mutated',
    };
  }

  /** A pod left as it is, but for a semaphore label it gave itself. */
  #untouched(uid: string, pod: Pod, namespace: string): Decision {
    const patch = removeSemaphoreLabel(pod);
    if (patch.length === 0) return { response: allow(uid), outcome: 'untouched' };
    this.#log.info(
      { uid, namespace, pod: pod.metadata?.name || pod.metadata?.generateName || '' },
      'semaphore label removed',
    );
    return {
      response: allow(uid, patch, [foreignLabelWarning]),
      outcome: 'mutated',
    };
  }

  async #reviewPod(
    uid: string,
    pod: Pod,
    namespace: string,
    dryRun: boolean,
    semaphoreEnabled: boolean,
  ): Promise<Decision> {
    let ask = readInjectionRequest(pod);
    if (ask.kind === 'none') return this.#untouched(uid, pod, namespace);
    if (hasSidecar(pod)) {
      // Called again for a pod we already changed (reinvocation): nothing more to do. Unless it
      // asks for a limit: a pod that arrives with the sidecar is then a copy of another pod (its
      // YAML created again, a backup restored) carrying that pod's slot, which two pods must
      // never share. It takes a slot of its own and the sidecar is injected afresh, towards the
      // application port the copied sidecar names. (Were it a reinvocation, the first slot, no
      // longer named by the pod, is reclaimed as leaked.)
      const limited = pod.metadata?.annotations?.[annotations.maxConcurrent] !== undefined;
      if (!limited || !this.#options.semaphore) return this.#untouched(uid, pod, namespace);
      const target = copiedSidecarTarget(pod);
      ask = target
        ? readInjectionRequest({
            ...pod,
            metadata: {
              ...pod.metadata,
              annotations: {
                ...pod.metadata?.annotations,
                [annotations.port]: String(target.port),
                [annotations.path]: target.path,
                [annotations.scheme]: target.scheme,
              },
            },
          })
        : {
            kind: 'invalid',
            message: `the pod already has a ${sidecarContainerName} container whose --target cannot be read (copied from another pod?); remove the container and let the webhook inject it`,
          };
    }
    if (ask.kind === 'none') return this.#untouched(uid, pod, namespace);
    const name = pod.metadata?.name || pod.metadata?.generateName || '';
    if (ask.kind === 'invalid') {
      this.#metrics?.denied('invalid_annotation');
      this.#log.info({ uid, namespace, pod: name, reason: ask.message }, 'pod denied');
      return { response: deny(uid, 400, 'BadRequest', ask.message), outcome: 'denied' };
    }

    const warnings: string[] = [];
    let slot: SlotAssignment | undefined;
    const semaphore = this.#options.semaphore;
    if (ask.maxConcurrent !== undefined && !semaphore) {
      warnings.push(
        `${annotations.maxConcurrent} is ignored: the metrics-proxy webhook runs without --redis`,
      );
    } else if (ask.maxConcurrent !== undefined && semaphore && !semaphoreEnabled) {
      this.#metrics?.denied('semaphore_not_enabled');
      const message = `namespace ${namespace} is not enabled for ${annotations.maxConcurrent}: the semaphore serves only namespaces a cluster admin enabled. A cluster admin enables it with 'kubectl label namespace ${namespace} ${semaphoreLabel}=enabled', or remove the annotation`;
      this.#log.info({ uid, namespace, pod: name }, 'pod denied: namespace not enabled for the semaphore');
      return { response: deny(uid, 403, 'Forbidden', message), outcome: 'denied' };
    } else if (ask.maxConcurrent !== undefined && semaphore) {
      const workload = workloadKey(pod, namespace);
      const limit = ask.maxConcurrent;
      // The request's uid, which the API server keeps when it retries the same admission: a
      // retry finds its own slot and is granted again instead of taking a second one.
      const slotId = uid;
      let result: Awaited<ReturnType<RedisSemaphore['acquire']>>;
      // Read before a slot is taken: a CA that cannot be read denies the pod with nothing held.
      let leaseCa: string;
      try {
        leaseCa = readLeaseCa(semaphore.lease.caFile);
      } catch (error) {
        this.#metrics?.denied('semaphore_unavailable');
        this.#log.error({ uid, workload, err: (error as Error).message }, 'pod denied: lease CA unreadable');
        return {
          response: deny(
            uid,
            503,
            'ServiceUnavailable',
            `${workload} allows at most ${limit} pods at once (${annotations.maxConcurrent}), but the webhook cannot give this pod's sidecar what it needs to keep a slot: ${(error as Error).message}. Its controller will retry`,
          ),
          outcome: 'denied',
        };
      }
      const request = { workload, slot: slotId, limit, leaseMs: semaphore.admissionLeaseMs, dryRun };
      try {
        result = await semaphore.client.acquire(request);
        // A dry run has no side effects: it never reclaims.
        if (!result.granted && !dryRun && (await this.#reclaim(workload, namespace, uid)) > 0) {
          result = await semaphore.client.acquire(request);
        }
      } catch (error) {
        if (!(error instanceof SemaphoreUnavailableError)) throw error;
        this.#metrics?.denied('semaphore_unavailable');
        this.#log.warn({ uid, workload, limit, err: error.message }, 'pod denied: semaphore unavailable');
        return {
          response: deny(
            uid,
            503,
            'ServiceUnavailable',
            `${workload} allows at most ${limit} pods at once (${annotations.maxConcurrent}), but the semaphore cannot count them now: ${error.message}. The pod is denied so the limit cannot be exceeded; its controller will retry`,
          ),
          outcome: 'denied',
        };
      }
      if (!result.granted) {
        this.#metrics?.denied('semaphore_full');
        this.#log.info({ uid, workload, limit, held: result.held }, 'pod denied: workload at its limit');
        return {
          response: deny(
            uid,
            403,
            'Forbidden',
            `${workload} already runs ${result.held} of at most ${limit} pods (${annotations.maxConcurrent}: "${limit}"); a new pod is admitted when one of them terminates`,
          ),
          outcome: 'denied',
        };
      }
      slot = {
        workload,
        slot: slotId,
        limit,
        leaseMs: semaphore.leaseMs,
        version: result.version,
        lease: {
          url: semaphore.lease.url,
          ca: leaseCa,
          // A dry run's pod is never created, but its patched spec goes back to whoever asked
          // (kubectl --dry-run=server -o yaml): a real token there would let them take a slot
          // no pod holds. It gets a placeholder that no webhook verifies.
          token: dryRun
            ? dryRunLeaseToken
            : semaphore.lease.tokens.mint({
                workload,
                slot: slotId,
                namespace,
                pod: name,
                limit,
                graceMs: graceSecondsFor(pod, this.#options.injection) * 1000,
              }),
        },
      };
    }

    if (!slot && removeSemaphoreLabel(pod).length > 0) warnings.push(foreignLabelWarning);
    const patch = buildPodPatch(
      pod,
      { port: ask.port, path: ask.path, scheme: ask.scheme, slot },
      this.#options.injection,
    );
    if (!dryRun) this.#metrics?.mutated();
    this.#log.info(
      {
        uid,
        namespace,
        pod: name,
        target: `${ask.scheme}://127.0.0.1:${ask.port}${ask.path}`,
        ...(slot ? { workload: slot.workload, slot: slot.slot } : {}),
        dryRun,
      },
      'sidecar injected',
    );
    return { response: allow(uid, patch, warnings), outcome: 'mutated' };
  }

  /**
   * Gives back the workload's slots that no running pod holds, on the API server's word: the
   * pod was never created (another admission plugin refused it), was deleted without its
   * sidecar releasing (frozen, OOM-killed, node lost and pod removed), or has finished. Slots
   * younger than the grace may belong to an admission still in flight and are kept. Returns
   * how many were reclaimed; any doubt (API server unreachable) reclaims nothing.
   */
  async #reclaim(workload: string, namespace: string, uid: string): Promise<number> {
    const semaphore = this.#options.semaphore;
    if (!semaphore?.evidence) return 0;
    let live: Set<string>;
    let holders: Map<string, number>;
    try {
      [live, holders] = await Promise.all([
        semaphore.evidence.liveSlots(namespace),
        semaphore.client.holders(workload),
      ]);
    } catch (error) {
      this.#log.warn({ uid, workload, err: (error as Error).message }, 'cannot check for leaked slots');
      return 0;
    }
    // A slot's age is only known while it is on its admission lease; a renewed one had a pod.
    const youngest = semaphore.admissionLeaseMs - (semaphore.reclaimGraceMs ?? 60_000);
    const leaked = [...holders].filter(
      ([slot, remainingMs]) => !live.has(`${workload}#${slot}`) && remainingMs <= youngest,
    );
    let reclaimed = 0;
    for (const [slot] of leaked) {
      try {
        // Retired: the slot's token (in the gone pod's spec) can never renew or take it again.
        await semaphore.client.release(workload, slot, '', { retire: true });
        reclaimed++;
        this.#log.warn({ uid, workload, slot }, 'reclaimed a slot no running pod holds');
      } catch (error) {
        this.#log.warn({ uid, workload, slot, err: (error as Error).message }, 'reclaiming a slot failed');
      }
    }
    if (reclaimed > 0) this.#metrics?.slotsReclaimed(reclaimed);
    return reclaimed;
  }
}
