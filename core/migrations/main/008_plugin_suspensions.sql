-- Plugins suspended by a process after a run of failing hook callbacks (core/hooks.c): one row
-- per plugin and process slot (worker number, -1 for the jobs process), cleared when that
-- process starts again. The operator sees them in `halle plugin list` and on /admin/plugins.
CREATE TABLE hl_plugin_suspensions (
    plugin TEXT NOT NULL,
    worker INTEGER NOT NULL,
    reason TEXT NOT NULL,
    suspended_at TEXT NOT NULL,
    PRIMARY KEY (plugin, worker)
);
