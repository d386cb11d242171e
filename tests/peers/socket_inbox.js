// A WebSocket with an inbox, for the pages the browser tests drive
// (tests/peers/chromium_*.mjs; a classic script, so that it can be
// injected into any page). `openSocket(url, protocols)` resolves once the
// socket is open. Every message it receives is kept in `socket.received`,
// parsed when it is JSON; `socket.next()` takes them one by one, in order;
// `socket.until(what, test)` resolves with the first message received so
// far or later that passes `test`. Both fail after WAIT_MS, or when the
// socket closes first.
(() => {
  const WAIT_MS = 10_000;

  window.openSocket = (url, protocols) =>
    new Promise((resolve, reject) => {
      const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
      const received = [];
      const waiters = new Set();
      let taken = 0;
      let closed = null;
      const wake = () => [...waiters].forEach((check) => check());
      ws.addEventListener('message', (event) => {
        let data = event.data;
        try {
          data = JSON.parse(data);
        } catch {
          // Not JSON: kept as the text it is.
        }
        received.push(data);
        wake();
      });
      ws.addEventListener('close', (event) => {
        closed = `${event.code} ${event.reason}`;
        wake();
      });
      // Resolves with `find()`'s `{ value }` once it finds one.
      const wait = (what, find) =>
        new Promise((done, fail) => {
          const timer = setTimeout(() => {
            waiters.delete(check);
            fail(new Error(`no ${what} on ${url} within ${WAIT_MS} ms`));
          }, WAIT_MS);
          const check = () => {
            const found = find();
            if (!found && !closed) return;
            clearTimeout(timer);
            waiters.delete(check);
            if (found) done(found.value);
            else fail(new Error(`${url} closed (${closed}) while waiting for ${what}`));
          };
          waiters.add(check);
          check();
        });
      ws.received = received;
      ws.next = () =>
        wait('message', () => (taken < received.length ? { value: received[taken++] } : null));
      ws.until = (what, test) =>
        wait(what, () => {
          const index = received.findIndex(test);
          return index < 0 ? null : { value: received[index] };
        });
      ws.whenClosed = () =>
        new Promise((done) => (closed ? done(closed) : ws.addEventListener('close', () => done(closed))));
      ws.addEventListener('open', () => resolve(ws), { once: true });
      ws.addEventListener('error', () => reject(new Error(`${url}: the handshake failed`)), { once: true });
    });
})();
