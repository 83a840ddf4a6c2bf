// The Redis URL forms CHP's Redis backend accepts, apart from the store so options can check
// a URL without loading the Redis client.
import type { RedisOptions } from 'ioredis';
import { StoreUnavailableError } from './errors.ts';

/** Turns the URL forms CHP's Redis backend accepts into ioredis options. */
export function redisOptions(url: string): RedisOptions {
  if (url.startsWith('sentinel://')) {
    const match = /^sentinel:\/\/(?::([^@]*)@)?([^/]+)\/(?:service_name:)?([^/?]+)(?:\/(\d+))?$/.exec(url);
    if (!match) {
      throw new StoreUnavailableError(
        `invalid Sentinel URL ${redact(url)}; expected sentinel://[:password@]host:port[,host:port]/master-name`,
      );
    }
    const [, password, hosts, name, db] = match;
    return {
      sentinels: hosts!.split(',').map((pair) => {
        const [host, port] = pair.split(':');
        return { host: host || 'localhost', port: Number(port || 26379) };
      }),
      name: name!,
      ...(password ? { password: decodeURIComponent(password) } : {}),
      ...(db ? { db: Number(db) } : {}),
    };
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new StoreUnavailableError(
      `invalid Redis URL ${redact(url)}; expected redis://[:password@]host:port[/db]`,
    );
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new StoreUnavailableError(
      `unsupported Redis URL scheme '${parsed.protocol}'; use redis://, rediss:// or sentinel://`,
    );
  }
  return {
    host: parsed.hostname || '127.0.0.1',
    port: Number(parsed.port || 6379),
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.pathname.length > 1 ? { db: Number(parsed.pathname.slice(1)) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: { servername: parsed.hostname } } : {}),
  };
}

/** A URL fit for logs and messages: the password replaced. */
export function redact(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}
