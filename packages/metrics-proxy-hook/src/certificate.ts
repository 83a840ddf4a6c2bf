// The serving certificate, read from the directory cert-manager's Secret is mounted at and
// swapped into the running server when it changes: the kubelet replaces the files with an
// atomic symlink switch, which fs.watch sees; a periodic re-read covers missed notifications.

import { X509Certificate } from 'node:crypto';
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, type Server as TlsServer } from 'node:tls';
import { type Logger, StartupError } from '@seahorse/runtime';

export interface KeyPair {
  cert: Buffer;
  key: Buffer;
}

export interface CertificateReloaderOptions {
  pollIntervalMs: number;
  log: Logger;
  onReload?: (ok: boolean) => void;
}

export class CertificateReloader {
  readonly #dir: string;
  readonly #options: CertificateReloaderOptions;
  #current: KeyPair | undefined;
  readonly #servers = new Set<Pick<TlsServer, 'setSecureContext'>>();
  #watcher: FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;

  constructor(dir: string, options: CertificateReloaderOptions) {
    this.#dir = dir;
    this.#options = options;
  }

  get certPath(): string {
    return join(this.#dir, 'tls.crt');
  }

  get keyPath(): string {
    return join(this.#dir, 'tls.key');
  }

  /** Reads and checks the pair; StartupError names the file and what to do. */
  load(): KeyPair {
    const read = (path: string) => {
      try {
        return readFileSync(path);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
        throw new StartupError(
          `--cert-dir: cannot read ${path} (${code}); mount the webhook's TLS Secret (tls.crt, tls.key) there`,
        );
      }
    };
    const pair = { cert: read(this.certPath), key: read(this.keyPath) };
    try {
      createSecureContext(pair);
    } catch (error) {
      throw new StartupError(
        `--cert-dir: ${this.certPath} and ${this.keyPath} are not a usable pair: ${(error as Error).message}`,
      );
    }
    this.#current = pair;
    this.#describe(pair, 'serving certificate loaded');
    return pair;
  }

  /** Keeps `server` on the newest valid pair until close(). */
  watch(server: Pick<TlsServer, 'setSecureContext'>): void {
    this.#servers.add(server);
    if (this.#watcher || this.#poll) return;
    try {
      this.#watcher = watch(this.#dir, () => this.#schedule());
      this.#watcher.on('error', (error) => {
        this.#options.log.warn(
          { dir: this.#dir, err: error.message },
          'watching the certificate directory failed; polling only',
        );
        this.#watcher?.close();
      });
    } catch (error) {
      this.#options.log.warn(
        { dir: this.#dir, err: (error as Error).message },
        'cannot watch the certificate directory; polling only',
      );
    }
    this.#poll = setInterval(() => this.reload(), this.#options.pollIntervalMs);
    this.#poll.unref();
  }

  /** Re-reads the files; installs them when they changed and form a valid pair. */
  reload(): boolean {
    let pair: KeyPair;
    try {
      pair = { cert: readFileSync(this.certPath), key: readFileSync(this.keyPath) };
    } catch (error) {
      this.#failed(`cannot read the certificate: ${(error as Error).message}`);
      return false;
    }
    if (this.#current && pair.cert.equals(this.#current.cert) && pair.key.equals(this.#current.key))
      return false;
    try {
      for (const server of this.#servers) server.setSecureContext(pair);
    } catch (error) {
      // Often a rotation caught half-way (new certificate, old key): the next event completes it.
      this.#failed(`the new certificate and key are not a usable pair yet: ${(error as Error).message}`);
      return false;
    }
    this.#current = pair;
    this.#options.onReload?.(true);
    this.#describe(pair, 'serving certificate reloaded');
    return true;
  }

  close(): void {
    this.#watcher?.close();
    clearInterval(this.#poll);
    clearTimeout(this.#debounce);
  }

  #schedule(): void {
    // One rotation fires several events (new dir, symlink, rename); read once they settle.
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => this.reload(), 50);
  }

  #failed(reason: string): void {
    this.#options.onReload?.(false);
    this.#options.log.warn({ dir: this.#dir, err: reason }, 'keeping the current serving certificate');
  }

  #describe(pair: KeyPair, message: string): void {
    try {
      const certificate = new X509Certificate(pair.cert);
      this.#options.log.info(
        {
          subject: certificate.subject,
          validTo: certificate.validTo,
          fingerprint256: certificate.fingerprint256,
        },
        message,
      );
    } catch {
      this.#options.log.info({ dir: this.#dir }, message);
    }
  }
}
