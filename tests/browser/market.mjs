// Drives headless Chromium through the marketplace the way people would: a producer logs in,
// opens their space from the header, creates a catalog, offers it to the local group that accepted them and adds a product with
// the labelled fields; then a client, in a fresh browser context, logs in, opens the directory
// from the header, finds the group there by its town, joins it, finds the product by its name on the group's page and
// follows the link to the producer's public page. Run by
// tests/integration/test_market_browser.py, which sets up the instance, the accounts, the group
// and the producer account, starts the server and checks the database afterwards:
//
//   node tests/browser/market.mjs '{"base": "http://127.0.0.1:PORT", "password": "...",
//        "producer": {"email": "...", "business": "...", "slug": "..."},
//        "client": {"email": "..."}, "group": {"name": "...", "slug": "...", "town": "..."},
//        "catalog": "...", "product": {"name": "...", "price": "3,20", "vat": "5,5",
//        "unit": "kg", "quantity": "1", "category": "Fruits"}, "artefacts": "/path/dir"}'
//
// Prints one JSON line per check on stdout: {"step": "...", "ok": true|false, "detail": ...}
// (the same protocol as flow.mjs). The last line is {"step": "end", "ok": true}; exit status 0
// unless the script itself broke. Screenshots: producer-product.png and client-group.png, and
// PREFIXSTEP.png when a step fails (PREFIX: "failurePrefix" in the command, or "failure-").
import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

const cmd = JSON.parse(process.argv[2] || '{}');
for (const k of ['base', 'password', 'producer', 'client', 'group', 'catalog', 'product', 'artefacts']) {
  if (!cmd[k]) {
    console.error(`market.mjs: missing "${k}" in the JSON command`);
    process.exit(2);
  }
}
const base = cmd.base.replace(/\/+$/, '');
const { producer, client, group, product } = cmd;
const STEP_TIMEOUT = 10000;

const t0 = Date.now();
function emit(step, ok, detail) {
  process.stdout.write(JSON.stringify({ step, ok: !!ok, detail: detail ?? null, ms: Date.now() - t0 }) + '\n');
}

// An assertion inside a step: reported as its own line, and a failure stops the run.
class CheckFailed extends Error {}
function check(step, cond, detail) {
  emit(step, cond, detail);
  if (!cond) throw new CheckFailed(step);
}

// Playwright's messages carry terminal colours and a multi-line call log.
const short = (e) => String(e && e.message || e).replace(/\x1b\[[0-9;]*m/g, '').split('\n')
  .map((l) => l.trim()).filter(Boolean).slice(0, 8).join(' | ');

async function pageText(page) {
  try {
    return (await page.locator('main').innerText()).replace(/\s+/g, ' ').slice(0, 800);
  } catch {
    return '';
  }
}

const squash = (s) => String(s || '').replace(/\s+/g, ' ').trim();

// Clicks a form's button and waits for the document it leads to (after a redirect, the page
// redirected to); returns the response to the POST itself (a 303 when it went well).
async function submit(page, button, pathname) {
  const loaded = page.waitForEvent('load');
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === pathname),
    button.click(),
  ]);
  await loaded;
  return resp;
}

// A GET form (search): waits for the page of the results.
async function search(page, button) {
  const loaded = page.waitForEvent('load');
  await button.click();
  await loaded;
}

// Watches a page for script errors, CSP violations and failed sub-resources.
function watch(page, consoleErrors, failedRequests) {
  // Chromium logs every 4xx/5xx response as a console error; documents are checked by their
  // status, other resources below, so only other errors count here.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource:')) consoleErrors.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400 && r.request().resourceType() !== 'document') failedRequests.push(`${r.status()} ${r.url()}`);
  });
  page.on('requestfailed', (r) => failedRequests.push(`${r.failure()?.errorText} ${r.url()}`));
}

async function login(page, who, email) {
  let resp = await page.goto(`${base}/login`);
  check(`${who}: the login form loads`, resp && resp.status() === 200, { status: resp && resp.status() });
  await page.getByLabel('Adresse e-mail').fill(email);
  await page.getByLabel('Mot de passe', { exact: true }).fill(cmd.password);
  resp = await submit(page, page.getByRole('main').getByRole('button', { name: 'Se connecter' }), '/login');
  check(`${who}: login succeeds and lands on the account page`, new URL(page.url()).pathname === '/account',
    { url: page.url(), loginStatus: resp.status(), text: await pageText(page) });
}

async function newPage(browser, consoleErrors, failedRequests) {
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 }, locale: 'fr-FR' });
  context.setDefaultTimeout(STEP_TIMEOUT);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT);
  const page = await context.newPage();
  watch(page, consoleErrors, failedRequests);
  return { context, page };
}

// ---- the producer -------------------------------------------------------------------------

async function producerSteps(page, state) {
  state.current = 'producer login';
  await login(page, 'producer', producer.email);

  state.current = 'producer dashboard';
  const nav = page.getByRole('navigation', { name: 'Compte' });
  check('producer: the header offers "Espace producteur"',
    await nav.getByRole('link', { name: 'Espace producteur', exact: true }).isVisible(), squash(await nav.innerText()));
  await Promise.all([
    page.waitForURL(`${base}/producer`),
    nav.getByRole('link', { name: 'Espace producteur', exact: true }).click(),
  ]);
  check('producer: the dashboard opens with the business name as its heading',
    await page.getByRole('heading', { level: 1, name: producer.business }).isVisible(),
    { url: page.url(), text: await pageText(page) });
  check('producer: the dashboard lists the group as accepted',
    /accepté/.test(squash(await page.getByRole('region', { name: 'Mes groupes', exact: true }).innerText())) &&
    await page.getByRole('region', { name: 'Mes groupes', exact: true }).getByRole('link', { name: group.name }).isVisible(),
    await pageText(page));

  state.current = 'catalog';
  await page.getByLabel('Nom du catalogue').fill(cmd.catalog);
  await page.getByLabel('Description (facultative)').fill('Fruits du plateau, cueillis à la main.');
  let resp = await submit(page, page.getByRole('button', { name: 'Créer le catalogue' }), '/producer/catalogs');
  const catalogPath = new URL(page.url()).pathname;
  check('producer: a catalog is created and its page opens',
    resp.status() === 303 && /^\/producer\/catalogs\/\d+$/.test(catalogPath) &&
    await page.getByRole('heading', { level: 1, name: cmd.catalog }).isVisible(),
    { status: resp.status(), url: page.url(), text: await pageText(page) });
  check('producer: the catalog page says it was created',
    /Catalogue créé/.test(await page.getByRole('status').innerText().catch(() => '')), await pageText(page));

  state.current = 'offer';
  const offer = page.getByRole('region', { name: 'Groupes à qui ce catalogue est proposé' });
  const box = offer.getByLabel(group.name);
  check('producer: the catalog can be offered to the group (a checkbox labelled with its name)',
    (await box.count()) === 1 && !(await box.isChecked()), { count: await box.count(), text: squash(await offer.innerText()) });
  await box.check();
  resp = await submit(page, offer.getByRole('button', { name: 'Enregistrer' }), `${catalogPath}/groups`);
  check('producer: the offer is saved',
    resp.status() === 303 && /Les groupes à qui ce catalogue est proposé sont enregistrés/.test(
      await page.getByRole('status').innerText().catch(() => '')),
    { status: resp.status(), url: page.url(), text: await pageText(page) });
  check('producer: the group stays checked after saving',
    await page.getByRole('region', { name: 'Groupes à qui ce catalogue est proposé' }).getByLabel(group.name).isChecked());

  state.current = 'product';
  await Promise.all([
    page.waitForURL(`${base}${catalogPath}/products/new`),
    page.getByRole('link', { name: 'Ajouter un produit' }).click(),
  ]);
  check('producer: "Ajouter un produit" opens the product form',
    await page.getByRole('heading', { level: 1, name: 'Nouveau produit' }).isVisible(), page.url());
  await page.getByLabel('Nom', { exact: true }).fill(product.name);
  await page.getByLabel('Description', { exact: true }).fill('Pomme rustique, acidulée, pour croquer ou cuire.');
  await page.getByLabel('Unité').selectOption({ label: product.unit });
  const qty = page.getByLabel('Quantité par article');
  await qty.fill('');
  await qty.pressSequentially(product.quantity);
  const price = page.getByLabel('Prix TTC (€)');
  await price.click();
  await price.pressSequentially(product.price);
  await page.getByLabel('Taux de TVA').selectOption({ label: `${product.vat} %` });
  await page.getByLabel('Catégorie').selectOption({ label: product.category });
  await page.getByLabel('Agriculture biologique').check();
  const active = page.getByLabel('Produit proposé à la vente');
  check('producer: the product form is filled (organic ticked, offered for sale by default)',
    (await page.getByLabel('Agriculture biologique').isChecked()) && (await active.isChecked()) &&
    (await price.inputValue()) === product.price && (await qty.inputValue()) === product.quantity,
    { price: await price.inputValue(), quantity: await qty.inputValue(), active: await active.isChecked() });
  resp = await submit(page, page.getByRole('button', { name: 'Enregistrer' }), `${catalogPath}/products/new`);
  check('producer: the product is saved and the catalog page comes back',
    resp.status() === 303 && new URL(page.url()).pathname === catalogPath &&
    /Produit enregistré/.test(await page.getByRole('status').innerText().catch(() => '')),
    { status: resp.status(), url: page.url(), text: await pageText(page) });

  const row = page.getByRole('row').filter({ has: page.getByRole('link', { name: product.name }) });
  check('producer: the product is in the catalog\'s list', (await row.count()) === 1, await pageText(page));
  const cells = (await row.getByRole('cell').allInnerTexts()).map(squash);
  // Réf. | Produit | Catégorie | Quantité | Prix TTC | TVA | Stock | État
  const want = ['', `${product.name} bio`, product.category, `${product.quantity} ${product.unit}`, `${product.price} €`,
    `${product.vat} %`, '', 'proposé'];
  check('producer: the list shows its category, quantity, price, VAT rate, the organic badge and "proposé"',
    JSON.stringify(cells) === JSON.stringify(want), { got: cells, want });
  await page.screenshot({ path: path.join(cmd.artefacts, 'producer-product.png'), fullPage: true });
  emit('producer product screenshot', true, path.join(cmd.artefacts, 'producer-product.png'));
}

// ---- the client ----------------------------------------------------------------------------

async function clientSteps(page, state) {
  state.current = 'client login';
  await login(page, 'client', client.email);

  state.current = 'directory';
  const nav = page.getByRole('navigation', { name: 'Compte' });
  check('client: the header offers "Groupes" and "Devenir producteur" (not the producer\'s space)',
    (await nav.getByRole('link', { name: 'Groupes', exact: true }).isVisible()) &&
    (await nav.getByRole('link', { name: 'Devenir producteur', exact: true }).isVisible()) &&
    (await nav.getByRole('link', { name: 'Espace producteur', exact: true }).count()) === 0, squash(await nav.innerText()));
  await Promise.all([
    page.waitForURL(`${base}/groups`),
    nav.getByRole('link', { name: 'Groupes', exact: true }).click(),
  ]);
  check('client: the directory of groups opens',
    await page.getByRole('heading', { level: 1, name: 'Groupes locaux' }).isVisible(),
    { url: page.url(), text: await pageText(page) });
  const q = page.getByLabel('Rechercher un groupe par nom ou par ville');
  await q.click();
  await q.pressSequentially(group.town);
  await search(page, page.getByRole('search').getByRole('button', { name: 'Rechercher' }));
  const entries = page.locator('li.market-group');
  const found = (await entries.allInnerTexts()).map(squash);
  check('client: a search by the town finds the group, and only it',
    new URL(page.url()).searchParams.get('q') === group.town && found.length === 1 && found[0].startsWith(group.name) &&
    found[0].includes(group.town), { url: page.url(), found });

  state.current = 'group page';
  await Promise.all([
    page.waitForURL(`${base}/groups/${group.slug}`),
    page.getByRole('link', { name: group.name, exact: true }).click(),
  ]);
  check('client: the group\'s page opens with its name as heading',
    await page.getByRole('heading', { level: 1, name: group.name }).isVisible(), { url: page.url(), text: await pageText(page) });
  check('client: the page says the membership is open', /Adhésion libre/.test(await pageText(page)), await pageText(page));

  state.current = 'join';
  const joinButton = page.getByRole('button', { name: 'Rejoindre le groupe' });
  check('client: the page offers "Rejoindre le groupe"', await joinButton.isVisible(), await pageText(page));
  const resp = await submit(page, joinButton, `/groups/${group.slug}/join`);
  check('client: joining the open group makes them a member at once',
    resp.status() === 303 && /Vous êtes membre de ce groupe/.test(await pageText(page)) &&
    /Bienvenue : vous êtes membre du groupe/.test(await page.getByRole('status').innerText().catch(() => '')),
    { status: resp.status(), url: page.url(), text: await pageText(page) });
  check('client: the page now offers to leave, not to join',
    (await page.getByRole('button', { name: 'Quitter le groupe' }).isVisible()) &&
    (await page.getByRole('button', { name: 'Rejoindre le groupe' }).count()) === 0);

  state.current = 'product search';
  const pq = page.getByLabel('Rechercher un produit');
  await pq.click();
  await pq.pressSequentially(product.name);
  await search(page, page.getByRole('search').getByRole('button', { name: 'Rechercher' }));
  check('client: the search stays on the group\'s page with the name asked for',
    new URL(page.url()).pathname === `/groups/${group.slug}` && new URL(page.url()).searchParams.get('q') === product.name &&
    (await page.getByLabel('Rechercher un produit').inputValue()) === product.name, page.url());
  const products = page.getByRole('region', { name: 'Produits', exact: true });
  const rows = products.getByRole('row').filter({ hasText: product.name });
  check('client: the search finds the product', (await rows.count()) === 1, await pageText(page));
  const cells = (await rows.getByRole('cell').allInnerTexts()).map(squash);
  // Produit | Prix | Quantité | Producteur
  check('client: the product shows its price "3,20 €"', cells[1] === `${product.price} €`, { cells });
  check('client: the product is marked organic and sold by the kg',
    cells[0] === `${product.name} Bio` && cells[2] === `${product.quantity} ${product.unit}`, { cells });
  const producerLink = rows.getByRole('link', { name: producer.business, exact: true });
  check('client: the product shows the producer\'s name, as a link',
    cells[3] === producer.business && (await producerLink.count()) === 1, { cells });
  await page.screenshot({ path: path.join(cmd.artefacts, 'client-group.png'), fullPage: true });
  emit('client group screenshot', true, path.join(cmd.artefacts, 'client-group.png'));

  state.current = 'producer page';
  await Promise.all([
    page.waitForURL(`${base}/producers/${producer.slug}`),
    producerLink.click(),
  ]);
  check('client: the producer link leads to the producer\'s public page',
    await page.getByRole('heading', { level: 1, name: producer.business }).isVisible(), { url: page.url(), text: await pageText(page) });
  const item = page.getByRole('region', { name: 'Produits', exact: true }).getByRole('listitem').filter({ hasText: product.name });
  const itemText = (await item.count()) === 1 ? squash(await item.innerText()) : null;
  check('client: the product is on the producer\'s page with its price',
    itemText !== null && itemText.includes(`${product.quantity} ${product.unit}`) && itemText.includes(`${product.price} € TTC`) &&
    /\bbio\b/.test(itemText), { item: itemText, text: await pageText(page) });
  check('client: the producer\'s page says where to find the products (the group)',
    await page.getByRole('region', { name: 'Où trouver ses produits', exact: true }).getByRole('link', { name: group.name }).isVisible(),
    await pageText(page));
}

async function main() {
  await mkdir(cmd.artefacts, { recursive: true });
  const consoleErrors = [];
  const failedRequests = [];
  const state = { current: 'launch' };
  let browser = null;
  let page = null;
  try {
    try {
      browser = await chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        timeout: 15000,
      });
    } catch (e) {
      emit('launch', false, `chromium did not start: ${short(e)}`);
      return;
    }
    emit('launch', true, `chromium ${browser.version()}`);

    let ctx = await newPage(browser, consoleErrors, failedRequests);
    page = ctx.page;
    await producerSteps(page, state);
    await ctx.context.close();

    // a fresh context: no cookie, no storage from the producer's session
    state.current = 'client context';
    ctx = await newPage(browser, consoleErrors, failedRequests);
    page = ctx.page;
    check('client: a fresh browser context has no cookie', (await ctx.context.cookies()).length === 0);
    await clientSteps(page, state);

    check('no console errors or CSP violations in the pages', consoleErrors.length === 0, consoleErrors);
    check('no failed requests for styles, scripts or images', failedRequests.length === 0, failedRequests);
  } catch (e) {
    if (!(e instanceof CheckFailed)) {
      emit(`${state.current}: no error`, false,
        { error: short(e), url: page && page.url(), text: page && await pageText(page) });
    }
    if (page && !page.isClosed()) {
      const shot = path.join(cmd.artefacts, `${cmd.failurePrefix || 'failure-'}${state.current.replace(/\W+/g, '-')}.png`);
      try {
        await page.screenshot({ path: shot, fullPage: true });
        emit('failure screenshot', true, shot);
      } catch { /* the browser may be gone */ }
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  emit('end', true, null);
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
