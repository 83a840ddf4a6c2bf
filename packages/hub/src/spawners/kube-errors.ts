// Failures of the Kubernetes API, one class per kind, each with a stable code. The apiserver's
// Status object (reason, message, details) is kept so a caller can branch on `code` and a
// person can read what the cluster said.
import { SeahorseError } from '@seahorse/runtime';

/** What the apiserver answers instead of an object (kind: Status). */
export interface KubeStatus {
  kind?: string;
  apiVersion?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: {
    name?: string;
    kind?: string;
    causes?: Array<{ field?: string; message?: string; reason?: string }>;
    retryAfterSeconds?: number;
  };
}

/** A request the apiserver refused or failed: the HTTP status and its Status object. */
export class KubeApiError extends SeahorseError {
  readonly status: number;
  readonly reason: string;
  readonly kubeStatus: KubeStatus;
  constructor(code: string, status: number, what: string, kubeStatus: KubeStatus, hint: string) {
    const said = kubeStatus.message ? `: ${kubeStatus.message}` : '';
    super(code, `${what} failed with ${status} ${kubeStatus.reason ?? ''}${said}${hint ? `; ${hint}` : ''}`);
    this.status = status;
    this.reason = kubeStatus.reason ?? '';
    this.kubeStatus = kubeStatus;
  }
}

/** 404 NotFound: the object (or the namespace) does not exist. */
export class KubeNotFoundError extends KubeApiError {
  constructor(what: string, status: KubeStatus) {
    super('HUB_KUBE_NOT_FOUND', 404, what, status, 'check KubeSpawner.namespace');
  }
}

/** 409 AlreadyExists or Conflict: an object of that name exists, or was changed meanwhile. */
export class KubeConflictError extends KubeApiError {
  constructor(what: string, status: KubeStatus) {
    super('HUB_KUBE_CONFLICT', 409, what, status, '');
  }
}

/** 422 Invalid: the object breaks the API's rules; the causes name the fields. */
export class KubeInvalidError extends KubeApiError {
  constructor(what: string, status: KubeStatus) {
    const causes = (status.details?.causes ?? [])
      .map((cause) => `${cause.field ?? '?'}: ${cause.message ?? cause.reason ?? ''}`)
      .join('; ');
    super(
      'HUB_KUBE_INVALID',
      422,
      what,
      status,
      `fix the KubeSpawner setting that produces it${causes ? ` (${causes})` : ''}`,
    );
  }
}

/** 403 Forbidden: RBAC does not let the hub's service account do this. */
export class KubeForbiddenError extends KubeApiError {
  constructor(what: string, status: KubeStatus) {
    super(
      'HUB_KUBE_FORBIDDEN',
      403,
      what,
      status,
      "grant the hub's service account this verb on this resource in its namespace (a Role and RoleBinding)",
    );
  }
}

/** 401 Unauthorized: the token or client certificate is missing, expired or not trusted. */
export class KubeUnauthorizedError extends KubeApiError {
  constructor(what: string, status: KubeStatus) {
    super(
      'HUB_KUBE_UNAUTHORIZED',
      401,
      what,
      status,
      "check the hub's service-account token or kubeconfig user",
    );
  }
}

/** 410 Gone: a watch's resourceVersion is too old; the caller lists again. */
export class KubeGoneError extends KubeApiError {
  constructor(what: string, status: KubeStatus) {
    super('HUB_KUBE_GONE', 410, what, status, '');
  }
}

/** Any other status (500, 503, 429, ...). */
export class KubeServerError extends KubeApiError {
  /** Seconds the apiserver asked to wait before trying again (Retry-After, or details.retryAfterSeconds). */
  retryAfterSeconds: number | undefined;
  constructor(what: string, httpStatus: number, status: KubeStatus) {
    super('HUB_KUBE_SERVER', httpStatus, what, status, 'the apiserver may be overloaded or restarting');
  }
}

/** The apiserver could not be reached, or its answer was not what the API speaks. */
export class KubeConnectionError extends SeahorseError {
  /** The request failed before any of the answer arrived (so an idempotent one may be retried). */
  beforeAnswer = false;
  constructor(message: string, options?: ErrorOptions) {
    super('HUB_KUBE_CONNECTION', message, options);
  }
}

/** Neither an in-cluster service account nor a usable kubeconfig was found. */
export class KubeConfigError extends SeahorseError {
  constructor(message: string) {
    super('HUB_KUBE_CONFIG', message);
  }
}

/** The error class for a non-2xx answer. */
export function errorForStatus(what: string, httpStatus: number, status: KubeStatus): KubeApiError {
  switch (httpStatus) {
    case 401:
      return new KubeUnauthorizedError(what, status);
    case 403:
      return new KubeForbiddenError(what, status);
    case 404:
      return new KubeNotFoundError(what, status);
    case 409:
      return new KubeConflictError(what, status);
    case 410:
      return new KubeGoneError(what, status);
    case 422:
      return new KubeInvalidError(what, status);
    default:
      return new KubeServerError(what, httpStatus, status);
  }
}
