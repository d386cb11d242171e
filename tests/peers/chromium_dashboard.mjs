#!/usr/bin/env node
// The admin dashboard (GET / on wsedge's admin listener) in headless Chromium,
// driven step by step by tests/dashboard.rs over stdin/stdout:
//
//   node chromium_dashboard.mjs ADMIN_URL TOKEN SCREENSHOT.png
//
// It opens ADMIN_URL in a fresh profile and checks that, with no token, only
// the login form shows; logs in with a wrong token and checks that the login
// form stays, with the server's refusal, and that no data was shown or kept;
// logs in with TOKEN and waits for the live feed, then prints READY. Then it
// answers one command per line, printing DONE after each:
//
//   CONNECTIONS <channel> <n>         waits until the page shows n connections
//                                     on <channel> and n in all
//   PUBLISH <channel> <room|-> <text> publishes <text> with the publish form and
//                                     waits for "Delivered to 1 connection"
//   TILE <id> <text>                  waits until the overview tile #<id> shows <text>
//   DISCONNECT <user> <n>             submits the disconnect form, waits for
//                                     "Closed <n> connections of <user>."
//   RELOADED <generation>             waits until the page shows the generation
//                                     and a history line for it
//   REFUSED <reason>                  waits for a rejection row with that reason
//   SCREENSHOT                        reloads the page (the token is kept in the
//                                     tab), waits for the feed, screenshots it
//   LOGOUT                            logs out; checks the login form is back and
//                                     no data is left; prints OK and exits 0
//
// On any failure a FAIL: line and exit 1. Chromium's flags are chromium.mjs's.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { EXECUTABLE, FLAGS } from './chromium.mjs';

const [adminUrl, token, screenshot] = process.argv.slice(2);
if (!/^http:\/\//.test(adminUrl ?? '') || !token || !screenshot) {
  console.error('FAIL: usage: node chromium_dashboard.mjs http://HOST:PORT/ TOKEN SCREENSHOT.png');
  process.exit(2);
}

// Bound for each thing awaited in the page: frames come every second.
const STEP_TIMEOUT = 15_000;

let context = null;
const userDataDir = mkdtempSync(join(tmpdir(), 'wsedge-dashboard-chromium-'));

async function cleanUp() {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}

async function fail(message) {
  console.log(`FAIL: ${message}`);
  await cleanUp();
  process.exit(1);
}

setTimeout(() => fail('no result within 150 s'), 150_000).unref();

const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();

let page = null;

async function waitFor(what, fn, arg) {
  await page.waitForFunction(fn, arg, { timeout: STEP_TIMEOUT }).catch(async (error) => {
    const shown = await page.evaluate(() => document.body.innerText).catch(() => '?');
    await fail(`${what}: ${error.message.split('\n')[0]}; the page shows:\n${shown}`);
  });
}

// What the page shows that came from the server: the table rows, the tiles,
// the token in sessionStorage.
const shownData = () => ({
  rows: document.querySelectorAll('#dashboard tbody tr').length,
  tiles: [...document.querySelectorAll('#dashboard dd')].filter((dd) => dd.textContent !== '–').length,
  history: document.querySelectorAll('#reload-history li').length,
  options: document.querySelectorAll('#publish-channel option').length,
  dashboardVisible: !document.getElementById('dashboard').hidden,
  loginVisible: !document.getElementById('login').hidden,
  stored: sessionStorage.getItem('wsedge.admin.token'),
});

async function expectLoggedOut(what) {
  const shown = await page.evaluate(shownData);
  const clean = shown.rows === 0 && shown.tiles === 0 && shown.history === 0 && shown.options === 0;
  if (!shown.loginVisible || shown.dashboardVisible || !clean || shown.stored !== null) {
    await fail(`${what}: expected the login form and no data, got ${JSON.stringify(shown)}`);
  }
}

const live = () =>
  document.getElementById('feed-status').dataset.state === 'live' &&
  document.querySelectorAll('#channels tr[data-channel]').length > 0;

async function logIn(value) {
  await page.fill('#token', value);
  await page.click('#login-form button');
}

async function publish(channel, room, text) {
  await page.selectOption('#publish-channel', channel);
  if (room !== '-') await page.fill('#publish-room', room);
  await page.fill('#publish-text', text);
  await page.click('#publish-form button');
  const target = room === '-' ? channel : `${channel}/${room}`;
  const expected = `Delivered to 1 connection on ${target}.`;
  await waitFor(`publish to ${target}`, (want) => document.getElementById('publish-result').textContent === want, expected);
}

try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: EXECUTABLE,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 900 },
    timeout: 60_000,
  });
  console.log(`browser: Chromium ${context.browser()?.version() ?? '(version unknown)'}`);
  for (const old of context.pages()) await old.close();
  page = await context.newPage();
  page.on('console', (message) => console.log(`page console: ${message.text()}`));
  page.on('pageerror', (error) => console.log(`page error: ${error.message}`));
  // Every request the page makes, so that a token in a URL would show.
  page.on('request', (request) => {
    if (request.url().includes(token)) fail(`the token is in a URL: ${request.url()}`);
  });

  await page.goto(adminUrl);
  await waitFor('the login form', () => document.getElementById('feed-status').dataset.state === 'logged-out');
  await expectLoggedOut('without a token');
  console.log('login: no token, the login form and no data');

  await logIn(`${token}-wrong`);
  await waitFor('the refusal', () => document.getElementById('login-error').textContent.includes('refused'));
  await expectLoggedOut('with a wrong token');
  const refusal = await page.textContent('#login-error');
  console.log(`login: a wrong token is refused (${JSON.stringify(refusal)}) and shows no data`);

  await logIn(token);
  await waitFor('the live feed', live);
  const stored = await page.evaluate(() => sessionStorage.getItem('wsedge.admin.token'));
  if (stored !== token) await fail(`sessionStorage holds ${JSON.stringify(stored)}, not the token`);
  console.log('login: the token opened the live feed and is kept in sessionStorage');
  console.log('READY');

  for (;;) {
    const { value, done } = await lines.next();
    if (done) await fail('stdin closed before LOGOUT');
    const [command, ...args] = value.split(' ');
    if (command === 'CONNECTIONS') {
      const [channel, n] = args;
      await waitFor(`${n} connections on ${channel}`, ([channel, n]) => {
        const tr = document.querySelector(`#channels tr[data-channel="${channel}"]`);
        return tr?.dataset.connections === n && document.getElementById('connections').textContent === n;
      }, [channel, n]);
    } else if (command === 'PUBLISH') {
      const [channel, room, ...text] = args;
      await publish(channel, room, text.join(' '));
    } else if (command === 'TILE') {
      const [id, text] = args;
      await waitFor(`#${id} showing ${text}`, ([id, text]) => document.getElementById(id).textContent === text, [id, text]);
    } else if (command === 'DISCONNECT') {
      const [user, n] = args;
      await page.fill('#disconnect-user', user);
      await page.click('#disconnect-form button');
      const expected = `Closed ${n} connection${n === '1' ? '' : 's'} of ${user}.`;
      await waitFor(`disconnect ${user}`, (want) => document.getElementById('disconnect-result').textContent === want, expected);
    } else if (command === 'RELOADED') {
      const [generation] = args;
      await waitFor(`generation ${generation}`, (generation) =>
        document.getElementById('generation').textContent === generation &&
        [...document.querySelectorAll('#reload-history li')].some((li) => li.textContent.endsWith(`reload applied, generation ${generation}`)),
      generation);
    } else if (command === 'REFUSED') {
      const [reason] = args;
      await waitFor(`a ${reason} rejection`, (reason) => document.querySelector(`#rejections tr[data-reason="${reason}"]`) !== null, reason);
    } else if (command === 'SCREENSHOT') {
      await page.reload();
      await waitFor('the live feed after a page reload (token from sessionStorage)', live);
      // Two frames, so that the rates are filled in.
      await waitFor('rates', () => document.getElementById('messages-in').textContent !== '–');
      await page.screenshot({ path: screenshot, fullPage: true });
      console.log(`screenshot: ${screenshot}`);
    } else if (command === 'LOGOUT') {
      await page.click('#logout');
      await expectLoggedOut('after logging out');
      console.log('logout: the login form is back and no data is left');
      break;
    } else {
      await fail(`unknown command ${JSON.stringify(value)}`);
    }
    console.log('DONE');
  }
  await cleanUp();
  console.log('OK');
  process.exit(0);
} catch (error) {
  await fail(`${error.name}: ${error.message}`);
}
