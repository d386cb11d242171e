#!/usr/bin/env node
// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// authenticating to wsedge the three ways a browser can, then chatting over
// the hub protocol:
//   cookie:    a cookie named access_token for 127.0.0.1 goes with the handshake
//   protocol:  new WebSocket(url, ['bearer', token]): the server answers 'bearer'
//   message:   {"type":"auth","token":...} as the first message, answered auth_ok
//   hub:       two sockets on one hub (alice by subprotocol, bob by first
//              message) join "lobby"; alice's message reaches bob stamped
//              from alice.
//
//   node chromium_auth.mjs ws://127.0.0.1:PORT TOKEN_ALICE TOKEN_BOB
//
// Prints one `ok: ...` line per check; exits 0 when all held, 1 with a FAIL:
// line otherwise.

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './chromium.mjs';

const [base, alice, bob] = process.argv.slice(2);
if (!base || !alice || !bob) {
  console.log('FAIL: usage: node chromium_auth.mjs ws://HOST:PORT TOKEN_ALICE TOKEN_BOB');
  process.exit(2);
}

await run(90, async (browser) => {
  const context = await browser.newContext();
  const host = new URL(base.replace(/^ws/, 'http')).hostname;
  // Only for /echo: the other sockets authenticate in other ways.
  await context.addCookies([{ name: 'access_token', value: alice, domain: host, path: '/echo' }]);
  const page = await context.newPage();
  page.on('console', (message) => console.log(`page console: ${message.text()}`));
  // A page of the server's own origin (its 404): the cookie is then
  // same-site, as for an application served beside its WebSocket.
  await page.goto(`${base.replace(/^ws/, 'http')}/nowhere`);
  await page.addScriptTag({ path: join(dirname(fileURLToPath(import.meta.url)), 'socket_inbox.js') });

  const results = await page.evaluate(async ({ base, alice, bob }) => {
    const out = [];
    const open = window.openSocket;

    const cookie = await open(`${base}/echo`);
    cookie.send('by cookie');
    out.push(['cookie echo', await cookie.next()]);

    const protocol = await open(`${base}/echo`, ['bearer', alice]);
    out.push(['protocol answered', protocol.protocol]);
    protocol.send('by subprotocol');
    out.push(['protocol echo', await protocol.next()]);

    const message = await open(`${base}/inband`);
    message.send(JSON.stringify({ type: 'auth', token: bob }));
    const ok = await message.next();
    out.push(['auth_ok', `${ok.type} ${ok.user}`]);
    message.send('after auth');
    out.push(['message echo', await message.next()]);

    const a = await open(`${base}/hubinband`, ['bearer', alice]);
    const b = await open(`${base}/hubinband`);
    b.send(JSON.stringify({ type: 'auth', token: bob }));
    await b.next();
    for (const [ws, id] of [[a, 1], [b, 2]]) {
      ws.send(JSON.stringify({ type: 'join', room: 'lobby', id }));
      const joined = await ws.next();
      out.push([`joined ${id}`, `${joined.type} ${joined.replyTo}`]);
    }
    a.send(JSON.stringify({ type: 'message', room: 'lobby', payload: { text: 'hi bob' } }));
    const got = await b.next();
    out.push(['hub message', `${got.type} ${got.room} ${got.from} ${got.payload.text}`]);
    for (const ws of [cookie, protocol, message, a, b]) ws.close(1000);
    return out;
  }, { base, alice, bob });

  const expected = {
    'cookie echo': 'by cookie',
    'protocol answered': 'bearer',
    'protocol echo': 'by subprotocol',
    auth_ok: 'auth_ok bob',
    'message echo': 'after auth',
    'joined 1': 'joined 1',
    'joined 2': 'joined 2',
    'hub message': 'message lobby alice hi bob',
  };
  for (const [what, value] of results) {
    if (expected[what] !== value) {
      throw new Error(`${what}: got ${JSON.stringify(value)}, wanted ${JSON.stringify(expected[what])}`);
    }
    console.log(`ok: ${what}`);
  }
});
