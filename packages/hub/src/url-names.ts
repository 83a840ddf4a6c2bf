// User and server names in URLs, escaped exactly as JupyterHub escapes them, so that routes,
// JUPYTERHUB_SERVICE_PREFIX and the API's `url` fields match what JupyterHub (and the browser,
// which does not escape `@` in a path) uses.

/** Python's `urllib.parse.quote(value, safe='')`: only `A-Za-z0-9_.-~` stay as they are. */
export function quoteAll(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** JupyterHub's `url_escape_path`: `quote(value, safe='@~')`, for names in URL paths. */
export function urlEscapePath(value: string): string {
  return quoteAll(value).replace(/%40/g, '@');
}
