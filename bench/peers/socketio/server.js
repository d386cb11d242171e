// The Socket.IO peer of the cluster benchmark: a minimal Socket.IO server
// whose nodes share one Redis through the official Redis adapter, as a
// Socket.IO deployment of several nodes runs.
//   namespace "/"   every "news" event a client emits goes to every other
//                   connected client, on this node and, through Redis, on
//                   every other node (socket.broadcast.emit)
// Usage: node server.js --listen 127.0.0.1:PORT [--redis redis://127.0.0.1:PORT]
//   --redis   share the namespace with the other nodes on this Redis
//             (@socket.io/redis-adapter on node-redis); without it the node
//             runs alone on Socket.IO's in-memory adapter
// WebSocket transport only (no HTTP long-polling), so that clients connect
// as a WebSocket client does, at /socket.io/?EIO=4&transport=websocket.
'use strict';

const http = require('http');
const { Server } = require('socket.io');

const args = process.argv.slice(2);
const option = (name) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const listen = option('--listen');
if (!listen) {
  console.error('usage: node server.js --listen 127.0.0.1:PORT [--redis redis://HOST:PORT]');
  process.exit(2);
}
const [host, port] = listen.split(':');
const redisUrl = option('--redis');

const server = http.createServer((req, res) => {
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('Socket.IO only\n');
});
// 64 KiB messages, as wsedge's default max_payload; no compression, as the
// benchmark's wsedge clients negotiate none.
const io = new Server(server, {
  transports: ['websocket'],
  serveClient: false,
  maxHttpBufferSize: 64 * 1024,
  perMessageDeflate: false,
});

io.on('connection', (socket) => {
  socket.on('news', (data) => socket.broadcast.emit('news', data));
});

async function main() {
  if (redisUrl) {
    const { createClient } = require('redis');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    for (const client of [pub, sub]) {
      client.on('error', (error) => console.error('redis:', error.message));
    }
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  server.listen(Number(port), host, () => {
    console.log(`socket.io on ${listen}${redisUrl ? ` with the Redis adapter on ${redisUrl}` : ''}`);
  });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
