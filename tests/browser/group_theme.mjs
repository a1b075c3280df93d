// A local group's look in a real browser: headless Chromium opens the group's public page as a
// visitor and checks what a person sees — the header painted in the group's primary colour
// (from /groups/SLUG/style.css, linked after the site's stylesheet, no inline style), the
// banner, the logo — and keeps a screenshot. Run by tests/integration/test_group_theme.py:
//
//   node tests/browser/group_theme.mjs '{"base": "http://127.0.0.1:PORT", "path": "/groups/SLUG",
//        "primary": "rgb(122, 31, 92)", "banner": "...", "groupName": "...",
//        "artefacts": "/path/dir", "profileDir": "/tmp/..."}'
//
// Prints one JSON line per check on stdout: {"step": "...", "ok": true|false, "detail": ...};
// the last is {"step": "end", "ok": true}. Exit status 0 unless the script itself broke.
import { chromium } from 'playwright-core';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

const cmd = JSON.parse(process.argv[2] || '{}');
for (const k of ['base', 'path', 'primary', 'banner', 'artefacts']) {
  if (!cmd[k]) {
    console.error(`group_theme.mjs: missing "${k}" in the JSON command`);
    process.exit(2);
  }
}
const base = cmd.base.replace(/\/+$/, '');
const STEP_TIMEOUT = 10000;
const t0 = Date.now();

function emit(step, ok, detail) {
  process.stdout.write(JSON.stringify({ step, ok: !!ok, detail: detail ?? null, ms: Date.now() - t0 }) + '\n');
}

class CheckFailed extends Error {}
function check(step, cond, detail) {
  emit(step, cond, detail);
  if (!cond) throw new CheckFailed(step);
}

const short = (e) => String(e && e.message || e).replace(/\x1b\[[0-9;]*m/g, '').split('\n')
  .map((l) => l.trim()).filter(Boolean).slice(0, 8).join(' | ');

async function main() {
  await mkdir(cmd.artefacts, { recursive: true });
  const userDataDir = cmd.profileDir || await mkdtemp(path.join(tmpdir(), 'halle-chromium-'));
  const consoleErrors = [];
  const failedRequests = [];
  let context = null;
  let page = null;
  let current = 'launch';
  try {
    try {
      context = await chromium.launchPersistentContext(userDataDir, {
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        viewport: { width: 1024, height: 768 },
        locale: 'fr-FR',
        timeout: 15000,
      });
    } catch (e) {
      emit('launch', false, `chromium did not start: ${short(e)}`);
      return;
    }
    emit('launch', true, `chromium ${context.browser()?.version() ?? ''}`.trim());
    context.setDefaultTimeout(STEP_TIMEOUT);
    context.setDefaultNavigationTimeout(STEP_TIMEOUT);
    page = context.pages()[0] || await context.newPage();
    // A CSP violation (an inline style would be one) is logged as a console error.
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource:')) consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    page.on('response', (r) => {
      if (r.status() >= 400 && r.request().resourceType() !== 'document') failedRequests.push(`${r.status()} ${r.url()}`);
    });
    page.on('requestfailed', (r) => failedRequests.push(`${r.failure()?.errorText} ${r.url()}`));

    current = 'group page';
    const resp = await page.goto(`${base}${cmd.path}`);
    check('the group page loads', resp && resp.status() === 200, { status: resp && resp.status() });

    // The screenshot first: it is kept whatever the checks below find.
    current = 'screenshot';
    const shot = path.join(cmd.artefacts, 'group-theme.png');
    await page.screenshot({ path: shot, fullPage: true });
    emit('group page screenshot', true, shot);

    current = 'stylesheets';
    const sheets = await page.evaluate(() => [...document.styleSheets].map((s) => {
      try { return { href: s.href, rules: s.cssRules.length }; } catch (e) { return { href: s.href, error: String(e) }; }
    }));
    const own = sheets.findIndex((s) => s.href && new URL(s.href).pathname === `${cmd.path}/style.css`);
    const site = sheets.findIndex((s) => s.href && new URL(s.href).pathname === '/static/halle.css');
    check('the group stylesheet is loaded after the site stylesheet', site >= 0 && own > site && sheets[own].rules > 0, sheets);

    current = 'colour';
    const header = page.locator('header.site');
    const bg = await header.evaluate((el) => getComputedStyle(el).backgroundColor);
    check('the header background is the group primary colour', bg === cmd.primary, { got: bg, want: cmd.primary });

    current = 'banner';
    const banner = page.locator('.market-banner');
    check('the banner text is visible', (await banner.count()) === 1 && await banner.isVisible() &&
      (await banner.innerText()).trim() === cmd.banner, { count: await banner.count() });

    if (cmd.groupName) {
      current = 'logo';
      const logo = page.getByRole('img', { name: cmd.groupName, exact: true });
      const loaded = (await logo.count()) === 1 && await logo.evaluate((img) => img.complete && img.naturalWidth > 0);
      check('the logo is shown, its alt text the group name', loaded, { count: await logo.count() });
    }

    check('no console errors or CSP violations on the page', consoleErrors.length === 0, consoleErrors);
    check('no failed requests for styles or images', failedRequests.length === 0, failedRequests);
  } catch (e) {
    if (!(e instanceof CheckFailed)) {
      emit(`${current}: no error`, false, { error: short(e), url: page && page.url() });
    }
    if (page) {
      const shot = path.join(cmd.artefacts, `failure-group-theme-${current.replace(/\W+/g, '-')}.png`);
      try {
        await page.screenshot({ path: shot, fullPage: true });
        emit('failure screenshot', true, shot);
      } catch { /* the browser may be gone */ }
    }
  } finally {
    if (context) await context.close().catch(() => {});
    if (!cmd.profileDir) await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
  }
  emit('end', true, null);
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
