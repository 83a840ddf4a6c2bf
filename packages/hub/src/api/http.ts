// The API's edge: JSON bodies read with a size limit and parsed once, errors written as
// JupyterHub writes them ({"status": N, "message": "..."}), a small router by method and path.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError } from '../errors.ts';

export const maxBodyBytes = 1024 * 1024;

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Sent as X-JupyterHub-Version, which single-user servers check. */
export const apiVersion = '5.2.1';

const reasons: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers?: Record<string, string>,
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'x-jupyterhub-version': apiVersion,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status, {
    'x-jupyterhub-version': apiVersion,
    'content-type': 'text/plain',
    'content-length': 0,
  });
  res.end();
}

export function sendError(
  res: ServerResponse,
  status: number,
  message?: string,
  headers?: Record<string, string>,
) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, { status, message: message || reasons[status] || 'Error' }, headers);
}

/** Reads the body; undefined when empty. Malformed JSON is a 400 saying where; too large a 413. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBodyBytes) {
    req.resume();
    throw new HttpError(413, `Request body is larger than ${maxBodyBytes} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBodyBytes) throw new HttpError(413, `Request body is larger than ${maxBodyBytes} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  let text: string;
  try {
    text = strictUtf8.decode(Buffer.concat(chunks));
  } catch {
    // Replacing bad bytes with U+FFFD would store a name nobody sent.
    throw new HttpError(400, 'Invalid JSON in body of request: the body is not valid UTF-8');
  }
  if (text.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, `Invalid JSON in body of request: ${(error as Error).message}`);
  }
  checkJson(value);
  return value;
}

/** How deep a body may nest: JupyterHub's models are 3 levels; user options a few more. */
export const maxJsonDepth = 32;

/**
 * Refuses what no model holds and what would break later: nesting deeper than maxJsonDepth
 * (every later walk of it is bounded) and NUL characters in strings or keys (PostgreSQL's text
 * cannot store them: a 500 at the database, or a name cut short elsewhere). Iterative, so a
 * megabyte of brackets cannot exhaust the stack.
 */
export function checkJson(value: unknown): void {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (typeof item === 'string') {
      if (item.includes('\0'))
        throw new HttpError(400, 'Invalid JSON in body of request: NUL characters (\\u0000) are not allowed');
      continue;
    }
    if (item === null || typeof item !== 'object') continue;
    if (depth > maxJsonDepth)
      throw new HttpError(400, `Invalid JSON in body of request: nested deeper than ${maxJsonDepth} levels`);
    if (Array.isArray(item)) {
      for (const child of item) stack.push([child, depth + 1]);
      continue;
    }
    for (const [key, child] of Object.entries(item)) {
      stack.push([key, depth]);
      stack.push([child, depth + 1]);
    }
  }
}

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: string[];
  query: URLSearchParams;
  url: URL;
}

type Handler = (context: RouteContext) => Promise<void>;

interface Route {
  method: string;
  segments: string[];
  handler: Handler;
}

/**
 * Routes by segments; `*` matches one non-empty segment (URL-decoded into params). A path that
 * matches with another method is a 405.
 */
export class Router {
  readonly #routes: Route[] = [];

  on(method: string, pattern: string, handler: Handler): void {
    this.#routes.push({ method, segments: pattern.split('/').filter(Boolean), handler });
  }

  match(method: string, path: string): { handler: Handler; params: string[] } | 'method' | undefined {
    const parts = path.split('/').filter(Boolean);
    let methodMismatch = false;
    for (const route of this.#routes) {
      if (route.segments.length !== parts.length) continue;
      const params: string[] = [];
      let ok = true;
      for (let i = 0; i < parts.length; i++) {
        const want = route.segments[i]!;
        const have = parts[i]!;
        if (want === '*') {
          try {
            params.push(decodeURIComponent(have));
          } catch {
            ok = false;
            break;
          }
        } else if (want !== have) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      if (route.method !== method && !(method === 'HEAD' && route.method === 'GET')) {
        methodMismatch = true;
        continue;
      }
      return { handler: route.handler, params };
    }
    return methodMismatch ? 'method' : undefined;
  }
}
