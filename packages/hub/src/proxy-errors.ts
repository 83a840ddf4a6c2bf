// Errors of the proxy client: each names the proxy's API URL and what to check. Branch on `code`.
import { SeahorseError } from '@seahorse/runtime';

/** Nothing answered at the proxy's API URL (refused, reset, DNS). */
export class ProxyUnreachableError extends SeahorseError {
  readonly apiUrl: string;
  constructor(apiUrl: string, reason: string, options?: ErrorOptions) {
    super(
      'HUB_PROXY_UNREACHABLE',
      `the proxy API at ${apiUrl} is unreachable (${reason}): is configurable-http-proxy running, and is ConfigurableHTTPProxy.api_url right?`,
      options,
    );
    this.apiUrl = apiUrl;
  }
}

/** The proxy refused the hub's token (403, or 401). */
export class ProxyAuthError extends SeahorseError {
  readonly status: number;
  constructor(apiUrl: string, status: number) {
    super(
      'HUB_PROXY_AUTH',
      `the proxy API at ${apiUrl} refused the hub's token (${status}): the hub's ConfigurableHTTPProxy.auth_token (or CONFIGPROXY_AUTH_TOKEN) must equal the CONFIGPROXY_AUTH_TOKEN the proxy was started with`,
    );
    this.status = status;
  }
}

/** The proxy did not answer within the client's timeout. */
export class ProxyTimeoutError extends SeahorseError {
  readonly timeoutMs: number;
  constructor(apiUrl: string, method: string, path: string, timeoutMs: number) {
    super(
      'HUB_PROXY_TIMEOUT',
      `the proxy API at ${apiUrl} did not answer ${method} ${path} within ${timeoutMs} ms: is the proxy overloaded or paused?`,
    );
    this.timeoutMs = timeoutMs;
  }
}

/** The proxy answered, but not as configurable-http-proxy's API does (a status or a body we cannot use). */
export class ProxyResponseError extends SeahorseError {
  readonly status: number;
  constructor(apiUrl: string, method: string, path: string, status: number, detail: string) {
    super(
      'HUB_PROXY_RESPONSE',
      `the proxy API at ${apiUrl} answered ${method} ${path} with ${status}: ${detail}; is ConfigurableHTTPProxy.api_url the proxy's API port (not its public port)?`,
    );
    this.status = status;
  }
}
