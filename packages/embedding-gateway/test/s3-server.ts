// An S3-protocol server for tests: s3rver (from npm) in its own process on a loopback port,
// stopped by PID, and in front of it a small HTTP shim that injects S3 faults on demand:
// error statuses with S3's XML bodies, connections dropped before an answer, answers cut off
// halfway through the body.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';

export type Fault =
  | { kind: 'status'; status: number; code: string }
  | { kind: 'drop' }
  | { kind: 'cut-body' };

export interface S3Fixture {
  /** The shim's URL: what the gateway is given as S3_ENDPOINT_URL. */
  endpoint: string;
  /** s3rver itself, for checks that must not meet a fault. */
  directEndpoint: string;
  bucket: string;
  /** Faults for the next requests whose method matches (GET, PUT, HEAD), in order. */
  inject(method: string, ...faults: Fault[]): void;
  /** SIGKILL to s3rver; then the same server on the same port and directory. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  /** SIGSTOP and SIGCONT to s3rver: a server that hangs mid-request, then comes back. */
  pause(): void;
  resume(): void;
  clearFaults(): void;
  /** Requests that went through the shim, as `METHOD path`. */
  seen: string[];
  stop(): Promise<void>;
}

const s3rverBin = fileURLToPath(new URL('../../../node_modules/s3rver/bin/s3rver.js', import.meta.url));

export const s3Credentials = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };

export async function startS3(bucket = 'embedding-gateway'): Promise<S3Fixture> {
  const directory = mkdtempSync(join(tmpdir(), 's3rver-'));
  const port = await freePort();
  const directEndpoint = `http://127.0.0.1:${port}`;
  const launch = async () => {
    const started = new ManagedProcess('s3rver', process.execPath, [
      s3rverBin,
      '--directory',
      directory,
      '--address',
      '127.0.0.1',
      '--port',
      String(port),
      '--silent',
      '--no-vhost-buckets',
      '--configure-bucket',
      bucket,
    ]);
    await started.untilReady(
      waitFor(
        's3rver to answer',
        () =>
          new Promise<boolean>((resolve) => {
            const req = request(`${directEndpoint}/`, { method: 'GET', agent: false }, (res) => {
              res.resume();
              resolve(res.statusCode !== undefined);
            });
            req.on('error', () => resolve(false));
            req.end();
          }),
        { timeoutMs: 30_000 },
      ),
    );
    return started;
  };
  let s3rver = await launch();

  const faults = new Map<string, Fault[]>();
  const seen: string[] = [];
  const sockets = new Set<Socket>();
  const shim: Server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    seen.push(`${method} ${req.url}`);
    const fault = faults.get(method)?.shift();
    if (fault?.kind === 'drop') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'status') {
      req.resume();
      const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${fault.code}</Code><Message>injected by the test</Message><RequestId>test</RequestId></Error>`;
      res.writeHead(fault.status, {
        'content-type': 'application/xml',
        'content-length': Buffer.byteLength(xml),
      });
      res.end(method === 'HEAD' ? undefined : xml);
      return;
    }
    const upstream = request(`${directEndpoint}${req.url}`, { method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      if (fault?.kind === 'cut-body') {
        answer.once('data', (chunk: Buffer) => {
          res.write(chunk.subarray(0, Math.max(1, chunk.length >> 1)));
          setImmediate(() => res.socket?.destroy());
        });
        return;
      }
      answer.pipe(res);
    });
    upstream.on('error', () => res.socket?.destroy());
    req.pipe(upstream);
  });
  shim.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => shim.listen(0, '127.0.0.1', resolve));
  const shimPort = (shim.address() as AddressInfo).port;

  return {
    endpoint: `http://127.0.0.1:${shimPort}`,
    directEndpoint,
    bucket,
    seen,
    inject(method, ...more) {
      faults.set(method, [...(faults.get(method) ?? []), ...more]);
    },
    clearFaults() {
      faults.clear();
    },
    async kill() {
      await s3rver.stop('SIGKILL');
    },
    async restart() {
      s3rver = await launch();
    },
    pause() {
      process.kill(s3rver.pid, 'SIGSTOP');
    },
    resume() {
      process.kill(s3rver.pid, 'SIGCONT');
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => shim.close(() => resolve()));
      await s3rver.stop();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
