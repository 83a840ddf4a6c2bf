// The Kubernetes spawner (KubeSpawner, with the seed's DynamicKubeSpawner built in): a pod per
// server — and its PVC and service when asked — created through the API, watched through the
// shared pod reflector, its events reported as spawn progress, deleted on stop. Its state (pod
// name, namespace, DNS name, PVC) is what another hub process needs to re-attach.
import { request as httpRequest } from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from '@seahorse/runtime';
import { chooseProfile, parseProfiles } from '../profiles.ts';
import { corePath, type KubeClient, type KubeObject } from './kube-client.ts';
import {
  KubeConflictError,
  KubeConnectionError,
  KubeForbiddenError,
  KubeNotFoundError,
  KubeUnauthorizedError,
} from './kube-errors.ts';
import {
  applyKubeOverride,
  checkKubeTrait,
  isServersObject,
  type KubeCallables,
  type KubeNames,
  type KubeSpawnerView,
  KubeTraitError,
  type KubeTraits,
  kubeNames,
  podManifest,
  pvcManifest,
  serviceManifest,
} from './kube-objects.ts';
import { type PodReflector, Reflector, type ReflectorChange } from './pod-reflector.ts';
import type { JsonObject, Spawner, SpawnerContext } from './spawner.ts';
import { SpawnExitedError, SpawnStateError, SpawnTimeoutError } from './spawner-errors.ts';

/** What every server of one hub process shares: the API client and the one pod watch. */
export interface KubeShared {
  client: KubeClient;
  reflector: PodReflector;
}

interface PodStatus {
  phase?: string;
  podIP?: string;
  reason?: string;
  message?: string;
  containerStatuses?: Array<{
    name?: string;
    ready?: boolean;
    state?: {
      terminated?: { exitCode?: number; reason?: string; message?: string };
      waiting?: { reason?: string; message?: string };
    };
  }>;
}

export interface Pod extends KubeObject {
  spec?: { containers?: Array<{ name?: string; ports?: Array<{ name?: string; containerPort?: number }> }> };
  status?: PodStatus;
}

interface KubeEvent extends KubeObject {
  involvedObject?: { uid?: string; name?: string };
  type?: string;
  reason?: string;
  message?: string;
  lastTimestamp?: string | null;
  eventTime?: string | null;
}

/** KubeSpawner's is_pod_running: Running, with an IP, not being deleted, every container ready. */
export function isPodRunning(pod: Pod | undefined): boolean {
  return (
    pod !== undefined &&
    pod.status?.phase === 'Running' &&
    typeof pod.status.podIP === 'string' &&
    isIP(pod.status.podIP) !== 0 &&
    pod.metadata?.deletionTimestamp === undefined &&
    containerStatuses(pod).every((status) => status.ready === true)
  );
}

/** The pod's container statuses, only the entries that are objects (the watch is not trusted). */
function containerStatuses(pod: Pod): NonNullable<PodStatus['containerStatuses']> {
  const statuses: unknown = pod.status?.containerStatuses;
  if (!Array.isArray(statuses)) return [];
  return statuses.filter((status) => typeof status === 'object' && status !== null);
}

function notebookTerminated(pod: Pod): { exitCode?: number; reason?: string; message?: string } | undefined {
  const terminated: unknown = containerStatuses(pod).find((status) => status.name === 'notebook')?.state
    ?.terminated;
  if (typeof terminated !== 'object' || terminated === null) return undefined;
  const { exitCode, reason, message } = terminated as Record<string, unknown>;
  return {
    ...(typeof exitCode === 'number' && Number.isInteger(exitCode) ? { exitCode } : {}),
    ...(typeof reason === 'string' ? { reason } : {}),
    ...(typeof message === 'string' ? { message } : {}),
  };
}

export function createKubeSpawner(
  context: SpawnerContext,
  shared: KubeShared,
  traits: KubeTraits,
  callables: KubeCallables = {},
): Spawner {
  return new KubeSpawner(context, shared, traits, callables);
}

/** A callable trait's answer as the trait's type, or an error naming the callable. */
function checkedAnswer(name: string, value: unknown): unknown {
  try {
    return checkKubeTrait(name, value);
  } catch (error) {
    throw new KubeTraitError(`KubeSpawner.${name}(spawner): ${(error as Error).message}`);
  }
}

class KubeSpawner implements Spawner {
  readonly #context: SpawnerContext;
  readonly #shared: KubeShared;
  #traits: KubeTraits;
  readonly #callables: KubeCallables;
  readonly #log: Logger;
  #names: KubeNames | undefined;
  #pvcExists = false;
  /** The PVC an earlier start created or found (KubeSpawner's remember_pvc_name); kept across stops. */
  #rememberedPvc: string | undefined;
  #starting = false;
  /** Set by stop(): a start still running (a slow callable, a retried create) must not go on to create the pod. */
  #stopRequested = false;
  #lastProgress = 0;
  /**
   * Whether #names came from a saved state under a name the templates do not give: until the
   * pod read from the API carries this server's labels, it is not polled, adopted or deleted.
   */
  #namesUnchecked = false;
  /** The uid of the pod whose labels were checked: its delete is conditional on it. */
  #checkedUid: string | undefined;
  /** Whether #rememberedPvc came from a saved state under a name the templates do not give. */
  #pvcUnchecked = false;

  constructor(context: SpawnerContext, shared: KubeShared, traits: KubeTraits, callables: KubeCallables) {
    this.#context = context;
    this.#shared = shared;
    this.#traits = traits;
    this.#callables = callables;
    this.#log = context.log.child({ user: context.spec.user.name, server: context.spec.serverName });
    const state = context.state;
    if (state && typeof state.pod_name === 'string' && typeof state.namespace === 'string') {
      this.#names = {
        podName: state.pod_name,
        namespace: state.namespace,
        dnsName: typeof state.dns_name === 'string' ? state.dns_name : '',
        pvcName: typeof state.pvc_name === 'string' ? state.pvc_name : '',
      };
      this.#pvcExists = typeof state.pvc_name === 'string';
    }
    if (state && typeof state.pvc_name === 'string' && state.pvc_name) this.#rememberedPvc = state.pvc_name;
    // A state is data in the database, not proof: a name other than the templates' is checked
    // against the object's labels before the hub acts on it (#checkedNames, #checkedPvc).
    const expected = this.#expectedNames();
    if (this.#names) {
      this.#namesUnchecked =
        this.#names.podName !== expected?.podName || this.#names.namespace !== expected.namespace;
    }
    this.#pvcUnchecked = this.#rememberedPvc !== undefined && this.#rememberedPvc !== expected?.pvcName;
  }

  /** The names this server's templates give with the traits bound now, or undefined when they cannot. */
  #expectedNames(): KubeNames | undefined {
    try {
      return kubeNames(this.#context.spec, this.#traits);
    } catch {
      return undefined;
    }
  }

  /**
   * The names to poll and delete: the state's when they are the templates', or when the pod they
   * name carries this server's labels (a pod_name_template changed since); otherwise — another
   * user's pod, or none at all — the templates' own, with a log line.
   */
  async #checkedNames(fresh = false): Promise<KubeNames | undefined> {
    const names = this.#names;
    if (!names || !this.#namesUnchecked) return names;
    const expected = this.#expectedNames();
    // Another namespace is another hub's (or nobody's) business: not even read.
    const pod = names.namespace === expected?.namespace ? await this.#pod(names, fresh) : undefined;
    const { spec } = this.#context;
    if (pod && isServersObject(pod, spec, this.#traits, 'pod')) {
      this.#namesUnchecked = false;
      this.#checkedUid = typeof pod.metadata?.uid === 'string' ? pod.metadata.uid : undefined;
      return names;
    }
    const fields = { pod: `${names.namespace}/${names.podName}`, expected: expected?.podName };
    if (names.namespace !== expected?.namespace) {
      this.#log.warn(
        { ...fields, namespace: expected?.namespace },
        "refusing the pod the saved state names: it is in another namespace than this hub's; it is neither polled, adopted nor deleted",
      );
    } else if (pod) {
      this.#log.warn(
        { ...fields, labels: pod.metadata?.labels },
        "refusing the pod the saved state names: its labels are not this server's; it is neither polled, adopted nor deleted",
      );
    } else this.#log.info(fields, 'the pod the saved state names does not exist; using the templates’ name');
    this.#namesUnchecked = false;
    this.#checkedUid = undefined;
    this.#names = expected && { ...expected, pvcName: names.pvcName };
    return this.#names;
  }

  /**
   * The pod checked (or made) under #names was replaced by another of its name: that one's
   * labels decide (`fresh`: read from the API, not the watch). When they are not this server's
   * and the templates give that same name, nothing of this server's is left to poll or delete.
   */
  async #recheck(fresh: boolean): Promise<KubeNames | undefined> {
    const before = this.#names;
    this.#namesUnchecked = true;
    this.#checkedUid = undefined;
    const names = await this.#checkedNames(fresh);
    if (!names || this.#checkedUid !== undefined) return names;
    if (before && names.podName === before.podName && names.namespace === before.namespace) {
      this.#names = undefined;
      return undefined;
    }
    return names;
  }

  /**
   * The PVC remembered from a saved state, when it is the templates' name (`expected`) or a
   * claim carrying this user's labels; otherwise (another user's claim, none, or one the hub may
   * not read) undefined, with a log line, and the templates' name is used instead.
   */
  async #checkedPvc(expected: string, namespace: string): Promise<string | undefined> {
    const pvc = this.#rememberedPvc;
    if (!pvc || !this.#pvcUnchecked || pvc === expected) return pvc;
    let claim: KubeObject | undefined;
    let why = "its labels are not this user's";
    try {
      claim = await this.#client.get(corePath(namespace, 'persistentvolumeclaims', pvc));
    } catch (error) {
      if (error instanceof KubeNotFoundError) why = 'it does not exist';
      else if (error instanceof KubeForbiddenError)
        why = 'the hub may not read it (grant get on persistentvolumeclaims)';
      else throw error;
    }
    this.#pvcUnchecked = false;
    if (claim && isServersObject(claim, this.#context.spec, this.#traits, 'pvc')) return pvc;
    this.#log.warn(
      { pvc: `${namespace}/${pvc}`, expected, labels: claim?.metadata?.labels },
      `refusing the PVC the saved state names: ${why}; using the templates’ name`,
    );
    this.#rememberedPvc = undefined;
    this.#pvcExists = false;
    if (this.#names) this.#names = { ...this.#names, pvcName: expected };
    return undefined;
  }

  /** What survives a stop (KubeSpawner's clear_state, then get_state): the PVC's name. */
  stoppedState(): JsonObject {
    return this.#rememberedPvc && this.#traits.remember_pvc_name ? { pvc_name: this.#rememberedPvc } : {};
  }

  /**
   * KubeSpawner's delete_forever, called when the user (or this named server) is deleted: the
   * PVC goes too (delete_pvc), unless a named server shares the default server's PVC.
   */
  async deleteForever(): Promise<void> {
    const { spec } = this.#context;
    const traits = this.#traits;
    const names = kubeNames(spec, traits);
    const pvc =
      (traits.remember_pvc_name && (await this.#checkedPvc(names.pvcName, names.namespace))) || names.pvcName;
    if (!traits.delete_pvc) {
      this.#log.info({ pvc }, 'delete_pvc is false: the PVC stays');
      return;
    }
    if (spec.serverName && !/\{[a-z_]*server[a-z_]*\}/.test(traits.pvc_name_template)) {
      this.#log.info({ pvc }, "a named server shares the default server's PVC: it stays");
      return;
    }
    try {
      await this.#client.delete(corePath(names.namespace, 'persistentvolumeclaims', pvc));
      this.#log.info({ pvc }, 'PVC deleted');
    } catch (error) {
      if (!(error instanceof KubeNotFoundError)) throw error;
    }
  }

  get spawnTimeoutMs(): number {
    return (this.#traits.start_timeout + this.#traits.http_timeout) * 1000;
  }

  state(): JsonObject {
    const names = this.#names;
    if (!names) return {};
    const state: JsonObject = {
      pod_name: names.podName,
      namespace: names.namespace,
      dns_name: names.dnsName,
    };
    if (this.#pvcExists) state.pvc_name = names.pvcName;
    return state;
  }

  get #client(): KubeClient {
    return this.#shared.client;
  }

  /** The pod as the shared watch sees it, or as the API says when that watch is not ours to read. */
  async #pod(names: KubeNames, fresh = false): Promise<Pod | undefined> {
    const reflector = this.#shared.reflector;
    if (!fresh && reflector.synced && reflector.namespace === names.namespace) {
      return reflector.items.get(names.podName) as Pod | undefined;
    }
    try {
      return await this.#client.get<Pod>(corePath(names.namespace, 'pods', names.podName));
    } catch (error) {
      if (error instanceof KubeNotFoundError) return undefined;
      throw error;
    }
  }

  async poll(): Promise<number | null> {
    let names = await this.#checkedNames();
    if (!names) return 1;
    let pod = await this.#pod(names);
    if (pod && this.#checkedUid !== undefined && pod.metadata?.uid !== this.#checkedUid) {
      // Not the pod whose labels were checked (or that this spawner made): another of its name
      // took its place.
      names = await this.#recheck(false);
      if (!names) return 1;
      pod = await this.#pod(names);
    }
    if (!pod) return 1;
    if (pod.status?.phase === 'Pending') return null;
    if (!Array.isArray(pod.status?.containerStatuses)) return 1;
    const terminated = notebookTerminated(pod);
    if (terminated) {
      if (this.#traits.delete_stopped_pods) await this.stop(true);
      return terminated.exitCode ?? 1;
    }
    return null;
  }

  async start(): Promise<string> {
    if (this.#starting) throw new SpawnStateError('the server is already starting; wait for it or stop it');
    this.#starting = true;
    this.#stopRequested = false;
    try {
      return await this.#start();
    } finally {
      this.#starting = false;
    }
  }

  /** KubeSpawner's `spawner` for the callables, with the names these traits give. */
  #view(traits: KubeTraits): KubeSpawnerView {
    const { spec } = this.#context;
    const names = kubeNames(spec, traits);
    return {
      user: { ...spec.user, groups: [...spec.user.groups] },
      name: spec.serverName,
      user_options: structuredClone(spec.userOptions),
      namespace: names.namespace,
      pod_name: names.podName,
      pvc_name: names.pvcName,
    };
  }

  /** The callables' answers (profile_list, uid, gid, fs_gid) applied to the traits of this start. */
  async #resolveTraits(): Promise<KubeTraits> {
    const callables = this.#callables;
    let traits = this.#traits;
    if (callables.profile_list) {
      const profiles = parseProfiles(
        'KubeSpawner.profile_list(spawner)',
        await callables.profile_list(this.#view(traits)),
      );
      const profile = chooseProfile(profiles, this.#context.spec.userOptions.profile);
      if (profile) {
        try {
          traits = applyKubeOverride(traits, profile.override);
        } catch (error) {
          throw new KubeTraitError(
            `KubeSpawner.profile_list(spawner) '${profile.slug}': ${(error as Error).message}`,
          );
        }
      }
    }
    for (const name of ['uid', 'gid', 'fs_gid'] as const) {
      const callable = callables[name];
      if (callable) {
        const value = checkedAnswer(name, await callable(this.#view(traits))) as number | null;
        traits = { ...traits, [name]: value };
      }
    }
    this.#traits = traits;
    return traits;
  }

  async #start(): Promise<string> {
    const { spec } = this.#context;
    this.#lastProgress = 0;
    const progress = (event: { progress: number; message: string }) =>
      this.#progress(event.progress, event.message);
    // A stop while this start awaited (the hub's spawn timeout, a user's stop) ends it: the pod
    // it would create next would run with nobody to delete it.
    const stillWanted = () => {
      if (this.#stopRequested) throw new SpawnStateError('the server was stopped while it was starting');
    };
    const traits = await this.#resolveTraits();
    stillWanted();
    const deadline = Date.now() + traits.start_timeout * 1000;
    // A PVC name once established stays (KubeSpawner's remember_pvc_name).
    const names = kubeNames(spec, traits);
    if (traits.remember_pvc_name) await this.#checkedPvc(names.pvcName, names.namespace);
    const previous = this.#names;
    if (traits.remember_pvc_name) {
      if (previous?.pvcName && this.#pvcExists) names.pvcName = previous.pvcName;
      else if (this.#rememberedPvc) {
        names.pvcName = this.#rememberedPvc;
        this.#pvcExists = true;
      }
    }
    this.#names = names;
    this.#namesUnchecked = false;
    this.#checkedUid = undefined;
    const input = { spec, traits, names };
    let pod = podManifest(input);
    if (this.#callables.modify_pod_hook) {
      const modified: unknown = await this.#callables.modify_pod_hook(
        this.#view(traits),
        structuredClone(pod),
      );
      if (
        typeof modified !== 'object' ||
        modified === null ||
        Array.isArray(modified) ||
        (modified as JsonObject).kind !== 'Pod'
      ) {
        throw new KubeTraitError(
          `KubeSpawner.modify_pod_hook(spawner, pod) must return the pod (an object of kind Pod), got ${JSON.stringify(modified)?.slice(0, 80)}`,
        );
      }
      pod = modified as JsonObject;
      // The pod's name is the one its state names and the watch looks for.
      if ((pod.metadata as JsonObject | undefined)?.name !== names.podName) {
        throw new KubeTraitError(
          `KubeSpawner.modify_pod_hook(spawner, pod) must keep the pod's name ${names.podName}`,
        );
      }
    }
    const ref = `${names.namespace}/${names.podName}`;
    // The pod's name in the database before the pod exists: should this hub die right after
    // the create, the replica taking over the spawn knows which pod to delete.
    await this.#context.persist?.();
    stillWanted();
    const watcher = this.#watcher(names);
    let created: Pod | undefined;
    try {
      if (traits.storage_pvc_ensure && !this.#pvcExists) {
        progress({ progress: 5, message: `Creating PVC ${names.pvcName}` });
        try {
          await this.#client.create(corePath(names.namespace, 'persistentvolumeclaims'), pvcManifest(input));
          this.#log.info({ pvc: names.pvcName }, 'PVC created');
        } catch (error) {
          if (!(error instanceof KubeConflictError)) throw error;
          this.#log.info({ pvc: names.pvcName }, 'PVC exists; using it');
        }
        this.#pvcExists = true;
        this.#rememberedPvc = names.pvcName;
      }
      stillWanted();
      progress({ progress: 10, message: `Creating pod ${ref}` });
      created = await this.#createPod(names, pod, watcher.reflector, deadline);
      stillWanted();
      const uid = created.metadata?.uid ?? '';
      // The pod this start made: a stop (this start's own, should it fail) deletes only it.
      this.#checkedUid = uid || undefined;
      this.#log.info({ pod: ref, uid }, 'pod created');
      const events = traits.events_enabled ? this.#followEvents(names, uid) : undefined;
      try {
        if (traits.services_enabled) {
          progress({ progress: 20, message: `Creating service ${names.podName}` });
          await this.#createService(names, serviceManifest(input, { name: names.podName, uid }));
        }
        const running = await this.#waitRunning(watcher.reflector, names, deadline, uid);
        const host = traits.services_enabled ? names.dnsName : (running.status?.podIP ?? '');
        const port = podPort(running) ?? traits.port;
        const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
        progress({ progress: 90, message: `Pod ${ref} is running; waiting for the server at ${url}` });
        await waitForHttp(
          `${url}${spec.servicePrefix}`,
          Math.min(deadline + traits.http_timeout * 1000, Date.now() + traits.http_timeout * 1000),
          traits,
        );
        this.#log.info({ pod: ref, url }, 'server answered HTTP');
        return url;
      } finally {
        await events?.stop();
      }
    } catch (error) {
      // Nothing to delete when the pod was never created (a 403 or 422 on the create).
      if (created) {
        await this.stop(true).catch((stopError: unknown) =>
          this.#log.warn({ err: stopError, pod: ref }, 'deleting the pod after a failed start failed'),
        );
      }
      throw error;
    } finally {
      await watcher.stop();
    }
  }

  /** Reports progress that never goes back (pod events may arrive after a later step). */
  #progress(value: number, message: string): void {
    this.#lastProgress = Math.max(this.#lastProgress, Math.floor(value));
    this.#context.progress({ progress: this.#lastProgress, message });
  }

  /**
   * The shared pod watch when it runs on this replica, else a watch of this one pod for as long
   * as the start (or stop) lasts.
   */
  #watcher(names: KubeNames): { reflector: Reflector; stop(): Promise<void> } {
    const shared = this.#shared.reflector;
    if (shared.running && shared.namespace === names.namespace) {
      return { reflector: shared, stop: async () => undefined };
    }
    const own = new Reflector(
      this.#client,
      { path: corePath(names.namespace, 'pods'), fieldSelector: `metadata.name=${names.podName}` },
      this.#log.child({ reflector: 'pod' }),
    );
    own.start();
    return { reflector: own, stop: () => own.stop() };
  }

  /**
   * Creates the pod; a leftover of the same name (409) is deleted first, as KubeSpawner does. An
   * answer that is not this Pod (garbage, truncated, another kind or name) or none at all leaves
   * the create uncertain — the apiserver may have made the pod — so the pod is deleted by name
   * before the start fails: no pod runs on that nobody knows of.
   */
  async #createPod(names: KubeNames, pod: JsonObject, watch: Reflector, deadline: number): Promise<Pod> {
    const path = corePath(names.namespace, 'pods');
    for (let attempt = 1; ; attempt++) {
      let answer: Pod;
      try {
        answer = await this.#client.create<Pod>(path, pod);
      } catch (error) {
        if (error instanceof KubeConnectionError && !refusedBeforeSending(error)) {
          return this.#uncertainCreate(names, watch, deadline, error.message, error);
        }
        if (!(error instanceof KubeConflictError) || attempt >= 4) throw error;
        this.#log.warn({ pod: names.podName, attempt }, 'a pod of this name exists; deleting it first');
        this.#progress(10, `Deleting the old pod ${names.podName}`);
        await this.#deletePod(names, 0);
        await this.#waitGone(watch, names, deadline);
        continue;
      }
      const kind: unknown = answer.kind;
      const name: unknown = answer.metadata?.name;
      if (kind !== 'Pod' || name !== names.podName) {
        const got = `kind ${JSON.stringify(kind ?? null)?.slice(0, 40)}, name ${JSON.stringify(name ?? null)?.slice(0, 80)}`;
        return this.#uncertainCreate(
          names,
          watch,
          deadline,
          `POST ${path}: the answer is not the pod (${got})`,
        );
      }
      return answer;
    }
  }

  /** Deletes a pod whose create may or may not have happened, then fails the start saying so. */
  async #uncertainCreate(
    names: KubeNames,
    watch: Reflector,
    deadline: number,
    why: string,
    cause?: unknown,
  ): Promise<never> {
    const ref = `${names.namespace}/${names.podName}`;
    this.#log.warn({ pod: ref, why }, 'the pod create is uncertain: deleting the pod by name');
    let outcome = 'the pod, if it was made, has been deleted';
    const until = Math.min(deadline, Date.now() + 30_000);
    try {
      if (!(await this.#deletePod(names, 0))) {
        // No pod yet — but the apiserver may still be carrying the create out (a slow admission
        // webhook outlasting the client's timeout): watch for it, and delete it should it come.
        this.#progress(10, `Waiting to see whether the apiserver still makes pod ${ref}`);
        const appeared = await waitOn(watch, names.podName, until, (pod) => (pod ? true : undefined));
        if (appeared instanceof Error) throw appeared;
        if (appeared === true) {
          this.#log.warn(
            { pod: ref },
            'the pod of the uncertain create appeared after its delete: deleting it',
          );
          await this.#deletePod(names, 0);
          outcome = 'the pod, made after its delete, has been deleted';
        }
      }
      if (!(await this.#waitGone(watch, names, until))) {
        outcome = 'the pod is being deleted';
      }
    } catch (error) {
      this.#log.error({ err: error, pod: ref }, 'deleting the pod of an uncertain create failed');
      outcome = `deleting the pod failed (${(error as Error).message}); the hub deletes it when it stops the server`;
    }
    throw new KubeConnectionError(
      `the apiserver's answer to the create of pod ${ref} was not a Pod (${why}); ${outcome}`,
      ...(cause === undefined ? [] : [{ cause }]),
    );
  }

  async #createService(names: KubeNames, service: JsonObject): Promise<void> {
    const path = corePath(names.namespace, 'services');
    try {
      await this.#client.create(path, service);
    } catch (error) {
      if (!(error instanceof KubeConflictError)) throw error;
      // A service left by an earlier pod of this name (its owner is gone): replace it.
      await this.#client
        .delete(corePath(names.namespace, 'services', names.podName))
        .catch((deleteError: unknown) => {
          if (!(deleteError instanceof KubeNotFoundError)) throw deleteError;
        });
      await this.#client.create(path, service);
    }
  }

  /** Pod events (Scheduled, Pulling, Started, ...) of this pod as progress lines, as KubeSpawner's progress(). */
  #followEvents(names: KubeNames, uid: string): Reflector {
    const events = new Reflector(
      this.#client,
      {
        path: corePath(names.namespace, 'events'),
        fieldSelector: `involvedObject.kind=Pod,involvedObject.name=${names.podName}`,
      },
      this.#log.child({ reflector: 'events' }),
    );
    let progress = 20;
    const seen = new Set<string>();
    events.on('change', (change: ReflectorChange<KubeEvent>) => {
      const event = change.object;
      if (change.type === 'DELETED' || (uid && event.involvedObject?.uid !== uid)) return;
      const key = `${event.metadata?.uid ?? ''}/${event.metadata?.resourceVersion ?? ''}`;
      if (seen.has(key)) return;
      seen.add(key);
      progress += (90 - progress) / 3;
      const when = event.lastTimestamp ?? event.eventTime ?? '';
      this.#progress(
        progress,
        `${when} [${event.type ?? 'Normal'}] ${event.message ?? event.reason ?? ''}`.trim(),
      );
    });
    events.start();
    return events;
  }

  async #waitRunning(watch: Reflector, names: KubeNames, deadline: number, uid: string): Promise<Pod> {
    const ref = `${names.namespace}/${names.podName}`;
    const verdict = (pod: Pod | undefined): Pod | Error | undefined => {
      if (!pod) return undefined;
      // Another pod of this name (this one deleted and another made, the deletion missed by
      // the watch): not this server's.
      if (uid && typeof pod.metadata?.uid === 'string' && pod.metadata.uid !== uid) {
        return new SpawnStateError(
          `pod ${ref} was replaced by another pod of its name while it was starting`,
        );
      }
      if (isPodRunning(pod)) return pod;
      const terminated = notebookTerminated(pod);
      if (terminated || pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded') {
        const why =
          terminated?.message ??
          terminated?.reason ??
          pod.status?.message ??
          pod.status?.reason ??
          pod.status?.phase ??
          '';
        return new SpawnExitedError(terminated?.exitCode ?? 1, null, why ? [`pod ${ref}: ${why}`] : []);
      }
      return undefined;
    };
    const result = await waitOn<Pod | Error>(watch, names.podName, deadline, (pod, deleted) =>
      deleted ? new SpawnStateError(`pod ${ref} was deleted while it was starting`) : verdict(pod),
    );
    if (result === undefined) {
      throw new SpawnTimeoutError('start_timeout', this.#traits.start_timeout, ref, []);
    }
    if (result instanceof Error) throw result;
    return result;
  }

  async #waitGone(watch: Reflector, names: KubeNames, deadline: number): Promise<boolean> {
    const gone = await waitOn<true | Error>(
      watch,
      names.podName,
      deadline,
      (pod, deleted) => (deleted || !pod ? true : undefined),
      true,
    );
    if (gone instanceof Error) throw gone;
    return gone === true;
  }

  /** Deletes the pod; false when there was none (404). */
  async #deletePod(names: KubeNames, graceSeconds: number, uid?: string): Promise<boolean> {
    try {
      await this.#client.delete(corePath(names.namespace, 'pods', names.podName), {
        gracePeriodSeconds: graceSeconds,
        ...(uid ? { preconditions: { uid } } : {}),
      });
      this.#log.info({ pod: `${names.namespace}/${names.podName}`, graceSeconds }, 'pod deleted');
      return true;
    } catch (error) {
      if (!(error instanceof KubeNotFoundError)) throw error;
      return false;
    }
  }

  async stop(now = false): Promise<void> {
    this.#stopRequested = true;
    let names = await this.#checkedNames();
    if (!names) return;
    const grace = now ? 0 : this.#traits.delete_grace_period;
    try {
      await this.#deletePod(names, grace, this.#checkedUid);
    } catch (error) {
      if (!(error instanceof KubeConflictError) || this.#checkedUid === undefined) throw error;
      // The pod whose labels were checked is gone and another of its name is in its place (the
      // delete's uid precondition failed): that one's labels are read again, from the API.
      this.#log.warn(
        { pod: `${names.namespace}/${names.podName}`, uid: this.#checkedUid },
        'the pod the saved state names was replaced since its labels were checked; checking the new one',
      );
      names = await this.#recheck(true);
      if (!names) return;
      await this.#deletePod(names, grace, this.#checkedUid);
    }
    const watcher = this.#watcher(names);
    try {
      const deadline = Date.now() + this.#traits.start_timeout * 1000;
      if (!(await this.#waitGone(watcher.reflector, names, deadline))) {
        this.#log.warn({ pod: names.podName }, 'the pod is still terminating');
      }
    } finally {
      await watcher.stop();
    }
  }
}

/**
 * Waits until `decide` returns something for the pod `name` in the reflector's copy (checked
 * after its first list and on every change), or the deadline passes (undefined). A watch the
 * apiserver refuses (401, 403) ends the wait with that error at once: retrying will not help.
 */
function waitOn<T>(
  watch: Reflector,
  name: string,
  deadline: number,
  decide: (pod: Pod | undefined, deleted: boolean) => T | undefined,
  decideOnAbsence = false,
): Promise<T | Error | undefined> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (value: T | Error | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      watch.off('change', onChange);
      watch.off('synced', check);
      watch.off('failure', onFailure);
      resolve(value);
    };
    const onFailure = (error: Error) => {
      if (error instanceof KubeForbiddenError || error instanceof KubeUnauthorizedError) finish(error);
    };
    const check = () => {
      const pod = watch.items.get(name) as Pod | undefined;
      if (!pod && !decideOnAbsence) return;
      const value = decide(pod, false);
      if (value !== undefined) finish(value);
    };
    const onChange = (change: ReflectorChange<Pod>) => {
      if (change.object.metadata?.name !== name) return;
      const value = decide(change.type === 'DELETED' ? undefined : change.object, change.type === 'DELETED');
      if (value !== undefined) finish(value);
    };
    const timer = setTimeout(() => finish(undefined), Math.max(0, deadline - Date.now()));
    watch.on('change', onChange);
    watch.on('synced', check);
    watch.on('failure', onFailure);
    if (watch.lastFailure) onFailure(watch.lastFailure);
    if (watch.synced) check();
  });
}

/** A connection refused (or a name not resolved) before the request left: the apiserver did nothing. */
function refusedBeforeSending(error: KubeConnectionError): boolean {
  const code = (error.cause as NodeJS.ErrnoException | undefined)?.code;
  return error.beforeAnswer && (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN');
}

function podPort(pod: Pod): number | undefined {
  const containers: unknown = pod.spec?.containers;
  for (const container of Array.isArray(containers) ? containers : []) {
    const ports: unknown = container?.ports;
    for (const port of Array.isArray(ports) ? ports : []) {
      const number: unknown = port?.containerPort;
      if (port?.name === 'notebook-port' && Number.isInteger(number) && (number as number) > 0) {
        return number as number;
      }
    }
  }
  return undefined;
}

/** JupyterHub's wait_up: any answer below 500 from the server's prefix, within http_timeout. */
async function waitForHttp(url: string, deadline: number, traits: KubeTraits): Promise<void> {
  let interval = 20;
  for (;;) {
    const status = await httpStatus(url, Math.max(1, Math.min(5000, deadline - Date.now())));
    if (status !== undefined && status < 500) return;
    if (Date.now() >= deadline) throw new SpawnTimeoutError('http_timeout', traits.http_timeout, url, []);
    await new Promise((resolve) =>
      setTimeout(resolve, Math.min(interval, Math.max(0, deadline - Date.now()))),
    );
    interval = Math.min(interval * 1.5, 1000);
  }
}

function httpStatus(url: string, timeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const request = httpRequest(url, { method: 'GET', timeout: timeoutMs }, (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(undefined));
    request.end();
  });
}
