// A visitor on a phone (360 px wide) in headless Chromium: opens a distribution's shop, uses the
// steppers (shop.js) and sees the live total, adds to the cart with the plain form, searches
// without accents, opens a product's page and comes back, reaches the checkout, is sent to log
// in, logs in as a member and finds the same cart ready to order behind the header's "Panier"
// link. No page scrolls sideways; no console error or CSP violation. Run by
// tests/integration/test_market_shop_browser.py:
//
//   node tests/browser/shop.mjs '{"base": "http://127.0.0.1:PORT", "shop": "/groups/S/distributions/N",
//        "email": "...", "password": "...", "artefacts": "/path/dir"}'
//
// One JSON line per check on stdout ({"step", "ok", "detail"}), the last {"step": "end"}.
// Screenshots: shop-360.png, checkout-360.png (and shop-failure-STEP.png when a step fails).
import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

const cmd = JSON.parse(process.argv[2] || '{}');
const base = String(cmd.base || '').replace(/\/+$/, '');
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
  .map((l) => l.trim()).filter(Boolean).slice(0, 6).join(' | ');
const squash = (s) => String(s || '').replace(/\s+/g, ' ').replace(/[\u00a0\u202f]/g, ' ').trim();

async function noSideways(page, what) {
  const w = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  check(`${what}: no sideways scrolling at 360 px`, w.scroll <= w.client, w);
}

async function clickAndLoad(page, locator) {
  const loaded = page.waitForEvent('load');
  await locator.click();
  await loaded;
}

async function main() {
  await mkdir(cmd.artefacts, { recursive: true });
  const errors = [];
  let browser = null, page = null, current = 'launch';
  try {
    try {
      browser = await chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, timeout: 15000,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      });
    } catch (e) {
      emit('launch', false, `chromium did not start: ${short(e)}`);
      return;
    }
    emit('launch', true, `chromium ${browser.version()}`);
    const context = await browser.newContext({ viewport: { width: 360, height: 740 }, locale: 'fr-FR', isMobile: true, hasTouch: true });
    context.setDefaultTimeout(10000);
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource:')) errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(e.message));

    current = 'shop';
    let resp = await page.goto(base + cmd.shop);
    check('the shop opens', resp && resp.status() === 200, resp && resp.status());
    await noSideways(page, 'shop');
    const card = page.locator('.market-card', { hasText: 'Pommes Reinette' });
    check('the product card shows name, price and stock', /3,20 €.*Stock restant : 10/.test(squash(await card.innerText())),
      squash(await card.innerText()));
    const plus = card.getByRole('button', { name: 'Un de plus' });
    check('shop.js adds steppers', await plus.isVisible());
    await plus.click();
    await plus.click();
    check('the stepper changes the quantity', await card.getByLabel('Quantité').inputValue() === '3');
    const live = page.locator('#cart .market-live-total').first();
    check('the live total shows what the cart would cost', squash(await live.innerText()) === '9,60 €', squash(await live.innerText()));
    await clickAndLoad(page, card.getByRole('button', { name: 'Ajouter au panier' }));
    const cart = page.locator('#cart');
    check('the plain form adds to the cart', /3 × Pommes Reinette/.test(squash(await cart.innerText())) &&
      /Total : 9,60 €/.test(squash(await cart.innerText())), squash(await cart.innerText()));
    await noSideways(page, 'shop with a cart');
    await page.screenshot({ path: path.join(cmd.artefacts, 'shop-360.png'), fullPage: true });
    emit('shop screenshot', true, path.join(cmd.artefacts, 'shop-360.png'));

    current = 'search';
    await page.getByLabel('Rechercher un produit').fill('creme');
    await clickAndLoad(page, page.getByRole('button', { name: 'Rechercher' }));
    const names = await page.locator('.market-card h3').allInnerTexts();
    check('a search without accents finds "Crème fraîche", only it', names.length === 1 && /Crème fraîche/.test(names[0]), names);

    current = 'product';
    await clickAndLoad(page, page.getByRole('link', { name: 'Crème fraîche' }));
    check('the product page opens from the name', await page.getByRole('heading', { level: 1, name: 'Crème fraîche' }).isVisible(), page.url());
    await noSideways(page, 'product page');
    await page.goBack();

    current = 'checkout';
    await page.goto(base + cmd.shop);
    await clickAndLoad(page, page.getByRole('link', { name: 'Voir le panier et commander' }));
    const main = page.getByRole('main');
    check('the checkout shows the line and the totals', /Pommes Reinette/.test(squash(await main.innerText())) &&
      /Total à payer 9,60 €/.test(squash(await main.innerText())), squash(await main.innerText()).slice(0, 600));
    await noSideways(page, 'checkout');
    check('a visitor is asked to log in to order', await main.getByRole('link', { name: 'Se connecter' }).isVisible() &&
      await main.getByRole('button', { name: /^Commander/ }).count() === 0);

    current = 'login';
    await clickAndLoad(page, main.getByRole('link', { name: 'Se connecter' }));
    await page.getByLabel('Adresse e-mail').fill(cmd.email);
    await page.getByLabel('Mot de passe', { exact: true }).fill(cmd.password);
    await clickAndLoad(page, page.getByRole('main').getByRole('button', { name: 'Se connecter' }));
    check('login lands on the account page', new URL(page.url()).pathname === '/account', page.url());
    const link = page.getByRole('link', { name: /^Panier \(3\)$/ });
    check('the header links to the cart, kept across login', await link.isVisible());
    await clickAndLoad(page, link);
    check('the same cart can now be ordered', /3 × |Pommes Reinette/.test(squash(await page.getByRole('main').innerText())) &&
      await page.getByRole('button', { name: /^Commander/ }).isVisible(), squash(await page.getByRole('main').innerText()).slice(0, 600));
    await noSideways(page, 'checkout of a member');
    await page.screenshot({ path: path.join(cmd.artefacts, 'checkout-360.png'), fullPage: true });
    emit('checkout screenshot', true, path.join(cmd.artefacts, 'checkout-360.png'));
    check('no console errors or CSP violations', errors.length === 0, errors);
  } catch (e) {
    if (!(e instanceof CheckFailed)) emit(`${current}: no error`, false, { error: short(e), url: page && page.url() });
    if (page && !page.isClosed()) {
      try { await page.screenshot({ path: path.join(cmd.artefacts, `shop-failure-${current}.png`), fullPage: true }); } catch { /* gone */ }
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  emit('end', true, null);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
