#!/usr/bin/env node
// `npm start`: the personal hub on embedded defaults (seed 002) — seahorse-hub, which starts our
// proxy on http://localhost:8000 and spawns Debian's jupyterhub-singleuser as local processes,
// state in SQLite under .seahorse/. Sign-in is the password login; the admin's password is
// generated on the first run, kept in .seahorse/hub-password (mode 600) and printed once.
// `npm start -- --config my-hub.yaml` runs your own configuration instead.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// SEAHORSE_STATE moves the state directory (the tests use their own).
const state = process.env.SEAHORSE_STATE ? resolve(process.env.SEAHORSE_STATE) : join(root, '.seahorse');
const port = Number(process.env.SEAHORSE_PORT ?? 8000);
const admin = process.env.SEAHORSE_ADMIN ?? 'admin';
const shown = (file) => relative(process.cwd(), file) || file;

mkdirSync(state, { recursive: true, mode: 0o700 });
chmodSync(state, 0o700);

// The password: the operator's JUPYTER_PASSWORD, or one generated once and kept for this checkout.
const env = { ...process.env };
const passwordFile = join(state, 'hub-password');
let firstPassword;
if (!env.JUPYTER_PASSWORD) {
  if (!existsSync(passwordFile)) {
    firstPassword = randomBytes(15).toString('base64url');
    writeFileSync(passwordFile, `${firstPassword}\n`, { mode: 0o600 });
  }
  chmodSync(passwordFile, 0o600);
  env.JUPYTER_PASSWORD = readFileSync(passwordFile, 'utf8').trim();
}

const args = process.argv.slice(2);
const ownConfig = args.some((arg) => arg === '--config' || arg === '-f' || arg.startsWith('--config='));
if (!ownConfig) {
  // Written on every run from these defaults; pass --config to run your own.
  const config = {
    JupyterHub: {
      bind_url: `http://127.0.0.1:${port}`,
      hub_bind_url: `http://127.0.0.1:${port + 81}`,
      db_url: `sqlite:///${join(state, 'jupyterhub.sqlite')}`,
      authenticator_class: 'password',
      spawner_class: 'localprocess',
      allow_named_servers: true,
      named_server_limit_per_user: 5,
      // A personal hub: servers outlive a restart of the hub and are picked up again.
      cleanup_servers: false,
    },
    Authenticator: { admin_users: [admin] },
    ConfigurableHTTPProxy: {
      api_url: `http://127.0.0.1:${port + 1}`,
      // The proxy's API requests (the route check every 5 s) stay out of the terminal.
      command: [join(root, 'node_modules', '.bin', 'configurable-http-proxy'), '--log-level', 'warn'],
      pid_file: join(state, 'jupyterhub-proxy.pid'),
    },
    Spawner: {
      notebook_dir: '~',
      // jupyterhub-singleuser refuses to run as root without it (containers, fresh machines).
      args: process.getuid?.() === 0 ? ['--allow-root'] : [],
    },
    IdleCuller: { enabled: true, timeout: 3600, cull_every: 600 },
  };
  const file = join(state, 'hub.json');
  // JSON is YAML: the hub reads it as its configuration file.
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  args.unshift('--config', file);
}

const bin = join(root, 'node_modules', '.bin', 'seahorse-hub');
const hub = spawn(bin, args, { stdio: ['ignore', 'inherit', 'inherit'], env, cwd: state });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => hub.kill(signal));
hub.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

async function announceWhenReady() {
  const url = `http://localhost:${port}/`;
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/hub/health`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const password = ownConfig
    ? ''
    : firstPassword
      ? `    User:       ${admin}
    Password:   ${firstPassword}
                (generated now and shown only this once; it is kept in ${shown(passwordFile)}, mode 600)`
      : env.JUPYTER_PASSWORD && !existsSync(passwordFile)
        ? `    User:       ${admin}   (password: $JUPYTER_PASSWORD)`
        : `    User:       ${admin}
    Password:   in ${shown(passwordFile)}  (cat it; mode 600)`;
  process.stderr.write(`
  Seahorse hub is running (Ctrl-C stops it; your notebook servers keep running and are picked up again).

    Open:       ${url}
${password}
    State:      ${shown(state)}/  (SQLite database, configuration, password)
    Proxy only: npm run start:proxy

`);
}
announceWhenReady();
