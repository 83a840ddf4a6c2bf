// The JSONPatch that gives an annotated pod its metrics proxy: Prometheus pointed at the
// sidecar, Istio told to leave the sidecar's port alone, a grace period long enough for one
// last scrape, and the sidecar container itself.
import { annotations, semaphoreLabel, sidecarContainerName, sidecarPort } from './annotations.ts';
import { type JsonValue, type PatchOperation, pointer } from './json-patch.ts';
import { type Container, defaultTerminationGracePeriodSeconds, type EnvVar, type Pod } from './kubernetes.ts';
import { envName, type InjectionSettings } from './options.ts';

/** A semaphore slot granted at admission; its identity reaches the sidecar through env. */
export interface SlotAssignment {
  workload: string;
  slot: string;
  limit: number;
  /** The lease the sidecar keeps renewing. */
  leaseMs: number;
  /** The grant's fencing version: the sidecar's renewals and release name it. */
  version: string;
  /**
   * Where and how the sidecar renews: the webhook's lease URL, the CA (PEM) its certificate is
   * verified against, and this slot's token (good for this slot only).
   */
  lease: { url: string; ca: string; token: string };
}

export interface InjectionPlan {
  port: number;
  path: string;
  /** The application's scheme; Prometheus always scrapes the sidecar over http. */
  scheme?: 'http' | 'https';
  slot: SlotAssignment | undefined;
}

/** Whether the pod already has the sidecar (the webhook was called again for the same pod). */
export function hasSidecar(pod: Pod): boolean {
  const named = (list: unknown) =>
    Array.isArray(list) && list.some((container) => (container as Container)?.name === sidecarContainerName);
  return named(pod.spec?.containers) || named(pod.spec?.initContainers);
}

/** Where the pod already has the sidecar container, if it does. */
function sidecarLocation(pod: Pod): { list: 'containers' | 'initContainers'; index: number } | undefined {
  for (const list of ['containers', 'initContainers'] as const) {
    const containers: unknown = pod.spec?.[list];
    if (!Array.isArray(containers)) continue;
    const index = containers.findIndex(
      (container) => (container as Container | null)?.name === sidecarContainerName,
    );
    if (index !== -1) return { list, index };
  }
  return undefined;
}

/** The application port and path an existing sidecar container proxies to (`--target=`). */
export function copiedSidecarTarget(
  pod: Pod,
): { port: number; path: string; scheme: 'http' | 'https' } | undefined {
  const location = sidecarLocation(pod);
  if (!location) return undefined;
  const container = pod.spec?.[location.list]?.[location.index];
  const args: unknown = container?.args;
  if (!Array.isArray(args)) return undefined;
  for (const arg of args) {
    const raw = typeof arg === 'string' ? /^(?:--target=)?(https?:\/\/.*)$/.exec(arg)?.[1] : undefined;
    if (raw === undefined || !URL.canParse(raw)) continue;
    const url = new URL(raw);
    if (url.hostname !== '127.0.0.1' || url.port === '') continue;
    return {
      port: Number(url.port),
      path: `${url.pathname}${url.search}`,
      scheme: url.protocol === 'https:' ? 'https' : 'http',
    };
  }
  return undefined;
}

/** Adds `port` to a comma-separated port list unless it is there already. */
export function addToPortList(list: string | undefined, port: number): string {
  const ports = (list ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (!ports.includes(String(port))) ports.push(String(port));
  return ports.join(',');
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * V8 heap settings for the sidecar, measured with bench/rss.ts (20 MB body, two concurrent
 * scrapes): a small young generation and old-space cap make V8 collect the streamed buffers
 * sooner, cutting peak RSS from ~175-205 MiB to ~127-131 MiB; the sidecar's own heap stays
 * under 10 MiB. Through NODE_OPTIONS so they hold for any Node-based sidecar image.
 */
export const sidecarNodeOptions = '--max-semi-space-size=1 --max-old-space-size=32';

/** Measured idle ~63 MiB, peak ~131 MiB (20 MB body) and ~150 MiB (32 MB, the cache bound). */
export const sidecarResources = {
  requests: { cpu: '10m', memory: '80Mi' },
  limits: { memory: '192Mi' },
} as const;

export function sidecarContainer(
  plan: InjectionPlan,
  settings: InjectionSettings,
  graceSeconds: number,
): Container {
  const env: EnvVar[] = [{ name: 'NODE_OPTIONS', value: sidecarNodeOptions }];
  if (plan.slot) {
    const { slot } = plan;
    // No Redis address or credential: the sidecar renews through the webhook, and its token is
    // good for this one slot only (renew, hold, release), so it may sit in the pod spec.
    env.push(
      { name: envName('semaphore-key'), value: slot.workload },
      { name: envName('semaphore-slot'), value: slot.slot },
      { name: envName('semaphore-version'), value: slot.version },
      { name: envName('semaphore-lease-ttl'), value: formatSeconds(slot.leaseMs) },
      { name: envName('lease-url'), value: slot.lease.url },
      { name: envName('lease-ca'), value: slot.lease.ca },
      { name: envName('lease-token'), value: slot.lease.token },
    );
  }
  return {
    name: sidecarContainerName,
    image: settings.sidecarImage,
    imagePullPolicy: settings.imagePullPolicy,
    args: [
      'sidecar',
      `--address=0.0.0.0:${sidecarPort}`,
      `--target=${plan.scheme ?? 'http'}://127.0.0.1:${plan.port}${plan.path}`,
      `--termination-grace-period=${graceSeconds}s`,
    ],
    env,
    ports: [{ containerPort: sidecarPort, protocol: 'TCP' }],
    resources: {
      requests: { ...sidecarResources.requests },
      limits: { ...sidecarResources.limits },
    },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: sidecarPort,
      runAsGroup: sidecarPort,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

function annotationOperations(pod: Pod, changes: Record<string, string>): PatchOperation[] {
  const existing = pod.metadata?.annotations;
  if (!existing) {
    // JSONPatch cannot add a member to a map that does not exist: create the map whole.
    return [{ op: 'add', path: pointer('metadata', 'annotations'), value: changes }];
  }
  return Object.entries(changes)
    .filter(([name, value]) => existing[name] !== value)
    .map(([name, value]) => ({
      op: Object.hasOwn(existing, name) ? 'replace' : 'add',
      path: pointer('metadata', 'annotations', name),
      value,
    }));
}

/** The pod's grace period once patched: its own, raised to --termination-grace-period. */
export function graceSecondsFor(pod: Pod, settings: InjectionSettings): number {
  return Math.max(
    pod.spec?.terminationGracePeriodSeconds ?? defaultTerminationGracePeriodSeconds,
    settings.terminationGracePeriodSeconds,
  );
}

/** The operations, in order, that turn the pod into one with the metrics proxy. */
export function buildPodPatch(pod: Pod, plan: InjectionPlan, settings: InjectionSettings): PatchOperation[] {
  const operations: PatchOperation[] = [];
  const current = pod.metadata?.annotations ?? {};
  const changes: Record<string, string> = {
    [annotations.port]: String(sidecarPort),
    [annotations.istioExcludeInboundPorts]: addToPortList(
      current[annotations.istioExcludeInboundPorts],
      sidecarPort,
    ),
  };
  if (plan.slot) changes[annotations.slot] = `${plan.slot.workload}#${plan.slot.slot}`;
  // Prometheus now scrapes the sidecar, which serves http whatever the application serves.
  if (current[annotations.scheme] !== undefined) changes[annotations.scheme] = 'http';
  if (!pod.metadata) operations.push({ op: 'add', path: pointer('metadata'), value: {} });
  operations.push(...annotationOperations(pod, changes));
  if (plan.slot) {
    const labels = pod.metadata?.labels;
    if (!labels) {
      operations.push({
        op: 'add',
        path: pointer('metadata', 'labels'),
        value: { [semaphoreLabel]: 'true' },
      });
    } else if (labels[semaphoreLabel] !== 'true') {
      operations.push({
        op: Object.hasOwn(labels, semaphoreLabel) ? 'replace' : 'add',
        path: pointer('metadata', 'labels', semaphoreLabel),
        value: 'true',
      });
    }
  } else {
    operations.push(...removeSemaphoreLabel(pod));
  }

  const podGrace = pod.spec?.terminationGracePeriodSeconds;
  const graceSeconds = graceSecondsFor(pod, settings);
  if (podGrace === undefined || podGrace < graceSeconds) {
    operations.push({
      op: podGrace === undefined ? 'add' : 'replace',
      path: pointer('spec', 'terminationGracePeriodSeconds'),
      value: graceSeconds,
    });
  }
  const container = sidecarContainer(plan, settings, graceSeconds);
  const existing = sidecarLocation(pod);
  if (existing) {
    // A copy of another pod: its sidecar (and that pod's slot) is replaced where it stands.
    const replacement = existing.list === 'initContainers' ? asNativeSidecar(container) : container;
    operations.push({
      op: 'replace',
      path: pointer('spec', existing.list, String(existing.index)),
      value: replacement as unknown as JsonValue,
    });
  } else if (settings.nativeSidecar) {
    // A native sidecar: started before the application, stopped after it, and it does not keep
    // a Job's pod running once the main containers have finished.
    const native = asNativeSidecar(container) as unknown as JsonValue;
    operations.push(
      Array.isArray(pod.spec?.initContainers)
        ? { op: 'add', path: pointer('spec', 'initContainers', '-'), value: native }
        : { op: 'add', path: pointer('spec', 'initContainers'), value: [native] },
    );
  } else {
    operations.push({
      op: 'add',
      path: pointer('spec', 'containers', '-'),
      value: container as unknown as JsonValue,
    });
  }
  return operations;
}

/**
 * The semaphore label marks the pods slot reclaim lists as evidence; only the webhook gives it,
 * with a slot. A pod created with it and no slot set it itself: it is taken off.
 */
export function removeSemaphoreLabel(pod: Pod): PatchOperation[] {
  const labels = pod.metadata?.labels;
  if (!labels || !Object.hasOwn(labels, semaphoreLabel)) return [];
  return [{ op: 'remove', path: pointer('metadata', 'labels', semaphoreLabel) }];
}

/** The proxy as an init container with restartPolicy Always, told it is stopped after the application. */
function asNativeSidecar(container: Container): Container & { restartPolicy: 'Always' } {
  return { ...container, args: [...(container.args ?? []), '--native-sidecar'], restartPolicy: 'Always' };
}
