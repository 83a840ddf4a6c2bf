// The spawner contract: what the hub asks of whatever runs a user's server (a local process,
// a Docker container, a Kubernetes pod). JupyterHub's Spawner API, as TypeScript: start, poll,
// stop, progress, and state kept as JSON in the database so another hub process can re-attach.
import type { Logger } from '@seahorse/runtime';
import type { LeaderView } from '../leader.ts';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** Everything a spawner needs to know about the server it runs; computed by the hub. */
export interface ServerSpec {
  user: { name: string; admin: boolean; groups: string[] };
  /** '' for the user's default server. */
  serverName: string;
  /** The server's API token (JUPYTERHUB_API_TOKEN); never logged. */
  apiToken: string;
  /** OAuth client of this server: `jupyterhub-user-<name>` or `jupyterhub-user-<name>-<server>`. */
  oauthClientId: string;
  /** e.g. http://127.0.0.1:8081/hub/api — where the server reaches the hub. */
  hubApiUrl: string;
  /** The hub's base URL ('/' by default); JUPYTERHUB_BASE_URL. */
  baseUrl: string;
  /** '/user/<name>/' or '/user/<name>/<server>/'; JUPYTERHUB_SERVICE_PREFIX. */
  servicePrefix: string;
  /** JUPYTERHUB_OAUTH_CALLBACK_URL, e.g. '/user/<name>/oauth_callback'. */
  oauthCallbackUrl: string;
  oauthScopes: string[];
  oauthAccessScopes: string[];
  /** JUPYTERHUB_ACTIVITY_URL, e.g. http://127.0.0.1:8081/hub/api/users/<name>/activity */
  activityUrl: string;
  /** What the user chose at spawn time (e.g. { profile: 'gpu' }); JSON. */
  userOptions: JsonObject;
  /** JUPYTERHUB_HOST: the hub's public host ('' unless JupyterHub.public_url is set). */
  hubHost?: string;
  /** JupyterHub.admin_access: JUPYTERHUB_ADMIN_ACCESS=1 when true. */
  adminAccess?: boolean;
  /** JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES (Spawner.oauth_client_allowed_scopes); [] by default. */
  oauthClientAllowedScopes?: string[];
}

/** One line of the spawn progress stream (JupyterHub's `progress` events). */
export interface ProgressEvent {
  /** 0–100. */
  progress: number;
  message: string;
}

export interface SpawnerContext {
  spec: ServerSpec;
  /** What an earlier start persisted (null on a first start): lets a new hub re-attach. */
  state: JsonObject | null;
  log: Logger;
  /** Reports progress while starting; shown in `/progress` and on the pending page. */
  progress(event: ProgressEvent): void;
  /**
   * Writes state() to the database now. A spawner awaits it before it creates what its state
   * names (a pod, a process), so a replica taking over a spawn whose hub died finds it and can
   * stop it. Rejects when the state could not be saved or the spawn is no longer this replica's.
   */
  persist?(): Promise<void>;
  /**
   * Which hub replica leads (src/leader.ts). Work for all servers at once — one watch over the
   * namespace's pods — belongs to the leader: start it in `leadership.whileLeader(signal => …)`
   * and end it when the signal aborts. Absent outside a running hub (tools, tests).
   */
  leadership?: LeaderView;
}

export interface Spawner {
  /** Starts the server; resolves with the URL the proxy should route to once it answers HTTP. */
  start(): Promise<string>;
  /** null while running, else an exit status (0 when it simply is not running). */
  poll(): Promise<number | null>;
  /** Stops the server (SIGTERM, then SIGKILL after a grace period, or the equivalent). */
  stop(now?: boolean): Promise<void>;
  /** What must be persisted to re-attach (a PID, a container id); JSON. */
  state(): JsonObject;
  /**
   * How long the hub waits for start(): this server's start_timeout plus http_timeout, after
   * its profile's overrides (a GPU profile may allow minutes). The hub's Spawner.* when absent.
   */
  readonly spawnTimeoutMs?: number;
  /** What the database keeps once the server stopped (JupyterHub's clear_state, then get_state); {} when absent. */
  stoppedState?(): JsonObject;
  /** Removes what outlives a stop (KubeSpawner's PVC) when the user or named server is deleted. */
  deleteForever?(): Promise<void>;
}

/** Builds a spawner for one server; `options` are the spawner's traits from the config. */
export type SpawnerFactory<Options> = (context: SpawnerContext, options: Options) => Spawner;
