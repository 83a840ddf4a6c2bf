// The webhook's Prometheus metrics. Labels are small fixed sets (status codes, outcomes and
// denial reasons), never namespaces or pod names.
import { Counter, Gauge, Histogram, type Registry } from '@seahorse/runtime/metrics';

export type DenialReason =
  | 'invalid_annotation'
  | 'semaphore_full'
  | 'semaphore_unavailable'
  | 'semaphore_not_enabled';
export type AdmissionOutcome = 'mutated' | 'denied' | 'untouched' | 'error';

export class WebhookMetrics {
  readonly #requests: Counter;
  readonly #mutations: Counter;
  readonly #denials: Counter;
  readonly #duration: Histogram;
  readonly #certificateReloads: Counter;
  readonly #reclaimed: Counter;
  readonly #leaseRequests: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.#requests = new Counter({
      name: 'seahorse_metrics_proxy_hook_admission_requests_total',
      help: 'Admission requests answered, by HTTP status code',
      labelNames: ['code'],
      registers,
    });
    this.#mutations = new Counter({
      name: 'seahorse_metrics_proxy_hook_mutations_total',
      help: 'Pods given the prometheus-metrics-proxy sidecar',
      registers,
    });
    this.#denials = new Counter({
      name: 'seahorse_metrics_proxy_hook_denials_total',
      help: 'Pods denied, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'seahorse_metrics_proxy_hook_admission_duration_seconds',
      help: 'Time from receiving an AdmissionReview to the end of the answer, by outcome',
      labelNames: ['outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.#certificateReloads = new Counter({
      name: 'seahorse_metrics_proxy_hook_certificate_reloads_total',
      help: 'Serving certificate reloads, by result',
      labelNames: ['result'],
      registers,
    });
    this.#reclaimed = new Counter({
      name: 'seahorse_metrics_proxy_hook_slots_reclaimed_total',
      help: 'Semaphore slots given back because the API server showed no running pod holds them',
      registers,
    });
    this.#leaseRequests = new Counter({
      name: 'seahorse_metrics_proxy_hook_lease_requests_total',
      help: 'Slot lease requests from sidecars (POST /semaphore/lease), by action and HTTP status code',
      labelNames: ['action', 'code'],
      registers,
    });
    for (const reason of [
      'invalid_annotation',
      'semaphore_full',
      'semaphore_unavailable',
      'semaphore_not_enabled',
    ] satisfies DenialReason[]) {
      this.#denials.labels(reason);
    }
    this.#certificateReloads.labels('success');
    this.#certificateReloads.labels('failure');
  }

  answered(code: number, outcome: AdmissionOutcome, seconds: number): void {
    this.#requests.labels(String(code)).inc();
    this.#duration.labels(outcome).observe(seconds);
  }

  mutated(): void {
    this.#mutations.inc();
  }

  denied(reason: DenialReason): void {
    this.#denials.labels(reason).inc();
  }

  /** Exports the sidecars' lease overruns, read from Redis when Prometheus scrapes. */
  leaseOverruns(read: () => Promise<number>, registry: Registry): void {
    new Gauge({
      name: 'seahorse_metrics_proxy_hook_lease_overruns',
      help: 'Times a sidecar went longer than its slot lease without renewing (frozen or cut off); each may have let a workload exceed its max-concurrent',
      registers: [registry],
      async collect() {
        try {
          this.set(await read());
        } catch {
          // Redis unreachable: keep the last value rather than fail the scrape.
        }
      },
    });
  }

  /** `action`: renew, hold, release, or `invalid` when the body did not name one. */
  leaseAnswered(action: string, code: number): void {
    this.#leaseRequests.labels(action, String(code)).inc();
  }

  slotsReclaimed(count: number): void {
    this.#reclaimed.inc(count);
  }

  certificateReloaded(ok: boolean): void {
    this.#certificateReloads.labels(ok ? 'success' : 'failure').inc();
  }
}
