// Follows a server's output file line by line. A server writes to a file rather than to a pipe
// of the hub's, so it outlives a hub restart: a pipe's reader dies with the hub, and the server's
// next write would fail (EPIPE) or kill it (SIGPIPE). The new hub follows the same file again.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

const maxLineLength = 4096;

export interface OutputTailOptions {
  /** Start at the end of what is there (re-attaching) instead of the beginning. */
  fromEnd?: boolean;
  intervalMs?: number;
  onLine(line: string): void;
}

export class OutputTail {
  readonly #fd: number;
  readonly #onLine: (line: string) => void;
  readonly #timer: NodeJS.Timeout;
  readonly #buffer = Buffer.alloc(64 * 1024);
  #decoder = new StringDecoder('utf8');
  #offset: number;
  #partial = '';
  #closed = false;

  /** Opens `path`; throws when it cannot be read. */
  constructor(path: string, options: OutputTailOptions) {
    this.#fd = openSync(path, 'r');
    this.#onLine = options.onLine;
    this.#offset = options.fromEnd ? fstatSync(this.#fd).size : 0;
    // Unref'd: a hub that exits leaves its servers (and their output) behind on purpose.
    this.#timer = setInterval(() => this.readAvailable(), options.intervalMs ?? 200);
    this.#timer.unref();
  }

  /** Reads what was written since the last read and emits the complete lines. */
  readAvailable(): void {
    if (this.#closed) return;
    try {
      // The file was truncated (a new start of the server): read it from the beginning again.
      if (fstatSync(this.#fd).size < this.#offset) {
        this.#offset = 0;
        this.#decoder = new StringDecoder('utf8');
      }
      for (;;) {
        const read = readSync(this.#fd, this.#buffer, 0, this.#buffer.length, this.#offset);
        if (read === 0) break;
        this.#offset += read;
        this.#take(this.#decoder.write(this.#buffer.subarray(0, read)));
      }
    } catch {
      // A read error ends nothing: the server runs on, and the next read may succeed.
    }
  }

  /** Reads the rest, emits a last unterminated line, and stops following. */
  close(): void {
    if (this.#closed) return;
    this.readAvailable();
    this.#take(this.#decoder.end());
    if (this.#partial) this.#onLine(this.#partial);
    this.#partial = '';
    this.#closed = true;
    clearInterval(this.#timer);
    closeSync(this.#fd);
  }

  #take(text: string): void {
    this.#partial += text;
    let newline = this.#partial.indexOf('\n');
    while (newline !== -1) {
      this.#emit(this.#partial.slice(0, newline).replace(/\r$/, ''));
      this.#partial = this.#partial.slice(newline + 1);
      newline = this.#partial.indexOf('\n');
    }
    if (this.#partial.length > maxLineLength) {
      this.#emit(this.#partial);
      this.#partial = '';
    }
  }

  #emit(line: string): void {
    this.#onLine(line.length > maxLineLength ? `${line.slice(0, maxLineLength)}…` : line);
  }
}
