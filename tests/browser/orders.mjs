// A member on a phone (360 px wide) in headless Chromium orders what their cart holds: logs in,
// opens the checkout, presses "Commander", lands on the order's confirmation (lines, total,
// pickup place), finds it in "Mes commandes"; then the group's coordinator opens the
// distribution's report (the attendance sheet) and its print view leaves the site's header
// out. No page scrolls sideways; no console error or CSP violation. Run by
// tests/integration/test_market_orders_browser.py:
//
//   node tests/browser/orders.mjs '{"base": "http://127.0.0.1:PORT", "checkout": "/groups/S/distributions/N/checkout",
//        "report": "/groups/S/distributions/N/report", "member": {"email", "password"},
//        "coordinator": {"email", "password"}, "artefacts": "/path/dir"}'
//
// One JSON line per check on stdout ({"step", "ok", "detail"}), the last {"step": "end"}.
// Screenshots: order-360.png, report-360.png, report-print.png (orders-failure-STEP.png when a
// step fails).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { CheckFailed, check, clickAndLoad, emit, launch, noSideways, short, squash } from './lib.mjs';

const cmd = JSON.parse(process.argv[2] || '{}');
const base = String(cmd.base || '').replace(/\/+$/, '');

async function phone(browser, errors) {
  const context = await browser.newContext({ viewport: { width: 360, height: 740 }, locale: 'fr-FR', isMobile: true, hasTouch: true });
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource:')) errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(e.message));
  return page;
}

async function login(page, who) {
  await page.goto(base + '/login');
  await page.getByLabel('Adresse e-mail').fill(who.email);
  await page.getByLabel('Mot de passe', { exact: true }).fill(who.password);
  await clickAndLoad(page, page.getByRole('main').getByRole('button', { name: 'Se connecter' }));
  return new URL(page.url()).pathname === '/account';
}

async function main() {
  await mkdir(cmd.artefacts, { recursive: true });
  const errors = [];
  let browser = null, page = null, current = 'launch';
  try {
    if (!(browser = await launch()))
      return;

    current = 'member';
    page = await phone(browser, errors);
    check('the member logs in', await login(page, cmd.member), page.url());
    const resp = await page.goto(base + cmd.checkout);
    check('the checkout opens', resp && resp.status() === 200, resp && resp.status());
    await clickAndLoad(page, page.getByRole('button', { name: /^Commander/ }));
    check('"Commander" lands on the confirmation', /^\/orders\/\d+$/.test(new URL(page.url()).pathname), page.url());
    const main = squash(await page.getByRole('main').innerText());
    check('the confirmation shows the lines, total and pickup place', /Votre commande est enregistrée/.test(main) &&
      /Pain de campagne/.test(main) && /Total : 9,00 €/.test(main) && /Salle des fêtes/.test(main), main.slice(0, 800));
    check('it offers to change or cancel the order', await page.getByRole('button', { name: 'Modifier ma commande' }).isVisible() &&
      await page.getByRole('button', { name: 'Annuler ma commande' }).isVisible());
    await noSideways(page, 'confirmation');
    await page.screenshot({ path: path.join(cmd.artefacts, 'order-360.png'), fullPage: true });
    emit('order screenshot', true, path.join(cmd.artefacts, 'order-360.png'));
    await clickAndLoad(page, page.getByRole('link', { name: 'Mes commandes' }).first());
    check('"Mes commandes" lists the upcoming pickup', /Retraits à venir/.test(squash(await page.getByRole('main').innerText())) &&
      await page.locator('.order-list.upcoming .order-item').count() === 1, squash(await page.getByRole('main').innerText()).slice(0, 400));
    await noSideways(page, 'my orders');

    current = 'coordinator';
    page = await phone(browser, errors);
    check('the coordinator logs in', await login(page, cmd.coordinator), page.url());
    const r2 = await page.goto(base + cmd.report);
    check('the report opens', r2 && r2.status() === 200, r2 && r2.status());
    const sheet = squash(await page.locator('table.report').innerText());
    check('the attendance sheet lists the member and the amount', /Bob/.test(sheet) && /9,00 €/.test(sheet), sheet.slice(0, 400));
    await noSideways(page, 'report');
    await page.screenshot({ path: path.join(cmd.artefacts, 'report-360.png'), fullPage: true });
    emit('report screenshot', true, path.join(cmd.artefacts, 'report-360.png'));
    await page.emulateMedia({ media: 'print' });
    const hidden = await page.evaluate(() => getComputedStyle(document.querySelector('header.site')).display === 'none' &&
      getComputedStyle(document.querySelector('.report-tabs')).display === 'none');
    check('printed, the report leaves the header and the tabs out', hidden);
    await page.screenshot({ path: path.join(cmd.artefacts, 'report-print.png'), fullPage: true });
    emit('print screenshot', true, path.join(cmd.artefacts, 'report-print.png'));
    check('no console errors or CSP violations', errors.length === 0, errors);
  } catch (e) {
    if (!(e instanceof CheckFailed)) emit(`${current}: no error`, false, { error: short(e), url: page && page.url() });
    if (page && !page.isClosed()) {
      try { await page.screenshot({ path: path.join(cmd.artefacts, `orders-failure-${current}.png`), fullPage: true }); } catch { /* gone */ }
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  emit('end', true, null);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
