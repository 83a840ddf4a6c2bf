// Opening a connection to a target, the one place that knows how: TCP or a UNIX socket, with
// TLS for https:// targets (`--client-ssl-*`, `--insecure`). SNI names a host, never an
// address (RFC 6066 §3): a target given by IP sends none.
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Target } from './routes.ts';

export interface TargetTls {
  key?: Buffer;
  cert?: Buffer;
  ca?: Buffer[];
  rejectUnauthorized: boolean;
}

/** The server name to send in TLS's SNI for a target, or undefined for none. */
export function serverName(target: Target): string | undefined {
  return target.socketPath || isIP(target.hostname) ? undefined : target.hostname;
}

export function connectTarget(target: Target, tls: TargetTls): Socket {
  const where = target.socketPath
    ? { path: target.socketPath }
    : { host: target.hostname, port: target.port };
  return target.secure ? tlsConnect({ ...where, servername: serverName(target), ...tls }) : netConnect(where);
}
