// JupyterHub 3.0's rule for API requests authenticated by the login cookie (APIHandler's
// check_referer and check_post_content_type): the Referer must be a page of the hub — same
// scheme, host and port, under <base_url>hub/ — and a POST's Content-Type, when given, must be
// application/json (a cross-site form cannot send that). Any method, as in 3.0. A request from
// another site, or with no Referer at all, is treated as having no cookie (scripts use tokens).
import type { IncomingMessage } from 'node:http';

function firstOf(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  return text?.split(',')[0]?.trim() || undefined;
}

const defaultPort = (scheme: string) => (scheme === 'https:' ? '443' : '80');

/** The scheme the browser sees, as 3.0's get_browser_protocol: Forwarded, X-Scheme, X-Forwarded-Proto. */
function browserProtocol(req: IncomingMessage): string {
  const forwarded = firstOf(req.headers.forwarded);
  if (forwarded) {
    for (const field of forwarded.split(';')) {
      const [key, value] = field.split('=', 2);
      const proto = value?.trim().toLowerCase();
      if (key?.trim().toLowerCase() === 'proto' && (proto === 'http' || proto === 'https')) return proto;
    }
  }
  const header = firstOf(req.headers['x-scheme'] ?? req.headers['x-forwarded-proto'])?.toLowerCase();
  if (header === 'http' || header === 'https') return header;
  return 'encrypted' in req.socket && req.socket.encrypted ? 'https' : 'http';
}

/** Whether the Referer is a page under `hubBase` (`<base_url>hub/`) of the host asked for. */
export function refererIsOurs(req: IncomingMessage, hubBase: string): boolean {
  const host = firstOf(req.headers.host);
  const referer = req.headers.referer;
  if (!host || !referer) return false;
  let ours: URL;
  let from: URL;
  try {
    ours = new URL(`${browserProtocol(req)}://${host}${hubBase}`);
    from = new URL(referer);
  } catch {
    return false;
  }
  // A host with a path, user info or query in it is not a host.
  if (ours.pathname !== new URL(hubBase, 'http://h').pathname || ours.username || ours.search) return false;
  return (
    from.protocol === ours.protocol &&
    from.hostname === ours.hostname &&
    (from.port || defaultPort(from.protocol)) === (ours.port || defaultPort(ours.protocol)) &&
    `${from.pathname}/`.startsWith(ours.pathname)
  );
}

/** Whether a login cookie may authenticate this API request (3.0's APIHandler.get_current_user_cookie). */
export function cookieAllowedForApi(req: IncomingMessage, hubBase: string): boolean {
  if (!refererIsOurs(req, hubBase)) return false;
  if (req.method?.toUpperCase() !== 'POST') return true;
  const type = req.headers['content-type'];
  if (!type) return true;
  return type
    .toLowerCase()
    .split(';')
    .some((field) => field.trimStart().startsWith('application/json'));
}
