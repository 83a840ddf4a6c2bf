// Longest-prefix matching on whole path segments: `/user/a` matches `/user/a/x` but not
// `/user/ab`. Lookup cost grows with the request path's depth, never with the table's size.

interface TrieNode<T> {
  value: T | undefined;
  children: Map<string, TrieNode<T>> | undefined;
}

function node<T>(): TrieNode<T> {
  return { value: undefined, children: undefined };
}

export class PathTrie<T> {
  readonly #root: TrieNode<T> = node();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** `prefix` must be normalised: leading slash, no trailing slash except the root `/`. */
  set(prefix: string, value: T): void {
    let current = this.#root;
    forEachSegment(prefix, (segment) => {
      current.children ??= new Map();
      let next = current.children.get(segment);
      if (!next) {
        next = node();
        current.children.set(segment, next);
      }
      current = next;
    });
    if (current.value === undefined) this.#size++;
    current.value = value;
  }

  /** Removes the value at exactly `prefix` and prunes branches left empty. */
  delete(prefix: string): boolean {
    const trail: Array<[TrieNode<T>, string]> = [];
    let current: TrieNode<T> | undefined = this.#root;
    forEachSegment(prefix, (segment) => {
      if (!current) return;
      trail.push([current, segment]);
      current = current.children?.get(segment);
    });
    if (!current || current.value === undefined) return false;
    current.value = undefined;
    this.#size--;
    for (let i = trail.length - 1; i >= 0; i--) {
      const [parent, segment] = trail[i]!;
      const child = parent.children!.get(segment)!;
      if (child.value !== undefined || (child.children && child.children.size > 0)) break;
      parent.children!.delete(segment);
    }
    return true;
  }

  /** The value stored at exactly `prefix`. */
  get(prefix: string): T | undefined {
    let current: TrieNode<T> | undefined = this.#root;
    forEachSegment(prefix, (segment) => {
      current = current?.children?.get(segment);
    });
    return current?.value;
  }

  /**
   * The value of the longest stored prefix of `path` (a request path without the query).
   * Written as a plain loop: it runs once per proxied request.
   */
  lookup(path: string): T | undefined {
    let current = this.#root;
    let best = current.value;
    const length = path.length;
    let start = path.charCodeAt(0) === 47 ? 1 : 0;
    while (start < length && current.children) {
      let end = path.indexOf('/', start);
      if (end === -1) end = length;
      const next = current.children.get(path.slice(start, end));
      if (!next) break;
      current = next;
      if (current.value !== undefined) best = current.value;
      start = end + 1;
    }
    return best;
  }

  *values(): IterableIterator<T> {
    const stack: TrieNode<T>[] = [this.#root];
    while (stack.length > 0) {
      const current = stack.pop()!;
      if (current.value !== undefined) yield current.value;
      if (current.children) for (const child of current.children.values()) stack.push(child);
    }
  }

  clear(): void {
    this.#root.children = undefined;
    this.#root.value = undefined;
    this.#size = 0;
  }
}

function forEachSegment(prefix: string, visit: (segment: string) => void): void {
  if (prefix === '/' || prefix === '') return;
  let start = prefix.charCodeAt(0) === 47 ? 1 : 0;
  while (start <= prefix.length) {
    let end = prefix.indexOf('/', start);
    if (end === -1) end = prefix.length;
    visit(prefix.slice(start, end));
    start = end + 1;
  }
}
