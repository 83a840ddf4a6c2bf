// Command-line flags and their environment fallbacks, parsed once at the edge into plain
// values. Every error names the flag (or variable) and the accepted form.
import { UsageError } from './errors.ts';

export type FlagKind = 'string' | 'integer' | 'boolean' | 'list' | 'duration';

export interface FlagSpec {
  /** Long name without dashes, e.g. `api-port`. Booleans defaulting to true parse `--no-<name>`. */
  name: string;
  kind: FlagKind;
  help: string;
  /** Placeholder shown in help, e.g. `<port>`. */
  arg?: string;
  short?: string;
  /** Environment variable consulted when the flag is absent (flags win). */
  env?: string;
  default?: string | number | boolean;
  /** Inclusive bounds for `integer`. */
  min?: number;
  max?: number;
  /** Allowed values for `string`. */
  choices?: readonly string[];
}

type FlagValue = string | number | boolean | string[] | undefined;

/** The spec named `N` in `S`; never when `S` is typed only as `FlagSpec[]`. */
type SpecNamed<S extends readonly FlagSpec[], N extends string> = Extract<S[number], { readonly name: N }>;

/**
 * Names of the flags of `kind` in `S`, so a misspelt or mistyped flag fails to compile; any
 * string when the specs are typed only as `FlagSpec[]`.
 */
export type FlagName<
  S extends readonly FlagSpec[],
  K extends FlagKind = FlagKind,
> = string extends S[number]['name'] ? string : Extract<S[number], { readonly kind: K }>['name'];

/**
 * `T` when the spec declares a default (the flag then always has a value), else `T | undefined`.
 * Specs declared `as const` keep their defaults in their type; `FlagSpec[]` gives `T | undefined`.
 */
export type FlagResult<S extends readonly FlagSpec[], N extends string, T> = [SpecNamed<S, N>] extends [never]
  ? T | undefined
  : SpecNamed<S, N> extends { readonly default: string | number | boolean }
    ? T
    : T | undefined;

/** A string flag's value: one of its `choices` when the spec lists them (as const). */
type StringOf<S extends readonly FlagSpec[], N extends string> =
  SpecNamed<S, N> extends { readonly choices: readonly (infer C extends string)[] } ? C : string;

/** Parsed flags; a spec's default is returned when the flag and its variable were not given. */
export class ParsedFlags<S extends readonly FlagSpec[] = readonly FlagSpec[]> {
  readonly #values: Map<string, FlagValue>;
  readonly #explicit: Set<string>;
  constructor(values: Map<string, FlagValue>, explicit: Set<string>) {
    this.#values = values;
    this.#explicit = explicit;
  }
  /** True when the flag or its environment variable was given. */
  has(name: FlagName<S>): boolean {
    return this.#explicit.has(name);
  }
  string<N extends FlagName<S, 'string'>>(name: N): FlagResult<S, N, StringOf<S, N>> {
    return this.#values.get(name) as FlagResult<S, N, StringOf<S, N>>;
  }
  integer<N extends FlagName<S, 'integer'>>(name: N): FlagResult<S, N, number> {
    return this.#values.get(name) as FlagResult<S, N, number>;
  }
  /** Durations are returned in milliseconds. */
  duration<N extends FlagName<S, 'duration'>>(name: N): FlagResult<S, N, number> {
    return this.#values.get(name) as FlagResult<S, N, number>;
  }
  boolean(name: FlagName<S, 'boolean'>): boolean {
    return this.#values.get(name) === true;
  }
  list(name: FlagName<S, 'list'>): string[] {
    return (this.#values.get(name) as string[] | undefined) ?? [];
  }
}

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses `500ms`, `1.5s`, `2m`, `1h30m` (Go's form, as the seeds' components take) or bare seconds. */
export function parseDuration(text: string): number | undefined {
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (let match = re.exec(text); match; match = re.exec(text)) {
    total += Number(match[1]) * (durationUnits[match[2]!] ?? 0);
    end = re.lastIndex;
  }
  return end === text.length && end > 0 ? total : undefined;
}

function describe(spec: FlagSpec): string {
  switch (spec.kind) {
    case 'integer':
      return spec.min !== undefined && spec.max !== undefined
        ? `an integer from ${spec.min} to ${spec.max}`
        : 'an integer';
    case 'duration':
      return 'a duration such as 500ms, 30s or 2m (bare numbers are seconds)';
    case 'string':
      return spec.choices ? `one of ${spec.choices.join(', ')}` : 'a value';
    default:
      return 'a value';
  }
}

function convert(spec: FlagSpec, raw: string, source: string): string | number {
  if (spec.kind === 'integer') {
    const value = /^-?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
    const inRange =
      Number.isSafeInteger(value) &&
      (spec.min === undefined || value >= spec.min) &&
      (spec.max === undefined || value <= spec.max);
    if (!inRange) throw new UsageError(`${source} expects ${describe(spec)}, got '${raw}'`);
    return value;
  }
  if (spec.kind === 'duration') {
    const value = parseDuration(raw.trim());
    if (value === undefined) throw new UsageError(`${source} expects ${describe(spec)}, got '${raw}'`);
    return value;
  }
  if (spec.choices && !spec.choices.includes(raw)) {
    throw new UsageError(`${source} expects ${describe(spec)}, got '${raw}'`);
  }
  return raw;
}

function envBoolean(raw: string, source: string): boolean {
  const lowered = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(lowered)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(lowered)) return false;
  throw new UsageError(`${source} expects true or false, got '${raw}'`);
}

/**
 * Parses argv against the specs. Unknown flags, missing arguments and malformed values throw
 * UsageError. Positional arguments are rejected unless `positional` names what they are.
 */
export function parseFlags<const S extends readonly FlagSpec[]>(
  specs: S,
  argv: readonly string[],
  env: NodeJS.ProcessEnv = {},
): ParsedFlags<Readonly<S>> {
  const byName = new Map(specs.map((spec) => [spec.name, spec]));
  const byShort = new Map(specs.filter((s) => s.short).map((spec) => [spec.short!, spec]));
  const values = new Map<string, FlagValue>();
  const explicit = new Set<string>();

  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    let spec: FlagSpec | undefined;
    let inline: string | undefined;
    let negated = false;
    if (token.startsWith('--')) {
      const eq = token.indexOf('=');
      const name = eq === -1 ? token.slice(2) : token.slice(2, eq);
      inline = eq === -1 ? undefined : token.slice(eq + 1);
      spec = byName.get(name);
      if (!spec && name.startsWith('no-')) {
        spec = byName.get(name.slice(3));
        negated = spec?.kind === 'boolean';
        if (!negated) spec = undefined;
      }
    } else if (token.startsWith('-') && token.length === 2) {
      spec = byShort.get(token.slice(1));
    } else {
      throw new UsageError(`unexpected argument '${token}'; flags start with --`);
    }
    if (!spec) throw new UsageError(`unknown flag '${token}'`);
    const source = `--${spec.name}`;
    explicit.add(spec.name);
    if (spec.kind === 'boolean') {
      if (inline !== undefined) {
        values.set(spec.name, envBoolean(inline, source) !== negated);
      } else {
        values.set(spec.name, !negated);
      }
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('--') && next.length > 2)) {
        throw new UsageError(`${source} needs ${spec.arg ?? describe(spec)}`);
      }
      raw = next;
      i++;
    }
    if (spec.kind === 'list') {
      const list = (values.get(spec.name) as string[] | undefined) ?? [];
      list.push(raw);
      values.set(spec.name, list);
    } else {
      values.set(spec.name, convert(spec, raw, source));
    }
  }

  for (const spec of specs) {
    if (values.has(spec.name)) continue;
    const raw = spec.env ? env[spec.env] : undefined;
    if (raw !== undefined && raw !== '') {
      explicit.add(spec.name);
      if (spec.kind === 'boolean') values.set(spec.name, envBoolean(raw, spec.env!));
      else if (spec.kind === 'list') values.set(spec.name, raw.split(','));
      else values.set(spec.name, convert(spec, raw, spec.env!));
    } else if (spec.default !== undefined) {
      values.set(
        spec.name,
        spec.kind === 'duration' && typeof spec.default === 'string'
          ? parseDuration(spec.default)
          : spec.default,
      );
    }
  }
  return new ParsedFlags<Readonly<S>>(values, explicit);
}

/** Help text in the familiar `Options:` layout. */
export function formatHelp(usage: string, specs: readonly FlagSpec[]): string {
  const rows = specs.map((spec) => {
    const names = `${spec.short ? `-${spec.short}, ` : ''}--${
      spec.kind === 'boolean' && spec.default === true ? `no-${spec.name}` : spec.name
    }`;
    const left = spec.arg ? `${names} ${spec.arg}` : names;
    const extras: string[] = [];
    if (spec.default !== undefined && spec.kind !== 'boolean') extras.push(`default: ${spec.default}`);
    if (spec.env) extras.push(`env: ${spec.env}`);
    return [left, extras.length ? `${spec.help} (${extras.join('; ')})` : spec.help] as const;
  });
  const width = Math.min(44, Math.max(...rows.map(([left]) => left.length)) + 2);
  const lines = rows.map(([left, right]) =>
    left.length + 2 > width ? `  ${left}\n  ${' '.repeat(width)}${right}` : `  ${left.padEnd(width)}${right}`,
  );
  return `Usage: ${usage}\n\nOptions:\n${lines.join('\n')}\n`;
}
