// What a client sees when the proxy itself answers with an error: a page from the error
// target (JupyterHub passes `--error-target <hub>/hub/error`), a file from the error path, or
// the plain status text.
import { readFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { Logger } from '@seahorse/runtime';

/** The pages shipped with the proxy, used when neither flag is given. */
export const bundledErrorPath = new URL('../error/', import.meta.url).pathname;

export interface ErrorPagesOptions {
  /** Base URL; the page for a status is requested at `<target>/<status>?url=<request url>`. */
  errorTarget: string | undefined;
  /** Directory holding `<status>.html` or `error.html`. */
  errorPath: string;
  clientTls: { key?: Buffer; cert?: Buffer; ca?: Buffer[]; rejectUnauthorized: boolean };
}

export class ErrorPages {
  readonly #options: ErrorPagesOptions;
  readonly #log: Logger;
  readonly #files = new Map<number, Promise<Buffer | undefined>>();

  constructor(options: ErrorPagesOptions, log: Logger) {
    this.#options = {
      ...options,
      errorTarget:
        options.errorTarget?.endsWith('/') === false ? `${options.errorTarget}/` : options.errorTarget,
    };
    this.#log = log;
  }

  send(req: IncomingMessage, res: ServerResponse, status: number): void {
    if (this.#options.errorTarget) this.#fromTarget(req, res, status);
    else this.#fromPath(req, res, status);
  }

  #fromTarget(req: IncomingMessage, res: ServerResponse, status: number): void {
    const url = new URL(`${this.#options.errorTarget}${status}`);
    url.search = new URLSearchParams({ url: req.url ?? '/' }).toString();
    const secure = url.protocol === 'https:';
    const pageReq = (secure ? httpsRequest : httpRequest)(url, {
      method: 'GET',
      timeout: 5000,
      ...(secure ? this.#options.clientTls : {}),
    });
    pageReq.on('timeout', () => pageReq.destroy(new Error('error target did not answer in 5 s')));
    pageReq.on('response', (page) => {
      const headers: Record<string, string> = {};
      for (const name of ['content-type', 'content-encoding'] as const) {
        const value = page.headers[name];
        if (value) headers[name] = value;
      }
      if (res.headersSent || res.destroyed) {
        page.resume();
        return;
      }
      res.writeHead(status, headers);
      if (req.method === 'HEAD') {
        page.resume();
        res.end();
      } else {
        page.pipe(res);
      }
    });
    pageReq.on('error', (error) => {
      this.#log.warn({ status, err: error.message }, 'error target unavailable, sending a plain error');
      plain(req, res, status);
    });
    pageReq.end();
  }

  #fromPath(req: IncomingMessage, res: ServerResponse, status: number): void {
    let file = this.#files.get(status);
    if (!file) {
      file = readFile(join(this.#options.errorPath, `${status}.html`)).catch(() =>
        readFile(join(this.#options.errorPath, 'error.html')).catch(() => undefined),
      );
      this.#files.set(status, file);
    }
    file.then(
      (body) => {
        if (res.headersSent || res.destroyed) return;
        if (!body) {
          plain(req, res, status);
          return;
        }
        res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-length': body.length });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      () => plain(req, res, status),
    );
  }
}

function plain(req: IncomingMessage, res: ServerResponse, status: number): void {
  if (res.headersSent || res.destroyed) return;
  const body = STATUS_CODES[status] ?? 'Error';
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
