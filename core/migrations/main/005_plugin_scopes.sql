-- Plugins that a local group turns on for its own pages (manifest "group_level": true), on
-- top of the operator enabling them for the instance. scope is "group:ID".
CREATE TABLE hl_plugin_scopes (
    plugin TEXT NOT NULL,
    scope TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    changed_at TEXT NOT NULL,
    PRIMARY KEY (plugin, scope)
);
