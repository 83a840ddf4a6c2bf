// Concurrent identical misses share one upstream call. The call is cancelled only when every
// client waiting for it has gone; each waiter that leaves early gets ClientGoneError alone.
import { ClientGoneError } from './errors.ts';

class Flight<T> {
  readonly controller = new AbortController();
  readonly promise: Promise<T>;
  waiters = 0;
  settled = false;

  constructor(run: (signal: AbortSignal) => Promise<T>) {
    this.promise = run(this.controller.signal).finally(() => {
      this.settled = true;
    });
    // Waiters observe the outcome; this keeps a flight nobody waits for from being unhandled.
    this.promise.catch(() => {});
  }

  join(signal: AbortSignal): Promise<T> {
    if (signal.aborted) return Promise.reject(new ClientGoneError());
    this.waiters++;
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const settle = () => {
        done = true;
        this.waiters--;
        signal.removeEventListener('abort', leave);
      };
      const leave = () => {
        if (done) return;
        settle();
        if (this.waiters === 0 && !this.settled) this.controller.abort();
        reject(new ClientGoneError());
      };
      signal.addEventListener('abort', leave, { once: true });
      this.promise.then(
        (value) => {
          if (done) return;
          settle();
          resolve(value);
        },
        (error: unknown) => {
          if (done) return;
          settle();
          reject(error);
        },
      );
    });
  }
}

export class Coalescer<T> {
  readonly #flights = new Map<string, Flight<T>>();

  get inFlight(): number {
    return this.#flights.size;
  }

  /** Clients waiting on a flight, the first one included. */
  get waiters(): number {
    let total = 0;
    for (const flight of this.#flights.values()) total += flight.waiters;
    return total;
  }

  /** Runs `run` for `key` unless a run for it is in flight; `joined` tells which happened. */
  run(
    key: string,
    signal: AbortSignal,
    run: (signal: AbortSignal) => Promise<T>,
  ): { joined: boolean; result: Promise<T> } {
    const existing = this.#flights.get(key);
    if (existing && !existing.controller.signal.aborted)
      return { joined: true, result: existing.join(signal) };
    const flight = new Flight(run);
    this.#flights.set(key, flight);
    flight.promise
      .finally(() => {
        if (this.#flights.get(key) === flight) this.#flights.delete(key);
      })
      .catch(() => {});
    return { joined: false, result: flight.join(signal) };
  }
}
