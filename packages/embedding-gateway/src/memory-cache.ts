// A bounded in-memory LRU of decoded answers in front of the store, for hot keys: a hit here
// costs neither a store round trip nor a gunzip.

export class MemoryCache {
  readonly maxBytes: number;
  #bytes = 0;
  // Map iteration order is insertion order: the first entry is the least recently used.
  readonly #entries = new Map<string, Buffer>();

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get(key: string): Buffer | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    return value;
  }

  delete(key: string): void {
    const previous = this.#entries.get(key);
    if (previous === undefined) return;
    this.#entries.delete(key);
    this.#bytes -= previous.length + key.length;
  }

  set(key: string, value: Buffer): void {
    const cost = value.length + key.length;
    if (cost > this.maxBytes) return;
    const previous = this.#entries.get(key);
    if (previous !== undefined) {
      this.#entries.delete(key);
      this.#bytes -= previous.length + key.length;
    }
    this.#entries.set(key, value);
    this.#bytes += cost;
    for (const [oldest, buffer] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#entries.delete(oldest);
      this.#bytes -= buffer.length + oldest.length;
    }
  }
}
