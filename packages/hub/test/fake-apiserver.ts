// A fake Kubernetes API server on loopback for the calls the Kubernetes spawner makes, speaking
// the apiserver's wire format: JSON objects and lists with resourceVersions, Status objects for
// 400/401/403/404/409/410/422 (the 403 worded as RBAC words it), and `watch=true` chunked
// streams of newline-delimited events with bookmarks, ERROR 410 Expired for a compacted
// resourceVersion, and server-side timeouts. Every object it receives is validated against the
// Kubernetes OpenAPI schema (kubernetes-models) and the apiserver's own name, label, quantity
// and volume-reference rules, so a manifest the spawner sends here is one a cluster accepts.
// Tests drive the "cluster" side: pods become Running, emit events, terminate.
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Service } from 'kubernetes-models/v1/Service';

// biome-ignore lint/suspicious/noExplicitAny: objects off the wire, walked freely once the schema passed them
type Obj = Record<string, any>;

interface Cause {
  reason: string;
  message: string;
  field: string;
}

const resources = {
  pods: { kind: 'Pod', model: Pod },
  services: { kind: 'Service', model: Service },
  persistentvolumeclaims: { kind: 'PersistentVolumeClaim', model: PersistentVolumeClaim },
  events: { kind: 'Event', model: undefined },
} as const;
type Resource = keyof typeof resources;

interface Watcher {
  resource: Resource;
  namespace: string;
  labelSelector: string;
  fieldSelector: string;
  bookmarks: boolean;
  res: ServerResponse;
}

interface HistoryEntry {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  resource: Resource;
  object: Obj;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  body?: Obj;
}

export interface FakeApiServerOptions {
  /** TLS key and certificate (the in-cluster path); plain HTTP when absent. */
  tls?: { key: Buffer; cert: Buffer };
  /** The bearer token it accepts (changeable: `fake.token = ...` rotates it); others get 401. */
  token: string;
  /** The user RBAC messages name. */
  user?: string;
  /** Called after a pod is created (e.g. to make it Running at once). */
  onPodCreated?: (pod: Obj) => void;
}

function status(code: number, reason: string, message: string, details?: Obj): Obj {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const dns1035Label = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const qualifiedName = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const quantityPattern = /^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?\d+))?$/;

function parseQuantity(text: string): number {
  const match = /^([+-]?[\d.]+)([a-zA-Z]*)$/.exec(text);
  if (!match) return Number.NaN;
  const units: Record<string, number> = {
    '': 1,
    n: 1e-9,
    u: 1e-6,
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    P: 1e15,
    E: 1e18,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    Pi: 2 ** 50,
    Ei: 2 ** 60,
  };
  const unit = units[match[2]!];
  return unit === undefined ? Number.NaN : Number(match[1]) * unit;
}

/** The apiserver's metadata and pod rules beyond the schema (names, labels, quantities, volume refs). */
function semanticCauses(resource: Resource, object: Obj): Cause[] {
  const causes: Cause[] = [];
  const invalid = (field: string, message: string) =>
    causes.push({ reason: 'FieldValueInvalid', message, field });
  const name = object.metadata?.name;
  if (typeof name !== 'string' || name === '') {
    causes.push({
      reason: 'FieldValueRequired',
      message: 'Required value: name or generateName is required',
      field: 'metadata.name',
    });
  } else if (
    resource === 'services'
      ? !dns1035Label.test(name) || name.length > 63
      : !dns1123Subdomain.test(name) || name.length > 253
  ) {
    invalid(
      'metadata.name',
      `Invalid value: "${name}": a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.'`,
    );
  }
  for (const [key, value] of Object.entries((object.metadata?.labels ?? {}) as Obj)) {
    const [prefix, base] = key.includes('/') ? key.split('/', 2) : [undefined, key];
    if (
      !base ||
      base.length > 63 ||
      !qualifiedName.test(base) ||
      (prefix !== undefined && !dns1123Subdomain.test(prefix))
    ) {
      invalid(
        `metadata.labels`,
        `Invalid value: "${key}": name part must consist of alphanumeric characters, '-', '_' or '.'`,
      );
    }
    if (typeof value !== 'string' || value.length > 63 || !labelValue.test(value)) {
      invalid(
        `metadata.labels`,
        `Invalid value: "${String(value)}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
      );
    }
  }
  if (resource === 'pods') {
    const spec = object.spec ?? {};
    const volumes = new Set<string>((spec.volumes ?? []).map((volume: Obj) => volume.name));
    if (volumes.size !== (spec.volumes ?? []).length)
      invalid('spec.volumes', 'Duplicate value: volume names must be unique');
    const check = (list: Obj[] | undefined, path: string) =>
      (list ?? []).forEach((container, i) => {
        const at = `${path}[${i}]`;
        (container.volumeMounts ?? []).forEach((mount: Obj, j: number) => {
          if (!volumes.has(mount.name))
            causes.push({
              reason: 'FieldValueNotFound',
              message: `Not found: "${mount.name}"`,
              field: `${at}.volumeMounts[${j}].name`,
            });
          if (typeof mount.mountPath !== 'string' || !mount.mountPath)
            causes.push({
              reason: 'FieldValueRequired',
              message: 'Required value',
              field: `${at}.volumeMounts[${j}].mountPath`,
            });
          if (
            typeof mount.subPath === 'string' &&
            (mount.subPath.startsWith('/') || mount.subPath.split('/').includes('..'))
          ) {
            invalid(
              `${at}.volumeMounts[${j}].subPath`,
              `Invalid value: "${mount.subPath}": must be a relative path without '..'`,
            );
          }
        });
        const requests = (container.resources?.requests ?? {}) as Obj;
        const limits = (container.resources?.limits ?? {}) as Obj;
        for (const [kind, values] of [
          ['requests', requests],
          ['limits', limits],
        ] as const) {
          for (const [key, value] of Object.entries(values)) {
            if (!quantityPattern.test(String(value)))
              invalid(
                `${at}.resources.${kind}[${key}]`,
                `Invalid value: "${String(value)}": quantities must match the regular expression`,
              );
          }
        }
        for (const [key, value] of Object.entries(requests)) {
          if (
            limits[key] !== undefined &&
            parseQuantity(String(value)) > parseQuantity(String(limits[key]))
          ) {
            invalid(
              `${at}.resources.requests`,
              `Invalid value: "${String(value)}": must be less than or equal to ${key} limit of ${String(limits[key])}`,
            );
          }
          if (
            key.includes('/') &&
            !key.startsWith('kubernetes.io/') &&
            limits[key] !== undefined &&
            String(limits[key]) !== String(value)
          ) {
            invalid(
              `${at}.resources.requests[${key}]`,
              `Invalid value: "${String(value)}": must be equal to ${key} limit`,
            );
          }
        }
      });
    check(spec.containers, 'spec.containers');
    check(spec.initContainers, 'spec.initContainers');
  }
  return causes;
}

function matchesLabels(object: Obj, selector: string): boolean {
  if (!selector) return true;
  const labels = (object.metadata?.labels ?? {}) as Record<string, string>;
  return selector.split(',').every((term) => {
    const ne = term.split('!=');
    if (ne.length === 2) return labels[ne[0]!] !== ne[1];
    const eq = term.split(/==?/);
    if (eq.length === 2) return labels[eq[0]!] === eq[1];
    return term.startsWith('!') ? !(term.slice(1) in labels) : term in labels;
  });
}

function matchesFields(object: Obj, selector: string): boolean {
  if (!selector) return true;
  return selector.split(',').every((term) => {
    const [path, value] = term.split('=') as [string, string];
    let current: unknown = object;
    for (const part of path.split('.')) current = (current as Obj | undefined)?.[part];
    return String(current ?? '') === value;
  });
}

export class FakeApiServer {
  readonly server: http.Server;
  readonly requests: RequestRecord[] = [];
  /** Every object received by a create, after it passed validation. */
  readonly received: Obj[] = [];
  /** Verbs refused with an RBAC 403, as 'create pods', 'list events', ... */
  readonly forbidden = new Set<string>();
  readonly #objects = new Map<string, Obj>();
  readonly #history: HistoryEntry[] = [];
  readonly #watchers = new Set<Watcher>();
  readonly #stalled = new Set<Watcher>();
  readonly #options: FakeApiServerOptions;
  /** The bearer token accepted now. */
  token: string;
  #rv = 100;
  #compactedTo = 0;
  url = '';

  constructor(options: FakeApiServerOptions) {
    this.#options = options;
    this.token = options.token;
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) this.#send(res, 500, status(500, 'InternalError', String(error)));
      });
    };
    this.server = options.tls
      ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, handler)
      : http.createServer(handler);
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.url = `${this.#options.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    return this.url;
  }

  async close(): Promise<void> {
    this.dropWatches();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  get resourceVersion(): string {
    return String(this.#rv);
  }

  get openWatches(): number {
    return this.#watchers.size;
  }

  /** Watch requests made for a resource so far. */
  watchRequests(resource: Resource): RequestRecord[] {
    return this.requests.filter(
      (r) => r.method === 'GET' && r.query.watch === 'true' && r.path.endsWith(`/${resource}`),
    );
  }

  get(resource: Resource, namespace: string, name: string): Obj | undefined {
    return this.#objects.get(`${resource}/${namespace}/${name}`);
  }

  list(resource: Resource, namespace: string): Obj[] {
    const prefix = `${resource}/${namespace}/`;
    return [...this.#objects.entries()].filter(([key]) => key.startsWith(prefix)).map(([, object]) => object);
  }

  /** Breaks every open watch stream (as a restarted apiserver or a dropped connection does). */
  dropWatches(): void {
    for (const watcher of this.#watchers) watcher.res.destroy();
    this.#watchers.clear();
  }

  /** Forgets the history up to now: a watch from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.#compactedTo = this.#rv;
    this.#history.length = 0;
  }

  /**
   * A hostile apiserver's answer: called for each authenticated request before the fake handles
   * it; true when it answered (or chose never to answer) itself.
   */
  intercept: ((record: RequestRecord, res: ServerResponse) => boolean) | undefined;

  /**
   * A hostile apiserver's answer to a create it carried out: the text sent (201) instead of the
   * object, or undefined for the object itself.
   */
  answerCreate: ((resource: Resource, object: Obj) => string | undefined) | undefined;

  /** How long a pod create takes before the pod is stored and the create answered (0: at once). */
  podCreateDelayMs = 0;

  /** Writes `text` as it is (no newline added) to every open watch of `resource`. */
  writeToWatches(resource: Resource, text: string): void {
    for (const watcher of this.#watchers) if (watcher.resource === resource) watcher.res.write(text);
  }

  /** Open watches stop receiving anything, their sockets left open (a stalled stream); undo with unstall. */
  stallWatches(): void {
    for (const watcher of this.#watchers) this.#stalled.add(watcher);
  }

  /** Sends a BOOKMARK with the current resourceVersion to every watch that asked for them. */
  bookmark(): void {
    for (const watcher of this.#watchers) {
      if (!watcher.bookmarks) continue;
      const kind = resources[watcher.resource].kind;
      watcher.res.write(
        `${JSON.stringify({ type: 'BOOKMARK', object: { kind, apiVersion: 'v1', metadata: { resourceVersion: String(this.#rv) } } })}\n`,
      );
    }
  }

  /** The kubelet's part: the pod runs, with an IP, its containers ready. */
  setRunning(namespace: string, name: string, podIP = '127.0.0.1'): void {
    this.#update('pods', namespace, name, (pod) => {
      pod.status = {
        phase: 'Running',
        podIP,
        podIPs: [{ ip: podIP }],
        containerStatuses: (pod.spec.containers as Obj[]).map((container) => ({
          name: container.name,
          image: container.image,
          ready: true,
          restartCount: 0,
          state: { running: { startedAt: new Date().toISOString() } },
        })),
      };
    });
    this.event(namespace, name, 'Normal', 'Started', 'Started container notebook');
  }

  /** The notebook container exited. */
  terminate(namespace: string, name: string, exitCode: number, reason = 'Error'): void {
    this.#update('pods', namespace, name, (pod) => {
      pod.status = {
        phase: exitCode === 0 ? 'Succeeded' : 'Failed',
        containerStatuses: [
          { name: 'notebook', ready: false, restartCount: 0, state: { terminated: { exitCode, reason } } },
        ],
      };
    });
  }

  /** An Event about a pod, as the scheduler or the kubelet record them. */
  event(namespace: string, podName: string, type: string, reason: string, message: string): void {
    const pod = this.get('pods', namespace, podName);
    const now = new Date().toISOString();
    this.#put(
      'events',
      namespace,
      {
        kind: 'Event',
        apiVersion: 'v1',
        metadata: { name: `${podName}.${randomUUID().slice(0, 8)}`, namespace },
        involvedObject: { kind: 'Pod', namespace, name: podName, uid: pod?.metadata.uid, apiVersion: 'v1' },
        reason,
        message,
        type,
        source: { component: 'kubelet' },
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
      'ADDED',
    );
  }

  #update(resource: Resource, namespace: string, name: string, change: (object: Obj) => void): void {
    const object = this.get(resource, namespace, name);
    if (!object) throw new Error(`no ${resource} ${namespace}/${name}`);
    const copy = structuredClone(object);
    change(copy);
    this.#put(resource, namespace, copy, 'MODIFIED');
  }

  #put(resource: Resource, namespace: string, object: Obj, type: 'ADDED' | 'MODIFIED'): void {
    this.#rv++;
    object.metadata.resourceVersion = String(this.#rv);
    object.metadata.namespace = namespace;
    object.metadata.uid ??= randomUUID();
    object.metadata.creationTimestamp ??= new Date().toISOString();
    this.#objects.set(`${resource}/${namespace}/${object.metadata.name}`, object);
    this.#record({ rv: this.#rv, type, resource, object });
  }

  #remove(resource: Resource, namespace: string, name: string): void {
    const object = this.get(resource, namespace, name);
    if (!object) return;
    this.#objects.delete(`${resource}/${namespace}/${name}`);
    this.#rv++;
    const gone = { ...object, metadata: { ...object.metadata, resourceVersion: String(this.#rv) } };
    this.#record({ rv: this.#rv, type: 'DELETED', resource, object: gone });
    // The garbage collector: objects owned by this one go with it.
    for (const [key, owned] of [...this.#objects.entries()]) {
      if ((owned.metadata.ownerReferences ?? []).some((ref: Obj) => ref.uid === object.metadata.uid)) {
        const [ownedResource, ownedNamespace, ownedName] = key.split('/') as [Resource, string, string];
        this.#remove(ownedResource, ownedNamespace, ownedName);
      }
    }
  }

  #record(entry: HistoryEntry): void {
    this.#history.push(entry);
    for (const watcher of this.#watchers) this.#deliver(watcher, entry);
  }

  #deliver(watcher: Watcher, entry: HistoryEntry): void {
    if (this.#stalled.has(watcher)) return;
    if (entry.resource !== watcher.resource || entry.object.metadata.namespace !== watcher.namespace) return;
    if (
      !matchesLabels(entry.object, watcher.labelSelector) ||
      !matchesFields(entry.object, watcher.fieldSelector)
    )
      return;
    watcher.res.write(`${JSON.stringify({ type: entry.type, object: entry.object })}\n`);
  }

  #send(res: ServerResponse, code: number, body: Obj): void {
    const text = JSON.stringify(body);
    res.writeHead(code, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      'audit-id': randomUUID(),
    });
    res.end(text);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const query = Object.fromEntries(url.searchParams);
    const record: RequestRecord = { method: req.method ?? '', path: url.pathname, query };
    this.requests.push(record);
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      this.#send(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    if (this.intercept?.(record, res)) return;
    const match = /^\/api\/v1\/namespaces\/([^/]+)\/([^/]+)(?:\/([^/]+))?$/.exec(url.pathname);
    if (!match || !(match[2]! in resources)) {
      this.#send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
      return;
    }
    const namespace = decodeURIComponent(match[1]!);
    const resource = match[2] as Resource;
    const name = match[3] === undefined ? undefined : decodeURIComponent(match[3]);
    const verb =
      req.method === 'POST'
        ? 'create'
        : req.method === 'DELETE'
          ? 'delete'
          : query.watch === 'true'
            ? 'watch'
            : name
              ? 'get'
              : 'list';
    if (this.forbidden.has(`${verb} ${resource}`)) {
      const user = this.#options.user ?? 'system:serviceaccount:jupyterhub:jupyterhub-hub';
      const target = name ? `${resource} "${name}"` : resource;
      this.#send(
        res,
        403,
        status(
          403,
          'Forbidden',
          `${target} is forbidden: User "${user}" cannot ${verb} resource "${resource}" in API group "" in the namespace "${namespace}"`,
          { ...(name ? { name } : {}), kind: resource },
        ),
      );
      return;
    }
    if (text) {
      try {
        record.body = JSON.parse(text) as Obj;
      } catch {
        this.#send(res, 400, status(400, 'BadRequest', 'the body of the request was in an unknown format'));
        return;
      }
    }
    if (verb === 'create') this.#create(res, resource, namespace, record.body);
    else if (verb === 'get') {
      const object = this.get(resource, namespace, name!);
      if (object) this.#send(res, 200, object);
      else
        this.#send(
          res,
          404,
          status(404, 'NotFound', `${resource} "${name}" not found`, { name, kind: resource }),
        );
    } else if (verb === 'list') {
      const items = this.list(resource, namespace).filter(
        (object) =>
          matchesLabels(object, query.labelSelector ?? '') &&
          matchesFields(object, query.fieldSelector ?? ''),
      );
      this.#send(res, 200, {
        kind: `${resources[resource].kind}List`,
        apiVersion: 'v1',
        metadata: { resourceVersion: String(this.#rv) },
        items,
      });
    } else if (verb === 'watch') this.#watch(res, resource, namespace, query);
    else this.#delete(res, resource, namespace, name, record.body, query);
  }

  #create(res: ServerResponse, resource: Resource, namespace: string, body: Obj | undefined): void {
    const { kind, model } = resources[resource];
    if (!body || typeof body !== 'object' || body.kind !== kind || body.apiVersion !== 'v1') {
      this.#send(
        res,
        400,
        status(400, 'BadRequest', `the object provided is unrecognized (must be of type ${kind})`),
      );
      return;
    }
    if (body.metadata?.namespace !== undefined && body.metadata.namespace !== namespace) {
      this.#send(
        res,
        400,
        status(
          400,
          'BadRequest',
          'the namespace of the provided object does not match the namespace sent on the request',
        ),
      );
      return;
    }
    const causes: Cause[] = [];
    if (model) {
      try {
        new model(body as never).validate();
      } catch (error) {
        for (const problem of ((error as { errors?: Obj[] }).errors ?? [
          { instancePath: '', message: String(error) },
        ]) as Obj[]) {
          causes.push({
            reason: 'FieldValueInvalid',
            message: `Invalid value: ${problem.message}`,
            field: String(problem.instancePath)
              .slice(1)
              .replace(/\/(\d+)/g, '[$1]')
              .replace(/\//g, '.'),
          });
        }
      }
    }
    causes.push(...semanticCauses(resource, body));
    if (causes.length > 0) {
      this.#send(
        res,
        422,
        status(
          422,
          'Invalid',
          `${kind} "${body.metadata?.name ?? ''}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}`,
          { name: body.metadata?.name, kind: resource, causes },
        ),
      );
      return;
    }
    if (this.#answeredAlreadyExists(res, resource, namespace, body)) return;
    // A slow apiserver (an admission webhook taking its time): the pod is stored, and the create
    // answered, only after the delay — possibly after the client gave up on it.
    if (resource === 'pods' && this.podCreateDelayMs > 0) {
      setTimeout(() => this.#store(res, resource, namespace, body), this.podCreateDelayMs);
      return;
    }
    this.#store(res, resource, namespace, body);
  }

  /** 409 AlreadyExists, as the apiserver answers a create of a name it holds; true when answered. */
  #answeredAlreadyExists(res: ServerResponse, resource: Resource, namespace: string, body: Obj): boolean {
    if (!this.get(resource, namespace, body.metadata.name)) return false;
    this.#send(
      res,
      409,
      status(409, 'AlreadyExists', `${resource} "${body.metadata.name}" already exists`, {
        name: body.metadata.name,
        kind: resource,
      }),
    );
    return true;
  }

  #store(res: ServerResponse, resource: Resource, namespace: string, body: Obj): void {
    // Again here: a delayed create may find its name taken by the time it is stored.
    if (this.#answeredAlreadyExists(res, resource, namespace, body)) return;
    this.received.push(structuredClone(body));
    const object = structuredClone(body);
    if (resource === 'pods') object.status = { phase: 'Pending', qosClass: 'Burstable' };
    if (resource === 'persistentvolumeclaims') object.status = { phase: 'Pending' };
    if (resource === 'services') object.spec.clusterIP = '10.96.0.10';
    this.#put(resource, namespace, object, 'ADDED');
    const raw = this.answerCreate?.(resource, structuredClone(object));
    if (raw === undefined) this.#send(res, 201, object);
    else {
      res.writeHead(201, { 'content-type': 'application/json', 'audit-id': randomUUID() });
      res.end(raw);
    }
    if (resource === 'pods') {
      this.event(
        namespace,
        object.metadata.name,
        'Normal',
        'Scheduled',
        `Successfully assigned ${namespace}/${object.metadata.name} to node-1`,
      );
      this.#options.onPodCreated?.(object);
    }
  }

  #delete(
    res: ServerResponse,
    resource: Resource,
    namespace: string,
    name: string | undefined,
    body: Obj | undefined,
    query: Record<string, string>,
  ): void {
    const object = name ? this.get(resource, namespace, name) : undefined;
    if (!name || !object) {
      this.#send(
        res,
        404,
        status(404, 'NotFound', `${resource} "${name}" not found`, { name, kind: resource }),
      );
      return;
    }
    const uid = body?.preconditions?.uid;
    if (typeof uid === 'string' && uid !== object.metadata.uid) {
      this.#send(
        res,
        409,
        status(
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${resource} "${name}": Precondition failed: UID in precondition: ${uid}, UID in object meta: ${object.metadata.uid}`,
          { name, kind: resource },
        ),
      );
      return;
    }
    const grace = Number(body?.gracePeriodSeconds ?? query.gracePeriodSeconds ?? 30);
    if (resource === 'pods' && grace > 0) {
      // Terminating: deletionTimestamp now, gone once the kubelet has stopped it (next tick here).
      this.#update(resource, namespace, name, (pod) => {
        pod.metadata.deletionTimestamp = new Date(Date.now() + grace * 1000).toISOString();
        pod.metadata.deletionGracePeriodSeconds = grace;
      });
      this.#send(res, 200, this.get(resource, namespace, name)!);
      setImmediate(() => this.#remove(resource, namespace, name));
      return;
    }
    this.#remove(resource, namespace, name);
    this.#send(
      res,
      200,
      resource === 'pods'
        ? object
        : {
            kind: 'Status',
            apiVersion: 'v1',
            metadata: {},
            status: 'Success',
            details: { name, kind: resource, uid: object.metadata.uid },
          },
    );
  }

  #watch(res: ServerResponse, resource: Resource, namespace: string, query: Record<string, string>): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const watcher: Watcher = {
      resource,
      namespace,
      labelSelector: query.labelSelector ?? '',
      fieldSelector: query.fieldSelector ?? '',
      bookmarks: query.allowWatchBookmarks === 'true',
      res,
    };
    const from = query.resourceVersion;
    if (from === undefined || from === '' || from === '0') {
      for (const object of this.list(resource, namespace))
        this.#deliver(watcher, { rv: 0, type: 'ADDED', resource, object });
    } else {
      const version = Number(from);
      if (!Number.isInteger(version) || version < this.#compactedTo) {
        res.end(
          `${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${from} (${this.#compactedTo})`) })}\n`,
        );
        return;
      }
      for (const entry of this.#history) if (entry.rv > version) this.#deliver(watcher, entry);
    }
    this.#watchers.add(watcher);
    const seconds = Number(query.timeoutSeconds ?? 0);
    const timer =
      seconds > 0
        ? setTimeout(() => {
            if (!this.#stalled.has(watcher)) res.end();
          }, seconds * 1000)
        : undefined;
    res.on('close', () => {
      clearTimeout(timer);
      this.#watchers.delete(watcher);
      this.#stalled.delete(watcher);
    });
  }
}
