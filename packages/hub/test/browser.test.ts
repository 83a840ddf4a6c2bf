// The hub in a real browser: Debian's chromium, headless, driven by playwright-core. A user
// signs in with the password, starts a server with a profile, watches its progress, lands in
// the classic notebook UI of Debian's stock jupyterhub-singleuser through our proxy, runs 1+1
// and reads 2, stops the server from the home page; a non-admin is refused the admin page and
// another user's server. Each page is screenshotted into docs/ for the README.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@seahorse/runtime/testing';
import axe from 'axe-core';
import { type Browser, chromium, type Page } from 'playwright-core';
import { startTestHub } from './helpers.ts';

const chromiumPath = '/usr/bin/chromium';
// Screenshots go to docs/ (shown in the README) with UPDATE_SCREENSHOTS=1; otherwise to a
// temporary directory, so that a test run leaves the tree clean.
const docs = process.env.UPDATE_SCREENSHOTS
  ? fileURLToPath(new URL('../docs/', import.meta.url))
  : mkdtempSync(join(tmpdir(), 'seahorse-screenshots-'));

const notebook = {
  cells: [{ cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source: '1+1' }],
  metadata: { kernelspec: { display_name: 'Python 3', language: 'python', name: 'python3' } },
  nbformat: 4,
  nbformat_minor: 5,
};

/** Screenshots a page of ours into docs/ and checks it with axe-core (WCAG 2 A and AA rules). */
async function shot(page: Page, name: string, ours = true): Promise<void> {
  mkdirSync(docs, { recursive: true });
  await page.screenshot({ path: join(docs, `${name}.png`), fullPage: true });
  if (ours) await checkAccessibility(page, name);
}

async function checkAccessibility(page: Page, name: string): Promise<void> {
  // Evaluated through the devtools protocol, which the pages' CSP does not govern.
  await page.evaluate(axe.source);
  const violations = (await page.evaluate(
    "axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.html) })))",
  )) as Array<{ id: string; impact: string; nodes: string[] }>;
  assert.deepEqual(violations, [], `accessibility of ${name}: ${JSON.stringify(violations, null, 1)}`);
}

async function signIn(page: Page, base: string, user: string, password: string): Promise<void> {
  await page.goto(`${base}/hub/login`);
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  // As JupyterHub 3.0: with no server running, signing in lands on the spawn page.
  await page.waitForURL(`${base}/hub/spawn`);
  await page.goto(`${base}/hub/home`);
}

test('in chromium: sign in, start a server with a profile, see progress, run 1+1 in the stock notebook through the proxy, stop it; admin page and other servers refused', async () => {
  assert.ok(existsSync(chromiumPath), 'Debian’s chromium is needed: apt-get install chromium');
  const notebooks = mkdtempSync(join(tmpdir(), 'seahorse-notebooks-'));
  writeFileSync(join(notebooks, 'one-plus-one.ipynb'), JSON.stringify(notebook));
  const hub = await startTestHub(
    {
      'JupyterHub.authenticator_class': 'password',
      'PasswordAuthenticator.password': 'correct horse',
      'Authenticator.allowed_users': ['alice', 'bob'],
      'Authenticator.admin_users': ['root'],
      'JupyterHub.allow_named_servers': true,
      'JupyterHub.named_server_limit_per_user': 2,
      // The start form answers at once so the pending page is seen.
      'JupyterHub.slow_spawn_timeout': 0,
      'Spawner.start_timeout': 90,
      'Spawner.args': ['--allow-root'],
      'Spawner.notebook_dir': notebooks,
      'Spawner.profile_list': [
        {
          display_name: 'Classic notebook',
          description: 'Python 3 with the classic notebook interface.',
          default: true,
          slug: 'classic',
        },
        {
          display_name: 'Quiet kernel',
          description: 'The same, with less kernel logging.',
          slug: 'quiet',
          kubespawner_override: { environment: { JUPYTER_LOG_LEVEL: 'WARN' } },
        },
      ],
    },
    { spawnerFactory: 'configured' },
  );
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
    const context = await browser.newContext({ viewport: { width: 1024, height: 640 } });
    const page = await context.newPage();
    const base = hub.proxyUrl;

    // Everything through the proxy, as a user sees it.
    await page.goto(`${base}/`);
    await page.waitForURL(/\/hub\/login/);
    await shot(page, 'login');
    await page.getByLabel('Username').fill('alice');
    await page.getByLabel('Password').fill('wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    assert.match((await page.getByRole('alert').textContent()) ?? '', /Invalid username or password/);
    await signIn(page, base, 'alice', 'correct horse');
    await shot(page, 'home');
    assert.equal(await page.getByRole('link', { name: 'Admin' }).count(), 0);

    await page.getByRole('link', { name: 'Start my server' }).click();
    await page.waitForURL(`${base}/hub/spawn/alice`);
    assert.equal(await page.getByLabel('Classic notebook').isChecked(), true);
    await page.getByLabel('Quiet kernel').check();
    await shot(page, 'spawn');
    await page.getByRole('button', { name: 'Start' }).click();
    await page.waitForURL(`${base}/hub/spawn-pending/alice`);
    const bar = page.locator('#progress-bar');
    await bar.waitFor();
    await shot(page, 'pending');
    // Progress arrives live (the event stream), then the page sends the browser on.
    await page.waitForFunction("document.querySelectorAll('#progress-log li').length > 0");
    await page.waitForURL(/\/user\/alice\/tree/, { timeout: 90_000 });
    const options = (await (await hub.api('/users/alice')).json()) as {
      servers: Record<string, { user_options: unknown }>;
    };
    assert.deepEqual(options.servers['']!.user_options, { profile: 'quiet' });

    // The stock notebook UI, through our proxy, logged in through the hub's OAuth.
    await page.goto(`${base}/user/alice/notebooks/one-plus-one.ipynb`);
    await page.locator('#kernel_indicator_icon.kernel_idle_icon').waitFor({ timeout: 60_000 });
    await page.locator('.code_cell .CodeMirror').first().click();
    await page.keyboard.press('Shift+Enter');
    const output = page.locator('.code_cell .output_subarea').first();
    await output.waitFor({ timeout: 30_000 });
    assert.equal((await output.textContent())?.trim(), '2');
    await shot(page, 'notebook', false);

    // Stop it from the home page.
    await page.goto(`${base}/hub/home`);
    await shot(page, 'home-running');
    await page.getByRole('button', { name: 'Stop my server' }).click();
    await page.waitForURL(`${base}/hub/home`);
    await waitFor(
      'alice’s server stopped',
      async () =>
        ((await (await hub.api('/users/alice')).json()) as { server: string | null }).server === null,
      { timeoutMs: 30_000 },
    );
    await page.reload();
    assert.match(
      (await page.locator('#default-server + .actions, section').first().textContent()) ?? '',
      /Stopped/,
    );

    // A non-admin is refused the admin page.
    const admin = await page.goto(`${base}/hub/admin`);
    assert.equal(admin?.status(), 403);
    assert.match((await page.getByRole('alert').textContent()) ?? '', /Only administrators/);
    await shot(page, 'admin-refused');

    // Another user's running server is refused with JupyterHub's 403 page.
    const started = await hub.api('/users/bob/server', { method: 'POST' });
    assert.ok([201, 202].includes(started.status));
    await waitFor(
      'bob’s server running',
      async () => ((await (await hub.api('/users/bob')).json()) as { server: string | null }).server !== null,
      { timeoutMs: 90_000 },
    );
    const foreign = await page.goto(`${base}/user/bob/tree`);
    assert.equal(foreign?.status(), 403);
    assert.match((await page.getByRole('alert').textContent()) ?? '', /You do not have permission to access/);
    await shot(page, 'other-server-refused');

    // A stopped server of one's own, reached by URL: the proxy's error target offers to start it.
    const notRunning = await page.goto(`${base}/user/alice/tree`);
    assert.equal(notRunning?.status(), 503);
    // With profiles, Launch leads to the start form (a link); without, it is a button that posts.
    await page.getByRole('link', { name: 'Launch server' }).waitFor();
    await shot(page, 'not-running');

    // Tokens.
    await page.goto(`${base}/hub/token`);
    await page.getByLabel('Note').fill('laptop');
    await page.getByLabel('Expires in').selectOption('86400');
    await page.getByRole('button', { name: 'Request new API token' }).click();
    await page.locator('#new-token').waitFor();
    await shot(page, 'token');

    // The admin page, as an admin.
    const rootContext = await browser.newContext({ viewport: { width: 1024, height: 640 } });
    const rootPage = await rootContext.newPage();
    await signIn(rootPage, base, 'root', 'correct horse');
    await rootPage.getByRole('link', { name: 'Admin' }).click();
    await rootPage.waitForURL(`${base}/hub/admin`);
    assert.ok(await rootPage.getByRole('row', { name: /bob/ }).count());
    await shot(rootPage, 'admin');
    await rootContext.close();

    // The dark colour scheme passes the same checks (contrast above all).
    const dark = await browser.newContext({ viewport: { width: 1024, height: 640 }, colorScheme: 'dark' });
    const darkPage = await dark.newPage();
    await darkPage.goto(`${base}/hub/login`);
    await checkAccessibility(darkPage, 'login (dark)');
    await signIn(darkPage, base, 'root', 'correct horse');
    await checkAccessibility(darkPage, 'home (dark)');
    await darkPage.goto(`${base}/hub/admin`);
    await checkAccessibility(darkPage, 'admin (dark)');
    await darkPage.goto(`${base}/hub/token`);
    await checkAccessibility(darkPage, 'token (dark)');
    await dark.close();
  } finally {
    await browser?.close();
    await hub.close();
    rmSync(notebooks, { recursive: true, force: true });
    if (!process.env.UPDATE_SCREENSHOTS) rmSync(docs, { recursive: true, force: true });
  }
});
