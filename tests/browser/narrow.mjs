// Phone width, no JavaScript: logs in, opens each page at 360 x 740 CSS pixels and reports
// whether it fits without sideways scrolling (the document is no wider than the viewport),
// with a full-page screenshot of each. Run by tests/integration/test_market_distributions.py:
//
//   node tests/browser/narrow.mjs '{"base": "http://127.0.0.1:PORT", "email": "...",
//        "password": "...", "pages": [{"path": "/...", "shot": "name.png"}], "artefacts": "/dir"}'
//
// Prints one JSON line per page: {"path": "...", "status": 200, "width": 360}, then
// {"end": true}; exit status 0 unless the script itself broke.
import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

const cmd = JSON.parse(process.argv[2] || '{}');
for (const k of ['base', 'email', 'password', 'pages', 'artefacts']) {
  if (!cmd[k]) {
    console.error(`narrow.mjs: missing "${k}" in the JSON command`);
    process.exit(2);
  }
}
const base = cmd.base.replace(/\/+$/, '');
await mkdir(cmd.artefacts, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const context = await browser.newContext({ viewport: { width: 360, height: 740 }, javaScriptEnabled: false,
                                             locale: 'fr-FR' });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  await page.goto(base + '/login');
  await page.fill('input[name=email]', cmd.email);
  await page.fill('input[name=password]', cmd.password);
  await Promise.all([page.waitForNavigation(), page.click('main button[type=submit]')]);
  for (const p of cmd.pages) {
    const resp = await page.goto(base + p.path);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    await page.screenshot({ path: path.join(cmd.artefacts, p.shot), fullPage: true });
    process.stdout.write(JSON.stringify({ path: p.path, status: resp ? resp.status() : 0, width }) + '\n');
  }
  process.stdout.write(JSON.stringify({ end: true }) + '\n');
} finally {
  await browser.close();
}
