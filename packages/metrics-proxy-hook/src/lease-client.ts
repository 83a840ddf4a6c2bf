// The sidecar's lease backend: renews, holds and releases its slot at the webhook's lease
// endpoint over HTTPS, verifying the webhook's certificate against the CA it was given, with
// the slot's token. The sidecar holds no Redis address or credential.
import { Agent, request } from 'node:https';
import { LeaseRefusedError, LeaseUnavailableError } from './errors.ts';
import type { LeaseBackend, RenewOutcome } from './slot-lease.ts';

export interface LeaseClientOptions {
  url: URL;
  /** PEM of the CA the webhook's certificate chains to. */
  ca: string;
  token: string;
  slot: string;
  /** One request's deadline, connection and body included. */
  timeoutMs: number;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** Larger answers are not the webhook's. */
const maxAnswerBytes = 64 * 1024;

export class WebhookLeaseClient implements LeaseBackend {
  readonly #options: LeaseClientOptions;
  readonly #agent: Agent;

  constructor(options: LeaseClientOptions) {
    this.#options = options;
    // One connection kept open between renewals; a webhook replica that went away costs one
    // failed attempt, and the next one connects afresh.
    this.#agent = new Agent({ keepAlive: true, maxSockets: 1, ca: options.ca });
  }

  async renew(version: string, overrun: boolean): Promise<RenewOutcome & { overrunRecorded: boolean }> {
    const answer = await this.#call({
      action: 'renew',
      slot: this.#options.slot,
      version,
      ...(overrun ? { overrun: true } : {}),
    });
    const { body } = answer;
    const overrunRecorded = body.overrunRecorded === true;
    if (answer.status === 200 && (body.state === 'renewed' || body.state === 'retaken')) {
      const next = typeof body.version === 'string' ? body.version : version;
      if (body.state === 'renewed') return { state: 'renewed', version: next, overrunRecorded };
      return {
        state: 'retaken',
        version: next,
        held: Number(body.held),
        limit: Number(body.limit),
        overrunRecorded,
      };
    }
    if (answer.status === 409 && body.state === 'full') {
      return { state: 'full', held: Number(body.held), limit: Number(body.limit), overrunRecorded };
    }
    if (answer.status === 404 && body.state === 'retired') return { state: 'retired', overrunRecorded };
    throw this.#refused(answer);
  }

  async hold(version: string, holdMs: number): Promise<'held' | 'gone' | 'retired'> {
    const answer = await this.#call({ action: 'hold', slot: this.#options.slot, version, holdMs });
    if (answer.status === 200 && answer.body.state === 'held') return 'held';
    if (answer.status === 409 && answer.body.state === 'gone') return 'gone';
    if (answer.status === 404 && answer.body.state === 'retired') return 'retired';
    throw this.#refused(answer);
  }

  async release(version: string): Promise<void> {
    const answer = await this.#call({ action: 'release', slot: this.#options.slot, version });
    if (answer.status !== 200) throw this.#refused(answer);
  }

  close(): void {
    this.#agent.destroy();
  }

  #refused(answer: Answer): Error {
    const message = typeof answer.body.message === 'string' ? answer.body.message : 'no message';
    // 429: this slot asked too often (the webhook's per-slot limit); asked again later.
    if (answer.status === 503 || answer.status === 502 || answer.status === 504 || answer.status === 429) {
      return new LeaseUnavailableError(`the webhook answered ${answer.status}: ${message}`);
    }
    return new LeaseRefusedError(
      answer.status,
      `the webhook refused the lease request (${answer.status}): ${message}`,
    );
  }

  #call(body: Record<string, unknown>): Promise<Answer> {
    const { url, token, timeoutMs } = this.#options;
    const payload = JSON.stringify(body);
    return new Promise<Answer>((resolve, reject) => {
      const fail = (error: Error) =>
        reject(
          error instanceof LeaseUnavailableError
            ? error
            : new LeaseUnavailableError(`the webhook at ${url.origin} did not answer: ${error.message}`, {
                cause: error,
              }),
        );
      const outgoing = request(url, {
        method: 'POST',
        agent: this.#agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          authorization: `Bearer ${token}`,
        },
      });
      const timer = setTimeout(
        () =>
          outgoing.destroy(
            new LeaseUnavailableError(`the webhook at ${url.origin} did not answer within ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
      outgoing.once('close', () => clearTimeout(timer));
      outgoing.once('error', fail);
      outgoing.once('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxAnswerBytes) {
            outgoing.destroy(
              new LeaseUnavailableError(`the answer from ${url.origin} is over ${maxAnswerBytes} bytes`),
            );
            return;
          }
          chunks.push(chunk);
        });
        res.once('error', fail);
        res.once('end', () => {
          clearTimeout(timer);
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            parsed = undefined;
          }
          const status = res.statusCode ?? 0;
          if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
            // Not the webhook (a proxy's error page?): a gateway error is retried, others are not.
            const error =
              status >= 500
                ? new LeaseUnavailableError(`${url.origin} answered ${status} without a lease answer`)
                : new LeaseRefusedError(status, `${url.origin} answered ${status} without a lease answer`);
            reject(error);
            return;
          }
          resolve({ status, body: parsed as Record<string, unknown> });
        });
      });
      outgoing.end(payload);
    });
  }
}
