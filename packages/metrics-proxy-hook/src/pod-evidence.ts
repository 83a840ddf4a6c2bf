// Evidence from the API server about which semaphore slots still have a pod: the webhook lists
// the pods it labelled (prometheus-metrics-proxy-hook/semaphore=true) in a workload's namespace
// and reads the slot each carries. Needs only `list pods` (see the dev overlay's ClusterRole).
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { SeahorseError } from '@seahorse/runtime';
import { annotations, semaphoreLabel } from './annotations.ts';

export interface ApiServerConnection {
  /** e.g. https://10.96.0.1:443 */
  url: URL;
  /** Re-read on every request: projected service account tokens rotate. */
  tokenFile: string;
  /** CA bundle for an https URL. */
  caFile: string | undefined;
  timeoutMs: number;
}

/** The API server could not be asked; the caller keeps the slots (no evidence, no reclaim). */
export class ApiServerError extends SeahorseError {
  constructor(message: string) {
    super('METRICS_PROXY_API_SERVER', message);
  }
}

interface PodListItem {
  metadata?: { name?: string; annotations?: Record<string, unknown> };
  status?: { phase?: string };
}

/** The slots held by pods that exist and have not finished, in `namespace`. */
/** A list longer than this many pages is not one namespace's limited pods. */
const maxPages = 200;

export class PodEvidence {
  readonly #connection: ApiServerConnection;
  readonly #pageSize: number;

  constructor(connection: ApiServerConnection, { pageSize = 500 }: { pageSize?: number } = {}) {
    this.#connection = connection;
    this.#pageSize = pageSize;
  }

  /**
   * Reads the list in pages of `pageSize` (limit/continue, as kubectl does): one namespace may
   * hold thousands of labelled pods, and one answer for all of them would be held in memory at
   * once and could outlast the request timeout. The pages share one snapshot of the list (the
   * continue token pins its resourceVersion); an expired token (410) is an error, so nothing is
   * reclaimed on a partial answer.
   */
  async liveSlots(namespace: string): Promise<Set<string>> {
    const base = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods?labelSelector=${encodeURIComponent(`${semaphoreLabel}=true`)}&limit=${this.#pageSize}`;
    const slots = new Set<string>();
    let next: string | undefined;
    for (let page = 0; ; page++) {
      if (page >= maxPages) {
        throw new ApiServerError(`the pod list did not end within ${maxPages} pages of ${this.#pageSize}`);
      }
      const list = (await this.#get(
        next === undefined ? base : `${base}&continue=${encodeURIComponent(next)}`,
      )) as { items?: unknown; metadata?: { continue?: unknown } };
      const items = list?.items;
      if (!Array.isArray(items)) throw new ApiServerError('the API server answered a pod list without items');
      for (const item of items as PodListItem[]) {
        const phase = item?.status?.phase;
        // A finished pod (a completed Job) runs nothing any more: its slot is free.
        if (phase === 'Succeeded' || phase === 'Failed') continue;
        const slot = item?.metadata?.annotations?.[annotations.slot];
        if (typeof slot === 'string') slots.add(slot);
      }
      const token = list.metadata?.continue;
      if (token === undefined || token === '') return slots;
      if (typeof token !== 'string' || token === next) {
        throw new ApiServerError(
          'the API server answered a pod list with a continue token that does not move on',
        );
      }
      next = token;
    }
  }

  #get(path: string): Promise<unknown> {
    const { url, tokenFile, caFile, timeoutMs } = this.#connection;
    let token: string;
    let ca: Buffer | undefined;
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
      ca = caFile ? readFileSync(caFile) : undefined;
    } catch (error) {
      return Promise.reject(
        new ApiServerError(`cannot read the service account credentials: ${(error as Error).message}`),
      );
    }
    const target = new URL(path, url);
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        target,
        {
          method: 'GET',
          headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
          ...(ca ? { ca } : {}),
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            // A page of at most 500 pods; anything near this is not one.
            if (size > 64 * 1024 * 1024)
              req.destroy(new ApiServerError('a page of the pod list is larger than 64 MiB'));
            else chunks.push(chunk);
          });
          res.once('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let body: unknown;
            try {
              body = JSON.parse(text);
            } catch {
              reject(
                new ApiServerError(`the API server answered ${res.statusCode} with a body that is not JSON`),
              );
              return;
            }
            if (res.statusCode !== 200) {
              const message = (body as { message?: unknown })?.message;
              reject(
                new ApiServerError(
                  `the API server answered ${res.statusCode}${typeof message === 'string' ? `: ${message}` : ''}`,
                ),
              );
              return;
            }
            resolve(body);
          });
          res.once('error', reject);
        },
      );
      req.once('timeout', () =>
        req.destroy(new ApiServerError(`the API server timed out after ${timeoutMs} ms`)),
      );
      req.once('error', (error) =>
        reject(error instanceof ApiServerError ? error : new ApiServerError(error.message)),
      );
      req.end();
    });
  }
}
