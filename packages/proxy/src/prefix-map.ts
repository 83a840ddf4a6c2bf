// Longest-prefix matching on whole path segments: `/user/a` matches `/user/a/x` but not
// `/user/ab`. One Map holds every prefix (in insertion order, for the API's listing); a lookup
// probes the request path cut at its slashes, longest first, and never probes a cut deeper than
// the deepest stored prefix — two or three Map reads for JupyterHub's `/user/<name>[/<server>]`,
// whatever the table's size. A trie did the same work with a node, a Map and a segment string per
// prefix: about 200 bytes more per route (20 MB at 100k routes).

export class PrefixMap<T> {
  readonly #values = new Map<string, T>();
  /** How many stored prefixes have each depth (number of slashes; `/` has depth 0). */
  readonly #depths: number[] = [];
  #maxDepth = 0;

  get size(): number {
    return this.#values.size;
  }

  /**
   * `prefix` must be normalised: leading slash, no trailing slash except the root `/`.
   * A prefix set again moves to the end of the insertion order.
   */
  set(prefix: string, value: T): void {
    if (!this.#values.delete(prefix)) this.#count(prefix, 1);
    this.#values.set(prefix, value);
  }

  delete(prefix: string): boolean {
    if (!this.#values.delete(prefix)) return false;
    this.#count(prefix, -1);
    return true;
  }

  /** The value stored at exactly `prefix`. */
  get(prefix: string): T | undefined {
    return this.#values.get(prefix);
  }

  /**
   * The value of the longest stored prefix of `path` (a request path without the query,
   * starting with `/`). Written as a plain loop: it runs once per proxied request.
   */
  lookup(path: string): T | undefined {
    const values = this.#values;
    const length = path.length;
    // Cut after the deepest segment a stored prefix can have.
    let end = length;
    let slashes = 0;
    for (let i = 0; i < length; i++) {
      if (path.charCodeAt(i) === 47 && ++slashes > this.#maxDepth) {
        end = i;
        break;
      }
    }
    while (end > 0) {
      const found = values.get(end === length ? path : path.slice(0, end));
      if (found !== undefined) return found;
      end = path.lastIndexOf('/', end - 1);
    }
    return values.get('/');
  }

  /** Values in insertion order. */
  values(): IterableIterator<T> {
    return this.#values.values();
  }

  clear(): void {
    this.#values.clear();
    this.#depths.length = 0;
    this.#maxDepth = 0;
  }

  #count(prefix: string, delta: number): void {
    let depth = 0;
    if (prefix !== '/') for (let i = 0; i < prefix.length; i++) if (prefix.charCodeAt(i) === 47) depth++;
    this.#depths[depth] = (this.#depths[depth] ?? 0) + delta;
    if (delta > 0 && depth > this.#maxDepth) this.#maxDepth = depth;
    while (this.#maxDepth > 0 && !this.#depths[this.#maxDepth]) this.#maxDepth--;
  }
}
