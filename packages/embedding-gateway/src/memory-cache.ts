// A bounded in-memory LRU in front of the store, for hot keys: a hit here costs no store round
// trip. It keeps the gzip objects, and beside one the JSON it decodes to once a plain client
// asked for it (so a plain hit costs no gunzip either); both count against the byte budget.

interface Entry {
  gzipped: Buffer;
  json: Buffer | undefined;
}

const costOf = (key: string, entry: Entry) => key.length + entry.gzipped.length + (entry.json?.length ?? 0);

export class MemoryCache {
  readonly maxBytes: number;
  #bytes = 0;
  // Map iteration order is insertion order: the first entry is the least recently used.
  readonly #entries = new Map<string, Entry>();

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The gzip object, made the most recently used. */
  get(key: string): Buffer | undefined {
    return this.#touch(key)?.gzipped;
  }

  /** The decoded JSON kept beside the object, if a plain client asked for it before. */
  json(key: string): Buffer | undefined {
    return this.#entries.get(key)?.json;
  }

  set(key: string, gzipped: Buffer): void {
    this.#put(key, { gzipped, json: undefined });
  }

  /** Keeps the decoded form beside an object already here (same bytes), within the budget. */
  setJson(key: string, gzipped: Buffer, json: Buffer): void {
    const entry = this.#entries.get(key);
    if (entry?.gzipped !== gzipped) return;
    this.#put(key, { gzipped, json });
  }

  delete(key: string): void {
    const previous = this.#entries.get(key);
    if (previous === undefined) return;
    this.#entries.delete(key);
    this.#bytes -= costOf(key, previous);
  }

  #touch(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry;
  }

  #put(key: string, entry: Entry): void {
    const cost = costOf(key, entry);
    if (cost > this.maxBytes) return;
    this.delete(key);
    this.#entries.set(key, entry);
    this.#bytes += cost;
    for (const [oldest, old] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#entries.delete(oldest);
      this.#bytes -= costOf(oldest, old);
    }
  }
}
