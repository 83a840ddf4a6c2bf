// The pages against JupyterHub 3.0 on this machine: render time of the home and admin pages for
// a signed-in admin with 10,000 users in the database (SQLite), and — with --browser — the time
// from submitting the login form to the notebook UI of a freshly spawned jupyterhub-singleuser,
// in Debian's chromium. `--quick`: 1,000 users, 3 s rounds. Results go to bench/PAGES.md.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@seahorse/runtime/testing';
import { type BenchHub, startJupyterHub, startSeahorseHub } from './hubs.ts';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const browser = process.argv.includes('--browser');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7) ?? '';
const userCount = quick ? 1000 : 10_000;
const roundMs = quick ? 3000 : 10_000;
const token = 'bench-admin-token-0123456789abcdef';

type Hub = BenchHub;

const setup = (dir: string) => ({
  dir,
  dbUrl: `sqlite:///${join(dir, 'hub.sqlite')}`,
  serviceToken: token,
  singleuserArgs: ['--allow-root'],
  admin: 'admin',
  startTimeout: 90,
});

const startSeahorse = (dir: string) =>
  startSeahorseHub(setup(dir), {
    nodeArgs: ['--max-semi-space-size=4', '--conditions=seahorse-source'],
    entry: join(here, '..', 'src', 'cli.ts'),
  });
const startJupyter = (dir: string) => startJupyterHub(setup(dir));

async function createUsers(hub: Hub): Promise<void> {
  for (let i = 0; i < userCount; i += 500) {
    const usernames = Array.from({ length: Math.min(500, userCount - i) }, (_, j) => `user${i + j}`);
    const response = await fetch(`${hub.url}/hub/api/users`, {
      method: 'POST',
      headers: { authorization: `token ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ usernames }),
    });
    if (response.status !== 201) throw new Error(`${hub.name}: creating users: ${response.status}`);
  }
}

/** The admin's login cookies, through the password form (JupyterHub 3.0 takes the form without _xsrf). */
async function adminCookies(hub: Hub): Promise<string> {
  const cookies = new Map<string, string>();
  const keep = (response: Response) => {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair!.indexOf('=');
      cookies.set(pair!.slice(0, eq), pair!.slice(eq + 1));
    }
  };
  const form = await fetch(`${hub.url}/hub/login`);
  keep(form);
  const xsrf = /name="_xsrf" value="([^"]+)"/.exec(await form.text())?.[1];
  const response = await fetch(`${hub.url}/hub/login`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; '),
    },
    body: new URLSearchParams({ username: 'admin', password: 'x', ...(xsrf ? { _xsrf: xsrf } : {}) }),
    redirect: 'manual',
  });
  keep(response);
  if (response.status !== 302) throw new Error(`${hub.name}: login answered ${response.status}`);
  return [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
}

async function round(hub: Hub, path: string, cookie: string, connections: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const url = new URL(hub.url);
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + roundMs;
  const began = performance.now();
  const one = () =>
    new Promise<void>((resolve) => {
      const start = performance.now();
      const req = request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path,
          // JupyterHub takes its login cookie on the API only from its own pages (the Referer).
          headers: { cookie, referer: `${hub.url}/hub/admin` },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== 200) errors++;
            latencies.push(performance.now() - start);
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end();
    });
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < deadline) await one();
    }),
  );
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    rps: latencies.length / ((performance.now() - began) / 1000),
    p50: at(0.5),
    p99: at(0.99),
    errors,
  };
}

/** Seconds from submitting the login form to the notebook UI, in chromium. */
async function loginToNotebook(hub: Hub, user: string): Promise<number> {
  const { chromium } = await import('playwright-core');
  const instance = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
  });
  try {
    const page = await instance.newPage();
    await page.goto(`${hub.proxyUrl}/hub/login`);
    await page.locator('#username_input, #username').fill(user);
    await page.locator('#password_input, #password').fill('x');
    const began = performance.now();
    await page.locator('#login_submit, button[type=submit]').first().click();
    // JupyterHub spawns on its own after login; seahorse-hub shows home with a Start button.
    await page.waitForURL(/\/hub\/home|\/user\//, { timeout: 120_000 });
    if (page.url().includes('/hub/home')) await page.getByRole('button', { name: 'Start my server' }).click();
    await page.waitForURL(/\/user\/[^/]+\/tree/, { timeout: 120_000 });
    await page.locator('#notebook_list, #ipython-main-app').first().waitFor({ timeout: 60_000 });
    return (performance.now() - began) / 1000;
  } finally {
    await instance.close();
  }
}

const lines: string[] = [];
const out = (line: string) => {
  lines.push(line);
  process.stdout.write(`${line}\n`);
};

async function main() {
  out(
    `# Pages bench (${quick ? 'quick' : 'full'}): ${userCount} users, SQLite, ${roundMs / 1000} s rounds, ${new Date().toISOString()}`,
  );
  out('');
  out('| hub | request | connections | req/s | p50 ms | p99 ms | errors |');
  out('| --- | --- | --- | --- | --- | --- | --- |');
  const timings: string[] = [];
  for (const [name, start] of [
    ['seahorse', startSeahorse],
    ['jupyterhub', startJupyter],
  ] as const) {
    if (only && !name.includes(only)) continue;
    const dir = mkdtempSync(join(tmpdir(), 'pages-bench-'));
    const hub = await start(dir);
    try {
      const created = performance.now();
      await createUsers(hub);
      process.stderr.write(
        `${hub.name}: ${userCount} users in ${((performance.now() - created) / 1000).toFixed(1)} s\n`,
      );
      const cookie = await adminCookies(hub);
      const paths = [
        ['/hub/home', 'GET /hub/home'],
        ['/hub/admin', 'GET /hub/admin (HTML)'],
      ];
      // JupyterHub 3.0's admin page is a script that then fetches the first page of users.
      if (hub.name.startsWith('JupyterHub'))
        paths.push(['/hub/api/users?offset=0&limit=50', 'its users request']);
      for (const [path, label] of paths) {
        for (const connections of [1, 10]) {
          const r = await round(hub, path!, cookie, connections);
          out(
            `| ${hub.name} | ${label} | ${connections} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.errors} |`,
          );
        }
      }
      if (browser) {
        const runs: number[] = [];
        for (let i = 0; i < 3; i++) runs.push(await loginToNotebook(hub, `reader${i}`));
        timings.push(`| ${hub.name} | ${runs.map((s) => s.toFixed(2)).join(' / ')} |`);
        // Their servers are stopped through the API: a hub killed at its grace period leaves them behind.
        for (let i = 0; i < 3; i++) {
          await fetch(`${hub.url}/hub/api/users/reader${i}/server`, {
            method: 'DELETE',
            headers: { authorization: `token ${token}` },
          });
        }
        await waitFor(
          'the readers’ servers stopped',
          async () => {
            for (let i = 0; i < 3; i++) {
              const user = await fetch(`${hub.url}/hub/api/users/reader${i}`, {
                headers: { authorization: `token ${token}` },
              });
              const model = (await user.json()) as { server: string | null; pending: string | null };
              if (model.server !== null || model.pending !== null) return false;
            }
            return true;
          },
          { timeoutMs: 60_000 },
        );
      }
    } finally {
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (timings.length) {
    out('');
    out('Login form submitted → notebook UI loaded (a fresh jupyterhub-singleuser each time), 3 runs:');
    out('');
    out('| hub | seconds |');
    out('| --- | --- |');
    for (const line of timings) out(line);
  }
  writeFileSync(join(here, 'PAGES.md'), `${lines.join('\n')}\n`);
}

await main();
