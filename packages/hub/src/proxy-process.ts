// The configurable-http-proxy the hub starts when ConfigurableHTTPProxy.should_start is true:
// our proxy's bin by default (from the workspace), any command the config names otherwise.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@seahorse/runtime';
import type { HubConfig } from './config.ts';
import { ProxyError } from './errors.ts';

/** The command as given, or our workspace's bin when the default name is not on PATH. */
export function resolveProxyCommand(command: string[]): string[] {
  const [name, ...rest] = command as [string, ...string[]];
  if (name.includes('/')) return command;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, name)) && !dir.startsWith('/usr/')) return command;
  }
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'node_modules', '.bin', name);
    if (existsSync(candidate)) return [candidate, ...rest];
    dir = dirname(dir);
  }
  return command;
}

export class ProxyProcess {
  readonly #child: ChildProcess;
  readonly exited: Promise<number | null>;

  constructor(config: HubConfig, authToken: string, log: Logger) {
    const api = new URL(config.proxy.apiUrl);
    const bind = config.bindUrl;
    const [command, ...baseArgs] = resolveProxyCommand(config.proxy.command) as [string, ...string[]];
    const args = [
      ...baseArgs,
      '--ip',
      bind.hostname === '0.0.0.0' ? '' : bind.hostname.replace(/^\[|\]$/g, ''),
      '--port',
      bind.port || (bind.protocol === 'https:' ? '443' : '80'),
      '--api-ip',
      api.hostname.replace(/^\[|\]$/g, ''),
      '--api-port',
      api.port || '80',
      '--error-target',
      `${config.hubConnectUrl}${config.baseUrl}hub/error`,
    ];
    if (config.proxy.debug) args.push('--log-level', 'debug');
    const proxyLog = log.child({ component: 'proxy' });
    this.#child = spawn(command, args, {
      env: { ...process.env, CONFIGPROXY_AUTH_TOKEN: authToken },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const forward = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n'))
        if (line.trim()) proxyLog.info({ line }, 'proxy output');
    };
    this.#child.stdout?.on('data', forward);
    this.#child.stderr?.on('data', forward);
    this.exited = new Promise((resolve) => {
      this.#child.once('error', (error) => {
        proxyLog.error({ err: error, command }, 'cannot start the proxy');
        resolve(null);
      });
      this.#child.once('exit', (code) => resolve(code));
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null && this.#child.pid !== undefined;
  }

  /** Waits for `ready` unless the process exits first. */
  async untilReady(ready: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => {
      exited = true;
    });
    while (Date.now() < deadline) {
      if (exited) throw new ProxyError('the proxy exited while starting; see its output in the log above');
      if (await ready().catch(() => false)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new ProxyError(`the proxy did not answer on its API within ${timeoutMs / 1000} s`);
  }

  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
