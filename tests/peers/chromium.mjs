// What the browser tests share (tests/peers/chromium_*.mjs): Debian's
// headless Chromium started by playwright-core with the flags every test
// needs, a loopback HTTP server for the static files a page loads, and the
// run-and-report frame of a script (a bounded run, a FAIL: line and exit 1
// on any failure, the browser closed on every path).

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { chromium } from 'playwright-core';

// Debian's Chromium (tests/peers/install.sh installs it).
export const EXECUTABLE = '/usr/bin/chromium';

// --disable-features=LocalNetworkAccessChecks: a page on 127.0.0.1 opening
// WebSockets to 127.0.0.1 must not be prompted.
export const FLAGS = [
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

// Chromium's start on a loaded machine.
const LAUNCH_TIMEOUT_MS = 60_000;

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
};

// Serves `names` (files of `dir`) on 127.0.0.1, a free port; anything else
// is 404. Resolves with the server (`server.origin` is its http:// origin).
export function serveFiles(dir, names) {
  const files = new Map(names.map((name) => [`/${name}`, readFileSync(join(dir, name))]));
  const server = createServer((request, response) => {
    const path = new URL(request.url, 'http://files').pathname;
    const body = files.get(path);
    if (!body) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, { 'Content-Type': TYPES[extname(path)] ?? 'application/octet-stream' });
    response.end(body);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      server.origin = `http://127.0.0.1:${server.address().port}`;
      resolve(server);
    }),
  );
}

// Runs `main(browser, cleanUps)` against a fresh headless Chromium, for at
// most `seconds`: exits 0 when it returns, 1 after a `FAIL:` line when it
// throws or runs out of time. Functions pushed on `cleanUps` run first on
// every path (servers to close).
export async function run(seconds, main) {
  let browser = null;
  const cleanUps = [];
  const finish = async (code, message) => {
    if (message) console.log(`FAIL: ${message}`);
    for (const cleanUp of cleanUps) await Promise.resolve(cleanUp()).catch(() => {});
    if (browser) await browser.close().catch(() => {});
    process.exit(code);
  };
  // A hung browser must not hang the test.
  setTimeout(() => finish(1, `no result within ${seconds} s`), seconds * 1000).unref();
  try {
    browser = await chromium.launch({
      executablePath: EXECUTABLE,
      headless: true,
      args: FLAGS,
      timeout: LAUNCH_TIMEOUT_MS,
    });
    await main(browser, cleanUps);
  } catch (error) {
    await finish(1, String(error?.stack ?? error));
  }
  await finish(0);
}
