#!/usr/bin/env node
// The demo app (examples/demo) in headless Chromium against a real wsedge
// server, driven step by step by tests/demo.rs over stdin/stdout:
//
//   node chromium_demo.mjs DEMO_DIR WS_BASE SCREENSHOT.png
//
// It serves DEMO_DIR over HTTP on 127.0.0.1 (port 0), opens two pages,
// alice and bob, in room "lobby" with ?server=WS_BASE, and then:
//   prints READY            once both pages have their chat and ticker open
//   reads  TICKER <text>    the test published ticker lines to /news, the
//                           last being <text>: both pages must show it
//   chats: alice -> bob, bob -> alice
//   prints CHATTED
//   reads  TICKER <text>    the test closed /news (a reload removed the
//                           channel) and restored it: both pages must have
//                           seen close code 1001 on the ticker, reconnected
//                           and show <text>; the chat connection must never
//                           have closed; screenshots alice's page
//   checks the reconnect policy of wsedge-client.js in the page
//   prints OK and exits 0; on any failure a FAIL: line and exit 1.
//
// Chromium's flags are chromium.mjs's.

import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { EXECUTABLE, FLAGS } from './chromium.mjs';

const [demoDir, wsBase, screenshot] = process.argv.slice(2);
if (!demoDir || !/^wss?:\/\//.test(wsBase ?? '') || !screenshot) {
  console.error('FAIL: usage: node chromium_demo.mjs DEMO_DIR ws://HOST:PORT SCREENSHOT.png');
  process.exit(2);
}

// Bound for each thing awaited in a page; a reconnection after 1001 waits up
// to the client's goingAwayWindow (5 s) plus backoff.
const STEP_TIMEOUT = 30_000;
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

let context = null;
let http = null;
const userDataDir = mkdtempSync(join(tmpdir(), 'wsedge-demo-chromium-'));

async function cleanUp() {
  if (context) await context.close().catch(() => {});
  if (http) http.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

async function fail(message) {
  console.log(`FAIL: ${message}`);
  await cleanUp();
  process.exit(1);
}

setTimeout(() => fail('no result within 150 s'), 150_000).unref();

// The demo directory over HTTP, as `python3 -m http.server` serves it in run.sh.
function serve(root) {
  const server = createServer((request, response) => {
    const path = new URL(request.url, 'http://demo').pathname;
    const file = normalize(join(root, path === '/' ? 'index.html' : path));
    if (!file.startsWith(normalize(root) + sep) || !statSync(file, { throwIfNoEntry: false })?.isFile()) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
    response.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// Lines from the test, one at a time.
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
async function command(expected) {
  const { value, done } = await lines.next();
  if (done) await fail(`stdin closed while waiting for ${expected}`);
  const [word, ...rest] = value.split(' ');
  if (word !== expected) await fail(`expected ${expected} from the test, got ${JSON.stringify(value)}`);
  return rest.join(' ');
}

const waitFor = (page, what, fn, arg) =>
  page.waitForFunction(fn, arg, { timeout: STEP_TIMEOUT }).catch(async (error) => {
    const events = await page.evaluate(() => JSON.stringify(window.demoEvents)).catch(() => '?');
    await fail(`${what}: ${error.message.split('\n')[0]}; events: ${events}`);
  });

const bothOpen = () =>
  document.getElementById('chat-status').dataset.state === 'open' &&
  document.getElementById('ticker-status').dataset.state === 'open';
const tickerShows = (text) => [...document.querySelectorAll('#news li')].some((li) => li.textContent === text);
const chatShows = ([from, text]) =>
  [...document.querySelectorAll('#messages li')].some(
    (li) => li.dataset.from === from && li.textContent === `${from}: ${text}`,
  );

async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#say button');
}

try {
  http = await serve(demoDir);
  const origin = `http://127.0.0.1:${http.address().port}`;
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: EXECUTABLE,
    headless: true,
    args: FLAGS,
    viewport: { width: 1100, height: 600 },
    timeout: 60_000,
  });
  console.log(`browser: Chromium ${context.browser()?.version() ?? '(version unknown)'}`);
  const open = async (name) => {
    const page = await context.newPage();
    page.on('console', (message) => console.log(`${name} console: ${message.text()}`));
    page.on('pageerror', (error) => console.log(`${name} page error: ${error.message}`));
    const query = new URLSearchParams({ server: wsBase, name, room: 'lobby' });
    await page.goto(`${origin}/?${query}`);
    return page;
  };
  for (const page of context.pages()) await page.close();
  const alice = await open('alice');
  const bob = await open('bob');
  await waitFor(alice, 'alice connects', bothOpen);
  await waitFor(bob, 'bob connects', bothOpen);
  console.log('READY');

  const first = await command('TICKER');
  await waitFor(alice, 'alice sees the ticker', tickerShows, first);
  await waitFor(bob, 'bob sees the ticker', tickerShows, first);
  console.log(`ticker: both pages show ${JSON.stringify(first)}`);

  // Each sees the other join (bob joined after alice was there).
  await waitFor(alice, 'alice sees bob join', () =>
    [...document.querySelectorAll('#messages li.join')].some((li) => li.dataset.from === 'bob'),
  );
  await say(alice, 'hello from alice');
  await waitFor(bob, "bob gets alice's message", chatShows, ['alice', 'hello from alice']);
  await say(bob, 'hi alice, bob here');
  await waitFor(alice, "alice gets bob's reply", chatShows, ['bob', 'hi alice, bob here']);
  const mine = await alice.$$eval('#messages li.mine', (items) => items.length);
  if (mine !== 1) await fail(`alice's page shows ${mine} messages of her own, expected 1`);
  console.log('chat: alice and bob exchanged messages');
  console.log('CHATTED');

  const second = await command('TICKER');
  for (const [name, page] of [['alice', alice], ['bob', bob]]) {
    await waitFor(page, `${name} sees the ticker after the reconnection`, tickerShows, second);
    const events = await page.evaluate(() => window.demoEvents);
    const news = events.filter((event) => event.socket === 'news');
    const goingAway = news.find((event) => event.state === 'waiting' && event.code === 1001);
    if (!goingAway) await fail(`${name}: no 1001 on the ticker: ${JSON.stringify(news)}`);
    if (goingAway.delay > 5_000) await fail(`${name}: reconnect after 1001 waited ${goingAway.delay} ms, over its 5 s window`);
    const opens = news.filter((event) => event.state === 'open').length;
    if (opens < 2) await fail(`${name}: the ticker opened ${opens} times: ${JSON.stringify(news)}`);
    const chatCloses = events.filter((event) => event.socket === 'chat' && event.state === 'waiting');
    if (chatCloses.length) await fail(`${name}: the chat closed: ${JSON.stringify(chatCloses)}`);
    console.log(`reconnect: ${name}'s ticker got 1001, retried in ${goingAway.delay} ms, opened ${opens} times in all`);
  }
  // Chat, ticker and the connection log with the 1001 and the reconnection.
  await alice.screenshot({ path: screenshot });
  console.log(`screenshot: ${screenshot}`);

  // The delay policy, with a fixed random(): 1013 waits at least
  // tryAgainLater, 1001 spreads over its window on the first attempt, and
  // the backoff doubles up to maxDelay.
  const policy = await alice.evaluate(async () => {
    const { reconnectDelay, DEFAULTS } = await import('./wsedge-client.js');
    const half = () => 0.5;
    return {
      defaults: DEFAULTS,
      tryAgainLater: reconnectDelay(1013, 0, DEFAULTS, half),
      goingAway: reconnectDelay(1001, 0, DEFAULTS, half),
      goingAwayAgain: reconnectDelay(1001, 1, DEFAULTS, half),
      backoff: [0, 1, 2, 3, 10].map((attempt) => reconnectDelay(1006, attempt, DEFAULTS, half)),
      noJitter: reconnectDelay(1006, 3, DEFAULTS, () => 0),
    };
  });
  const d = policy.defaults;
  const expected = {
    tryAgainLater: d.tryAgainLater + 0.5 * d.minDelay,
    goingAway: 0.5 * d.goingAwayWindow,
    goingAwayAgain: 0.5 * 2 * d.minDelay,
    backoff: [1, 2, 4, 8].map((f) => 0.5 * f * d.minDelay).concat([0.5 * d.maxDelay]),
    noJitter: 0,
  };
  for (const [key, value] of Object.entries(expected)) {
    if (JSON.stringify(policy[key]) !== JSON.stringify(value)) {
      await fail(`reconnectDelay ${key}: ${JSON.stringify(policy[key])}, expected ${JSON.stringify(value)}`);
    }
  }
  console.log(`policy: ${JSON.stringify(policy)}`);
  await cleanUp();
  console.log('OK');
  process.exit(0);
} catch (error) {
  await fail(`${error.name}: ${error.message}`);
}
