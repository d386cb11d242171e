// The smallest WebSocket client that behaves well against wsedge (or any
// edge server that drains, sheds load and pings):
//
// - Reconnection with exponential backoff and full jitter, so that a
//   thousand browsers that lost the server at the same moment do not come
//   back at the same moment. Close codes steer it:
//     1001 (going away: the server restarts, drains, or dropped the channel)
//          reconnect soon, at a random point of a short window: the server
//          already spread its closes over its drain window, keep them spread;
//     1013 (try again later: the server shed this connection, e.g. as a slow
//          consumer) wait at least `tryAgainLater` before the backoff;
//     anything else (1006 for a refused handshake or a lost network)
//          plain backoff; the count of attempts only resets once a
//          connection has stayed up for `stableAfter`, so a server that
//          accepts and closes at once cannot cause a reconnect storm.
// - Heartbeats: the server pings (every 25 s by default) and the browser
//   answers by itself; JavaScript never sees those frames. What the page can
//   see is silence: on a channel that is never quiet (a ticker), `idleTimeout`
//   declares the connection dead after that long without a message. On any
//   channel, a send buffer that stops draining for `stallTimeout` means the
//   same (the network is gone but TCP has not noticed yet).
// - Backpressure: `send()` writes only while `bufferedAmount` (bytes the
//   browser has accepted but not yet put on the network) is under
//   `highWater`; beyond it messages wait in a bounded queue and go out as
//   the buffer drains below `lowWater`. When the queue is full `send()`
//   refuses, so a page cannot pile up memory faster than the network moves.
//
// Events (an EventTarget): "status" with detail { state, code, reason,
// delay, attempt } where state is "connecting", "open", "waiting" (for
// `delay` ms before the next attempt) or "stopped"; "message" with
// detail { data }; "backlog" with detail { buffered, queued, messages }
// while sent data drains.

/// Close codes this client acts on (RFC 6455 section 7.4.1).
export const GOING_AWAY = 1001;
export const TRY_AGAIN_LATER = 1013;
/// A code in the range for applications: the client gave up on a connection
/// it considers dead (no message for idleTimeout, send buffer stalled).
export const CLIENT_GAVE_UP = 4000;

export const DEFAULTS = {
  // Backoff: attempt n waits a random time up to min(maxDelay, minDelay * 2^n).
  minDelay: 500,
  maxDelay: 30_000,
  // After 1001: the first attempt falls somewhere in this window.
  goingAwayWindow: 5_000,
  // After 1013: never sooner than this.
  tryAgainLater: 10_000,
  // A connection that lived this long resets the backoff.
  stableAfter: 10_000,
  // No message for this long: the connection is dead (null: never, for
  // channels that may be silent).
  idleTimeout: null,
  // Bytes in bufferedAmount that do not move for this long: dead.
  stallTimeout: 10_000,
  // Backpressure thresholds, in bytes of bufferedAmount.
  highWater: 64 * 1024,
  lowWater: 16 * 1024,
  // Messages held while the buffer is full or the socket is reconnecting.
  maxQueue: 100,
  // How often the drain is checked while messages wait (the WebSocket API
  // has no "drained" event).
  drainPoll: 50,
};

/// How long to wait before reconnecting after a close with `code`, on the
/// attempt numbered `attempt` (0 for the first after a stable connection).
/// `random` returns a number in [0, 1).
export function reconnectDelay(code, attempt, options = DEFAULTS, random = Math.random) {
  const ceiling = Math.min(options.maxDelay, options.minDelay * 2 ** attempt);
  const jitter = random() * ceiling;
  if (code === TRY_AGAIN_LATER) return options.tryAgainLater + jitter;
  if (code === GOING_AWAY && attempt === 0) return random() * options.goingAwayWindow;
  return jitter;
}

const encoder = new TextEncoder();
const byteLength = (data) =>
  typeof data === 'string' ? encoder.encode(data).length : (data.byteLength ?? data.size ?? 0);

export class ReconnectingSocket extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.attempt = 0;
    this.ws = null;
    this.queue = [];
    this.stopped = false;
    this.timers = { reconnect: null, stable: null, idle: null, drain: null };
    // For the stall check: the buffered amount seen last and since when.
    this.stall = { amount: 0, since: 0 };
    this.online = () => {
      // The network came back: do not sit out the rest of a long backoff.
      if (!this.ws && !this.stopped) this.connectNow();
    };
    globalThis.addEventListener?.('online', this.online);
  }

  /// Opens the first connection.
  start() {
    this.connectNow();
    return this;
  }

  /// Closes for good: no reconnection.
  stop() {
    this.stopped = true;
    globalThis.removeEventListener?.('online', this.online);
    this.clearTimers();
    if (this.ws) {
      this.ws.close(1000, 'bye');
      this.detach();
    }
    this.emitStatus({ state: 'stopped' });
  }

  /// Sends now if the buffer has room, else queues. Returns "sent",
  /// "queued" or "refused" (the queue is full: slow down).
  send(data) {
    if (this.ws?.readyState === WebSocket.OPEN && this.queue.length === 0 && this.hasRoom(data)) {
      this.ws.send(data);
      this.watchDrain();
      return 'sent';
    }
    if (this.queue.length >= this.options.maxQueue) return 'refused';
    this.queue.push(data);
    this.watchDrain();
    return 'queued';
  }

  /// Bytes accepted by the browser and not yet sent, plus the queue's.
  get backlog() {
    const queued = this.queue.reduce((sum, data) => sum + byteLength(data), 0);
    return { buffered: this.ws?.bufferedAmount ?? 0, queued, messages: this.queue.length };
  }

  hasRoom(data) {
    return this.ws.bufferedAmount + byteLength(data) <= this.options.highWater;
  }

  connectNow() {
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = null;
    this.emitStatus({ state: 'connecting', attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      // A malformed URL: retrying cannot help.
      this.stopped = true;
      this.emitStatus({ state: 'stopped', reason: String(error) });
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.emitStatus({ state: 'open', attempt: this.attempt });
      this.timers.stable = setTimeout(() => (this.attempt = 0), this.options.stableAfter);
      this.touch();
      this.flush();
      this.watchDrain();
    };
    ws.onmessage = (event) => {
      this.touch();
      this.dispatchEvent(new CustomEvent('message', { detail: { data: event.data } }));
    };
    // An error is always followed by a close event, which does the work.
    ws.onerror = () => {};
    ws.onclose = (event) => this.closed(event.code, event.reason);
  }

  /// The connection ended (closed by the server, refused, or lost).
  closed(code, reason) {
    this.detach();
    if (this.stopped) return;
    const delay = reconnectDelay(code, this.attempt, this.options);
    this.emitStatus({ state: 'waiting', code, reason, delay: Math.round(delay), attempt: this.attempt });
    this.attempt += 1;
    this.timers.reconnect = setTimeout(() => this.connectNow(), delay);
  }

  /// Gives up on a connection that looks dead and reconnects, without
  /// waiting for a close handshake that may never come.
  abandon(reason) {
    const ws = this.ws;
    this.closed(CLIENT_GAVE_UP, reason);
    ws.close(CLIENT_GAVE_UP, reason);
  }

  detach() {
    const ws = this.ws;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this.ws = null;
    clearTimeout(this.timers.stable);
    clearTimeout(this.timers.idle);
  }

  /// Something arrived: restart the idle timer.
  touch() {
    if (this.options.idleTimeout === null) return;
    clearTimeout(this.timers.idle);
    this.timers.idle = setTimeout(
      () => this.abandon(`nothing received for ${this.options.idleTimeout} ms`),
      this.options.idleTimeout,
    );
  }

  /// Sends queued messages while the buffer has room.
  flush() {
    while (this.queue.length && this.ws?.readyState === WebSocket.OPEN && this.hasRoom(this.queue[0])) {
      this.ws.send(this.queue.shift());
    }
  }

  /// While anything is buffered or queued, polls the buffer: flushes the
  /// queue below lowWater and abandons a connection whose buffer stalls.
  watchDrain() {
    if (this.timers.drain) return;
    const check = () => {
      this.timers.drain = null;
      const ws = this.ws;
      if (ws?.readyState === WebSocket.OPEN) {
        const amount = ws.bufferedAmount;
        const now = Date.now();
        if (amount === 0 || amount !== this.stall.amount) {
          this.stall = { amount, since: now };
        } else if (now - this.stall.since >= this.options.stallTimeout) {
          this.stall = { amount: 0, since: now };
          this.abandon(`send buffer stalled at ${amount} bytes`);
        }
        if (amount <= this.options.lowWater) this.flush();
      }
      this.dispatchEvent(new CustomEvent('backlog', { detail: this.backlog }));
      // Nothing to watch, or no connection to watch it on: the next send()
      // or the next open starts the poll again.
      const open = this.ws?.readyState === WebSocket.OPEN;
      if (open && (this.queue.length || this.ws.bufferedAmount > 0)) {
        this.timers.drain = setTimeout(check, this.options.drainPoll);
      }
    };
    this.timers.drain = setTimeout(check, this.options.drainPoll);
  }

  clearTimers() {
    for (const name of Object.keys(this.timers)) {
      clearTimeout(this.timers[name]);
      this.timers[name] = null;
    }
  }

  emitStatus(detail) {
    this.dispatchEvent(new CustomEvent('status', { detail }));
  }
}
