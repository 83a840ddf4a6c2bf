// The original Go webhook's command line, accepted beside ours: its flag names become aliases
// of the preferred names, and the sidecar's positional TARGET_URL becomes --target. Manifests
// written for the original then run unchanged.
import { type FlagSpec, UsageError } from '@seahorse/runtime';

export interface CommandLineShape {
  /** Original name → our preferred name, e.g. certDir → cert-dir. */
  aliases: Readonly<Record<string, string>>;
  /** The flag a single positional argument stands for (the sidecar's TARGET_URL). */
  positional?: string;
}

export const webhookCommandLine: CommandLineShape = {
  aliases: {
    certDir: 'cert-dir',
    'metrics-bind-address': 'metrics-address',
    'health-probe-bind-address': 'probe-address',
  },
};

export const sidecarCommandLine: CommandLineShape = { aliases: {}, positional: 'target' };

/** Rewrites argv into our spelling; parseFlags then does the rest (and every check). */
export function normalizeArgv(specs: readonly FlagSpec[], shape: CommandLineShape, argv: readonly string[]) {
  const kinds = new Map(specs.map((spec) => [spec.name, spec.kind]));
  const out: string[] = [];
  let positional: string | undefined;
  let flagGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '--') {
      // Everything after `--` is positional, as in Go's pflag.
      for (const rest of argv.slice(i + 1)) positional = takePositional(shape, positional, rest);
      break;
    }
    if (token.startsWith('--') && token.length > 2) {
      const eq = token.indexOf('=');
      const name = eq === -1 ? token.slice(2) : token.slice(2, eq);
      const canonical = shape.aliases[name] ?? name;
      if (canonical === shape.positional) flagGiven = true;
      const kind = kinds.get(canonical);
      if (kind === 'boolean' && eq !== -1) {
        // The original's booleans are Go's (`--metrics-secure=t`): exactly strconv.ParseBool's words.
        out.push(goBoolean(token.slice(eq + 1), canonical) ? `--${canonical}` : `--no-${canonical}`);
        continue;
      }
      out.push(eq === -1 ? `--${canonical}` : `--${canonical}${token.slice(eq)}`);
      // A value in the next token travels with its flag unchanged.
      if (eq === -1 && kind !== undefined && kind !== 'boolean' && i + 1 < argv.length) {
        out.push(argv[++i]!);
      }
      continue;
    }
    if (token.startsWith('-') && token.length > 1) {
      out.push(token);
      continue;
    }
    positional = takePositional(shape, positional, token);
  }
  if (positional !== undefined) {
    if (flagGiven) {
      throw new UsageError(
        `the ${shape.positional} is given twice: as the argument '${positional}' and as --${shape.positional}; give one`,
      );
    }
    out.push(`--${shape.positional}=${positional}`);
  }
  return out;
}

const goTrue = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const goFalse = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** A boolean flag's `=value` as Go's strconv.ParseBool reads it; anything else is a usage error. */
export function goBoolean(value: string, flag: string): boolean {
  if (goTrue.has(value)) return true;
  if (goFalse.has(value)) return false;
  throw new UsageError(
    `--${flag} expects a boolean (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False), got '${value}'`,
  );
}

function takePositional(shape: CommandLineShape, current: string | undefined, token: string): string {
  if (!shape.positional) throw new UsageError(`unexpected argument '${token}'; flags start with --`);
  if (current !== undefined) {
    throw new UsageError(
      `unexpected argument '${token}': only one ${shape.positional.toUpperCase()} URL is taken (already '${current}')`,
    );
  }
  return token;
}
