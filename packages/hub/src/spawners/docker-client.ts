// A Docker Engine API client over the engine's unix socket (node:http) or TCP, with TLS as the
// docker CLI uses it (node:https, a client certificate, the engine checked against a CA): only
// the calls the spawner makes, each with a deadline, a bounded response body, and the engine's
// failures turned into the errors of docker-errors.ts. API version 1.41 (Engine 20.10), which
// newer engines serve.
import { type ClientRequest, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { DockerApiError, DockerEngineUnavailableError, DockerTlsError } from './docker-errors.ts';

export const dockerApiVersion = 'v1.41';

/** Engine bodies larger than this are refused: the answers the spawner reads are a few KiB. */
const maxBodyBytes = 8 * 1024 * 1024;

/** TLS to an engine on TCP (dockerd --tlsverify): what the docker CLI reads from DOCKER_CERT_PATH. */
export interface DockerTlsOptions {
  /** PEM of the CA the engine's certificate must chain to; absent: the system's CAs. */
  ca?: Buffer;
  /** The CA's file, for messages. */
  caPath?: string;
  /** The client certificate and key (PEM) the engine asks for with --tlsverify. */
  cert?: Buffer;
  key?: Buffer;
  /** Whether the engine's certificate is checked (DOCKER_TLS_VERIFY); false encrypts only. */
  verify: boolean;
  /** tls_config's assert_hostname: the name the certificate must carry instead of the host, or false. */
  hostname?: string | false;
  /** Where the settings came from ("DOCKER_CERT_PATH (/etc/docker/certs)"), for messages. */
  source: string;
}

export interface DockerClientOptions {
  /** Path of the engine's unix socket (/var/run/docker.sock unless `tcp` is set). */
  socketPath?: string;
  /** The engine on TCP (DOCKER_HOST=tcp://host:port), with TLS when set. */
  tcp?: { host: string; port: number; tls?: DockerTlsOptions };
  /** Deadline of one request (not of a pull, which streams for as long as it progresses). */
  requestTimeoutMs?: number;
}

/** Node's codes for an engine certificate that does not chain to the CA it was checked against. */
const untrustedCodes = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

/** The engine's TLS alerts when it refuses our certificate, or we sent none (dockerd --tlsverify). */
const refusedClientCert =
  /^ERR_SSL_.*ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_REQUIRED|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE|ACCESS_DENIED|DECRYPT_ERROR)/;

/** A failed TLS connection in words: whose certificate was refused, and which setting to fix. */
function tlsFailure(
  address: string,
  tls: DockerTlsOptions,
  error: NodeJS.ErrnoException,
  connection: { reused: boolean; answered: boolean },
): DockerTlsError | undefined {
  const code = error.code ?? '';
  // A connection that already carried an answer got past TLS: its end is the engine's (stopped,
  // restarted, killed mid-request), not a refused certificate.
  if (connection.reused || connection.answered) return undefined;
  const ca = tls.caPath ? `the CA in ${tls.source}: ${tls.caPath}` : "the system's CAs";
  if (untrustedCodes.has(code)) {
    return new DockerTlsError(
      address,
      `the engine's certificate is not signed by ${ca} (${code}); point DOCKER_CERT_PATH at the ca.pem that signed dockerd's --tlscert`,
    );
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return new DockerTlsError(
      address,
      `the engine's certificate is not valid now (${code}); renew dockerd's --tlscert`,
    );
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new DockerTlsError(
      address,
      `the engine's certificate does not name the host it was reached at (${code}: ${error.message.slice(0, 300)}); connect by a name it carries, or reissue it`,
    );
  }
  if (refusedClientCert.test(code)) {
    const cert = tls.cert
      ? `the client certificate (cert.pem) from ${tls.source}`
      : `the connection without a client certificate (${tls.source} has no cert.pem and key.pem)`;
    return new DockerTlsError(
      address,
      `the engine refused ${cert} (${code}); use a cert.pem and key.pem signed by the CA of dockerd's --tlscacert`,
    );
  }
  if (code === 'ECONNRESET' && !tls.cert) {
    // The alert may be lost when the engine closes first (TLS 1.3 checks the client's certificate
    // after our handshake is done); an engine that stopped mid-request looks the same.
    return new DockerTlsError(
      address,
      `the engine closed a new connection before answering (ECONNRESET), as dockerd --tlsverify does to one without a client certificate: ${tls.source} has no cert.pem and key.pem (or the engine stopped)`,
    );
  }
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code === 'EPROTO') {
    return new DockerTlsError(
      address,
      `the TLS handshake failed (${code}: ${error.message.slice(0, 300)}); does the engine at this address serve TLS (dockerd --tlsverify) for ${tls.source}?`,
    );
  }
  return undefined;
}

export interface EngineAnswer {
  status: number;
  body: Buffer;
}

/** A pull's progress line as the engine streams it. */
export interface PullProgress {
  id?: string;
  status?: string;
  progressDetail?: { current?: number; total?: number };
}

export interface ContainerInspect {
  Id: string;
  Name?: string;
  Config?: { Image?: string; Env?: string[] | null; Labels?: Record<string, string> | null };
  State?: {
    Status?: string;
    Running?: boolean;
    ExitCode?: number;
    Error?: string;
    OOMKilled?: boolean;
    FinishedAt?: string;
  };
  HostConfig?: { NetworkMode?: string };
  NetworkSettings?: {
    Ports?: Record<string, Array<{ HostIp?: string; HostPort?: string }> | null> | null;
    Networks?: Record<string, { IPAddress?: string }> | null;
  };
}

export interface ImageInspect {
  Id: string;
  Config?: { Cmd?: string[] | null; Entrypoint?: string[] | null } | null;
}

function engineMessage(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message.slice(0, 2000);
  } catch {
    // not JSON: the text itself, shortened
  }
  return body.toString('utf8').slice(0, 2000).trim();
}

/** A 2xx answer's JSON object; anything else (garbage, null, a list) is the engine's failure, named. */
function jsonObject(answer: EngineAnswer, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer.body.toString('utf8'));
  } catch {
    throw new DockerApiError(answer.status, what, 'the engine answered something other than JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new DockerApiError(answer.status, what, 'the engine answered JSON that is not an object');
  }
  return parsed as Record<string, unknown>;
}

const engineId = /^[0-9a-f]{12,64}$/;

export class DockerClient {
  /** Where the engine is, as DOCKER_HOST names it: unix:///path or tcp://host:port. */
  readonly address: string;
  readonly #timeoutMs: number;
  readonly #socketPath: string | undefined;
  readonly #tcp: DockerClientOptions['tcp'];
  /** Keeps TLS connections (and so their handshakes) for the many short requests of a start. */
  readonly #agent: HttpsAgent | undefined;

  constructor(options: DockerClientOptions) {
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
    this.#tcp = options.tcp;
    if (options.tcp) {
      const { host, port, tls } = options.tcp;
      this.address = `tcp://${host.includes(':') ? `[${host}]` : host}:${port}`;
      if (tls) {
        const asserted = tls.hostname;
        this.#agent = new HttpsAgent({
          keepAlive: true,
          ...(tls.ca ? { ca: tls.ca } : {}),
          ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
          rejectUnauthorized: tls.verify,
          ...(asserted === false
            ? { checkServerIdentity: () => undefined }
            : typeof asserted === 'string'
              ? {
                  checkServerIdentity: (_host: string, cert: PeerCertificate) =>
                    checkServerIdentity(asserted, cert),
                }
              : {}),
        });
      }
    } else {
      this.#socketPath = options.socketPath ?? '/var/run/docker.sock';
      this.address = `unix://${this.#socketPath}`;
    }
  }

  #send(
    method: string,
    path: string,
    headers: Record<string, string>,
    onResponse: (res: IncomingMessage) => void,
  ): ClientRequest {
    const target = { method, path: `/${dockerApiVersion}${path}`, headers };
    const tcp = this.#tcp;
    if (!tcp) return httpRequest({ ...target, socketPath: this.#socketPath }, onResponse);
    if (!tcp.tls) return httpRequest({ ...target, host: tcp.host, port: tcp.port }, onResponse);
    return httpsRequest({ ...target, host: tcp.host, port: tcp.port, agent: this.#agent }, onResponse);
  }

  /**
   * One request; resolves with any status (callers decide what a 404 means). A socket that does
   * not answer (ENOENT, ECONNREFUSED, EACCES, a timeout) is a DockerEngineUnavailableError.
   */
  request(
    method: string,
    path: string,
    {
      body,
      timeoutMs,
      onLine,
      signal,
    }: { body?: unknown; timeoutMs?: number; onLine?: (line: string) => void; signal?: AbortSignal } = {},
  ): Promise<EngineAnswer> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const deadline = timeoutMs ?? this.#timeoutMs;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = this.#tcp ? {} : { host: 'docker' };
      if (payload) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(payload.length);
      }
      let answered = false;
      const req = this.#send(method, path, headers, (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        let size = 0;
        let partial = '';
        res.on('data', (chunk: Buffer) => {
          // A streamed answer (a pull) is read line by line and not kept; the rest is bounded.
          if (onLine && res.statusCode === 200) {
            timer.refresh();
            const text = partial + chunk.toString('utf8');
            const lines = text.split('\n');
            partial = lines.pop() ?? '';
            if (partial.length > 65_536) partial = '';
            for (const line of lines) if (line.trim()) onLine(line);
            return;
          }
          size += chunk.length;
          if (size > maxBodyBytes) {
            req.destroy(new DockerApiError(res.statusCode ?? 0, `${method} ${path}`, 'answer too large'));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (error) => fail(error));
        res.on('end', () => {
          clearTimeout(timer);
          if (onLine && partial.trim()) onLine(partial);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) });
        });
      });
      const fail = (error: Error) => {
        clearTimeout(timer);
        if (
          error instanceof DockerApiError ||
          error instanceof DockerEngineUnavailableError ||
          error instanceof DockerTlsError
        )
          reject(error);
        else {
          const tls = this.#tcp?.tls;
          const refused = tls
            ? tlsFailure(this.address, tls, error as NodeJS.ErrnoException, {
                reused: req.reusedSocket,
                answered,
              })
            : undefined;
          if (refused) {
            refused.cause = error;
            reject(refused);
            return;
          }
          const code = (error as NodeJS.ErrnoException).code;
          // Node's HTTP parser (HPE_*): what answers there does not speak HTTP.
          const reason = code?.startsWith('HPE_')
            ? `it answered something other than HTTP: ${code}`
            : (code ?? error.message);
          reject(new DockerEngineUnavailableError(this.address, reason, { cause: error }));
        }
      };
      const timer = setTimeout(
        () => req.destroy(new DockerEngineUnavailableError(this.address, `no answer within ${deadline} ms`)),
        deadline,
      );
      req.on('error', fail);
      if (signal) {
        const cancel = () =>
          req.destroy(new DockerApiError(0, `${method} ${path}`, 'cancelled: the spawner stopped waiting'));
        if (signal.aborted) cancel();
        else {
          signal.addEventListener('abort', cancel, { once: true });
          req.once('close', () => signal.removeEventListener('abort', cancel));
        }
      }
      req.end(payload);
    });
  }

  async #json<T>(method: string, path: string, what: string, body?: unknown): Promise<T> {
    const answer = await this.request(method, path, { body });
    if (answer.status < 200 || answer.status >= 300) {
      throw new DockerApiError(answer.status, what, engineMessage(answer.body));
    }
    try {
      return JSON.parse(answer.body.toString('utf8')) as T;
    } catch {
      throw new DockerApiError(answer.status, what, 'the engine answered something other than JSON');
    }
  }

  async ping(): Promise<void> {
    const answer = await this.request('GET', '/_ping', { timeoutMs: 5000 });
    if (answer.status !== 200)
      throw new DockerApiError(answer.status, 'GET /_ping', engineMessage(answer.body));
  }

  async inspectImage(name: string): Promise<ImageInspect | undefined> {
    const answer = await this.request('GET', `/images/${encodeURIComponent(name)}/json`);
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) {
      throw new DockerApiError(answer.status, `inspecting image ${name}`, engineMessage(answer.body));
    }
    return jsonObject(answer, `inspecting image ${name}`) as unknown as ImageInspect;
  }

  /**
   * Pulls `image`, calling `onProgress` with each progress line. The engine reports a failed pull
   * inside a 200 stream ({"error": …}); that becomes a DockerApiError with the engine's words.
   */
  async pullImage(
    image: string,
    onProgress: (line: PullProgress) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const { repo, tag } = splitImage(image);
    let failure: string | undefined;
    const answer = await this.request(
      'POST',
      `/images/create?fromImage=${encodeURIComponent(repo)}&tag=${encodeURIComponent(tag)}`,
      {
        // The deadline is between lines: a pull may take long while it progresses.
        timeoutMs: 120_000,
        signal,
        onLine: (line) => {
          let parsed: PullProgress & { error?: unknown };
          try {
            parsed = JSON.parse(line) as PullProgress & { error?: unknown };
          } catch {
            return;
          }
          if (typeof parsed.error === 'string') failure = parsed.error.slice(0, 2000);
          else if (parsed && typeof parsed === 'object') onProgress(parsed);
        },
      },
    );
    if (answer.status !== 200)
      throw new DockerApiError(answer.status, `pulling ${image}`, engineMessage(answer.body));
    if (failure) throw new DockerApiError(200, `pulling ${image}`, failure);
  }

  async inspectContainer(idOrName: string): Promise<ContainerInspect | undefined> {
    const answer = await this.request('GET', `/containers/${encodeURIComponent(idOrName)}/json`);
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) {
      throw new DockerApiError(answer.status, `inspecting container ${idOrName}`, engineMessage(answer.body));
    }
    const container = jsonObject(answer, `inspecting container ${idOrName}`);
    if (typeof container.Id !== 'string' || !engineId.test(container.Id)) {
      throw new DockerApiError(
        answer.status,
        `inspecting container ${idOrName}`,
        'the answer holds no container id',
      );
    }
    return container as unknown as ContainerInspect;
  }

  async createContainer(name: string, body: Record<string, unknown>): Promise<string> {
    const answer = await this.request('POST', `/containers/create?name=${encodeURIComponent(name)}`, {
      body,
    });
    if (answer.status !== 201) {
      throw new DockerApiError(
        answer.status,
        `creating container ${name}`,
        engineMessage(answer.body),
        answer.status === 409 ? 'HUB_DOCKER_CONFLICT' : 'HUB_DOCKER_API',
      );
    }
    const created = jsonObject(answer, `creating container ${name}`);
    if (typeof created.Id !== 'string' || !engineId.test(created.Id)) {
      throw new DockerApiError(
        answer.status,
        `creating container ${name}`,
        'the answer holds no container id',
      );
    }
    return created.Id;
  }

  async startContainer(id: string): Promise<void> {
    const answer = await this.request('POST', `/containers/${encodeURIComponent(id)}/start`);
    // 304: already started.
    if (answer.status !== 204 && answer.status !== 304) {
      throw new DockerApiError(
        answer.status,
        `starting container ${id.slice(0, 12)}`,
        engineMessage(answer.body),
      );
    }
  }

  /** Stops the container (SIGTERM, then SIGKILL after `seconds`); gone or stopped already is fine. */
  async stopContainer(id: string, seconds: number): Promise<void> {
    const answer = await this.request('POST', `/containers/${encodeURIComponent(id)}/stop?t=${seconds}`, {
      timeoutMs: this.#timeoutMs + seconds * 1000,
    });
    if (answer.status !== 204 && answer.status !== 304 && answer.status !== 404) {
      throw new DockerApiError(
        answer.status,
        `stopping container ${id.slice(0, 12)}`,
        engineMessage(answer.body),
      );
    }
  }

  /** Removes the container (force: even if running); gone already, or being removed, is fine. */
  async removeContainer(id: string, { force = false } = {}): Promise<void> {
    const answer = await this.request(
      'DELETE',
      `/containers/${encodeURIComponent(id)}?force=${force ? 1 : 0}`,
    );
    if (
      answer.status === 409 &&
      /removal of container .* is already in progress/i.test(engineMessage(answer.body))
    ) {
      return;
    }
    if (answer.status !== 204 && answer.status !== 404) {
      throw new DockerApiError(
        answer.status,
        `removing container ${id.slice(0, 12)}`,
        engineMessage(answer.body),
      );
    }
  }

  /** The last `lines` lines of the container's output (stdout and stderr). */
  async logs(id: string, lines: number): Promise<string[]> {
    let answer: EngineAnswer;
    try {
      answer = await this.request(
        'GET',
        `/containers/${encodeURIComponent(id)}/logs?stdout=1&stderr=1&tail=${lines}`,
      );
    } catch (error) {
      // Output that cannot be read (too much of it) is no reason to hide the failure it explains.
      if (error instanceof DockerApiError) return [];
      throw error;
    }
    if (answer.status !== 200) return [];
    return demultiplex(answer.body)
      .toString('utf8')
      .split('\n')
      .map((line) => line.trimEnd())
      .filter(Boolean)
      .slice(-lines);
  }

  /** Runs `cmd` in the container (docker exec) and returns its exit code and output. */
  async exec(id: string, cmd: string[]): Promise<{ exitCode: number | null; output: string }> {
    const created = await this.#json<{ Id?: string }>(
      'POST',
      `/containers/${encodeURIComponent(id)}/exec`,
      `exec in container ${id.slice(0, 12)}`,
      { Cmd: cmd, AttachStdout: true, AttachStderr: true },
    );
    if (typeof created.Id !== 'string') throw new DockerApiError(201, 'exec create', 'no exec id');
    const started = await this.request('POST', `/exec/${encodeURIComponent(created.Id)}/start`, {
      body: { Detach: false, Tty: false },
      timeoutMs: 120_000,
    });
    if (started.status !== 200) {
      throw new DockerApiError(started.status, 'exec start', engineMessage(started.body));
    }
    const output = demultiplex(started.body).toString('utf8');
    const inspect = await this.#json<{ ExitCode?: number | null }>(
      'GET',
      `/exec/${encodeURIComponent(created.Id)}/json`,
      'exec inspect',
    );
    return { exitCode: typeof inspect.ExitCode === 'number' ? inspect.ExitCode : null, output };
  }
}

/** `repo[:tag]` with a registry port allowed in repo (host:5000/name); tag `latest` when absent. */
export function splitImage(image: string): { repo: string; tag: string } {
  const at = image.indexOf('@');
  if (at !== -1) return { repo: image.slice(0, at), tag: image.slice(at + 1) };
  const slash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  if (colon > slash) return { repo: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { repo: image, tag: 'latest' };
}

/**
 * The engine's multiplexed stream (a non-TTY container's logs, an exec's output): frames of an
 * 8-byte header (stream, 0, 0, 0, big-endian length) and the payload. A body that is not framed
 * that way (a TTY container) is returned as it is.
 */
export function demultiplex(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at + 8 <= body.length) {
    const stream = body[at]!;
    if (stream > 2 || body[at + 1] !== 0 || body[at + 2] !== 0 || body[at + 3] !== 0) return body;
    const length = body.readUInt32BE(at + 4);
    if (at + 8 + length > body.length) {
      parts.push(body.subarray(at + 8));
      return Buffer.concat(parts);
    }
    parts.push(body.subarray(at + 8, at + 8 + length));
    at += 8 + length;
  }
  return at === 0 && body.length > 0 ? body : Buffer.concat(parts);
}
