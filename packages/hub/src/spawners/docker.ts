// The Docker spawner (DockerSpawner's config and behaviour): a container per server, named from
// name_template, with the user's volumes ({username}/{servername} templated), created and started
// through the Engine API, polled by inspect, stopped (and removed when `remove`). Its state — the
// container's id and name — is what another hub process needs to re-attach.

import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import type { Logger } from '@seahorse/runtime';
import type { ContainerInspect, DockerClient, PullProgress } from './docker-client.ts';
import { DockerApiError, DockerConfigError, DockerImageError, DockerPortError } from './docker-errors.ts';
import {
  checkHostPaths,
  createBodyFromKwargs,
  DockerTraitError,
  type DockerTraits,
  hostConfigFromKwargs,
  imageForSpawn,
  shellSplit,
} from './docker-options.ts';
import { hostUrl, serverEnvironment } from './environment.ts';
import type { JsonObject, JsonValue, Spawner, SpawnerContext } from './spawner.ts';
import { SpawnExitedError, SpawnStateError, SpawnTimeoutError } from './spawner-errors.ts';
import { escapeName, formatTemplate, type TemplateNamespace, templateNamespace } from './templating.ts';

export interface DockerSpawnerOptions extends DockerTraits {
  /** Spawner.cmd when set; null runs the image's own CMD (DockerSpawner's default). */
  cmd: string[] | null;
  args: string[];
  environment: Record<string, string>;
  startTimeoutMs: number;
  httpTimeoutMs: number;
  defaultUrl?: string;
  notebookDir?: string;
  debug?: boolean;
  /** Spawner.mem_limit in bytes. */
  memLimit: number | null;
  /** Spawner.cpu_limit in cores. */
  cpuLimit: number | null;
  /** Spawner.ip when set; else 0.0.0.0 in the container, or host_ip on the host network. */
  ip: string | null;
  /** How long stop() lets the server end after SIGTERM (docker stop -t); 10 s, Docker's default. */
  stopTimeoutSeconds?: number;
}

const containerPort = 8888;
const keptLines = 20;

/** Labels the hub puts on its containers, so a person (or a cleanup) can find them. */
export const containerLabels = { user: 'org.jupyter.hub.user', server: 'org.jupyter.hub.server' } as const;

export function createDockerSpawner(
  context: SpawnerContext,
  client: DockerClient,
  options: DockerSpawnerOptions,
): Spawner {
  return new DockerSpawner(context, client, options);
}

/** DockerSpawner's template_namespace: {username}, {servername}, {prefix}, {imagename}, {raw_username}, … */
export function dockerTemplateNamespace(
  spec: { user: { name: string; admin: boolean }; serverName: string; servicePrefix?: string },
  options: Pick<DockerTraits, 'prefix' | 'image'>,
): TemplateNamespace {
  const base = templateNamespace({
    user: spec.user,
    serverName: spec.serverName,
    servicePrefix: spec.servicePrefix,
  });
  return {
    ...base,
    // DockerSpawner lower-cases a server name before escaping it (a user name it escapes as it is).
    servername: escapeName(spec.serverName.toLowerCase()),
    safe_username: base.username!,
    raw_username: spec.user.name,
    raw_servername: spec.serverName,
    prefix: options.prefix,
    imagename: options.image.replace(/[/:]/g, '-'),
  };
}

/** The container's name: name_template, or DockerSpawner's default for a default or named server. */
export function containerName(
  spec: { user: { name: string; admin: boolean }; serverName: string },
  options: Pick<DockerTraits, 'prefix' | 'image' | 'name_template'>,
): string {
  const template =
    options.name_template || (spec.serverName ? '{prefix}-{username}--{servername}' : '{prefix}-{username}');
  const name = formatTemplate(template, dockerTemplateNamespace(spec, options));
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/.test(name)) {
    throw new DockerConfigError(
      `DockerSpawner.name_template ${JSON.stringify(template)} renders ${JSON.stringify(name)}, which Docker does not accept as a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)`,
    );
  }
  return name;
}

/** `volumes` and `read_only_volumes` as the Engine's Binds ('source:target:mode'), templates rendered. */
export function volumeBinds(
  options: Pick<DockerTraits, 'volumes' | 'read_only_volumes'>,
  namespace: TemplateNamespace,
): string[] {
  const binds: string[] = [];
  const add = (source: string, target: string, mode: string) => {
    const from = formatTemplate(source, namespace);
    const to = formatTemplate(target, namespace);
    // A named volume's name, or an absolute host path; never something Docker would read as options.
    // A '.' or '..' segment (a raw {unescaped_username} of '..') would climb out of the directory.
    const climbs = (path: string) => path.split('/').some((part) => part === '..' || part === '.');
    if (
      !/^(\/[^:]*|[a-zA-Z0-9][a-zA-Z0-9_.-]*)$/.test(from) ||
      !/^\/[^:]*$/.test(to) ||
      climbs(from) ||
      climbs(to)
    ) {
      throw new DockerConfigError(
        `DockerSpawner.volumes ${JSON.stringify(source)}: ${JSON.stringify(from)} → ${JSON.stringify(to)} is not a volume name or absolute host path mounted at an absolute path`,
      );
    }
    binds.push(`${from}:${to}:${mode}`);
  };
  for (const [source, target] of Object.entries(options.volumes)) {
    if (typeof target === 'string') add(source, target, 'rw');
    else add(source, target.bind, target.mode || 'rw');
  }
  for (const [source, target] of Object.entries(options.read_only_volumes)) add(source, target, 'ro');
  return binds;
}

/** A HostConfig's binds and mounts once templates are rendered: a raw name must not climb out or add a field. */
function renderedPaths(setting: string, hostConfig: JsonObject, prefix = ''): void {
  try {
    checkHostPaths(hostConfig, prefix);
  } catch (error) {
    if (!(error instanceof DockerTraitError)) throw error;
    throw new DockerConfigError(`DockerSpawner.${setting} rendered for this server: ${error.message}`);
  }
}

/**
 * DockerSpawner's _render_templates: every string rendered, a mapping's keys as well as its
 * values — extra_host_config's `binds: {'/srv/{username}': {bind: …}}` names the host path in a
 * key, and left as written every user would mount the same literal `/srv/{username}`.
 */
export function renderTemplates<T extends JsonValue>(value: T, namespace: TemplateNamespace): T {
  if (typeof value === 'string') return formatTemplate(value, namespace) as T;
  if (Array.isArray(value)) return value.map((item) => renderTemplates(item, namespace)) as T;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).map(
      ([key, item]) => [formatTemplate(key, namespace), renderTemplates(item, namespace)] as const,
    );
    // fromEntries keeps a key such as '__proto__' as the key it is.
    return Object.fromEntries(entries) as T;
  }
  return value;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class DockerSpawner implements Spawner {
  readonly #context: SpawnerContext;
  readonly #client: DockerClient;
  readonly #options: DockerSpawnerOptions;
  readonly #log: Logger;
  #containerId = '';
  #containerName = '';
  /** The image of the current start: `image`, or the user's choice among allowed_images. */
  #image = '';
  #starting = false;
  #lastProgress = 0;
  /** Bumped by stop(): a start still running (the hub gave up on it) sees it and undoes its container. */
  #generation = 0;
  /** Aborted by stop(): ends a pull that would otherwise stream on after the hub gave up. */
  #pullAbort = new AbortController();

  constructor(context: SpawnerContext, client: DockerClient, options: DockerSpawnerOptions) {
    this.#context = context;
    this.#client = client;
    this.#options = options;
    this.#image = options.image;
    this.#log = context.log.child({ user: context.spec.user.name, server: context.spec.serverName });
    const state = context.state;
    // DockerSpawner's names; `container_id` is what dockerspawner < 0.10 wrote.
    const id = state?.object_id ?? state?.container_id;
    if (typeof id === 'string' && /^[0-9a-f]{12,64}$/.test(id)) this.#containerId = id;
    // The name alone when a hub died between saving it and creating the container.
    if (
      typeof state?.object_name === 'string' &&
      /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/.test(state.object_name)
    ) {
      this.#containerName = state.object_name;
    }
  }

  state(): JsonObject {
    if (!this.#containerId) return this.#containerName ? { object_name: this.#containerName } : {};
    return { object_id: this.#containerId, object_name: this.#containerName };
  }

  /** The container by id, or by name when only the name was saved. */
  get #ref(): string {
    return this.#containerId || this.#containerName;
  }

  #progress(value: number, message: string): void {
    this.#lastProgress = Math.max(this.#lastProgress, Math.floor(value));
    this.#context.progress({ progress: this.#lastProgress, message });
  }

  get #networkIsHost(): boolean {
    return this.#options.network_name === 'host';
  }

  get #useInternalIp(): boolean {
    const { use_internal_ip: useInternal, network_name: network } = this.#options;
    return useInternal ?? !(network === 'bridge' || network === 'host');
  }

  async poll(): Promise<number | null> {
    if (!this.#ref) return 0;
    const container = this.#containerId
      ? await this.#client.inspectContainer(this.#containerId)
      : await this.#byName(this.#containerName);
    if (!container) {
      this.#log.warn(
        { container: this.#containerName || this.#containerId.slice(0, 12) },
        'container not found',
      );
      this.#containerId = '';
      this.#containerName = '';
      return 0;
    }
    this.#containerId = container.Id;
    if (container.State?.Running) return null;
    const exitCode = container.State?.ExitCode ?? 0;
    if (this.#options.remove) await this.#remove();
    return exitCode === 0 ? 0 : exitCode;
  }

  async start(): Promise<string> {
    if (this.#starting) throw new SpawnStateError('the server is already starting; wait for it or stop it');
    this.#starting = true;
    try {
      if (this.#ref && (await this.poll()) === null) {
        throw new SpawnStateError(
          `the server's container ${this.#containerName} is already running; stop it before starting it`,
        );
      }
      return await this.#start();
    } finally {
      this.#starting = false;
    }
  }

  async #start(): Promise<string> {
    const { spec } = this.#context;
    const options = this.#options;
    const startedAt = Date.now();
    const deadline = startedAt + options.startTimeoutMs;
    const generation = this.#generation;
    // stop() during this start (the hub's spawn timeout, a user's stop): go no further.
    const stillWanted = () => {
      if (this.#generation !== generation) {
        throw new SpawnStateError(`the server's start was cancelled: it was stopped while starting`);
      }
    };
    this.#lastProgress = 0;
    // user_options.image, as DockerSpawner's start(): the API refused a choice outside
    // allowed_images already; checked again for a spawn whose options were saved before a change.
    const chosen = imageForSpawn(options, spec.userOptions);
    if ('refused' in chosen) throw new DockerConfigError(chosen.refused);
    const image = chosen.image;
    this.#image = image;
    const namespace = dockerTemplateNamespace(spec, { ...options, image });
    const name = containerName(spec, { ...options, image });
    this.#containerName = name;
    this.#containerId = '';
    // The container's name in the database before it exists: should this hub die right after
    // the create, the replica taking over the spawn finds it by name and removes it.
    await this.#context.persist?.();

    const imageInfo = await this.#ensureImage(image, stillWanted);
    stillWanted();
    const existing = await this.#byName(name, true);
    if (
      existing &&
      this.#othersServer(existing) &&
      !['exited', 'dead'].includes(existing.State?.Status ?? '')
    ) {
      // Another server's container under the same name (server names that differ only in case
      // share {servername}; a name_template without it): removing it would end that server.
      const labels = existing.Config?.Labels ?? {};
      this.#containerName = '';
      throw new DockerConfigError(
        `the container name ${name} is taken by ${JSON.stringify(labels[containerLabels.user] ?? '')}'s server ${JSON.stringify(labels[containerLabels.server] ?? '')}, which is ${existing.State?.Status ?? 'not stopped'}: DockerSpawner.name_template ${JSON.stringify(options.name_template || (spec.serverName ? '{prefix}-{username}--{servername}' : '{prefix}-{username}'))} gives both servers one name (server names that differ only in case share {servername}); stop that server first, or make name_template tell them apart`,
      );
    }
    if (existing) {
      // A container left by an earlier start (remove=false, or a hub that died): its environment
      // holds an API token that is no longer valid, so it is replaced, not restarted.
      this.#progress(30, `Removing the old container ${name}`);
      this.#log.info({ container: name, id: existing.Id.slice(0, 12) }, 'removing the old container');
      await this.#client.removeContainer(existing.Id, { force: true });
    }

    const port = await this.#port();
    const ip = options.ip ?? (this.#networkIsHost ? options.host_ip : '0.0.0.0');
    const env = serverEnvironment(spec, {
      ip,
      port,
      environment: options.environment,
      // DockerSpawner inherits nothing from the hub's environment.
      envKeep: [],
      ...(options.defaultUrl ? { defaultUrl: options.defaultUrl } : {}),
      ...(options.notebookDir ? { notebookDir: options.notebookDir } : {}),
      ...(options.debug ? { debug: true } : {}),
    });
    env.JUPYTER_IMAGE_SPEC = image;
    const cmd = [...(options.cmd ?? imageInfo?.Config?.Cmd ?? []), ...options.args];
    const body = this.#createBody(image, env, cmd, port, namespace);

    this.#progress(40, `Creating container ${name} from ${image}`);
    stillWanted();
    const id = await this.#client.createContainer(name, body).catch((error: unknown) => {
      throw this.#explain(error, port);
    });
    if (this.#generation !== generation) {
      // Created after stop() looked for it: nobody would stop it, and its token is revoked.
      await this.#client.removeContainer(id, { force: true });
      stillWanted();
    }
    this.#containerId = id;
    this.#log.info({ container: name, id: id.slice(0, 12), image }, 'container created');
    await this.#context.persist?.();
    // Saved with the progress: a hub that dies from here on leaves a container the next one finds.
    this.#progress(50, `Starting container ${name} (${id.slice(0, 12)})`);
    await this.#client.startContainer(id).catch((error: unknown) => {
      throw this.#explain(error, port);
    });
    if (this.#generation !== generation) {
      // stop() ran between the create and the start: it stopped a container this start revives.
      await this.#client.removeContainer(id, { force: true });
      stillWanted();
    }

    if (options.post_start_cmd) await this.#postStart(id, options.post_start_cmd);
    const url = await this.#url(id, port);
    this.#progress(70, `Container ${name} is running; waiting for the server at ${url}${spec.servicePrefix}`);
    await this.#waitForHttp(
      id,
      `${url}${spec.servicePrefix}`,
      Math.min(deadline, Date.now() + options.httpTimeoutMs),
      port,
    );
    this.#log.info({ container: name, url, ms: Date.now() - startedAt }, 'server answered HTTP');
    this.#progress(90, `Server answered HTTP at ${url}${spec.servicePrefix}`);
    return url;
  }

  /** The image per pull_policy: pulled with its progress in the spawn's progress stream. */
  async #ensureImage(image: string, stillWanted: () => void) {
    const policy = this.#options.pull_policy;
    if (policy === 'skip') return this.#client.inspectImage(image).catch(() => undefined);
    this.#progress(5, `Checking image ${image}`);
    const present = policy === 'always' ? undefined : await this.#client.inspectImage(image);
    if (present) return present;
    if (policy === 'never') {
      throw new DockerImageError(
        image,
        "is not on the Docker Engine and DockerSpawner.pull_policy is 'never': build or pull it on the engine's host first",
      );
    }
    this.#progress(10, `Pulling image ${image}`);
    const layers = new Map<string, { current: number; total: number }>();
    let lastReport = 0;
    let lastStatus = '';
    const report = (line: PullProgress) => {
      if (line.id && line.progressDetail?.total) {
        layers.set(line.id, { current: line.progressDetail.current ?? 0, total: line.progressDetail.total });
      }
      const status = `${line.id ? `${line.id}: ` : ''}${line.status ?? ''}`.slice(0, 200);
      const now = Date.now();
      // One line per change of a layer's status, and the byte count at most twice a second.
      if (status === lastStatus && now - lastReport < 500) return;
      if (line.status === 'Downloading' && now - lastReport < 500) return;
      lastStatus = status;
      lastReport = now;
      let current = 0;
      let total = 0;
      for (const layer of layers.values()) {
        current += layer.current;
        total += layer.total;
      }
      const bytes = total > 0 ? ` (${(current / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB)` : '';
      const fraction = total > 0 ? current / total : 0;
      this.#progress(10 + 20 * fraction, `Pulling image ${image}: ${status}${bytes}`);
    };
    try {
      await this.#client.pullImage(image, report, this.#pullAbort.signal);
    } catch (error) {
      stillWanted();
      if (error instanceof DockerApiError) {
        throw new DockerImageError(
          image,
          `is not on the Docker Engine and pulling it failed: ${error.engineMessage}; pull or build it on the engine's host, or fix DockerSpawner.image`,
        );
      }
      throw error;
    }
    const pulled = await this.#client.inspectImage(image);
    if (!pulled) throw new DockerImageError(image, 'is still missing after the pull');
    this.#progress(30, `Pulled image ${image}`);
    return pulled;
  }

  /** The port the server listens on: 8888 in its own network namespace; a free host port on the host network. */
  async #port(): Promise<number> {
    const { port, host_ip: hostIp } = this.#options;
    if (!this.#networkIsHost) return port ?? containerPort;
    if (port === null) return freePort(hostIp);
    if (!(await portIsFree(hostIp, port))) {
      throw new DockerPortError(
        `port ${port} on ${hostIp} is in use; on network 'host' every server needs a port of its own: leave DockerSpawner.port unset to pick a free one`,
      );
    }
    return port;
  }

  #createBody(
    image: string,
    env: Record<string, string>,
    cmd: string[],
    port: number,
    namespace: TemplateNamespace,
  ) {
    const { spec } = this.#context;
    const options = this.#options;
    const hostConfig: JsonObject = {
      Binds: volumeBinds(options, namespace),
      NetworkMode: options.network_name,
    };
    if (options.memLimit !== null) hostConfig.Memory = options.memLimit;
    const extraHost = hostConfigFromKwargs(renderTemplates(options.extra_host_config, namespace));
    renderedPaths('extra_host_config', extraHost);
    if (options.cpuLimit !== null) {
      const period = typeof extraHost.CpuPeriod === 'number' ? extraHost.CpuPeriod : 100_000;
      hostConfig.CpuPeriod = period;
      hostConfig.CpuQuota = Math.round(options.cpuLimit * period);
    }
    const portKey = `${port}/tcp`;
    if (!this.#networkIsHost && !this.#useInternalIp) {
      hostConfig.PortBindings = { [portKey]: [{ HostIp: options.host_ip, HostPort: '' }] };
    }
    const body: JsonObject = {
      Image: image,
      Env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
      Labels: { [containerLabels.user]: spec.user.name, [containerLabels.server]: spec.serverName },
    };
    if (cmd.length > 0) body.Cmd = cmd;
    if (!this.#networkIsHost) body.ExposedPorts = { [portKey]: {} };
    const extraCreate = createBodyFromKwargs(renderTemplates(options.extra_create_kwargs, namespace));
    if (
      extraCreate.HostConfig &&
      typeof extraCreate.HostConfig === 'object' &&
      !Array.isArray(extraCreate.HostConfig)
    )
      renderedPaths('extra_create_kwargs', extraCreate.HostConfig, 'host_config.');
    // extra_create_kwargs and extra_host_config win, merged into what the spawner computed.
    const merged = deepMerge(body, extraCreate) as JsonObject;
    if (Array.isArray(extraCreate.Env))
      merged.Env = [...(body.Env as string[]), ...(extraCreate.Env as string[])];
    const host = deepMerge(
      deepMerge(hostConfig, (extraCreate.HostConfig as JsonObject | undefined) ?? {}),
      extraHost,
    );
    merged.HostConfig = host;
    return merged;
  }

  async #postStart(id: string, command: string | string[]): Promise<void> {
    const cmd = typeof command === 'string' ? shellSplit(command) : command;
    this.#progress(55, `Running post_start_cmd in ${this.#containerName}`);
    const result = await this.#client.exec(id, cmd);
    const output = result.output.trim().slice(-2000);
    if (result.exitCode !== 0) {
      this.#log.warn(
        { container: this.#containerName, exitCode: result.exitCode, output },
        'post_start_cmd failed',
      );
    } else this.#log.debug({ container: this.#containerName, output }, 'post_start_cmd done');
  }

  async #url(id: string, port: number): Promise<string> {
    const options = this.#options;
    if (this.#networkIsHost) return hostUrl(connectHost(options.ip ?? options.host_ip), port);
    const container = await this.#client.inspectContainer(id);
    if (!container) throw new SpawnStateError(`container ${this.#containerName} vanished while starting`);
    if (this.#useInternalIp) {
      const network = container.NetworkSettings?.Networks?.[options.network_name];
      if (!network?.IPAddress) {
        throw new DockerConfigError(
          `container ${this.#containerName} has no address on network '${options.network_name}': create it with 'docker network create ${options.network_name}' or fix DockerSpawner.network_name`,
        );
      }
      return hostUrl(network.IPAddress, port);
    }
    const binding = container.NetworkSettings?.Ports?.[`${port}/tcp`]?.[0];
    const hostPort = Number(binding?.HostPort);
    if (!Number.isInteger(hostPort) || hostPort <= 0) {
      throw new DockerApiError(
        200,
        `reading container ${this.#containerName}'s port`,
        'no published host port',
      );
    }
    const hostIp = binding?.HostIp && binding.HostIp !== '0.0.0.0' ? binding.HostIp : '127.0.0.1';
    return hostUrl(hostIp, hostPort);
  }

  /** JupyterHub's wait_up, watching the container: one that exits fails the start with its last lines. */
  async #waitForHttp(id: string, url: string, deadline: number, port: number): Promise<void> {
    let interval = 20;
    for (;;) {
      const status = await httpStatus(url, Math.max(1, Math.min(5000, deadline - Date.now())));
      if (status !== undefined && status < 500) return;
      const container = await this.#client.inspectContainer(id);
      if (!container?.State?.Running) throw await this.#exited(id, container, port);
      if (Date.now() >= deadline) {
        throw new SpawnTimeoutError(
          'http_timeout',
          this.#options.httpTimeoutMs / 1000,
          url,
          await this.#client.logs(id, keptLines).catch(() => []),
        );
      }
      await sleep(Math.min(interval, Math.max(0, deadline - Date.now())));
      interval = Math.min(interval * 1.5, 500);
    }
  }

  async #exited(id: string, container: ContainerInspect | undefined, port: number): Promise<Error> {
    const lines: string[] = await this.#client.logs(id, keptLines).catch(() => []);
    if (lines.some((line) => /address already in use|Errno 98/i.test(line))) {
      return new DockerPortError(
        `the server in ${this.#containerName} could not listen on port ${port}: another process holds it; its last output:\n${lines.join('\n')}`,
      );
    }
    const state = container?.State;
    if (state?.OOMKilled) lines.push(`(killed: out of memory; raise Spawner.mem_limit)`);
    return new SpawnExitedError(state?.ExitCode ?? null, null, lines);
  }

  /** What the engine said, named: a port that is taken, a missing network, an engine that is down. */
  #explain(error: unknown, port: number): unknown {
    if (!(error instanceof DockerApiError)) return error;
    const said = error.engineMessage;
    if (/port is already allocated|address already in use/i.test(said)) {
      return new DockerPortError(`the engine could not bind the server's port ${port}: ${said}`);
    }
    if (error.status === 404 && /network .* not found/i.test(said)) {
      return new DockerConfigError(
        `network '${this.#options.network_name}' does not exist on the Docker Engine: create it (docker network create ${this.#options.network_name}) or fix DockerSpawner.network_name (${said})`,
      );
    }
    if (error.status === 404 && /no such image/i.test(said)) {
      return new DockerImageError(this.#image, `is not on the Docker Engine (${said})`);
    }
    return error;
  }

  /**
   * The container named `name`, if any. The engine resolves a reference that names no container
   * as an id prefix: a name_template of '{username}' and a user called 'a1b2' would otherwise
   * find (and a start force-remove) another server's container whose id starts with a1b2. A
   * container labelled for another server is not this server's either (unless `anyServer`).
   */
  async #byName(name: string, anyServer = false): Promise<ContainerInspect | undefined> {
    const found = await this.#client.inspectContainer(name);
    if (!found || found.Name !== `/${name}`) return undefined;
    // A name saved before its container was created may since name another server's container.
    return anyServer || !this.#othersServer(found) ? found : undefined;
  }

  /** Whether the container carries another server's labels (containers without them are not judged). */
  #othersServer(container: ContainerInspect): boolean {
    const labels = container.Config?.Labels ?? {};
    const user = labels[containerLabels.user];
    const server = labels[containerLabels.server];
    const { spec } = this.#context;
    return (
      (user !== undefined && user !== spec.user.name) || (server !== undefined && server !== spec.serverName)
    );
  }

  async #remove(): Promise<void> {
    if (!this.#containerId) return;
    await this.#client.removeContainer(this.#containerId, { force: true });
    this.#log.info(
      { container: this.#containerName, id: this.#containerId.slice(0, 12) },
      'container removed',
    );
    this.#containerId = '';
  }

  async stop(now = false): Promise<void> {
    this.#generation++;
    this.#pullAbort.abort();
    this.#pullAbort = new AbortController();
    if (!this.#containerId && this.#containerName) {
      // Only the name was saved: the container may have been created after it.
      const found = await this.#byName(this.#containerName);
      if (found) this.#containerId = found.Id;
      else this.#containerName = '';
    }
    if (!this.#containerId) return;
    const seconds = now ? 0 : (this.#options.stopTimeoutSeconds ?? 10);
    this.#log.info(
      { container: this.#containerName, id: this.#containerId.slice(0, 12) },
      'stopping container',
    );
    await this.#client.stopContainer(this.#containerId, seconds);
    if (this.#options.remove) await this.#remove();
    // As DockerSpawner's clear_state: a stopped server has no state; its next start replaces the container by name.
    this.#containerId = '';
    this.#containerName = '';
  }
}

function deepMerge(target: JsonValue, source: JsonValue): JsonValue {
  if (
    target === null ||
    source === null ||
    typeof target !== 'object' ||
    typeof source !== 'object' ||
    Array.isArray(target) ||
    Array.isArray(source)
  ) {
    return source;
  }
  const out: JsonObject = { ...target };
  for (const [key, value] of Object.entries(source))
    out[key] = key in out ? deepMerge(out[key]!, value) : value;
  return out;
}

function connectHost(ip: string): string {
  if (ip === '0.0.0.0' || ip === '') return '127.0.0.1';
  if (ip === '::') return '::1';
  return ip;
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, connectHost(host), () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function portIsFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, connectHost(host), () => server.close(() => resolve(true)));
  });
}

function httpStatus(url: string, timeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { method: 'GET', timeout: timeoutMs }, (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}
