// The reference web app as a PM2 ecosystem file: the same two apps as
// ecosystem.toml, for anyone coming from PM2 (`pm2 start ecosystem.config.js`
// habits work: `corral start ecosystem.config.js --only webapp --env production`).
// Corral reads this file without Node: it is a plain object literal.
// tests/integration/test_container_files.py checks that both files load to the
// same apps; change them together.
//
// ecosystem.toml comes first when `corral start` looks for a file in this folder.

module.exports = {
  apps: [
    {
      // the schema, once, before the web instances (a one-shot webapp depends on)
      name: "migrate",
      script: "migrate.py",
      autorestart: false,
    },
    {
      // production: cluster mode, Corral binds 127.0.0.1:8000 once and shares it
      // with 4 instances; an instance is online once it sends READY=1
      name: "webapp",
      depends_on: ["migrate"],
      script: "serve.py",
      exec_mode: "cluster",
      instances: 4,
      listen: "127.0.0.1:8000",
      wait_ready: true,
      listen_timeout: 20000,
      max_memory_restart: "3G",
      // Python's counterpart of node_args' heap limit: the fault handler on
      interpreter_args: "-X faulthandler",
      kill_signal: "SIGTERM",
      kill_timeout: 10000,
      autorestart: true,
      min_uptime: "2s",
      max_restarts: 10,
      exp_backoff_restart_delay: 100,
      log_type: "json",
      out_file: "logs/webapp-out.log",
      error_file: "logs/webapp-error.log",
      log_file: "logs/webapp-combined.log",
      merge_logs: true,
      health: {
        http: "/api/health", // SELECT 1 against the database: 200 or 500
        interval: "10s",
        timeout: "3s",
        start_period: "10s",
      },
      env: {
        SHUTDOWN_TIMEOUT: "8", // finish in-flight requests before kill_timeout (10s) ends
      },
      env_production: {
        APP_ENV: "production",
        LOG_LEVEL: "info",
      },
    },
    {
      // development: one process, restarted when the code changes
      name: "webapp-dev",
      script: "serve.py",
      exec_mode: "fork",
      instances: 1,
      autostart: false, // registered, not started: then `corral start webapp-dev`
      watch: ["webapp"],
      kill_signal: "SIGTERM",
      kill_timeout: 5000,
      env: {
        HOST: "127.0.0.1",
        PORT: "8000",
      },
      env_development: {
        APP_ENV: "development",
        LOG_LEVEL: "debug",
      },
    },
  ],
};
