// The hub's server-rendered pages: login, logout, home, spawn (with profile_list), pending (live
// progress), admin, token, and error pages including the proxy's error target. Every page is
// HTML from the server; forms work without JavaScript; every state-changing form carries the
// `_xsrf` token; actions go through the REST API's handlers as the signed-in user.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as servers from '../api/servers.ts';
import * as tokens from '../api/tokens.ts';
import * as users from '../api/users.ts';
import { normalizeUsername, validUsername } from '../auth/authenticators.ts';
import { LoginThrottle } from '../auth/login-throttle.ts';
import { allows } from '../auth/scopes.ts';
import { loginCookieName, readCookie, SessionSigner } from '../auth/sessions.ts';
import * as spawnerDb from '../db/spawners.ts';
import { getOrCreateSecret } from '../db/tokens.ts';
import * as userDb from '../db/users.ts';
import { HttpError } from '../errors.ts';
import type { Hub } from '../hub.ts';
import type { Identity } from '../identity.ts';
import { type Profile, parseProfiles } from '../profiles.ts';
import { imageChoices } from '../spawners/docker-options.ts';
import { type KubeSpawnerView, kubeNames } from '../spawners/kube-objects.ts';
import { serverPrefix } from '../spawns.ts';
import { urlEscapePath } from '../url-names.ts';
import { callApi } from './api-call.ts';
import { serveAsset } from './assets.ts';
import { html, localNext, type Raw, readForm, redirect, safeNext, sendPage, when } from './html.ts';
import { Xsrf, xsrfCookieName } from './xsrf.ts';

interface Page {
  hub: Hub;
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  base: string;
  secure: boolean;
  identity: Identity | undefined;
  /** The token forms of this page carry. */
  xsrf: string;
  /** Set-Cookie headers to send with the answer (a new `_xsrf` nonce). */
  cookies: string[];
  xsrfCheck: (given: string | null) => boolean;
}

const xsrfByHub = new WeakMap<Hub, Promise<Xsrf>>();
const throttleByHub = new WeakMap<Hub, LoginThrottle>();

function throttleOf(hub: Hub): LoginThrottle {
  let throttle = throttleByHub.get(hub);
  if (!throttle) {
    throttle = new LoginThrottle(hub.db);
    throttleByHub.set(hub, throttle);
  }
  return throttle;
}

function xsrfOf(hub: Hub): Promise<Xsrf> {
  let xsrf = xsrfByHub.get(hub);
  if (!xsrf) {
    // Kept in the database so that every hub process accepts the forms of the others.
    xsrf = getOrCreateSecret(hub.db, 'xsrf_secret', () => randomBytes(32).toString('hex')).then(
      (secret) => new Xsrf(Buffer.from(secret, 'hex'), `${hub.config.baseUrl}hub/`),
      (error: unknown) => {
        // The database was down: the next page asks again (a kept rejection was a 503 forever).
        xsrfByHub.delete(hub);
        throw error;
      },
    );
    xsrfByHub.set(hub, xsrf);
  }
  return xsrf;
}

function show(
  page: Page,
  status: number,
  title: string,
  body: Raw,
  headers: Record<string, string | string[]> = {},
) {
  const user = page.identity ? { name: page.identity.name, admin: page.identity.admin } : undefined;
  const cookies = [...(headers['set-cookie'] ? [headers['set-cookie']].flat() : []), ...page.cookies];
  sendPage(
    page.res,
    status,
    title,
    body,
    { base: page.base, user, xsrf: page.xsrf },
    {
      ...headers,
      ...(cookies.length ? { 'set-cookie': cookies } : {}),
    },
  );
}

function go(page: Page, location: string, headers: Record<string, string | string[]> = {}) {
  const cookies = [...(headers['set-cookie'] ? [headers['set-cookie']].flat() : []), ...page.cookies];
  redirect(page.res, location, { ...headers, ...(cookies.length ? { 'set-cookie': cookies } : {}) });
}

function errorPage(page: Page, status: number, message: string, extra: Raw | string = '') {
  const titles: Record<number, string> = {
    400: 'Bad request',
    403: 'Forbidden',
    404: 'Page not found',
    405: 'Method not allowed',
    413: 'Too large',
    415: 'Unsupported form',
    429: 'Too many requests',
    500: 'Something went wrong',
    502: 'Server unreachable',
    503: 'Service unavailable',
  };
  show(
    page,
    status,
    titles[status] ?? `Error ${status}`,
    html`<p class="alert" role="alert">${message}</p>${extra}<p><a href="${page.base}hub/home">Back to home</a></p>`,
  );
}

const hidden = (page: Page) => html`<input type="hidden" name="_xsrf" value="${page.xsrf}">`;

/** Handles the request if it is a page; false leaves it to the caller (JSON 404). */
export async function handlePage(
  hub: Hub,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<boolean> {
  const base = hub.config.baseUrl;
  const path = url.pathname;
  const hubPath = `${base}hub/`;
  if (path === base || path === base.slice(0, -1)) {
    redirect(res, hubPath, {}, 302);
    return true;
  }
  const isUserPath = path.startsWith(`${base}user/`) || path.startsWith(`${hubPath}user/`);
  if (!path.startsWith(hubPath) && path !== `${base}hub` && !isUserPath) return false;
  if (path.startsWith(`${hubPath}static/`)) {
    if (serveAsset(req, res, path.slice(`${hubPath}static/`.length))) return true;
  }
  const xsrf = await xsrfOf(hub);
  // The first proxy's view (`https, http` when TLS ends in front of our proxy).
  const forwardedProto = String(req.headers['x-forwarded-proto'] ?? '')
    .split(',')[0]!
    .trim()
    .toLowerCase();
  const secure = forwardedProto === 'https' || hub.config.bindUrl.protocol === 'https:';
  const { nonce, setCookie } = xsrf.nonce(req, secure);
  const session = readCookie(req.headers.cookie, loginCookieName) ?? '';
  const identity = await hub.identity.fromCookie(req.headers.cookie);
  const page: Page = {
    hub,
    req,
    res,
    url,
    base,
    secure,
    identity,
    xsrf: xsrf.token(nonce, identity ? session : ''),
    cookies: setCookie ? [setCookie] : [],
    xsrfCheck: (given) => xsrf.check(req, given, identity ? session : ''),
  };
  try {
    await route(page, path.slice(hubPath.length), isUserPath);
  } catch (error) {
    if (error instanceof HttpError) errorPage(page, error.status, error.message);
    else throw error;
  }
  return true;
}

async function route(page: Page, rest: string, isUserPath: boolean): Promise<void> {
  const { req, base } = page;
  const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
  if (isUserPath) {
    // The login cookie's path is hub/: send /user/… to /hub/user/… where the browser shows it, as JupyterHub does.
    if (!page.url.pathname.startsWith(`${base}hub/`)) {
      return go(page, `${base}hub/${page.url.pathname.slice(base.length)}${page.url.search}`);
    }
    return notRunning(page, page.url.pathname);
  }
  const parts = rest.split('/').filter(Boolean).map(decode);
  const [first, ...tail] = parts;
  if (first === undefined) return home(page, true);
  if (first === 'login') return method === 'POST' ? loginPost(page) : loginGet(page);
  if (first === 'logout') {
    // The sign-out button posts with the token; a GET (JupyterHub's link) signs out too.
    if (method === 'POST' && !page.xsrfCheck((await readForm(req)).get('_xsrf'))) {
      throw new HttpError(
        403,
        'This form has expired or did not come from this hub. Go back, reload the page and try again.',
      );
    }
    return logout(page);
  }
  if (first === 'error' && tail.length === 1) return proxyError(page, tail[0]!);
  // Everything below needs a signed-in user.
  if (!page.identity) {
    if (method !== 'GET') throw new HttpError(403, 'You are not signed in; sign in and try again.');
    return go(page, `${base}hub/login?next=${encodeURIComponent(page.url.pathname + page.url.search)}`);
  }
  if (method === 'POST') {
    const form = await readForm(req);
    if (!page.xsrfCheck(form.get('_xsrf'))) {
      throw new HttpError(
        403,
        'This form has expired or did not come from this hub. Go back, reload the page and try again.',
      );
    }
    if (first === 'spawn' && tail.length >= 1 && tail.length <= 2)
      return spawnPost(page, tail[0]!, tail[1] ?? '', form);
    if (first === 'stop' && tail.length >= 1 && tail.length <= 2)
      return stopPost(page, tail[0]!, tail[1] ?? '', form);
    if (first === 'admin') return adminPost(page, tail, form);
    if (first === 'token') return tokenPost(page, tail, form);
    throw new HttpError(404, 'There is no such page.');
  }
  if (method !== 'GET') throw new HttpError(405, 'Method not allowed');
  if (first === 'home' && tail.length === 0) return home(page, false);
  if (first === 'spawn' && tail.length <= 2) {
    const user = tail[0] ?? page.identity.name;
    return spawnGet(page, user, tail[1] ?? page.url.searchParams.get('server_name') ?? '');
  }
  if (first === 'spawn-pending' && tail.length >= 1 && tail.length <= 2)
    return pending(page, tail[0]!, tail[1] ?? '');
  if (first === 'admin' && tail.length === 0) return admin(page);
  if (first === 'token' && tail.length === 0) return tokenPage(page);
  throw new HttpError(404, 'There is no such page.');
}

function decode(segment: string): string {
  let text: string;
  try {
    text = decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'Malformed URL');
  }
  if (text.includes('\0')) throw new HttpError(400, 'Malformed URL');
  return text;
}

// --- login and logout ---

function loginForm(page: Page, next: string | null, message?: string): Raw {
  return html`${message ? html`<p class="alert" role="alert">${message}</p>` : ''}
<form method="post" action="${page.base}hub/login${next ? `?next=${encodeURIComponent(next)}` : ''}">
${hidden(page)}
<label for="username">Username</label><input type="text" id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="actions"><button type="submit">Sign in</button></div></form>`;
}

async function loginGet(page: Page): Promise<void> {
  const { hub, req } = page;
  const next = page.url.searchParams.get('next');
  const auth = hub.authenticator;
  if (auth.kind === 'header') {
    if (!auth.trustsSource(req.socket.remoteAddress, req.headers['x-forwarded-for'])) {
      throw new HttpError(403, 'The user header is accepted only from trusted proxies.');
    }
    if (!auth.hasProxySecret(req.headers)) {
      hub.log.warn({ from: req.socket.remoteAddress }, 'user header without the proxy’s shared secret');
      throw new HttpError(
        403,
        'The user header is accepted only with the front proxy’s shared secret (HeaderAuthenticator.shared_secret).',
      );
    }
    const raw = req.headers[auth.headerName];
    const name = normalizeUsername(Array.isArray(raw) ? (raw[0] ?? '') : (raw ?? ''));
    if (!validUsername(name)) {
      show(
        page,
        401,
        'Unauthorized',
        html`<p class="alert" role="alert">No valid user name in the ${auth.headerName} header.</p>`,
      );
      return;
    }
    return signIn(page, name, next);
  }
  if (page.identity) return go(page, await landing(page, page.identity.id, page.identity.name, next));
  show(page, 200, 'Sign in', loginForm(page, next));
}

async function loginPost(page: Page): Promise<void> {
  const { hub } = page;
  const form = await readForm(page.req);
  const next = form.get('next') ?? page.url.searchParams.get('next');
  if (hub.authenticator.kind === 'header')
    throw new HttpError(405, 'This hub signs in through its proxy’s header.');
  if (!page.xsrfCheck(form.get('_xsrf'))) {
    show(page, 403, 'Sign in', loginForm(page, next, 'The sign-in form expired. Please try again.'));
    return;
  }
  const client = LoginThrottle.client(page.req);
  const throttle = throttleOf(hub);
  const wait = await throttle.retryAfter(client);
  if (wait > 0) {
    hub.log.warn({ client, retry_after_s: wait }, 'login throttled');
    const minutes = Math.ceil(wait / 60);
    show(
      page,
      429,
      'Sign in',
      loginForm(
        page,
        next,
        `Too many failed sign-ins. Try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`,
      ),
      { 'retry-after': String(wait) },
    );
    return;
  }
  const name = normalizeUsername(form.get('username') ?? '');
  if (validUsername(name) && hub.authenticator.checkPassword(form.get('password') ?? '')) {
    await throttle.succeeded(client);
    return signIn(page, name, next);
  }
  await throttle.failed(client);
  hub.log.warn({ user: validUsername(name) ? name : undefined, client }, 'failed login');
  show(page, 403, 'Sign in', loginForm(page, next, 'Invalid username or password.'));
}

async function signIn(page: Page, name: string, next: string | null): Promise<void> {
  const { hub } = page;
  const existing = await userDb.findUser(hub.db, name);
  if (!hub.authenticator.isAllowed(name, existing !== undefined)) {
    throw new HttpError(403, `User ${name} is not allowed to use this hub.`);
  }
  // Two first sign-ins at once (a double submit, two replicas) both find no user: created once.
  const user = existing ?? (await userDb.findOrCreateUser(hub.db, name, hub.authenticator.isAdmin(name)));
  const cookie = hub.sessions.cookie(
    hub.sessions.sign(user.cookie_id),
    `${hub.config.baseUrl}hub/`,
    page.secure,
  );
  hub.log.info({ user: name }, 'user logged in');
  go(page, await landing(page, user.id, name, next), { 'set-cookie': cookie });
}

/**
 * Where a signed-in user goes, as JupyterHub 3.0's get_next_url: a local `next` (a `/user/…` one
 * through `/hub/user/…`), else `default_url`, else their running server, else the spawn page
 * (`redirect_to_server`; home when it is false).
 */
async function landing(page: Page, userId: number, name: string, next: string | null): Promise<string> {
  const { base, hub } = page;
  const local = localNext(base, next);
  if (local?.startsWith(`${base}user/`)) return `${base}hub/${local.slice(base.length)}`;
  if (local) return local;
  const defaultUrl = hub.config.traits['JupyterHub.default_url'];
  if (typeof defaultUrl === 'string' && defaultUrl) return defaultUrl;
  if (hub.config.traits['JupyterHub.redirect_to_server'] === false) return `${base}hub/home`;
  const row = await spawnerDb.findSpawner(hub.db, userId, '');
  if (row && (row.url !== null || row.pending !== null)) return serverPrefix(base, name, '');
  return `${base}hub/spawn`;
}

async function logout(page: Page): Promise<void> {
  const { hub, base } = page;
  const identity = page.identity;
  // A GET (JupyterHub's link) or the header's sign-out form; ending a session is all either does.
  if (identity) {
    // A new cookie id ends every session of this user, on every hub process.
    await hub.db.run('UPDATE users SET cookie_id = ? WHERE id = ?', [
      randomBytes(16).toString('hex'),
      identity.id,
    ]);
    if (hub.config.traits['JupyterHub.shutdown_on_logout'] === true) {
      for (const row of await spawnerDb.activeSpawners(hub.db)) {
        if (row.user_id === identity.id && row.url !== null) {
          await callApi(hub, identity, servers.stopServer, [identity.name, row.name]);
        }
      }
    }
    hub.log.info({ user: identity.name }, 'user logged out');
  }
  const clear = [
    SessionSigner.clear(`${base}hub/`),
    `${xsrfCookieName}=; Path=${base}hub/; HttpOnly; SameSite=Lax; Max-Age=0`,
  ];
  page.cookies = [];
  page.identity = undefined;
  redirect(page.res, `${base}hub/login`, { 'set-cookie': clear });
}

// --- home ---

interface ServerModel {
  name: string;
  ready: boolean;
  pending: string | null;
  stopped: boolean;
  url: string;
  started: string | null;
  last_activity: string | null;
  user_options: Record<string, unknown>;
}

async function home(page: Page, root: boolean): Promise<void> {
  const { hub, base } = page;
  if (!page.identity) return go(page, `${base}hub/login?next=${encodeURIComponent(`${base}hub/home`)}`);
  // /hub/ sends a signed-in user on as after login (JupyterHub's RootHandler).
  if (root) return go(page, await landing(page, page.identity.id, page.identity.name, null));
  const me = page.identity.name;
  const answer = await callApi(hub, page.identity, users.getUser, [me], {
    query: { include_stopped_servers: '1' },
  });
  if (answer.status !== 200)
    throw new HttpError(answer.status, answer.body?.message ?? 'Cannot read your servers');
  const model = answer.body as { servers?: Record<string, ServerModel> };
  const all = model.servers ?? {};
  const main = all[''];
  const named = Object.values(all).filter((s) => s.name !== '');
  const { allowNamedServers, namedServerLimitPerUser: limit } = hub.config;
  const profiles = hasSpawnForm(hub);
  const body = html`
<section aria-labelledby="default-server"><h2 id="default-server">Your server</h2>
${serverActions(page, me, '', main, profiles, `${base}hub/home`)}
</section>
${
  allowNamedServers
    ? html`<section aria-labelledby="named-servers"><h2 id="named-servers">Named servers</h2>
<p>${limit > 0 ? `You have ${named.length} of at most ${limit} named servers.` : `You have ${named.length} named server${named.length === 1 ? '' : 's'}; there is no limit.`}</p>
${
  named.length
    ? html`<table><caption class="muted">Your named servers</caption><thead><tr><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Last activity</th><th scope="col">Actions</th></tr></thead><tbody>
${named.map(
  (s) =>
    html`<tr><th scope="row">${s.name}</th><td>${statusOf(s)}</td><td>${when(s.last_activity)}</td><td>${serverActions(page, me, s.name, s, profiles, `${base}hub/home`, true)}</td></tr>`,
)}</tbody></table>`
    : ''
}
${
  limit > 0 && named.length >= limit
    ? html`<p class="notice">Delete a named server before creating another.</p>`
    : html`<form method="${profiles ? 'get' : 'post'}" action="${base}hub/spawn/${urlEscapePath(me)}">
${profiles ? '' : hidden(page)}
<label for="server_name">New server name</label>
<input type="text" id="server_name" name="server_name" required pattern="[^/\\s?#%]+" maxlength="255" aria-describedby="server-name-help">
<p id="server-name-help" class="muted">Letters, digits and punctuation; no spaces or slashes.</p>
<div class="actions"><button type="submit">Create and start</button></div></form>`
}
</section>`
    : ''
}`;
  show(page, 200, 'Home', body);
}

function statusOf(server: ServerModel | undefined): Raw {
  if (!server || server.stopped) return html`<span>Stopped</span>`;
  if (server.pending === 'spawn') return html`<span class="status-pending">Starting…</span>`;
  if (server.pending === 'stop') return html`<span class="status-pending">Stopping…</span>`;
  if (server.ready) return html`<span class="status-running">Running</span>`;
  return html`<span>Stopped</span>`;
}

/** Open / stop / start / delete for one server, as forms that work without JavaScript. */
function serverActions(
  page: Page,
  user: string,
  server: string,
  model: ServerModel | undefined,
  profiles: boolean,
  next: string,
  compact = false,
): Raw {
  const { base } = page;
  const path = `${urlEscapePath(user)}${server ? `/${urlEscapePath(server)}` : ''}`;
  const label = server ? ` ${server}` : '';
  const running = model && !model.stopped && model.ready;
  const starting = model?.pending === 'spawn';
  const out: Raw[] = [];
  if (!compact)
    out.push(
      html`<p>Status: ${statusOf(model)}${running && model?.started ? html` · started ${when(model.started)}` : ''}</p>`,
    );
  if (running) {
    out.push(html`<a class="button" href="${model.url}">Open${label}</a>`);
    out.push(
      html`<form method="post" action="${base}hub/stop/${path}" class="inline">${hidden(page)}<input type="hidden" name="next" value="${next}"><button type="submit" class="secondary">Stop${label || ' my server'}</button></form>`,
    );
  } else if (starting) {
    out.push(
      html`<a class="button secondary" href="${base}hub/spawn-pending/${path}">See progress${label}</a>`,
    );
  } else if (model?.pending !== 'stop') {
    out.push(
      profiles
        ? html`<a class="button" href="${base}hub/spawn/${path}">Start${label || ' my server'}</a>`
        : html`<form method="post" action="${base}hub/spawn/${path}" class="inline">${hidden(page)}<input type="hidden" name="next" value="${next}"><button type="submit">Start${label || ' my server'}</button></form>`,
    );
  }
  if (server && !starting && model?.pending !== 'stop') {
    out.push(
      html`<form method="post" action="${base}hub/stop/${path}" class="inline">${hidden(page)}<input type="hidden" name="remove" value="1"><input type="hidden" name="next" value="${next}"><button type="submit" class="danger" aria-label="Delete server ${server}">Delete</button></form>`,
    );
  }
  return html`<div class="actions">${out}</div>`;
}

// --- spawn ---

/** DockerSpawner's options_form: a choice of allowed_images' names when there are two or more. */
function imageOptions(hub: Hub): string[] {
  return hub.config.docker ? imageChoices(hub.config.docker) : [];
}

/** Whether starting a server goes through the spawn form (JupyterHub: the spawner has an options_form). */
function hasSpawnForm(hub: Hub): boolean {
  return (
    hub.config.spawner.profileList.length > 0 ||
    profileListFunction(hub) !== undefined ||
    imageOptions(hub).length > 0
  );
}

/** How long the spawn form waits for a profile_list function before it shows the failure. */
export const profileListTimeoutMs = 10_000;

/** KubeSpawner's callable profile_list (a JS/TS config module's), when the spawner is KubeSpawner. */
function profileListFunction(hub: Hub): ((spawner: KubeSpawnerView) => unknown) | undefined {
  return hub.config.kube ? hub.config.hooks.kube?.profile_list : undefined;
}

/**
 * The profiles offered for this server: Spawner.profile_list, or — as KubeSpawner renders its
 * options form — what the profile_list function answers for this user and server, awaited for
 * at most profileListTimeoutMs. A function that throws, answers something that is not a list of
 * profiles or does not answer gives `error`, never a failed request.
 */
async function offeredProfiles(
  page: Page,
  user: string,
  server: string,
): Promise<{ profiles: Profile[]; error?: string }> {
  const { hub } = page;
  const listed = hub.config.spawner.profileList;
  const callable = profileListFunction(hub);
  if (listed.length > 0 || !callable || !hub.config.kube) return { profiles: listed };
  const owner = await userDb.findUser(hub.db, user);
  const spec = {
    user: {
      name: user,
      admin: owner?.admin === 1,
      groups: owner ? await userDb.groupsOfUser(hub.db, owner.id) : [],
    },
    serverName: server,
  };
  const what = 'KubeSpawner.profile_list(spawner)';
  let timer: NodeJS.Timeout | undefined;
  try {
    const names = kubeNames(spec, hub.config.kube);
    const view: KubeSpawnerView = {
      user: { ...spec.user, groups: [...spec.user.groups] },
      name: server,
      user_options: {},
      namespace: names.namespace,
      pod_name: names.podName,
      pvc_name: names.pvcName,
    };
    const answer = await Promise.race([
      Promise.resolve().then(() => callable(view)),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${profileListTimeoutMs / 1000} s`)),
          profileListTimeoutMs,
        );
      }),
    ]);
    return { profiles: parseProfiles(what, answer) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    hub.log.error({ user, server, err: error }, `${what} failed`);
    return { profiles: [], error: message.startsWith(what) ? message : `${what}: ${message}` };
  } finally {
    clearTimeout(timer);
  }
}

async function spawnGet(page: Page, user: string, server: string): Promise<void> {
  const { hub, base } = page;
  const images = imageOptions(hub);
  if (!hasSpawnForm(hub)) return spawnWithoutForm(page, user, server);
  if (
    profileListFunction(hub) &&
    hub.config.spawner.profileList.length === 0 &&
    !(await allows(page.identity!.parsed, 'servers', { user, server: `${user}/${server}` }))
  ) {
    // The function is asked about a user only for someone who may start that user's servers.
    return errorPage(page, 403, `You may not start ${server ? `${user}/${server}` : `${user}’s server`}.`);
  }
  const offered = await offeredProfiles(page, user, server);
  if (offered.error !== undefined) {
    return show(
      page,
      500,
      'Server options unavailable',
      html`<p class="alert" role="alert">The server options could not be loaded: ${offered.error}</p>
<p><a href="${base}hub/home">Back to home</a></p>`,
    );
  }
  const profiles = offered.profiles;
  if (profiles.length === 0 && images.length === 0) return spawnWithoutForm(page, user, server);
  const path = `${urlEscapePath(user)}${server ? `/${urlEscapePath(server)}` : ''}`;
  const target = server ? `${user}/${server}` : user;
  const next = page.url.searchParams.get('next');
  const form = html`<form method="post" action="${base}hub/spawn/${path}">${hidden(page)}
${next ? html`<input type="hidden" name="next" value="${next}">` : ''}
${
  profiles.length
    ? html`<fieldset><legend>Server options</legend>
${profiles.map((p, i) => {
  const checked = p.default || (!profiles.some((q) => q.default) && i === 0);
  return html`<label class="option" for="profile-${p.slug}"><input type="radio" name="profile" id="profile-${p.slug}" value="${p.slug}"${checked ? html` checked` : ''}${p.description ? html` aria-describedby="profile-${p.slug}-description"` : ''}><span><strong>${p.displayName}</strong>${p.description ? html`<br><span id="profile-${p.slug}-description" class="muted">${p.description}</span>` : ''}</span></label>`;
})}
</fieldset>`
    : html`<p>Start ${server ? html`the server <strong>${server}</strong>` : 'your server'}?</p>`
}
${
  images.length
    ? html`<label for="image">Select an image:</label>
<select name="image" id="image" required>
${images.map((name) => html`<option value="${name}"${name === hub.config.docker?.image ? html` selected` : ''}>${name}</option>`)}
</select>`
    : ''
}
<div class="actions"><button type="submit">Start</button> <a href="${base}hub/home">Cancel</a></div></form>`;
  show(
    page,
    200,
    server ? `Start ${target}` : user === page.identity?.name ? 'Start my server' : `Start ${user}’s server`,
    form,
  );
}

/** A server's URL as JupyterHub 3.0's User.server_url: a named server's without the final slash. */
function serverUrl(base: string, user: string, server: string): string {
  const prefix = serverPrefix(base, user, server);
  return server ? prefix.slice(0, -1) : prefix;
}

/**
 * JupyterHub 3.0's GET /hub/spawn when the spawner has no options form: a running server is
 * opened, a pending one followed, and otherwise the server is started at once and the browser
 * sent to the spawn-pending page (with its `next`).
 */
async function spawnWithoutForm(page: Page, user: string, server: string): Promise<void> {
  const { hub, base } = page;
  const path = `${urlEscapePath(user)}${server ? `/${urlEscapePath(server)}` : ''}`;
  const next = page.url.searchParams.get('next');
  const pendingUrl = `${base}hub/spawn-pending/${path}${next ? `?next=${encodeURIComponent(next)}` : ''}`;
  const opened = () => go(page, next ? safeNext(base, next) : serverUrl(base, user, server));
  if (await allows(page.identity!.parsed, 'servers', { user, server: `${user}/${server}` })) {
    const owner = await userDb.findUser(hub.db, user);
    const row = owner ? await spawnerDb.findSpawner(hub.db, owner.id, server) : undefined;
    if (row?.pending === 'spawn') return go(page, pendingUrl);
    if (row?.ready === 1 && row.pending === null && row.url !== null) return opened();
  }
  const answer = await callApi(hub, page.identity!, servers.startServer, [user, server]);
  if (answer.status === 201 || answer.status === 202) return go(page, pendingUrl);
  const message = String(answer.body?.message ?? 'The server could not be started');
  if (answer.status === 400 && message.endsWith('is already running')) return opened();
  hub.log.warn({ user, server, status: answer.status, reason: message }, 'start from the spawn page failed');
  errorPage(page, answer.status, message);
}

async function spawnPost(
  page: Page,
  user: string,
  serverInPath: string,
  form: URLSearchParams,
): Promise<void> {
  const { hub, base } = page;
  const server = serverInPath || (form.get('server_name') ?? '').trim();
  if (server && !validUsername(server)) throw new HttpError(400, `Invalid server name: ${server}`);
  // The profile_list function is asked about a user only for someone who may start that user's
  // servers; for anyone else the API refuses the start below.
  const mayAsk =
    hub.config.spawner.profileList.length > 0 ||
    !profileListFunction(hub) ||
    (await allows(page.identity!.parsed, 'servers', { user, server: `${user}/${server}` }));
  const offered = mayAsk ? await offeredProfiles(page, user, server) : { profiles: [] };
  if (offered.error !== undefined)
    throw new HttpError(500, `The server options could not be loaded: ${offered.error}`);
  const profiles = offered.profiles;
  let body: Record<string, unknown> | undefined;
  const chosen = form.get('profile');
  if (profiles.length) {
    const profile = chosen
      ? profiles.find((p) => p.slug === chosen)
      : (profiles.find((p) => p.default) ?? profiles[0]);
    if (!profile)
      throw new HttpError(400, `Unknown profile: ${chosen}. Go back and choose one of the listed options.`);
    body = { profile: profile.slug };
  }
  // DockerSpawner's options_from_form: the form's image, which the API checks against allowed_images.
  const image = form.get('image');
  if (image !== null) body = { ...body, image };
  const answer = await callApi(hub, page.identity!, servers.startServer, [user, server], { body });
  const prefix = serverPrefix(base, user, server);
  const pendingUrl = `${base}hub/spawn-pending/${urlEscapePath(user)}${server ? `/${urlEscapePath(server)}` : ''}`;
  const next = form.get('next');
  if (answer.status === 201) {
    return go(page, next && next !== `${base}hub/home` ? safeNext(base, next) : prefix);
  }
  if (answer.status === 202) return go(page, pendingUrl);
  const message = String(answer.body?.message ?? 'The server could not be started');
  if (answer.status === 400 && message.endsWith('is already running')) return go(page, prefix);
  hub.log.warn({ user, server, status: answer.status, reason: message }, 'start from the spawn page failed');
  errorPage(page, answer.status, message);
}

async function stopPost(page: Page, user: string, server: string, form: URLSearchParams): Promise<void> {
  const { hub, base } = page;
  const remove = form.get('remove') === '1';
  const answer = await callApi(hub, page.identity!, servers.stopServer, [user, server], {
    body: remove ? { remove: true } : undefined,
  });
  if (answer.status >= 400)
    return errorPage(page, answer.status, String(answer.body?.message ?? 'Cannot stop the server'));
  go(page, safeNext(base, form.get('next')));
}

async function pending(page: Page, user: string, server: string): Promise<void> {
  const { hub, base } = page;
  const target = server ? `${user}/${server}` : user;
  const allowed = await allows(page.identity!.parsed, 'read:servers', { user, server: `${user}/${server}` });
  const owner = allowed ? await userDb.findUser(hub.db, user) : undefined;
  const row = owner ? await spawnerDb.findSpawner(hub.db, owner.id, server) : undefined;
  if (!row) throw new HttpError(404, `There is no server ${target} you may see.`);
  const prefix = serverPrefix(base, user, server);
  if (row.ready === 1 && row.pending === null && row.url !== null)
    return go(page, serverUrl(base, user, server));
  const path = `${urlEscapePath(user)}${server ? `/${urlEscapePath(server)}` : ''}`;
  if (row.pending !== 'spawn') {
    if (row.failure) {
      show(
        page,
        200,
        `Server ${target} failed to start`,
        html`<p class="alert" role="alert">Spawn failed: ${row.failure}</p>
<div class="actions"><a class="button" href="${base}hub/spawn/${path}">Try again</a> <a href="${base}hub/home">Home</a></div>`,
      );
      return;
    }
    return go(page, `${base}hub/home`);
  }
  const events = JSON.parse(row.progress) as Array<{ progress?: number; message?: string }>;
  const last = events.at(-1);
  const percent = Math.max(0, Math.min(100, Number(last?.progress ?? 0)));
  const progressUrl = `${base}hub/api/users/${urlEscapePath(user)}/${server ? `servers/${urlEscapePath(server)}` : 'server'}/progress`;
  show(
    page,
    200,
    `Starting ${server ? target : user === page.identity!.name ? 'your server' : `${user}’s server`}`,
    html`<div id="progress-root" data-progress-url="${progressUrl}" data-next-url="${prefix}">
<p>Your server is starting; this page follows it and opens it when it is ready.</p>
<label for="progress-bar">Progress</label>
<progress id="progress-bar" max="100" value="${percent}">${percent}%</progress>
<p id="progress-message" aria-live="polite">${last?.message ?? 'Waiting for the server…'}</p>
<details><summary>Event log</summary><ol id="progress-log" class="log">${events.map((e) => html`<li>${e.message ?? ''}</li>`)}</ol></details>
<noscript><p class="notice">Without JavaScript this page reloads every 3 seconds.</p><meta http-equiv="refresh" content="3"></noscript>
</div><script src="${base}hub/static/progress.js" defer></script>`,
  );
}

// --- admin ---

const adminPageSize = 50;

async function admin(page: Page): Promise<void> {
  const { hub, base } = page;
  const identity = page.identity!;
  if (!(await allows(identity.parsed, 'admin-ui')) || !(await allows(identity.parsed, 'list:users'))) {
    throw new HttpError(403, 'Only administrators may see the admin page.');
  }
  const search = (page.url.searchParams.get('search') ?? '').trim().slice(0, 255);
  const asked = Number.parseInt(page.url.searchParams.get('offset') ?? '0', 10) || 0;
  const offset = Math.min(Math.max(0, asked), 1_000_000_000);
  const { rows, total } = await userDb.listUsers(hub.db, {
    offset,
    limit: adminPageSize,
    state: undefined,
    ...(search ? { nameFilter: search } : {}),
  });
  const spawners = await userDb.spawnersOfUsers(
    hub.db,
    rows.map((r) => r.id),
  );
  const here = `${base}hub/admin${search || offset ? `?${new URLSearchParams({ ...(search ? { search } : {}), ...(offset ? { offset: String(offset) } : {}) })}` : ''}`;
  const pageLink = (to: number) =>
    `${base}hub/admin?${new URLSearchParams({ ...(search ? { search } : {}), offset: String(to) })}`;
  const models = (
    rows as Array<{ id: number; name: string; admin: number; last_activity: string | null }>
  ).map((row) => {
    const list = spawners.get(row.id) ?? [];
    return { row, list };
  });
  const body = html`
<form method="get" action="${base}hub/admin" role="search" class="actions">
<label for="search" class="visually-inline">Search users</label>
<input type="search" id="search" name="search" value="${search}" placeholder="name contains…">
<button type="submit" class="secondary">Search</button>${search ? html` <a href="${base}hub/admin">Clear</a>` : ''}
</form>
<table><caption class="muted">${total} user${total === 1 ? '' : 's'}${search ? ` matching “${search}”` : ''}; showing ${rows.length ? offset + 1 : 0}–${offset + rows.length}</caption>
<thead><tr><th scope="col">User</th><th scope="col">Admin</th><th scope="col">Servers</th><th scope="col">Last activity</th><th scope="col">Actions</th></tr></thead><tbody>
${models.map(({ row, list }) => {
  const names = list.length ? list : [{ name: '', url: null, pending: null, ready: 0 }];
  return html`<tr><th scope="row">${row.name}</th>
<td><form method="post" action="${base}hub/admin/users/${urlEscapePath(row.name)}/admin" class="inline">${hidden(page)}<input type="hidden" name="next" value="${here}"><input type="hidden" name="admin" value="${row.admin === 1 ? '0' : '1'}">${row.admin === 1 ? 'yes' : 'no'} <button type="submit" class="link" aria-label="${row.admin === 1 ? `Remove admin from ${row.name}` : `Make admin: ${row.name}`}">${row.admin === 1 ? 'Remove admin' : 'Make admin'}</button></form></td>
<td>${names.map((s) => {
    const label = s.name || 'default';
    const path = `${urlEscapePath(row.name)}${s.name ? `/${urlEscapePath(s.name)}` : ''}`;
    const running = s.url !== null && s.ready === 1 && s.pending === null;
    return html`<div>${label}: ${running ? html`<span class="status-running">running</span>` : s.pending ? html`<span class="status-pending">${s.pending}…</span>` : 'stopped'}
${
  running
    ? html`<form method="post" action="${base}hub/stop/${path}" class="inline">${hidden(page)}<input type="hidden" name="next" value="${here}"><button type="submit" class="secondary" aria-label="Stop ${row.name}’s server ${label}">Stop</button></form>`
    : s.pending
      ? ''
      : html`<form method="post" action="${base}hub/spawn/${path}" class="inline">${hidden(page)}<input type="hidden" name="next" value="${here}"><button type="submit" aria-label="Start ${row.name}’s server ${label}">Start</button></form>`
}</div>`;
  })}</td>
<td>${when(row.last_activity)}</td>
<td><form method="post" action="${base}hub/admin/users/${urlEscapePath(row.name)}/delete" class="inline">${hidden(page)}<input type="hidden" name="next" value="${here}"><button type="submit" class="danger" aria-label="Delete user ${row.name}">Delete</button></form></td></tr>`;
})}
</tbody></table>
<nav class="pager" aria-label="Pages of users">
${offset > 0 ? html`<a href="${pageLink(Math.max(0, offset - adminPageSize))}" rel="prev">Previous</a>` : ''}
${offset + rows.length < total ? html`<a href="${pageLink(offset + adminPageSize)}" rel="next">Next</a>` : ''}
</nav>
<h2 id="add-users">Add users</h2>
<form method="post" action="${base}hub/admin/users" aria-labelledby="add-users">${hidden(page)}
<input type="hidden" name="next" value="${here}">
<label for="usernames">User names, one per line</label>
<textarea id="usernames" name="usernames" rows="3" required></textarea>
<p><label class="check"><input type="checkbox" name="admin" value="1"> Administrators</label></p>
<div class="actions"><button type="submit">Add users</button></div></form>`;
  show(page, 200, 'Admin', body);
}

async function adminPost(page: Page, tail: string[], form: URLSearchParams): Promise<void> {
  const { hub, base } = page;
  const identity = page.identity!;
  if (!(await allows(identity.parsed, 'admin-ui')))
    throw new HttpError(403, 'Only administrators may do this.');
  const next = safeNext(base, form.get('next') ?? `${base}hub/admin`);
  let answer: { status: number; body: { message?: string } } | undefined;
  if (tail.length === 1 && tail[0] === 'users') {
    const usernames = (form.get('usernames') ?? '')
      .split(/[\s,]+/)
      .map((n) => n.trim())
      .filter(Boolean);
    answer = await callApi(hub, identity, users.createUsers, [], {
      body: { usernames, admin: form.get('admin') === '1' },
    });
  } else if (tail.length === 3 && tail[0] === 'users' && tail[2] === 'delete') {
    answer = await callApi(hub, identity, users.deleteUser, [tail[1]!]);
  } else if (tail.length === 3 && tail[0] === 'users' && tail[2] === 'admin') {
    answer = await callApi(hub, identity, users.patchUser, [tail[1]!], {
      body: { admin: form.get('admin') === '1' },
    });
  } else {
    throw new HttpError(404, 'There is no such page.');
  }
  if (answer.status >= 400)
    return errorPage(page, answer.status, String(answer.body?.message ?? 'The change failed'));
  go(page, next);
}

// --- tokens ---

async function tokenPage(page: Page, created?: { token: string; note: string }): Promise<void> {
  const { hub, base } = page;
  const identity = page.identity!;
  const answer = await callApi(hub, identity, tokens.listTokens, [identity.name]);
  if (answer.status !== 200)
    throw new HttpError(answer.status, answer.body?.message ?? 'Cannot list your tokens');
  const list = (answer.body.api_tokens ?? []) as Array<{
    id: string;
    note: string | null;
    created: string;
    expires_at: string | null;
    last_activity: string | null;
    oauth_client: string;
  }>;
  const body = html`
${
  created
    ? html`<div class="notice" role="status"><p>Your new token${created.note ? html` “${created.note}”` : ''}. Copy it now: it is not shown again.</p>
<p class="token" id="new-token">${created.token}</p></div>`
    : ''
}
<h2 id="new-token-heading">Request a new API token</h2>
<form method="post" action="${base}hub/token" aria-labelledby="new-token-heading">${hidden(page)}
<label for="note">Note</label>
<input type="text" id="note" name="note" maxlength="1000" aria-describedby="note-help">
<p id="note-help" class="muted">What the token is for, to recognize it later.</p>
<label for="expires_in">Expires in</label>
<select id="expires_in" name="expires_in">
<option value="3600">1 hour</option><option value="86400">1 day</option><option value="604800">1 week</option><option value="2592000">30 days</option><option value="">Never</option>
</select>
<div class="actions"><button type="submit">Request new API token</button></div></form>
<h2>Your tokens</h2>
${
  list.length
    ? html`<table><thead><tr><th scope="col">Note</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">Expires</th><th scope="col">Actions</th></tr></thead><tbody>
${list.map(
  (
    t,
  ) => html`<tr><th scope="row">${t.note ?? ''}</th><td>${when(t.created)}</td><td>${when(t.last_activity)}</td><td>${t.expires_at ? when(t.expires_at) : 'never'}</td>
<td><form method="post" action="${base}hub/token/${encodeURIComponent(t.id)}/revoke" class="inline">${hidden(page)}<button type="submit" class="danger" aria-label="Revoke token ${t.note ?? t.id}">Revoke</button></form></td></tr>`,
)}</tbody></table>`
    : html`<p>You have no tokens.</p>`
}`;
  show(page, created ? 201 : 200, 'Tokens', body);
}

async function tokenPost(page: Page, tail: string[], form: URLSearchParams): Promise<void> {
  const { hub, base } = page;
  const identity = page.identity!;
  if (tail.length === 0) {
    const note = (form.get('note') ?? '').slice(0, 1000);
    const expires = form.get('expires_in') ?? '';
    const body: Record<string, unknown> = { note: note || 'Requested via the token page' };
    if (expires) {
      const seconds = Number(expires);
      if (!Number.isFinite(seconds) || seconds <= 0)
        throw new HttpError(400, 'Expires in must be a positive number of seconds.');
      body.expires_in = seconds;
    }
    const answer = await callApi(hub, identity, tokens.createToken, [identity.name], { body });
    if (answer.status !== 201)
      return errorPage(page, answer.status, String(answer.body?.message ?? 'Cannot create the token'));
    return tokenPage(page, { token: answer.body.token, note });
  }
  if (tail.length === 2 && tail[1] === 'revoke') {
    const answer = await callApi(hub, identity, tokens.deleteToken, [identity.name, tail[0]!]);
    if (answer.status >= 400)
      return errorPage(page, answer.status, String(answer.body?.message ?? 'Cannot revoke the token'));
    return go(page, `${base}hub/token`);
  }
  throw new HttpError(404, 'There is no such page.');
}

// --- errors from the proxy, and user URLs the hub receives ---

/** `/hub/error/<code>?url=…`, where the proxy sends a request it could not serve. */
async function proxyError(page: Page, codeText: string): Promise<void> {
  const code = /^[1-5]\d\d$/.test(codeText) ? Number(codeText) : 500;
  const target = page.url.searchParams.get('url') ?? '';
  const status = code >= 400 ? code : 500;
  if (status === 503 || status === 502 || status === 404) {
    const server = userServerOf(page.base, target);
    if (server) return notRunning(page, target, status);
  }
  errorPage(
    page,
    status,
    status === 503
      ? 'The service is not available right now; try again in a moment.'
      : `The proxy answered ${status} for this address.`,
  );
}

/** '/user/<name>/[<server>/]…' → its user and server name. */
function userServerOf(base: string, path: string): { user: string; server: string } | undefined {
  let rest: string;
  if (path.startsWith(`${base}user/`)) rest = path.slice(`${base}user/`.length);
  else if (path.startsWith(`${base}hub/user/`)) rest = path.slice(`${base}hub/user/`.length);
  else return undefined;
  const [user, server] = rest.split(/[?#]/)[0]!.split('/');
  try {
    return user
      ? { user: decodeURIComponent(user), server: server ? decodeURIComponent(server) : '' }
      : undefined;
  } catch {
    return undefined;
  }
}

/** JupyterHub's "server not running" page (503), with a start button for one's own server. */
async function notRunning(page: Page, target: string, status = 503): Promise<void> {
  const { base, hub } = page;
  const found = userServerOf(base, target);
  if (!found) return errorPage(page, 404, 'There is no such page.');
  if (!page.identity) return go(page, `${base}hub/login?next=${encodeURIComponent(target)}`);
  let { user, server } = found;
  // '/user/<u>/lab' is the default server's JupyterLab unless <u> has a named server 'lab'.
  const owner = await userDb.findUser(hub.db, user);
  if (server && owner && !hub.config.allowNamedServers) server = '';
  if (server && owner && !(await spawnerDb.findSpawner(hub.db, owner.id, server))) server = '';
  const name = server ? `${user}/${server}` : user;
  const own = page.identity.name === user;
  const mayStart =
    owner && (await allows(page.identity.parsed, 'servers', { user, server: `${user}/${server}` }));
  const row = owner ? await spawnerDb.findSpawner(hub.db, owner.id, server) : undefined;
  const path = `${urlEscapePath(user)}${server ? `/${urlEscapePath(server)}` : ''}`;
  if (row?.pending === 'spawn' && mayStart) return go(page, `${base}hub/spawn-pending/${path}`);
  // Running (its route was missing a moment ago): back to the server, at most a few times.
  const redirects = Number(page.url.searchParams.get('redirects') ?? 0);
  if (row?.ready === 1 && row.pending === null && row.url !== null && redirects < 3 && status === 503) {
    const back = new URL(page.url.href);
    back.pathname = target.startsWith(`${base}hub/user/`)
      ? `${base}${target.slice(`${base}hub/`.length)}`
      : target;
    back.searchParams.set('redirects', String(redirects + 1));
    return go(page, back.pathname + back.search);
  }
  const profiles = hasSpawnForm(hub);
  const start = mayStart
    ? profiles
      ? html`<a class="button" href="${base}hub/spawn/${path}?next=${encodeURIComponent(safeNext(base, target))}">Launch server</a>`
      : html`<form method="post" action="${base}hub/spawn/${path}" class="inline">${hidden(page)}<input type="hidden" name="next" value="${safeNext(base, target)}"><button type="submit">Launch server</button></form>`
    : '';
  show(
    page,
    status,
    'Server not running',
    html`<p>${own ? (server ? html`Your server <strong>${server}</strong> is not running.` : 'Your server is not running.') : html`The server of ${name} is not running.`}${mayStart ? ' Would you like to start it?' : ''}</p>
<div class="actions">${start} <a href="${base}hub/home">Home</a></div>`,
  );
}

/** JupyterHub's 403 page, for a browser the OAuth provider refuses (another user's server). */
export function forbiddenPage(hub: Hub, res: ServerResponse, message: string): void {
  const base = hub.config.baseUrl;
  sendPage(
    res,
    403,
    'Forbidden',
    html`<p class="alert" role="alert">${message}</p><p><a href="${base}hub/home">Back to home</a></p>`,
    { base },
  );
}
