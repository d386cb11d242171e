// The wsedge admin dashboard: a login form, then the live feed (GET /events,
// Server-Sent Events read through a streaming fetch so that the token goes
// in the Authorization header, never in a URL), a publish form and a
// "disconnect user" form over the admin API. No dependencies, no build step:
// the server embeds this file as it is.

const TOKEN_KEY = 'wsedge.admin.token';
// No frame for this long (the server sends one a second): the feed is dead
// even if the connection has not said so; start another.
const SILENCE_MS = 5_000;
// Reconnection: full jitter over an exponential window, as the demo client.
const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;
const HISTORY_LENGTH = 20;

const $ = (id) => document.getElementById(id);
const count = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

// The logged-in session: the token, the feed being read, what it showed.
let session = null;

function setStatus(state, text) {
  const status = $('feed-status');
  status.dataset.state = state;
  status.textContent = text;
}

function bytes(value) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${decimal.format(value)} ${units[unit]}`;
}

const perSecond = (text) => `${text}/s`;

function time(unixSeconds) {
  return unixSeconds ? new Date(unixSeconds * 1000).toLocaleString() : '–';
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function row(cells, attributes = {}) {
  const tr = document.createElement('tr');
  tr.append(...cells);
  for (const [key, value] of Object.entries(attributes)) tr.dataset[key] = value;
  return tr;
}

function emptyRow(columns, text) {
  const td = cell(text, 'none');
  td.colSpan = columns;
  return row([td]);
}

// Everything the feed filled in goes back to its empty state: a logged-out
// page shows no data.
function clearData() {
  for (const dd of document.querySelectorAll('#dashboard dd')) dd.textContent = '–';
  for (const id of ['channels', 'rejections', 'disconnects', 'auth', 'totals', 'reload-history', 'publish-channel']) {
    $(id).replaceChildren();
  }
  for (const id of ['room-note', 'publish-result', 'disconnect-result']) $(id).textContent = '';
  for (const id of ['feeds', 'seq', 'updated']) $(id).textContent = '–';
  $('skipped').textContent = '0';
  $('draining').hidden = true;
}

function showLogin(message) {
  if (session) {
    session.stopped = true;
    session.attempt?.abort();
    clearTimeout(session.watchdog);
  }
  session = null;
  sessionStorage.removeItem(TOKEN_KEY);
  clearData();
  $('dashboard').hidden = true;
  $('feed-footer').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message ?? '';
  setStatus('logged-out', 'logged out');
  $('token').focus();
}

function showDashboard() {
  $('login').hidden = true;
  $('login-error').textContent = '';
  $('token').value = '';
  $('dashboard').hidden = false;
  $('feed-footer').hidden = false;
  $('logout').hidden = false;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function backoff(failures) {
  const window = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** failures);
  return Math.random() * window;
}

// Logs in with `token`: reads the feed until logged out, reconnecting after
// network errors; a refused token brings the login form back.
async function follow(token) {
  if (session) showLogin();
  const current = { token, stopped: false, attempt: null, watchdog: 0, last: null, skipped: 0, failures: 0, history: [], reload: null };
  session = current;
  setStatus('connecting', 'connecting');
  while (!current.stopped) {
    const attempt = new AbortController();
    current.attempt = attempt;
    let response = null;
    try {
      response = await fetch('/events', {
        headers: { Authorization: `Bearer ${token}` },
        cache: 'no-store',
        signal: attempt.signal,
      });
    } catch {
      response = null;
    }
    if (current.stopped) return;
    if (response?.status === 401) {
      const why = (await response.text().catch(() => '')).trim();
      showLogin(`The server refused this token${why ? `: ${why}` : ''}.`);
      return;
    }
    if (response?.ok) {
      try {
        await read(current, response.body, attempt);
      } catch {
        // A network error or our own abort: reconnect below.
      }
      if (current.stopped) return;
      current.last = null;
    }
    let delay = backoff(current.failures);
    if (response && !response.ok) {
      delay = Math.max(delay, 1000 * (Number(response.headers.get('Retry-After')) || 0));
      setStatus('waiting', `feed refused (${response.status}), retrying`);
    } else {
      setStatus('waiting', 'reconnecting');
    }
    current.failures += 1;
    await sleep(delay);
  }
}

// Reads Server-Sent Events from `body` and renders each frame.
async function read(current, body, attempt) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const rearm = () => {
    clearTimeout(current.watchdog);
    current.watchdog = setTimeout(() => attempt.abort(), SILENCE_MS);
  };
  rearm();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || current.stopped) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trimStart())
          .join('\n');
        if (!data) continue;
        rearm();
        const frame = JSON.parse(data);
        if (!current.last) {
          // The first frame of a login: the token works.
          sessionStorage.setItem(TOKEN_KEY, current.token);
          showDashboard();
        }
        render(current, frame);
        current.failures = 0;
        setStatus('live', 'live');
      }
    }
  } finally {
    clearTimeout(current.watchdog);
  }
}

function render(current, frame) {
  const previous = current.last;
  if (previous && frame.seq > previous.seq + 1) current.skipped += frame.seq - previous.seq - 1;
  current.last = frame;

  $('connections').textContent = count.format(frame.connections);
  $('clients').textContent = count.format(frame.clients);
  $('users').textContent = count.format(frame.users);
  const rates = frame.rates;
  $('messages-in').textContent = rates ? perSecond(decimal.format(rates.messages_received)) : '–';
  $('messages-out').textContent = rates ? perSecond(decimal.format(rates.messages_delivered)) : '–';
  $('bytes-in').textContent = rates ? perSecond(bytes(rates.wire_bytes_received)) : '–';
  $('bytes-out').textContent = rates ? perSecond(bytes(rates.wire_bytes_sent)) : '–';
  const ratio = frame.compression.ratio;
  $('compression').textContent = ratio === null ? 'none yet' : `${decimal.format(ratio * 100)} %`;
  $('slow-closed').textContent = count.format(frame.slow_consumers.closed);
  $('dropped').textContent = count.format(frame.slow_consumers.dropped);
  $('draining').hidden = !frame.shutting_down;

  renderChannels(frame);
  renderRejections(frame, previous);
  renderReload(current, frame);
  renderTable('disconnects', 3, 'none yet', frame.disconnects.map((d) =>
    row([cell(d.code), cell(d.initiator), cell(count.format(d.count), 'n')])));
  renderTable('auth', 3, 'no identity checks yet', frame.auth.outcomes.map((o) =>
    row([cell(o.result), cell(o.reason), cell(count.format(o.count), 'n')])));
  renderTotals(frame);
  renderPublishChannels(frame);

  $('feeds').textContent = `${frame.feeds.open} of ${frame.feeds.max} dashboard feeds open`;
  $('seq').textContent = String(frame.seq);
  $('skipped').textContent = String(current.skipped);
  $('updated').textContent = new Date(frame.unix_ms).toLocaleTimeString();
}

function renderTable(id, columns, empty, rows) {
  $(id).replaceChildren(...(rows.length ? rows : [emptyRow(columns, empty)]));
}

function renderChannels(frame) {
  renderTable('channels', 5, 'no channels', frame.channels.map((channel) => {
    const hasRooms = channel.kind === 'room' || channel.kind === 'hub';
    const largest = channel.largest_rooms.map((room) => `${room.name} (${count.format(room.members)})`).join(', ');
    return row(
      [
        cell(channel.name),
        cell(channel.kind),
        cell(count.format(channel.connections), 'n connections'),
        cell(hasRooms ? count.format(channel.rooms) : '', 'n'),
        cell(largest, 'rooms'),
      ],
      { channel: channel.name, connections: String(channel.connections) },
    );
  }));
  $('room-note').textContent = frame.room_names ? '' : 'Room names are not listed: there are too many rooms.';
}

function renderRejections(frame, previous) {
  const rows = [];
  for (const [where, key] of [['handshake', 'handshakes'], ['limit', 'enforced']]) {
    for (const [reason, total] of Object.entries(frame.rejections[key])) {
      if (!total) continue;
      const before = previous?.rejections[key][reason] ?? total;
      const recent = total - before;
      const tr = row(
        [cell(where), cell(reason), cell(count.format(total), 'n'), cell(recent ? `+${count.format(recent)}` : '', 'n')],
        { reason },
      );
      if (recent) tr.className = 'fresh';
      rows.push(tr);
    }
  }
  renderTable('rejections', 4, 'nothing refused yet', rows);
}

function renderReload(current, frame) {
  const reload = frame.reload;
  $('generation').textContent = String(reload.generation);
  $('applied').textContent = time(reload.last_success_unix);
  $('last-reload').textContent = reload.last_successful ? 'succeeded' : 'FAILED: the previous configuration still runs';
  $('last-reload').className = reload.last_successful ? '' : 'error';
  $('reload-failures').textContent = count.format(reload.failures);
  // Across reconnections of this login, so that a reload while the feed
  // was down is still seen.
  const seen = current.reload;
  const when = new Date(frame.unix_ms).toLocaleTimeString();
  if (!seen) {
    current.history.unshift(`${when}: generation ${reload.generation} running`);
  } else {
    if (reload.generation !== seen.generation) {
      current.history.unshift(`${when}: reload applied, generation ${reload.generation}`);
    }
    if (reload.failures !== seen.failures) {
      current.history.unshift(`${when}: reload refused (${reload.failures} failures in all)`);
    }
  }
  current.history.length = Math.min(current.history.length, HISTORY_LENGTH);
  current.reload = reload;
  $('reload-history').replaceChildren(...current.history.map((text) => {
    const li = document.createElement('li');
    li.textContent = text;
    return li;
  }));
}

const TOTALS = [
  ['connections_accepted', 'connections accepted', count.format],
  ['messages_received', 'messages received', count.format],
  ['messages_delivered', 'messages delivered (one per recipient)', count.format],
  ['messages_dropped', 'messages dropped (slow consumers)', count.format],
  ['payload_bytes_received', 'payload received', bytes],
  ['payload_bytes_sent', 'payload sent', bytes],
  ['wire_bytes_received', 'read from client sockets', bytes],
  ['wire_bytes_sent', 'written to client sockets', bytes],
];

function renderTotals(frame) {
  const compression = frame.compression;
  const rows = TOTALS.map(([key, label, format]) => row([cell(label), cell(format(frame.totals[key]), 'n')]));
  rows.push(row([cell('compressions'), cell(count.format(compression.compressions), 'n')]));
  rows.push(row([cell('compressed, in → out'), cell(`${bytes(compression.input_bytes)} → ${bytes(compression.output_bytes)}`, 'n')]));
  renderTable('totals', 2, '', rows);
}

// The channels a message can be published to: broadcast, room and hub.
function renderPublishChannels(frame) {
  const select = $('publish-channel');
  const wanted = frame.channels.filter((channel) => channel.kind !== 'echo');
  const names = wanted.map((channel) => `${channel.name}:${channel.kind}`).join(',');
  if (select.dataset.names === names) return;
  const chosen = select.value;
  select.replaceChildren(...wanted.map((channel) => {
    const option = document.createElement('option');
    option.value = channel.name;
    option.textContent = `${channel.name} (${channel.kind})`;
    option.dataset.kind = channel.kind;
    return option;
  }));
  select.dataset.names = names;
  if (wanted.some((channel) => channel.name === chosen)) select.value = chosen;
  updateRoomField();
}

function updateRoomField() {
  const kind = $('publish-channel').selectedOptions[0]?.dataset.kind;
  const room = $('publish-room');
  const hasRooms = kind === 'room' || kind === 'hub';
  room.disabled = !hasRooms;
  room.required = hasRooms;
  room.placeholder = hasRooms ? 'required' : 'room channels only';
}

// A call to the admin API with the session's token; `null` when the token
// was refused (the login form is back).
async function api(path, body, contentType) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { Authorization: `Bearer ${session.token}`, 'Content-Type': contentType },
    body,
    cache: 'no-store',
  });
  if (response.status === 401) {
    showLogin('The server refused this token.');
    return null;
  }
  const text = await response.text();
  if (!response.ok) return { ok: false, text: `${response.status}: ${text.trim()}` };
  return { ok: true, json: JSON.parse(text) };
}

function showResult(id, answer, describe) {
  const result = $(id);
  result.className = `result ${answer.ok ? 'ok' : 'error'}`;
  result.textContent = answer.ok ? describe(answer.json) : answer.text;
}

const plural = (n, word) => `${count.format(n)} ${word}${n === 1 ? '' : 's'}`;

async function publish(event) {
  event.preventDefault();
  if (!session) return;
  const channel = $('publish-channel').value;
  const room = $('publish-room').disabled ? '' : $('publish-room').value.trim();
  const path = `/publish/${encodeURIComponent(channel)}${room ? `/${encodeURIComponent(room)}` : ''}`;
  const answer = await api(path, $('publish-text').value, 'text/plain; charset=utf-8').catch((error) => ({
    ok: false,
    text: `not sent: ${error.message}`,
  }));
  if (answer) {
    const target = room ? `${channel}/${room}` : channel;
    showResult('publish-result', answer, (json) => `Delivered to ${plural(json.delivered, 'connection')} on ${target}.`);
  }
}

async function disconnect(event) {
  event.preventDefault();
  if (!session) return;
  const user = $('disconnect-user').value.trim();
  const reason = $('disconnect-reason').value;
  const body = JSON.stringify(reason ? { reason } : {});
  const answer = await api(`/users/${encodeURIComponent(user)}/disconnect`, body, 'application/json').catch((error) => ({
    ok: false,
    text: `not sent: ${error.message}`,
  }));
  if (answer) {
    showResult('disconnect-result', answer, (json) => `Closed ${plural(json.closed, 'connection')} of ${user}.`);
  }
}

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('token').value.trim();
  if (token) follow(token);
});
$('logout').addEventListener('click', () => showLogin());
$('publish-form').addEventListener('submit', publish);
$('disconnect-form').addEventListener('submit', disconnect);
$('publish-channel').addEventListener('change', updateRoomField);

const stored = sessionStorage.getItem(TOKEN_KEY);
if (stored) {
  follow(stored);
} else {
  showLogin();
}
