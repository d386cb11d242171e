// The Node peer: the `ws` package with the same channel semantics as the
// benchmark's wsedge configuration.
//   /echo          every message straight back
//   /news          every message to every other connection
//   /chat/{room}   every message to every other member of the room
// Usage: node server.js --listen 127.0.0.1:18083 [--deflate]
//   --deflate      negotiate permessage-deflate (ws's defaults: context kept,
//                  window 15, zlib's default level), compressing messages from
//                  256 bytes as wsedge's default threshold does; for the
//                  capacity-with-deflate scenario only
'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const args = process.argv.slice(2);
const at = args.indexOf('--listen');
if (at < 0 || !args[at + 1]) {
  console.error('usage: node server.js --listen 127.0.0.1:PORT [--deflate]');
  process.exit(2);
}
const [host, port] = args[at + 1].split(':');

// Same limits as wsedge's defaults: 64 KiB messages; no compression unless
// --deflate.
const perMessageDeflate = args.includes('--deflate') ? { threshold: 256 } : false;
const wss = new WebSocketServer({ noServer: true, perMessageDeflate, maxPayload: 64 * 1024 });
const news = new Set();
const rooms = new Map();

function relay(members, sender, data, isBinary) {
  for (const member of members) {
    if (member !== sender && member.readyState === WebSocket.OPEN) {
      member.send(data, { binary: isBinary });
    }
  }
}

function join(ws, members, onEmpty) {
  members.add(ws);
  ws.on('message', (data, isBinary) => relay(members, ws, data, isBinary));
  ws.on('close', () => {
    members.delete(ws);
    if (members.size === 0 && onEmpty) onEmpty();
  });
}

const server = http.createServer((req, res) => {
  res.writeHead(426, { 'content-type': 'text/plain' });
  res.end('WebSocket only\n');
});

server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => {});
  const path = req.url.split('?')[0];
  let route = null;
  if (path === '/echo') {
    route = (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else if (path === '/news') {
    route = (ws) => join(ws, news);
  } else if (path.startsWith('/chat/') && path.length > 6) {
    const name = path.slice(6);
    route = (ws) => {
      let members = rooms.get(name);
      if (!members) {
        members = new Set();
        rooms.set(name, members);
      }
      join(ws, members, () => rooms.delete(name));
    };
  }
  if (!route) {
    socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    // Clients of the benchmark reset their connections when done.
    ws.on('error', () => {});
    route(ws);
  });
});

server.listen(Number(port), host, () => console.error(`node-ws listening on ws://${host}:${port}`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
