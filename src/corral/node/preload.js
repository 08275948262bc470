// Corral's preload for Node cluster workers (node --require, through NODE_OPTIONS).
//
// Node's http.Server.close() (since Node 19) first closes every idle connection. During
// a rolling reload that includes a connection the worker accepted a moment before, whose
// request has not been read yet: its client gets "connection closed without response".
// Here close() stops accepting at once, as before, but gives connections accepted just
// before a short grace to send their request (which is then answered), and only then
// closes the ones still idle. Nothing else of the app is changed.
'use strict';
const http = require('http');
const https = require('https');
const net = require('net');

const GRACE_MS = Number(process.env.CORRAL_CLOSE_GRACE_MS || 300);

function patch(Server) {
  if (!Server || !Server.prototype || Server.prototype.__corralClose) return;
  Server.prototype.__corralClose = true;
  Server.prototype.close = function close(callback) {
    const server = this;
    net.Server.prototype.close.call(server, callback);
    const timer = setTimeout(() => {
      if (typeof server.closeIdleConnections === 'function') server.closeIdleConnections();
    }, GRACE_MS);
    timer.unref();
    return server;
  };
}

patch(http.Server);
patch(https.Server);
