// Pages act through the REST API's own handlers, as the user of the login cookie (once the form
// token is checked), so every scope check, limit and message is the API's: one code path.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { ApiContext } from '../api/context.ts';
import { HttpError } from '../errors.ts';
import type { Hub } from '../hub.ts';
import type { Identity } from '../identity.ts';

export interface ApiAnswer {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: API answers have many shapes
  body: any;
}

type Handler = (context: ApiContext) => Promise<void>;

/** A response object that keeps what a handler writes. */
class CapturedResponse {
  statusCode = 200;
  headersSent = false;
  writableEnded = false;
  readonly #chunks: Buffer[] = [];
  writeHead(status: number) {
    this.statusCode = status;
    this.headersSent = true;
    return this;
  }
  setHeader() {
    return this;
  }
  write(chunk: string | Buffer) {
    this.#chunks.push(Buffer.from(chunk));
    return true;
  }
  end(chunk?: string | Buffer) {
    if (chunk) this.write(chunk);
    this.writableEnded = true;
    return this;
  }
  destroy() {
    this.writableEnded = true;
  }
  once() {
    return this;
  }
  get text(): string {
    return Buffer.concat(this.#chunks).toString('utf8');
  }
}

export async function callApi(
  hub: Hub,
  identity: Identity,
  handler: Handler,
  params: string[],
  options: { body?: unknown; query?: Record<string, string> } = {},
): Promise<ApiAnswer> {
  const bytes = options.body === undefined ? [] : [Buffer.from(JSON.stringify(options.body))];
  const req = Object.assign(Readable.from(bytes), {
    method: 'POST',
    headers: { 'content-length': String(bytes[0]?.length ?? 0), 'content-type': 'application/json' },
  }) as unknown as IncomingMessage;
  const res = new CapturedResponse();
  const query = new URLSearchParams(options.query ?? {});
  const context = {
    req,
    res: res as unknown as ServerResponse,
    params,
    query,
    url: new URL(`http://hub.invalid/?${query}`),
    hub,
    identity,
  } as ApiContext;
  try {
    await handler(context);
  } catch (error) {
    if (error instanceof HttpError) return { status: error.status, body: { message: error.message } };
    throw error;
  }
  const text = res.text;
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  return { status: res.statusCode, body };
}
