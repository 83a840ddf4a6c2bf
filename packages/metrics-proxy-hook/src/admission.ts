// admission.k8s.io/v1 AdmissionReview: validated once at the edge, answered with the uid the API
// server sent, and a base64 JSONPatch when the object changes.
import { SeahorseError } from '@seahorse/runtime';
import type { PatchOperation } from './json-patch.ts';

export const admissionApiVersion = 'admission.k8s.io/v1';

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

export interface AdmissionRequest {
  uid: string;
  kind: GroupVersionKind;
  resource?: { group: string; version: string; resource: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
  userInfo?: { username?: string; uid?: string; groups?: string[] };
  object?: unknown;
  oldObject?: unknown;
  dryRun?: boolean;
}

export interface AdmissionReview {
  apiVersion: typeof admissionApiVersion;
  kind: 'AdmissionReview';
  request: AdmissionRequest;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  /** base64 of the JSON-encoded operations. */
  patch?: string;
  status?: { code: number; reason?: string; message: string };
  warnings?: string[];
}

/** A request body this webhook cannot answer as an AdmissionReview; `status` is the HTTP status. */
export class BadAdmissionRequest extends SeahorseError {
  readonly status: number;
  constructor(code: string, status: number, message: string) {
    super(code, message);
    this.status = status;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses and checks a request body; throws BadAdmissionRequest saying what is wrong. */
export function parseAdmissionReview(body: string): AdmissionReview {
  let review: unknown;
  try {
    review = JSON.parse(body);
  } catch (error) {
    throw new BadAdmissionRequest(
      'INVALID_JSON',
      400,
      `the request body is not valid JSON (${(error as Error).message}); send an admission.k8s.io/v1 AdmissionReview`,
    );
  }
  if (!isRecord(review)) {
    throw new BadAdmissionRequest(
      'NOT_AN_ADMISSION_REVIEW',
      400,
      'the request body must be a JSON AdmissionReview object',
    );
  }
  if (review.kind !== 'AdmissionReview') {
    throw new BadAdmissionRequest(
      'NOT_AN_ADMISSION_REVIEW',
      400,
      `expected kind AdmissionReview, got ${JSON.stringify(review.kind ?? null)}`,
    );
  }
  if (review.apiVersion !== admissionApiVersion) {
    throw new BadAdmissionRequest(
      'UNSUPPORTED_API_VERSION',
      400,
      `expected apiVersion ${admissionApiVersion}, got ${JSON.stringify(review.apiVersion ?? null)}; list only v1 in the webhook's admissionReviewVersions`,
    );
  }
  const request = review.request;
  if (!isRecord(request)) {
    throw new BadAdmissionRequest('MISSING_REQUEST', 400, 'the AdmissionReview has no request');
  }
  if (typeof request.uid !== 'string' || request.uid === '') {
    throw new BadAdmissionRequest('MISSING_UID', 400, 'the AdmissionReview request has no uid');
  }
  // The API server's uids are UUIDs. The uid becomes a slot id in Redis, an annotation and an
  // environment variable, so nothing long or with control characters gets that far.
  if (!/^[\x21-\x7e]{1,128}$/.test(request.uid) || request.uid.includes('#')) {
    throw new BadAdmissionRequest(
      'INVALID_UID',
      400,
      `the AdmissionReview request's uid must be at most 128 printable characters without '#' (the API server sends a UUID), got ${request.uid.length} characters`,
    );
  }
  const kind = request.kind;
  if (
    !isRecord(kind) ||
    typeof kind.kind !== 'string' ||
    typeof kind.version !== 'string' ||
    typeof kind.group !== 'string'
  ) {
    throw new BadAdmissionRequest(
      'MISSING_KIND',
      400,
      'the AdmissionReview request has no kind {group, version, kind} of strings (group "" for core objects)',
    );
  }
  if (typeof request.operation !== 'string') {
    throw new BadAdmissionRequest('MISSING_OPERATION', 400, 'the AdmissionReview request has no operation');
  }
  for (const field of ['namespace', 'name', 'subResource'] as const) {
    if (request[field] !== undefined && typeof request[field] !== 'string') {
      throw new BadAdmissionRequest(
        'INVALID_FIELD',
        400,
        `the AdmissionReview request's ${field} must be a string`,
      );
    }
  }
  if (request.dryRun !== undefined && typeof request.dryRun !== 'boolean') {
    throw new BadAdmissionRequest(
      'INVALID_FIELD',
      400,
      "the AdmissionReview request's dryRun must be true or false",
    );
  }
  return review as unknown as AdmissionReview;
}

export function allow(
  uid: string,
  patch?: readonly PatchOperation[],
  warnings: string[] = [],
): AdmissionResponse {
  const response: AdmissionResponse = { uid, allowed: true };
  if (patch && patch.length > 0) {
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(patch)).toString('base64');
  }
  if (warnings.length > 0) response.warnings = warnings;
  return response;
}

/** A denial; the API server shows `message` to whoever created the pod, after the webhook's name. */
export function deny(uid: string, code: number, reason: string, message: string): AdmissionResponse {
  return { uid, allowed: false, status: { code, reason, message } };
}

export function reviewResponse(response: AdmissionResponse): {
  apiVersion: string;
  kind: 'AdmissionReview';
  response: AdmissionResponse;
} {
  return { apiVersion: admissionApiVersion, kind: 'AdmissionReview', response };
}
