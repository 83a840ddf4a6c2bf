// `Spawner.profile_list` in KubeSpawner's shape (display_name, description, default, slug,
// kubespawner_override), for every spawner: the spawn form lists the profiles, the choice
// reaches the spawner as `user_options.profile`, and the profile's overrides apply to the
// traits the spawner knows.
import { ConfigError } from './errors.ts';

export interface Profile {
  slug: string;
  displayName: string;
  description: string;
  default: boolean;
  /** Trait name → value (KubeSpawner's kubespawner_override). */
  override: Record<string, unknown>;
}

/** KubeSpawner's slug of a display name: lower case, runs of other characters as one dash. */
export function slugOf(displayName: string): string {
  return displayName
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

const keys = ['display_name', 'description', 'default', 'slug', 'kubespawner_override', 'spawner_override'];

export function parseProfiles(path: string, value: unknown): Profile[] {
  if (!Array.isArray(value)) throw new ConfigError(`${path}: expected a list of profiles`);
  const seen = new Set<string>();
  const profiles = value.map((raw, i): Profile => {
    const at = `${path}[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new ConfigError(`${at}: expected a mapping with display_name`);
    }
    const entry = raw as Record<string, unknown>;
    for (const key of Object.keys(entry)) {
      if (!keys.includes(key))
        throw new ConfigError(`${at}: unknown key '${key}'; known: ${keys.join(', ')}`);
    }
    if (typeof entry.display_name !== 'string' || !entry.display_name.trim()) {
      throw new ConfigError(`${at}.display_name: expected a non-empty string`);
    }
    if (entry.description !== undefined && typeof entry.description !== 'string') {
      throw new ConfigError(`${at}.description: expected a string`);
    }
    if (entry.default !== undefined && typeof entry.default !== 'boolean') {
      throw new ConfigError(`${at}.default: expected a boolean`);
    }
    if (
      entry.slug !== undefined &&
      (typeof entry.slug !== 'string' || !/^[A-Za-z0-9._-]+$/.test(entry.slug))
    ) {
      throw new ConfigError(`${at}.slug: expected letters, digits, '.', '_' or '-'`);
    }
    const override = entry.kubespawner_override ?? entry.spawner_override ?? {};
    if (typeof override !== 'object' || override === null || Array.isArray(override)) {
      throw new ConfigError(`${at}.kubespawner_override: expected a mapping of trait: value`);
    }
    const slug = (entry.slug as string | undefined) ?? slugOf(entry.display_name);
    if (!slug) throw new ConfigError(`${at}: display_name gives an empty slug; set slug`);
    if (seen.has(slug)) throw new ConfigError(`${at}: slug '${slug}' twice`);
    seen.add(slug);
    return {
      slug,
      displayName: entry.display_name,
      description: (entry.description as string | undefined) ?? '',
      default: entry.default === true,
      override: override as Record<string, unknown>,
    };
  });
  if (profiles.filter((p) => p.default).length > 1) {
    throw new ConfigError(`${path}: more than one profile has default: true`);
  }
  return profiles;
}

/** The profile a spawn asked for: the named one, else the default (or first), as KubeSpawner. */
export function chooseProfile(profiles: Profile[], asked: unknown): Profile | undefined {
  if (profiles.length === 0) return undefined;
  if (asked === undefined || asked === null || asked === '') {
    return profiles.find((p) => p.default) ?? profiles[0];
  }
  const found = profiles.find((p) => p.slug === asked);
  if (!found) {
    throw new ConfigError(
      `unknown profile ${JSON.stringify(asked)}; choose one of ${profiles.map((p) => p.slug).join(', ')}`,
    );
  }
  return found;
}
