// Shared by the Kubernetes spawner's tests: the spec the hub computes for a server.
import type { ServerSpec } from '../src/spawners/spawner.ts';

/** A server's spec as SpawnManager builds it, with a fixed token (for golden files). */
export function serverSpec(user: string, admin: boolean, serverName: string, profile: string): ServerSpec {
  const prefix = serverName ? `/user/${user}/${serverName}/` : `/user/${user}/`;
  const hubApi = 'http://jupyterhub-hub.jupyterhub.svc.cluster.local:8081/hub/api';
  const access = `access:servers!server=${user}/${serverName}`;
  return {
    user: { name: user, admin, groups: [] },
    serverName,
    apiToken: 'golden0123456789abcdef0123456789ab',
    oauthClientId: serverName ? `jupyterhub-user-${user}-${serverName}` : `jupyterhub-user-${user}`,
    hubApiUrl: hubApi,
    baseUrl: '/',
    servicePrefix: prefix,
    oauthCallbackUrl: `${prefix}oauth_callback`,
    oauthScopes: [access],
    oauthAccessScopes: [access, `access:servers!user=${user}`],
    activityUrl: `${hubApi}/users/${user}/activity`,
    userOptions: { profile },
    adminAccess: false,
  };
}
