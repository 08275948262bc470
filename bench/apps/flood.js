// Node twin of flood.py (same bytes, same marker file): N numbered 100-byte
// lines, made in memory first, then written to stdout as fast as the pipe
// takes them (honouring backpressure); then exit.
//   node flood.js N [MARKER_FILE]
'use strict';
const fs = require('fs');
const LINE = 100;
const BATCH = 1000;
const count = parseInt(process.argv[2] || '1000000', 10);
const marker = process.argv[3];
const filler = 'x'.repeat(LINE - 12) + '\n';
const batches = [];
for (let start = 0; start < count; start += BATCH) {
  let s = '';
  for (let i = start; i < Math.min(start + BATCH, count); i++) s += String(i).padStart(10, '0') + ' ' + filler;
  batches.push(Buffer.from(s));
}
if (marker) {
  // process.hrtime is CLOCK_MONOTONIC, the same clock as Python's time.monotonic().
  fs.writeFileSync(marker + '.tmp', String(Number(process.hrtime.bigint()) / 1e9));
  fs.renameSync(marker + '.tmp', marker);
}
let next = 0;
function pump() {
  while (next < batches.length) {
    if (!process.stdout.write(batches[next++])) {
      process.stdout.once('drain', pump);
      return;
    }
  }
}
pump();
