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
      /** From `max-concurrent`; undefined when the pod sets no limit. */
      maxConcurrent: number | undefined;
    };

function isTrue(value: string | undefined): boolean {
  return value?.trim().toLowerCase() === 'true';
}

/** Whether the pod asks for the sidecar, and with which settings. */
export function readInjectionRequest(pod: Pod): InjectionRequest {
  const values = pod.metadata?.annotations ?? {};
  if (!isTrue(values[annotations.wait]) && !isTrue(values[annotations.seedTrigger])) return { kind: 'none' };
  const trigger = isTrue(values[annotations.wait]) ? annotations.wait : annotations.seedTrigger;

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
  const path = values[annotations.path]?.trim() || '/metrics';
  if (!path.startsWith('/') || /[\s#]/.test(path)) {
    return {
      kind: 'invalid',
      message: `${annotations.path} must be a URL path starting with /, got "${values[annotations.path]}"`,
    };
  }
  const scheme = values[annotations.scheme]?.trim().toLowerCase();
  if (scheme && scheme !== 'http') {
    return {
      kind: 'invalid',
      message: `${annotations.scheme} is "${values[annotations.scheme]}"; the metrics proxy scrapes and serves plain http only`,
    };
  }
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
  return { kind: 'inject', port, path, maxConcurrent };
}
