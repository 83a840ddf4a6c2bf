// A bound on the requests one client connection has in flight to the targets at once.
//
// node:http emits every request a client pipelines on one connection at once, while their answers
// go back one after another. Forwarding each straight away let one client hold one target
// connection per pipelined request (2,000 seen). Forwarding more than a few ahead of the answer
// being written buys nothing, so the rest wait here, in order, until an earlier one is done.
import type { Socket } from 'node:net';

/** Requests of one client connection forwarded at once; the rest wait their turn. */
export const PIPELINE_DEPTH = 8;

interface ConnectionSlots {
  active: number;
  waiting: (() => void)[];
}

export class PipelineLimit {
  readonly #depth: number;
  readonly #connections = new WeakMap<Socket, ConnectionSlots>();

  constructor(depth = PIPELINE_DEPTH) {
    this.#depth = depth;
  }

  /**
   * Runs `start` now, or once an earlier request on `socket` is done. `start` gets `release`,
   * which frees the slot: call it when the exchange has ended (or will not start); more calls
   * are ignored.
   */
  run(socket: Socket, start: (release: () => void) => void): void {
    let slots = this.#connections.get(socket);
    if (slots === undefined) {
      slots = { active: 0, waiting: [] };
      this.#connections.set(socket, slots);
    }
    const current = slots;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      current.active--;
      const next = current.waiting.shift();
      if (next !== undefined) next();
    };
    const go = () => {
      current.active++;
      start(release);
    };
    if (current.active < this.#depth) go();
    else current.waiting.push(go);
  }
}
