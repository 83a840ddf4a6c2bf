// Where the Docker spawner reaches the engine, read as DockerSpawner builds its docker-py client:
// DockerSpawner.tls_config first, then the docker CLI's environment (DOCKER_HOST,
// DOCKER_TLS_VERIFY, DOCKER_CERT_PATH — docker-py's kwargs_from_env), then client_kwargs.
// Certificates are read here, once, when the hub starts: a missing file stops the hub, named.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { DockerClientOptions, DockerTlsOptions } from './docker-client.ts';
import { DockerConfigError } from './docker-errors.ts';
import type { JsonObject } from './spawner.ts';

/** The docker CLI's ports when DOCKER_HOST names none: 2376 with TLS, 2375 without. */
const defaultPorts = { tls: 2376, plain: 2375 } as const;

/** TLS as asked for, before the files are read. */
interface TlsWish {
  caPath?: string;
  certPath?: string;
  keyPath?: string;
  verify: boolean;
  hostname?: string | false;
  /** Where the settings came from, for messages. */
  source: string;
}

/** A tls_config (docker.tls.TLSConfig's keywords) → what to read: verify only when asked, as TLSConfig. */
function tlsFromConfig(config: JsonObject): TlsWish {
  const wish: TlsWish = { verify: false, source: 'DockerSpawner.tls_config' };
  const clientCert = config.client_cert;
  if (Array.isArray(clientCert)) {
    wish.certPath = String(clientCert[0]);
    wish.keyPath = String(clientCert[1]);
  }
  if (typeof config.ca_cert === 'string') wish.caPath = config.ca_cert;
  if (typeof config.verify === 'string') {
    // docker-py: verify may be the CA file itself; ca_cert, when given too, is the one used
    // (TLSConfig.configure_client: `if self.verify and self.ca_cert: client.verify = self.ca_cert`).
    wish.caPath ??= config.verify;
    wish.verify = true;
  } else wish.verify = config.verify === true;
  if (config.assert_hostname === false) wish.hostname = false;
  else if (typeof config.assert_hostname === 'string') wish.hostname = config.assert_hostname;
  return wish;
}

/**
 * docker-py's kwargs_from_env and the docker CLI: TLS when DOCKER_TLS_VERIFY is non-empty (any
 * value, "0" too) or DOCKER_CERT_PATH is set; the engine's certificate is verified only with
 * DOCKER_TLS_VERIFY; the files are ca.pem, cert.pem and key.pem in DOCKER_CERT_PATH (~/.docker).
 */
function tlsFromEnv(env: NodeJS.ProcessEnv): TlsWish | undefined {
  const certDir = env.DOCKER_CERT_PATH || undefined;
  const verify = (env.DOCKER_TLS_VERIFY ?? '') !== '';
  if (!certDir && !verify) return undefined;
  const dir = certDir ?? join(homedir(), '.docker');
  return {
    caPath: join(dir, 'ca.pem'),
    certPath: join(dir, 'cert.pem'),
    keyPath: join(dir, 'key.pem'),
    verify,
    source: certDir ? `DOCKER_CERT_PATH (${dir})` : `${dir} (DOCKER_CERT_PATH unset)`,
  };
}

function readPem(path: string, what: string, wish: TlsWish, optional: boolean): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (error) {
    if (optional && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DockerConfigError(
      `TLS to the Docker Engine: cannot read the ${what} ${path} from ${wish.source} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); put ca.pem, cert.pem and key.pem there, or fix the setting`,
    );
  }
}

function readTls(wish: TlsWish, fromEnv: boolean): DockerTlsOptions {
  const tls: DockerTlsOptions = { verify: wish.verify, source: wish.source };
  // The CLI goes on without a client certificate when cert.pem and key.pem are absent; so do we.
  const cert = wish.certPath ? readPem(wish.certPath, 'client certificate', wish, fromEnv) : undefined;
  const key = wish.keyPath ? readPem(wish.keyPath, 'client key', wish, fromEnv) : undefined;
  if (cert && key) {
    tls.cert = cert;
    tls.key = key;
  } else if (cert || key) {
    throw new DockerConfigError(
      `TLS to the Docker Engine: ${wish.source} has ${cert ? 'cert.pem but no key.pem' : 'key.pem but no cert.pem'}; a client certificate needs both`,
    );
  }
  // The CA is needed to verify; without verification it is not read (docker-py ignores it then).
  if (wish.verify && wish.caPath) {
    tls.ca = readPem(wish.caPath, 'CA certificate', wish, false);
    tls.caPath = wish.caPath;
  }
  if (wish.hostname !== undefined) tls.hostname = wish.hostname;
  try {
    // Parsed now, as the first connection would: a garbled file or a key of another certificate.
    // (A secure context skips a CA file without a certificate in it; X509Certificate does not.)
    if (tls.ca) new X509Certificate(tls.ca);
    createSecureContext({
      ...(tls.ca ? { ca: tls.ca } : {}),
      ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
    });
  } catch (error) {
    throw new DockerConfigError(
      `TLS to the Docker Engine: the PEM files from ${wish.source} are not usable (${(error as Error).message}): ca.pem must hold the engine's CA certificate, cert.pem and key.pem the client certificate and its key`,
    );
  }
  return tls;
}

function hostUrl(value: string, source: string): URL {
  try {
    return new URL(value);
  } catch {
    throw new DockerConfigError(
      `${source}=${JSON.stringify(value)} is not unix:///path/to/docker.sock or tcp://host:port`,
    );
  }
}

/**
 * DockerSpawner's host_ip default: the host of a tcp:// DOCKER_HOST (where the engine publishes
 * the servers' ports), when it is an IP address (the Engine's port bindings take nothing else);
 * undefined keeps 127.0.0.1.
 */
export function engineHostIp(connection: DockerClientOptions): string | undefined {
  const host = connection.tcp?.host;
  return host && isIP(host) ? host : undefined;
}

/**
 * The engine's address and TLS for the spawner's client, from DockerSpawner.tls_config, the
 * environment and DockerSpawner.client_kwargs (in that order, later wins, as DockerSpawner).
 */
export function dockerConnection(
  env: NodeJS.ProcessEnv,
  traits: { tls_config: JsonObject; client_kwargs: JsonObject } = { tls_config: {}, client_kwargs: {} },
): DockerClientOptions {
  const kwargs = traits.client_kwargs;
  let tls: { wish: TlsWish; fromEnv: boolean } | false | undefined;
  if (Object.keys(traits.tls_config).length > 0)
    tls = { wish: tlsFromConfig(traits.tls_config), fromEnv: false };
  const envTls = tlsFromEnv(env);
  if (envTls) tls = { wish: envTls, fromEnv: true };
  if (kwargs.tls === false) tls = false;
  else if (kwargs.tls === true && !tls) {
    // docker-py's tls=True: TLS, the engine checked against the system's CAs.
    tls = { wish: { verify: true, source: 'DockerSpawner.client_kwargs.tls' }, fromEnv: false };
  }
  const timeout = typeof kwargs.timeout === 'number' ? { requestTimeoutMs: kwargs.timeout * 1000 } : {};

  const [base, source] =
    typeof kwargs.base_url === 'string'
      ? [kwargs.base_url.trim(), 'DockerSpawner.client_kwargs.base_url']
      : [env.DOCKER_HOST?.trim() ?? '', 'DOCKER_HOST'];
  if (!base) return { socketPath: '/var/run/docker.sock', ...timeout };
  const url = hostUrl(base, source);
  if (url.protocol === 'unix:') {
    const path = decodeURIComponent(url.pathname);
    if (url.host || !path.startsWith('/') || url.search || url.hash) {
      throw new DockerConfigError(
        `${source}=${JSON.stringify(base)}: a unix socket is named by its absolute path: unix:///path/to/docker.sock`,
      );
    }
    return { socketPath: path, ...timeout };
  }
  if (url.protocol === 'https:' && !tls) {
    // docker-py's parse_host: https:// is TLS whatever `tls` says (requests then verifies against
    // the system's CAs); client_kwargs.tls: false must not send plain HTTP to an https:// engine.
    tls = { wish: { verify: true, source }, fromEnv: false };
  }
  if (url.protocol !== 'tcp:' && url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new DockerConfigError(
      `${source}=${JSON.stringify(base)}: the Docker spawner reaches the engine at unix:///path or tcp://host:port (ssh:// and npipe:// are not supported)`,
    );
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (
    !host ||
    url.username ||
    url.password ||
    (url.pathname && url.pathname !== '/') ||
    url.search ||
    url.hash
  ) {
    throw new DockerConfigError(
      `${source}=${JSON.stringify(base)}: expected tcp://host:port, with nothing after the port`,
    );
  }
  const port = url.port ? Number(url.port) : tls ? defaultPorts.tls : defaultPorts.plain;
  return {
    tcp: { host, port, ...(tls ? { tls: readTls(tls.wish, tls.fromEnv) } : {}) },
    ...timeout,
  };
}
