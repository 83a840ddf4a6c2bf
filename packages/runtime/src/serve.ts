// The operational shape every Seahorse server shares: listeners with clear bind errors,
// health and readiness, and a shutdown that turns unready, waits a lameduck period, drains,
// then exits within the termination grace period.
import { chmodSync, unlinkSync } from 'node:fs';
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Server as NetServer, Socket } from 'node:net';
import { StartupError } from './errors.ts';
import type { Logger } from './log.ts';

export type ListenAddress = { host: string; port: number } | { path: string };

/** Human form of an address, for logs and messages. */
export function formatAddress(address: ListenAddress): string {
  if ('path' in address) return `unix:${address.path}`;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host || '*';
  return `${host}:${address.port}`;
}

/**
 * Binds a server. Errors become StartupError naming the address and the flag that sets it, so
 * the process ends with one line instead of logging and running on without a listener.
 */
export function listen(server: NetServer, address: ListenAddress, flag: string): Promise<ListenAddress> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const where = formatAddress(address);
      const hint =
        error.code === 'EADDRINUSE'
          ? `${where} is already in use; stop the process holding it or choose another with ${flag}`
          : error.code === 'EACCES'
            ? `permission denied binding ${where}; use a port above 1023 or another ${flag}`
            : error.code === 'EADDRNOTAVAIL'
              ? `${where} is not an address of this machine; fix ${flag}`
              : `cannot listen on ${where} (${flag}): ${error.message}`;
      reject(new StartupError(hint, { cause: error }));
    };
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      const bound = server.address();
      if ('path' in address) {
        // Sockets are for local clients only, as a unix socket's owner would expect.
        chmodSync(address.path, 0o660);
        resolve(address);
      } else if (bound && typeof bound === 'object') {
        resolve({ host: address.host, port: bound.port });
      } else {
        resolve(address);
      }
    };
    if ('path' in address) {
      try {
        unlinkSync(address.path);
      } catch {
        // no stale socket to remove
      }
      server.listen(address.path, done);
    } else if (address.host === '' || address.host === '*') {
      server.listen(address.port, done);
    } else {
      server.listen(address.port, address.host, done);
    }
  });
}

export interface LifecycleOptions {
  logger: Logger;
  /** Time spent unready but still serving, so load balancers stop sending traffic. */
  lameduckMs: number;
  /** Hard deadline from the signal to exit. */
  terminationGracePeriodMs: number;
}

/** Tracks servers and their connections; owns readiness and the shutdown sequence. */
export class Lifecycle {
  readonly #options: LifecycleOptions;
  readonly #servers: NetServer[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #drainHooks: Array<() => void> = [];
  readonly #closers: Array<() => Promise<void> | void> = [];
  #ready = false;
  #shutdown: Promise<void> | undefined;
  #notReadyReason = 'starting';

  constructor(options: LifecycleOptions) {
    this.#options = options;
  }

  get ready(): boolean {
    return this.#ready && !this.#shutdown;
  }

  get shuttingDown(): boolean {
    return this.#shutdown !== undefined;
  }

  setReady(ready: boolean, reason = ''): void {
    this.#ready = ready;
    this.#notReadyReason = reason;
  }

  /** Remembers a server so shutdown can stop it and drain its connections. */
  track(server: NetServer): void {
    this.#servers.push(server);
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    server.on('secureConnection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
  }

  /** Runs when draining starts, e.g. to close long-lived websockets that would never drain. */
  onDrain(hook: () => void): void {
    this.#drainHooks.push(hook);
  }

  /** Runs after connections are gone: timers, stores, pid files. */
  onClose(closer: () => Promise<void> | void): void {
    this.#closers.push(closer);
  }

  /**
   * Answers `/healthz` (alive) and `/readyz` (ready for traffic) when asked; returns false for
   * any other path so the caller can go on.
   */
  handleProbe(req: IncomingMessage, res: ServerResponse, paths = { live: '/healthz', ready: '/readyz' }) {
    const path = req.url?.split('?', 1)[0];
    if (path === paths.live) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"status":"ok"}');
      return true;
    }
    if (path === paths.ready) {
      const ready = this.ready;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          ready
            ? { status: 'ready' }
            : { status: 'not ready', reason: this.shuttingDown ? 'shutting down' : this.#notReadyReason },
        ),
      );
      return true;
    }
    return false;
  }

  /** Starts the shutdown sequence once; later calls return the same promise. */
  shutdown(reason: string): Promise<void> {
    this.#shutdown ??= this.#runShutdown(reason);
    return this.#shutdown;
  }

  /** SIGTERM/SIGINT start a graceful shutdown and exit 0; a second signal exits at once. */
  installSignalHandlers(exit: (code: number) => void = (code) => process.exit(code)): void {
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.shuttingDown) {
        this.#options.logger.warn({ signal }, 'second signal, exiting now');
        exit(1);
        return;
      }
      this.shutdown(signal).then(
        () => exit(0),
        (error: unknown) => {
          this.#options.logger.error({ err: error }, 'shutdown failed');
          exit(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }

  async #runShutdown(reason: string): Promise<void> {
    const { logger, lameduckMs, terminationGracePeriodMs } = this.#options;
    const deadline = Date.now() + terminationGracePeriodMs;
    logger.info({ reason, lameduckMs, terminationGracePeriodMs }, 'shutting down');
    if (lameduckMs > 0) await delay(Math.min(lameduckMs, terminationGracePeriodMs));
    for (const server of this.#servers) server.close();
    for (const hook of this.#drainHooks) hook();
    // Idle keep-alive connections close now; busy ones close after their response.
    while (this.#sockets.size > 0 && Date.now() < deadline) {
      for (const server of this.#servers) (server as HttpServer).closeIdleConnections?.();
      await delay(Math.min(25, Math.max(1, deadline - Date.now())));
    }
    if (this.#sockets.size > 0) {
      logger.warn({ connections: this.#sockets.size }, 'grace period over, closing remaining connections');
      for (const socket of this.#sockets) socket.destroy();
    }
    for (const closer of this.#closers) {
      try {
        await closer();
      } catch (error) {
        logger.error({ err: error }, 'closing a resource failed');
      }
    }
    logger.info({ reason }, 'stopped');
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
