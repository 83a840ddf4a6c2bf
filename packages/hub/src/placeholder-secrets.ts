// deploy/compose/example-stack.env ships placeholder secrets so a copied file is complete; a hub
// that starts with one of them would be open to anyone who read the example. It refuses instead.

import type { HubConfig } from './config.ts';
import { ConfigError } from './errors.ts';

/** The placeholder of each secret in example-stack.env (a test keeps the two in step). */
export const placeholderSecrets: Readonly<Record<string, string>> = {
  CONFIGPROXY_AUTH_TOKEN: 'replace-with-openssl-rand-hex-32',
  JUPYTER_PASSWORD: 'replace-with-a-strong-password',
  POSTGRES_PASSWORD: 'replace-with-openssl-rand-base64-32',
};

function passwordOf(dbUrl: string): string {
  try {
    return decodeURIComponent(new URL(dbUrl).password);
  } catch {
    return '';
  }
}

/**
 * The value as written in an env file: docker-compose 1.29 keeps quotes and trailing blanks of
 * `NAME="value" ` in the value, so a quoted placeholder would otherwise slip through.
 */
function unquoted(value: string): string {
  return value
    .trim()
    .replace(/^(["'])(.*)\1$/, '$2')
    .trim();
}

/**
 * Throws a ConfigError naming the variable when a secret the hub uses (from its config or the
 * environment) is still the example's placeholder.
 */
export function refusePlaceholderSecrets(config: HubConfig, env: NodeJS.ProcessEnv): void {
  const inUse: Record<string, string[]> = {
    CONFIGPROXY_AUTH_TOKEN: [config.proxy.authToken, env.CONFIGPROXY_AUTH_TOKEN ?? ''],
    JUPYTER_PASSWORD: [config.auth.password, env.JUPYTER_PASSWORD ?? ''],
    POSTGRES_PASSWORD: [passwordOf(config.dbUrl), env.POSTGRES_PASSWORD ?? ''],
  };
  const offending = Object.entries(placeholderSecrets)
    .filter(([name, placeholder]) => inUse[name]?.some((value) => unquoted(value) === placeholder))
    .map(([name]) => name);
  if (offending.length) {
    throw new ConfigError(
      `${offending.join(', ')} still ${offending.length === 1 ? 'has' : 'have'} the placeholder value of ` +
        'example-stack.env; generate real secrets (see deploy/compose/README.md) before starting the hub',
    );
  }
}
