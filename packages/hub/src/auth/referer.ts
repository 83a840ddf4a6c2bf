// JupyterHub 3.0's rule for API requests authenticated by the login cookie (APIHandler's
// check_referer): the Referer must be a page of this hub — same scheme, host and port, under the
// base URL. A request from another site, or with no Referer at all, is treated as having no
// cookie (scripts use tokens).
import type { IncomingMessage } from 'node:http';

function firstOf(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  return text?.split(',')[0]?.trim() || undefined;
}

const defaultPort = (scheme: string) => (scheme === 'https:' ? '443' : '80');

export function refererIsOurs(req: IncomingMessage, baseUrl: string): boolean {
  const host = firstOf(req.headers.host);
  const referer = req.headers.referer;
  if (!host || !referer) return false;
  const proto = firstOf(req.headers['x-scheme']) ?? firstOf(req.headers['x-forwarded-proto']) ?? 'http';
  let ours: URL;
  let from: URL;
  try {
    ours = new URL(`${proto}://${host}${baseUrl}`);
    from = new URL(referer);
  } catch {
    return false;
  }
  return (
    from.protocol === ours.protocol &&
    from.hostname === ours.hostname &&
    (from.port || defaultPort(from.protocol)) === (ours.port || defaultPort(ours.protocol)) &&
    `${from.pathname}/`.startsWith(ours.pathname)
  );
}
