#!/usr/bin/env node
// A permessage-deflate peer for wsedge built on Node's `ws`, with
// perMessageDeflate on and a threshold of 0 (every message it sends is
// compressed). Against an echo channel it sends text and binary messages
// (compressible, random, non-ASCII, small, the same text three times,
// fragmented sends with `fin: false`) and checks that each comes back intact,
// of the same type and in order. With --threshold it also checks which echoes
// the server compressed: those of at least that many bytes.
//
//   node node_client.mjs URL [--ca PEM | --insecure] [--threshold N] [--with-empty]
//
// Prints the negotiated Sec-WebSocket-Extensions and one line per message;
// exits 0 when everything matched, 1 with a FAIL: line otherwise.

import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

function usage(message) {
  console.error(`FAIL: ${message}`);
  console.error('usage: node node_client.mjs URL [--ca PEM | --insecure] [--threshold N] [--with-empty]');
  process.exit(2);
}

const args = process.argv.slice(2);
const url = args.shift();
if (!url) usage('no URL');
let ca = null;
let insecure = false;
let threshold = null;
let withEmpty = false;
while (args.length) {
  const flag = args.shift();
  if (flag === '--ca') ca = readFileSync(args.shift());
  else if (flag === '--insecure') insecure = true;
  else if (flag === '--threshold') threshold = Number(args.shift());
  else if (flag === '--with-empty') withEmpty = true;
  else usage(`unknown argument ${flag}`);
}
if (url.startsWith('wss:') && !ca && !insecure) usage('wss:// needs --ca or --insecure');

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

// A deterministic suite; an array is sent as fragments.
function suite() {
  let json = '';
  for (let seq = 0; json.length < 100 * 1024; seq++) {
    json += `{"seq":${seq},"user":"bob","text":"hello, compressible world"}\n`;
  }
  json = json.slice(0, 100 * 1024);
  const pattern = Buffer.alloc(100 * 1024);
  for (let i = 0; i < pattern.length; i++) pattern[i] = i % 251;
  const unicode = 'héllo wörld ✓ 𝄞 日本語 '.repeat(60);
  const words = 'alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima'.split(' ');
  let repeated = '';
  let state = 12345;
  while (repeated.length < 2048) {
    state = (state * 1103515245 + 12345) % 2147483648;
    repeated += `${words[state % words.length]}${state % 100} `;
  }
  repeated = repeated.slice(0, 2048);
  const messages = [
    ['compressible text 100 KiB', json],
    ['compressible binary 100 KiB', pattern],
    ['random binary 64 KiB', randomBytes(64 * 1024)],
    ['non-ASCII text', unicode],
    ['small text', 'hi'],
    ['small binary', Buffer.from([0, 1, 2])],
    ['2 KiB text, 1st time', repeated],
    ['2 KiB text, 2nd time', repeated],
    ['2 KiB text, 3rd time', repeated],
    ['fragmented text', [json.slice(0, 10_000), unicode, 'ü'.repeat(3000), json.slice(0, 5000)]],
    ['fragmented binary', [pattern.subarray(0, 40_000), randomBytes(5000), Buffer.alloc(10_000, 0xff)]],
    ['text after fragments', json.slice(0, 3000)],
  ];
  if (withEmpty) {
    messages.push(
      ['empty text', ''],
      ['small text after an empty one', 'after'],
      ['empty binary', Buffer.alloc(0)],
      ['last message', json.slice(0, 1000)],
    );
  }
  return messages;
}

const isText = (message) => typeof (Array.isArray(message) ? message[0] : message) === 'string';
const whole = (message) => {
  if (!Array.isArray(message)) return isText(message) ? Buffer.from(message) : message;
  return Buffer.concat(message.map((part) => (typeof part === 'string' ? Buffer.from(part) : part)));
};

const options = { perMessageDeflate: { threshold: 0 }, maxPayload: 16 << 20 };
if (ca) options.ca = ca;
if (insecure) options.rejectUnauthorized = false;
const ws = new WebSocket(url, options);

// The request is still at hand right after construction.
const offered = ws._req?.getHeader?.('sec-websocket-extensions') ?? '(unknown)';
let answered = '(none)';
ws.on('upgrade', (response) => {
  answered = response.headers['sec-websocket-extensions'] ?? '(none)';
});
ws.on('unexpected-response', (_request, response) => fail(`handshake refused: HTTP ${response.statusCode}`));
ws.on('error', (error) => fail(`${error.name}: ${error.message}`));
ws.on('close', (code, reason) => {
  if (!done) fail(`connection closed early: ${code} ${reason}`);
});

// Messages received, and RSV1 of each (counted where ws inflates).
const inbox = [];
let waiting = null;
let inflations = 0;
ws.on('message', (data, isBinary) => {
  inbox.push({ data, isBinary });
  if (waiting) waiting();
});

function next(label) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(`no answer to ${label} within 30 s`), 30_000);
    const take = () => {
      if (!inbox.length) return;
      clearTimeout(timer);
      waiting = null;
      resolve(inbox.shift());
    };
    waiting = take;
    take();
  });
}

function send(message) {
  return new Promise((resolve, reject) => {
    const binary = !isText(message);
    const parts = Array.isArray(message) ? message : [message];
    parts.forEach((part, index) => {
      const fin = index === parts.length - 1;
      ws.send(part, { binary, fin, compress: true }, (error) => {
        if (error) reject(error);
        else if (fin) resolve();
      });
    });
  });
}

let done = false;
ws.on('open', async () => {
  console.log(`client offer: ${offered}`);
  console.log(`client extensions: ${answered}`);
  console.log(`ws.extensions: ${ws.extensions || '(none)'}`);
  const deflate = ws._extensions?.['permessage-deflate'];
  if (deflate) {
    const decompress = deflate.decompress.bind(deflate);
    deflate.decompress = (data, fin, callback) => {
      if (fin) inflations++;
      decompress(data, fin, callback);
    };
  }
  try {
    for (const [label, message] of suite()) {
      const before = inflations;
      await send(message);
      const { data, isBinary } = await next(label);
      const expected = whole(message);
      const kind = isText(message) ? 'text' : 'binary';
      if (isBinary === isText(message)) fail(`${label}: sent ${kind}, got ${isBinary ? 'binary' : 'text'}`);
      if (!Buffer.isBuffer(data) || !data.equals(expected)) {
        fail(`${label}: payload differs (sent ${expected.length} bytes, got ${data.length})`);
      }
      const compressed = inflations > before;
      if (threshold !== null && deflate && compressed !== expected.length >= threshold) {
        fail(`${label}: ${expected.length} bytes came back ${compressed ? 'compressed' : 'uncompressed'} (threshold ${threshold})`);
      }
      const fragments = Array.isArray(message) ? `, ${message.length} fragments` : '';
      console.log(`echo: ${kind} ${expected.length} bytes${fragments} [${label}] intact, compressed by server: ${compressed ? 'yes' : 'no'}`);
    }
  } catch (error) {
    fail(`${error.name}: ${error.message}`);
  }
  done = true;
  ws.close(1000, 'done');
});
ws.on('close', (code) => {
  if (done) {
    console.log(`closed: ${code}`);
    if (code !== 1000) fail(`server answered close with ${code}`);
    console.log('OK');
    process.exit(0);
  }
});
setTimeout(() => fail('no result within 60 s'), 60_000).unref();
