// A TCP relay between a hub and PostgreSQL that a test breaks on purpose: it cuts every
// connection, or hangs them as a hung proxy, NAT or network path does.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { freePort } from '@seahorse/runtime/testing';

/** `url` with its host and port replaced: the same database reached through a relay on `port`. */
export function viaRelay(url: string, port: number): string {
  const via = new URL(url);
  via.hostname = '127.0.0.1';
  via.port = String(port);
  return via.href;
}

export class PostgresRelay {
  readonly port: number;
  #mode: 'pass' | 'cut' | 'hang' = 'pass';
  /** Client and server side of each connection; one taken while hung is held as [client, client]. */
  readonly #pairs = new Set<[Socket, Socket]>();
  readonly #server: Server;
  readonly #target: number;
  private constructor(port: number, target: number) {
    this.port = port;
    this.#target = target;
    this.#server = createServer((client) => {
      client.on('error', () => undefined);
      if (this.#mode === 'cut') client.destroy();
      else if (this.#mode === 'hang') {
        client.pause();
        this.#pairs.add([client, client]);
      } else this.#pipe(client);
    });
  }
  /** A relay on a free loopback port to PostgreSQL on `target`. */
  static async start(target: number): Promise<PostgresRelay> {
    const relay = new PostgresRelay(await freePort(), target);
    await new Promise<void>((resolve) => relay.#server.listen(relay.port, '127.0.0.1', resolve));
    return relay;
  }
  #pipe(client: Socket) {
    const upstream = createConnection(this.#target, '127.0.0.1');
    upstream.on('error', () => undefined);
    const pair: [Socket, Socket] = [client, upstream];
    this.#pairs.add(pair);
    const end = () => {
      if (this.#mode === 'hang') return; // a hung path passes no close on either
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  }
  /** `url` of the database behind, as reached through this relay. */
  url(of: string): string {
    return viaRelay(of, this.port);
  }
  /** Drops every connection and refuses new ones. */
  cut(): void {
    this.#mode = 'cut';
    for (const [a, b] of this.#pairs) {
      a.destroy();
      b.destroy();
    }
    this.#pairs.clear();
  }
  /**
   * Hangs: nothing more passes either way and nothing is closed — not even when one side
   * closes. Both sockets stay open, so the kernel still answers PostgreSQL's keepalives.
   */
  hang(): void {
    this.#mode = 'hang';
    for (const [a, b] of this.#pairs) {
      a.unpipe();
      b.unpipe();
      a.pause();
      b.pause();
    }
  }
  /**
   * Hangs, and closes the PostgreSQL side of every connection while the hub's side stays open
   * and silent: the server ends the session and frees its locks, the hub hears nothing — a
   * failover of PostgreSQL to another host, a proxy restarted on the database side, the
   * server's keepalive ending a session across a partition.
   */
  cutServerSide(): void {
    this.hang();
    for (const [a, b] of this.#pairs) if (a !== b) b.destroy();
  }
  /** Back to relaying; the connections it held are dropped (the path "recovers" with a reset). */
  pass(): void {
    this.cut();
    this.#mode = 'pass';
  }
  async close(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
