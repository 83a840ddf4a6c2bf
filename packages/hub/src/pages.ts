// The few server-rendered pages: login (password form or the header authenticator's
// auto-login), logout, and home. Everything else is the REST API.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { normalizeUsername, validUsername } from './auth/authenticators.ts';
import { SessionSigner } from './auth/sessions.ts';
import { createUser, findUser } from './db/users.ts';
import type { Hub } from './hub.ts';

const escapes: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};
const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => escapes[c]!);

function page(
  res: ServerResponse,
  status: number,
  title: string,
  body: string,
  headers: Record<string, string> = {},
) {
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}label,input,button{display:block;width:100%;margin:.25rem 0}input,button{padding:.5rem;font-size:1rem}</style>
</head><body><main><h1>${escapeHtml(title)}</h1>${body}</main></body></html>`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    ...headers,
  });
  res.end(html);
}

function redirect(res: ServerResponse, location: string, headers: Record<string, string> = {}) {
  res.writeHead(302, { location, 'content-length': 0, ...headers });
  res.end();
}

/** Only local paths under the base URL: never an open redirect. */
function safeNext(hub: Hub, next: string | null): string {
  const base = hub.config.baseUrl;
  // Browsers drop tabs and newlines from URLs (`/\t/evil` is `//evil`), and CR/LF cannot go
  // in a header: any control character makes the next URL unusable.
  if (next?.startsWith(base) && !next.startsWith('//') && !next.includes('\\') && !/\p{Cc}/u.test(next))
    return next;
  return `${base}hub/home`;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let text = '';
  for await (const chunk of req as AsyncIterable<Buffer>) {
    text += chunk.toString();
    if (text.length > 64 * 1024) break;
  }
  return new URLSearchParams(text);
}

async function login(hub: Hub, res: ServerResponse, name: string, next: string | null, secure: boolean) {
  const existing = await findUser(hub.db, name);
  if (!hub.authenticator.isAllowed(name, existing !== undefined)) {
    page(res, 403, 'Forbidden', `<p>User ${escapeHtml(name)} is not allowed to use this hub.</p>`);
    return;
  }
  const user = existing ?? (await createUser(hub.db, name, hub.authenticator.isAdmin(name)));
  const cookie = hub.sessions.cookie(hub.sessions.sign(user.cookie_id), `${hub.config.baseUrl}hub/`, secure);
  hub.log.info({ user: name }, 'user logged in');
  redirect(res, safeNext(hub, next), { 'set-cookie': cookie });
}

export async function handlePage(
  hub: Hub,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<boolean> {
  const base = hub.config.baseUrl;
  const path = url.pathname;
  const secure = req.headers['x-forwarded-proto'] === 'https';
  const next = url.searchParams.get('next');
  if (path === `${base}hub/login`) {
    const auth = hub.authenticator;
    if (auth.kind === 'header') {
      if (!auth.trustsSource(req.socket.remoteAddress, req.headers['x-forwarded-for'])) {
        page(res, 403, 'Forbidden', '<p>The user header is accepted only from trusted proxies.</p>');
        return true;
      }
      const raw = req.headers[auth.headerName];
      const name = normalizeUsername(Array.isArray(raw) ? (raw[0] ?? '') : (raw ?? ''));
      if (!validUsername(name)) {
        page(
          res,
          401,
          'Unauthorized',
          `<p>No valid user name in the ${escapeHtml(auth.headerName)} header.</p>`,
        );
        return true;
      }
      await login(hub, res, name, next, secure);
      return true;
    }
    if (req.method === 'POST') {
      const form = await readForm(req);
      const name = normalizeUsername(form.get('username') ?? '');
      if (validUsername(name) && auth.checkPassword(form.get('password') ?? '')) {
        await login(hub, res, name, form.get('next') ?? next, secure);
        return true;
      }
      hub.log.warn({ user: name }, 'failed login');
      page(res, 403, 'Sign in', `<p role="alert">Invalid username or password.</p>${loginForm(base, next)}`);
      return true;
    }
    page(res, 200, 'Sign in', loginForm(base, next));
    return true;
  }
  if (path === `${base}hub/logout`) {
    const identity = await hub.identity.fromCookie(req.headers.cookie);
    if (identity) {
      // A new cookie id ends every session of this user, on every hub process.
      await hub.db.run('UPDATE users SET cookie_id = ? WHERE id = ?', [
        crypto.randomUUID().replaceAll('-', ''),
        identity.id,
      ]);
    }
    redirect(res, `${base}hub/login`, { 'set-cookie': SessionSigner.clear(`${base}hub/`) });
    return true;
  }
  if (path === `${base}hub/home` || path === `${base}hub/` || path === `${base}hub`) {
    const identity = await hub.identity.fromCookie(req.headers.cookie);
    if (!identity) {
      redirect(res, `${base}hub/login?next=${encodeURIComponent(path)}`);
      return true;
    }
    page(
      res,
      200,
      'Home',
      `<p>Signed in as ${escapeHtml(identity.name)}.</p><p><a href="${base}user/${encodeURIComponent(identity.name)}/">Your server</a> · <a href="${base}hub/logout">Sign out</a></p>`,
    );
    return true;
  }
  if (path === base || path === base.slice(0, -1)) {
    redirect(res, `${base}hub/`);
    return true;
  }
  if (path.startsWith(`${base}user/`) || path.startsWith(`${base}hub/user/`)) {
    // The proxy sends /user/... here when no route exists: the server is not running.
    page(
      res,
      503,
      'Server not running',
      `<p>This server is not running. Start it from <a href="${base}hub/home">home</a>.</p>`,
    );
    return true;
  }
  return false;
}

function loginForm(base: string, next: string | null): string {
  return `<form method="post" action="${base}hub/login">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
${next ? `<input type="hidden" name="next" value="${escapeHtml(next)}">` : ''}<button type="submit">Sign in</button></form>`;
}
