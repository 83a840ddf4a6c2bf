// Shared by the integration tests: a gateway started in-process on a free port with options
// built from the real flag parser, and a small HTTP client that keeps every byte.
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, type Logger, parseFlags } from '@seahorse/runtime';
import { LogCapture } from '@seahorse/runtime/testing';
import { buildOptions, flagSpecs, type Gateway, startGateway } from '../src/index.ts';

export function testLogger(): { log: Logger; logs: LogCapture } {
  const logs = new LogCapture();
  return { log: createLogger({ name: 'test', level: 'debug', destination: logs }), logs };
}

export interface TestGateway extends Gateway {
  url: string;
  logs: LogCapture;
  cacheDir: string;
  stop(): Promise<void>;
}

/** Starts a gateway on 127.0.0.1 with a fresh filesystem store unless `args` say otherwise. */
export async function startTestGateway(
  upstreamBaseUrl: string,
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<TestGateway> {
  const cacheDir = mkdtempSync(join(tmpdir(), 'embedding-gateway-'));
  const flags = parseFlags(
    flagSpecs,
    ['--port', '0', '--openai-base-url', upstreamBaseUrl, '--cache-dir', cacheDir, ...args],
    env,
  );
  const options = buildOptions(flags, env);
  const { log, logs } = testLogger();
  const gateway = await startGateway(options, log);
  const port = 'port' in gateway.address ? gateway.address.port : 0;
  return {
    ...gateway,
    url: `http://127.0.0.1:${port}`,
    logs,
    cacheDir,
    async stop() {
      await gateway.close();
      rmSync(cacheDir, { recursive: true, force: true });
    },
  };
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
  json(): unknown;
}

/** One HTTP exchange on a fresh connection. */
export function call(
  url: string,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${options.path ?? '/v1/embeddings'}`,
      { method: options.method ?? 'POST', headers: options.headers ?? {}, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          const text = body.toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            text,
            json: () => JSON.parse(text),
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export const auth = { authorization: 'Bearer sk-test', 'content-type': 'application/json' };

export function embed(url: string, body: unknown, headers: Record<string, string> = auth): Promise<Answer> {
  return call(url, { body: typeof body === 'string' ? body : JSON.stringify(body), headers });
}
