// The hub's parts in one place, shared by the API handlers and the background tasks: config,
// database, identity resolution, spawns, the proxy, metrics. Startup reconciles the database
// with the configuration (roles, services and their tokens, admin users).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from '@seahorse/runtime';
import { Authenticator } from './auth/authenticators.ts';
import { defaultRoles, invalidScope } from './auth/scopes.ts';
import { SessionSigner } from './auth/sessions.ts';
import { hashToken } from './auth/tokens.ts';
import type { HubConfig } from './config.ts';
import type { Database } from './db/database.ts';
import * as roles from './db/roles.ts';
import * as tokens from './db/tokens.ts';
import { findOrCreateUser, updateUser } from './db/users.ts';
import { ConfigError } from './errors.ts';
import { IdentityResolver, type RoleScopes } from './identity.ts';
import { Leadership } from './leader.ts';
import type { HubMetrics } from './metrics.ts';
import type { ProxyApi } from './proxy-api.ts';
import { type BoundSpawnerFactory, SpawnManager } from './spawns.ts';

export { apiVersion as hubVersion } from './api/http.ts';

export class Hub {
  readonly config: HubConfig;
  readonly db: Database;
  readonly log: Logger;
  readonly metrics: HubMetrics;
  readonly proxy: ProxyApi;
  readonly authenticator: Authenticator;
  readonly roleScopes: RoleScopes = new Map();
  /** API tokens of the configured services, for the environment of managed ones. */
  readonly serviceTokens = new Map<string, string>();
  readonly spawns: SpawnManager;
  /** Which replica runs the singleton work; started by the server. */
  readonly leadership: Leadership;
  identity!: IdentityResolver;
  sessions!: SessionSigner;
  /** Called by POST /hub/api/shutdown. */
  onShutdown: (options: { servers: boolean; proxy: boolean }) => void = () => undefined;
  /** Set by the server: re-syncs the proxy's routes with the database (POST /proxy). */
  checkRoutes: (() => Promise<void>) | undefined;
  /** Set by the server: points the hub at another proxy (PATCH /proxy). */
  /** Points the hub at another proxy API (PATCH /hub/api/proxy); returns what undoes it. */
  reconfigureProxy: ((apiUrl?: string, authToken?: string) => () => void) | undefined;

  constructor(
    config: HubConfig,
    db: Database,
    log: Logger,
    metrics: HubMetrics,
    proxy: ProxyApi,
    spawnerFactory: BoundSpawnerFactory,
  ) {
    this.config = config;
    this.db = db;
    this.log = log;
    this.metrics = metrics;
    this.proxy = proxy;
    this.authenticator = new Authenticator(config.authenticatorClass, config.auth);
    this.leadership = new Leadership(db, log, metrics.registry, config.leadership);
    this.spawns = new SpawnManager(db, config, log, metrics, proxy, spawnerFactory, this.leadership);
  }

  /** Brings the database in line with the configuration; idempotent, safe on every start. */
  async init(): Promise<void> {
    const secret = this.config.cookieSecretFile
      ? readSecretFile(this.config.cookieSecretFile)
      : Buffer.from(
          await tokens.getOrCreateSecret(this.db, 'cookie_secret', () => randomBytes(32).toString('hex')),
          'hex',
        );
    this.sessions = new SessionSigner(secret, this.config.cookieMaxAgeMs);
    for (const [name, role] of Object.entries(defaultRoles)) {
      await roles.upsertRole(this.db, name, role.description, role.scopes);
      this.roleScopes.set(name, role.scopes);
    }
    for (const user of this.config.auth.adminUsers) {
      const existing = await findOrCreateUser(this.db, user, true);
      if (existing.admin !== 1) await updateUser(this.db, existing.id, { admin: true });
    }
    for (const user of this.config.auth.allowedUsers) {
      await findOrCreateUser(this.db, user, false);
    }
    const serviceIds = new Map<string, number>();
    for (const service of this.config.services) {
      const row = await roles.upsertService(this.db, {
        name: service.name,
        admin: service.admin,
        url: service.url ?? null,
        info: JSON.stringify(service.info),
        display: service.display,
        oauthClientId: service.oauthClientId ?? null,
      });
      serviceIds.set(service.name, row.id);
      // A managed service without a configured token gets one, kept in the database: every hub
      // replica (the leader runs the service) must accept the same token.
      const apiToken =
        service.apiToken ??
        (service.command
          ? await tokens.getOrCreateSecret(this.db, `service_token:${service.name}`, () =>
              randomBytes(24).toString('hex'),
            )
          : undefined);
      if (apiToken) this.serviceTokens.set(service.name, apiToken);
      // In one transaction: another replica serving meanwhile never finds the token missing.
      await this.db.transaction(async (tx) => {
        await tokens.deleteServiceTokens(tx, row.id);
        if (apiToken) {
          await tokens.insertToken(tx, {
            hashed: hashToken(apiToken),
            prefix: apiToken.slice(0, 4),
            serviceId: row.id,
            note: 'from config',
            scopes: ['inherit'],
          });
        }
      });
    }
    await roles.deleteServicesExcept(this.db, [...serviceIds.keys()]);
    for (const role of this.config.loadRoles) {
      for (const scope of role.scopes) {
        const problem = invalidScope(scope);
        if (problem) throw new ConfigError(`JupyterHub.load_roles: role '${role.name}': ${problem}`);
      }
      const base = defaultRoles[role.name];
      const description = role.description ?? base?.description ?? '';
      const scopes = role.scopes.length > 0 || !base ? role.scopes : base.scopes;
      // The role and its members in one transaction: a replica serving meanwhile sees the old
      // members or the new, never none (its users' requests would be refused for that moment).
      await this.db.transaction(async (tx) => {
        const row = await roles.upsertRole(tx, role.name, description, scopes);
        await roles.clearAssignments(tx, row.id);
        for (const name of role.users) {
          const user = await findOrCreateUser(tx, name, false);
          await roles.assignRole(tx, row.id, 'user', user.id);
        }
        for (const name of role.services) {
          const id = serviceIds.get(name);
          if (id === undefined) {
            throw new ConfigError(
              `JupyterHub.load_roles: role '${role.name}' names service '${name}', which is not in JupyterHub.services`,
            );
          }
          await roles.assignRole(tx, row.id, 'service', id);
        }
        for (const name of role.groups) {
          await tx.run(
            "INSERT INTO groups (name, properties) VALUES (?, '{}') ON CONFLICT (name) DO NOTHING",
            [name],
          );
          const group = await tx.get<{ id: number }>('SELECT id FROM groups WHERE name = ?', [name]);
          await roles.assignRole(tx, row.id, 'group', group!.id);
        }
      });
      this.roleScopes.set(role.name, scopes);
    }
    this.identity = new IdentityResolver(this.db, this.roleScopes, this.sessions);
  }
}

function readSecretFile(path: string): Buffer {
  try {
    const text = readFileSync(path, 'utf8').trim();
    return /^[0-9a-fA-F]+$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
  } catch (error) {
    throw new ConfigError(
      `JupyterHub.cookie_secret_file: cannot read ${path}: ${(error as NodeJS.ErrnoException).code}`,
    );
  }
}
