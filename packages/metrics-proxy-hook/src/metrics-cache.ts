// The last good metrics body, kept so a scrape after the application has exited still gets the
// final numbers. Bounded: a body over the limit is not kept (it is still streamed through).

export interface CachedMetrics {
  /** The body in blocks of up to 64 KiB (never concatenated into one second copy). */
  chunks: readonly Buffer[];
  bytes: number;
  contentType: string | undefined;
  /** performance.now() when the application served it. */
  fetchedAt: number;
}

/**
 * The kept body is copied into blocks of this size: an application that writes line by line
 * sends one HTTP chunk per line, and keeping each as its own Buffer costs a JavaScript object
 * per chunk (a 5 MB body of 60-byte chunks is 83,000 of them, past the sidecar's heap cap).
 */
const blockBytes = 64 * 1024;

/** Collects one response body while it streams past, up to `maxBytes`. */
export class BodyCollector {
  readonly #maxBytes: number;
  #chunks: Buffer[] = [];
  #block: Buffer | undefined;
  #blockUsed = 0;
  #bytes = 0;
  #overflowed = false;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** True once the body grew past the limit; what was collected is dropped then. */
  get overflowed(): boolean {
    return this.#overflowed;
  }

  add(chunk: Buffer): void {
    this.#bytes += chunk.length;
    if (this.#overflowed) return;
    if (this.#bytes > this.#maxBytes) {
      this.#overflowed = true;
      this.#chunks = [];
      this.#block = undefined;
      return;
    }
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#block === undefined || this.#blockUsed === this.#block.length) {
        if (this.#block) this.#chunks.push(this.#block);
        this.#block = Buffer.allocUnsafe(
          Math.min(blockBytes, this.#maxBytes - this.#bytes + chunk.length - offset),
        );
        this.#blockUsed = 0;
      }
      const copied = chunk.copy(this.#block, this.#blockUsed, offset);
      this.#blockUsed += copied;
      offset += copied;
    }
  }

  /** The collected body, or undefined when it was over the limit. */
  finish(contentType: string | undefined, fetchedAt: number): CachedMetrics | undefined {
    if (this.#overflowed) return undefined;
    if (this.#block && this.#blockUsed > 0) this.#chunks.push(this.#block.subarray(0, this.#blockUsed));
    this.#block = undefined;
    return { chunks: this.#chunks, bytes: this.#bytes, contentType, fetchedAt };
  }
}

/** `32Mi`, `512Ki`, `20M`, `1G` or a plain number of bytes. */
export function parseByteSize(text: string): number | undefined {
  const match = /^(\d+)(Ki|Mi|Gi|K|M|G)?$/.exec(text.trim());
  if (!match) return undefined;
  const unit = match[2] ?? '';
  const factor: Record<string, number> = {
    '': 1,
    K: 1e3,
    M: 1e6,
    G: 1e9,
    Ki: 1024,
    Mi: 1024 ** 2,
    Gi: 1024 ** 3,
  };
  const value = Number(match[1]) * factor[unit]!;
  return Number.isSafeInteger(value) ? value : undefined;
}
