#!/usr/bin/env node
// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// against a wsedge echo channel. On about:blank (nothing is served) the page
// opens a WebSocket to URL, checks that `ws.extensions` names
// permessage-deflate, sends a compressible 100 KiB text and a 64 KiB binary
// message, checks both come back intact, and closes with 1000. The handshake
// headers are read over the DevTools protocol and printed.
//
//   node chromium_echo.mjs wss://127.0.0.1:PORT/echo
//
// Certificate errors are ignored (--ignore-certificate-errors): the test
// server's certificate is self-signed. Exits 0 when everything matched, 1
// with a FAIL: line otherwise.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { EXECUTABLE, FLAGS } from './chromium.mjs';

const url = process.argv[2];
if (!url || !/^wss?:\/\//.test(url)) {
  console.error('FAIL: usage: node chromium_echo.mjs ws[s]://HOST:PORT/PATH');
  process.exit(2);
}


let context = null;
// The handshake as the browser saw it (over the DevTools protocol).
const handshake = { offer: null, response: null, status: null, error: null };
const userDataDir = mkdtempSync(join(tmpdir(), 'wsedge-chromium-'));

async function cleanUp() {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}

async function fail(message) {
  console.error(`FAIL: ${message}`);
  console.error(`handshake: ${JSON.stringify(handshake)}`);
  await cleanUp();
  process.exit(1);
}

// A hung browser must not hang the test.
setTimeout(() => fail('no result within 90 s'), 90_000).unref();

try {
  // A persistent context is the way to hand Chromium a fresh --user-data-dir.
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: EXECUTABLE,
    headless: true,
    args: [...FLAGS, '--ignore-certificate-errors'],
    ignoreHTTPSErrors: true,
    timeout: 60_000,
  });
  console.log(`browser: Chromium ${context.browser()?.version() ?? '(version unknown)'}`);
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto('about:blank');

  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const header = (headers, name) =>
    Object.entries(headers ?? {}).find(([key]) => key.toLowerCase() === name)?.[1] ?? null;
  cdp.on('Network.webSocketWillSendHandshakeRequest', (event) => {
    handshake.offer = header(event.request.headers, 'sec-websocket-extensions');
  });
  cdp.on('Network.webSocketHandshakeResponseReceived', (event) => {
    handshake.status = event.response.status;
    handshake.response = header(event.response.headers, 'sec-websocket-extensions');
  });
  cdp.on('Network.webSocketFrameError', (event) => {
    handshake.error = event.errorMessage;
  });
  page.on('console', (message) => console.log(`page console: ${message.text()}`));

  const result = await page.evaluate(async (target) => {
    const ws = new WebSocket(target);
    ws.binaryType = 'arraybuffer';
    const inbox = [];
    let wake = null;
    ws.onmessage = (event) => {
      inbox.push(event.data);
      if (wake) wake();
    };
    let closed = null;
    const closing = new Promise((resolve) => {
      ws.onclose = (event) => {
        closed = { code: event.code, reason: event.reason, wasClean: event.wasClean };
        resolve();
        if (wake) wake();
      };
    });
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error('WebSocket error before open'));
    });
    const next = (label) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no echo of ${label} within 30 s`)), 30_000);
        const take = () => {
          if (inbox.length) {
            clearTimeout(timer);
            wake = null;
            resolve(inbox.shift());
          } else if (closed) {
            clearTimeout(timer);
            reject(new Error(`closed (${closed.code} ${closed.reason}) while waiting for ${label}`));
          }
        };
        wake = take;
        take();
      });

    let text = '';
    for (let seq = 0; text.length < 100 * 1024; seq++) {
      text += `{"seq":${seq},"user":"carol","text":"hello from chromium, compressible"}\n`;
    }
    text = text.slice(0, 100 * 1024);
    const binary = new Uint8Array(64 * 1024);
    for (let i = 0; i < binary.length; i++) binary[i] = i < 32 * 1024 ? i % 251 : (i * 2654435761) >>> 24;

    const extensions = ws.extensions;
    ws.send(text);
    const textBack = await next('the text');
    ws.send(binary);
    const binaryBack = await next('the binary message');
    const sameBytes = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
    ws.close(1000, 'done');
    await closing;
    return {
      extensions,
      textSent: text.length,
      textType: typeof textBack,
      textBack: typeof textBack === 'string' ? textBack.length : -1,
      textIntact: textBack === text,
      binarySent: binary.length,
      binaryType: Object.prototype.toString.call(binaryBack),
      binaryBack: binaryBack instanceof ArrayBuffer ? binaryBack.byteLength : -1,
      binaryIntact: binaryBack instanceof ArrayBuffer && sameBytes(new Uint8Array(binaryBack), binary),
      closed,
    };
  }, url);

  console.log(`handshake: HTTP ${handshake.status}`);
  console.log(`client offer: ${handshake.offer ?? '(none)'}`);
  console.log(`client extensions: ${handshake.response ?? '(none)'}`);
  console.log(`ws.extensions: ${result.extensions || '(none)'}`);
  console.log(`text: sent ${result.textSent} chars, got ${result.textType} of ${result.textBack}, intact: ${result.textIntact}`);
  console.log(
    `binary: sent ${result.binarySent} bytes, got ${result.binaryType} of ${result.binaryBack}, intact: ${result.binaryIntact}`,
  );
  console.log(`close: ${result.closed.code} clean: ${result.closed.wasClean}`);
  if (!/^permessage-deflate\b/.test(result.extensions)) await fail(`ws.extensions is ${JSON.stringify(result.extensions)}`);
  if (!result.textIntact) await fail('the text did not come back intact');
  if (!result.binaryIntact) await fail('the binary message did not come back intact');
  if (result.closed.code !== 1000 || !result.closed.wasClean) await fail(`close was ${JSON.stringify(result.closed)}`);
  await cleanUp();
  console.log('OK');
  process.exit(0);
} catch (error) {
  await fail(`${error.name}: ${error.message}`);
}
