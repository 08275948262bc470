// How PM2 itself reads an ecosystem file, without a PM2 daemon: the same calls as
// `pm2 start <file> [--env NAME]` makes in API._startJson before it talks to God
// (Common.parseConfig, Common.verifyConfs, Common.resolveAppAttributes,
// Common.mergeEnvironmentVariables). Prints one JSON document on stdout.
//
//   node pm2_read.js <pm2 package folder> <ecosystem file> [env name]
'use strict';
const path = require('path');
const fs = require('fs');

const [pm2Dir, file, envName] = process.argv.slice(2);
const Common = require(path.join(pm2Dir, 'lib', 'Common.js'));
const baseEnv = new Set(Object.keys(process.env));

function quiet(fn) {
  const saved = [console.log, console.error, console.warn, process.stdout.write];
  console.log = console.error = console.warn = () => {};
  try { return fn(); } finally { [console.log, console.error, console.warn] = saved; }
}

function out(doc) {
  process.stdout.write(JSON.stringify(doc) + '\n');
  process.exit(0);
}

(async () => {
  let config;
  try {
    const data = fs.readFileSync(file);
    config = quiet(() => Common.parseConfig(data, file));
    if (config && typeof config.then === 'function') config = await config;
    // PM2 requires .mjs through require(): Node 20 cannot, and PM2 then fails.
  } catch (e) {
    return out({ error: 'parse: ' + String(e && e.message || e).split('\n')[0] });
  }
  let appConf = config.apps ? config.apps : config.pm2 ? config.pm2 : config;
  const deployConf = config.deploy || {};
  if (!Array.isArray(appConf)) appConf = [appConf];
  appConf = quiet(() => Common.verifyConfs(appConf));
  if (appConf instanceof Error) return out({ error: 'verify: ' + appConf.message });
  const apps = [];
  for (const app of appConf) {
    if (!app.env) app.env = {};
    let resolved;
    try {
      resolved = quiet(() => Common.resolveAppAttributes({ cwd: path.dirname(file), pm2_home: '/nonexistent-pm2-home' }, app));
    } catch (e) {
      apps.push({ name: app.name, error: String(e.message).split('\n')[0] });
      continue;
    }
    const merged = quiet(() => Common.mergeEnvironmentVariables(resolved, envName, deployConf));
    delete merged.current_conf;
    const env = {};
    for (const [k, v] of Object.entries(merged)) {
      if (baseEnv.has(k) && process.env[k] === String(v)) continue; // inherited, not the file's
      if (v === undefined) continue;
      env[k] = String(v); // what child_process puts in the environment
    }
    apps.push({
      name: resolved.name,
      script: resolved.pm_exec_path,
      args: resolved.args || [],
      interpreter: resolved.exec_interpreter,
      node_args: resolved.node_args || [],
      exec_mode: resolved.exec_mode,
      instances: resolved.instances,
      cwd: resolved.pm_cwd,
      env,
    });
  }
  out({ apps });
})();
