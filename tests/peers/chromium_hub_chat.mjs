#!/usr/bin/env node
// Three users chat over wsedge's hub protocol in headless Chromium: the
// scenario of hub_chat.py, each user a page of hub_chat.html (plain
// WebSocket) in a browser context of its own, served from a loopback HTTP
// server this script runs (wsedge serves no pages). Alice authenticates
// with her cookie, bob and carol with a subprotocol entry.
//
//   node chromium_hub_chat.mjs ws://HOST:PORT/hub TOKEN_ALICE TOKEN_BOB TOKEN_CAROL
//
// alice and bob join "lobby"; carol joins and the others are told; alice
// says hello to the room; bob sends carol a dm; carol leaves and the
// others are told; alice writes to a room she is not in (an error); alice
// leaves, and bob is told. Each step waits for what its users must see
// before the next starts, and prints `ok: <step>`. Then, for each user,
// `observed <user> <JSON>`: every message its page received, in order,
// for the test to assert on; then OK. On any failure a FAIL: line, exit 1.

import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { run, serveFiles } from './chromium.mjs';

const [url, ...tokens] = process.argv.slice(2);
if (!/^wss?:\/\//.test(url ?? '') || tokens.length !== 3) {
  console.log('FAIL: usage: node chromium_hub_chat.mjs ws://HOST:PORT/hub TOKEN_ALICE TOKEN_BOB TOKEN_CAROL');
  process.exit(2);
}
const [aliceToken, bobToken, carolToken] = tokens;
const USERS = ['alice', 'bob', 'carol'];

// A presence notice, as the server sends it.
const notice = (event, user) => ({ type: 'presence', event, room: 'lobby', user });

await run(90, async (browser, cleanUps) => {
  const files = await serveFiles(dirname(fileURLToPath(import.meta.url)), ['hub_chat.html', 'socket_inbox.js']);
  cleanUps.push(() => files.close());
  const wsHost = new URL(url.replace(/^ws/, 'http')).hostname;

  // One context per user: cookies of its own.
  const open = async (name, token, cookie) => {
    const context = await browser.newContext();
    if (cookie) {
      await context.addCookies([{ name: 'access_token', value: cookie, domain: wsHost, path: '/' }]);
    }
    const page = await context.newPage();
    page.on('console', (message) => console.log(`${name} console: ${message.text()}`));
    page.on('pageerror', (error) => console.log(`${name} page error: ${error.message}`));
    const fragment = new URLSearchParams(token ? { ws: url, token } : { ws: url });
    await page.goto(`${files.origin}/hub_chat.html#${fragment}`);
    await page.evaluate(() => window.chat);
    return page;
  };
  const alice = await open('alice', null, aliceToken);
  const bob = await open('bob', bobToken);
  const carol = await open('carol', carolToken);
  const pages = { alice, bob, carol };

  // Calls chat[method](...args) in the page: the server's answer.
  const ask = (page, method, ...args) =>
    page.evaluate(async ([method, args]) => (await window.chat)[method](...args), [method, args]);
  // Waits until the page has received a message equal to `expected`.
  const sees = (page, expected) => ask(page, 'sees', expected);
  const expectAnswer = (what, answer, expected) => {
    if (!isDeepStrictEqual(answer, expected)) {
      throw new Error(`${what}: got ${JSON.stringify(answer)}, wanted ${JSON.stringify(expected)}`);
    }
    console.log(`ok: ${what}`);
  };

  expectAnswer('alice joined', await ask(alice, 'join', 'lobby'), { type: 'joined', room: 'lobby', replyTo: 1 });
  expectAnswer('bob joined', await ask(bob, 'join', 'lobby'), { type: 'joined', room: 'lobby', replyTo: 1 });
  await sees(alice, notice('join', 'bob'));
  console.log('ok: alice sees bob join');

  expectAnswer('carol joined', await ask(carol, 'join', 'lobby'), { type: 'joined', room: 'lobby', replyTo: 1 });
  await sees(alice, notice('join', 'carol'));
  await sees(bob, notice('join', 'carol'));
  console.log('ok: alice and bob see carol join');

  const hello = { type: 'message', room: 'lobby', from: 'alice', payload: { text: 'hello' } };
  expectAnswer('alice said hello', await ask(alice, 'say', 'lobby', { text: 'hello' }), { type: 'ack', delivered: 2, replyTo: 2 });
  await sees(bob, hello);
  await sees(carol, hello);
  console.log('ok: bob and carol got the hello');

  expectAnswer('bob sent carol a dm', await ask(bob, 'dm', 'carol', 'psst'), { type: 'ack', delivered: 1, replyTo: 2 });
  await sees(carol, { type: 'dm', from: 'bob', payload: 'psst' });
  console.log('ok: carol got the dm');

  expectAnswer('carol left', await ask(carol, 'leave', 'lobby'), { type: 'left', room: 'lobby', replyTo: 2 });
  await sees(alice, notice('leave', 'carol'));
  await sees(bob, notice('leave', 'carol'));
  console.log('ok: alice and bob see carol leave');

  const refused = await ask(alice, 'say', 'elsewhere', 1);
  expectAnswer('a message to a room not joined is refused', [refused.type, refused.code, refused.replyTo], ['error', 'not_joined', 3]);

  expectAnswer('alice left', await ask(alice, 'leave', 'lobby'), { type: 'left', room: 'lobby', replyTo: 4 });
  await sees(bob, notice('leave', 'alice'));
  console.log('ok: bob sees alice leave');

  for (const name of USERS) {
    const observed = await pages[name].evaluate(async () => (await window.chat).observed);
    console.log(`observed ${name} ${JSON.stringify(observed)}`);
  }
  for (const name of USERS) await pages[name].evaluate(async () => (await window.chat).close());
  console.log('OK');
});
