// Drives headless Chromium through halle's account pages the way a person would: sign-up
// (labelled fields, keyboard Tab order, check boxes, the button), the verification link from
// the mail, login, logout, and a login with a wrong password. Run by
// tests/integration/test_browser.py, which starts the server and the SMTP listener:
//
//   node tests/browser/flow.mjs '{"base": "http://127.0.0.1:PORT", "email": "...",
//        "name": "...", "password": "...", "mailDir": "/tmp/...", "artefacts": "/path/dir",
//        "pauseAfterLogin": true}'
//
// Prints one JSON line per check on stdout: {"step": "...", "ok": true|false, "detail": ...}.
// With pauseAfterLogin it prints {"step": "paused", ...} after logging in and waits for a line
// on stdin before logging out (so the caller can look at the session in the database).
// The last line is {"step": "end", "ok": true}; exit status 0 unless the script itself broke.
import { chromium } from 'playwright-core';
import { mkdtemp, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import path from 'node:path';

const cmd = JSON.parse(process.argv[2] || '{}');
for (const k of ['base', 'email', 'password', 'mailDir', 'artefacts']) {
  if (!cmd[k]) {
    console.error(`flow.mjs: missing "${k}" in the JSON command`);
    process.exit(2);
  }
}
const base = cmd.base.replace(/\/+$/, '');
const name = cmd.name || 'Lise Browser';
const STEP_TIMEOUT = 10000;
const MAIL_TIMEOUT = 20000;

const t0 = Date.now();
function emit(step, ok, detail) {
  process.stdout.write(JSON.stringify({ step, ok: !!ok, detail: detail ?? null, ms: Date.now() - t0 }) + '\n');
}

// An assertion inside a step: reported as its own line, and a failure stops the step.
class CheckFailed extends Error {}
function check(step, cond, detail) {
  emit(step, cond, detail);
  if (!cond) throw new CheckFailed(step);
}

const stdinLines = createInterface({ input: process.stdin });
const waitStdinLine = () => new Promise((resolve) => {
  stdinLines.once('line', resolve);
  stdinLines.once('close', resolve);
});

// Playwright's messages carry terminal colours and a multi-line call log.
const short = (e) => String(e && e.message || e).replace(/\x1b\[[0-9;]*m/g, '').split('\n')
  .map((l) => l.trim()).filter(Boolean).slice(0, 8).join(' | ');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The caller writes one file per received message (headers, blank line, body); the first
// /verify link sent to our address is the one.
async function waitForVerifyLink() {
  const deadline = Date.now() + MAIL_TIMEOUT;
  const re = /https?:\/\/\S+\/verify\?token=[A-Za-z0-9_-]+/;
  while (Date.now() < deadline) {
    let names = [];
    try {
      names = (await readdir(cmd.mailDir)).filter((n) => n.endsWith('.eml')).sort();
    } catch { /* not created yet */ }
    for (const n of names) {
      const text = await readFile(path.join(cmd.mailDir, n), 'utf8');
      const to = /^To: (.*)$/m.exec(text);
      const m = re.exec(text);
      if (m && to && to[1].includes(cmd.email)) return m[0];
    }
    await sleep(100);
  }
  return null;
}

async function pageText(page) {
  try {
    return (await page.locator('body').innerText()).replace(/\s+/g, ' ').slice(0, 500);
  } catch {
    return '';
  }
}

// Visible text whose contrast with the background behind it is below WCAG 2 AA: 4.5:1, or
// 3:1 for large text (24px, or 18.66px bold). The background is the first opaque one among the
// element and its ancestors (background images are not considered).
async function lowContrast(page) {
  return page.evaluate(() => {
    const parse = (c) => {
      const m = /rgba?\(([\d.]+),? ([\d.]+),? ([\d.]+)(?:,? \/? ?([\d.]+))?\)/.exec(c);
      return m ? { r: +m[1], g: +m[2], b: +m[3], a: m[4] === undefined ? 1 : +m[4] } : null;
    };
    const lum = ({ r, g, b }) => {
      const f = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const bgOf = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0.5) return c;
      }
      return { r: 255, g: 255, b: 255, a: 1 };
    };
    const hex = ({ r, g, b }) => '#' + [r, g, b].map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');
    const out = [];
    for (const el of document.querySelectorAll('body *')) {
      const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own && !(el.tagName === 'INPUT' && el.value)) continue;
      const st = getComputedStyle(el);
      const box = el.getBoundingClientRect();
      if (st.visibility === 'hidden' || st.display === 'none' || box.width < 2 || box.height < 2) continue;
      const fg = parse(st.color);
      if (!fg) continue;
      const bg = bgOf(el);
      const [a, b] = [lum(fg), lum(bg)];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      const size = parseFloat(st.fontSize);
      const large = size >= 24 || (size >= 18.66 && +st.fontWeight >= 700);
      if (ratio < (large ? 3 : 4.5)) {
        out.push({ text: (el.innerText || el.value || '').trim().slice(0, 40), color: hex(fg), background: hex(bg),
          ratio: Math.round(ratio * 100) / 100 });
      }
    }
    return out;
  });
}

async function sessionCookie(context) {
  return (await context.cookies(base)).find((c) => c.name === 'halle_session') || null;
}

// Waits for the response to the POST that a click on `button` sends.
async function submit(page, button, pathname) {
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === pathname),
    button.click(),
  ]);
  await page.waitForLoadState('load');
  return resp;
}

async function main() {
  await mkdir(cmd.artefacts, { recursive: true });
  // A fresh profile: the caller's empty folder (so it can find leftover processes by it),
  // or a new temporary one.
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
    // Chromium logs every 4xx/5xx response as a console error; those are checked apart (the
    // documents by status, the other resources below), so only other errors count here.
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource:')) consoleErrors.push(`${page.url()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
    page.on('response', (r) => {
      if (r.status() >= 400 && r.request().resourceType() !== 'document') failedRequests.push(`${r.status()} ${r.url()}`);
    });
    page.on('requestfailed', (r) => failedRequests.push(`${r.failure()?.errorText} ${r.url()}`));

    // ---- sign-up form
    current = 'signup form';
    let resp = await page.goto(`${base}/signup`);
    check('signup form loads', resp && resp.status() === 200, { status: resp && resp.status() });
    check('signup form has its heading',
      await page.getByRole('heading', { level: 1, name: 'Créer un compte' }).isVisible(), await pageText(page));
    const sheets = await page.evaluate(() => [...document.styleSheets].map((s) => {
      try { return { href: s.href, rules: s.cssRules.length }; } catch (e) { return { href: s.href, error: String(e) }; }
    }));
    check('the stylesheet is loaded and applied', sheets.length > 0 && sheets.every((s) => s.rules > 0), sheets);

    const email = page.getByLabel('Adresse e-mail');
    const nameField = page.getByLabel('Nom', { exact: true });
    const pw = page.getByLabel('Mot de passe', { exact: true });
    const pw2 = page.getByLabel('Mot de passe (à nouveau)');
    const terms = page.getByLabel(/J'accepte les conditions d'utilisation/);
    const age = page.getByLabel(/plus de 15 ans/);
    for (const [label, loc] of [['Adresse e-mail', email], ['Nom', nameField], ['Mot de passe', pw],
      ['Mot de passe (à nouveau)', pw2], ['conditions', terms], ['15 ans', age]]) {
      check(`signup field labelled "${label}" is there`, (await loc.count()) === 1 && await loc.isVisible(),
        { count: await loc.count() });
    }

    // keyboard: Tab from the email field goes to the name field
    current = 'keyboard';
    await email.focus();
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => {
      const a = document.activeElement;
      return a ? { tag: a.tagName, id: a.id, name: a.getAttribute('name') } : null;
    });
    check('keyboard: Tab from the email field moves focus to the name field',
      focused && focused.id === 'f-name', { focused });

    // fill the form the way a person does: type, tick, click
    current = 'signup';
    await email.click();
    await email.pressSequentially(cmd.email);
    await nameField.fill(name);
    await pw.fill(cmd.password);
    await pw2.fill(cmd.password);
    await terms.check();
    await age.check();
    check('signup check boxes are ticked', (await terms.isChecked()) && (await age.isChecked()));
    await page.screenshot({ path: path.join(cmd.artefacts, 'signup.png'), fullPage: true });
    emit('signup form screenshot', true, path.join(cmd.artefacts, 'signup.png'));
    const lowSignup = await lowContrast(page);
    emit('text contrast on the sign-up form meets WCAG AA', lowSignup.length === 0, lowSignup);
    resp = await submit(page, page.getByRole('button', { name: 'Créer mon compte' }), '/signup');
    check('signup is accepted', resp.status() === 200 &&
      await page.getByRole('heading', { name: 'Vérifiez votre boîte aux lettres' }).isVisible(),
    { status: resp.status(), text: await pageText(page) });

    // ---- verification link from the mail
    current = 'verify';
    const link = await waitForVerifyLink();
    check('the verification mail holds a /verify link', link !== null,
      `no mail to ${cmd.email} with a /verify link in ${cmd.mailDir} within ${MAIL_TIMEOUT / 1000} s`);
    check('the link points at the base URL', link.startsWith(`${base}/verify?token=`), link);
    resp = await page.goto(link);
    check('the verification link activates the account',
      resp.status() === 200 && await page.getByText(/Votre compte est activé/).isVisible(),
      { status: resp.status(), text: await pageText(page) });

    // ---- login
    current = 'login';
    await Promise.all([
      page.waitForURL(`${base}/login`),
      page.getByRole('main').getByRole('link', { name: 'Se connecter' }).click(),
    ]);
    check('the "Se connecter" link on the confirmation page leads to the login form',
      await page.getByRole('heading', { level: 1, name: 'Se connecter' }).isVisible(), page.url());
    await page.getByLabel('Adresse e-mail').fill(cmd.email);
    await page.getByLabel('Mot de passe', { exact: true }).fill(cmd.password);
    resp = await submit(page, page.getByRole('button', { name: 'Se connecter' }), '/login');
    check('login succeeds and lands on the account page',
      new URL(page.url()).pathname === '/account' &&
      await page.getByRole('heading', { level: 1, name: 'Mon compte' }).isVisible(),
      { url: page.url(), loginStatus: resp.status(), text: await pageText(page) });
    check('the account page shows the address', await page.getByText(`Actuelle : ${cmd.email}`).isVisible(),
      await pageText(page));
    check('the account page shows the name', (await page.getByLabel('Nom', { exact: true }).inputValue()) === name,
      await page.getByLabel('Nom', { exact: true }).inputValue());
    check('the header offers "Se déconnecter"',
      await page.getByRole('navigation', { name: 'Compte' }).getByRole('button', { name: 'Se déconnecter' }).isVisible());
    const sc = await sessionCookie(context);
    check('the browser holds an HttpOnly SameSite=Lax session cookie',
      sc && sc.httpOnly && sc.sameSite === 'Lax', sc && { httpOnly: sc.httpOnly, sameSite: sc.sameSite, secure: sc.secure });
    await page.screenshot({ path: path.join(cmd.artefacts, 'account.png'), fullPage: true });
    emit('account page screenshot', true, path.join(cmd.artefacts, 'account.png'));
    const lowAccount = await lowContrast(page);
    emit('text contrast on the account page meets WCAG AA', lowAccount.length === 0, lowAccount);

    if (cmd.pauseAfterLogin) {
      emit('paused', true, { session: sc.value });
      await waitStdinLine();
    }

    // ---- logout
    current = 'logout';
    resp = await submit(page,
      page.getByRole('navigation', { name: 'Compte' }).getByRole('button', { name: 'Se déconnecter' }), '/logout');
    check('logout goes back to the home page', new URL(page.url()).pathname === '/',
      { url: page.url(), logoutStatus: resp.status() });
    check('after logout the "Se connecter" link is visible',
      await page.getByRole('navigation', { name: 'Compte' }).getByRole('link', { name: 'Se connecter' }).isVisible(),
      await pageText(page));
    check('after logout the session cookie is gone', (await sessionCookie(context)) === null);
    resp = await page.goto(`${base}/account`);
    check('after logout the account page sends to the login form', new URL(page.url()).pathname === '/login',
      page.url());

    // ---- a wrong password
    current = 'failed login';
    await page.getByLabel('Adresse e-mail').fill(cmd.email);
    await page.getByLabel('Mot de passe', { exact: true }).fill(cmd.password + 'x');
    resp = await submit(page, page.getByRole('button', { name: 'Se connecter' }), '/login');
    const alert = page.getByRole('alert');
    check('a wrong password is refused with 401', resp.status() === 401, { status: resp.status() });
    check('a wrong password shows the error message',
      (await alert.count()) === 1 && /incorrect/i.test(await alert.innerText()),
      { alert: (await alert.count()) ? await alert.innerText() : null, text: await pageText(page) });
    check('the login form keeps the address and empties the password',
      (await page.getByLabel('Adresse e-mail').inputValue()) === cmd.email &&
      (await page.getByLabel('Mot de passe', { exact: true }).inputValue()) === '');
    check('still logged out after the failure', (await sessionCookie(context)) === null);
    await page.screenshot({ path: path.join(cmd.artefacts, 'login-error.png'), fullPage: true });
    emit('login error screenshot', true, path.join(cmd.artefacts, 'login-error.png'));
    const lowLogin = await lowContrast(page);
    emit('text contrast on the login error page meets WCAG AA', lowLogin.length === 0, lowLogin);

    check('no console errors or CSP violations in the pages', consoleErrors.length === 0, consoleErrors);
    check('no failed requests for styles, scripts or images', failedRequests.length === 0, failedRequests);
  } catch (e) {
    if (!(e instanceof CheckFailed)) {
      emit(`${current}: no error`, false,
        { error: short(e), url: page && page.url(), text: page && await pageText(page) });
    }
    if (page) {
      const shot = path.join(cmd.artefacts, `failure-${current.replace(/\W+/g, '-')}.png`);
      try {
        await page.screenshot({ path: shot, fullPage: true });
        emit('failure screenshot', true, shot);
      } catch { /* the browser may be gone */ }
    }
  } finally {
    if (context) await context.close().catch(() => {});
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
    stdinLines.close();
  }
  emit('end', true, null);
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
