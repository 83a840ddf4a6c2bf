// A stand-in for OpenAI's embeddings API on loopback, in its wire format: float and base64
// encodings, `usage`, `{"error": {...}}` bodies with the real statuses. Deterministic vectors
// (a hash of model, dimensions and input), so tests can tell which input an answer is for.
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { gzipSync } from 'node:zlib';

export interface RecordedRequest {
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

export type Behaviour =
  | { kind: 'normal' }
  | { kind: 'status'; status: number; body?: string }
  | { kind: 'error-in-200' }
  | { kind: 'drop' }
  | { kind: 'hang' }
  | { kind: 'not-json' }
  | { kind: 'no-usage' };

export interface FakeOpenAI {
  url: string;
  /** `${url}/v1`, what OPENAI_BASE_URL would be. */
  baseUrl: string;
  requests: RecordedRequest[];
  /** Answers the next calls this way (the last one stays). */
  behave(behaviour: Behaviour): void;
  /** Delay before answering, ms. */
  delayMs: number;
  /** Compress answers with gzip when the caller accepts it. */
  gzip: boolean;
  /** Connections currently open, and calls whose client went away before the answer. */
  readonly openConnections: number;
  cancelled: number;
  close(): Promise<void>;
}

const dimensionsOf: Record<string, number> = {
  'text-embedding-3-small': 1536,
  'text-embedding-3-large': 3072,
  'text-embedding-ada-002': 1536,
};

export function fakeVector(model: string, dimensions: number, input: unknown): number[] {
  const vector: number[] = [];
  let counter = 0;
  let block = Buffer.alloc(0);
  let offset = 0;
  for (let i = 0; i < dimensions; i++) {
    if (offset + 4 > block.length) {
      block = createHash('sha256')
        .update(`${model}|${dimensions}|${JSON.stringify(input)}|${counter++}`)
        .digest();
      offset = 0;
    }
    const unit = block.readUInt32LE(offset) / 2 ** 32;
    offset += 4;
    // OpenAI's values are float32, around ±0.05, printed with about ten significant digits.
    vector.push(Number(Math.fround((unit - 0.5) / 10).toPrecision(10)));
  }
  return vector;
}

function tokensOf(input: unknown): number {
  if (typeof input === 'string') return Math.max(1, Math.ceil(input.length / 4));
  if (Array.isArray(input)) return input.length;
  return 0;
}

function openAiError(message: string, type: string, param: string | null, code: string | null) {
  return JSON.stringify({ error: { message, type, param, code } }, null, 2);
}

/** On `port` (a free one when 0): a restarted upstream takes the port it had. */
export async function startFakeOpenAI(listenPort = 0): Promise<FakeOpenAI> {
  const requests: RecordedRequest[] = [];
  let behaviour: Behaviour = { kind: 'normal' };
  const sockets = new Set<Socket>();
  const state = { delayMs: 0, gzip: false, cancelled: 0 };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ headers: req.headers, rawHeaders: req.rawHeaders, body });
      const current = behaviour;
      let answered = false;
      res.once('close', () => {
        if (!answered) state.cancelled++;
      });
      const send = (status: number, text: string, contentType = 'application/json') => {
        answered = true;
        const accepts = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
        if (state.gzip && accepts) {
          const compressed = gzipSync(text);
          res.writeHead(status, { 'content-type': contentType, 'content-encoding': 'gzip' });
          res.end(compressed);
        } else {
          res.writeHead(status, { 'content-type': contentType });
          res.end(text);
        }
      };
      const answer = () => {
        if (res.destroyed) return;
        if (req.url !== '/v1/embeddings' || req.method !== 'POST') {
          send(
            404,
            openAiError(`Invalid URL (${req.method} ${req.url})`, 'invalid_request_error', null, null),
          );
          return;
        }
        switch (current.kind) {
          case 'status':
            send(current.status, current.body ?? openAiError('injected', 'server_error', null, null));
            return;
          case 'drop':
            req.socket.destroy();
            return;
          case 'hang':
            return;
          case 'not-json':
            send(200, '<html>bad gateway</html>', 'text/html');
            return;
          case 'error-in-200':
            send(200, openAiError('The server had an error', 'server_error', null, null));
            return;
          default:
        }
        if (!/^Bearer \S+/.test(String(req.headers.authorization ?? ''))) {
          send(
            401,
            openAiError(
              "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
              'invalid_request_error',
              null,
              null,
            ),
          );
          return;
        }
        let request: { model?: unknown; input?: unknown; encoding_format?: unknown; dimensions?: unknown };
        try {
          request = JSON.parse(body);
        } catch {
          send(
            400,
            openAiError(
              'We could not parse the JSON body of your request.',
              'invalid_request_error',
              null,
              null,
            ),
          );
          return;
        }
        const model = String(request.model ?? '');
        if (!(model in dimensionsOf)) {
          send(
            404,
            openAiError(
              `The model \`${model}\` does not exist or you do not have access to it.`,
              'invalid_request_error',
              null,
              'model_not_found',
            ),
          );
          return;
        }
        const input = request.input;
        const inputs =
          typeof input === 'string' || (Array.isArray(input) && input.every((x) => typeof x === 'number'))
            ? [input]
            : Array.isArray(input)
              ? input
              : [];
        if (inputs.length === 0 || inputs.length > 2048 || inputs.some((x) => x === '')) {
          send(
            400,
            openAiError(
              "'$.input' is invalid. Please check the API reference.",
              'invalid_request_error',
              null,
              null,
            ),
          );
          return;
        }
        const dimensions = typeof request.dimensions === 'number' ? request.dimensions : dimensionsOf[model]!;
        const base64 = request.encoding_format === 'base64';
        const data = inputs.map((item, index) => {
          const vector = fakeVector(model, dimensions, item);
          const embedding = base64 ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector;
          return { object: 'embedding', index, embedding };
        });
        const tokens = inputs.reduce((sum: number, item) => sum + tokensOf(item), 0);
        const payload = {
          object: 'list',
          data,
          model: model === 'text-embedding-ada-002' ? 'text-embedding-ada-002-v2' : model,
          usage: { prompt_tokens: tokens, total_tokens: tokens },
        };
        send(
          200,
          current.kind === 'no-usage'
            ? JSON.stringify({ ...payload, usage: undefined })
            : JSON.stringify(payload, null, 2),
        );
      };
      if (state.delayMs > 0) setTimeout(answer, state.delayMs);
      else answer();
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    baseUrl: `${url}/v1`,
    requests,
    behave(next) {
      behaviour = next;
    },
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(ms: number) {
      state.delayMs = ms;
    },
    get gzip() {
      return state.gzip;
    },
    set gzip(on: boolean) {
      state.gzip = on;
    },
    get openConnections() {
      return sockets.size;
    },
    get cancelled() {
      return state.cancelled;
    },
    set cancelled(n: number) {
      state.cancelled = n;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
