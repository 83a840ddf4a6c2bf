// RFC 6902 JSON Patch: the operations the webhook emits, and an applier so tests (and anyone
// debugging a patch) can see the pod the API server will store.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export type PatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: JsonValue }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string };

/** Escapes one reference token (RFC 6901): `~` as `~0`, then `/` as `~1`. */
export function escapePointerToken(token: string): string {
  return token.replaceAll('~', '~0').replaceAll('/', '~1');
}

/** Builds a JSON Pointer from unescaped tokens, e.g. ['metadata', 'annotations', 'a/b']. */
export function pointer(...tokens: Array<string | number>): string {
  return tokens.map((token) => `/${escapePointerToken(String(token))}`).join('');
}

export class JsonPatchError extends Error {
  readonly code = 'JSON_PATCH_FAILED';
}

function parsePointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/'))
    throw new JsonPatchError(`'${path}' is not a JSON Pointer: it must start with /`);
  return path
    .slice(1)
    .split('/')
    .map((token) => token.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function isObject(value: JsonValue | undefined): value is { [key: string]: JsonValue } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function arrayIndex(token: string, length: number, path: string, allowEnd: boolean): number {
  if (allowEnd && token === '-') return length;
  if (!/^(0|[1-9]\d*)$/.test(token)) throw new JsonPatchError(`${path}: '${token}' is not an array index`);
  const index = Number(token);
  if (index > length || (!allowEnd && index === length)) {
    throw new JsonPatchError(`${path}: index ${index} is out of bounds (length ${length})`);
  }
  return index;
}

/** The parent container of the pointer's target and the last token. */
function locate(document: JsonValue, path: string): { parent: JsonValue; token: string } {
  const tokens = parsePointer(path);
  const token = tokens.pop();
  if (token === undefined) throw new JsonPatchError('operations on the whole document are not supported');
  let parent = document;
  for (const step of tokens) {
    if (Array.isArray(parent)) parent = parent[arrayIndex(step, parent.length, path, false)]!;
    else if (isObject(parent) && Object.hasOwn(parent, step)) parent = parent[step]!;
    else throw new JsonPatchError(`${path}: '${step}' does not exist`);
  }
  return { parent, token };
}

function get(document: JsonValue, path: string): JsonValue {
  if (path === '') return document;
  const { parent, token } = locate(document, path);
  if (Array.isArray(parent)) return parent[arrayIndex(token, parent.length, path, false)]!;
  if (isObject(parent) && Object.hasOwn(parent, token)) return parent[token]!;
  throw new JsonPatchError(`${path} does not exist`);
}

function add(document: JsonValue, path: string, value: JsonValue): void {
  const { parent, token } = locate(document, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(token, parent.length, path, true), 0, value);
  else if (isObject(parent)) parent[token] = value;
  else throw new JsonPatchError(`${path}: the parent is not an object or array`);
}

function remove(document: JsonValue, path: string): JsonValue {
  const { parent, token } = locate(document, path);
  if (Array.isArray(parent)) return parent.splice(arrayIndex(token, parent.length, path, false), 1)[0]!;
  if (isObject(parent) && Object.hasOwn(parent, token)) {
    const old = parent[token]!;
    delete parent[token];
    return old;
  }
  throw new JsonPatchError(`${path} does not exist`);
}

function deepEqual(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((v, i) => deepEqual(v, b[i]!));
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return (
      keys.length === Object.keys(b).length &&
      keys.every((k) => Object.hasOwn(b, k) && deepEqual(a[k]!, b[k]!))
    );
  }
  return false;
}

/** Applies the operations in order to a copy of `document`; any failing operation fails the patch. */
export function applyPatch<T>(document: T, operations: readonly PatchOperation[]): T {
  const root = { doc: structuredClone(document) as JsonValue };
  const at = (path: string) => {
    if (path !== '' && !path.startsWith('/')) {
      throw new JsonPatchError(`'${path}' is not a JSON Pointer: it must start with /`);
    }
    return `/doc${path}`;
  };
  for (const operation of operations) {
    switch (operation.op) {
      case 'add':
        add(root, at(operation.path), structuredClone(operation.value));
        break;
      case 'remove':
        remove(root, at(operation.path));
        break;
      case 'replace':
        get(root, at(operation.path));
        remove(root, at(operation.path));
        add(root, at(operation.path), structuredClone(operation.value));
        break;
      case 'move': {
        if (operation.path.startsWith(`${operation.from}/`)) {
          throw new JsonPatchError(`cannot move ${operation.from} into its own child ${operation.path}`);
        }
        add(root, at(operation.path), remove(root, at(operation.from)));
        break;
      }
      case 'copy':
        add(root, at(operation.path), structuredClone(get(root, at(operation.from))));
        break;
      case 'test':
        if (!deepEqual(get(root, at(operation.path)), operation.value)) {
          throw new JsonPatchError(
            `test failed: ${operation.path} is not ${JSON.stringify(operation.value)}`,
          );
        }
        break;
      default:
        throw new JsonPatchError(`unknown operation ${JSON.stringify((operation as { op: unknown }).op)}`);
    }
  }
  return root.doc as T;
}
