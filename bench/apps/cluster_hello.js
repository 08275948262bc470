// A minimal Node http server for PM2's cluster mode (bench_reload.py: reload under load).
// `pm2 start cluster_hello.js -i N` with PORT set; PM2's documented graceful shutdown:
// on SIGINT (what `pm2 reload` sends to the old worker) stop accepting, let the
// requests in flight finish, then exit.
"use strict";
const http = require("http");

const body = "hello, world\n";
const server = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
});

server.listen(Number(process.env.PORT || 8000), "127.0.0.1");

process.on("SIGINT", () => server.close(() => process.exit(0)));
