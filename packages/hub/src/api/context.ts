// What every API handler gets: the request, the hub, who is asking, and JupyterHub's scope
// checks (403 when no required scope is held, 404 when held only for other resources).
import { allows, type ScopeTarget } from '../auth/scopes.ts';
import { HttpError } from '../errors.ts';
import type { Hub } from '../hub.ts';
import type { Identity } from '../identity.ts';
import type { RouteContext } from './http.ts';

export interface ApiContext extends RouteContext {
  hub: Hub;
  identity: Identity | undefined;
}

export async function needsScope(
  context: ApiContext,
  scopes: string[],
  target: ScopeTarget = {},
): Promise<'all' | 'some'> {
  const parsed = context.identity?.parsed;
  if (parsed) {
    for (const scope of scopes) {
      if (!parsed.has(scope)) continue;
      const result = await allows(parsed, scope, target);
      if (result) return result;
      throw new HttpError(404, 'No access to resources or resources not found');
    }
  }
  throw new HttpError(
    403,
    `Action is not authorized with current scopes; requires any of [${scopes.join(', ')}]`,
  );
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** JupyterHub's _check_user_model: known keys with the right types. */
export function checkUserModel(model: Record<string, unknown>): void {
  const types: Record<string, string> = {
    name: 'string',
    admin: 'boolean',
    groups: 'list',
    roles: 'list',
    auth_state: 'dict',
  };
  for (const [key, value] of Object.entries(model)) {
    // Own keys only: `__proto__` or `constructor` must not find Object.prototype's members.
    const want = Object.hasOwn(types, key) ? types[key] : undefined;
    if (!want) throw new HttpError(400, `Invalid user model keys: ${key}`);
    const ok =
      want === 'list'
        ? Array.isArray(value)
        : want === 'dict'
          ? isObject(value) || value === null
          : typeof value === want;
    if (!ok)
      throw new HttpError(
        400,
        `user.${key} must be a ${want === 'string' ? 'str' : want === 'boolean' ? 'bool' : want}, not ${typeof value}`,
      );
  }
}
