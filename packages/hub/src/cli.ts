#!/usr/bin/env node
// `seahorse-hub`: a JupyterHub-compatible hub. `seahorse-hub [--config FILE]` serves;
// `seahorse-hub upgrade-db` migrates the database and exits; `--generate-config` prints (or
// writes) a commented configuration.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createLogger, type FlagSpec, formatHelp, parseFlags, runMain, UsageError } from '@seahorse/runtime';
import { buildConfig, generateConfig, type HubConfig, loadConfigFile } from './config.ts';
import { migrate } from './db/migrations.ts';
import { openDatabase } from './db/open.ts';
import { hubVersion } from './hub.ts';
import { proxyClientFactory, spawnerFactoryFor } from './parts.ts';
import { refusePlaceholderSecrets } from './placeholder-secrets.ts';
import { startHub } from './server.ts';

const program = 'seahorse-hub';

const flagSpecs: FlagSpec[] = [
  {
    name: 'config',
    short: 'f',
    kind: 'string',
    arg: '<file>',
    env: 'SEAHORSE_HUB_CONFIG',
    help: 'YAML file (or .js/.ts module) keyed by JupyterHub Class.trait names',
  },
  {
    name: 'generate-config',
    kind: 'boolean',
    help: 'Write a commented example config (to --config-file or stdout)',
  },
  { name: 'config-file', kind: 'string', arg: '<file>', help: 'Where --generate-config writes' },
  {
    name: 'db',
    kind: 'string',
    arg: '<url>',
    help: 'Database URL (JupyterHub.db_url), e.g. sqlite:///jupyterhub.sqlite',
  },
  {
    name: 'version',
    short: 'V',
    kind: 'boolean',
    help: 'Print the JupyterHub API version this hub implements',
  },
  { name: 'help', short: 'h', kind: 'boolean', help: 'Show this help' },
];

const passwordFile = 'jupyterhub-password';

function passwordFromFile(file: string): string {
  if (!existsSync(file)) writeFileSync(file, `${randomBytes(18).toString('base64url')}\n`, { mode: 0o600 });
  return readFileSync(file, 'utf8').trim();
}

async function loadConfig(file: string, env: NodeJS.ProcessEnv, db: string): Promise<HubConfig> {
  const config = file ? await loadConfigFile(file, env) : buildConfig({}, env);
  if (db) config.dbUrl = db;
  return config;
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const subcommand = argv[0] && !argv[0].startsWith('-') ? argv[0] : '';
  const flags = parseFlags(flagSpecs, subcommand ? argv.slice(1) : argv, env);
  if (flags.boolean('help')) {
    process.stdout.write(
      formatHelp(`${program} [upgrade-db] [options]`, flagSpecs) +
        '\nSubcommands:\n  upgrade-db   apply database migrations and exit\n',
    );
    return;
  }
  if (flags.boolean('version')) {
    process.stdout.write(`${hubVersion}\n`);
    return;
  }
  if (flags.boolean('generate-config')) {
    const target = flags.string('config-file');
    if (!target) {
      process.stdout.write(generateConfig());
      return;
    }
    if (existsSync(target))
      throw new UsageError(`${target} exists; remove it or choose another --config-file`);
    writeFileSync(target, generateConfig(), { mode: 0o644 });
    process.stdout.write(`wrote ${target}\n`);
    return;
  }
  const config = await loadConfig(flags.string('config') ?? '', env, flags.string('db') ?? '');
  refusePlaceholderSecrets(config, env);
  const log = createLogger({ name: 'hub', level: config.logLevel });
  if (subcommand === 'upgrade-db') {
    const db = await openDatabase(config.dbUrl);
    try {
      const applied = await migrate(db);
      log.info(
        { db: db.description, applied },
        applied.length ? 'database upgraded' : 'database already current',
      );
    } finally {
      await db.close();
    }
    return;
  }
  if (subcommand) throw new UsageError(`unknown subcommand '${subcommand}'; the only one is upgrade-db`);
  if (config.authenticatorClass === 'password' && !config.auth.password) {
    // Embedded defaults: a generated shared password in a file only its owner reads.
    config.auth.password = passwordFromFile(passwordFile);
    log.warn({ file: passwordFile }, 'no JUPYTER_PASSWORD set: the shared password is in this file');
  }
  process.on('uncaughtException', (error) => log.error({ err: error }, 'uncaught exception'));
  await startHub({
    config,
    log,
    proxyClient: proxyClientFactory,
    spawnerFactory: spawnerFactoryFor(config, log, env),
    signals: true,
  });
}

runMain(program, () => main(process.argv.slice(2), process.env));
