// The REST API under /hub/api: routes, who is asking, JSON errors, request metrics.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { cookieAllowedForApi } from '../auth/referer.ts';
import { DatabaseUnavailableError, HttpError } from '../errors.ts';
import type { Hub } from '../hub.ts';
import * as oauth from '../oauth.ts';
import type { ApiContext } from './context.ts';
import { Router, sendError } from './http.ts';
import * as misc from './misc.ts';
import * as servers from './servers.ts';
import * as tokens from './tokens.ts';
import * as users from './users.ts';

function routes(): Router {
  const router = new Router();
  type H = (context: ApiContext) => Promise<void>;
  const on = (method: string, pattern: string, handler: H) =>
    router.on(method, pattern, handler as (context: unknown) => Promise<void> as never);
  on('GET', '/', misc.root);
  on('GET', '/info', misc.info);
  on('GET', '/user', users.getSelf);
  on('GET', '/users', users.listUsers);
  on('POST', '/users', users.createUsers);
  on('GET', '/users/*', users.getUser);
  on('POST', '/users/*', users.createUser);
  on('PATCH', '/users/*', users.patchUser);
  on('DELETE', '/users/*', users.deleteUser);
  on('POST', '/users/*/activity', users.postActivity);
  on('POST', '/users/*/server', servers.startServer);
  on('DELETE', '/users/*/server', servers.stopServer);
  on('GET', '/users/*/server/progress', servers.progress);
  on('POST', '/users/*/servers/*', servers.startServer);
  on('DELETE', '/users/*/servers/*', servers.stopServer);
  on('GET', '/users/*/servers/*/progress', servers.progress);
  on('GET', '/users/*/tokens', tokens.listTokens);
  on('POST', '/users/*/tokens', tokens.createToken);
  on('GET', '/users/*/tokens/*', tokens.getToken);
  on('DELETE', '/users/*/tokens/*', tokens.deleteToken);
  on('GET', '/proxy', misc.getProxy);
  on('POST', '/proxy', misc.postProxy);
  on('PATCH', '/proxy', misc.patchProxy);
  on('GET', '/services', misc.listServices);
  on('GET', '/services/*', misc.getService);
  on('GET', '/groups', misc.listGroups);
  on('POST', '/groups', misc.createGroups);
  on('GET', '/groups/*', misc.getGroup);
  on('POST', '/groups/*', misc.createGroup);
  on('DELETE', '/groups/*', misc.deleteGroup);
  on('POST', '/groups/*/users', (c) => misc.changeMembers(c, true));
  on('DELETE', '/groups/*/users', (c) => misc.changeMembers(c, false));
  on('POST', '/shutdown', misc.shutdown);
  on('GET', '/oauth2/authorize', oauth.authorize);
  on('POST', '/oauth2/token', oauth.token);
  return router;
}

/** Handles a request whose path (after the base URL) starts with hub/api. */
export function createApiHandler(hub: Hub) {
  const router = routes();
  const prefix = `${hub.config.baseUrl}hub/api`;
  const hubBase = `${hub.config.baseUrl}hub/`;
  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const began = performance.now();
    const path = url.pathname.slice(prefix.length) || '/';
    const match = router.match(req.method ?? 'GET', path);
    let handlerLabel = 'unknown';
    try {
      if (match === undefined) throw new HttpError(404, 'Not Found');
      if (match === 'method') throw new HttpError(405, 'Method Not Allowed');
      handlerLabel = match.handler.name || 'handler';
      let identity = await hub.identity.fromRequest(req, url.searchParams, true);
      // A login cookie counts only from the hub's own pages (JupyterHub 3.0's Referer and
      // Content-Type checks), for any method as in 3.0; the OAuth authorize step is a browser
      // navigation, a page in JupyterHub.
      if (
        identity &&
        !identity.token &&
        match.handler !== oauth.authorize &&
        !cookieAllowedForApi(req, hubBase)
      )
        identity = undefined;
      const context = {
        req,
        res,
        params: match.params,
        query: url.searchParams,
        url,
        hub,
        identity,
      } as ApiContext;
      await (match.handler as unknown as (c: ApiContext) => Promise<void>)(context);
    } catch (error) {
      if (error instanceof HttpError) {
        if (error.status === 413) {
          // The rest of the body is never read: close the connection once the answer is out.
          res.once('finish', () => req.socket.destroySoon());
          sendError(res, 413, error.message, { connection: 'close' });
          return;
        }
        sendError(res, error.status, error.message, error.headers);
      } else if (error instanceof DatabaseUnavailableError) {
        hub.log.error({ err: error, method: req.method, path: url.pathname }, 'database unavailable');
        sendError(res, 503, 'The hub’s database is unavailable; try again in a moment', {
          'retry-after': '5',
        });
      } else {
        hub.log.error({ err: error, method: req.method, path: url.pathname }, 'API request failed');
        sendError(res, 500, 'Internal Server Error');
      }
    } finally {
      const code = res.statusCode;
      if (code >= 400) hub.metrics.apiErrors.labels(String(code)).inc();
      hub.metrics.requestDuration
        .labels(req.method ?? 'GET', handlerLabel, String(code))
        .observe((performance.now() - began) / 1000);
    }
  };
}
