#!/usr/bin/env node
/*
 * Browser test of the bundled web client: two strangers in two isolated
 * browser contexts find each other, chat, and one of them skips.
 *
 * Env:
 *   CHAT_TEST_URL         the gateway's page, e.g. http://127.0.0.1:8080/ (required)
 *   CHAT_TEST_SCREENSHOT  where to save a PNG of the chat screen (optional)
 *   CHAT_CHROMIUM         browser binary (default /usr/bin/chromium)
 *   CHAT_TEST_TIMEOUT_MS  bound of every single wait (default 10000)
 *
 * Exit 0 when every step passed; 1 with "FAIL: <step>: <why>" otherwise;
 * 2 when it cannot start (no URL, no browser).
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const URL_ = process.env.CHAT_TEST_URL;
const SHOT = process.env.CHAT_TEST_SCREENSHOT || '';
const CHROMIUM = process.env.CHAT_CHROMIUM || '/usr/bin/chromium';
const WAIT = Number(process.env.CHAT_TEST_TIMEOUT_MS) || 10000;
const WHOLE_TEST_MS = 30 * WAIT;      // a hard stop if something hangs outside a wait
const MAX_TEXT = 500;

function die(code, msg) {
  console.error(msg);
  process.exit(code);
}

if (!URL_) die(2, 'FAIL: setup: CHAT_TEST_URL is not set (e.g. http://127.0.0.1:8080/)');
if (!fs.existsSync(CHROMIUM)) die(2, `FAIL: setup: no browser at ${CHROMIUM} (apt-get install -y chromium)`);

let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (e) {
  die(2, 'FAIL: setup: playwright-core missing — run `npm ci` in tests/browser');
}

const watchdog = setTimeout(() => die(1, `FAIL: the whole test took over ${WHOLE_TEST_MS} ms`), WHOLE_TEST_MS);

let current = 'setup';
let passed = 0;
async function step(name, fn) {
  current = name;
  await fn();
  passed += 1;
  console.log(`ok ${passed} - ${name}`);
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// Waits until fn(arg) is truthy in the page; fails after WAIT ms with `what`.
async function until(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 50 });
  } catch (e) {
    throw new Error(`timed out after ${WAIT} ms waiting for ${what}`);
  }
}

const phaseIs = (page, phase) => until(page, `phase "${phase}"`,
  (p) => document.body.dataset.phase === p, phase);

const statusIs = (page, text) => until(page, `status line "${text}"`,
  (t) => document.getElementById('status').textContent === t, text);

async function state(page) {
  return page.evaluate(() => ({
    phase: document.body.dataset.phase,
    conn: document.body.dataset.conn,
    connText: document.getElementById('conn-text').textContent,
    status: document.getElementById('status').textContent,
    error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
    messages: [...document.querySelectorAll('#messages li')].map(
      (li) => `${li.className}${li.dataset.status ? '[' + li.dataset.status + ']' : ''}: ${li.textContent}`),
  })).catch((e) => ({ unavailable: String(e) }));
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-browser-'));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 3 * WAIT,
    // playwright-core manages a fresh temporary profile itself; the extra
    // directory below only keeps crash dumps and caches out of $HOME.
    env: { ...process.env, HOME: profile, XDG_CONFIG_HOME: profile, XDG_CACHE_HOME: profile },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--disk-cache-dir=${path.join(profile, 'cache')}`],
  });
  const pageErrors = [];
  const pages = {};
  try {
    // Two contexts: separate localStorage, so two different users.
    const ctxA = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const ctxB = await browser.newContext({ viewport: { width: 390, height: 740 }, deviceScaleFactor: 2 });
    const a = await ctxA.newPage();
    const b = await ctxB.newPage();
    pages.A = a;
    pages.B = b;
    for (const [name, p] of Object.entries(pages)) {
      p.setDefaultTimeout(WAIT);
      p.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
      p.on('console', (m) => { if (m.type() === 'error') console.log(`  [${name} console] ${m.text()}`); });
    }

    await step('both pages load and connect', async () => {
      for (const p of [a, b]) {
        const res = await p.goto(URL_, { timeout: WAIT });
        check(res && res.ok(), `GET ${URL_} → ${res ? res.status() : 'no response'}`);
        await until(p, 'the connection indicator to say connected',
          () => document.body.dataset.conn === 'connected');
        await until(p, 'the start screen', () =>
          !document.getElementById('start-screen').hidden && !document.getElementById('start-btn').disabled);
      }
    });

    await step('A presses Start and is searching', async () => {
      await a.click('#start-btn');
      await phaseIs(a, 'searching');
      await statusIs(a, 'Looking for a stranger…');
      check(await a.isVisible('#cancel-btn'), 'no Cancel button while searching');
    });

    await step('B presses Start; both are matched and the input has focus', async () => {
      await b.click('#start-btn');
      await phaseIs(a, 'chatting');
      await phaseIs(b, 'chatting');
      for (const p of [a, b]) {
        await until(p, 'focus on the message input', () => document.activeElement &&
          document.activeElement.id === 'input');
      }
    });

    const hello = 'hello 👋';
    await step('A sends "hello 👋" with Enter; it is acked', async () => {
      await a.fill('#input', hello);
      await a.press('#input', 'Enter');
      await until(a, 'A\'s own message to be marked sent', (t) => [...document.querySelectorAll('#messages li.mine')]
        .some((li) => li.querySelector('.bubble').textContent === t &&
          ['sent', 'delivered', 'read'].includes(li.dataset.status)), hello);
      check(await a.inputValue('#input') === '', 'the input was not cleared after sending');
    });

    await step('B sees "hello 👋" on the stranger\'s side', async () => {
      await until(b, 'the message from A', (t) => [...document.querySelectorAll('#messages li.theirs .bubble')]
        .some((el) => el.textContent === t), hello);
      const n = await b.locator('#messages li.theirs').count();
      check(n === 1, `B shows ${n} incoming messages, expected 1`);
    });

    await step('B\'s counter counts code points', async () => {
      const text = 'héllo 👋🏽 世界 𝄞\nok';
      const cps = [...text].length;
      check(cps !== text.length, 'test text must differ in code points and UTF-16 units');
      await b.fill('#input', text);
      const shown = (await b.textContent('#counter')).trim();
      check(shown === `${cps}/${MAX_TEXT}`, `counter shows "${shown}", expected "${cps}/${MAX_TEXT}"`);
      check(!(await b.isDisabled('#send-btn')), 'Send is disabled for a valid text');

      await b.fill('#input', '😀'.repeat(MAX_TEXT + 1));
      const over = (await b.textContent('#counter')).trim();
      check(over === `${MAX_TEXT + 1}/${MAX_TEXT}`, `counter shows "${over}" for ${MAX_TEXT + 1} emoji`);
      check(await b.$eval('#counter', (el) => el.classList.contains('over')), 'counter not marked over the limit');
      check(await b.isDisabled('#send-btn'), 'Send stays enabled over the limit');

      await b.fill('#input', '😀'.repeat(MAX_TEXT));
      const full = (await b.textContent('#counter')).trim();
      check(full === `${MAX_TEXT}/${MAX_TEXT}`, `counter shows "${full}" for ${MAX_TEXT} emoji`);
      check(!(await b.isDisabled('#send-btn')), 'Send is disabled at exactly the limit');
    });

    const reply = 'hi! <b>not bold</b> 🙂';
    await step('B replies with the Send button; A sees it as plain text', async () => {
      await b.fill('#input', reply);
      await b.click('#send-btn');
      await until(a, 'B\'s reply at A', (t) => [...document.querySelectorAll('#messages li.theirs .bubble')]
        .some((el) => el.textContent === t && el.children.length === 0), reply);
      await until(b, 'B\'s reply to be acked', (t) => [...document.querySelectorAll('#messages li.mine')]
        .some((li) => li.querySelector('.bubble').textContent === t && li.dataset.status !== 'sending'
          && li.dataset.status !== 'failed'), reply);
    });

    if (SHOT) {
      await step(`screenshot of the chat screen → ${SHOT}`, async () => {
        fs.mkdirSync(path.dirname(path.resolve(SHOT)), { recursive: true });
        await b.screenshot({ path: SHOT, timeout: WAIT });
        const ext = path.extname(SHOT);
        await a.screenshot({ path: SHOT.slice(0, SHOT.length - ext.length) + '-desktop' + (ext || '.png'), timeout: WAIT });
      });
    }

    await step('A presses Skip: B sees "Stranger left", A searches again', async () => {
      await a.click('#skip-btn');
      await statusIs(b, 'Stranger left');
      await phaseIs(b, 'ended');
      check(await b.isVisible('#new-chat-btn'), 'no New chat button after the stranger left');
      check(await b.isHidden('#composer'), 'the send box is still shown after the chat ended');
      await phaseIs(a, 'searching');
    });

    await step('B presses New chat and meets A again', async () => {
      await b.click('#new-chat-btn');
      await phaseIs(b, 'chatting');
      await phaseIs(a, 'chatting');
      const na = await a.locator('#messages li.theirs, #messages li.mine').count();
      check(na === 0, `A's new chat shows ${na} old messages`);
    });

    check(pageErrors.length === 0, `uncaught errors in the page: ${pageErrors.join('; ')}`);
  } catch (e) {
    console.error(`FAIL: ${current}: ${e.message}`);
    for (const [name, p] of Object.entries(pages)) {
      console.error(`  page ${name}: ${JSON.stringify(await state(p))}`);
    }
    if (pageErrors.length) console.error(`  uncaught page errors: ${pageErrors.join('; ')}`);
    if (SHOT && pages.B) {
      await pages.B.screenshot({ path: SHOT.replace(/(\.png)?$/, '-failed.png'), timeout: WAIT }).catch(() => {});
    }
    process.exitCode = 1;
  } finally {
    await Promise.race([browser.close(), new Promise((r) => setTimeout(r, WAIT))]);
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(`browser: ${passed} passed, ${process.exitCode ? 1 : 0} failed`);
}

main().catch((e) => {
  console.error(`FAIL: ${current}: ${e.message}`);
  process.exitCode = 1;
}).finally(() => {
  clearTimeout(watchdog);
  process.exit(process.exitCode || 0);
});
