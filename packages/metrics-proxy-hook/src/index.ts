// Programmatic use: the webhook and sidecar in-process (tests, embedding), or their parts.
export {
  type AdmissionResponse,
  type AdmissionReview,
  admissionApiVersion,
  BadAdmissionRequest,
  parseAdmissionReview,
} from './admission.ts';
export {
  annotations,
  readInjectionRequest,
  semaphoreLabel,
  sidecarContainerName,
  sidecarPort,
} from './annotations.ts';
export { CertificateReloader } from './certificate.ts';
export { normalizeArgv, sidecarCommandLine, webhookCommandLine } from './command-line.ts';
export { LeaseRefusedError, LeaseUnavailableError, TargetTimeoutError } from './errors.ts';
export {
  applyPatch,
  escapePointerToken,
  JsonPatchError,
  type PatchOperation,
  pointer,
} from './json-patch.ts';
export type { Container, Pod } from './kubernetes.ts';
export { WebhookLeaseClient } from './lease-client.ts';
export { leasePath, parseLeaseRequest } from './lease-endpoint.ts';
export { SlotLeaseService } from './lease-service.ts';
export { LeaseTokenError, LeaseTokens, parseLeaseTokenKeys, type SlotGrant } from './lease-token.ts';
export { PodMutator } from './mutator.ts';
export {
  buildSidecarOptions,
  buildWebhookOptions,
  envName,
  parseListenAddress,
  parseRedisAddress,
  type SidecarOptions,
  sidecarFlagSpecs,
  version,
  type WebhookOptions,
  webhookFlagSpecs,
} from './options.ts';
export { type ApiServerConnection, ApiServerError, PodEvidence } from './pod-evidence.ts';
export { addToPortList, buildPodPatch, type SlotAssignment } from './pod-patch.ts';
export { RedisNodes } from './redis-nodes.ts';
export { LockUnavailableError, Redlock } from './redlock.ts';
export {
  type AcquireResult,
  RedisSemaphore,
  SemaphoreUnavailableError,
  SlotRetiredError,
} from './semaphore.ts';
export { MetricsSidecar } from './sidecar.ts';
export { type LeaseBackend, type RenewOutcome, SlotLease } from './slot-lease.ts';
export { type RunningWebhook, startWebhook } from './webhook.ts';
export { workloadKey } from './workload.ts';
