// Python str.format-style templates in spawner settings ({username}, {servername}, {user},
// {is_admin}, ...), as JupyterHub's format_string, KubeSpawner's _expand_user_properties and the
// seed's DynamicKubeSpawner render them. Names are escaped as KubeSpawner escapes them, so a user
// called "../root" becomes "-2e-2e-2froot" and cannot climb out of a directory named after them.
import type { JsonValue } from './spawner.ts';
import { TemplateError } from './spawner-errors.ts';

const safeChars = /^[a-z0-9]$/;

/**
 * `escapism.escape(name, safe=[a-z0-9], escape_char='-').lower()`: every other character
 * becomes `-` plus the upper-case hex of each of its UTF-8 bytes (unpadded, as escapism's
 * `'%X'`), then the whole is lower-cased. The result holds only [a-z0-9-].
 */
export function escapeName(name: string): string {
  let out = '';
  for (const char of name) {
    if (safeChars.test(char)) {
      out += char;
      continue;
    }
    for (const byte of Buffer.from(char, 'utf8')) out += `-${byte.toString(16).toUpperCase()}`;
  }
  return out.toLowerCase();
}

export interface TemplateInput {
  user: { name: string; admin: boolean; id?: number };
  /** '' for the default server. */
  serverName: string;
  /** The server's prefix ('/user/<name>/'): JupyterHub's {base_url}. */
  servicePrefix?: string;
}

/** The fields a template may use; every value is a string, as Python's format renders them. */
export type TemplateNamespace = Readonly<Record<string, string>>;

/**
 * The namespace of spawner templates. `{username}`, `{user}` and `{servername}` are escaped
 * (safe in paths, volume names and DNS labels); `{unescaped_username}` and
 * `{unescaped_servername}` are the raw names for where a person wants to read them.
 * `{is_admin}` and `{is_not_admin}` render as Python renders booleans ('True'/'False').
 */
export function templateNamespace(input: TemplateInput): TemplateNamespace {
  if (input.user.name === '') throw new TemplateError('a user name is empty; templates need a user name');
  const username = escapeName(input.user.name);
  const namespace: Record<string, string> = {
    username,
    user: username,
    unescaped_username: input.user.name,
    legacy_escape_username: legacyEscape(input.user.name),
    servername: escapeName(input.serverName),
    unescaped_servername: input.serverName,
    is_admin: input.user.admin ? 'True' : 'False',
    is_not_admin: input.user.admin ? 'False' : 'True',
  };
  if (input.user.id !== undefined) namespace.userid = String(input.user.id);
  if (input.servicePrefix !== undefined) namespace.base_url = input.servicePrefix;
  return namespace;
}

/** KubeSpawner's pre-escapism scheme: each unsafe character of the lower-cased name becomes '-'. */
function legacyEscape(name: string): string {
  let out = '';
  for (const char of name.toLowerCase()) out += safeChars.test(char) ? char : '-';
  return out;
}

/**
 * Renders `template` as Python's `template.format(**namespace)`: `{name}` is replaced, `{{` and
 * `}}` are literal braces. An unknown field, a format spec or a stray brace throws a
 * TemplateError that names the template and the fields it may use.
 */
export function formatTemplate(template: string, namespace: TemplateNamespace): string {
  if (template.indexOf('{') === -1 && template.indexOf('}') === -1) return template;
  let out = '';
  let i = 0;
  while (i < template.length) {
    const char = template[i]!;
    if (char === '{') {
      if (template[i + 1] === '{') {
        out += '{';
        i += 2;
        continue;
      }
      const end = template.indexOf('}', i + 1);
      if (end === -1) throw templateError(template, "a '{' is not closed (write '{{' for a literal brace)");
      const field = template.slice(i + 1, end);
      if (!/^[a-z_][a-z0-9_]*$/i.test(field)) {
        throw templateError(
          template,
          `'{${field}}' is not a plain field name (format specs are not supported)`,
        );
      }
      const value = namespace[field];
      if (value === undefined || !Object.hasOwn(namespace, field)) {
        throw templateError(template, `'{${field}}' is not a known field`, namespace);
      }
      out += value;
      i = end + 1;
    } else if (char === '}') {
      if (template[i + 1] !== '}')
        throw templateError(template, "a single '}' (write '}}' for a literal brace)");
      out += '}';
      i += 2;
    } else {
      out += char;
      i++;
    }
  }
  return out;
}

function templateError(template: string, problem: string, namespace?: TemplateNamespace): TemplateError {
  const known = namespace ? `; known fields: ${Object.keys(namespace).sort().join(', ')}` : '';
  return new TemplateError(`template ${JSON.stringify(template)}: ${problem}${known}`);
}

/** Renders every string inside a JSON value (keys stay as they are); other values are copied. */
export function expandTemplates<T extends JsonValue>(value: T, namespace: TemplateNamespace): T {
  if (typeof value === 'string') return formatTemplate(value, namespace) as T;
  if (Array.isArray(value)) return value.map((item) => expandTemplates(item, namespace)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, JsonValue> = {};
    for (const [key, item] of Object.entries(value)) out[key] = expandTemplates(item, namespace);
    return out as T;
  }
  return value;
}

/** The seed's `_strtobool`: a rendered '{is_not_admin}' is true when it reads '1' or 'true' in any case. */
export function templateBoolean(rendered: string): boolean {
  const lower = rendered.toLowerCase();
  return lower === '1' || lower === 'true';
}
