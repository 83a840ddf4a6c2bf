// The environment JupyterHub 3 gives a single-user server (Spawner.get_env): the names, their
// values' format, and what is inherited from the hub — only `env_keep`, so the hub's own secrets
// (CONFIGPROXY_AUTH_TOKEN, database passwords) never reach a user's process.
import type { ServerSpec } from './spawner.ts';
import { formatTemplate, templateNamespace } from './templating.ts';

/** JupyterHub's Spawner.env_keep default: what a server inherits from the hub's environment. */
export const defaultEnvKeep: readonly string[] = [
  'PATH',
  'PYTHONPATH',
  'CONDA_ROOT',
  'CONDA_DEFAULT_ENV',
  'VIRTUAL_ENV',
  'LANG',
  'LC_ALL',
  'JUPYTERHUB_SINGLEUSER_APP',
];

export interface EnvironmentOptions {
  /** Where the server listens (Spawner.ip, default '127.0.0.1'); JUPYTERHUB_SERVICE_URL. */
  ip: string;
  port: number;
  /** Spawner.environment: set last, so it wins; values are templates ({username}, ...). */
  environment?: Readonly<Record<string, string>>;
  /** Spawner.env_keep; defaults to JupyterHub's list. */
  envKeep?: readonly string[];
  /** Spawner.default_url (a template); JUPYTERHUB_DEFAULT_URL. */
  defaultUrl?: string;
  /** Spawner.notebook_dir (a template); JUPYTERHUB_ROOT_DIR. */
  notebookDir?: string;
  /** Spawner.debug; JUPYTERHUB_DEBUG=1. */
  debug?: boolean;
  /** Spawner.disable_user_config; JUPYTERHUB_DISABLE_USER_CONFIG=1. */
  disableUserConfig?: boolean;
  /** The hub's environment, for env_keep; process.env by default. */
  parentEnv?: NodeJS.ProcessEnv;
}

/** `http://<ip>:<port>` with IPv6 literals bracketed. */
export function hostUrl(ip: string, port: number): string {
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return `http://${host}:${port}`;
}

/**
 * The variables for one server, in JupyterHub 3's names and formats (JSON lists as Python's
 * json.dumps writes them). Templates in `environment`, `defaultUrl` and `notebookDir` see the
 * names of `templateNamespace`; a bad template throws a TemplateError.
 */
export function serverEnvironment(spec: ServerSpec, options: EnvironmentOptions): Record<string, string> {
  const env: Record<string, string> = {};
  const parent = options.parentEnv ?? process.env;
  for (const key of options.envKeep ?? defaultEnvKeep) {
    const value = parent[key];
    if (value !== undefined) env[key] = value;
  }
  env.JUPYTERHUB_API_TOKEN = spec.apiToken;
  // JupyterHub still sets the pre-0.7.2 name for old single-user servers.
  env.JPY_API_TOKEN = spec.apiToken;
  if (spec.adminAccess) env.JUPYTERHUB_ADMIN_ACCESS = '1';
  env.JUPYTERHUB_CLIENT_ID = spec.oauthClientId;
  env.JUPYTERHUB_HOST = spec.hubHost ?? '';
  env.JUPYTERHUB_OAUTH_CALLBACK_URL = spec.oauthCallbackUrl;
  // JUPYTERHUB_OAUTH_SCOPES is the pre-3.0 name of the access scopes; both are set.
  env.JUPYTERHUB_OAUTH_SCOPES = pythonJsonList(spec.oauthAccessScopes);
  env.JUPYTERHUB_OAUTH_ACCESS_SCOPES = pythonJsonList(spec.oauthAccessScopes);
  env.JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES = pythonJsonList(spec.oauthClientAllowedScopes ?? []);
  env.JUPYTERHUB_USER = spec.user.name;
  env.JUPYTERHUB_SERVER_NAME = spec.serverName;
  env.JUPYTERHUB_API_URL = spec.hubApiUrl;
  env.JUPYTERHUB_ACTIVITY_URL = spec.activityUrl;
  env.JUPYTERHUB_BASE_URL = spec.baseUrl;
  env.JUPYTERHUB_SERVICE_PREFIX = spec.servicePrefix;
  env.JUPYTERHUB_SERVICE_URL = `${hostUrl(options.ip, options.port)}${spec.servicePrefix}`;

  const namespace = templateNamespace({
    user: spec.user,
    serverName: spec.serverName,
    servicePrefix: spec.servicePrefix,
  });
  if (options.notebookDir) env.JUPYTERHUB_ROOT_DIR = formatTemplate(options.notebookDir, namespace);
  if (options.defaultUrl) env.JUPYTERHUB_DEFAULT_URL = formatTemplate(options.defaultUrl, namespace);
  if (options.debug) env.JUPYTERHUB_DEBUG = '1';
  if (options.disableUserConfig) env.JUPYTERHUB_DISABLE_USER_CONFIG = '1';
  for (const [key, value] of Object.entries(options.environment ?? {})) {
    env[key] = formatTemplate(value, namespace);
  }
  return env;
}

/** A list of strings as Python's json.dumps writes it: ', ' between items, non-ASCII as \uXXXX. */
export function pythonJsonList(items: readonly string[]): string {
  return `[${items.map(pythonJsonString).join(', ')}]`;
}

function pythonJsonString(value: string): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
