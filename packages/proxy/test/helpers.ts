// Shared by the proxy's integration tests: a real upstream that reports what it received, and
// a proxy started in-process from real command-line flags.
import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createLogger, parseFlags } from '@seahorse/runtime';
import { freePort, LogCapture, ManagedProcess, waitFor } from '@seahorse/runtime/testing';
import { buildOptions, flagSpecs, type RunningProxy, startProxy } from '../src/index.ts';

const sourceCli = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
/** What JupyterHub runs: the bin npm links, built to dist/. */
export const builtBin = fileURLToPath(
  new URL('../../../node_modules/.bin/configurable-http-proxy', import.meta.url),
);

export interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface Upstream {
  server: Server;
  port: number;
  url: string;
  /** Connections accepted so far (to check keep-alive reuse). */
  connections: number;
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1; the default handler echoes the request as JSON. */
export async function startUpstream(
  handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void = echo,
): Promise<Upstream> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => handler(req, res, Buffer.concat(chunks)));
  });
  const upstream: Upstream = {
    server,
    port: 0,
    url: '',
    connections: 0,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
  server.on('connection', () => upstream.connections++);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  upstream.port = (server.address() as AddressInfo).port;
  upstream.url = `http://127.0.0.1:${upstream.port}`;
  return upstream;
}

export function echo(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
  const received: Received = {
    method: req.method!,
    url: req.url!,
    headers: req.headers,
    body: body.toString(),
  };
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(received));
}

export interface TestProxy extends RunningProxy {
  url: string;
  apiUrl: string;
  token: string;
  logs: LogCapture;
  /** Calls the REST API with the proxy's token. */
  api(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Response>;
  addRoute(path: string, target: string, extra?: Record<string, unknown>): Promise<void>;
}

/** Starts a proxy on free loopback ports; `args` are extra command-line flags. */
export async function startTestProxy(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<TestProxy> {
  const token = 'test-token-1234';
  const flags = parseFlags(
    flagSpecs,
    [
      '--ip',
      '127.0.0.1',
      '--port',
      '0',
      '--api-ip',
      '127.0.0.1',
      '--api-port',
      '0',
      '--log-level',
      'debug',
      ...args,
    ],
    { CONFIGPROXY_AUTH_TOKEN: token, ...env },
  );
  const options = buildOptions(flags, { CONFIGPROXY_AUTH_TOKEN: token, ...env });
  const logs = new LogCapture();
  const log = createLogger({ name: 'proxy', level: 'debug', destination: logs });
  const running = await startProxy(options, log);
  const port = (running.addresses.proxy as { port: number }).port;
  const apiPort = (running.addresses.api as { port: number }).port;
  const scheme = options.tls ? 'https' : 'http';
  const apiUrl = `${options.apiTls ? 'https' : 'http'}://127.0.0.1:${apiPort}`;
  const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${apiUrl}${path}`, {
      method,
      headers: { authorization: `token ${token}`, ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  return Object.assign(running, {
    url: `${scheme}://127.0.0.1:${port}`,
    apiUrl,
    token,
    logs,
    api,
    addRoute: async (path: string, target: string, extra: Record<string, unknown> = {}) => {
      const res = await api('POST', `/api/routes${path}`, { target, ...extra });
      if (res.status !== 201) throw new Error(`adding ${path} failed: ${res.status} ${await res.text()}`);
    },
  });
}

/** A raw request through node:http (fetch hides hop-by-hop headers and forbids some). */
export function rawRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string | string[]>; body?: Buffer | string } = {},
): Promise<{ status: number; headers: IncomingMessage['headers']; rawHeaders: string[]; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? 'GET', headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export interface ProxyProcess {
  process: ManagedProcess;
  port: number;
  apiPort: number;
  token: string;
  /** Calls the REST API with the token. */
  api(method: string, path: string, body?: unknown): Promise<Response>;
}

/**
 * The proxy as a process of its own on free loopback ports — from the sources, or as the built
 * bin when `bin` is set — resolved once `/_chp_healthz` answers (and `ready`, if given, holds).
 */
export async function startProxyProcess(
  args: string[],
  options: {
    bin?: boolean;
    token?: string;
    name?: string;
    ready?: (proxy: ProxyProcess) => Promise<boolean>;
  } = {},
): Promise<ProxyProcess> {
  const token = options.token ?? 'test-token-1234';
  const [port, apiPort] = [await freePort(), await freePort()];
  const listen = [
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--api-ip',
    '127.0.0.1',
    '--api-port',
    String(apiPort),
  ];
  const [command, entry] = options.bin
    ? [builtBin, []]
    : [process.execPath, ['--conditions=seahorse-source', sourceCli]];
  const proc = new ManagedProcess(options.name ?? 'proxy', command, [...entry, ...listen, ...args], {
    env: { ...process.env, CONFIGPROXY_AUTH_TOKEN: token },
  });
  const proxy: ProxyProcess = {
    process: proc,
    port,
    apiPort,
    token,
    api: (method, path, body) =>
      fetch(`http://127.0.0.1:${apiPort}${path}`, {
        method,
        headers: { authorization: `token ${token}` },
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
  };
  await proc.untilReady(
    waitFor(`${proc.name} to serve`, async () => {
      if (!(await fetch(`http://127.0.0.1:${port}/_chp_healthz`)).ok) return false;
      return options.ready ? options.ready(proxy) : true;
    }),
  );
  return proxy;
}
