// The annotations a pod uses to ask for the sidecar, read and validated in one place so every
// mistake becomes one clear denial message.
import type { Pod } from './kubernetes.ts';

export const annotations = {
  /** The trigger: the pod wants Prometheus to wait for a last scrape. */
  wait: 'prometheus.io/wait',
  /** The seed's trigger, accepted as an alias of `prometheus.io/wait`. */
  seedTrigger: 'prometheus-metrics-proxy-hook.kaidotio.github.io/prometheus-metrics-proxy',
  port: 'prometheus.io/port',
  path: 'prometheus.io/path',
  scheme: 'prometheus.io/scheme',
  istioExcludeInboundPorts: 'traffic.sidecar.istio.io/excludeInboundPorts',
  /** At most this many pods of the pod's workload run at once (needs the webhook's --redis). */
  maxConcurrent: 'prometheus-metrics-proxy-hook/max-concurrent',
  /** Written by the webhook: the semaphore slot this pod holds, `<workload>#<slot id>`. */
  slot: 'prometheus-metrics-proxy-hook/slot',
} as const;

/**
 * Label the webhook puts on a pod holding a semaphore slot: slot reclaim lists exactly these
 * pods (a label selector) to learn which slots still have a pod.
 */
export const semaphoreLabel = 'prometheus-metrics-proxy-hook/semaphore';

/** The port the sidecar serves on; Prometheus is pointed here. */
export const sidecarPort = 65532;
export const sidecarContainerName = 'prometheus-metrics-proxy';

export type InjectionRequest =
  | { kind: 'none' }
  | { kind: 'invalid'; message: string }
  | {
      kind: 'inject';
      /** The application's metrics port, before the webhook points Prometheus at the sidecar. */
      port: number;
      path: string;
      /** How the sidecar reaches the application: `https` when the pod says prometheus.io/scheme: https. */
      scheme: 'http' | 'https';
      /** From `max-concurrent`; undefined when the pod sets no limit. */
      maxConcurrent: number | undefined;
    };

function isTrue(value: string | undefined): boolean {
  return value?.trim().toLowerCase() === 'true';
}

/** The annotations we read, each checked to be a string (the object came from outside). */
const readAnnotations = [
  annotations.wait,
  annotations.seedTrigger,
  annotations.port,
  annotations.path,
  annotations.scheme,
  annotations.maxConcurrent,
  annotations.istioExcludeInboundPorts,
] as const;

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `a ${typeof value} (${JSON.stringify(value)})`;
}

type AnnotationRead =
  | { ok: true; values: Record<string, string | undefined> }
  | { ok: false; message: string };

/** The named annotations as strings, or the message that denies a malformed one. */
function readStrings(pod: Pod, names: readonly string[]): AnnotationRead {
  const raw: unknown = pod.metadata?.annotations;
  if (raw === undefined || raw === null) return { ok: true, values: {} };
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    return { ok: false, message: `metadata.annotations must be a map of strings, got ${describeType(raw)}` };
  }
  const values: Record<string, string | undefined> = {};
  for (const name of names) {
    const value: unknown = (raw as Record<string, unknown>)[name];
    if (value === undefined) continue;
    if (typeof value !== 'string') {
      return {
        ok: false,
        message: `annotation ${name} must be a string (quote it in YAML, e.g. "8080"), got ${describeType(value)}`,
      };
    }
    values[name] = value;
  }
  return { ok: true, values };
}

/** Whether the pod asks for the sidecar, and with which settings. */
export function readInjectionRequest(pod: Pod): InjectionRequest {
  const triggers = readStrings(pod, [annotations.wait, annotations.seedTrigger]);
  if (!triggers.ok) return { kind: 'invalid', message: triggers.message };
  const asked = triggers.values;
  if (!isTrue(asked[annotations.wait]) && !isTrue(asked[annotations.seedTrigger])) return { kind: 'none' };
  const trigger = isTrue(asked[annotations.wait]) ? annotations.wait : annotations.seedTrigger;
  const read = readStrings(pod, readAnnotations);
  if (!read.ok) return { kind: 'invalid', message: read.message };
  const { values } = read;

  const rawPort = values[annotations.port];
  if (rawPort === undefined || rawPort.trim() === '') {
    return {
      kind: 'invalid',
      message: `the pod is annotated ${trigger}: "true" but has no ${annotations.port} annotation; set it to the port the application serves its metrics on`,
    };
  }
  const port = /^\d+$/.test(rawPort.trim()) ? Number(rawPort) : Number.NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    return {
      kind: 'invalid',
      message: `${annotations.port} must be a port number from 1 to 65535, got "${rawPort}"`,
    };
  }
  if (port === sidecarPort) {
    return {
      kind: 'invalid',
      message: `${annotations.port} is ${sidecarPort}, the metrics proxy's own port; set it to the application's metrics port`,
    };
  }
  // Prometheus takes "metrics" for "/metrics"; so do we, and write the path with its slash.
  const givenPath = values[annotations.path]?.trim() || '/metrics';
  const path = givenPath.startsWith('/') ? givenPath : `/${givenPath}`;
  if (/[\s#]/.test(path) || !URL.canParse(`http://127.0.0.1${path}`)) {
    return {
      kind: 'invalid',
      message: `${annotations.path} must be a URL path such as /metrics, got "${values[annotations.path]}"`,
    };
  }
  // Prometheus scrapes the sidecar, which serves plain http; the sidecar scrapes the
  // application the way the pod asked (an https target is verified, see the README).
  const givenScheme = values[annotations.scheme]?.trim().toLowerCase() || 'http';
  if (givenScheme !== 'http' && givenScheme !== 'https') {
    return {
      kind: 'invalid',
      message: `${annotations.scheme} must be http or https, got "${values[annotations.scheme]}"`,
    };
  }
  const scheme: 'http' | 'https' = givenScheme;
  let maxConcurrent: number | undefined;
  const rawLimit = values[annotations.maxConcurrent];
  if (rawLimit !== undefined) {
    maxConcurrent = /^\d+$/.test(rawLimit.trim()) ? Number(rawLimit) : Number.NaN;
    if (!Number.isSafeInteger(maxConcurrent) || maxConcurrent < 1) {
      return {
        kind: 'invalid',
        message: `${annotations.maxConcurrent} must be a whole number of pods, 1 or more, got "${rawLimit}"`,
      };
    }
  }
  return { kind: 'inject', port, path, scheme, maxConcurrent };
}
