// The pages' shared shape: escaping, one layout, the security headers every page carries,
// redirects that never leave the hub, and form bodies read with a limit.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError } from '../errors.ts';

const escapes: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Text into HTML text or a quoted attribute value. */
export function escapeHtml(text: unknown): string {
  return String(text ?? '').replace(/[&<>"']/g, (c) => escapes[c]!);
}

/** Raw HTML, built by `html` (whose interpolations are escaped unless they are Raw). */
export class Raw {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  toString(): string {
    return this.text;
  }
}

/** A template tag that escapes every value; arrays are joined, Raw values kept, null/false dropped. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Raw {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Raw(out);
}

function render(value: unknown): string {
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(value);
}

/** The headers of every hub page: no framing by other sites, no sniffing, no inline script. */
export function securityHeaders(): Record<string, string> {
  return {
    'content-security-policy':
      "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'",
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'SAMEORIGIN',
    'referrer-policy': 'same-origin',
    'cache-control': 'no-store',
  };
}

export interface Nav {
  base: string;
  user?: { name: string; admin: boolean } | undefined;
  /** The form token for the sign-out button. */
  xsrf?: string;
}

export function layout(title: string, body: Raw, nav: Nav): string {
  const { base, user } = nav;
  const links = user
    ? html`<nav aria-label="Hub"><ul>
<li><a href="${base}hub/home">Home</a></li>
<li><a href="${base}hub/token">Token</a></li>
${user.admin ? html`<li><a href="${base}hub/admin">Admin</a></li>` : ''}
</ul><form method="post" action="${base}hub/logout" class="inline"><input type="hidden" name="_xsrf" value="${nav.xsrf ?? ''}"><span class="who">${user.name}</span> <button type="submit" class="link">Sign out</button></form></nav>`
    : '';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} · Seahorse Hub</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="${escapeHtml(base)}hub/static/hub.css">
</head><body><a class="skip" href="#main">Skip to content</a><header><a class="brand" href="${escapeHtml(base)}hub/home">Seahorse Hub</a>${links}</header>
<main id="main" tabindex="-1"><h1>${escapeHtml(title)}</h1>
${body}</main></body></html>`;
}

export function sendPage(
  res: ServerResponse,
  status: number,
  title: string,
  body: Raw,
  nav: Nav,
  headers: Record<string, string | string[]> = {},
): void {
  const text = layout(title, body, nav);
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...securityHeaders(),
    ...headers,
  });
  res.end(text);
}

export function redirect(
  res: ServerResponse,
  location: string,
  headers: Record<string, string | string[]> = {},
  status = 302,
): void {
  res.writeHead(status, { location, 'content-length': 0, ...securityHeaders(), ...headers });
  res.end();
}

/**
 * A local path under the base URL, or undefined: never an open redirect, never a header that
 * cannot be sent (characters past ASCII are percent-escaped as a browser would).
 */
export function localNext(base: string, next: string | null | undefined): string | undefined {
  if (!next?.startsWith(base) || next.startsWith('//') || /[\\\s\p{Cc}]/u.test(next)) return undefined;
  if (/[\uD800-\uDFFF]/u.test(next)) return undefined; // a lone surrogate cannot be escaped
  return next.replace(/[^\x21-\x7e]+/gu, (text) => encodeURIComponent(text));
}

/** Only local paths under the base URL: never an open redirect. */
export function safeNext(base: string, next: string | null | undefined): string {
  return localNext(base, next) ?? `${base}hub/home`;
}

const maxFormBytes = 64 * 1024;

/** An application/x-www-form-urlencoded body, at most 64 KiB (a 413 past that). */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = String(req.headers['content-type'] ?? '');
  if (Number(req.headers['content-length'] ?? 0) > maxFormBytes) {
    req.resume();
    throw new HttpError(413, 'Form too large');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxFormBytes) throw new HttpError(413, 'Form too large');
    chunks.push(chunk);
  }
  if (size > 0 && !type.startsWith('application/x-www-form-urlencoded')) {
    throw new HttpError(415, 'Forms must be sent as application/x-www-form-urlencoded');
  }
  const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  // PostgreSQL's text cannot hold a NUL: a token note or a name with one was a 500.
  for (const [key, value] of form)
    if (key.includes('\0') || value.includes('\0'))
      throw new HttpError(400, 'The form holds a NUL character; remove it and try again.');
  return form;
}

/** A relative time for people ("3 minutes ago"), with the ISO time kept in a <time> element. */
export function when(iso: string | null | undefined, now = Date.now()): Raw {
  if (!iso) return html`<span class="muted">never</span>`;
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  const abs = Math.abs(seconds);
  const [n, unit] =
    abs < 60
      ? [abs, 'second']
      : abs < 3600
        ? [Math.round(abs / 60), 'minute']
        : abs < 86_400
          ? [Math.round(abs / 3600), 'hour']
          : [Math.round(abs / 86_400), 'day'];
  const text = `${n} ${unit}${n === 1 ? '' : 's'} ${seconds >= 0 ? 'ago' : 'from now'}`;
  return html`<time datetime="${iso}">${text}</time>`;
}
