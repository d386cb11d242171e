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

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, alice, bob] = process.argv.slice(2);
if (!base || !alice || !bob) {
  console.error('FAIL: usage: node chromium_auth.mjs ws://HOST:PORT TOKEN_ALICE TOKEN_BOB');
  process.exit(2);
}

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-quic',
  '--disable-component-update',
  '--disable-sync',
  '--disable-features=LocalNetworkAccessChecks',
];

let context = null;
const userDataDir = mkdtempSync(join(tmpdir(), 'wsedge-chromium-auth-'));

async function finish(code, message) {
  if (message) console.error(`FAIL: ${message}`);
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(code);
}

setTimeout(() => finish(1, 'no result within 90 s'), 90_000).unref();

try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: FLAGS,
    timeout: 60_000,
  });
  const host = new URL(base.replace(/^ws/, 'http')).hostname;
  // Only for /echo: the other sockets authenticate in other ways.
  await context.addCookies([{ name: 'access_token', value: alice, domain: host, path: '/echo' }]);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (message) => console.log(`page console: ${message.text()}`));
  // A page of the server's own origin (its 404): the cookie is then
  // same-site, as for an application served beside its WebSocket.
  await page.goto(`${base.replace(/^ws/, 'http')}/nowhere`);

  const results = await page.evaluate(async ({ base, alice, bob }) => {
    const out = [];
    // A socket with an inbox: `next()` is the next message as JSON or text.
    const open = (url, protocols) =>
      new Promise((resolve, reject) => {
        const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
        const inbox = [];
        let wake = null;
        let closed = null;
        ws.addEventListener('close', (event) => {
          closed = `${event.code} ${event.reason}`;
          if (wake) wake();
        });
        ws.onmessage = (event) => {
          inbox.push(event.data);
          if (wake) wake();
        };
        ws.next = () =>
          new Promise((done, fail) => {
            const timer = setTimeout(() => fail(new Error(`nothing on ${url} within 10 s`)), 10_000);
            const take = () => {
              if (inbox.length) {
                clearTimeout(timer);
                wake = null;
                const data = inbox.shift();
                try { done(JSON.parse(data)); } catch { done(data); }
              } else if (closed) {
                clearTimeout(timer);
                fail(new Error(`${url} closed (${closed}) while waiting`));
              }
            };
            wake = take;
            take();
          });
        ws.onopen = () => resolve(ws);
        ws.onerror = () => reject(new Error(`${url}: the handshake failed`));
      });

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
    if (expected[what] !== value) await finish(1, `${what}: got ${JSON.stringify(value)}, wanted ${JSON.stringify(expected[what])}`);
    console.log(`ok: ${what}`);
  }
  await finish(0);
} catch (error) {
  await finish(1, String(error?.stack ?? error));
}
