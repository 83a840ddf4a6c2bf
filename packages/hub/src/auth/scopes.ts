// JupyterHub's scopes: the definitions and their subscopes, expansion of roles' raw scopes
// (metascopes `self` and `inherit`, filters `!user=`, `!server=`, `!group=`, `!service=`),
// intersection of a token's scopes with its owner's, and checks against a request.

/** Scope → subscopes, as JupyterHub's scope_definitions. */
export const scopeDefinitions: Record<string, string[]> = {
  '(no_scope)': [],
  self: [],
  inherit: [],
  'admin-ui': [],
  'admin:users': ['admin:auth_state', 'users', 'read:roles:users', 'delete:users'],
  'admin:auth_state': [],
  users: ['read:users', 'list:users', 'users:activity'],
  'delete:users': [],
  'list:users': ['read:users:name'],
  'read:users': ['read:users:name', 'read:users:groups', 'read:users:activity'],
  'read:users:name': [],
  'read:users:groups': [],
  'read:users:activity': [],
  'read:roles': ['read:roles:users', 'read:roles:services', 'read:roles:groups'],
  'read:roles:users': [],
  'read:roles:services': [],
  'read:roles:groups': [],
  'users:activity': ['read:users:activity'],
  'admin:servers': ['admin:server_state', 'servers'],
  'admin:server_state': [],
  servers: ['read:servers', 'delete:servers'],
  'read:servers': ['read:users:name'],
  'delete:servers': [],
  tokens: ['read:tokens'],
  'read:tokens': [],
  'admin:groups': ['groups', 'read:roles:groups', 'delete:groups'],
  groups: ['read:groups', 'list:groups'],
  'list:groups': ['read:groups:name'],
  'read:groups': ['read:groups:name'],
  'read:groups:name': [],
  'delete:groups': [],
  'list:services': ['read:services:name'],
  'read:services': ['read:services:name'],
  'read:services:name': [],
  'read:hub': [],
  'access:servers': [],
  'access:services': [],
  proxy: [],
  shutdown: [],
  'read:metrics': [],
};

/** JupyterHub's default roles. */
export const defaultRoles: Record<string, { description: string; scopes: string[] }> = {
  user: { description: 'Standard user privileges', scopes: ['self'] },
  admin: {
    description: 'Elevated privileges (can do anything)',
    scopes: [
      'admin-ui',
      'admin:users',
      'admin:servers',
      'tokens',
      'admin:groups',
      'list:services',
      'read:services',
      'read:hub',
      'proxy',
      'shutdown',
      'access:services',
      'access:servers',
      'read:roles',
      'read:metrics',
    ],
  },
  server: { description: 'Post activity only', scopes: ['users:activity!user', 'access:servers!user'] },
  token: { description: 'Token with same permissions as its owner', scopes: ['inherit'] },
};

const selfScopes = [
  'read:users',
  'read:users:name',
  'read:users:groups',
  'users:activity',
  'read:users:activity',
  'servers',
  'delete:servers',
  'read:servers',
  'tokens',
  'read:tokens',
  'access:servers',
];

export type FilterKind = 'user' | 'server' | 'group' | 'service';
const filterKinds = new Set<string>(['user', 'server', 'group', 'service']);

/** Who a set of scopes belongs to: resolves `self`, `!user` and `!server` without a value. */
export interface ScopeOwner {
  kind: 'user' | 'service';
  name: string;
  /** 'user/server' of a server's own token, for `!server`. */
  server?: string;
}

/** Checks a raw scope is one JupyterHub knows (with a valid filter); returns an error text or ''. */
export function invalidScope(scope: string): string {
  const bang = scope.indexOf('!');
  const base = bang < 0 ? scope : scope.slice(0, bang);
  if (!(base in scopeDefinitions) && !base.startsWith('custom:'))
    return `Scope '${scope}' is not a valid scope`;
  if (bang >= 0) {
    const filter = scope.slice(bang + 1);
    const eq = filter.indexOf('=');
    const kind = eq < 0 ? filter : filter.slice(0, eq);
    if (!filterKinds.has(kind)) return `Scope '${scope}' has an invalid filter '${filter}'`;
  }
  return '';
}

function addWithSubscopes(base: string, filter: string, into: Set<string>): void {
  const key = `${base}${filter}`;
  if (into.has(key)) return;
  into.add(key);
  for (const sub of scopeDefinitions[base] ?? []) addWithSubscopes(sub, filter, into);
}

/** Expands raw scopes into the full set (subscopes, metascopes, owner-relative filters). */
export function expandScopes(
  raw: Iterable<string>,
  owner: ScopeOwner | undefined,
  inherited?: Set<string>,
): Set<string> {
  const out = new Set<string>();
  for (const scope of raw) {
    if (scope === 'self') {
      if (owner?.kind === 'user') for (const s of selfScopes) out.add(`${s}!user=${owner.name}`);
      continue;
    }
    if (scope === 'inherit') {
      if (inherited) for (const s of inherited) out.add(s);
      continue;
    }
    const bang = scope.indexOf('!');
    const base = bang < 0 ? scope : scope.slice(0, bang);
    let filter = bang < 0 ? '' : scope.slice(bang);
    if (filter === '!user') {
      if (owner?.kind !== 'user') continue;
      filter = `!user=${owner.name}`;
    } else if (filter === '!server') {
      if (!owner?.server) continue;
      filter = `!server=${owner.server}`;
    } else if (filter === '!service') {
      if (owner?.kind !== 'service') continue;
      filter = `!service=${owner.name}`;
    }
    addWithSubscopes(base, filter, out);
  }
  return collapse(out);
}

/** Drops filtered copies of scopes also held without a filter. */
function collapse(scopes: Set<string>): Set<string> {
  const out = new Set<string>();
  for (const scope of scopes) {
    const bang = scope.indexOf('!');
    if (bang >= 0 && scopes.has(scope.slice(0, bang))) continue;
    out.add(scope);
  }
  return out;
}

/** A scope's filters: 'all', or the names allowed per kind. */
export type ParsedFilter = 'all' | Partial<Record<FilterKind, Set<string>>>;
export type ParsedScopes = Map<string, ParsedFilter>;

export function parseScopes(expanded: Iterable<string>): ParsedScopes {
  const parsed: ParsedScopes = new Map();
  for (const scope of expanded) {
    const bang = scope.indexOf('!');
    if (bang < 0) {
      parsed.set(scope, 'all');
      continue;
    }
    const base = scope.slice(0, bang);
    const filter = scope.slice(bang + 1);
    const eq = filter.indexOf('=');
    if (eq < 0) continue;
    const kind = filter.slice(0, eq) as FilterKind;
    const value = filter.slice(eq + 1);
    const current = parsed.get(base);
    if (current === 'all') continue;
    const filters = current ?? {};
    const names = filters[kind] ?? new Set<string>();
    names.add(value);
    filters[kind] = names;
    parsed.set(base, filters);
  }
  return parsed;
}

/**
 * The scopes held by both sets, as JupyterHub intersects a token's scopes with its owner's:
 * a filtered scope survives where the other side holds it unfiltered or with a filter that
 * covers it (`!user=u` covers `!server=u/x`).
 */
export function intersectScopes(a: Set<string>, b: Set<string>): Set<string> {
  const out = new Set<string>();
  const pa = parseScopes(a);
  const pb = parseScopes(b);
  for (const [base, fa] of pa) {
    const fb = pb.get(base);
    if (!fb) continue;
    if (fa === 'all' && fb === 'all') {
      out.add(base);
      continue;
    }
    if (fa === 'all' || fb === 'all') {
      const filtered = (fa === 'all' ? fb : fa) as Partial<Record<FilterKind, Set<string>>>;
      for (const [kind, names] of Object.entries(filtered))
        for (const n of names) out.add(`${base}!${kind}=${n}`);
      continue;
    }
    for (const [kind, names] of Object.entries(fa) as Array<[FilterKind, Set<string>]>) {
      for (const name of names) {
        if (covers(fb, kind, name)) out.add(`${base}!${kind}=${name}`);
      }
    }
    for (const [kind, names] of Object.entries(fb) as Array<[FilterKind, Set<string>]>) {
      for (const name of names) {
        if (covers(fa, kind, name)) out.add(`${base}!${kind}=${name}`);
      }
    }
  }
  return out;
}

function covers(filters: Partial<Record<FilterKind, Set<string>>>, kind: FilterKind, name: string): boolean {
  if (filters[kind]?.has(name)) return true;
  if (kind === 'server') {
    const user = name.slice(0, name.indexOf('/'));
    return filters.user?.has(user) ?? false;
  }
  return false;
}

/** The resource a request acts on: a user, a server ('user/name'), a group, a service. */
export interface ScopeTarget {
  user?: string;
  server?: string;
  group?: string;
  service?: string;
  /** The groups of `user`, for `!group=` filters; loaded only when such a filter is held. */
  userGroups?: () => Promise<string[]>;
}

/**
 * 'all' or 'some' when `scope` allows the target (some: held with filters and no target
 * given, the caller filters results), false when it does not.
 */
export async function allows(
  parsed: ParsedScopes,
  scope: string,
  target: ScopeTarget = {},
): Promise<'all' | 'some' | false> {
  const filter = parsed.get(scope);
  if (!filter) return false;
  if (filter === 'all') return 'all';
  if (!target.user && !target.server && !target.group && !target.service) return 'some';
  if (target.server && filter.server?.has(target.server)) return 'some';
  if (target.user && filter.user?.has(target.user)) return 'some';
  if (target.group && filter.group?.has(target.group)) return 'some';
  if (target.service && filter.service?.has(target.service)) return 'some';
  if (target.user && filter.group && target.userGroups) {
    const groups = await target.userGroups();
    if (groups.some((g) => filter.group!.has(g))) return 'some';
  }
  return false;
}
