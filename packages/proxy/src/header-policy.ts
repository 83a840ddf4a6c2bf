// What the proxy changes in the headers it passes on, as small named steps (node-http-proxy's
// web-outgoing passes are the model). The request's headers are copied before any step, so
// the incoming request stays as the client sent it (a Location rewrite reads the client's Host,
// not the target's).
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Target } from './routes.ts';

export interface HeaderPolicy {
  xForward: boolean;
  changeOrigin: boolean;
  autoRewrite: boolean;
  protocolRewrite: string | undefined;
  /** Lower-cased names; applied after every other header change, so they win. */
  customHeaders: ReadonlyArray<readonly [string, string]>;
  /** Whether the public listener is TLS, for `X-Forwarded-Proto` and `-Port`. */
  listenerSecure: boolean;
}

// Request headers about the client's connection (RFC 9110 §7.6.1), or answered by our server
// already (`Expect: 100-continue`); the body is re-framed on the way out (Transfer-Encoding).
const requestHopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'trailer',
  'transfer-encoding',
  'expect',
  'upgrade',
]);

// Response headers about the target's connection; Node frames the body to the client anew.
const responseHopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]);

const redirectStatus = new Set([201, 301, 302, 307, 308]);

/** The headers sent to the target: a fresh object, the incoming one untouched. */
export function requestHeaders(
  req: IncomingMessage,
  target: Target,
  policy: HeaderPolicy,
  upgrade: boolean,
): IncomingHttpHeaders {
  const headers = upgrade ? { ...req.headers } : withoutHopByHop(req.headers);
  if (policy.xForward) addForwardedHeaders(headers, req, policy.listenerSecure, upgrade);
  if (policy.changeOrigin) headers.host = target.host;
  for (const [name, value] of policy.customHeaders) headers[name] = value;
  return headers;
}

/** Copies the request headers without those of the client's connection (also those Connection names). */
export function withoutHopByHop(incoming: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = incoming.connection === undefined ? undefined : connectionOptions(incoming.connection);
  const headers: IncomingHttpHeaders = {};
  for (const name in incoming) {
    if (requestHopByHop.has(name) || named?.has(name)) continue;
    headers[name] = incoming[name];
  }
  return headers;
}

/** `X-Forwarded-For`, `-Port`, `-Proto` appended to what earlier proxies wrote; `-Host` kept if set. */
export function addForwardedHeaders(
  headers: IncomingHttpHeaders,
  req: IncomingMessage,
  secure: boolean,
  upgrade: boolean,
): void {
  appendForwarded(headers, 'x-forwarded-for', req.socket.remoteAddress ?? '');
  appendForwarded(headers, 'x-forwarded-port', requestPort(headers.host, secure));
  appendForwarded(
    headers,
    'x-forwarded-proto',
    upgrade ? (secure ? 'wss' : 'ws') : secure ? 'https' : 'http',
  );
  if (!upgrade && headers['x-forwarded-host'] === undefined) headers['x-forwarded-host'] = headers.host ?? '';
}

/**
 * The response headers relayed to the client, as a flat name/value list: hop-by-hop headers
 * dropped, each `Set-Cookie` kept as its own line, and redirects rewritten where asked.
 */
export function responseHeaders(
  raw: readonly string[],
  status: number,
  requestHost: string | undefined,
  target: Target,
  policy: HeaderPolicy,
): string[] {
  const out: string[] = [];
  const rewrite = (policy.autoRewrite || policy.protocolRewrite !== undefined) && redirectStatus.has(status);
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') {
      named = connectionOptions(raw[i + 1]!, named);
    }
  }
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (responseHopByHop.has(lower) || named?.has(lower)) continue;
    let value = raw[i + 1]!;
    if (rewrite && lower === 'location') value = rewriteLocation(value, requestHost, target, policy);
    out.push(name, value);
  }
  return out;
}

/**
 * `--auto-rewrite` (the client's Host) and `--protocol-rewrite`: only redirects that point at
 * the target itself are rewritten; relative ones need nothing.
 */
export function rewriteLocation(
  location: string,
  requestHost: string | undefined,
  target: Target,
  policy: Pick<HeaderPolicy, 'autoRewrite' | 'protocolRewrite'>,
): string {
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    return location;
  }
  if (url.host !== target.host) return location;
  // Built as text: URL's host setter keeps the old port when the new host names none.
  const protocol = policy.protocolRewrite ? `${policy.protocolRewrite.replace(/:$/, '')}:` : url.protocol;
  const host = policy.autoRewrite && requestHost ? requestHost : url.host;
  return `${protocol}//${host}${url.pathname}${url.search}${url.hash}`;
}

/** Header names a Connection header lists (other than `close` and `keep-alive`), lower-cased. */
function connectionOptions(value: string, into?: Set<string>): Set<string> {
  const names = into ?? new Set<string>();
  for (const token of value.toLowerCase().split(',')) {
    const name = token.trim();
    if (name !== '' && name !== 'close' && name !== 'keep-alive') names.add(name);
  }
  return names;
}

function requestPort(host: string | undefined, secure: boolean): string {
  const match = host ? /:(\d+)$/.exec(host) : null;
  return match ? match[1]! : secure ? '443' : '80';
}

function appendForwarded(headers: IncomingHttpHeaders, name: string, value: string): void {
  const existing = headers[name];
  headers[name] = existing ? `${existing},${value}` : value;
}
