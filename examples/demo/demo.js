// The demo page: a chat on the room channel /chat/{room} and a ticker on
// the broadcast channel /news of config.example.toml, both through
// wsedge-client.js. Query parameters (all optional):
//   server  WebSocket base URL   (default ws://<this page's host>:8080)
//   name    chat name            (default guest-NNNN)
//   room    chat room            (default lobby)
//
// Chat messages are JSON, {"type": "chat" | "join", "name", "text"}; the
// server relays them verbatim to the other members of the room. Anything
// else that arrives (a plain-text line from wscat) is shown as it is.

import { ReconnectingSocket } from './wsedge-client.js';

const params = new URLSearchParams(location.search);
const server = params.get('server') ?? `ws://${location.hostname || '127.0.0.1'}:8080`;
const ROOM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
// The ticker of run.sh publishes every 2 s: 30 s of silence means the
// connection is dead (or nobody publishes; then it reconnects every 30 s).
const TICKER_IDLE = 30_000;
const TICKER_KEPT = 20;
const LOG_KEPT = 50;

const $ = (id) => document.getElementById(id);
$('server').textContent = server;
$('name').value = params.get('name') ?? `guest-${Math.floor(1000 + Math.random() * 9000)}`;
$('room').value = params.get('room') ?? 'lobby';

/// Every status event, for the connection log (and for tests: window.demoEvents).
const events = [];
window.demoEvents = events;

function logEvent(socket, detail) {
  events.push({ socket, ...detail, at: Date.now() });
  const parts = [socket, detail.state];
  if (detail.code !== undefined) parts.push(`code ${detail.code}${detail.reason ? ` "${detail.reason}"` : ''}`);
  if (detail.delay !== undefined) parts.push(`retry in ${(detail.delay / 1000).toFixed(1)} s`);
  if (detail.attempt) parts.push(`attempt ${detail.attempt + 1}`);
  const item = document.createElement('li');
  Object.assign(item.dataset, { socket, state: detail.state, code: detail.code ?? '' });
  item.textContent = `${new Date().toLocaleTimeString()} ${parts.join(' · ')}`;
  $('events').prepend(item);
  while ($('events').children.length > LOG_KEPT) $('events').lastChild.remove();
}

function showStatus(element, label, state) {
  element.dataset.state = state;
  element.textContent = `${label}: ${state}`;
}

// ---- ticker -------------------------------------------------------------

const ticker = new ReconnectingSocket(`${server}/news`, { idleTimeout: TICKER_IDLE });
ticker.addEventListener('status', ({ detail }) => {
  showStatus($('ticker-status'), 'ticker', detail.state);
  logEvent('news', detail);
});
ticker.addEventListener('message', ({ detail }) => {
  $('ticker-hint').hidden = true;
  const item = document.createElement('li');
  item.textContent = typeof detail.data === 'string' ? detail.data : `(${detail.data.size} binary bytes)`;
  $('news').prepend(item);
  while ($('news').children.length > TICKER_KEPT) $('news').lastChild.remove();
});
ticker.start();

// ---- chat ---------------------------------------------------------------

let chat = null;

function addMessage(kind, name, text) {
  const item = document.createElement('li');
  item.className = kind;
  item.dataset.from = name;
  const who = document.createElement('b');
  who.textContent = name;
  item.append(who, kind === 'join' ? ' joined' : `: ${text}`);
  $('messages').append(item);
  item.scrollIntoView({ block: 'nearest' });
}

function received(data) {
  if (typeof data !== 'string') return addMessage('raw', '?', `(${data.size} binary bytes)`);
  try {
    const message = JSON.parse(data);
    if (message.type === 'join' || message.type === 'chat') {
      return addMessage(message.type, String(message.name), String(message.text ?? ''));
    }
  } catch {
    // Not ours: show it as it came.
  }
  addMessage('raw', '?', data);
}

function join(name, room) {
  if (chat) chat.stop();
  $('messages').replaceChildren();
  $('room-title').textContent = `Room ${room}`;
  chat = new ReconnectingSocket(`${server}/chat/${room}`);
  chat.addEventListener('status', ({ detail }) => {
    showStatus($('chat-status'), 'chat', detail.state);
    if (detail.state !== 'stopped') logEvent('chat', detail);
    // Tell the room who is here, on every (re)connection.
    if (detail.state === 'open') chat.send(JSON.stringify({ type: 'join', name }));
  });
  chat.addEventListener('message', ({ detail }) => received(detail.data));
  chat.addEventListener('backlog', ({ detail }) => {
    $('backlog').textContent = `send buffer: ${detail.buffered} B, queued: ${detail.messages}`;
  });
  chat.start();
}

$('join').addEventListener('submit', (event) => {
  event.preventDefault();
  const room = $('room').value.trim();
  if (!ROOM_NAME.test(room)) return;
  join($('name').value.trim(), room);
});

$('say').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('text').value;
  const name = $('name').value.trim();
  const outcome = chat.send(JSON.stringify({ type: 'chat', name, text }));
  if (outcome === 'refused') {
    // The queue is full: keep the text and let the user try again.
    $('backlog').textContent = 'too many messages waiting: slow down';
    return;
  }
  addMessage('mine', name, text);
  $('text').value = '';
});

join($('name').value, ROOM_NAME.test($('room').value) ? $('room').value : 'lobby');
