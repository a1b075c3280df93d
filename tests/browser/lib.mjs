// What the browser scripts share: one JSON line per check on stdout ({"step", "ok", "detail",
// "ms"}), checks that stop the script, text helpers, the phone-width checks, and Chromium's
// launch with the flags the tests use. (orders.mjs uses it; the older scripts carry their own
// copies.)
import { chromium } from 'playwright-core';

const t0 = Date.now();
export function emit(step, ok, detail) {
  process.stdout.write(JSON.stringify({ step, ok: !!ok, detail: detail ?? null, ms: Date.now() - t0 }) + '\n');
}
export class CheckFailed extends Error {}
export function check(step, cond, detail) {
  emit(step, cond, detail);
  if (!cond) throw new CheckFailed(step);
}
export const short = (e) => String(e && e.message || e).replace(/\x1b\[[0-9;]*m/g, '').split('\n')
  .map((l) => l.trim()).filter(Boolean).slice(0, 6).join(' | ');
export const squash = (s) => String(s || '').replace(/\s+/g, ' ').replace(/[\u00a0\u202f]/g, ' ').trim();

export async function noSideways(page, what) {
  const w = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  check(`${what}: no sideways scrolling at 360 px`, w.scroll <= w.client, w);
}

export async function clickAndLoad(page, locator) {
  const loaded = page.waitForEvent('load');
  await locator.click();
  await loaded;
}

// Chromium, or null after emitting a failed "launch" step.
export async function launch() {
  try {
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, timeout: 15000,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    emit('launch', true, `chromium ${browser.version()}`);
    return browser;
  } catch (e) {
    emit('launch', false, `chromium did not start: ${short(e)}`);
    return null;
  }
}
